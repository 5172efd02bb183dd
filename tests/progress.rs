//! Progress of long steps, seen from outside the real binary: `gclb-acme renew`
//! with one Google operation held for 6 s by the emulator.
//!
//! - stderr to a file: plain `still waiting` log lines name the step and the
//!   time waited (after 5 s), and no terminal control sequence is written;
//! - stderr on a terminal (a pty from util-linux `script`): a status line,
//!   redrawn in place, names the outer step and the wait, and every log line
//!   still starts on a line of its own.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::fleet::{self, Fleet};

const CLEAR: &str = "\r\x1b[2K";

async fn hold_the_next_operation(f: &Fleet) {
    f.lab
        .cloud
        .fault(json!({
            "method": "compute.globalOperations.wait",
            "kind": "delay",
            "delay_ms": 6000,
            "count": 1
        }))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_steps_are_shown_as_log_lines_or_a_terminal_status_line() {
    let f = Fleet::start(1, Duration::from_secs(3600)).await;
    let config = f.write_config("verify_after_swap = false", "");
    let config = config.to_str().expect("utf-8 path");
    let home = tempfile::tempdir().expect("tmp");

    // Not a terminal: log lines.
    hold_the_next_operation(&f).await;
    let log = f.lab.tmp.path().join("renew.log");
    let status = fleet::command(&f.lab, home.path(), &log, &["renew", "--config", config])
        .status()
        .expect("run gclb-acme");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(status.success(), "{text}");
    let waiting: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("still waiting: waiting for Google: "))
        .collect();
    assert!(
        waiting
            .iter()
            .any(|l| l.contains("sslCertificates/c00-") && l.contains("(5s)")),
        "no line for the held operation after 5 s:\n{text}"
    );
    assert!(
        text.contains("still waiting: c00: renewing ("),
        "the outer step is not reported:\n{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "escape sequences in a log file:\n{text}"
    );

    // A terminal: the status line. `script` gives the command a pty and copies
    // everything written to it into the typescript file.
    hold_the_next_operation(&f).await;
    let typescript = f.lab.tmp.path().join("typescript");
    let inner = format!(
        // The width the line is cut to: wide enough for the whole line.
        "stty cols 200 rows 50; exec '{}' renew --force --config '{config}'",
        env!("CARGO_BIN_EXE_gclb-acme")
    );
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &inner])
        .arg(&typescript)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("GCLB_ACME_LOG")
        .env("HOME", home.path())
        .env("GCE_METADATA_HOST", f.lab.metadata_host())
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let shown = std::fs::read_to_string(&typescript).expect("typescript");
    assert!(out.status.success(), "{shown}");
    let lines: Vec<&str> = shown
        .split(CLEAR)
        .filter(|s| s.contains("c00: renewing ") && s.contains(" > waiting for Google: "))
        .collect();
    assert!(
        lines.len() >= 20,
        "expected the status line redrawn many times over 6 s, got {}:\n{shown:?}",
        lines.len()
    );
    // The clock runs: the line shows at least 5 s waited at some point.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("sslCertificates/c00-") && l.ends_with(" 5s")),
        "{lines:?}"
    );
    // Log lines are whole: each INFO line starts a line (after a newline or
    // the clear sequence), never in the middle of the status line.
    for (i, _) in shown.match_indices("INFO") {
        let start = shown[..i].rfind(['\n', '\r']).map_or(0, |p| p + 1);
        let head = &shown[start..i];
        assert!(
            !head.contains(" > ") && !head.contains("renewing"),
            "a log line glued to the status line: {head:?}"
        );
    }
    // Nothing is left on the screen: the last thing on the status line is the clear.
    let after_last_clear = shown.rsplit(CLEAR).next().unwrap_or_default();
    assert!(
        !after_last_clear.contains(" > waiting for"),
        "status line left behind: {after_last_clear:?}"
    );
}
