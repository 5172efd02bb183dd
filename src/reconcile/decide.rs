//! Whether a configured certificate needs work: a pure function of the
//! observation, the pending issued certificate, the configuration and the clock.

use std::fmt;

use serde::Serialize;
use sha2::Digest;
use time::OffsetDateTime;

use crate::acme::IssuedCertificate;
use crate::acme::store::normalize_names;
use crate::certs::LeafInfo;
use crate::config::{CertificateConfig, KeyType};
use crate::lb::observe::{Observation, ServedCertificate};
use crate::lb::takeover::{self, Competitor, Fate};
use crate::schedule::timing::{self, Validity};

/// What to do for one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Healthy and not due.
    Nothing,
    /// Install the pending issued certificate (never issue again).
    Install,
    /// Issue a new certificate, then install it.
    Issue,
    /// Put the served certificate of ours in the place of a hand-made one it
    /// supersedes (no issuance).
    Swap,
}

/// Why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `--force`.
    Forced,
    /// An issued certificate waits in the state directory.
    Pending { serial: String },
    /// A proxy serves nothing covering the configured names.
    NotServed { proxy: String },
    /// A proxy covers the names only with a certificate we did not create.
    Foreign { proxy: String, certificate: String },
    /// The served certificate of ours names other names than configured.
    NamesChanged { served: Vec<String> },
    /// The served key type differs from the configured one (`None`: unknown).
    KeyTypeChanged { served: Option<KeyType> },
    /// The served PEM cannot be read, so neither its key nor validity is known.
    Unreadable { certificate: String },
    /// Proxies serve different certificates of ours.
    Diverged,
    /// A proxy still lists a hand-made certificate ours fully covers, beside ours.
    Superseded { proxy: String, certificate: String },
    /// The renewal moment has passed.
    Due {
        at: OffsetDateTime,
        why: timing::Reason,
    },
}

/// How a frontend is named in a reason: a proxy by its name; a map entry
/// (see [`frontend`]) as it is.
fn at(frontend: &str) -> String {
    if frontend.starts_with("the entry for ") {
        frontend.to_string()
    } else {
        format!("proxy {frontend}")
    }
}

/// The name of a frontend of an observation in reasons: the proxy's name, or
/// `the entry for <hostname> in certificate map <map>` for a map entry.
fn frontend(p: &crate::lb::ProxyObservation) -> String {
    match &p.certificate_map {
        Some(m) => format!("the entry for {} in certificate map {m}", p.name),
        None => p.name.clone(),
    }
}

/// Where a [`Competitor`] is listed: the proxy's name, or `map M entry for H`
/// for a Certificate Manager map entry.
pub(crate) fn competitor_at(p: &crate::lb::ProxyObservation) -> String {
    match &p.certificate_map {
        Some(m) => format!("map {m} entry for {}", p.name),
        None => p.name.clone(),
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Forced => write!(f, "forced"),
            Reason::Pending { serial } => {
                write!(f, "issued certificate {serial} waits to be installed")
            }
            Reason::NotServed { proxy } => {
                write!(f, "{} serves no certificate for these names", at(proxy))
            }
            Reason::Foreign { proxy, certificate } => write!(
                f,
                "{} covers these names only with {certificate}, which gclb-acme did not create",
                at(proxy)
            ),
            Reason::NamesChanged { served } => {
                write!(f, "the names changed (served: {})", served.join(", "))
            }
            Reason::KeyTypeChanged { served } => match served {
                Some(k) => write!(f, "the key type changed (served: {k})"),
                None => write!(f, "the key type changed (served: unsupported)"),
            },
            Reason::Unreadable { certificate } => {
                write!(f, "the served certificate {certificate} cannot be parsed")
            }
            Reason::Diverged => write!(f, "the proxies serve different certificates"),
            Reason::Superseded { proxy, certificate } => write!(
                f,
                "{} still lists {certificate}, a certificate gclb-acme did not create for these names, beside ours: visitors can be handed either",
                at(proxy)
            ),
            Reason::Due { at, why } => write!(
                f,
                "due since {} ({})",
                at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                why.as_str()
            ),
        }
    }
}

/// The decision for one certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub action: Verdict,
    /// Empty when there is nothing to do.
    pub reasons: Vec<Reason>,
    /// When the served certificate of ours renews (earliest over the proxies).
    pub renew_at: Option<(OffsetDateTime, timing::Reason)>,
    /// The served leaf of ours being replaced (ARI `replaces`).
    pub replaces: Option<LeafInfo>,
    /// With [`Verdict::Swap`]: the served certificate of ours to put in place.
    pub swap_to: Option<String>,
    /// Certificates kept on a proxy that compete with ours for a name.
    pub competing: Vec<Competitor>,
}

/// Spreads fallback renewals of different certificates deterministically, so
/// `renew` is reproducible: the first 8 bytes of SHA-256(name) as a fraction.
pub(crate) fn jitter(certificate: &str) -> f64 {
    let d = sha2::Sha256::digest(certificate.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b) as f64 / u64::MAX as f64
}

/// When a served leaf of `certificate` renews (no ARI yet).
pub(crate) fn renewal_of(certificate: &str, leaf: &LeafInfo) -> (OffsetDateTime, timing::Reason) {
    let v = Validity {
        not_before: leaf.not_before,
        not_after: leaf.not_after,
    };
    timing::renewal_at(&v, None, jitter(certificate))
}

/// Whether `pending` was issued for the configuration as it is now.
pub(crate) fn pending_matches(cert: &CertificateConfig, pending: &IssuedCertificate) -> bool {
    pending.names == normalize_names(&cert.domains) && pending.key_type == cert.key_type
}

/// Decides what to do for `cert`.
pub fn decide(
    cert: &CertificateConfig,
    obs: &Observation,
    pending: Option<&IssuedCertificate>,
    now: OffsetDateTime,
    force: bool,
) -> Decision {
    let names = normalize_names(&cert.domains);
    let mut reasons = Vec::new();
    let mut served_ours: Vec<&ServedCertificate> = Vec::new();
    let mut competing = Vec::new();
    for p in &obs.proxies {
        let current = p.current(&names).first().copied();
        match current {
            None => reasons.push(Reason::NotServed { proxy: frontend(p) }),
            Some(c) if !c.ours => reasons.push(Reason::Foreign {
                proxy: frontend(p),
                certificate: c.name.clone(),
            }),
            Some(c) => served_ours.push(c),
        }
        let ours_here = current.filter(|c| c.ours).map(|c| c.name.as_str());
        for c in &p.certificates {
            match takeover::fate(&names, ours_here.unwrap_or(""), &c.listed()) {
                // Without ours on the proxy, Foreign/NotServed already says it.
                Fate::Supersede if ours_here.is_some() => reasons.push(Reason::Superseded {
                    proxy: frontend(p),
                    certificate: c.name.clone(),
                }),
                Fate::Compete { shared } => competing.push(Competitor {
                    proxy: competitor_at(p),
                    certificate: c.name.clone(),
                    shared,
                }),
                _ => {}
            }
        }
    }
    let mut distinct: Vec<&ServedCertificate> = Vec::new();
    for c in &served_ours {
        if !distinct.iter().any(|d| d.name == c.name) {
            distinct.push(c);
        }
    }
    if distinct.len() > 1 {
        reasons.push(Reason::Diverged);
    }
    let mut renew_at: Option<(OffsetDateTime, timing::Reason)> = None;
    let mut replaces = None;
    for c in &distinct {
        let mut sans = c.sans.clone();
        sans.sort();
        sans.dedup();
        if sans != names {
            reasons.push(Reason::NamesChanged {
                served: sans.clone(),
            });
        }
        let Some(leaf) = &c.leaf else {
            reasons.push(Reason::Unreadable {
                certificate: c.name.clone(),
            });
            continue;
        };
        if leaf.key_type != Some(cert.key_type) {
            reasons.push(Reason::KeyTypeChanged {
                served: leaf.key_type,
            });
        }
        let at = renewal_of(&cert.name, leaf);
        if renew_at.is_none_or(|r| at.0 < r.0) {
            renew_at = Some(at);
            replaces = Some(leaf.clone());
        }
    }
    if let Some((at, why)) = renew_at
        && now >= at
    {
        reasons.push(Reason::Due { at, why });
    }
    if force {
        reasons.insert(0, Reason::Forced);
    }
    // A pending certificate for the current configuration is installed, never
    // issued again: that is what keeps one issuance per renewal across crashes.
    if let Some(p) = pending
        && pending_matches(cert, p)
        && now < p.leaf.not_after
    {
        return Decision {
            action: Verdict::Install,
            reasons: vec![Reason::Pending {
                serial: p.leaf.serial_hex.clone(),
            }],
            renew_at,
            replaces,
            swap_to: None,
            competing,
        };
    }
    // Only hand-made certificates beside a healthy one of ours: put ours in
    // their place; issuing again would spend a certificate for nothing.
    let only_superseded = !reasons.is_empty()
        && reasons
            .iter()
            .all(|r| matches!(r, Reason::Superseded { .. }));
    let (action, swap_to) = if reasons.is_empty() {
        (Verdict::Nothing, None)
    } else if only_superseded && distinct.len() == 1 {
        (Verdict::Swap, Some(distinct[0].name.clone()))
    } else {
        (Verdict::Issue, None)
    };
    Decision {
        action,
        reasons,
        renew_at,
        replaces,
        swap_to,
        competing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::SecretPem;
    use crate::lb::naming;
    use crate::lb::observe::ProxyObservation;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);

    fn config(domains: &[&str]) -> CertificateConfig {
        CertificateConfig {
            name: "app".into(),
            domains: domains.iter().map(|s| s.to_string()).collect(),
            target_https_proxies: vec!["p1".into(), "p2".into()],
            key_type: KeyType::EcdsaP256,
            zone: None,
            reuse_key: false,
            adopt: Vec::new(),
            certificate_map: None,
            primary: false,
        }
    }

    fn leaf(sha: &str, names: &[&str], not_before: OffsetDateTime, days: i64) -> LeafInfo {
        LeafInfo {
            serial_hex: format!("{sha}01"),
            not_before,
            not_after: not_before + time::Duration::days(days),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            issuer_cn: Some("Pebble Intermediate CA".into()),
            public_key_algorithm: "ecdsa-p256".into(),
            key_type: Some(KeyType::EcdsaP256),
            sha256_hex: sha.repeat(64 / sha.len()),
            ari_id: Some("aki.serial".into()),
        }
    }

    fn served(ours: bool, l: &LeafInfo) -> ServedCertificate {
        let name = if ours {
            naming::certificate_resource_name("app", &l.sha256_hex)
        } else {
            "hand-made".to_string()
        };
        ServedCertificate {
            url: format!("https://x/global/sslCertificates/{name}"),
            name,
            exists: true,
            ours,
            description: None,
            expire_time: Some(l.not_after),
            sans: l.dns_names.clone(),
            leaf: Some(l.clone()),
        }
    }

    fn obs(p1: Vec<ServedCertificate>, p2: Vec<ServedCertificate>) -> Observation {
        let proxy = |name: &str, certificates| ProxyObservation {
            name: name.into(),
            self_link: String::new(),
            certificates,
            certificate_map: None,
        };
        Observation {
            certificate: "app".into(),
            names: vec!["*.example.test".into(), "example.test".into()],
            proxies: vec![proxy("p1", p1), proxy("p2", p2)],
        }
    }

    fn pending(names: &[&str], key_type: KeyType) -> IssuedCertificate {
        IssuedCertificate {
            certificate: "app".into(),
            names: names.iter().map(|s| s.to_string()).collect(),
            key_type,
            key_pem: SecretPem::new("k".into()),
            chain_pem: String::new(),
            leaf: leaf("cd", names, NOW - time::Duration::hours(1), 90),
            order_url: String::new(),
            directory: String::new(),
            issued_at: NOW,
        }
    }

    const NAMES: [&str; 2] = ["*.example.test", "example.test"];

    fn fresh() -> LeafInfo {
        leaf("ab", &NAMES, NOW - time::Duration::days(10), 90)
    }

    #[test]
    fn fresh_certificate_of_ours_everywhere_is_left_alone() {
        let l = fresh();
        let plan = decide(
            &config(&NAMES),
            &obs(vec![served(true, &l)], vec![served(true, &l)]),
            None,
            NOW,
            false,
        );
        assert_eq!(plan.action, Verdict::Nothing, "{:?}", plan.reasons);
        let (at, why) = plan.renew_at.unwrap();
        assert_eq!(why, timing::Reason::Lifetime);
        // Two thirds in, moved earlier by at most 1/20 of the lifetime.
        assert!(at <= l.not_after - time::Duration::days(30));
        assert!(at >= l.not_after - time::Duration::days(30) - time::Duration::hours(108));
        // Deterministic: same name, same moment.
        assert_eq!(renewal_of("app", &l), renewal_of("app", &l));
        assert_ne!(jitter("app"), jitter("other"));
    }

    #[test]
    fn due_certificate_is_renewed_with_replaces() {
        let l = leaf("ab", &NAMES, NOW - time::Duration::days(70), 90);
        let plan = decide(
            &config(&NAMES),
            &obs(vec![served(true, &l)], vec![served(true, &l)]),
            None,
            NOW,
            false,
        );
        assert_eq!(plan.action, Verdict::Issue);
        assert!(matches!(plan.reasons[..], [Reason::Due { .. }]));
        assert_eq!(plan.replaces, Some(l));
    }

    #[test]
    fn force_renews_a_fresh_certificate() {
        let l = fresh();
        let plan = decide(
            &config(&NAMES),
            &obs(vec![served(true, &l)], vec![served(true, &l)]),
            None,
            NOW,
            true,
        );
        assert_eq!(plan.action, Verdict::Issue);
        assert_eq!(plan.reasons, vec![Reason::Forced]);
    }

    #[test]
    fn a_pending_certificate_is_installed_never_issued_again() {
        let l = leaf("ab", &NAMES, NOW - time::Duration::days(89), 90);
        let mut p = pending(&NAMES, KeyType::EcdsaP256);
        p.names.sort();
        let plan = decide(
            &config(&NAMES),
            &obs(vec![served(true, &l)], vec![]),
            Some(&p),
            NOW,
            true,
        );
        assert_eq!(plan.action, Verdict::Install);
        assert!(matches!(plan.reasons[..], [Reason::Pending { .. }]));
        // A pending certificate for other names is not installed.
        let other = pending(&["example.test"], KeyType::EcdsaP256);
        let plan = decide(
            &config(&NAMES),
            &obs(vec![], vec![]),
            Some(&other),
            NOW,
            false,
        );
        assert_eq!(plan.action, Verdict::Issue);
        // Nor one of another key type.
        let rsa = pending(&NAMES, KeyType::Rsa2048);
        let plan = decide(
            &config(&NAMES),
            &obs(vec![], vec![]),
            Some(&rsa),
            NOW,
            false,
        );
        assert_eq!(plan.action, Verdict::Issue);
    }

    #[test]
    fn missing_or_foreign_on_any_proxy_renews() {
        let l = fresh();
        let plan = decide(
            &config(&NAMES),
            &obs(vec![served(true, &l)], vec![]),
            None,
            NOW,
            false,
        );
        assert_eq!(plan.reasons, vec![Reason::NotServed { proxy: "p2".into() }]);
        let plan = decide(
            &config(&NAMES),
            &obs(vec![served(true, &l)], vec![served(false, &l)]),
            None,
            NOW,
            false,
        );
        assert_eq!(
            plan.reasons,
            vec![Reason::Foreign {
                proxy: "p2".into(),
                certificate: "hand-made".into()
            }]
        );
        // A referenced certificate that does not exist covers nothing.
        let mut gone = served(true, &l);
        gone.exists = false;
        let plan = decide(
            &config(&NAMES),
            &obs(vec![served(true, &l)], vec![gone]),
            None,
            NOW,
            false,
        );
        assert_eq!(plan.action, Verdict::Issue);
    }

    #[test]
    fn a_hand_made_cover_beside_ours_is_swapped_out_without_issuing() {
        // Issue #20: [hand-made, ours] used to be "nothing to do" (and status
        // "ok") while visitors could still be handed the hand-made one.
        let l = fresh();
        let plan = decide(
            &config(&NAMES),
            &obs(
                vec![served(false, &l), served(true, &l)],
                vec![served(true, &l)],
            ),
            None,
            NOW,
            false,
        );
        assert_eq!(plan.action, Verdict::Swap, "{:?}", plan.reasons);
        assert_eq!(
            plan.reasons,
            vec![Reason::Superseded {
                proxy: "p1".into(),
                certificate: "hand-made".into()
            }]
        );
        assert_eq!(
            plan.swap_to,
            Some(naming::certificate_resource_name("app", &l.sha256_hex))
        );
        assert!(
            plan.reasons[0]
                .to_string()
                .contains("visitors can be handed either")
        );
        // Due as well: a renewal issues, and the install takes the hand-made one off too.
        let old = leaf("ab", &NAMES, NOW - time::Duration::days(70), 90);
        let plan = decide(
            &config(&NAMES),
            &obs(
                vec![served(false, &old), served(true, &old)],
                vec![served(true, &old)],
            ),
            None,
            NOW,
            false,
        );
        assert_eq!(plan.action, Verdict::Issue);
        assert_eq!(plan.swap_to, None);
    }

    #[test]
    fn a_partial_overlap_is_recorded_not_acted_on() {
        let l = fresh();
        let wide = leaf("ef", &["example.test", "other.test"], NOW, 90);
        let plan = decide(
            &config(&NAMES),
            &obs(
                vec![served(false, &wide), served(true, &l)],
                vec![served(true, &l)],
            ),
            None,
            NOW,
            false,
        );
        assert_eq!(plan.action, Verdict::Nothing, "{:?}", plan.reasons);
        assert_eq!(plan.competing.len(), 1);
        assert_eq!(plan.competing[0].shared, vec!["example.test".to_string()]);
    }

    #[test]
    fn names_and_key_type_changes_renew() {
        // A name was added: nothing covers it.
        let l = fresh();
        let mut cfg = config(&["*.example.test", "example.test", "www.other.test"]);
        let plan = decide(
            &cfg,
            &obs(vec![served(true, &l)], vec![served(true, &l)]),
            None,
            NOW,
            false,
        );
        assert!(matches!(plan.reasons[0], Reason::NotServed { .. }));
        // A name was removed: covered, but the names differ.
        cfg.domains = vec!["example.test".into()];
        let plan = decide(
            &cfg,
            &obs(vec![served(true, &l)], vec![served(true, &l)]),
            None,
            NOW,
            false,
        );
        assert!(matches!(plan.reasons[..], [Reason::NamesChanged { .. }]));
        // Key type.
        let mut cfg = config(&NAMES);
        cfg.key_type = KeyType::Rsa2048;
        let plan = decide(
            &cfg,
            &obs(vec![served(true, &l)], vec![served(true, &l)]),
            None,
            NOW,
            false,
        );
        assert_eq!(
            plan.reasons,
            vec![Reason::KeyTypeChanged {
                served: Some(KeyType::EcdsaP256)
            }]
        );
    }

    #[test]
    fn wildcards_are_compared_as_strings() {
        let l = leaf("ab", &["*.example.test"], NOW - time::Duration::days(1), 90);
        let plan = decide(
            &config(&["www.example.test"]),
            &obs(vec![served(true, &l)], vec![served(true, &l)]),
            None,
            NOW,
            false,
        );
        assert!(matches!(plan.reasons[0], Reason::NotServed { .. }));
    }

    #[test]
    fn diverged_proxies_renew_and_the_earliest_renewal_counts() {
        let a = fresh();
        let b = leaf("cd", &NAMES, NOW - time::Duration::days(20), 90);
        let plan = decide(
            &config(&NAMES),
            &obs(vec![served(true, &a)], vec![served(true, &b)]),
            None,
            NOW,
            false,
        );
        assert_eq!(plan.reasons, vec![Reason::Diverged]);
        assert_eq!(plan.renew_at, Some(renewal_of("app", &b)));
        assert_eq!(plan.replaces, Some(b));
    }

    #[test]
    fn unreadable_served_pem_renews() {
        let l = fresh();
        let mut s = served(true, &l);
        s.leaf = None;
        let plan = decide(
            &config(&NAMES),
            &obs(vec![s.clone()], vec![s]),
            None,
            NOW,
            false,
        );
        assert!(matches!(plan.reasons[..], [Reason::Unreadable { .. }]));
    }
}
