//! The subcommands, at the edge of the binary: they load the configuration, call
//! the library and turn results into output. Each returns the exit code of a run
//! that finished, or a [`CliError`]; [`run`] is the one place an error becomes
//! stderr text and an exit code.

mod certificate_map;
mod error;
mod stack;

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{Cli, Command, MoveArgs, RenewArgs, StateCommand, StatusArgs};
use gclb_acme::config::Config;

pub use error::{CliError, EXIT_FAILURE};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(cli: &Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::Completions(args) => completions(args.shell),
        Command::Manpage(args) => manpage(args.out_dir.as_deref()),
        Command::Check => check(&cli.config),
        Command::Run => run_daemon(&cli.config),
        Command::Renew(args) => renew(&cli.config, args),
        Command::Status(args) => status(&cli.config, args),
        Command::Bootstrap(args) => stack::bootstrap(&cli.config, args),
        Command::Teardown(args) => stack::teardown(&cli.config, args),
        Command::State(StateCommand::Move(args)) => state_move(&cli.config, args),
        Command::CertificateMap(c) => certificate_map::run(&cli.config, c),
    }
}

fn check(path: &Path) -> Result<ExitCode, CliError> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL  configuration {}:", path.display());
            for p in e.problems() {
                if p.path.is_empty() {
                    println!("        {}", p.message);
                } else {
                    println!("        {}: {}", p.path, p.message);
                }
            }
            return Err(CliError::Config(e));
        }
    };
    let report = runtime()?.block_on(async {
        let credentials = gclb_acme::preflight::credentials::detect().await;
        gclb_acme::preflight::run(&config, path, credentials).await
    });
    print!("{report}");
    Ok(healthy_or_failure(!report.failed()))
}

/// Exit 0 when everything is healthy, 1 when something ran but is not.
fn healthy_or_failure(healthy: bool) -> ExitCode {
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// The async runtime every subcommand runs on.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    // Two workers are plenty for network-bound work on a small VM, and keep the
    // thread count (and memory) small on bigger machines too.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `renew`: one pass, one line per certificate, exit 0 only if all are healthy.
fn renew(path: &Path, args: &RenewArgs) -> Result<ExitCode, CliError> {
    let config = Config::load(path)?;
    runtime()?.block_on(async move {
        use gclb_acme::reconcile::{Done, Renewer};
        let gcp = gclb_acme::gcp::Gcp::from_config(&config.gcp)
            .await
            .map_err(|e| CliError::GoogleCloud(Box::new(e)))?;
        let state = gclb_acme::state::State::from_config(&config.state, Some(&gcp))
            .map_err(|e| CliError::StateDir(e.into()))?;
        let acme = gclb_acme::acme::AcmeClient::connect(&config.acme, state)
            .await
            .map_err(|e| CliError::Acme {
                directory: config.acme.directory.clone(),
                source: Box::new(e),
            })?;
        let install = Renewer::install_options(&config);
        let renewer = Renewer {
            gcp,
            acme: std::sync::Arc::new(acme),
            config: std::sync::Arc::new(config),
            install,
        };
        let results = renewer
            .renew_all(args.certificate.as_deref(), args.force)
            .await;
        let mut all_healthy = true;
        for (name, result) in results {
            match result {
                Ok(o) => {
                    let healthy = o.healthy();
                    all_healthy &= healthy;
                    let took = format!("{:.1}s", o.took.as_secs_f64());
                    let status = if healthy { "ok" } else { "WARN" };
                    match &o.done {
                        Done::Healthy { renew_at } => {
                            let when = renew_at
                                .map(|(t, r)| format!("renews {} ({})", rfc3339(t), r.as_str()))
                                .unwrap_or_default();
                            println!("{status:<5} {name}: nothing due, {when} [{took}]");
                        }
                        Done::Installed {
                            issued,
                            reasons,
                            serial,
                            not_after,
                            report,
                        } => {
                            let what = if *issued { "issued and installed" } else { "installed the stored certificate" };
                            let why: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
                            println!(
                                "{status:<5} {name}: {what} {} (serial {serial}, expires {}); swapped on [{}], deleted [{}]; why: {} [{took}]",
                                report.resource,
                                rfc3339(*not_after),
                                report.swapped.join(", "),
                                report.deleted.join(", "),
                                why.join("; "),
                            );
                            for v in report.verify.iter().filter(|v| !v.is_ok()) {
                                println!("        verification: {v:?}");
                            }
                            print_takeover(report);
                        }
                        Done::Swapped { reasons, report } => {
                            let why: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
                            println!(
                                "{status:<5} {name}: put {} in place of hand-made certificates on [{}] (nothing issued); why: {} [{took}]",
                                report.resource,
                                report.swapped.join(", "),
                                why.join("; "),
                            );
                            print_takeover(report);
                        }
                    }
                }
                Err(e) => {
                    all_healthy = false;
                    println!("FAIL  {name}: {e}");
                }
            }
        }
        Ok(healthy_or_failure(all_healthy))
    })
}

/// What a renewal did about certificates gclb-acme did not create.
fn print_takeover(report: &gclb_acme::lb::InstallReport) {
    for h in &report.superseded {
        println!("        {h}");
    }
    for c in &report.competing {
        println!("        WARN {c}");
    }
    for r in &report.adoption_refused {
        println!("        WARN {r}");
    }
}

/// `status`: what each proxy serves; exit 0 only if every certificate is healthy.
fn status(path: &Path, args: &StatusArgs) -> Result<ExitCode, CliError> {
    let config = Config::load(path)?;
    runtime()?.block_on(async move {
        let gcp = gclb_acme::gcp::Gcp::from_config(&config.gcp)
            .await
            .map_err(|e| CliError::GoogleCloud(Box::new(e)))?;
        let state = gclb_acme::state::State::from_config(&config.state, Some(&gcp))
            .map_err(|e| CliError::StateDir(e.into()))?;
        let report = gclb_acme::reconcile::status(&gcp, &config, &state).await;
        if args.json {
            let s = serde_json::to_string_pretty(&report).map_err(CliError::Encode)?;
            println!("{s}");
        } else {
            print_status(&report);
        }
        Ok(healthy_or_failure(report.healthy()))
    })
}

fn print_status(report: &gclb_acme::reconcile::StatusReport) {
    for c in &report.certificates {
        let status = match (c.healthy, c.action) {
            (true, _) => "ok",
            (false, gclb_acme::reconcile::Verdict::Nothing) => "WARN",
            (false, _) => "DUE",
        };
        let next = c
            .next_renewal
            .map(|t| {
                format!(
                    "renews {} ({})",
                    rfc3339(t),
                    c.next_renewal_reason.unwrap_or("")
                )
            })
            .unwrap_or_else(|| "no certificate of ours served".into());
        println!("{status:<5} {} [{}]: {next}", c.name, c.domains.join(", "));
        if let Some(e) = &c.error {
            println!("        error: {e}");
        }
        for r in &c.reasons {
            println!("        {r}");
        }
        for w in &c.warnings {
            println!("        WARN {w}");
        }
        for h in &c.hand_made {
            println!("        {}", h.message);
        }
        let d = &c.daemon;
        if let Some(t) = d.last_attempt {
            println!(
                "        daemon: last attempt {}, {} failure(s) in a row{}",
                rfc3339(t),
                d.failures,
                d.last_success
                    .map(|t| format!(", last success {}", rfc3339(t)))
                    .unwrap_or_default()
            );
        }
        if let Some(e) = &d.last_error {
            println!("        last error: {e}");
        }
        if let Some(p) = &c.pending {
            println!(
                "        pending: {} (serial {}, expires {}) waits to be installed",
                p.resource,
                p.serial,
                rfc3339(p.not_after)
            );
        }
        for p in &c.proxies {
            match (&p.certificate_map, &p.entry) {
                (Some(m), Some(e)) => println!("        map {m}, entry {e} for {}:", p.name),
                (Some(m), None) => println!("        map {m}, no entry for {}", p.name),
                _ => println!("        proxy {}:", p.name),
            }
            for s in &p.certificates {
                let exp = s
                    .expire_time
                    .map(|t| {
                        format!(
                            "expires {} ({} days left)",
                            rfc3339(t),
                            s.days_left.unwrap_or(0)
                        )
                    })
                    .unwrap_or_else(|| "expiry unknown".into());
                println!(
                    "          {} {}, {}{}",
                    s.name,
                    exp,
                    s.role,
                    if s.exists { "" } else { ", MISSING" }
                );
            }
        }
    }
}

/// `gclb-acme run`: the daemon, with `/metrics` and `/healthz` when configured.
fn run_daemon(path: &Path) -> Result<ExitCode, CliError> {
    let config = Config::load(path)?;
    runtime()?.block_on(async {
        let metrics = gclb_acme::metrics::Metrics::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = if config.daemon.metrics_listen.is_empty() {
            None
        } else {
            let addr = config
                .daemon
                .metrics_listen
                .parse()
                .map_err(CliError::MetricsAddress)?;
            let (local, task) =
                gclb_acme::metrics::serve(addr, std::sync::Arc::clone(&metrics), async {
                    let _ = stop_rx.await;
                })
                .await
                .map_err(|source| CliError::Listen { addr, source })?;
            tracing::info!(address = %local, "serving /metrics and /healthz");
            Some(task)
        };
        let factory = gclb_acme::daemon::Factory {
            metrics: std::sync::Arc::clone(&metrics),
            gcp: None,
        };
        let result = gclb_acme::daemon::run(
            path.to_path_buf(),
            config,
            factory,
            metrics,
            gclb_acme::daemon::Options::default(),
        )
        .await;
        let _ = stop_tx.send(());
        if let Some(t) = server {
            let _ = t.await;
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "the daemon could not start");
        }
        result?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `gclb-acme completions SHELL`: the completion script on stdout (the .deb ships them).
fn completions(shell: clap_complete::Shell) -> Result<ExitCode, CliError> {
    use clap::CommandFactory;
    // clap_complete offers hidden subcommands too: complete only the public ones.
    let full = Cli::command();
    let mut cmd = clap::Command::new("gclb-acme")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "gclb-acme", &mut out);
    write_stdout(&out)
}

/// `gclb-acme manpage`: gclb-acme(1) in roff on stdout, or with `--out-dir` every page
/// (gclb-acme.1 and gclb-acme-SUBCOMMAND.1) written into that directory.
fn manpage(out_dir: Option<&Path>) -> Result<ExitCode, CliError> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .map_err(|source| CliError::ManpageDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(CliError::Manpage)?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<ExitCode, CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(CliError::Stdout)?;
    Ok(ExitCode::SUCCESS)
}

/// `state move`: copies every object of the configured state (or `--from`) to
/// `--to`, create-only; exit 0 only when everything is (or, dry, would be) there.
fn state_move(path: &Path, args: &MoveArgs) -> Result<ExitCode, CliError> {
    let config = Config::load(path)?;
    let from = args.from.clone().unwrap_or_else(|| config.state.location());
    runtime()?.block_on(async move {
        let gcp = if from.starts_with("gs://") || args.to.starts_with("gs://") {
            Some(
                gclb_acme::gcp::Gcp::from_config(&config.gcp)
                    .await
                    .map_err(|e| CliError::GoogleCloud(Box::new(e)))?,
            )
        } else {
            None
        };
        let params = config.state.lease_params();
        let open = |loc: &str| {
            gclb_acme::state::State::open(loc, gcp.as_ref(), params)
                .map_err(|e| CliError::StateDir(e.into()))
        };
        let (source, dest) = (open(&from)?, open(&args.to)?);
        if source.location() == dest.location() {
            return Err(CliError::StateDir(
                gclb_acme::state::StoreError::BadLocation {
                    location: args.to.clone(),
                    reason: "is the source itself".into(),
                }
                .into(),
            ));
        }
        let report =
            gclb_acme::state::migrate::copy_all(source.backend(), dest.backend(), args.dry_run)
                .await
                .map_err(|e| CliError::StateDir(e.into()))?;
        let verb = if args.dry_run { "would copy" } else { "copied" };
        for n in &report.copied {
            println!("{verb:<11} {n}");
        }
        for n in &report.identical {
            println!("{:<11} {n}", "identical");
        }
        for n in &report.conflicts {
            println!(
                "{:<11} {n} (differs at the destination: left as it is)",
                "CONFLICT"
            );
        }
        println!(
            "{} -> {}: {} {verb}, {} already there, {} conflict(s){}",
            source.location(),
            dest.location(),
            report.copied.len(),
            report.identical.len(),
            report.conflicts.len(),
            if args.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
        if !report.complete() {
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
        if !args.dry_run {
            println!(
                "the source is unchanged; set [state] location = \"{}\" and restart the daemons",
                args.to
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
