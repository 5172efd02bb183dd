//! The command line as a user meets it.

use assert_cmd::Command;
use predicates::prelude::*;

fn cmd() -> Command {
    let mut c = Command::cargo_bin("gclb-acme").unwrap();
    c.env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env("HOME", "/nonexistent");
    c
}

fn example() -> String {
    format!("{}/config/example.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn help_lists_every_subcommand() {
    let out = cmd().arg("--help").assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for sub in ["run", "renew", "status", "check", "bootstrap", "teardown"] {
        assert!(
            text.contains(&format!("  {sub}")),
            "{sub} missing in:\n{text}"
        );
    }
    assert!(text.contains("--config"));
    assert!(text.contains("--log-format"));
    cmd()
        .args(["renew", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--certificate").and(predicate::str::contains("--force")));
    cmd()
        .args(["teardown", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--dry-run").and(predicate::str::contains("--yes")));
}

#[test]
fn check_accepts_the_example_config_offline() {
    cmd()
        .args(["check", "--config", &example()])
        .assert()
        .success()
        .stdout(predicate::str::contains("ok    configuration"))
        .stdout(predicate::str::contains("1 certificate(s)"))
        .stdout(predicate::str::contains("credentials: none found"))
        .stdout(predicate::str::contains("only the offline checks ran"));
}

#[test]
fn check_reads_the_config_from_the_environment() {
    cmd()
        .env("GCLB_ACME_CONFIG", example())
        .arg("check")
        .assert()
        .success();
}

#[test]
fn check_names_the_key_of_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("\"app.example.com\", \"*.app", "\"exa mple.com\", \"*.app");
    std::fs::write(&path, text).unwrap();
    cmd()
        .args(["check", "--config"])
        .arg(&path)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}: certificates[0].domains[0]: \"exa mple.com\" is not a valid DNS name",
            path.display()
        )));
}

#[test]
fn check_reports_a_missing_file() {
    cmd()
        .args(["check", "--config", "/nonexistent/config.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "/nonexistent/config.toml: cannot read the configuration",
        ));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[acme]\naccept_terms = true\nmystery = 1\n").unwrap();
    cmd()
        .args(["check", "--config"])
        .arg(&path)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("c.toml:3:")
                .and(predicate::str::contains("unknown field `mystery`")),
        );
}
