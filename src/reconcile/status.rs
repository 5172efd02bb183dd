//! `status`: per certificate and proxy, what is served, when it expires, whether
//! it is ours, when it renews, and any issued certificate waiting to be
//! installed. The JSON shape is stable: fields are only ever added (the daemon
//! will add its bookkeeping, e.g. `last_attempt` and `last_error`).

use serde::Serialize;
use time::OffsetDateTime;

use crate::acme::store;
use crate::config::{CertificateConfig, Config};
use crate::gcp::Gcp;
use crate::lb;
use crate::reconcile::decide::{Action, decide};
use crate::state::StateDir;

/// Version of the JSON document.
pub const SCHEMA_VERSION: u32 = 1;

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
    /// Served everywhere by a certificate of ours that is not due.
    pub healthy: bool,
    /// What `renew` would do now: `nothing`, `install` or `issue`.
    pub action: Action,
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
        let b = crate::daemon::book::Book::load(state, name);
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

/// An issued certificate not yet installed.
#[derive(Clone, Debug, Serialize)]
pub struct PendingStatus {
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The sslCertificates name it is (or will be) uploaded as.
    pub resource: String,
}

/// One proxy.
#[derive(Clone, Debug, Serialize)]
pub struct ProxyStatus {
    pub name: String,
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
    let mut certificates = Vec::new();
    for cert in &config.certificates {
        certificates.push(one(gcp, cert, state, now).await);
    }
    StatusReport {
        schema_version: SCHEMA_VERSION,
        generated_at: now,
        project: gcp.project.clone(),
        certificates,
    }
}

async fn one(
    gcp: &Gcp,
    cert: &CertificateConfig,
    state: &StateDir,
    now: OffsetDateTime,
) -> CertificateStatus {
    let mut s = CertificateStatus {
        name: cert.name.clone(),
        domains: cert.domains.clone(),
        healthy: false,
        action: Action::Issue,
        reasons: Vec::new(),
        next_renewal: None,
        next_renewal_reason: None,
        pending: None,
        proxies: Vec::new(),
        error: None,
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
        resource: lb::naming::certificate_resource_name(&cert.name, &p.leaf.sha256_hex),
    });
    let obs = match lb::observe(gcp, cert).await {
        Ok(o) => o,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    let plan = decide(cert, &obs, pending.as_ref(), now, false);
    s.action = plan.action;
    s.healthy = plan.action == Action::Nothing && s.error.is_none();
    s.reasons = plan.reasons.iter().map(|r| r.to_string()).collect();
    s.next_renewal = plan.renew_at.map(|r| r.0);
    s.next_renewal_reason = plan.renew_at.map(|r| r.1.as_str());
    s.proxies = obs
        .proxies
        .iter()
        .map(|p| ProxyStatus {
            name: p.name.clone(),
            certificates: p
                .certificates
                .iter()
                .map(|c| ServedStatus {
                    name: c.name.clone(),
                    exists: c.exists,
                    ours: c.ours,
                    current: c.covers(&obs.names),
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
