//! `gclb-acme bootstrap` and `gclb-acme teardown` at the edge: configuration,
//! client, confirmation.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::cli::{BootstrapArgs, TeardownArgs};
use gclb_acme::config::Config;
use gclb_acme::gcp::Gcp;
use gclb_acme::stack::{self, Desired, Options};

use super::{CliError, EXIT_FAILURE, runtime};

async fn setup(config_path: &Path) -> Result<(Gcp, Desired, Config), CliError> {
    let config = Config::load(config_path)?;
    if config.stack.is_none() {
        return Err(CliError::NoStack(config_path.to_path_buf()));
    }
    let gcp = Gcp::from_config(&config.gcp)
        .await
        .map_err(|e| CliError::Gcp(Box::new(e)))?;
    let desired = Desired::from_config(&config, &gcp.project).map_err(CliError::StackConfig)?;
    Ok((gcp, desired, config))
}

/// `gclb-acme bootstrap [--dry-run]`.
pub fn bootstrap(config_path: &Path, args: &BootstrapArgs) -> Result<ExitCode, CliError> {
    runtime()?.block_on(async {
        let (gcp, desired, config) = setup(config_path).await?;
        let certs = stack::IssueWithAcme::new(gcp.clone(), &config, &desired)?;
        let opts = Options {
            dry_run: args.dry_run,
            quiet: false,
        };
        stack::bootstrap(&gcp, &desired, &certs, opts).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `gclb-acme teardown [--dry-run] [--yes]`: asks on a terminal, refuses
/// without `--yes` otherwise.
pub fn teardown(config_path: &Path, args: &TeardownArgs) -> Result<ExitCode, CliError> {
    runtime()?.block_on(async {
        let (gcp, desired, config) = setup(config_path).await?;
        if !args.dry_run && !args.yes {
            if !std::io::stdin().is_terminal() {
                return Err(CliError::NoTerminal {
                    service: desired.service.clone(),
                    project: gcp.project.clone(),
                });
            }
            let preview = Options {
                dry_run: true,
                quiet: false,
            };
            let report = stack::teardown(&gcp, &desired, preview).await?;
            if report.planned.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            print!("delete these in project {}? type \"yes\": ", gcp.project);
            let _ = std::io::stdout().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            if answer.trim() != "yes" {
                println!("nothing was deleted");
                return Ok(ExitCode::from(EXIT_FAILURE));
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
            Some(
                gclb_acme::state::State::from_config(&config.state, Some(&gcp))
                    .map_err(|e| CliError::State(e.into()))?,
            )
        };
        stack::teardown_with_state(&gcp, &desired, opts, state.as_ref()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
