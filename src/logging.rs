//! Logging through `tracing`: human text on a terminal, JSON lines with
//! `--log-format json`, and the journal (with structured fields) under systemd.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::progress::Mode;

/// The default filter for a verbosity: -qq error, -q warn, info, -v debug, -vv trace.
/// Only our own crate gets the extra detail; libraries stay at warn.
pub fn default_filter(verbose: u8, quiet: u8) -> String {
    let ours = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let libs = if verbose >= 2 { "info" } else { "warn" };
    // rustls logs every failed certificate check at ERROR; the post-swap check
    // expects failures while Google's edge catches up, and reports its own outcome.
    format!("{libs},rustls=off,gclb_acme={ours}")
}

/// Whether stderr is connected to the journal (systemd sets JOURNAL_STREAM to the
/// device and inode of the stream it gave us).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(meta.dev()) && ino.parse::<u64>().ok() == Some(meta.ino())
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `GCLB_ACME_LOG` (an EnvFilter directive)
/// overrides the verbosity flags.
pub fn init(format: LogFormat, verbose: u8, quiet: u8) {
    let filter = EnvFilter::try_from_env("GCLB_ACME_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_filter(verbose, quiet)));
    let registry = tracing_subscriber::registry().with(filter);

    let journal = format == LogFormat::Text && stderr_is_journal();
    let terminal = format == LogFormat::Text
        && !journal
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    // -q keeps the terminal's status line (it leaves nothing behind) and drops the
    // `still waiting` lines with the rest of info; -qq turns both off.
    crate::progress::enable(match (quiet, terminal) {
        (q, _) if q > 1 => Mode::Off,
        (_, true) => Mode::Terminal,
        (_, false) => Mode::Lines,
    });

    if journal && let Ok(journald) = tracing_journald::layer() {
        let _ = registry
            .with(journald.with_syslog_identifier("gclb-acme".to_string()))
            .try_init();
        return;
    }
    match format {
        LogFormat::Json => {
            let _ = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_span_list(false)
                        .with_writer(std::io::stderr),
                )
                .try_init();
        }
        LogFormat::Text => {
            let _ = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(std::io::stderr().is_terminal())
                        .with_target(false)
                        // Clears the progress line before each log line.
                        .with_writer(|| crate::progress::Stderr),
                )
                .try_init();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_filters() {
        assert_eq!(default_filter(0, 0), "warn,rustls=off,gclb_acme=info");
        assert_eq!(default_filter(1, 0), "warn,rustls=off,gclb_acme=debug");
        assert_eq!(default_filter(2, 0), "info,rustls=off,gclb_acme=trace");
        assert_eq!(default_filter(0, 1), "warn,rustls=off,gclb_acme=warn");
        assert_eq!(default_filter(0, 2), "warn,rustls=off,gclb_acme=error");
    }
}
