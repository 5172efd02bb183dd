//! Pebble, Let's Encrypt's test CA (Debian package `pebble`), for integration tests.
//!
//! `Pebble::start(PebbleOptions { dns_server, .. })` writes a config with free ports
//! and a listener certificate generated here (rcgen), starts `pebble` with
//! `PEBBLE_VA_NOSLEEP=1` and `-dnsserver`, waits until the directory answers, and
//! fetches the issuing root from the management port. Dropping it kills Pebble.
//! A missing `pebble` binary fails the test with the command that installs it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start Pebble.
#[derive(Clone, Debug)]
pub struct PebbleOptions {
    /// DNS server Pebble's VA resolves `_acme-challenge` names with.
    pub dns_server: SocketAddr,
    /// Lifetime of issued certificates (Pebble's `certificateValidityPeriod`).
    pub validity: Option<Duration>,
    /// Percentage of valid nonces rejected as bad (Pebble's default is 5).
    pub nonce_reject_percent: u32,
    /// External account binding: key id -> base64url HMAC key; makes EAB required.
    pub eab_keys: Vec<(String, String)>,
    /// Percentage of orders that reuse a valid authorization of the account
    /// instead of a new challenge (Pebble's `PEBBLE_AUTHZREUSE`, default 50).
    pub authz_reuse_percent: Option<u32>,
}

impl PebbleOptions {
    pub fn new(dns_server: SocketAddr) -> Self {
        PebbleOptions {
            dns_server,
            validity: None,
            nonce_reject_percent: 5,
            eab_keys: Vec::new(),
            authz_reuse_percent: None,
        }
    }
}

/// A running Pebble.
pub struct Pebble {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `https://localhost:PORT/dir`
    pub directory_url: String,
    /// `https://localhost:PORT` (roots, intermediates, cert status).
    pub management_url: String,
    /// PEM of the CA that signed Pebble's own HTTPS listener: trust it to talk to Pebble.
    pub listener_ca_pem: String,
    /// Path of that PEM.
    pub listener_ca_path: PathBuf,
    /// PEM of Pebble's issuing root: verify issued chains against it.
    pub issuing_root_pem: String,
    /// Where Pebble's stdout/stderr go.
    pub log_path: PathBuf,
}

fn pebble_binary() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("pebble");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "pebble is not installed: run `apt-get install -y pebble` (scripts/test does this). \
         Tests that need Pebble fail rather than skip."
    );
}

impl Pebble {
    pub async fn start(opts: PebbleOptions) -> Pebble {
        let bin = pebble_binary();
        let dir = tempfile::tempdir().expect("tempdir");

        // A CA and a leaf for localhost / 127.0.0.1, generated for this run.
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "gclb-acme test listener CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("leaf params");
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");

        let cert_path = dir.path().join("listener.pem");
        let key_path = dir.path().join("listener.key");
        let ca_path = dir.path().join("listener-ca.pem");
        std::fs::write(&cert_path, leaf.pem()).expect("write cert");
        std::fs::write(&key_path, leaf_key.serialize_pem()).expect("write key");
        std::fs::write(&ca_path, ca_cert.pem()).expect("write ca");

        let port = super::free_port();
        let mgmt = super::free_port();
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": cert_path,
            "privateKey": key_path,
            "httpPort": super::free_port(),
            "tlsPort": super::free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !opts.eab_keys.is_empty(),
        });
        if let Some(v) = opts.validity {
            pebble["certificateValidityPeriod"] = serde_json::json!(v.as_secs().max(1));
        }
        if !opts.eab_keys.is_empty() {
            let keys: serde_json::Map<String, serde_json::Value> = opts
                .eab_keys
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            pebble["externalAccountMACKeys"] = serde_json::Value::Object(keys);
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&serde_json::json!({ "pebble": pebble })).expect("json"),
        )
        .expect("write config");

        let log_path = dir.path().join("pebble.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(bin);
        if let Some(p) = opts.authz_reuse_percent {
            cmd.env("PEBBLE_AUTHZREUSE", p.to_string());
        }
        let child = cmd
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(opts.dns_server.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                opts.nonce_reject_percent.to_string(),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn pebble");

        let listener_ca_pem = ca_cert.pem();
        let client = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(listener_ca_pem.as_bytes()).expect("ca")
            ])
            .build()
            .expect("client");
        let directory_url = format!("https://localhost:{port}/dir");
        let management_url = format!("https://localhost:{mgmt}");
        let mut p = Pebble {
            child,
            dir,
            directory_url,
            management_url,
            listener_ca_pem,
            listener_ca_path: ca_path,
            issuing_root_pem: String::new(),
            log_path,
        };

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("pebble exited early ({status}):\n{}", p.log());
            }
            let ready = client.get(&p.directory_url).send().await;
            if matches!(&ready, Ok(r) if r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                panic!("pebble did not answer within 20 s:\n{}", p.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.issuing_root_pem = client
            .get(format!("{}/roots/0", p.management_url))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("fetch issuing root")
            .text()
            .await
            .expect("root text");
        assert!(p.issuing_root_pem.contains("BEGIN CERTIFICATE"));
        p
    }

    /// Pebble's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
