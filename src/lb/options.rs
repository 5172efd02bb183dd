//! What one installation is given and what it reports, whatever the target:
//! the options (verification, timeouts, the crash-test hook), the step
//! boundaries a hook sees, and the report.

use std::sync::Arc;
use std::time::Duration;

use crate::lb::LbError;
use crate::lb::takeover::Competitor;
use crate::lb::verify::{VerifyOptions, VerifyOutcome};

/// Called with the name of each step boundary as it is passed; returning `true`
/// stops the pipeline there with [`LbError::Aborted`], as a crash would.
pub type StepHook = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Names of the step boundaries a [`StepHook`] sees.
pub mod step {
    /// The issued certificate is persisted in the state directory.
    pub const PERSISTED: &str = "persisted";
    /// `sslCertificates.insert` was accepted; its operation is not waited for.
    pub const INSERT_REQUESTED: &str = "insert-requested";
    /// The insert operation is DONE.
    pub const INSERT_DONE: &str = "insert-done";
    /// Verification finished (or was skipped).
    pub const VERIFIED: &str = "verified";
    /// Certificate Manager: the certificate map was created.
    pub const CM_MAP_CREATED: &str = "cm-map-created";
    /// Certificate Manager: the certificate's create or patch was accepted;
    /// its operation is not waited for.
    pub const CM_CERTIFICATE_REQUESTED: &str = "cm-certificate-requested";
    /// Certificate Manager: the create or patch operation is done.
    pub const CM_CERTIFICATE_DONE: &str = "cm-certificate-done";

    /// Certificate Manager: the map entry `id` lists our certificate.
    pub fn entry(id: &str) -> String {
        format!("entry:{id}")
    }

    /// `setSslCertificates` on `proxy` is DONE.
    pub fn swapped(proxy: &str) -> String {
        format!("swapped:{proxy}")
    }

    /// The superseded certificate `name` is deleted.
    pub fn deleted(name: &str) -> String {
        format!("deleted:{name}")
    }
}

/// Tuning of [`lb::install`](crate::lb::install()).
#[derive(Clone)]
pub struct InstallOptions {
    /// Bound on waiting for one operation.
    pub operation_timeout: Duration,
    /// Attempts of a mutation whose operation ends DONE with a transient error
    /// (each attempt gets its own requestId, or Compute would hand back the
    /// failed operation again).
    pub attempts: u32,
    /// First wait before retrying a delete refused with
    /// `resourceInUseByAnotherResource` / `resourceNotReady`; it doubles.
    pub cleanup_initial: Duration,
    /// Attempts of such a delete.
    pub cleanup_attempts: u32,
    /// TLS verification after the swap; `None` turns it off.
    pub verify: Option<VerifyOptions>,
    /// Crash injection for tests.
    pub hook: Option<StepHook>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            operation_timeout: Duration::from_secs(300),
            attempts: 4,
            cleanup_initial: Duration::from_secs(2),
            // About a minute in all: a certificate just taken off a proxy can stay "in use"
            // for a short while after the proxy update is DONE.
            cleanup_attempts: 6,
            verify: Some(VerifyOptions::default()),
            hook: None,
        }
    }
}

impl std::fmt::Debug for InstallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallOptions")
            .field("operation_timeout", &self.operation_timeout)
            .field("attempts", &self.attempts)
            .field("cleanup_initial", &self.cleanup_initial)
            .field("cleanup_attempts", &self.cleanup_attempts)
            .field("verify", &self.verify)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl InstallOptions {
    pub(crate) fn at(&self, step: &str) -> Result<(), LbError> {
        match &self.hook {
            Some(h) if h(step) => Err(LbError::Aborted(step.to_string())),
            _ => Ok(()),
        }
    }

    /// Passes the step boundary `step` (used by the pipeline for steps outside
    /// this module, e.g. [`step::PERSISTED`]).
    pub fn passed(&self, step: &str) -> Result<(), LbError> {
        self.at(step)
    }
}

/// What [`lb::install`](crate::lb::install()) did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct InstallReport {
    /// The sslCertificates resource now served.
    pub resource: String,
    /// False when it already existed (a resumed run).
    pub uploaded: bool,
    /// Proxies whose list was changed.
    pub swapped: Vec<String>,
    /// One outcome per proxy, when verification is on.
    pub verify: Vec<VerifyOutcome>,
    /// Superseded certificates of ours that were deleted.
    pub deleted: Vec<String>,
    /// Hand-made certificates the new one took the place of, on some proxy.
    pub superseded: Vec<HandMade>,
    /// Certificates left on a proxy that compete with ours for a name.
    pub competing: Vec<Competitor>,
    /// Adopted hand-made certificates deleted after the swap.
    pub adopted_deleted: Vec<String>,
    /// Why adopted certificates were not deleted.
    pub adoption_refused: Vec<String>,
}

/// A hand-made certificate taken off the configured proxies.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HandMade {
    pub name: String,
    /// Configured proxies it was taken off.
    pub taken_off: Vec<String>,
    /// Proxies of the project that still list it (none configured here).
    pub still_served_by: Vec<String>,
    /// Deleted, because it was adopted.
    pub deleted: bool,
    /// How to delete it by hand, when it was kept.
    pub delete_command: Option<String>,
}

impl std::fmt::Display for HandMade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hand-made sslCertificate {} was replaced on {}",
            self.name,
            self.taken_off.join(", ")
        )?;
        if self.deleted {
            return write!(f, " and deleted (adopted)");
        }
        if self.still_served_by.is_empty() {
            write!(
                f,
                " and is no longer served by any proxy; gclb-acme keeps it"
            )?;
        } else {
            write!(
                f,
                "; target HTTPS proxy {} (not configured here) still serves it; gclb-acme keeps it",
                self.still_served_by.join(", ")
            )?;
        }
        if let Some(c) = &self.delete_command {
            write!(f, "; delete it with: {c}")?;
        }
        Ok(())
    }
}
