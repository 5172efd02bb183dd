//! `status`: per certificate and proxy, what is served, when it expires, whether
//! it is ours, when it renews, and any issued certificate waiting to be
//! installed. The JSON shape is stable: fields are only ever added (the daemon
//! will add its bookkeeping, e.g. `last_attempt` and `last_error`).

use serde::Serialize;
use time::OffsetDateTime;

use crate::acme::store;
use crate::config::{CertificateConfig, Config};
use crate::gcp::Gcp;
use crate::lb::TargetProject;
use crate::lb::takeover::{Competitor, Fate};
use crate::lb::{self, CertificateTarget};
use crate::reconcile::decide::{Verdict, decide};
use crate::state::StateDir;

/// Version of the JSON document.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub schema_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub project: String,
    pub certificates: Vec<CertificateStatus>,
}

impl StatusReport {
    /// Every certificate healthy.
    pub fn healthy(&self) -> bool {
        self.certificates.iter().all(|c| c.healthy)
    }
}

/// One configured certificate.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateStatus {
    pub name: String,
    pub domains: Vec<String>,
    /// Where the certificate lives: `ssl_certificates` (the proxies' lists)
    /// or `certificate_map` (a Certificate Manager map; `proxies` then holds
    /// one item per map entry of the configured names).
    pub target: &'static str,
    /// The Certificate Manager map, for `certificate_map`.
    pub certificate_map: Option<String>,
    /// Served everywhere by a certificate of ours that is not due, and no
    /// certificate competing with it (nor a configured proxy's first one)
    /// expires within `daemon.error_before`.
    pub healthy: bool,
    /// What `renew` would do now: `nothing`, `install`, `issue` or `swap` (put
    /// the served certificate of ours in place of a hand-made one).
    pub action: Verdict,
    /// Why, in words.
    pub reasons: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_renewal: Option<OffsetDateTime>,
    /// `lifetime`, `ari` or `emergency`.
    pub next_renewal_reason: Option<&'static str>,
    pub pending: Option<PendingStatus>,
    pub proxies: Vec<ProxyStatus>,
    /// Why the certificate could not be observed.
    pub error: Option<String>,
    /// Risks a renewal does not fix: a certificate competing with ours for a
    /// name, a proxy's first certificate expiring (issue #20).
    pub warnings: Vec<String>,
    /// Hand-made certificates for these names that no configured proxy lists.
    pub hand_made: Vec<HandMadeStatus>,
    /// The daemon's bookkeeping: its last attempt and failures.
    pub daemon: DaemonStatus,
}

/// What the daemon recorded for a certificate (state dir `daemon/<name>.json`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct DaemonStatus {
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// Consecutive failed attempts.
    pub failures: u32,
    pub last_error: Option<String>,
    /// No attempt before this (back-off).
    #[serde(with = "time::serde::rfc3339::option")]
    pub retry_not_before: Option<OffsetDateTime>,
    /// The CA's ARI window and the moment picked in it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ari_window_start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ari_window_end: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ari_chosen: Option<OffsetDateTime>,
}

impl DaemonStatus {
    fn load(state: &StateDir, name: &str) -> DaemonStatus {
        let b = crate::schedule::book::Book::load(state, name);
        DaemonStatus {
            last_attempt: b.last_attempt,
            last_success: b.last_success,
            failures: b.failures,
            last_error: b.last_error.map(|e| e.message),
            retry_not_before: b.not_before,
            ari_window_start: b.ari.as_ref().map(|a| a.start),
            ari_window_end: b.ari.as_ref().map(|a| a.end),
            ari_chosen: b.ari.as_ref().map(|a| a.chosen),
        }
    }
}

/// A hand-made certificate ours replaced (or would have), left in the project.
pub(crate) use crate::lb::LeftBehind as HandMadeStatus;

/// An issued certificate not yet installed.
#[derive(Clone, Debug, Serialize)]
pub struct PendingStatus {
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The sslCertificates name it is (or will be) uploaded as; for a map,
    /// the Certificate Manager certificate it is patched into.
    pub resource: String,
}

/// One proxy; for a certificate in a map, one map entry (`name` is its
/// hostname, or `PRIMARY`).
#[derive(Clone, Debug, Serialize)]
pub struct ProxyStatus {
    pub name: String,
    /// The map the entry belongs to (a certificate in a map only).
    pub certificate_map: Option<String>,
    /// The entry's id; `None` in a map when there is no entry for the name yet.
    pub entry: Option<String>,
    pub certificates: Vec<ServedStatus>,
}

/// One certificate a proxy serves.
#[derive(Clone, Debug, Serialize)]
pub struct ServedStatus {
    pub name: String,
    pub exists: bool,
    pub ours: bool,
    /// Covers every configured name.
    pub current: bool,
    /// `ours`, `superseded` (hand-made, fully covered by ours: the next renewal
    /// takes it off), `competing` (shares a name with ours and is kept) or
    /// `unrelated`.
    pub role: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_time: Option<OffsetDateTime>,
    /// Whole days left (negative once expired).
    pub days_left: Option<i64>,
    pub sans: Vec<String>,
    pub serial: Option<String>,
    pub key_type: Option<String>,
    pub issuer: Option<String>,
}

/// Observes every configured certificate (errors are reported per certificate).
pub async fn status(gcp: &Gcp, config: &Config, state: &StateDir) -> StatusReport {
    let now = OffsetDateTime::now_utc();
    let soon = config.daemon.error_before.get();
    let project = TargetProject::default();
    let mut certificates = Vec::new();
    for cert in &config.certificates {
        let target = lb::choose(gcp, cert);
        let mut s = one(&target, cert, state, now, soon).await;
        match target.left_behind(cert, &project).await {
            Ok(found) => s.hand_made = found,
            Err(e) => s.warnings.push(format!(
                "cannot look for hand-made certificates left behind: {e}"
            )),
        }
        certificates.push(s);
    }
    StatusReport {
        schema_version: SCHEMA_VERSION,
        generated_at: now,
        project: gcp.project.clone(),
        certificates,
    }
}

async fn one(
    target: &lb::Target<'_>,
    cert: &CertificateConfig,
    state: &StateDir,
    now: OffsetDateTime,
    soon: std::time::Duration,
) -> CertificateStatus {
    let mut s = CertificateStatus {
        name: cert.name.clone(),
        domains: cert.domains.clone(),
        target: target.kind(),
        certificate_map: cert.certificate_map.clone(),
        healthy: false,
        action: Verdict::Issue,
        reasons: Vec::new(),
        next_renewal: None,
        next_renewal_reason: None,
        pending: None,
        proxies: Vec::new(),
        error: None,
        warnings: Vec::new(),
        hand_made: Vec::new(),
        daemon: DaemonStatus::load(state, &cert.name),
    };
    let pending = match store::load_pending(state, &cert.name) {
        Ok(p) => p,
        Err(e) => {
            s.error = Some(e.to_string());
            None
        }
    };
    s.pending = pending.as_ref().map(|p| PendingStatus {
        serial: p.leaf.serial_hex.clone(),
        not_after: p.leaf.not_after,
        issued_at: p.issued_at,
        resource: match cert.certificate_map {
            Some(_) => lb::naming::cm_certificate_id(&cert.name),
            None => lb::naming::certificate_resource_name(&cert.name, &p.leaf.sha256_hex),
        },
    });
    let obs = match target.observe(cert).await {
        Ok(o) => o,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    let plan = decide(cert, &obs, pending.as_ref(), now, false);
    s.action = plan.action;
    let (warnings, expiring) = warnings(&obs, &plan.competing, now, soon);
    s.warnings = warnings;
    // A certificate a visitor can be handed for our names (or, first on the
    // proxy, without any name) that is expiring is not "ok" (issue #20).
    s.healthy = plan.action == Verdict::Nothing && s.error.is_none() && !expiring;
    s.reasons = plan.reasons.iter().map(|r| r.to_string()).collect();
    s.next_renewal = plan.renew_at.map(|r| r.0);
    s.next_renewal_reason = plan.renew_at.map(|r| r.1.as_str());
    s.proxies = obs
        .proxies
        .iter()
        .map(|p| ProxyStatus {
            name: p.name.clone(),
            certificate_map: p.certificate_map.clone(),
            entry: p
                .certificate_map
                .as_ref()
                .and_then(|_| p.self_link.rsplit('/').next())
                .filter(|e| !e.is_empty())
                .map(str::to_string),
            certificates: p
                .certificates
                .iter()
                .map(|c| ServedStatus {
                    name: c.name.clone(),
                    exists: c.exists,
                    ours: c.ours,
                    current: c.covers(&obs.names),
                    role: role(&obs.names, c),
                    expire_time: c.expire_time,
                    days_left: c.expire_time.map(|t| (t - now).whole_days()),
                    sans: c.sans.clone(),
                    serial: c.leaf.as_ref().map(|l| l.serial_hex.clone()),
                    key_type: c.leaf.as_ref().map(|l| l.public_key_algorithm.clone()),
                    issuer: c.leaf.as_ref().and_then(|l| l.issuer_cn.clone()),
                })
                .collect(),
        })
        .collect();
    s
}

fn role(names: &[String], c: &lb::ServedCertificate) -> &'static str {
    if c.ours {
        return "ours";
    }
    match lb::takeover::fate(names, "", &c.listed()) {
        Fate::Supersede => "superseded",
        Fate::Compete { .. } => "competing",
        _ => "unrelated",
    }
}

/// The warnings of one observation: competing certificates, and any
/// certificate a visitor of ours can be handed that expires within `soon`:
/// one competing for a name, or the proxy's first (the one Google serves when
/// the client sends no name it knows); the flag says whether one expires.
pub(crate) fn warnings(
    obs: &lb::Observation,
    competing: &[Competitor],
    now: OffsetDateTime,
    soon: std::time::Duration,
) -> (Vec<String>, bool) {
    let mut w: Vec<String> = competing.iter().map(|c| c.to_string()).collect();
    let mut expiring = false;
    for p in &obs.proxies {
        let at = crate::reconcile::decide::competitor_at(p);
        for (i, c) in p.certificates.iter().enumerate() {
            let competes = competing
                .iter()
                .any(|k| k.proxy == at && k.certificate == c.name);
            if c.ours || !(i == 0 || competes) {
                continue;
            }
            let Some(t) = c.expire_time else { continue };
            let left = t - now;
            if left < soon {
                expiring = true;
                let when = if left.is_negative() {
                    format!("expired {}", rfc3339(t))
                } else {
                    format!("expires in {} h ({})", left.whole_hours(), rfc3339(t))
                };
                let what = match (&p.certificate_map, i == 0) {
                    (Some(_), _) => "certificate",
                    (None, true) => {
                        "first certificate (served when a client sends no name it knows)"
                    }
                    (None, false) => "certificate competing for these names",
                };
                let frontend = match &p.certificate_map {
                    Some(m) => format!("certificate map {m}, the entry for {}", p.name),
                    None => format!("target HTTPS proxy {}", p.name),
                };
                w.push(format!(
                    "{frontend}: its {what} {} {when}, and gclb-acme does not renew it",
                    c.name
                ));
            }
        }
    }
    (w, expiring)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::{Observation, ProxyObservation, ServedCertificate};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);
    const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 86400);

    fn served(name: &str, sans: &[&str], ours: bool, days: i64) -> ServedCertificate {
        ServedCertificate {
            name: name.into(),
            url: String::new(),
            exists: true,
            ours,
            description: None,
            expire_time: Some(NOW + time::Duration::days(days)),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            leaf: None,
        }
    }

    fn obs(certificates: Vec<ServedCertificate>) -> Observation {
        Observation {
            certificate: "app".into(),
            names: vec!["example.test".into()],
            proxies: vec![ProxyObservation {
                name: "p1".into(),
                self_link: String::new(),
                certificates,
                certificate_map: None,
            }],
        }
    }

    #[test]
    fn a_proxys_first_certificate_expiring_in_a_day_is_not_ok() {
        // Issue #20: status said "ok" here.
        let o = obs(vec![
            served("first", &["other.test"], false, 1),
            served("app-ab", &["example.test"], true, 80),
        ]);
        let (w, expiring) = warnings(&o, &[], NOW, WEEK);
        assert!(expiring);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("target HTTPS proxy p1: its first certificate (served when a client sends no name it knows) first expires in 24 h"),
            "{}",
            w[0]
        );
        // Far from expiry: nothing to say.
        let o = obs(vec![
            served("first", &["other.test"], false, 60),
            served("app-ab", &["example.test"], true, 80),
        ]);
        assert_eq!(warnings(&o, &[], NOW, WEEK), (vec![], false));
        // An unrelated certificate further down is not ours to judge.
        let o = obs(vec![
            served("app-ab", &["example.test"], true, 80),
            served("later", &["other.test"], false, 1),
        ]);
        assert_eq!(warnings(&o, &[], NOW, WEEK), (vec![], false));
    }

    #[test]
    fn a_competing_certificate_is_named_and_counts_when_it_expires() {
        let o = obs(vec![
            served("app-ab", &["example.test"], true, 80),
            served("wide", &["example.test", "other.test"], false, 2),
        ]);
        let c = Competitor {
            proxy: "p1".into(),
            certificate: "wide".into(),
            shared: vec!["example.test".into()],
        };
        let (w, expiring) = warnings(&o, std::slice::from_ref(&c), NOW, WEEK);
        assert!(expiring);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("also lists wide for example.test"),
            "{}",
            w[0]
        );
        assert!(
            w[1].contains("certificate competing for these names wide expires in 48 h"),
            "{}",
            w[1]
        );
        assert_eq!(role(&o.names, &o.proxies[0].certificates[1]), "competing");
        assert_eq!(role(&o.names, &o.proxies[0].certificates[0]), "ours");
    }
}
