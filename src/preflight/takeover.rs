//! `check` previews the takeover (issue #14): for each configured certificate
//! and proxy, what the next renewal will replace, keep and delete, before
//! anything is changed. The lines come from [`preview`], a pure function of
//! the observation and the project's proxies.

use super::Line;
use crate::config::{CertificateConfig, Config};
use crate::gcp::Gcp;
use crate::gcp::compute::{TargetHttpsProxy, name_of};
use crate::lb::takeover::{self, Listed};
use crate::lb::{self, CertificateTarget, Observation};

/// How the new certificate is named in a preview (its hash is not known yet).
pub const NEW: &str = "<new>";

/// Reads what the preview needs and returns its lines.
pub async fn check(config: &Config, gcp: &Gcp) -> Vec<Line> {
    if config.certificates.is_empty() {
        return Vec::new();
    }
    let proxies = match gcp.list_target_https_proxies().await {
        Ok(p) => p,
        Err(e) => {
            return vec![Line::skip(format!(
                "takeover preview: not shown (cannot list target HTTPS proxies: {})",
                e.to_string().lines().next().unwrap_or_default()
            ))];
        }
    };
    let mut lines = Vec::new();
    for cert in &config.certificates {
        // A missing proxy is reported by the proxy check.
        let Ok(obs) = lb::choose(gcp, cert).observe(cert).await else {
            continue;
        };
        if let Some(map) = &cert.certificate_map {
            lines.extend(preview(
                cert,
                &obs,
                &proxies,
                &cert.adopt,
                &[],
                &gcp.project,
            ));
            lines.extend(adopted_in_map(cert, map, gcp).await);
            continue;
        }
        let mut adopted = Vec::new();
        for a in &cert.adopt {
            match gcp.get_ssl_certificate(a).await {
                Ok(Some(c)) => {
                    adopted.push(Some(lb::observe::served_from(&cert.name, "", c).listed()))
                }
                Ok(None) => adopted.push(None),
                Err(e) => lines.push(Line::warn(
                    format!(
                        "certificate {}: cannot read adopted sslCertificate {a}: {}",
                        cert.name,
                        e.to_string().lines().next().unwrap_or_default()
                    ),
                    "check the name and the permission compute.sslCertificates.get",
                )),
            }
        }
        lines.extend(preview(
            cert,
            &obs,
            &proxies,
            &cert.adopt,
            &adopted,
            &gcp.project,
        ));
    }
    lines
}

/// The adopted Certificate Manager certificates of a map-held certificate:
/// deleted by a renewal once no map entry uses them (`lb::certmap`'s clean-up).
async fn adopted_in_map(cert: &CertificateConfig, map: &str, gcp: &Gcp) -> Vec<Line> {
    let mut lines = Vec::new();
    for a in &cert.adopt {
        let what = format!("certificate {}: adopted certificate {a}", cert.name);
        match gcp.get_certificate(a).await {
            Ok(None) => lines.push(Line::ok(format!(
                "{what}: does not exist (nothing to delete)"
            ))),
            Ok(Some(c)) => {
                let ours_or_map: Vec<&str> = c
                    .used_by
                    .iter()
                    .map(|u| u.name.as_str())
                    .filter(|n| !n.contains(&format!("/certificateMaps/{map}/")))
                    .collect();
                if ours_or_map.is_empty() {
                    lines.push(Line::ok(format!(
                        "{what}: deleted by the next renewal once no entry of certificate map {map} uses it"
                    )));
                } else {
                    lines.push(Line::warn(
                        format!(
                            "{what}: used outside certificate map {map} ({}): it will be kept",
                            ours_or_map.join(", ")
                        ),
                        "point those entries elsewhere, or remove it from certificates[].adopt",
                    ));
                }
            }
            Err(e) => lines.push(Line::warn(
                format!(
                    "{what}: cannot read it: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
                "check the name and the permission certificatemanager.certs.get",
            )),
        }
    }
    lines
}

/// The preview of one certificate: a line per configured proxy (a warning when
/// a certificate would compete with ours), then one per adopted certificate
/// (`adopted` may be shorter than `adopt_names`: those not looked up get no line).
/// For a map-held certificate the frontends are the map's entries (one per
/// name, and PRIMARY), and hand-made certificates are Certificate Manager's.
/// `adopted[i]` is what `adopt_names[i]` is (`None`: it does not exist).
pub fn preview(
    cert: &CertificateConfig,
    obs: &Observation,
    all_proxies: &[TargetHttpsProxy],
    adopt_names: &[String],
    adopted: &[Option<Listed>],
    project: &str,
) -> Vec<Line> {
    let mut lines = Vec::new();
    // Where each superseded certificate leaves.
    let mut taken_off: Vec<(String, String)> = Vec::new();
    for p in &obs.proxies {
        let new_name = p
            .current(&obs.names)
            .first()
            .filter(|c| c.ours)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| NEW.to_string());
        let t = p.takeover(&obs.names, &new_name);
        for s in &t.superseded {
            taken_off.push((p.name.clone(), s.clone()));
        }
        let what = match &p.certificate_map {
            Some(map) if cert.certificate_map.is_some() => format!(
                "certificate {} for {} in certificate map {map}",
                cert.name, p.name
            ),
            _ => format!("certificate {} on target HTTPS proxy {}", cert.name, p.name),
        };
        let mut parts = Vec::new();
        if !t.changes() {
            parts.push(format!("already serves {new_name}; nothing to replace"));
        } else {
            let mut replaced: Vec<String> = t
                .replaced_ours
                .iter()
                .map(|n| format!("{n} (ours, deleted once free)"))
                .collect();
            for s in &t.superseded {
                let fate = if adopt_names.contains(s) && cert.certificate_map.is_some() {
                    "hand-made, adopted: deleted after the swap once no map entry uses it"
                        .to_string()
                } else if adopt_names.contains(s) {
                    "hand-made, adopted: deleted after the swap if no other proxy serves it"
                        .to_string()
                } else if cert.certificate_map.is_some() {
                    format!(
                        "hand-made: taken off the entry, kept in the project; delete it later with: {}",
                        takeover::certificate_manager_delete_command(project, s)
                    )
                } else {
                    format!(
                        "hand-made: taken off, kept in the project; delete it later with: {}",
                        takeover::delete_command(project, s)
                    )
                };
                replaced.push(format!("{s} ({fate})"));
            }
            if replaced.is_empty() {
                parts.push(format!("adds {new_name}"));
            } else {
                parts.push(format!("{new_name} replaces {}", replaced.join(", ")));
            }
        }
        if !t.kept.is_empty() {
            parts.push(format!("keeps {} in place", t.kept.join(", ")));
        }
        parts.push(format!(
            "list [{}] -> [{}]",
            t.before.join(", "),
            t.after.join(", ")
        ));
        lines.push(Line::ok(format!("{what}: {}", parts.join("; "))));
        for c in &t.competing {
            lines.push(Line::warn(
                format!("{what}: {c}"),
                format!(
                    "reissue {} without {}, or add its other names to certificates[].domains so gclb-acme replaces it",
                    c.certificate,
                    c.shared.join(", ")
                ),
            ));
        }
    }
    for (name, listed) in adopt_names.iter().zip(adopted) {
        let what = format!("certificate {}: adopted sslCertificate {name}", cert.name);
        let Some(listed) = listed else {
            lines.push(Line::ok(format!(
                "{what}: does not exist (nothing to delete)"
            )));
            continue;
        };
        // Proxies that will still list it after the swap.
        let served_by: Vec<String> = all_proxies
            .iter()
            .filter(|p| p.ssl_certificates.iter().any(|u| name_of(u) == name))
            .filter(|p| !taken_off.iter().any(|(tp, tn)| tp == &p.name && tn == name))
            .map(|p| p.name.clone())
            .collect();
        match takeover::may_delete_adopted(&obs.names, &cert.target_https_proxies, listed, &served_by) {
            Ok(()) => lines.push(Line::ok(format!(
                "{what}: deleted by the next renewal, after the new certificate is served on every configured proxy"
            ))),
            Err(refusal) => lines.push(Line::warn(
                format!("{what}: {refusal}"),
                "or remove it from certificates[].adopt",
            )),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::{ProxyObservation, ServedCertificate};
    use crate::preflight::Status;

    fn served(name: &str, sans: &[&str], ours: bool) -> ServedCertificate {
        ServedCertificate {
            name: name.into(),
            url: format!(
                "https://compute.googleapis.com/compute/v1/projects/p/global/sslCertificates/{name}"
            ),
            exists: true,
            ours,
            description: ours.then(|| crate::lb::naming::certificate_description("app", "ab")),
            expire_time: None,
            sans: sans.iter().map(|s| s.to_string()).collect(),
            leaf: None,
        }
    }

    fn cert(adopt: &[&str]) -> CertificateConfig {
        CertificateConfig {
            name: "app".into(),
            domains: vec!["app.example.test".into()],
            target_https_proxies: vec!["cloud-run-iap-http-proxy".into()],
            key_type: Default::default(),
            zone: None,
            reuse_key: false,
            adopt: adopt.iter().map(|s| s.to_string()).collect(),
            certificate_map: None,
            primary: false,
        }
    }

    fn walkthrough(extra: Vec<ServedCertificate>) -> Observation {
        let mut certificates = vec![
            served("cloud-run-iap-cert", &["app.example.test"], false),
            served("unrelated", &["other.test"], false),
        ];
        certificates.extend(extra);
        Observation {
            certificate: "app".into(),
            names: vec!["app.example.test".into()],
            proxies: vec![ProxyObservation {
                name: "cloud-run-iap-http-proxy".into(),
                self_link: String::new(),
                certificates,
                certificate_map: None,
            }],
        }
    }

    fn proxy(name: &str, certs: &[&str]) -> TargetHttpsProxy {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "selfLink": format!("https://compute.googleapis.com/compute/v1/projects/p/global/targetHttpsProxies/{name}"),
            "sslCertificates": certs.iter().map(|c| format!("https://compute.googleapis.com/compute/v1/projects/p/global/sslCertificates/{c}")).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn the_walkthrough_preview_names_replace_keep_and_the_delete_command() {
        let obs = walkthrough(vec![]);
        let all = [proxy(
            "cloud-run-iap-http-proxy",
            &["cloud-run-iap-cert", "unrelated"],
        )];
        let lines = preview(&cert(&[]), &obs, &all, &[], &[], "proj");
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0].what;
        assert_eq!(lines[0].status, Status::Ok);
        assert!(l.contains("<new> replaces cloud-run-iap-cert (hand-made: taken off, kept in the project; delete it later with: gcloud compute ssl-certificates delete cloud-run-iap-cert --global --project proj)"), "{l}");
        assert!(l.contains("keeps unrelated in place"), "{l}");
        assert!(
            l.contains("list [cloud-run-iap-cert, unrelated] -> [<new>, unrelated]"),
            "{l}"
        );
    }

    #[test]
    fn adoption_preview_refuses_a_certificate_another_proxy_serves() {
        let obs = walkthrough(vec![]);
        let hand = served("cloud-run-iap-cert", &["app.example.test"], false).listed();
        let all = [proxy(
            "cloud-run-iap-http-proxy",
            &["cloud-run-iap-cert", "unrelated"],
        )];
        let lines = preview(
            &cert(&["cloud-run-iap-cert"]),
            &obs,
            &all,
            &["cloud-run-iap-cert".into()],
            &[Some(hand.clone())],
            "proj",
        );
        assert!(lines[0].what.contains("hand-made, adopted"), "{lines:?}");
        assert_eq!(lines[1].status, Status::Ok);
        assert!(
            lines[1].what.contains("deleted by the next renewal"),
            "{lines:?}"
        );
        let all = [
            proxy(
                "cloud-run-iap-http-proxy",
                &["cloud-run-iap-cert", "unrelated"],
            ),
            proxy("staging-proxy", &["cloud-run-iap-cert"]),
        ];
        let lines = preview(
            &cert(&["cloud-run-iap-cert"]),
            &obs,
            &all,
            &["cloud-run-iap-cert".into()],
            &[Some(hand)],
            "proj",
        );
        assert_eq!(lines[1].status, Status::Warn);
        assert!(
            lines[1]
                .what
                .contains("target HTTPS proxy staging-proxy still serves it and is not configured"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_competing_certificate_is_a_warning() {
        let obs = walkthrough(vec![served(
            "wide",
            &["app.example.test", "www.other.test"],
            false,
        )]);
        let lines = preview(&cert(&[]), &obs, &[], &[], &[], "proj");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].what.contains("-> [<new>, unrelated, wide]"),
            "{lines:?}"
        );
        assert_eq!(lines[1].status, Status::Warn);
        assert!(
            lines[1]
                .what
                .contains("also lists wide for app.example.test"),
            "{lines:?}"
        );
        assert!(
            lines[1]
                .fix
                .as_deref()
                .unwrap_or("")
                .contains("reissue wide without app.example.test")
        );
    }

    #[test]
    fn a_map_held_preview_names_the_entry_and_certificate_managers_delete_command() {
        let mut c = cert(&["theirs-adopted"]);
        c.certificate_map = Some("sites".into());
        c.target_https_proxies.clear();
        let obs = Observation {
            certificate: "app".into(),
            names: vec!["app.example.test".into()],
            proxies: vec![ProxyObservation {
                name: "app.example.test".into(),
                self_link: String::new(),
                certificates: vec![
                    served("theirs", &["app.example.test"], false),
                    served("theirs-adopted", &["app.example.test"], false),
                ],
                certificate_map: Some("sites".into()),
            }],
        };
        let lines = preview(&c, &obs, &[], &c.adopt, &[], "proj");
        assert_eq!(lines.len(), 1, "{lines:?}");
        let l = &lines[0].what;
        assert!(
            l.starts_with("certificate app for app.example.test in certificate map sites: "),
            "{l}"
        );
        assert!(l.contains("theirs (hand-made: taken off the entry, kept in the project; delete it later with: gcloud certificate-manager certificates delete theirs --location=global --project proj)"), "{l}");
        assert!(
            l.contains("theirs-adopted (hand-made, adopted: deleted after the swap once no map entry uses it)"),
            "{l}"
        );
        assert!(!l.contains("target HTTPS proxy"), "{l}");
    }
}
