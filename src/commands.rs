//! The subcommands, at the edge: they load the configuration, call the library and
//! turn results into output and exit codes.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{Cli, Command, RenewArgs, StatusArgs};
use crate::config::Config;

/// Exit code for "it ran, and something is not healthy / failed".
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a configuration that cannot be used.
pub const EXIT_CONFIG: u8 = 2;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Completions(args) => completions(args.shell),
        Command::Manpage(args) => manpage(args.out_dir.as_deref()),
        Command::Check => check(&cli.config),
        Command::Run => run_daemon(&cli.config),
        Command::Renew(args) => renew(&cli.config, args),
        Command::Status(args) => status(&cli.config, args),
        Command::Bootstrap(args) => crate::stack::command::bootstrap(&cli.config, args),
        Command::Teardown(args) => crate::stack::command::teardown(&cli.config, args),
    }
}

/// Loads the configuration or prints every problem with it.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check(path: &Path) -> ExitCode {
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
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gclb-acme check: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let report = runtime.block_on(async {
        let credentials = crate::preflight::credentials::detect().await;
        crate::preflight::run(&config, path, credentials).await
    });
    print!("{report}");
    if report.failed() {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// A runtime for the async subcommands.
/// The async runtime every subcommand runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    // Two workers are plenty for network-bound work on a small VM, and keep the
    // thread count (and memory) small on bigger machines too.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::from(EXIT_FAILURE)
        })
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `renew`: one pass, one line per certificate, exit 0 only if all are healthy.
fn renew(path: &Path, args: &RenewArgs) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async move {
        use crate::reconcile::{Done, Renewer};
        let gcp = match crate::gcp::Gcp::from_config(&config.gcp).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("FAIL  Google Cloud: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let state = match crate::state::StateDir::open(&config.state.dir) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("FAIL  state directory: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let acme = match crate::acme::AcmeClient::connect(&config.acme, state).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("FAIL  ACME account at {}: {e}", config.acme.directory);
                return ExitCode::from(EXIT_FAILURE);
            }
        };
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
        if all_healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_FAILURE)
        }
    })
}

/// What a renewal did about certificates gclb-acme did not create.
fn print_takeover(report: &crate::lb::InstallReport) {
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
fn status(path: &Path, args: &StatusArgs) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let gcp = match crate::gcp::Gcp::from_config(&config.gcp).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("FAIL  Google Cloud: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let state = match crate::state::StateDir::open(&config.state.dir) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("FAIL  state directory: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let report = crate::reconcile::status::status(&gcp, &config, &state).await;
        if args.json {
            match serde_json::to_string_pretty(&report) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("cannot encode the report: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        } else {
            print_status(&report);
        }
        if report.healthy() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_FAILURE)
        }
    })
}

fn print_status(report: &crate::reconcile::status::StatusReport) {
    for c in &report.certificates {
        let status = match (c.healthy, c.action) {
            (true, _) => "ok",
            (false, crate::reconcile::Action::Nothing) => "WARN",
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
            println!("        proxy {}:", p.name);
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
fn run_daemon(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        let metrics = crate::metrics::Metrics::new();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = if config.daemon.metrics_listen.is_empty() {
            None
        } else {
            let addr = match config.daemon.metrics_listen.parse() {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("daemon.metrics_listen: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match crate::metrics::serve(addr, std::sync::Arc::clone(&metrics), async {
                let _ = stop_rx.await;
            })
            .await
            {
                Ok((local, task)) => {
                    tracing::info!(address = %local, "serving /metrics and /healthz");
                    Some(task)
                }
                Err(e) => {
                    eprintln!("cannot listen on daemon.metrics_listen {addr}: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        };
        let factory = crate::daemon::pipeline::Factory {
            metrics: std::sync::Arc::clone(&metrics),
            gcp: None,
        };
        let result = crate::daemon::run(
            path.to_path_buf(),
            config,
            factory,
            metrics,
            crate::daemon::Options::default(),
        )
        .await;
        let _ = stop_tx.send(());
        if let Some(t) = server {
            let _ = t.await;
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "the daemon could not start");
                eprintln!("error: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}
/// `gclb-acme completions SHELL`: the completion script on stdout (the .deb ships them).
fn completions(shell: clap_complete::Shell) -> ExitCode {
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
fn manpage(out_dir: Option<&Path>) -> ExitCode {
    use clap::CommandFactory;
    let cmd = Cli::command();
    if let Some(dir) = out_dir {
        return match std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gclb-acme manpage: writing {}: {e}", dir.display());
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
        eprintln!("gclb-acme manpage: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gclb-acme: writing to stdout: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
