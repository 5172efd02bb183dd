//! Why the daemon could not start, or could not take a new configuration.

use std::path::PathBuf;

use crate::acme::AcmeError;
use crate::config::ConfigError;
use crate::gcp::GcpError;
use crate::schedule::window::CronError;
use crate::state::StateError;

/// Why the daemon could not start or build a renewer. A reload that fails is
/// logged and the previous configuration kept; at start it ends `run`.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state {}: {source}", dir.display())]
    State { dir: PathBuf, source: StateError },
    #[error(transparent)]
    Gcp(#[from] Box<GcpError>),
    #[error("ACME account at {directory}: {source}")]
    Acme {
        directory: String,
        source: Box<AcmeError>,
    },
    #[error("daemon.maintenance_window {0}")]
    Window(#[from] CronError),
    #[error("{signal} handler: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl From<GcpError> for DaemonError {
    fn from(e: GcpError) -> Self {
        DaemonError::Gcp(Box::new(e))
    }
}
