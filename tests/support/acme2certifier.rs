//! acme2certifier (an ACMEv2 server on PyPI) as a second CA beside Pebble.
//!
//! It runs from the test virtualenv (`target/test-venv`, or `GCLB_ACME_TEST_VENV`),
//! which `scripts/test` fills; a missing venv or package fails the test with the
//! command to run. `Acme2Certifier::start` generates, for this run only:
//! a listener CA and a `localhost` certificate for the HTTPS front, and an
//! issuing root + intermediate for acme2certifier's `openssl_ca_handler` (so it
//! returns leaf, intermediate and root, as deployments with `ca_cert_chain_list`
//! do). It writes `acme_srv.cfg` (SQLite database, DNS-01 validated against the
//! given DNS server) and serves the plain WSGI app (`acme2certifier_wsgi`) with
//! Python's `wsgiref`, its socket wrapped by the `ssl` module, on 127.0.0.1.
//!
//! One shim, test-only: acme2certifier's `dns_server_list` takes addresses
//! without a port, and our test DNS server listens on a free port, so the
//! launcher sets dnspython's resolver port before acme2certifier configures it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The version `scripts/test` installs (the behaviour documented in docs/cas.md).
pub const VERSION: &str = "0.46.3";

const LAUNCHER: &str = r#"
import os, ssl, sys
from wsgiref.simple_server import make_server, WSGIRequestHandler

import dns.resolver

# acme2certifier's dns_server_list has no port: give the resolver ours.
_dns_port = int(os.environ["A2C_DNS_PORT"])
_reset = dns.resolver.Resolver.reset
def _reset_with_port(self):
    _reset(self)
    self.port = _dns_port
dns.resolver.Resolver.reset = _reset_with_port

from acme2certifier.share import acme2certifier_wsgi as a2c

def app(environ, start_response):
    # TLS ends here, in front of the app: URLs it builds must say https.
    environ["wsgi.url_scheme"] = "https"
    return a2c.application(environ, start_response)

class Handler(WSGIRequestHandler):
    def address_string(self):
        return self.client_address[0]

# Port 0: the kernel picks a free port, no race with other tests; we print it.
srv = make_server("127.0.0.1", 0, app, handler_class=Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.environ["A2C_TLS_CERT"], os.environ["A2C_TLS_KEY"])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(f"acme2certifier listening on port {srv.server_port}", flush=True)
srv.serve_forever()
"#;

/// How to start acme2certifier.
#[derive(Clone, Debug)]
pub struct A2cOptions {
    /// DNS server its DNS-01 validation asks.
    pub dns_server: SocketAddr,
    /// Lifetime of issued certificates, in days.
    pub validity_days: u32,
    /// Leave out the CA handler's `issuing_ca_crl`: every enrollment then fails
    /// at finalize (HTTP 500 `serverInternal`, order turned invalid).
    pub break_enrollment: bool,
    /// ARI window: (percent of the lifetime where it starts, its length in
    /// seconds), acme2certifier's `renewalthreshold_pctg` and
    /// `renewal_window_duration`; its defaults are 85 % and the rest of the life.
    pub ari_window: Option<(f64, u64)>,
    /// How long a challenge request waits for the validation before answering
    /// with the challenge still `processing` (acme2certifier's
    /// `challenge_validation_timeout`, default 10 s); the validation goes on and
    /// decides later, leaving the order `pending`.
    pub validation_timeout_secs: Option<u32>,
}

impl A2cOptions {
    pub fn new(dns_server: SocketAddr) -> Self {
        A2cOptions {
            dns_server,
            validity_days: 30,
            break_enrollment: false,
            ari_window: None,
            validation_timeout_secs: None,
        }
    }
}

/// A running acme2certifier behind its TLS front.
pub struct Acme2Certifier {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `https://localhost:PORT/directory`
    pub directory_url: String,
    /// PEM file of the CA of the HTTPS listener (for `acme.ca_roots`).
    pub listener_ca_path: PathBuf,
    /// PEM of the issuing root (self-signed).
    pub root_pem: String,
    /// PEM of the issuing intermediate (signs the leaves).
    pub intermediate_pem: String,
    pub log_path: PathBuf,
}

/// The test virtualenv: `GCLB_ACME_TEST_VENV`, else `target/test-venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("GCLB_ACME_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"))
}

fn python() -> PathBuf {
    let venv = venv();
    let python = venv.join("bin/python");
    let install = format!(
        "scripts/test installs it; by hand: python3 -m venv {v} && {v}/bin/pip install \
         acme2certifier=={VERSION}",
        v = venv.display()
    );
    if !python.is_file() {
        panic!(
            "no test virtualenv at {} ({install}). Tests that need acme2certifier fail \
             rather than skip.",
            venv.display()
        );
    }
    let check = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m, acme2certifier, dns.resolver; \
             print(m.version('acme2certifier'))",
        ])
        .stdin(Stdio::null())
        .output();
    match check {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "acme2certifier is not importable from {} ({install}). Tests that need it fail \
             rather than skip.\n{}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run {}: {e} ({install})", python.display()),
    }
    python
}

struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: rcgen::Certificate,
    key_pem: String,
}

fn ca(cn: &str, parent: Option<&TestCa>) -> TestCa {
    let key = rcgen::KeyPair::generate().expect("ca key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.use_authority_key_identifier_extension = parent.is_some();
    let cert = match parent {
        Some(parent) => p.signed_by(&key, &parent.issuer).expect("ca cert"),
        None => p.self_signed(&key).expect("ca cert"),
    };
    TestCa {
        key_pem: key.serialize_pem(),
        issuer: rcgen::Issuer::new(p, key),
        cert,
    }
}

impl Acme2Certifier {
    pub async fn start(opts: A2cOptions) -> Acme2Certifier {
        let python = python();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();

        let listener_ca = ca("gclb-acme test acme2certifier listener CA", None);
        let tls_key = rcgen::KeyPair::generate().expect("tls key");
        let mut tls = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("tls");
        tls.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let tls_cert = tls
            .signed_by(&tls_key, &listener_ca.issuer)
            .expect("tls cert");
        let root = ca("gclb-acme test a2c root", None);
        let intermediate = ca("gclb-acme test a2c intermediate", Some(&root));

        let write = |name: &str, body: &str| {
            let p = d.join(name);
            std::fs::write(&p, body).expect("write");
            p
        };
        let listener_ca_path = write("listener-ca.pem", &listener_ca.cert.pem());
        let tls_cert_path = write("tls.pem", &tls_cert.pem());
        let tls_key_path = write("tls.key", &tls_key.serialize_pem());
        let root_path = write("root.pem", &root.cert.pem());
        let inter_path = write("intermediate.pem", &intermediate.cert.pem());
        let inter_key_path = write("intermediate.key", &intermediate.key_pem);
        std::fs::create_dir(d.join("certs")).expect("certs dir");
        let launcher = write("launcher.py", LAUNCHER);
        let config = format!(
            "[DEFAULT]\n\
             debug: True\n\
             dns_server_list: [\"{dns_ip}\"]\n\
             \n\
             [Nonce]\n\
             nonce_check_disable: False\n\
             \n\
             [CAhandler]\n\
             handler_module: acme2certifier.cahandlers.openssl_ca_handler\n\
             issuing_ca_key: {inter_key}\n\
             issuing_ca_cert: {inter}\n\
             ca_cert_chain_list: [\"{root}\"]\n\
             {crl}\
             cert_save_path: {certs}\n\
             cert_validity_days: {days}\n\
             \n\
             [DBhandler]\n\
             handler_module: acme2certifier.dbhandlers.wsgi_handler\n\
             dbfile: {db}\n\
             \n\
             [Challenge]\n\
             challenge_validation_disable: False\n\
             {validation_timeout}\
             {ari}",
            dns_ip = opts.dns_server.ip(),
            inter_key = inter_key_path.display(),
            inter = inter_path.display(),
            root = root_path.display(),
            crl = if opts.break_enrollment {
                String::new()
            } else {
                // The handler wants the path; the file is made on first revocation.
                format!("issuing_ca_crl: {}\n", d.join("crl.pem").display())
            },
            certs = d.join("certs").display(),
            days = opts.validity_days,
            db = d.join("acme_srv.db").display(),
            validation_timeout = match opts.validation_timeout_secs {
                Some(t) => format!("challenge_validation_timeout: {t}\n"),
                None => String::new(),
            },
            ari = match opts.ari_window {
                Some((pctg, secs)) => format!(
                    "\n[Renewalinfo]\nrenewalthreshold_pctg: {pctg}\nrenewal_window_duration: {secs}\n"
                ),
                None => String::new(),
            },
        );
        let config_path = write("acme_srv.cfg", &config);

        let log_path = d.join("acme2certifier.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(python)
            .arg(&launcher)
            .current_dir(d)
            .env("ACME_SRV_CONFIGFILE", &config_path)
            .env("A2C_DNS_PORT", opts.dns_server.port().to_string())
            .env("A2C_TLS_CERT", &tls_cert_path)
            .env("A2C_TLS_KEY", &tls_key_path)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn acme2certifier");

        let mut a2c = Acme2Certifier {
            child,
            directory_url: String::new(),
            listener_ca_path,
            root_pem: root.cert.pem(),
            intermediate_pem: intermediate.cert.pem(),
            log_path,
            dir,
        };
        let client = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(listener_ca.cert.pem().as_bytes()).expect("ca"),
            ])
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        const LISTENING: &str = "acme2certifier listening on port ";
        loop {
            if let Ok(Some(status)) = a2c.child.try_wait() {
                panic!("acme2certifier exited early ({status}):\n{}", a2c.log());
            }
            if Instant::now() > deadline {
                panic!("acme2certifier did not answer within 30 s:\n{}", a2c.log());
            }
            if a2c.directory_url.is_empty() {
                let port = a2c.log().split(LISTENING).nth(1).and_then(|r| {
                    r.split_whitespace()
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                });
                match port {
                    Some(p) => a2c.directory_url = format!("https://localhost:{p}/directory"),
                    None => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
            }
            let ready = client.get(&a2c.directory_url).send().await;
            if let Ok(r) = ready
                && r.status().is_success()
            {
                let dir: serde_json::Value = r.json().await.expect("directory JSON");
                assert!(
                    dir["newOrder"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("https://")),
                    "directory: {dir}"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        a2c
    }

    /// Every order in its database, oldest first: (name, status). Read with the
    /// venv's Python (sqlite3) so the test sees what the CA holds, not what we sent.
    pub fn orders(&self) -> Vec<(String, String)> {
        let out = Command::new(python())
            .args([
                "-c",
                "import sqlite3, sys\n\
                 db = sqlite3.connect(sys.argv[1])\n\
                 for n, s in db.execute('select o.name, s.name from orders o \
                 join status s on o.status_id = s.id order by o.id'):\n    print(n, s)",
            ])
            .arg(self.dir.path().join("acme_srv.db"))
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "reading acme2certifier's database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    }

    /// Its output so far (debug log: every request and validation step).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `n` lines of its output (for assertion messages).
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Acme2Certifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its debug log is long: GCLB_ACME_A2C_LOG_DIR keeps a copy per run.
        if let Some(keep) = std::env::var_os("GCLB_ACME_A2C_LOG_DIR") {
            let name = format!("acme2certifier-{}.log", std::process::id());
            let _ = std::fs::copy(&self.log_path, Path::new(&keep).join(name));
        }
    }
}
