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
use crate::schedule::timing::{self, Validity};

/// What to do for one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Healthy and not due.
    Nothing,
    /// Install the pending issued certificate (never issue again).
    Install,
    /// Issue a new certificate, then install it.
    Issue,
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
    /// The renewal moment has passed.
    Due {
        at: OffsetDateTime,
        why: timing::Reason,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Forced => write!(f, "forced"),
            Reason::Pending { serial } => {
                write!(f, "issued certificate {serial} waits to be installed")
            }
            Reason::NotServed { proxy } => {
                write!(f, "proxy {proxy} serves no certificate for these names")
            }
            Reason::Foreign { proxy, certificate } => write!(
                f,
                "proxy {proxy} covers these names only with {certificate}, which gclb-acme did not create"
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
pub struct Plan {
    pub action: Action,
    /// Empty when there is nothing to do.
    pub reasons: Vec<Reason>,
    /// When the served certificate of ours renews (earliest over the proxies).
    pub renew_at: Option<(OffsetDateTime, timing::Reason)>,
    /// The served leaf of ours being replaced (ARI `replaces`).
    pub replaces: Option<LeafInfo>,
}

/// Spreads fallback renewals of different certificates deterministically, so
/// `renew` is reproducible: the first 8 bytes of SHA-256(name) as a fraction.
pub fn jitter(certificate: &str) -> f64 {
    let d = sha2::Sha256::digest(certificate.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b) as f64 / u64::MAX as f64
}

/// When a served leaf of `certificate` renews (no ARI yet).
pub fn renewal_of(certificate: &str, leaf: &LeafInfo) -> (OffsetDateTime, timing::Reason) {
    let v = Validity {
        not_before: leaf.not_before,
        not_after: leaf.not_after,
    };
    timing::renewal_at(&v, None, jitter(certificate))
}

/// Whether `pending` was issued for the configuration as it is now.
pub fn pending_matches(cert: &CertificateConfig, pending: &IssuedCertificate) -> bool {
    pending.names == normalize_names(&cert.domains) && pending.key_type == cert.key_type
}

/// Decides what to do for `cert`.
pub fn decide(
    cert: &CertificateConfig,
    obs: &Observation,
    pending: Option<&IssuedCertificate>,
    now: OffsetDateTime,
    force: bool,
) -> Plan {
    let names = normalize_names(&cert.domains);
    let mut reasons = Vec::new();
    let mut served_ours: Vec<&ServedCertificate> = Vec::new();
    for p in &obs.proxies {
        match p.current(&names).first() {
            None => reasons.push(Reason::NotServed {
                proxy: p.name.clone(),
            }),
            Some(c) if !c.ours => reasons.push(Reason::Foreign {
                proxy: p.name.clone(),
                certificate: c.name.clone(),
            }),
            Some(c) => served_ours.push(c),
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
        return Plan {
            action: Action::Install,
            reasons: vec![Reason::Pending {
                serial: p.leaf.serial_hex.clone(),
            }],
            renew_at,
            replaces,
        };
    }
    let action = if reasons.is_empty() {
        Action::Nothing
    } else {
        Action::Issue
    };
    Plan {
        action,
        reasons,
        renew_at,
        replaces,
    }
}
