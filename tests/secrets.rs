//! Secrets stay secret. The real binary issues and installs a certificate
//! (`renew`) with trace logging (`-vv`, libraries at info too) and again with
//! `--log-format json -vv`, under `umask 000`, against Pebble requiring
//! External Account Binding; a first run is made to fail at the upload so that
//! the issued key sits in `pending/`. Across every line of stdout and stderr:
//!
//! - no PEM armour of a private key, and no base64 line of the issued key, the
//!   account key, or the EAB HMAC key;
//! - `bootstrap --dry-run -vv` with an IAP OAuth client secret file never
//!   prints the secret.
//!
//! And every file under the state directory is 0600 and every directory 0700,
//! whatever the umask.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::fleet;
use support::gcp::PROJECT;
use support::lb::{Lab, NAMES};

const EAB_KID: &str = "kid-secrets-test";
/// base64url of 32 random-looking bytes: the HMAC key Pebble shares with us.
const EAB_HMAC: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
const OAUTH_SECRET: &str = "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alue-1234";

/// `sh -c 'umask 000; exec gclb-acme ARGS'` with the lab's environment; returns
/// (success, stdout + stderr).
fn run(lab: &Lab, home: &Path, args: &[&str]) -> (bool, String) {
    let log = lab.tmp.path().join("run.log");
    let _ = std::fs::remove_file(&log);
    let mut script = String::from("umask 000; exec \"$0\"");
    for i in 0..args.len() {
        script.push_str(&format!(" \"${}\"", i + 1));
    }
    let base = fleet::command(lab, home, &log, args);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&script)
        .arg(base.get_program())
        .args(base.get_args());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The base64 body lines of every PEM block in `pem` (the secret material).
fn pem_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(String::from)
        .collect()
}

/// Every string value in a JSON document that looks like a PEM private key.
fn private_keys_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains("PRIVATE KEY") => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| private_keys_in(x, out)),
        Value::Object(o) => o.values().for_each(|x| private_keys_in(x, out)),
        _ => {}
    }
}

/// The account key (instant-acme's `key_pkcs8`, base64url DER) as it is
/// stored, and the body lines of its PEM form.
fn account_keys_in_dir(dir: &Path) -> Vec<String> {
    use base64::Engine;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        let k = v["credentials"]["key_pkcs8"]
            .as_str()
            .unwrap_or_else(|| panic!("no key_pkcs8 in {}", e.path().display()))
            .to_string();
        let der = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(k.trim_end_matches('='))
            .unwrap();
        let std = base64::engine::general_purpose::STANDARD.encode(&der);
        out.extend(
            std.as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8(c.to_vec()).unwrap()),
        );
        out.extend(
            k.as_bytes()
                .chunks(32)
                .map(|c| String::from_utf8(c.to_vec()).unwrap()),
        );
        out.push(k);
    }
    out
}

fn keys_in_dir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path())
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            private_keys_in(&v, &mut out);
        }
    }
    out
}

fn assert_clean(what: &str, text: &str, secrets: &[String]) {
    assert!(!text.is_empty(), "{what}: no output captured");
    assert!(
        !text.contains("PRIVATE KEY"),
        "{what}: PEM armour in:\n{text}"
    );
    for s in secrets {
        // Short lines (the last of a PEM body) could match by chance; 16+ chars cannot.
        if s.len() >= 16 {
            assert!(
                !text.contains(s.as_str()),
                "{what}: secret {s:?} in the output"
            );
        }
    }
}

fn assert_modes(root: &Path) {
    let meta = std::fs::metadata(root).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "{}",
        root.display()
    );
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let m = e.metadata().unwrap();
        if m.is_dir() {
            assert_modes(&e.path());
        } else {
            assert_eq!(
                m.permissions().mode() & 0o777,
                0o600,
                "{} under umask 000",
                e.path().display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_secret_reaches_the_logs_and_key_files_are_private() {
    let lab = Lab::start_with(|o| {
        o.eab_keys = vec![(EAB_KID.to_string(), EAB_HMAC.to_string())];
    })
    .await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    let (s, b) = lab
        .cloud
        .post(
            &format!("v2/projects/{PROJECT}/locations/europe-west1/services?serviceId=app"),
            json!({"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let hmac_file = lab.tmp.path().join("eab.key");
    std::fs::write(&hmac_file, EAB_HMAC).unwrap();
    let secret_file = lab.tmp.path().join("oauth-secret");
    std::fs::write(&secret_file, OAUTH_SECRET).unwrap();
    let config = lab.write_cli_config(&format!(
        r#"[acme.eab]
kid = "{EAB_KID}"
hmac_key_file = "{}"

[stack]
region = "europe-west1"
service = "app"
domains = ["example.test"]
certificate = "app"

[stack.iap]
enabled = true
oauth_client_id = "1234-abc.apps.googleusercontent.com"
oauth_client_secret_file = "{}"
members = ["user:alice@example.test"]
"#,
        hmac_file.display(),
        secret_file.display()
    ));
    let config = config.to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let state = lab.state_dir();

    // 1. Issue, fail at the upload: the key waits in pending/.
    lab.cloud
        .fault(json!({"method": "compute.sslCertificates.insert", "status": 400, "reason": "invalid", "message": "injected"}))
        .await;
    let (ok1, text1) = run(
        &lab,
        home.path(),
        &["-vv", "renew", "--force", "--config", config],
    );
    assert!(!ok1, "the upload was made to fail:\n{text1}");
    let pending = keys_in_dir(&state.join("pending"));
    assert_eq!(pending.len(), 1, "the issued key is stored: {text1}");
    let accounts = account_keys_in_dir(&state.join("accounts"));
    assert!(accounts.len() > 2, "the account key is stored");
    fleet::clear_faults(&lab).await;

    // 2. Install it, JSON logs at trace level.
    let (ok2, text2) = run(
        &lab,
        home.path(),
        &["--log-format", "json", "-vv", "renew", "--config", config],
    );
    assert!(ok2, "{text2}");
    lab.assert_serving(&["p1"]).await;

    // 3. A fresh issuance and install in one go, text logs at trace level.
    let (ok3, text3) = run(
        &lab,
        home.path(),
        &["-vv", "renew", "--force", "--config", config],
    );
    assert!(ok3, "{text3}");

    // 4. bootstrap's plan, with the OAuth client secret loaded.
    let (_, text4) = run(
        &lab,
        home.path(),
        &["-vv", "bootstrap", "--dry-run", "--config", config],
    );

    let mut secrets: Vec<String> = Vec::new();
    for k in &pending {
        secrets.extend(pem_lines(k));
    }
    secrets.extend(accounts.iter().cloned());
    secrets.push(EAB_HMAC.to_string());
    secrets.push(OAUTH_SECRET.to_string());
    assert!(secrets.len() > 4);
    for (what, text) in [
        ("renew -vv (upload fails)", &text1),
        ("renew --log-format json -vv", &text2),
        ("renew --force -vv", &text3),
        ("bootstrap --dry-run -vv", &text4),
    ] {
        assert_clean(what, text, &secrets);
    }
    // The JSON run is JSON throughout and really at trace level.
    assert!(
        text2.lines().filter(|l| l.starts_with('{')).count() >= 5,
        "{text2}"
    );
    assert!(
        text1.contains("TRACE") || text1.contains("DEBUG"),
        "{text1}"
    );
    assert!(
        text4.contains("oauth") || text4.contains("IAP") || text4.contains("iap"),
        "{text4}"
    );

    // Key files: 0600 in 0700 directories, under umask 000.
    assert_modes(&state);
}
