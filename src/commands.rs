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
        Command::Completions(args) => completions(args.shell),
        Command::Manpage(args) => manpage(args.out_dir.as_deref()),
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

/// One line of `check` output.
struct Line {
    status: &'static str,
    what: String,
}

fn print_lines(lines: &[Line]) {
    for l in lines {
        println!("{:<5} {}", l.status, l.what);
    }
}

fn check(path: &Path) -> ExitCode {
    let mut lines = Vec::new();
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
    let domains: usize = config.certificates.iter().map(|c| c.domains.len()).sum();
    lines.push(Line {
        status: "ok",
        what: format!(
            "configuration {}: {} certificate(s), {} name(s), CA {}",
            path.display(),
            config.certificates.len(),
            domains,
            config.acme.directory
        ),
    });

    match crate::commands::credentials_hint() {
        Some(kind) => lines.push(Line {
            status: "skip",
            what: format!(
                "credentials: found {kind}; the online checks (APIs, permissions, zones, CAA) are not built yet"
            ),
        }),
        None => lines.push(Line {
            status: "skip",
            what: "credentials: none found (GOOGLE_APPLICATION_CREDENTIALS unset, no gcloud application-default file, GCE_METADATA_HOST unset); only the offline checks ran".to_string(),
        }),
    }
    print_lines(&lines);
    ExitCode::SUCCESS
}

/// Which Application Default Credentials source is present, without contacting
/// anything (the metadata server is not probed here).
pub fn credentials_hint() -> Option<String> {
    if let Ok(f) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some(format!("GOOGLE_APPLICATION_CREDENTIALS={f}"));
    }
    let gcloud_dir = std::env::var_os("CLOUDSDK_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/gcloud")));
    if let Some(dir) = gcloud_dir {
        let adc = dir.join("application_default_credentials.json");
        if adc.is_file() {
            return Some(format!(
                "gcloud application-default credentials ({})",
                adc.display()
            ));
        }
    }
    if let Ok(h) = std::env::var("GCE_METADATA_HOST") {
        return Some(format!("metadata server at GCE_METADATA_HOST={h}"));
    }
    None
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
