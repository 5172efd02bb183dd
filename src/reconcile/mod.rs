//! The certificate reconciler behind `renew` and `status`: observe what the
//! certificate target serves ([`lb::CertificateTarget`]), decide
//! ([`decide::decide`], pure), then drive
//! issue -> persist -> upload -> attach (swap, verify) -> clean up, the last
//! off the critical path ([`Finish`]).
//!
//! Crash safety comes from two places only: the ACME engine persists the issued
//! certificate (0600) before returning it, and the pending file is removed only
//! after the new certificate is served everywhere and the old ones are gone. A
//! run that starts anywhere in between finds the pending file, installs it (each
//! install step reads GCP first and skips what is done) and never issues twice.

pub(crate) mod decide;
pub(crate) mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::acme::{AcmeClient, AcmeError, IssueRequest};
use crate::config::{CertificateConfig, Config};
use crate::gcp::Gcp;
use crate::lb::step;
use crate::lb::target::{self, CertificateTarget};
use crate::lb::{self, InstallOptions, InstallReport, LbError, VerifyOptions};
use crate::state::{CertificateLock, State, StateError};

pub use decide::{Decision, Reason, Verdict, decide};
pub use status::{CertificateStatus, StatusReport, status};

/// Why renewing one certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// Observing, uploading, swapping or cleaning up failed.
    #[error(transparent)]
    Lb(#[from] LbError),
    /// The CA, the account or the DNS-01 solver failed.
    #[error(transparent)]
    Acme(#[from] AcmeError),
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// `--certificate` names nothing configured.
    #[error("no certificate named {0} in the configuration")]
    UnknownCertificate(String),
    /// Another process kept the certificate's lock for longer than we wait.
    #[error("certificate {certificate}: another gclb-acme process{} has been working on it for over {} min; not touching it meanwhile", .holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default(), LOCK_WAIT.as_secs() / 60)]
    Locked {
        certificate: String,
        /// `pid N` (the directory's lock) or `daemon HOST/PID/ID` (a lease).
        holder: Option<String>,
    },
}

/// How long a renewal waits for another process working on the same
/// certificate: longer than any single renewal takes (the post-swap check is
/// the longest step, 5 min by default).
pub const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// Takes `certificate`'s lock (a `flock` in a directory, a lease in a
/// bucket), waiting (with a progress step) while another process holds it.
pub async fn lock_certificate(
    state: &State,
    certificate: &str,
) -> Result<CertificateLock, RenewError> {
    let started = Instant::now();
    let mut step = None;
    loop {
        match state.try_lock_certificate(certificate).await? {
            Ok(lock) => return Ok(lock),
            Err(busy) => {
                let holder = busy.holder;
                if started.elapsed() >= LOCK_WAIT {
                    return Err(RenewError::Locked {
                        certificate: certificate.to_string(),
                        holder,
                    });
                }
                if step.is_none() {
                    let who = holder
                        .as_ref()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default();
                    tracing::info!(
                        certificate,
                        holder = holder.as_deref().unwrap_or("unknown"),
                        "another gclb-acme process is working on this certificate: waiting for it"
                    );
                    step = Some(crate::progress::Step::start(format!(
                        "{certificate}: waiting for another gclb-acme process{who} working on it"
                    )));
                }
                tokio::time::sleep(lock_poll(busy.until_unix_ms)).await;
            }
        }
    }
}

/// How long to wait before trying a busy lock again: a `flock` costs nothing
/// to try (250 ms); a lease is a read of the bucket, so at most once a second,
/// and not before it can be taken over unless its holder releases it first.
fn lock_poll(until_unix_ms: Option<u64>) -> Duration {
    match until_unix_ms {
        None => Duration::from_millis(250),
        Some(until) => Duration::from_millis(
            until
                .saturating_sub(crate::state::lease::now_unix_ms())
                .clamp(250, 1_000),
        ),
    }
}

/// When the earliest-expiring certificate served for the configured names
/// ends; `None` when none is served.
pub fn served_until(obs: &lb::Observation) -> Option<OffsetDateTime> {
    obs.proxies
        .iter()
        .filter_map(|p| {
            p.current(&obs.names)
                .first()
                .and_then(|c| c.leaf.as_ref().map(|l| l.not_after))
        })
        .min()
}

/// Runs one step that changes something, only while `lock` holds: checked
/// before it starts, and the step is dropped (stopped at once) if the lock is
/// lost meanwhile. Dropping a step half-way is what a crash does, and every
/// step resumes from the state and what GCP shows.
async fn under<T, E>(
    lock: &mut CertificateLock,
    certificate: &str,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, RenewError>
where
    RenewError: From<E>,
{
    lock.check(certificate)?;
    tokio::select! {
        r = step => Ok(r?),
        () = lock.lost() => Err(StateError::LeaseLost {
            certificate: certificate.to_string(),
            message: "another daemon took it over, or it could not be renewed".into(),
        }
        .into()),
    }
}

impl RenewError {
    /// Whether a test hook stopped the pipeline.
    pub fn is_aborted(&self) -> bool {
        matches!(self, RenewError::Lb(LbError::Aborted(_)))
    }
}

/// What happened to one certificate.
#[derive(Clone, Debug)]
pub enum Done {
    /// Nothing was due.
    Healthy {
        renew_at: Option<(OffsetDateTime, crate::schedule::timing::Reason)>,
    },
    /// A certificate was installed (after issuing it, when `issued`).
    Installed {
        issued: bool,
        reasons: Vec<Reason>,
        serial: String,
        not_after: OffsetDateTime,
        report: InstallReport,
    },
    /// The served certificate of ours was put in the place of hand-made ones.
    Swapped {
        reasons: Vec<Reason>,
        report: InstallReport,
    },
}

/// The outcome of one certificate of a pass.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub certificate: String,
    pub done: Done,
    pub took: Duration,
}

impl Outcome {
    /// Served everywhere, not due, and (when verification ran) seen served.
    pub fn healthy(&self) -> bool {
        match &self.done {
            Done::Healthy { .. } | Done::Swapped { .. } => true,
            Done::Installed { report, .. } => report.verify.iter().all(|v| v.is_ok()),
        }
    }
}

/// How far [`Renewer::renew_until_served`] got.
pub enum Progress {
    /// Nothing more to do.
    Done(Box<Outcome>),
    /// The new certificate is served everywhere; [`Finish::run`] deletes what
    /// it replaced and forgets the pending file. It holds the certificate's
    /// lock until then.
    Served(Box<Finish>),
}

/// What is left of a renewal once the new certificate is served everywhere:
/// clean-up (deleting the certificate it replaced is an operation of seconds)
/// and forgetting the pending file. Off the critical path: callers run it
/// without holding a concurrency slot. Crash-safe as before: until it ends the
/// pending file stays, and a run that finds it installs it again (nothing to
/// upload or swap) and cleans up.
pub struct Finish {
    gcp: Gcp,
    acme: Arc<AcmeClient>,
    install: InstallOptions,
    cert: CertificateConfig,
    run: lb::TargetRun,
    lock: CertificateLock,
    issued: bool,
    reasons: Vec<Reason>,
    serial: String,
    not_after: OffsetDateTime,
    started: Instant,
}

impl Finish {
    /// Cleans up, then forgets the pending file.
    pub async fn run(self) -> Result<Outcome, RenewError> {
        let target = lb::choose(&self.gcp, &self.cert);
        let mut lock = self.lock;
        let report = under(
            &mut lock,
            &self.cert.name,
            target.clean_up(&self.cert, self.run, &self.install),
        )
        .await?;
        // Only now: the new certificate is served everywhere and the old ones are gone.
        lock.check(&self.cert.name)?;
        self.acme.mark_installed(&self.cert.name).await?;
        lock.release(&self.cert.name).await;
        Ok(Outcome {
            certificate: self.cert.name.clone(),
            done: Done::Installed {
                issued: self.issued,
                reasons: self.reasons,
                serial: self.serial,
                not_after: self.not_after,
                report,
            },
            took: self.started.elapsed(),
        })
    }
}

/// Everything a pass needs.
#[derive(Clone)]
pub struct Renewer {
    pub gcp: Gcp,
    pub acme: Arc<AcmeClient>,
    pub config: Arc<Config>,
    pub install: InstallOptions,
}

impl Renewer {
    /// Install options from the configuration: verification per
    /// `daemon.verify_after_swap`, trusting `acme.ca_roots` too.
    pub fn install_options(config: &Config) -> InstallOptions {
        InstallOptions {
            verify: config.daemon.verify_after_swap.then(|| VerifyOptions {
                extra_roots: config.acme.ca_roots.clone(),
                ..VerifyOptions::default()
            }),
            ..InstallOptions::default()
        }
    }

    /// One certificate: observe, decide, and do what the plan says.
    pub async fn renew(
        &self,
        cert: &CertificateConfig,
        force: bool,
    ) -> Result<Outcome, RenewError> {
        match self.renew_until_served(cert, force).await? {
            Progress::Done(outcome) => Ok(*outcome),
            Progress::Served(rest) => rest.run().await,
        }
    }

    /// [`renew`](Self::renew) up to the moment the new certificate is served
    /// everywhere (verified, when verification is on); the rest comes back as
    /// [`Progress::Served`].
    pub async fn renew_until_served(
        &self,
        cert: &CertificateConfig,
        force: bool,
    ) -> Result<Progress, RenewError> {
        self.renew_until_served_unless_changed(cert, force, None)
            .await
    }

    /// [`renew_until_served`](Self::renew_until_served), where `force` came
    /// from the caller's own schedule for the certificate it saw served until
    /// `seen` ([`served_until`] of its last observation): when what is served
    /// changed by the time the lock is taken (another daemon, or a `renew` by
    /// hand, renewed it meanwhile), the renewal is decided afresh instead of
    /// forced, so one renewal is never done twice.
    pub async fn renew_until_served_unless_changed(
        &self,
        cert: &CertificateConfig,
        mut force: bool,
        seen: Option<Option<OffsetDateTime>>,
    ) -> Result<Progress, RenewError> {
        let started = Instant::now();
        // Before observing: what another process is doing would make the
        // observation stale.
        let mut lock = lock_certificate(self.acme.state(), &cert.name).await?;
        // Where the certificate is served: chosen once, from the configuration.
        let target = lb::choose(&self.gcp, cert);
        let obs = target.observe(cert).await?;
        let pending = self.acme.pending(&cert.name).await?;
        if force
            && let Some(seen) = seen
            && seen != served_until(&obs)
        {
            tracing::info!(certificate = %cert.name, "what is served changed since it was found due (renewed by another process): deciding afresh");
            force = false;
        }
        let plan = decide(
            cert,
            &obs,
            pending.as_ref(),
            OffsetDateTime::now_utc(),
            force,
        );
        tracing::info!(certificate = %cert.name, action = ?plan.action, reasons = %join(&plan.reasons), "plan");
        let _step = (plan.action != Verdict::Nothing).then(|| {
            crate::progress::Step::start(format!(
                "{}: {}",
                cert.name,
                match plan.action {
                    Verdict::Issue => "renewing",
                    Verdict::Swap => "replacing a hand-made certificate",
                    _ => "installing the issued certificate",
                }
            ))
        });
        let (issued, fresh) = match (plan.action, pending) {
            (Verdict::Nothing, _) => {
                lock.release(&cert.name).await;
                return Ok(Progress::Done(Box::new(Outcome {
                    certificate: cert.name.clone(),
                    done: Done::Healthy {
                        renew_at: plan.renew_at,
                    },
                    took: started.elapsed(),
                })));
            }
            (Verdict::Swap, _) if plan.swap_to.is_some() => {
                let resource = plan.swap_to.clone().unwrap_or_default();
                let report = under(
                    &mut lock,
                    &cert.name,
                    target::retake(&target, cert, &resource, &self.install),
                )
                .await?;
                lock.release(&cert.name).await;
                return Ok(Progress::Done(Box::new(Outcome {
                    certificate: cert.name.clone(),
                    done: Done::Swapped {
                        reasons: plan.reasons,
                        report,
                    },
                    took: started.elapsed(),
                })));
            }
            (Verdict::Install, Some(p)) => (p, false),
            (Verdict::Install, None) | (Verdict::Issue, _) | (Verdict::Swap, _) => {
                let mut req = IssueRequest::new(cert, &self.config.acme);
                req.replaces = plan
                    .replaces
                    .as_ref()
                    .and_then(|l| l.certificate_identifier());
                let solver =
                    crate::dns::from_config(self.gcp.clone(), &self.config.dns, cert.zone.clone());
                // Under the lock, after re-reading what is served and what is
                // pending: another daemon cannot be issuing for this renewal.
                let issued = under(&mut lock, &cert.name, self.acme.issue(&req, &solver)).await?;
                self.install.passed(step::PERSISTED)?;
                (issued, true)
            }
        };
        // The observation was made at the start, under the lock: the upload
        // checks the proxies against it instead of reading them again.
        let run = under(
            &mut lock,
            &cert.name,
            target::serve(&target, cert, &issued, Some(&obs), &self.install),
        )
        .await?;
        Ok(Progress::Served(Box::new(Finish {
            gcp: self.gcp.clone(),
            acme: Arc::clone(&self.acme),
            install: self.install.clone(),
            cert: cert.clone(),
            run,
            lock,
            issued: fresh,
            reasons: plan.reasons,
            serial: issued.leaf.serial_hex.clone(),
            not_after: issued.leaf.not_after,
            started,
        })))
    }

    /// One pass over the configured certificates (or only `only`), at most
    /// `daemon.concurrency` at a time, in configuration order. A certificate
    /// gives its slot up once it is served: its clean-up (deleting what it
    /// replaced) runs beside the next ones.
    pub async fn renew_all(
        &self,
        only: Option<&str>,
        force: bool,
    ) -> Vec<(String, Result<Outcome, RenewError>)> {
        let certs: Vec<&CertificateConfig> = match only {
            Some(n) => match self.config.certificate(n) {
                Some(c) => vec![c],
                None => {
                    return vec![(n.to_string(), Err(RenewError::UnknownCertificate(n.into())))];
                }
            },
            None => self.config.certificates.iter().collect(),
        };
        let limit = Arc::new(tokio::sync::Semaphore::new(
            self.config.daemon.concurrency.max(1),
        ));
        let jobs = certs.into_iter().map(|c| {
            let limit = limit.clone();
            async move {
                // infallible: the semaphore is never closed.
                let permit = limit.acquire_owned().await.ok();
                let served = self.renew_until_served(c, force).await;
                drop(permit);
                let result = match served {
                    Ok(Progress::Served(rest)) => rest.run().await,
                    Ok(Progress::Done(outcome)) => Ok(*outcome),
                    Err(e) => Err(e),
                };
                (c.name.clone(), result)
            }
        });
        futures_util::future::join_all(jobs).await
    }
}

fn join(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
