//! Why a subcommand failed, and the one place that turns it into an exit code.

use std::net::{AddrParseError, SocketAddr};
use std::path::PathBuf;

use gclb_acme::acme::AcmeError;
use gclb_acme::config::ConfigError;
use gclb_acme::daemon::DaemonError;
use gclb_acme::gcp::GcpError;
use gclb_acme::stack::StackError;
use gclb_acme::state::StateError;

/// Exit code for "it ran, and something is not healthy / failed".
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a configuration that cannot be used.
pub const EXIT_CONFIG: u8 = 2;

/// A subcommand that could not do its work. The text is what stderr shows
/// (each subcommand keeps the wording it always had).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Every problem of the configuration, one per line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "{}: no [stack] section: bootstrap and teardown need one (region, service, domains; see config/example.toml)",
        .0.display()
    )]
    NoStack(PathBuf),
    /// `[stack]` cannot be turned into the resources to build.
    #[error("error: {0}")]
    StackConfig(StackError),
    #[error("error: {0}")]
    Stack(#[from] StackError),
    /// `certificate-map attach` / `detach`.
    #[error("error: {0}")]
    Move(#[from] gclb_acme::stack::MoveError),
    /// The certificate installed into the map before an attach failed.
    #[error("error: installing certificate {name} into certificate map {map} first: {message}")]
    InstallFirst {
        name: String,
        map: String,
        message: String,
    },
    /// The client of `bootstrap`/`teardown`.
    #[error("error: {0}")]
    Gcp(Box<GcpError>),
    /// The client of `renew`/`status`.
    #[error("FAIL  Google Cloud: {0}")]
    GoogleCloud(Box<GcpError>),
    #[error("FAIL  state directory: {0}")]
    StateDir(StateError),
    /// The state directory `teardown` clears.
    #[error("error: {0}")]
    State(StateError),
    #[error("FAIL  ACME account at {directory}: {source}")]
    Acme {
        directory: String,
        source: Box<AcmeError>,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot encode the report: {0}")]
    Encode(serde_json::Error),
    #[error("daemon.metrics_listen: {0}")]
    MetricsAddress(AddrParseError),
    #[error("cannot listen on daemon.metrics_listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("error: {0}")]
    Daemon(#[from] DaemonError),
    #[error(
        "teardown deletes the load balancer of Cloud Run service {service} in project {project}: stdin is not a terminal, so it cannot ask; run `gclb-acme teardown --dry-run` to see what it would delete, then `gclb-acme teardown --yes`"
    )]
    NoTerminal { service: String, project: String },
    #[error("gclb-acme manpage: writing {}: {source}", dir.display())]
    ManpageDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("gclb-acme manpage: {0}")]
    Manpage(std::io::Error),
    #[error("gclb-acme: writing to stdout: {0}")]
    Stdout(std::io::Error),
}

impl CliError {
    /// The exit code: 2 for a configuration that cannot be used, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_)
            | CliError::NoStack(_)
            | CliError::StackConfig(_)
            | CliError::MetricsAddress(_) => EXIT_CONFIG,
            _ => EXIT_FAILURE,
        }
    }
}
