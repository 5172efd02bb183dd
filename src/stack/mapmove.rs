//! Moving an existing target HTTPS proxy from its `sslCertificates` onto a
//! Certificate Manager map, and back (`gclb-acme certificate-map attach` /
//! `detach`), without a moment in which a name goes unserved.
//!
//! Google serves either the map (when one is attached: "If set, sslCertificates
//! will be ignored") or the sslCertificates, and switches with one
//! `setCertificateMap`. So the move is safe exactly when the side switched to
//! already serves a valid certificate for every name the proxy serves now:
//! checked first ([`certmap::map_serves`], [`certmap::ssl_serves`]), refused
//! with the reason per name otherwise, then one mutation, then read back (the
//! proxy serves the side switched to, and that side still serves every name). The
//! side switched away from is kept (the sslCertificates stay on the proxy
//! while the map is attached; the map and its entries stay after a detach), so
//! moving back is the same single call.
//!
//! The names: attaching, those of the proxy's valid sslCertificates (and the
//! hostnames of a map attached now), plus any the caller adds (the configured
//! domains); detaching, every hostname of the attached map's entries, plus any
//! the caller adds.

use time::OffsetDateTime;

use super::certmap::{self, MapObserved, map_id_of};
use crate::gcp::compute::{SslCertificate, name_of};
use crate::gcp::{Gcp, GcpError};

/// How long the one Compute operation may take.
const OP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Why a move did not happen or did not end as it should.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{what}: {source}")]
    Gcp {
        what: String,
        #[source]
        source: Box<GcpError>,
    },
    /// Reading the map (its entries and certificates) failed.
    #[error(transparent)]
    Read(Box<super::StackError>),
    #[error("target HTTPS proxy {proxy} does not exist in project {project}")]
    ProxyNotFound { proxy: String, project: String },
    /// A name would go unserved: nothing was changed.
    #[error(
        "refused: {} of target HTTPS proxy {proxy} would go unserved by {to}, so nothing was changed:\n{}",
        if .unserved.len() == 1 { "one name" } else { "some names" },
        .unserved.iter().map(|u| format!("  - {u}")).collect::<Vec<_>>().join("\n")
    )]
    Refused {
        proxy: String,
        to: String,
        unserved: Vec<String>,
    },
    /// Detaching with no sslCertificates at all: Google refuses too.
    #[error(
        "refused: target HTTPS proxy {proxy} has no sslCertificates to serve once certificate map {map} is detached, so nothing was changed: put a certificate on it first (gclb-acme renew with the proxy in target_https_proxies and no certificate_map)"
    )]
    NothingToDetachTo { proxy: String, map: String },
    /// The change was made, but reading back does not show it.
    #[error("target HTTPS proxy {proxy}: after the change it {found}")]
    NotApplied { proxy: String, found: String },
}

fn gcp_err(what: impl Into<String>) -> impl FnOnce(GcpError) -> MoveError {
    let what = what.into();
    move |e| MoveError::Gcp {
        what,
        source: Box::new(e),
    }
}

/// What a move did (or, in a dry run, would do).
#[derive(Clone, Debug, Default)]
pub struct MoveReport {
    /// The lines printed: the names, what serves each on the side switched
    /// to, and the change.
    pub lines: Vec<String>,
    /// Whether the proxy was changed.
    pub changed: bool,
}

/// What the proxy is and serves now.
struct Proxy {
    certs: Vec<SslCertificate>,
    /// The attached map, read, when one is.
    map: Option<MapObserved>,
}

async fn read_proxy(gcp: &Gcp, name: &str) -> Result<Proxy, MoveError> {
    let proxy = gcp
        .find_target_https_proxy(name)
        .await
        .map_err(gcp_err(format!("reading target HTTPS proxy {name}")))?
        .ok_or_else(|| MoveError::ProxyNotFound {
            proxy: name.to_string(),
            project: gcp.project.clone(),
        })?;
    let mut certs = Vec::new();
    for url in &proxy.ssl_certificates {
        let n = name_of(url);
        if let Some(c) = gcp
            .get_ssl_certificate(n)
            .await
            .map_err(gcp_err(format!("reading sslCertificate {n}")))?
        {
            certs.push(c);
        }
    }
    let map = match proxy.certificate_map.as_deref().and_then(map_id_of) {
        Some(id) => Some(certmap::observe(gcp, id, None).await.map_err(stack_err)?),
        None => None,
    };
    Ok(Proxy { certs, map })
}

fn stack_err(e: super::StackError) -> MoveError {
    MoveError::Read(Box::new(e))
}

fn push_unique(out: &mut Vec<String>, n: &str) {
    let n = n.to_ascii_lowercase();
    if !out.contains(&n) {
        out.push(n);
    }
}

/// The hostnames a map's entries serve (PRIMARY has none of its own).
fn map_hostnames(m: &MapObserved) -> Vec<String> {
    let mut out = Vec::new();
    for e in &m.entries {
        if let Some(h) = &e.hostname {
            push_unique(&mut out, h);
        }
    }
    out
}

/// The names to keep served when attaching (pure): the valid sslCertificates'
/// names, an attached map's hostnames, and `extra`.
pub(crate) fn names_to_attach(
    certs: &[SslCertificate],
    attached: Option<&MapObserved>,
    extra: &[String],
    now: OffsetDateTime,
) -> Vec<String> {
    let mut out = Vec::new();
    for c in certs {
        let valid = c
            .expire_time
            .as_deref()
            .and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .is_some_and(|t| t > now);
        if valid {
            for s in &c.subject_alternative_names {
                push_unique(&mut out, s);
            }
        }
    }
    if let Some(m) = attached {
        for h in map_hostnames(m) {
            push_unique(&mut out, &h);
        }
    }
    for e in extra {
        push_unique(&mut out, e);
    }
    out
}

/// One line per name: what serves it on the side switched to, or why nothing
/// does (those are also returned).
fn judge<F>(names: &[String], mut serves: F) -> (Vec<String>, Vec<String>)
where
    F: FnMut(&str) -> Result<String, String>,
{
    let mut lines = Vec::new();
    let mut unserved = Vec::new();
    for n in names {
        match serves(n) {
            Ok(what) => lines.push(format!("  {n}: {what}")),
            Err(why) => {
                lines.push(format!("  {n}: NOT SERVED: {why}"));
                unserved.push(format!("{n}: {why}"));
            }
        }
    }
    (lines, unserved)
}

fn say(lines: &mut Vec<String>, quiet: bool, l: String) {
    if !quiet {
        crate::progress::println(&l);
    }
    tracing::debug!(target: "gclb_acme::stack", "{l}");
    lines.push(l);
}

/// Attaches certificate map `map` to target HTTPS proxy `proxy`, after checking
/// that the map serves a valid certificate for every name the proxy serves now
/// (and every name of `extra`). With `dry_run`, checks and says, changes
/// nothing; a refusal is the same error either way.
///
/// `installing`: in a dry run, names a configured certificate would install
/// into the map before the switch (`gclb-acme certificate-map attach` does
/// that first); counted as served, and said so.
pub async fn attach_certificate_map(
    gcp: &Gcp,
    proxy: &str,
    map: &str,
    extra: &[String],
    installing: &[(String, String)],
    dry_run: bool,
    quiet: bool,
) -> Result<MoveReport, MoveError> {
    let mut r = MoveReport::default();
    let now = OffsetDateTime::now_utc();
    let p = read_proxy(gcp, proxy).await?;
    if p.map.as_ref().is_some_and(|m| m.id == map) {
        say(
            &mut r.lines,
            quiet,
            format!(
                "target HTTPS proxy {proxy} serves certificate map {map} already: nothing to do"
            ),
        );
        return Ok(r);
    }
    let target = certmap::observe(gcp, map, None).await.map_err(stack_err)?;
    let names = names_to_attach(&p.certs, p.map.as_ref(), extra, now);
    let from = match &p.map {
        Some(m) => format!("certificate map {}", m.id),
        None => format!(
            "sslCertificates [{}]",
            p.certs
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    say(
        &mut r.lines,
        quiet,
        format!(
            "target HTTPS proxy {proxy} serves {} name(s) from {from}; certificate map {map} must serve each:",
            names.len()
        ),
    );
    let (lines, unserved) = judge(&names, |n| {
        if dry_run && let Some((_, cert)) = installing.iter().find(|(h, _)| h == n) {
            return Ok(format!(
                "certificate {cert} is installed into the map first (issued if needed)"
            ));
        }
        certmap::map_serves(&target, n, now).map(|cs| {
            let entry = certmap::entry_for(&target.entries, n)
                .map(|e| e.id().to_string())
                .unwrap_or_default();
            format!(
                "certificate {} (entry {entry}), valid until {}",
                cs.iter().map(|c| c.id()).collect::<Vec<_>>().join(", "),
                cs.iter()
                    .filter_map(|c| c.expire_time.as_deref())
                    .min()
                    .unwrap_or("?")
            )
        })
    });
    for l in lines {
        say(&mut r.lines, quiet, l);
    }
    if names.is_empty() {
        unserved_if_empty(&mut r, quiet, proxy);
    }
    if !unserved.is_empty() {
        return Err(MoveError::Refused {
            proxy: proxy.to_string(),
            to: format!("certificate map {map}"),
            unserved,
        });
    }
    let step = format!(
        "attach certificate map {map} to target HTTPS proxy {proxy} (its sslCertificates are then ignored, and kept)"
    );
    if dry_run {
        say(&mut r.lines, quiet, format!("dry run: would {step}"));
        return Ok(r);
    }
    let reference = gcp.certificate_map_reference(map);
    let what = format!("attaching certificate map {map} to target HTTPS proxy {proxy}");
    let op = gcp
        .set_certificate_map(
            proxy,
            Some(&reference),
            &format!("{}-{}", reference, rand::random::<u64>()),
        )
        .await
        .map_err(gcp_err(what.clone()))?;
    gcp.wait_operation(op, OP_TIMEOUT)
        .await
        .map_err(gcp_err(what))?;
    r.changed = true;
    let after = read_proxy(gcp, proxy).await?;
    let served = match &after.map {
        Some(m) if m.id == map => m,
        other => {
            return Err(MoveError::NotApplied {
                proxy: proxy.to_string(),
                found: match other {
                    Some(m) => format!("serves certificate map {}", m.id),
                    None => "serves no certificate map".into(),
                },
            });
        }
    };
    // Read back: the map the proxy serves now serves every name.
    let now = OffsetDateTime::now_utc();
    let gone: Vec<String> = names
        .iter()
        .filter_map(|n| {
            certmap::map_serves(served, n, now)
                .err()
                .map(|e| format!("{n}: {e}"))
        })
        .collect();
    if !gone.is_empty() {
        return Err(MoveError::NotApplied {
            proxy: proxy.to_string(),
            found: format!(
                "serves certificate map {map}, which no longer serves: {} (changed meanwhile?)",
                gone.join("; ")
            ),
        });
    }
    say(&mut r.lines, quiet, format!("{step} ... done"));
    Ok(r)
}

fn unserved_if_empty(r: &mut MoveReport, quiet: bool, proxy: &str) {
    say(
        &mut r.lines,
        quiet,
        format!("  (target HTTPS proxy {proxy} serves no valid certificate now: no name to keep)"),
    );
}

/// Detaches the certificate map from target HTTPS proxy `proxy`, after
/// checking that its sslCertificates serve a valid certificate for every
/// hostname of the map's entries (and every name of `extra`). The map, its
/// entries and certificates are kept. With `dry_run`, checks and says.
pub async fn detach_certificate_map(
    gcp: &Gcp,
    proxy: &str,
    extra: &[String],
    dry_run: bool,
    quiet: bool,
) -> Result<MoveReport, MoveError> {
    let mut r = MoveReport::default();
    let checked_at = OffsetDateTime::now_utc();
    let p = read_proxy(gcp, proxy).await?;
    let Some(m) = &p.map else {
        say(
            &mut r.lines,
            quiet,
            format!("target HTTPS proxy {proxy} serves no certificate map: nothing to do"),
        );
        return Ok(r);
    };
    if p.certs.is_empty() {
        return Err(MoveError::NothingToDetachTo {
            proxy: proxy.to_string(),
            map: m.id.clone(),
        });
    }
    let mut names = map_hostnames(m);
    for e in extra {
        push_unique(&mut names, e);
    }
    say(
        &mut r.lines,
        quiet,
        format!(
            "target HTTPS proxy {proxy} serves {} name(s) from certificate map {}; its sslCertificates [{}] must serve each:",
            names.len(),
            m.id,
            p.certs
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let (lines, unserved) = judge(&names, |n| {
        certmap::ssl_serves(&p.certs, n, checked_at).map(|c| {
            format!(
                "sslCertificate {}, valid until {}",
                c.name,
                c.expire_time.as_deref().unwrap_or("?")
            )
        })
    });
    for l in lines {
        say(&mut r.lines, quiet, l);
    }
    if !unserved.is_empty() {
        return Err(MoveError::Refused {
            proxy: proxy.to_string(),
            to: "its sslCertificates".into(),
            unserved,
        });
    }
    let step = format!(
        "detach certificate map {} from target HTTPS proxy {proxy} (the map, its entries and certificates are kept)",
        m.id
    );
    if dry_run {
        say(&mut r.lines, quiet, format!("dry run: would {step}"));
        return Ok(r);
    }
    let what = format!(
        "detaching certificate map {} from target HTTPS proxy {proxy}",
        m.id
    );
    let op = gcp
        .set_certificate_map(
            proxy,
            None,
            &format!("detach-{proxy}-{}", rand::random::<u64>()),
        )
        .await
        .map_err(gcp_err(what.clone()))?;
    gcp.wait_operation(op, OP_TIMEOUT)
        .await
        .map_err(gcp_err(what))?;
    r.changed = true;
    let after = read_proxy(gcp, proxy).await?;
    if let Some(still) = after.map {
        return Err(MoveError::NotApplied {
            proxy: proxy.to_string(),
            found: format!("still serves certificate map {}", still.id),
        });
    }
    // Read back: the sslCertificates serve every name.
    let now = OffsetDateTime::now_utc();
    let gone: Vec<String> = names
        .iter()
        .filter_map(|n| {
            certmap::ssl_serves(&after.certs, n, now)
                .err()
                .map(|e| format!("{n}: {e}"))
        })
        .collect();
    if !gone.is_empty() {
        return Err(MoveError::NotApplied {
            proxy: proxy.to_string(),
            found: format!(
                "serves its sslCertificates, which no longer serve: {} (changed meanwhile?)",
                gone.join("; ")
            ),
        });
    }
    say(&mut r.lines, quiet, format!("{step} ... done"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_to_keep_come_from_valid_certificates_and_the_caller() {
        let now = OffsetDateTime::now_utc();
        let c = |sans: &[&str], exp: &str| SslCertificate {
            subject_alternative_names: sans.iter().map(|s| s.to_string()).collect(),
            expire_time: Some(exp.into()),
            ..Default::default()
        };
        let names = names_to_attach(
            &[
                c(
                    &["www.example.com", "*.example.com"],
                    "2099-01-01T00:00:00Z",
                ),
                c(&["old.example.com"], "2001-01-01T00:00:00Z"),
            ],
            None,
            &["API.example.com".into(), "www.example.com".into()],
            now,
        );
        assert_eq!(
            names,
            ["www.example.com", "*.example.com", "api.example.com"]
        );
    }
}
