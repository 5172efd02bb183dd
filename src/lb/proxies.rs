//! The new certificate list of a target HTTPS proxy: a pure rewrite, so the rules
//! (replace ours in place, keep everything else in order, append when nothing of
//! ours is there, at most 15) are unit-tested without a cloud.

use crate::gcp::compute::name_of;

/// A target HTTPS proxy holds at most this many Compute Engine certificates.
pub(crate) const MAX_CERTIFICATES_PER_PROXY: usize = 15;

/// Why a list cannot be rewritten.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// The new list would exceed the per-proxy limit.
    #[error(
        "target HTTPS proxy {proxy} would hold {count} certificates, but a proxy holds at most {MAX_CERTIFICATES_PER_PROXY}: remove an unused certificate from it first"
    )]
    TooMany { proxy: String, count: usize },
}

/// What to send to `setSslCertificates`, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// The proxy already serves the new certificate and nothing superseded.
    Unchanged,
    /// The full new list, in order.
    Set(Vec<String>),
}

/// Rewrites `current` (full URLs, in order) so the proxy serves `new_url`:
/// the first certificate for which `superseded` holds is replaced in place, later
/// superseded ones are dropped, every other entry keeps its position; with
/// nothing superseded, `new_url` is appended. A `new_url` already listed after
/// a superseded one moves into that slot. Entries are compared by resource
/// name, since Compute writes references with either API host.
pub(crate) fn rewrite(
    proxy: &str,
    current: &[String],
    new_url: &str,
    superseded: impl Fn(&str) -> bool,
) -> Result<Rewrite, RewriteError> {
    let new_name = name_of(new_url);
    let new_at = current.iter().position(|u| name_of(u) == new_name);
    let first_gone = current.iter().position(|u| {
        let n = name_of(u);
        n != new_name && superseded(n)
    });
    // Already listed behind a superseded one (a run of the appending version, or
    // a crash between two swaps): it moves up into the first superseded slot.
    let moves = matches!((new_at, first_gone), (Some(a), Some(g)) if g < a);
    let mut out: Vec<String> = Vec::with_capacity(current.len() + 1);
    let mut placed = new_at.is_some() && !moves;
    let mut changed = false;
    for url in current {
        let name = name_of(url);
        if moves && name == new_name {
            continue;
        }
        if name != new_name && superseded(name) {
            changed = true;
            if !placed {
                out.push(new_url.to_string());
                placed = true;
            }
            continue;
        }
        out.push(url.clone());
    }
    if !placed {
        out.push(new_url.to_string());
        changed = true;
    }
    if !changed {
        return Ok(Rewrite::Unchanged);
    }
    if out.len() > MAX_CERTIFICATES_PER_PROXY {
        return Err(RewriteError::TooMany {
            proxy: proxy.to_string(),
            count: out.len(),
        });
    }
    Ok(Rewrite::Set(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(n: &str) -> String {
        format!("https://www.googleapis.com/compute/v1/projects/p/global/sslCertificates/{n}")
    }
    fn urls(ns: &[&str]) -> Vec<String> {
        ns.iter().map(|n| url(n)).collect()
    }
    fn ours(n: &str) -> bool {
        n.starts_with("app-")
    }

    #[test]
    fn replaces_ours_in_place_and_keeps_order() {
        let r = rewrite(
            "p",
            &urls(&["first", "app-old", "last"]),
            &url("app-new"),
            ours,
        );
        assert_eq!(r, Ok(Rewrite::Set(urls(&["first", "app-new", "last"]))));
    }

    #[test]
    fn appends_when_nothing_of_ours_is_there() {
        let r = rewrite("p", &urls(&["foreign"]), &url("app-new"), ours);
        assert_eq!(r, Ok(Rewrite::Set(urls(&["foreign", "app-new"]))));
        let r = rewrite("p", &[], &url("app-new"), ours);
        assert_eq!(r, Ok(Rewrite::Set(urls(&["app-new"]))));
    }

    #[test]
    fn several_superseded_collapse_into_the_first_slot() {
        let r = rewrite(
            "p",
            &urls(&["app-a", "x", "app-b", "y"]),
            &url("app-new"),
            ours,
        );
        assert_eq!(r, Ok(Rewrite::Set(urls(&["app-new", "x", "y"]))));
    }

    #[test]
    fn already_served_is_unchanged_or_only_drops_leftovers() {
        let r = rewrite("p", &urls(&["x", "app-new"]), &url("app-new"), ours);
        assert_eq!(r, Ok(Rewrite::Unchanged));
        // Both listed (a crash mid-swap, or the appending version): the new one
        // takes the old one's slot, the rest keeps its order.
        let r = rewrite(
            "p",
            &urls(&["app-old", "x", "app-new"]),
            &url("app-new"),
            ours,
        );
        assert_eq!(r, Ok(Rewrite::Set(urls(&["app-new", "x"]))));
        // Already ahead of the old one: it stays where it is.
        let r = rewrite(
            "p",
            &urls(&["app-new", "x", "app-old"]),
            &url("app-new"),
            ours,
        );
        assert_eq!(r, Ok(Rewrite::Set(urls(&["app-new", "x"]))));
    }

    #[test]
    fn other_hosts_name_the_same_resource() {
        let other_host =
            "https://compute.googleapis.com/compute/v1/projects/p/global/sslCertificates/app-new"
                .to_string();
        let r = rewrite("p", &[other_host], &url("app-new"), ours);
        assert_eq!(r, Ok(Rewrite::Unchanged));
    }

    #[test]
    fn the_fifteen_limit_names_the_proxy() {
        let full: Vec<String> = (0..15).map(|i| url(&format!("f{i}"))).collect();
        let r = rewrite("edge", &full, &url("app-new"), ours);
        assert_eq!(
            r,
            Err(RewriteError::TooMany {
                proxy: "edge".into(),
                count: 16
            })
        );
        assert!(r.unwrap_err().to_string().contains("edge"));
        // Replacing in place in a full list is fine.
        let mut full = full;
        full[3] = url("app-old");
        let r = rewrite("edge", &full, &url("app-new"), ours).unwrap();
        let Rewrite::Set(list) = r else { panic!() };
        assert_eq!(list.len(), 15);
        assert_eq!(list[3], url("app-new"));
    }
}
