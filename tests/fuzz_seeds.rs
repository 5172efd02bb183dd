//! Replays the named fuzz seeds (`fuzz/seeds/<target>/`) through the same checks the
//! fuzz targets run (`fuzz/checks/<target>.rs`), so every input that once found a bug,
//! and one input per distinct behaviour of each target, is checked on every
//! `cargo test`, with no fuzzer and no nightly flags.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../fuzz/checks/chain.rs"]
mod chain;
#[path = "../fuzz/checks/config.rs"]
mod config;
#[path = "../fuzz/checks/dns_names.rs"]
mod dns_names;
#[path = "../fuzz/checks/gcp_json.rs"]
mod gcp_json;

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every seed of `target`; reports every seed that panics, by name.
fn replay(target: &str, min_seeds: usize, check: fn(&[u8])) {
    let files = seeds(target);
    assert!(
        files.len() >= min_seeds,
        "fuzz/seeds/{target} holds {} seeds, expected at least {min_seeds}",
        files.len()
    );
    let failed: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .err()
                .map(|_| f.display().to_string())
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} seeds of {target} fail:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn chain_seeds() {
    replay("chain", 8, chain::run);
}

#[test]
fn config_seeds() {
    replay("config", 6, config::run);
}

#[test]
fn dns_names_seeds() {
    replay("dns_names", 25, dns_names::run);
}

#[test]
fn gcp_json_seeds() {
    replay("gcp_json", 15, gcp_json::run);
}

/// The replay itself can fail: a check that panics on some seeds fails it, naming them.
#[test]
fn a_failing_check_fails_the_replay() {
    let r = catch_unwind(|| {
        replay("config", 1, |d| {
            assert!(!d.starts_with(b"[gcp]"), "starts with [gcp]")
        })
    });
    assert!(r.is_err(), "a failing seed went unnoticed");
    let r = catch_unwind(|| seeds("no-such-target"));
    assert!(r.is_err(), "a missing seed directory must fail the test");
}
