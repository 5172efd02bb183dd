//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gclb_acme::logging::LogFormat;

/// Keeps ACME certificates on Google Cloud HTTPS load balancers valid, without a human.
///
/// It answers DNS-01 challenges through Cloud DNS, uploads each certificate as a
/// Compute Engine sslCertificate, swaps it onto your target HTTPS proxies, deletes the
/// one it replaced, and renews for ever as a systemd service.
///
/// Start with `gclb-acme check`, then `gclb-acme renew`, then enable the service
/// (`systemctl enable --now gclb-acme`).
#[derive(Parser, Debug)]
#[command(
    name = "gclb-acme",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "GCLB_ACME_CONFIG",
        default_value = gclb_acme::config::DEFAULT_PATH,
        value_name = "PATH"
    )]
    pub config: PathBuf,

    /// Log format: human text, or one JSON object per line. Under systemd, logs go
    /// to the journal with structured fields either way.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More detail (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less detail (-q warnings and errors only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: renew every configured certificate on schedule, for ever.
    ///
    /// Meant for systemd (Type=notify, watchdog, SIGHUP reloads the configuration).
    Run,
    /// One pass over the configured certificates: renew and install what needs it,
    /// then exit. Exits 0 only if every certificate is healthy afterwards.
    Renew(RenewArgs),
    /// Show what each proxy serves, when it expires and when it will be renewed.
    Status(StatusArgs),
    /// Validate the configuration and run preflight checks (credentials, APIs,
    /// permissions, zones, CAA records).
    Check,
    /// Build the Cloud Run + IAP + HTTPS load balancer stack of `[stack]`, with its
    /// first certificate. Safe to run again: it only creates or fixes what is missing.
    Bootstrap(BootstrapArgs),
    /// Remove what bootstrap created (and every certificate of ours), nothing else.
    Teardown(TeardownArgs),
    /// Move a target HTTPS proxy onto a Certificate Manager certificate map, or
    /// back to its sslCertificates, without a moment of no valid certificate.
    #[command(subcommand)]
    CertificateMap(CertificateMapCommand),
    /// Print a shell completion script (for packaging).
    #[command(hide = true)]
    Completions(CompletionsArgs),
    /// Print the man page in roff (for packaging).
    #[command(hide = true)]
    Manpage(ManpageArgs),
}

#[derive(Args, Debug)]
pub struct RenewArgs {
    /// Only this certificate (its `name` in the configuration).
    #[arg(long, value_name = "NAME")]
    pub certificate: Option<String>,
    /// Renew even if the served certificate is not due.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct TeardownArgs {
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `certificate-map attach` / `detach`.
#[derive(Subcommand, Debug)]
pub enum CertificateMapCommand {
    /// Serve the proxy from the map. Configured certificates of that map
    /// (`certificate_map`) are installed into it first; then the map must serve
    /// a valid certificate for every name the proxy serves now, else nothing
    /// changes. The proxy's sslCertificates are kept (ignored while the map is on).
    Attach(AttachArgs),
    /// Serve the proxy from its sslCertificates again. They must hold a valid
    /// certificate for every hostname of the map's entries, else nothing
    /// changes. The map, its entries and certificates are kept.
    Detach(DetachArgs),
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The target HTTPS proxy.
    #[arg(long, value_name = "NAME")]
    pub proxy: String,
    /// The certificate map (location global).
    #[arg(long, value_name = "ID")]
    pub map: String,
    /// Check and print what would happen; change nothing (nothing issued either).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct DetachArgs {
    /// The target HTTPS proxy.
    #[arg(long, value_name = "NAME")]
    pub proxy: String,
    /// Check and print what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManpageArgs {
    /// Write gclb-acme.1 and one page per subcommand (gclb-acme-renew.1, ...) into
    /// this directory instead of printing gclb-acme.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
