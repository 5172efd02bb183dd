//! Installing certificates on the load balancer: observe what the target HTTPS
//! proxies serve, upload, swap onto the proxies, verify, delete what was replaced.
//!
//! ```text
//! observe   proxies -> the sslCertificates they serve (SANs, expiry, ours or not)
//! upload    list ours (already there? done) -> insert (requestId; a full quota refuses it) -> DONE
//! swap      every proxy at once: GET -> rewrite list (ours replaced in place) -> set -> DONE
//! verify    TLS to each forwarding rule's IP with SNI until the new serial shows
//! cleanup   delete ours superseded (Compute refuses one still in use: kept if a proxy serves it)
//! ```
//!
//! Every step reads GCP first and does only what is missing, so running it again
//! after a crash at any point converges without duplicating anything.
//!
//! The pipeline reaches these steps through the [`target::CertificateTarget`]
//! seam (observe, upload, attach, clean up; its contract is written there),
//! with the implementation picked by [`choose`] (`chosen.rs`); `install` holds the
//! first implementation, `sslCertificates` on target HTTPS proxies.

pub(crate) mod certmap;
pub(crate) mod chosen;
pub(crate) mod install;
pub(crate) mod left_behind;
pub mod naming;
pub(crate) mod observe;
pub(crate) mod options;
pub(crate) mod proxies;
pub(crate) mod takeover;
pub mod target;
pub(crate) mod verify;

use crate::gcp::GcpError;

pub use certmap::CertificateMaps;
pub use chosen::{Target, TargetProject, TargetRun, choose, install, kind_of, retake};
pub use install::cleanup;
pub use left_behind::{LeftBehind, LeftBehindError};
pub use observe::{Observation, ProxyObservation, ServedCertificate, observe};
pub use options::{HandMade, InstallOptions, InstallReport, StepHook, step};
pub use proxies::RewriteError;
pub use takeover::serves;
pub use target::CertificateTarget;
pub use verify::{VerifyOptions, VerifyOutcome};

/// Why installing (or observing) failed. Google's words are kept in [`GcpError`].
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// A Google API call failed.
    #[error(transparent)]
    Gcp(#[from] GcpError),
    /// A configured proxy does not exist.
    #[error(
        "target HTTPS proxy {proxy} (configured for certificate {certificate}) does not exist in project {project}"
    )]
    ProxyNotFound {
        proxy: String,
        certificate: String,
        project: String,
    },
    /// The proxy serves a Certificate Manager map, which overrides sslCertificates.
    #[error(
        "target HTTPS proxy {proxy} uses the certificate map {map}, which overrides its sslCertificates: set certificate_map = \"{}\" on this [[certificates]] entry to renew the certificate into that map, or detach the map from the proxy (`gclb-acme certificate-map detach --proxy {proxy}`)", map.rsplit('/').next().unwrap_or(map)
    )]
    CertificateMap { proxy: String, map: String },
    /// A configured proxy does not serve the entry's certificate map.
    #[error(
        "target HTTPS proxy {proxy} (configured for certificate {certificate}) does not serve the certificate map {map}{}: attach it with `gclb-acme certificate-map attach --proxy {proxy} --map {map}` (it first makes sure the map serves every name the proxy serves) or remove the proxy from target_https_proxies",
        match found { Some(m) => format!(" (it serves {m})"), None => " (it serves sslCertificates)".to_string() }
    )]
    MapNotOnProxy {
        proxy: String,
        map: String,
        certificate: String,
        found: Option<String>,
    },
    /// A Certificate Manager resource with our id is not labelled ours (never overwritten).
    #[error(
        "Certificate Manager {kind} {name} exists but does not carry gclb-acme's labels for certificate {certificate} (managed-by=gclb-acme, gclb-acme-certificate={certificate}): rename or delete it"
    )]
    NotOurs {
        kind: &'static str,
        name: String,
        certificate: String,
    },
    /// The map's entry for a configured hostname belongs to another
    /// `[[certificates]]` entry of gclb-acme (its labels): never touched.
    #[error(
        "certificate map {map} already has entry {entry} for {hostname}, created by gclb-acme for [[certificates]] {owner}: remove {hostname} from one of the two, or delete that entry (gcloud certificate-manager maps entries delete {entry} --map={map} --location=global)"
    )]
    EntryTaken {
        map: String,
        entry: String,
        hostname: String,
        owner: String,
    },
    /// The Certificate Manager target was used for an entry without `certificate_map`.
    #[error("certificate {certificate} has no certificate_map")]
    MapNotConfigured { certificate: String },
    /// The per-proxy limit of 15 certificates.
    #[error(transparent)]
    Rewrite(#[from] proxies::RewriteError),
    /// The project's SSL_CERTIFICATES quota has no room for one more: Compute
    /// refused the upload itself (403 `quotaExceeded`, or `QUOTA_EXCEEDED`
    /// inside its operation), so nothing was created. Google's answer is kept.
    #[error(
        "the SSL_CERTIFICATES quota of project {project} is exhausted, the upload was refused and nothing was created: delete unused certificates (gcloud compute ssl-certificates list) or request more quota; {source}"
    )]
    Quota {
        project: String,
        source: Box<GcpError>,
    },
    /// A resource with our name exists but is not ours (never overwritten).
    #[error(
        "sslCertificate {name} exists but was not created by gclb-acme for this certificate (its description does not carry our marker and leaf hash): rename or delete it"
    )]
    NameTaken { name: String },
    /// A step kept failing with transient errors.
    #[error("{what}: gave up after {attempts} attempts; last error: {last}")]
    GaveUp {
        what: String,
        attempts: u32,
        last: Box<GcpError>,
    },
    /// The issued chain cannot be read.
    #[error("the issued certificate cannot be read: {0}")]
    Certificate(#[from] crate::certs::CertError),
    /// Stopped at a named step by a [`StepHook`] (crash-injection tests).
    #[error("stopped after step {0} (test hook)")]
    Aborted(String),
}
