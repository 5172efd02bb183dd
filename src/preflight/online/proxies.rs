//! Whether each configured target HTTPS proxy exists and serves `sslCertificates`.

use futures_util::future::join_all;

use super::{first_line, fix_for, is_disabled};
use crate::config::Config;
use crate::gcp::Gcp;
use crate::preflight::Line;

pub(super) async fn proxies(config: &Config, gcp: &Gcp) -> Vec<Line> {
    let mut names: Vec<&str> = Vec::new();
    for c in &config.certificates {
        for p in &c.target_https_proxies {
            if !names.contains(&p.as_str()) {
                names.push(p);
            }
        }
    }
    let project = &gcp.project;
    let answers = join_all(names.iter().map(|n| gcp.get_target_https_proxy(n))).await;
    names
        .iter()
        .zip(answers)
        .map(|(n, a)| {
            let what = format!("target HTTPS proxy {n}");
            // The map a certificate listing this proxy lives in, if any, and
            // whether one lives in the proxy's sslCertificates.
            let listing = config
                .certificates
                .iter()
                .filter(|c| c.target_https_proxies.iter().any(|p| p == n));
            let wants_map = listing
                .clone()
                .find_map(|c| c.certificate_map.as_deref().map(|m| (m, c.name.as_str())));
            let wants_ssl = listing.clone().any(|c| c.certificate_map.is_none());
            match a {
                Ok(p) => {
                    let attached = p
                        .certificate_map
                        .as_deref()
                        .filter(|m| !m.is_empty());
                    proxy_line(&what, n, attached, p.ssl_certificates.len(), wants_map, wants_ssl)
                }
                Err(e) if e.is_not_found() => Line::fail(
                    format!("{what}: does not exist in project {project}"),
                    "create it, or run gclb-acme bootstrap (with [stack]), or fix certificates[].target_https_proxies",
                ),
                Err(e) if is_disabled(&e) => Line::skip(format!(
                    "{what}: not checked (the Compute API is disabled)"
                )),
                Err(e) => Line::fail(format!("{what}: cannot read: {}", first_line(&e)), fix_for(&e)),
            }
        })
        .collect()
}

/// The verdict on one existing proxy (pure): a certificate living in map M
/// needs the proxy to serve M; one living in sslCertificates needs it to
/// serve no map (a map wins).
pub(super) fn proxy_line(
    what: &str,
    proxy: &str,
    attached: Option<&str>,
    ssl_certificates: usize,
    wants_map: Option<(&str, &str)>,
    wants_ssl: bool,
) -> Line {
    let attached_id = attached.and_then(crate::stack::certmap::map_id_of);
    if let Some((map, cert)) = wants_map {
        if attached_id != Some(map) {
            return Line::fail(
                format!(
                    "{what}: does not serve certificate map {map} (it serves {}), but certificate {cert} lives there and lists it: renewing {cert} fails until it does",
                    match attached {
                        Some(m) => format!("certificate map {}", attached_id.unwrap_or(m)),
                        None => format!("{ssl_certificates} sslCertificate(s)"),
                    }
                ),
                format!(
                    "gclb-acme certificate-map attach --proxy {proxy} --map {map} (it checks that every name stays served), or remove {proxy} from certificates[].target_https_proxies"
                ),
            );
        }
        if !wants_ssl {
            return Line::ok(format!("{what}: serves certificate map {map}"));
        }
    }
    match attached {
        Some(m) if wants_ssl => Line::warn(
            format!(
                "{what}: uses certificate map {m}; a proxy with a map serves from it and ignores sslCertificates"
            ),
            format!(
                "gclb-acme certificate-map detach --proxy {proxy} (it checks the sslCertificates serve every name), or keep Certificate Manager"
            ),
        ),
        _ => Line::ok(format!(
            "{what}: exists ({ssl_certificates} certificate(s) attached)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    const M: &str =
        "//certificatemanager.googleapis.com/projects/p/locations/global/certificateMaps/m";

    #[test]
    fn a_map_certificate_needs_its_map_on_the_proxy() {
        let l = proxy_line(
            "target HTTPS proxy p",
            "p",
            None,
            1,
            Some(("m", "app")),
            false,
        );
        assert_eq!(l.status, Status::Fail);
        assert!(
            l.what
                .contains("does not serve certificate map m (it serves 1 sslCertificate(s))"),
            "{l}"
        );
        assert!(
            l.fix
                .as_deref()
                .unwrap()
                .starts_with("gclb-acme certificate-map attach --proxy p --map m")
        );
        let l = proxy_line("x", "p", Some(M), 0, Some(("m", "app")), false);
        assert_eq!(l.status, Status::Ok, "{l}");
        assert!(l.what.contains("serves certificate map m"));
        let other = M.replace("/m", "/other");
        let l = proxy_line("x", "p", Some(&other), 0, Some(("m", "app")), false);
        assert_eq!(l.status, Status::Fail);
        assert!(l.what.contains("it serves certificate map other"), "{l}");
    }

    #[test]
    fn an_sslcertificates_certificate_warns_about_a_map() {
        let l = proxy_line("x", "p", Some(M), 1, None, true);
        assert_eq!(l.status, Status::Warn);
        assert!(
            l.fix
                .as_deref()
                .unwrap()
                .contains("gclb-acme certificate-map detach --proxy p")
        );
        assert_eq!(proxy_line("x", "p", None, 2, None, true).status, Status::Ok);
    }
}
