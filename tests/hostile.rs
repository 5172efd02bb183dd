//! Hostile and broken input: each gets a clear error and never a panic.
//!
//! - Configurations through the real binary's `check`: malformed TOML, bytes
//!   that are not UTF-8, wrong types, unknown keys, absurd values (zero,
//!   negative and enormous durations and numbers, 10,000 domains, names over
//!   253 characters, a certificate name that walks out of the state
//!   directory), deeply nested arrays.
//! - Malformed JSON from every GCP method a renewal calls (the emulator cuts
//!   the response body in half): the renewal fails with an error naming the
//!   call, then converges once the fault is gone; through the binary, a burst
//!   of corrupt answers is retried through and `renew` exits 0.
//! - A tampered or truncated stored certificate (`pending/<cert>.json`): never
//!   uploaded as is.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::json;
use support::fleet;
use support::lb::{Lab, NAMES};

fn example() -> String {
    let dir = format!("{}/config/example.toml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(dir).unwrap()
}

/// `gclb-acme check --config <bytes>`: (exit code, stdout + stderr).
fn check(dir: &std::path::Path, bytes: &[u8]) -> (Option<i32>, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gclb-acme"))
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("HOME", "/nonexistent")
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_refuses_hostile_configurations_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let base = example().replace("/var/lib/gclb-acme", &state.display().to_string());
    let with = |from: &str, to: &str| {
        assert!(base.contains(from), "{from}");
        base.replacen(from, to, 1).into_bytes()
    };
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("\"h{i}.example.com\""))
        .collect();
    let long_name = format!("{}.example.com", vec!["a".repeat(60); 5].join("."));
    let nested = format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    // The duplicate is the line after the example's `concurrency = 4`.
    let duplicate_at = base
        .lines()
        .position(|l| l.starts_with("concurrency = 4"))
        .map(|i| i + 2)
        .unwrap();
    let duplicate = format!("config.toml:{duplicate_at}:1: not valid TOML: duplicate key");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed TOML",
            b"[acme\naccept_terms = true\n".to_vec(),
            "config.toml",
        ),
        (
            "not UTF-8",
            vec![0xff, 0xfe, b'[', 0x00, 0x80, b']'],
            "config.toml",
        ),
        (
            "NUL bytes",
            b"[gcp]\nproject = \"a\0b\"\n".to_vec(),
            "config.toml",
        ),
        (
            "unknown key",
            with(
                "accept_terms = true",
                "accept_terms = true\nacept_terms = true",
            ),
            "acept_terms",
        ),
        (
            "unknown table",
            with("[state]", "[stat]\nx = 1\n[state]"),
            "stat",
        ),
        (
            "string for a number",
            with("concurrency = 4", "concurrency = \"four\""),
            "concurrency",
        ),
        (
            "string for a list",
            with(
                "domains = [\"app.example.com\", \"*.app.example.com\"]",
                "domains = \"app.example.com\"",
            ),
            "domains",
        ),
        (
            "table for a list",
            with("[[certificates]]", "[certificates]"),
            "certificates",
        ),
        (
            "zero concurrency",
            with("concurrency = 4", "concurrency = 0"),
            "daemon.concurrency",
        ),
        (
            "negative concurrency",
            with("concurrency = 4", "concurrency = -1"),
            "concurrency",
        ),
        (
            "integer overflow",
            with("concurrency = 4", "concurrency = 99999999999999999999999"),
            "concurrency",
        ),
        ("negative ttl", with("ttl = 60", "ttl = -60"), "ttl"),
        (
            "zero duration",
            with(
                "propagation_timeout = \"180s\"",
                "propagation_timeout = \"0s\"",
            ),
            "propagation_timeout",
        ),
        (
            "negative duration",
            with("error_before = \"7d\"", "error_before = \"-7d\""),
            "error_before",
        ),
        (
            "enormous duration",
            with(
                "error_before = \"7d\"",
                "error_before = \"999999999999999999999d\"",
            ),
            "error_before",
        ),
        (
            "number for a duration",
            with("error_before = \"7d\"", "error_before = 7"),
            "error_before",
        ),
        (
            "retry below a second",
            with("concurrency = 4", "concurrency = 4\nretry_initial = \"0s\""),
            "retry_initial",
        ),
        (
            "retry_max below retry_initial",
            with(
                "concurrency = 4",
                "concurrency = 4\nretry_initial = \"1h\"\nretry_max = \"1m\"",
            ),
            "retry_max",
        ),
        (
            "10,000 domains",
            with(
                "domains = [\"app.example.com\", \"*.app.example.com\"]",
                &format!("domains = [{}]", many.join(", ")),
            ),
            "domains",
        ),
        (
            "a name over 253 characters",
            with(
                "\"app.example.com\", \"*.app",
                &format!("\"{long_name}\", \"*.app"),
            ),
            "domains[0]",
        ),
        (
            "a label over 63 characters",
            with(
                "\"app.example.com\", \"*.app",
                &format!("\"{}.example.com\", \"*.app", "a".repeat(64)),
            ),
            "domains[0]",
        ),
        (
            "no domains",
            with(
                "domains = [\"app.example.com\", \"*.app.example.com\"]",
                "domains = []",
            ),
            "domains",
        ),
        (
            "a path for a certificate name",
            with("name = \"app\"", "name = \"../../etc/passwd\""),
            "certificates[0].name",
        ),
        (
            "duplicate key",
            with("concurrency = 4", "concurrency = 4\nconcurrency = 5"),
            duplicate.as_str(),
        ),
        (
            "deeply nested arrays",
            format!("{nested}{base}").into_bytes(),
            "config.toml",
        ),
        (
            "unknown key type",
            with("key_type = \"ecdsa-p256\"", "key_type = \"dsa-1024\""),
            "key_type",
        ),
        (
            "bad metrics address",
            with(
                "metrics_listen = \"127.0.0.1:9464\"",
                "metrics_listen = \"127.0.0.1:99999\"",
            ),
            "metrics_listen",
        ),
    ];
    let mut failures = Vec::new();
    for (what, bytes, needle) in &cases {
        let (code, text) = check(dir.path(), bytes);
        let ok = code == Some(2) && text.contains(needle) && !text.contains("panicked");
        if !ok {
            failures.push(format!(
                "{what}: exit {code:?}, wanted {needle:?} in:\n{}",
                &text[..text.len().min(1500)]
            ));
        }
        // The error output stays readable: 10,000 domains are not all listed back.
        assert!(
            text.len() < 20_000,
            "{what}: {} bytes of output",
            text.len()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The valid base passes, so each refusal above is the change's doing.
    let (code, text) = check(dir.path(), base.as_bytes());
    assert_eq!(code, Some(0), "{text}");
}

/// Every GCP method a forced renewal calls, from a clean run's request log.
async fn methods_of_a_renewal(lab: &Lab) -> BTreeSet<String> {
    lab.cloud.clear_requests().await;
    let config = lab.config(&["p1"]);
    let r = lab.renewer(&config).await;
    let res = r.renew_all(None, true).await;
    assert!(
        res.iter().all(|(_, r)| r.is_ok()),
        "{:?}",
        res.iter()
            .map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
            .collect::<Vec<_>>()
    );
    lab.cloud
        .requests()
        .await
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_json_from_any_gcp_method_fails_clearly_then_converges() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    let methods = methods_of_a_renewal(&lab).await;
    assert!(methods.len() >= 6, "{methods:?}");
    let config = lab.config(&["p1"]);
    let mut failed = Vec::new();
    for m in &methods {
        lab.cloud
            .fault(json!({"method": m, "kind": "corrupt"}))
            .await;
        let r = lab.renewer(&config).await;
        let res = r.renew_all(None, true).await;
        let err = res[0].1.as_ref().err().map(|e| e.to_string());
        fleet::clear_faults(&lab).await;
        // A call whose answer is not needed (e.g. a best-effort cleanup) may
        // fail without failing the renewal; then the renewal converged.
        if let Some(e) = err {
            // Names the call (verb and URL) and says what went wrong.
            assert!(
                e.contains("unexpected response") && e.contains("http://"),
                "{m}: unclear error: {e}"
            );
            failed.push(m.clone());
        }
        // Fault gone: one more run converges.
        let r = lab.renewer(&config).await;
        let res = r.renew_all(None, false).await;
        assert!(
            res[0].1.is_ok(),
            "{m}: no recovery: {:?}",
            res[0].1.as_ref().err().map(|e| e.to_string())
        );
        lab.assert_serving(&["p1"]).await;
        lab.assert_no_txt().await;
        let served = lab.served("p1").await;
        assert_eq!(lab.certificates().await, served, "{m}: leftovers");
        assert!(!lab.state_dir().join("pending/app.json").exists(), "{m}");
    }
    println!(
        "corrupt JSON: {} methods, renewal failed clearly on {failed:?}",
        methods.len()
    );
    assert!(!failed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_retries_through_a_burst_of_corrupt_answers() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    for m in ["compute.*", "dns.*"] {
        lab.cloud
            .fault(json!({"method": m, "kind": "corrupt", "count": 3}))
            .await;
    }
    let config = lab.write_cli_config("");
    let home = tempfile::tempdir().unwrap();
    let log = lab.tmp.path().join("renew.log");
    let status = fleet::command(
        &lab,
        home.path(),
        &log,
        &["renew", "--force", "--config", config.to_str().unwrap()],
    )
    .status()
    .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    lab.assert_serving(&["p1"]).await;
    lab.assert_no_txt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_truncated_stored_certificate_is_never_uploaded() {
    use gclb_acme::acme::save_pending;
    use gclb_acme::state::StateDir;

    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    let config = lab.config(&["p1"]);
    let state: gclb_acme::state::State = StateDir::open(&config.state.dir).unwrap().into();

    // A stored certificate whose key is not the certificate's: ignored (it
    // would fail every upload for ever), a new one is issued and installed.
    let mut a = support::lb::self_signed(&NAMES, 0, 90);
    let b = support::lb::self_signed(&NAMES, 0, 90);
    a.key_pem = b.key_pem.clone();
    a.directory = lab.pebble.directory_url.clone();
    save_pending(&state, &a).await.unwrap();
    let r = lab.renewer(&config).await;
    let res = r.renew_all(None, false).await;
    assert!(
        res[0].1.is_ok(),
        "mismatched key: {:?}",
        res[0].1.as_ref().err().map(|e| e.to_string())
    );
    let all = lab.certificates().await;
    assert!(
        !all.iter().any(|n| n.contains(&a.leaf.sha256_hex[..12])),
        "a certificate with the wrong key was uploaded: {all:?}"
    );
    assert_eq!(
        support::lb::finalized(&r),
        1,
        "a new certificate was issued"
    );
    lab.assert_serving(&["p1"]).await;

    // Truncated JSON, and a chain for other names: the same.
    let path = lab.state_dir().join("pending/app.json");
    let mut c = support::lb::self_signed(&["other.test"], 0, 90);
    c.names = NAMES.iter().map(|s| s.to_string()).collect();
    c.directory = lab.pebble.directory_url.clone();
    for (what, bytes) in [
        (
            "truncated",
            b"{\"certificate\": \"app\", \"names\": [\"exa".to_vec(),
        ),
        ("wrong names", serde_json::to_vec(&c).unwrap()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let r = lab.renewer(&config).await;
        let res = r.renew_all(None, true).await;
        assert!(
            res[0].1.is_ok(),
            "{what}: {:?}",
            res[0].1.as_ref().err().map(|e| e.to_string())
        );
        assert_eq!(support::lb::finalized(&r), 1, "{what}: issued anew");
        lab.assert_serving(&["p1"]).await;
        assert_eq!(lab.certificates().await, lab.served("p1").await, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_returning_a_bad_chain_is_refused_before_upload() {
    use support::bad_ca::{BadCa, Chain};

    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    for chain in [
        Chain::Garbage,
        Chain::Empty,
        Chain::Truncated,
        Chain::WrongNames,
    ] {
        let ca = BadCa::start(chain.clone()).await;
        let mut config = lab.config(&["p1"]);
        config.acme.directory = ca.directory_url();
        config.acme.ca_roots = vec![];
        config.state.dir = lab.tmp.path().join(format!("state-{chain:?}"));
        lab.cloud.clear_requests().await;
        let r = lab.renewer(&config).await;
        let res = r.renew_all(None, true).await;
        let err = res[0]
            .1
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("{chain:?}: accepted"))
            .to_string();
        println!("{chain:?}: {err}");
        assert!(!err.is_empty() && !err.contains("panicked"), "{chain:?}");
        let uploads = lab
            .cloud
            .count("compute.sslCertificates.insert", false)
            .await;
        assert_eq!(uploads, 0, "{chain:?}: uploaded");
        assert_eq!(lab.served("p1").await, vec![old.clone()], "{chain:?}");
        assert!(
            !config.state.dir.join("pending/app.json").exists(),
            "{chain:?}: stored"
        );
        // Not resumed for ever: the order record is dropped, the next attempt
        // orders anew.
        assert!(
            !config.state.dir.join("orders/app.json").exists(),
            "{chain:?}: order kept"
        );
        let st = ca.state.lock().unwrap();
        assert_eq!(
            (st.orders, st.finalized, st.downloads),
            (1, 1, 1),
            "{chain:?}"
        );
    }
}
