//! The target chosen for each `[[certificates]]` entry: [`choose`] is the one
//! place that reads the configuration to pick an implementation of
//! [`CertificateTarget`], and [`Target`] dispatches to it.

use crate::acme::IssuedCertificate;
use crate::config::CertificateConfig;
use crate::gcp::Gcp;
use crate::lb::certmap::{self, CertificateMaps};
use crate::lb::install::{self, SslCertificates};
use crate::lb::left_behind::{self, LeftBehind, LeftBehindError};
use crate::lb::options::{InstallOptions, InstallReport};
use crate::lb::target::{self, CertificateTarget, Upload};
use crate::lb::{LbError, Observation};

/// Installs `issued` on every proxy of `cert` through the target [`choose`]
/// picks for it: upload, swap, verify, clean up. The caller removes the pending file
/// once this returns `Ok`.
pub async fn install(
    gcp: &Gcp,
    cert: &CertificateConfig,
    issued: &IssuedCertificate,
    opts: &InstallOptions,
) -> Result<InstallReport, LbError> {
    target::install(&choose(gcp, cert), cert, issued, opts).await
}

/// Puts the certificate of ours `resource`, already uploaded and served on some
/// proxy, in the place of hand-made certificates it supersedes (a stack left
/// with both by an earlier version), without issuing: swap, clean up, hand over.
pub async fn retake(
    gcp: &Gcp,
    cert: &CertificateConfig,
    resource: &str,
    opts: &InstallOptions,
) -> Result<InstallReport, LbError> {
    target::retake(&choose(gcp, cert), cert, resource, opts).await
}

/// The implementation chosen for one `[[certificates]]` entry.
pub enum Target<'a> {
    SslCertificates(SslCertificates<'a>),
    CertificateMap(CertificateMaps<'a>),
}

/// One installation of the chosen implementation.
pub enum TargetRun {
    SslCertificates(install::Run),
    CertificateMap(certmap::Run),
}

/// The project-wide reads of every implementation, for one `status` run.
#[derive(Default)]
pub struct TargetProject {
    ssl_certificates: left_behind::Project,
    certificate_maps: certmap::Project,
}

/// The one place that picks the implementation for `cert`: a Certificate
/// Manager map when `certificate_map` is set (issue #16; the setting is read
/// here and nowhere else), else `sslCertificates` on its target HTTPS proxies.
pub fn choose<'a>(gcp: &'a Gcp, cert: &CertificateConfig) -> Target<'a> {
    match cert.certificate_map {
        Some(_) => Target::CertificateMap(CertificateMaps { gcp }),
        None => Target::SslCertificates(SslCertificates { gcp }),
    }
}

/// [`Target::kind`] of what [`choose`] picks for `cert`, without a client
/// (metrics label certificates before any call).
pub fn kind_of(cert: &CertificateConfig) -> &'static str {
    match cert.certificate_map {
        Some(_) => "certificate_map",
        None => "ssl_certificates",
    }
}

impl Target<'_> {
    /// Where the certificate lives, as metrics and `status` label it:
    /// `ssl_certificates` or `certificate_map`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::SslCertificates(_) => "ssl_certificates",
            Target::CertificateMap(_) => "certificate_map",
        }
    }
}

/// A run handed to the other implementation: a bug of the drivers above.
fn mixed() -> LbError {
    LbError::Aborted("an installation run was handed to another certificate target".into())
}

impl CertificateTarget for Target<'_> {
    type Run = TargetRun;
    type Project = TargetProject;

    async fn observe(&self, cert: &CertificateConfig) -> Result<Observation, LbError> {
        match self {
            Target::SslCertificates(t) => t.observe(cert).await,
            Target::CertificateMap(t) => t.observe(cert).await,
        }
    }

    async fn left_behind(
        &self,
        cert: &CertificateConfig,
        project: &TargetProject,
    ) -> Result<Vec<LeftBehind>, LeftBehindError> {
        match self {
            Target::SslCertificates(t) => t.left_behind(cert, &project.ssl_certificates).await,
            Target::CertificateMap(t) => t.left_behind(cert, &project.certificate_maps).await,
        }
    }

    async fn upload(
        &self,
        cert: &CertificateConfig,
        what: Upload<'_>,
        observed: Option<&Observation>,
        opts: &InstallOptions,
    ) -> Result<TargetRun, LbError> {
        match self {
            Target::SslCertificates(t) => t
                .upload(cert, what, observed, opts)
                .await
                .map(TargetRun::SslCertificates),
            Target::CertificateMap(t) => t
                .upload(cert, what, observed, opts)
                .await
                .map(TargetRun::CertificateMap),
        }
    }

    async fn attach(
        &self,
        cert: &CertificateConfig,
        run: &mut TargetRun,
        opts: &InstallOptions,
    ) -> Result<(), LbError> {
        // A run of one implementation handed to another would be a bug of the
        // drivers above, which keep both together.
        match (self, run) {
            (Target::SslCertificates(t), TargetRun::SslCertificates(r)) => {
                t.attach(cert, r, opts).await
            }
            (Target::CertificateMap(t), TargetRun::CertificateMap(r)) => {
                t.attach(cert, r, opts).await
            }
            _ => Err(mixed()),
        }
    }

    async fn clean_up(
        &self,
        cert: &CertificateConfig,
        run: TargetRun,
        opts: &InstallOptions,
    ) -> Result<InstallReport, LbError> {
        match (self, run) {
            (Target::SslCertificates(t), TargetRun::SslCertificates(r)) => {
                t.clean_up(cert, r, opts).await
            }
            (Target::CertificateMap(t), TargetRun::CertificateMap(r)) => {
                t.clean_up(cert, r, opts).await
            }
            _ => Err(mixed()),
        }
    }
}
