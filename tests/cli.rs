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
    for sub in [
        "run",
        "renew",
        "status",
        "check",
        "bootstrap",
        "teardown",
        "certificate-map",
    ] {
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
    cmd()
        .args(["certificate-map", "attach", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("--proxy")
                .and(predicate::str::contains("--map"))
                .and(predicate::str::contains("--dry-run")),
        );
}

/// The example configuration with its state directory in `dir` (the example's
/// /var/lib/gclb-acme is creatable only by root).
fn example_in(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(example()).unwrap().replace(
        "/var/lib/gclb-acme",
        &dir.join("state").display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_the_example_config_offline() {
    let dir = tempfile::tempdir().unwrap();
    cmd()
        .args(["check", "--config"])
        .arg(example_in(dir.path()))
        .assert()
        .success()
        .stdout(predicate::str::contains("ok    configuration"))
        .stdout(predicate::str::contains("1 certificate(s)"))
        .stdout(predicate::str::contains("credentials: none found"))
        .stdout(predicate::str::contains("only the offline checks ran"))
        .stdout(predicate::str::contains("ok    state directory"))
        .stdout(predicate::str::contains(
            "does not exist yet; it will be created",
        ));
}

#[test]
fn check_without_a_metadata_server_runs_offline_only() {
    // Port 9 (discard) is closed on loopback: the probe fails at once.
    let dir = tempfile::tempdir().unwrap();
    cmd()
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .args(["check", "--config"])
        .arg(example_in(dir.path()))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "skip  credentials: none found (GOOGLE_APPLICATION_CREDENTIALS unset, no gcloud application-default file, no metadata server at 127.0.0.1:9",
        ))
        .stdout(predicate::str::contains("FAIL").not());
}

#[test]
fn check_fails_on_an_unusable_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = example_in(dir.path());
    // A file where the directory should be.
    std::fs::write(dir.path().join("state"), "").unwrap();
    cmd()
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .args(["check", "--config"])
        .arg(&path)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL  state directory"))
        .stdout(predicate::str::contains(
            "exists but is not a directory; fix:",
        ));
}

#[test]
fn check_names_the_identity_of_a_key_file_that_does_not_work() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sa.json");
    std::fs::write(
        &key,
        r#"{"type":"service_account","client_email":"acme@my-project.iam.gserviceaccount.com","project_id":"my-project","private_key":"not a key","private_key_id":"1","token_uri":"http://127.0.0.1:9/token"}"#,
    )
    .unwrap();
    cmd()
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
        .args(["check", "--config"])
        .arg(example_in(dir.path()))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "service-account key (GOOGLE_APPLICATION_CREDENTIALS={})",
            key.display()
        )))
        .stdout(predicate::str::contains(
            "acme@my-project.iam.gserviceaccount.com",
        ))
        .stdout(predicate::str::contains("no access token"))
        .stdout(predicate::str::contains(
            "fix: point GOOGLE_APPLICATION_CREDENTIALS at a working credentials file",
        ))
        .stdout(predicate::str::contains("skip  APIs, IAM permissions"));
}

#[test]
fn check_reads_the_config_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    cmd()
        .env("GCLB_ACME_CONFIG", example_in(dir.path()))
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
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
