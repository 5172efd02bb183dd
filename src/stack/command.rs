//! `gclb-acme bootstrap` and `gclb-acme teardown` at the edge: configuration,
//! client, confirmation, exit codes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{BootstrapArgs, TeardownArgs};
use crate::commands::{EXIT_FAILURE, load_config};
use crate::gcp::Gcp;

use super::{Desired, Options, StackError};

async fn setup(config_path: &Path) -> Result<(Gcp, Desired, crate::config::Config), ExitCode> {
    let config = load_config(config_path)?;
    if config.stack.is_none() {
        eprintln!(
            "{}: no [stack] section: bootstrap and teardown need one (region, service, domains; see config/example.toml)",
            config_path.display()
        );
        return Err(ExitCode::from(crate::commands::EXIT_CONFIG));
    }
    let gcp = Gcp::from_config(&config.gcp).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_FAILURE)
    })?;
    let desired = Desired::from_config(&config, &gcp.project).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(crate::commands::EXIT_CONFIG)
    })?;
    Ok((gcp, desired, config))
}

fn fail(e: StackError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_FAILURE)
}

/// `gclb-acme bootstrap [--dry-run]`.
pub fn bootstrap(config_path: &Path, args: &BootstrapArgs) -> ExitCode {
    let rt = match crate::commands::runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let (gcp, desired, config) = match setup(config_path).await {
            Ok(x) => x,
            Err(c) => return c,
        };
        let certs = match super::cert::IssueWithAcme::new(gcp.clone(), &config, &desired) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let opts = Options {
            dry_run: args.dry_run,
            quiet: false,
        };
        match super::bootstrap(&gcp, &desired, &certs, opts).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

/// `gclb-acme teardown [--dry-run] [--yes]`: asks on a terminal, refuses
/// without `--yes` otherwise.
pub fn teardown(config_path: &Path, args: &TeardownArgs) -> ExitCode {
    let rt = match crate::commands::runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    rt.block_on(async {
        let (gcp, desired, config) = match setup(config_path).await {
            Ok(x) => x,
            Err(c) => return c,
        };
        if !args.dry_run && !args.yes {
            if !std::io::stdin().is_terminal() {
                eprintln!(
                    "teardown deletes the load balancer of Cloud Run service {} in project {}: stdin is not a terminal, so it cannot ask; run `gclb-acme teardown --dry-run` to see what it would delete, then `gclb-acme teardown --yes`",
                    desired.service, gcp.project
                );
                return ExitCode::from(EXIT_FAILURE);
            }
            let preview = Options {
                dry_run: true,
                quiet: false,
            };
            let report = match super::teardown(&gcp, &desired, preview).await {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if report.planned.is_empty() {
                return ExitCode::SUCCESS;
            }
            print!("delete these in project {}? type \"yes\": ", gcp.project);
            let _ = std::io::stdout().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            if answer.trim() != "yes" {
                println!("nothing was deleted");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
        let opts = Options {
            dry_run: args.dry_run,
            quiet: false,
        };
        // A dry run writes nothing, the state directory included.
        let state = if args.dry_run {
            None
        } else {
            match crate::state::StateDir::open(&config.state.dir) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        };
        match super::teardown_with_state(&gcp, &desired, opts, state.as_ref()).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}
