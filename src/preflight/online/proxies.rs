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
            match a {
                Ok(p) if p.certificate_map.as_deref().is_some_and(|m| !m.is_empty()) => Line::warn(
                    format!(
                        "{what}: uses certificate map {}; a proxy with a map serves from it and ignores sslCertificates",
                        p.certificate_map.as_deref().unwrap_or("")
                    ),
                    format!("detach the map (gcloud compute target-https-proxies update {n} --clear-certificate-map) or keep Certificate Manager"),
                ),
                Ok(p) => Line::ok(format!(
                    "{what}: exists ({} certificate(s) attached)",
                    p.ssl_certificates.len()
                )),
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
