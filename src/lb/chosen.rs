//! The target chosen for each `[[certificates]]` entry: [`choose`] is the one
//! place that reads the configuration to pick an implementation of
//! [`CertificateTarget`], and [`Target`] dispatches to it.

use crate::acme::IssuedCertificate;
use crate::config::CertificateConfig;
use crate::gcp::Gcp;
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
}

/// One installation of the chosen implementation.
pub enum TargetRun {
    SslCertificates(install::Run),
}

/// The project-wide reads of every implementation, for one `status` run.
#[derive(Default)]
pub struct TargetProject {
    ssl_certificates: left_behind::Project,
}

/// The one place that picks the implementation for `cert`. Every entry uses
/// `sslCertificates` on its target HTTPS proxies today; the setting that
/// selects Certificate Manager maps (issue #16) is read here and nowhere else.
pub fn choose<'a>(gcp: &'a Gcp, _cert: &CertificateConfig) -> Target<'a> {
    Target::SslCertificates(SslCertificates { gcp })
}

impl CertificateTarget for Target<'_> {
    type Run = TargetRun;
    type Project = TargetProject;

    async fn observe(&self, cert: &CertificateConfig) -> Result<Observation, LbError> {
        let Target::SslCertificates(t) = self;
        t.observe(cert).await
    }

    async fn left_behind(
        &self,
        cert: &CertificateConfig,
        project: &TargetProject,
    ) -> Result<Vec<LeftBehind>, LeftBehindError> {
        let Target::SslCertificates(t) = self;
        t.left_behind(cert, &project.ssl_certificates).await
    }

    async fn upload(
        &self,
        cert: &CertificateConfig,
        what: Upload<'_>,
        observed: Option<&Observation>,
        opts: &InstallOptions,
    ) -> Result<TargetRun, LbError> {
        let Target::SslCertificates(t) = self;
        t.upload(cert, what, observed, opts)
            .await
            .map(TargetRun::SslCertificates)
    }

    async fn attach(
        &self,
        cert: &CertificateConfig,
        run: &mut TargetRun,
        opts: &InstallOptions,
    ) -> Result<(), LbError> {
        // A run of one implementation handed to another would be a bug of the
        // drivers above, which keep both together; with a second variant this
        // match gets an arm refusing the mix.
        let (Target::SslCertificates(t), TargetRun::SslCertificates(r)) = (self, run);
        t.attach(cert, r, opts).await
    }

    async fn clean_up(
        &self,
        cert: &CertificateConfig,
        run: TargetRun,
        opts: &InstallOptions,
    ) -> Result<InstallReport, LbError> {
        let (Target::SslCertificates(t), TargetRun::SslCertificates(r)) = (self, run);
        t.clean_up(cert, r, opts).await
    }
}
