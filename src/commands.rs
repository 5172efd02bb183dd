//! The subcommands, at the edge: they load the configuration, call the library and
//! turn results into output and exit codes.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// Exit code for "it ran, and something is not healthy / failed".
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a configuration that cannot be used.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a subcommand that is not built yet.
pub const EXIT_UNIMPLEMENTED: u8 = 3;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Check => check(&cli.config),
        Command::Run => not_built("run", "the daemon"),
        Command::Renew(_) => not_built("renew", "certificate issuance and installation"),
        Command::Status(_) => not_built("status", "reading what the proxies serve"),
        Command::Bootstrap(_) => not_built("bootstrap", "building the load-balancer stack"),
        Command::Teardown(_) => not_built("teardown", "removing the load-balancer stack"),
    }
}

fn not_built(cmd: &str, what: &str) -> ExitCode {
    eprintln!("gclb-acme {cmd}: not built yet ({what} is still being written); nothing was done");
    ExitCode::from(EXIT_UNIMPLEMENTED)
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
