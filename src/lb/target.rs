//! The certificate-target seam: where an issued certificate is put so the load
//! balancer serves it. The certificate pipeline (renew, the daemon, `status`,
//! `check`) talks to [`CertificateTarget`] only; [`choose`](crate::lb::choose) is the one place
//! that picks the implementation from the configuration.
//!
//! Implementations:
//! - `lb::install`'s `SslCertificates`: Compute `sslCertificates` listed on
//!   target HTTPS proxies.
//! - `lb::certmap`'s `CertificateMaps` (issue #16): a Certificate Manager
//!   certificate map. What differs from the contract below, in its module doc:
//!   the frontends are the map's entries for the configured names (and the
//!   PRIMARY entry), not proxies; ours is marked by labels; the upload
//!   **patches one certificate in place** (a stable id, not a name derived
//!   from the leaf), so clean-up has nothing of ours to delete; an entry is
//!   changed only when it does not list our certificate alone; a missing map
//!   or entry is "nothing served", created by the first installation.
//!
//! A third is a new module implementing the trait, a variant of `lb::Target`
//! and of `lb::TargetRun` (`lb/chosen.rs`), and one arm in `lb::choose`.

use std::future::Future;

use crate::acme::IssuedCertificate;
use crate::config::CertificateConfig;
use crate::lb::left_behind::{LeftBehind, LeftBehindError};
use crate::lb::options::{InstallOptions, InstallReport, step};
use crate::lb::{LbError, Observation};

/// What [`CertificateTarget::upload`] is given.
#[derive(Clone, Copy)]
pub enum Upload<'a> {
    /// A freshly issued certificate (persisted in pending/ by the caller).
    Issued(&'a IssuedCertificate),
    /// A certificate of ours already uploaded under this resource name and
    /// served somewhere: nothing is uploaded, the rest of the steps run (used
    /// to take the place of hand-made certificates without issuing).
    Uploaded(&'a str),
}

/// A place the load balancer serves certificates from.
///
/// One installation is `upload` -> `attach` -> `clean_up`, in that order, with
/// [`install()`] / [`retake()`] as the only drivers; `observe` stands alone.
///
/// # Contract
///
/// **GCP is the source of truth.** Every step reads what the cloud holds first
/// and does only what is missing. A step repeated with the same input after a
/// crash anywhere inside it (or after it) converges to the same end state and
/// creates no duplicate: no second resource, no second entry on a proxy, no
/// issuance (issuing is not the target's business at all). Mutations are
/// idempotent by what they do (a resource name derived from the certificate, a
/// whole list set), not by their request id: ids are fresh per run and attempt
/// (an HTTP retry inside one call keeps its id), so Compute never answers with
/// an operation of an earlier life of a resource (issue #20).
///
/// - **observe**: what is served *now* for the certificate's names, per
///   frontend (target proxy) in configuration order, each served certificate
///   with its names, expiry, parsed leaf and whether gclb-acme created it for
///   this `[[certificates]]` entry. Read-only. Fails with a typed error when a
///   configured frontend is missing or cannot take certificates this way.
///   `left_behind` completes it for `status` (see there).
/// - **upload**: checks that every configured frontend can take the new
///   certificate *before* creating anything (a refusal leaves nothing behind:
///   no unused certificate eating quota), then creates it under a name derived
///   from its leaf hash, unless a resource of ours with that hash exists (a
///   resumed run). A resource with our name that is not ours is never
///   overwritten ([`LbError::NameTaken`]). Retry after a crash: the name is the
///   same, so the upload is found done (listed, or `alreadyExists`).
/// - **attach**: makes every configured frontend serve the new certificate. It
///   must never leave a moment in which a frontend serves no valid certificate
///   for the names: the old certificate is *replaced in place* in one atomic
///   update per frontend (never removed first, then added), everything else on
///   the frontend keeps its place and order, and nothing we did not create is
///   taken off unless the takeover rules (`lb::takeover`) say the new
///   certificate fully supersedes it. When verification is on and the
///   certificate was just uploaded, it waits until TLS shows the new serial.
///   Retry after a crash: a frontend already serving the new certificate is
///   left unchanged; the others get the same update. Frontends are updated
///   at once; one that fails keeps its old certificate and fails the attach.
/// - **clean_up**: runs only after `attach` returned, i.e. once the new
///   certificate is served on *every* configured frontend. Deletes only
///   certificates gclb-acme created for this entry that no frontend of the
///   project uses any more, and hand-made ones the user adopted by exact name
///   and that no frontend still serves; it reports (never deletes) every other
///   hand-made certificate it took the place of, with the command to delete
///   it. Retry after a crash: a certificate already gone counts as deleted; a
///   certificate still settling ("in use", "not ready") is retried with back-off.
///
/// **Concurrency.** One installation per `[[certificates]]` entry at a time:
/// callers hold that entry's lock in the state directory (see
/// [`crate::reconcile::lock_certificate`]). Different entries may run at once
/// (`daemon.concurrency`). Each attach re-reads a frontend right before its
/// update and replaces only its own entry's certificates, so entries on
/// different frontends never interfere. Two entries sharing one frontend are
/// *not* serialised today: `setSslCertificates` carries no fingerprint, so two
/// updates of the same proxy racing can lose one (the proxy keeps serving a
/// valid older certificate of that entry, never none). An implementation whose
/// API offers a fingerprint or etag must send it; the sslCertificates one
/// would need a per-proxy lock to close this. Implementations hold no state
/// between installations; everything a run needs travels in
/// [`CertificateTarget::Run`].
pub trait CertificateTarget: Sync {
    /// What one installation carries from `upload` to `clean_up`.
    type Run: Send;
    /// Project-wide reads shared by the [`left_behind`](Self::left_behind)
    /// calls of one `status` run (read at most once).
    type Project: Default + Sync;

    /// What the configured frontends serve now.
    fn observe(
        &self,
        cert: &CertificateConfig,
    ) -> impl Future<Output = Result<Observation, LbError>> + Send;

    /// The other half of observing, for `status`: hand-made certificates the
    /// configured names fully cover that no configured frontend serves any
    /// more (left by a takeover), with where they are still served and the
    /// command that deletes them. Read-only; `Err` says why it cannot tell.
    fn left_behind(
        &self,
        cert: &CertificateConfig,
        project: &Self::Project,
    ) -> impl Future<Output = Result<Vec<LeftBehind>, LeftBehindError>> + Send;

    /// Checks every frontend can take the certificate, then uploads it.
    /// `observed`: what [`observe`](Self::observe) returned at the start of
    /// this installation, under the entry's lock, if the caller has it; an
    /// implementation may check the frontends against it instead of reading
    /// them again (the attach re-reads each frontend before changing it).
    fn upload(
        &self,
        cert: &CertificateConfig,
        what: Upload<'_>,
        observed: Option<&Observation>,
        opts: &InstallOptions,
    ) -> impl Future<Output = Result<Self::Run, LbError>> + Send;

    /// Serves the uploaded certificate on every configured frontend.
    fn attach(
        &self,
        cert: &CertificateConfig,
        run: &mut Self::Run,
        opts: &InstallOptions,
    ) -> impl Future<Output = Result<(), LbError>> + Send;

    /// Deletes what was replaced and may go; says what was kept.
    fn clean_up(
        &self,
        cert: &CertificateConfig,
        run: Self::Run,
        opts: &InstallOptions,
    ) -> impl Future<Output = Result<InstallReport, LbError>> + Send;
}

/// Installs `issued` on every frontend of `cert`: upload, attach, clean up.
/// The caller removes the pending file once this returns `Ok`.
pub async fn install<T: CertificateTarget>(
    target: &T,
    cert: &CertificateConfig,
    issued: &IssuedCertificate,
    opts: &InstallOptions,
) -> Result<InstallReport, LbError> {
    let run = serve(target, cert, issued, None, opts).await?;
    target.clean_up(cert, run, opts).await
}

/// The first half of [`install`]: upload and attach, so that `issued` is
/// served on every frontend when this returns. The caller then runs
/// [`CertificateTarget::clean_up`] with the run, whenever it likes (off the
/// critical path), and removes the pending file once that returns `Ok`.
pub async fn serve<T: CertificateTarget>(
    target: &T,
    cert: &CertificateConfig,
    issued: &IssuedCertificate,
    observed: Option<&Observation>,
    opts: &InstallOptions,
) -> Result<T::Run, LbError> {
    let mut run = target
        .upload(cert, Upload::Issued(issued), observed, opts)
        .await?;
    target.attach(cert, &mut run, opts).await?;
    opts.passed(step::VERIFIED)?;
    Ok(run)
}

/// Puts the certificate of ours `resource`, already uploaded and served on some
/// frontend, in the place of hand-made certificates it supersedes, without
/// issuing: attach, clean up, hand over.
pub async fn retake<T: CertificateTarget>(
    target: &T,
    cert: &CertificateConfig,
    resource: &str,
    opts: &InstallOptions,
) -> Result<InstallReport, LbError> {
    let mut run = target
        .upload(cert, Upload::Uploaded(resource), None, opts)
        .await?;
    target.attach(cert, &mut run, opts).await?;
    opts.passed(step::VERIFIED)?;
    target.clean_up(cert, run, opts).await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::config::KeyType;

    /// Records the steps the drivers call; `attach` fails when told to.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        attach_fails: bool,
    }

    impl Recorder {
        fn log(&self, s: &str) {
            if let Ok(mut c) = self.calls.lock() {
                c.push(s.to_string());
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl CertificateTarget for Recorder {
        type Run = String;
        type Project = ();

        async fn observe(&self, _: &CertificateConfig) -> Result<Observation, LbError> {
            self.log("observe");
            Err(LbError::Aborted("not used".into()))
        }

        async fn left_behind(
            &self,
            _: &CertificateConfig,
            _: &(),
        ) -> Result<Vec<LeftBehind>, LeftBehindError> {
            self.log("left_behind");
            Ok(Vec::new())
        }

        async fn upload(
            &self,
            _: &CertificateConfig,
            what: Upload<'_>,
            _: Option<&Observation>,
            _: &InstallOptions,
        ) -> Result<String, LbError> {
            let Upload::Uploaded(r) = what else {
                return Err(LbError::Aborted("expected an uploaded resource".into()));
            };
            self.log(&format!("upload {r}"));
            Ok(r.to_string())
        }

        async fn attach(
            &self,
            _: &CertificateConfig,
            run: &mut String,
            _: &InstallOptions,
        ) -> Result<(), LbError> {
            self.log(&format!("attach {run}"));
            if self.attach_fails {
                return Err(LbError::Aborted("attach".into()));
            }
            Ok(())
        }

        async fn clean_up(
            &self,
            _: &CertificateConfig,
            run: String,
            opts: &InstallOptions,
        ) -> Result<InstallReport, LbError> {
            self.log(&format!("clean_up {run}"));
            opts.passed("cleaned")?;
            Ok(InstallReport {
                resource: run,
                ..InstallReport::default()
            })
        }
    }

    fn cert() -> CertificateConfig {
        CertificateConfig {
            name: "app".into(),
            domains: vec!["app.example.com".into()],
            target_https_proxies: vec!["p1".into()],
            key_type: KeyType::EcdsaP256,
            zone: None,
            reuse_key: false,
            adopt: Vec::new(),
            certificate_map: None,
            primary: false,
        }
    }

    /// Options whose hook records each step boundary in `t`'s log.
    fn hooked(t: &Arc<Recorder>, stop_at: &'static str) -> InstallOptions {
        let t = Arc::clone(t);
        InstallOptions {
            verify: None,
            hook: Some(Arc::new(move |s: &str| {
                t.log(&format!("step {s}"));
                s == stop_at
            })),
            ..InstallOptions::default()
        }
    }

    #[tokio::test]
    async fn the_driver_runs_upload_attach_then_clean_up_in_order() {
        let t = Arc::new(Recorder::default());
        let report = retake(&*t, &cert(), "app-ab", &hooked(&t, "none")).await;
        assert_eq!(report.map(|r| r.resource).ok().as_deref(), Some("app-ab"));
        assert_eq!(
            t.calls(),
            [
                "upload app-ab",
                "attach app-ab",
                "step verified",
                "clean_up app-ab",
                "step cleaned"
            ]
        );
    }

    #[tokio::test]
    async fn no_clean_up_unless_attach_finished_and_the_verified_step_was_passed() {
        let t = Arc::new(Recorder {
            attach_fails: true,
            ..Recorder::default()
        });
        assert!(
            retake(&*t, &cert(), "app-ab", &hooked(&t, "none"))
                .await
                .is_err()
        );
        assert_eq!(t.calls(), ["upload app-ab", "attach app-ab"]);

        // A crash right after attach: clean-up is left to the next run.
        let t = Arc::new(Recorder::default());
        let err = retake(&*t, &cert(), "app-ab", &hooked(&t, step::VERIFIED)).await;
        assert!(matches!(err, Err(LbError::Aborted(s)) if s == step::VERIFIED));
        assert_eq!(
            t.calls(),
            ["upload app-ab", "attach app-ab", "step verified"]
        );
    }
}
