use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = gclb_acme::cli::Cli::parse();
    gclb_acme::logging::init(cli.log_format, cli.verbose, cli.quiet);
    gclb_acme::commands::run(cli)
}
