//! The `gclb-acme` binary: the command line is its own leaf here; the library
//! below it never imports it.

use clap::Parser;

mod cli;
mod commands;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    gclb_acme::logging::init(cli.log_format, cli.verbose, cli.quiet);
    commands::run(cli)
}
