//! A second ACME server beside Pebble: acme2certifier (openssl_ca_handler, DNS-01
//! validated against pebble-challtestsrv, HTTPS on loopback). Each behaviour the
//! two differ in is tested against both: issuance and the uploaded chain, a
//! failed validation (acme2certifier leaves the order `pending`), and a renewal
//! with ARI `replaces` (acme2certifier advertises ARI but does not echo
//! `replaces`; Pebble 2.4 has no ARI). docs/cas.md has the table.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gclb_acme::acme::{
    AcmeClient, AcmeError, ClientOptions, Endpoint, IssueRequest, IssuedCertificate, PollConfig,
    RetryConfig,
};
use gclb_acme::certs;
use gclb_acme::config::{AcmeConfig, KeyType};
use gclb_acme::state::StateDir;
use support::acme2certifier::{A2cOptions, Acme2Certifier};
use support::challtestsrv::{ChallTestSrv, TestSolver};
use support::pebble::{Pebble, PebbleOptions};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One of the two servers, with what the tests need from it.
enum Ca {
    Pebble(Pebble),
    A2c(Acme2Certifier),
}

impl Ca {
    async fn start(which: &str, srv: &ChallTestSrv) -> Ca {
        match which {
            "pebble" => {
                let mut o = PebbleOptions::new(srv.dns_addr);
                // Fresh challenges every order: the failure test needs one.
                o.authz_reuse_percent = Some(0);
                Ca::Pebble(Pebble::start(o).await)
            }
            "acme2certifier" => Ca::A2c(Acme2Certifier::start(A2cOptions::new(srv.dns_addr)).await),
            other => panic!("unknown CA {other}"),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Ca::Pebble(_) => "pebble",
            Ca::A2c(_) => "acme2certifier",
        }
    }

    fn directory(&self) -> String {
        match self {
            Ca::Pebble(p) => p.directory_url.clone(),
            Ca::A2c(a) => a.directory_url.clone(),
        }
    }

    fn roots(&self) -> PathBuf {
        match self {
            Ca::Pebble(p) => p.listener_ca_path.clone(),
            Ca::A2c(a) => a.listener_ca_path.clone(),
        }
    }

    fn log(&self) -> String {
        match self {
            Ca::Pebble(p) => p.log(),
            Ca::A2c(a) => a.log_tail(80),
        }
    }

    /// The self-signed root the issued chain leads to.
    fn issuing_root(&self) -> String {
        match self {
            Ca::Pebble(p) => p.issuing_root_pem.clone(),
            Ca::A2c(a) => a.root_pem.clone(),
        }
    }
}

/// The production poll schedule and timeout (180 s): a failure that waited for
/// the timeout would show in the measured time and in the error's kind.
fn options() -> ClientOptions {
    ClientOptions {
        retry: RetryConfig {
            attempts: 5,
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        },
        poll: PollConfig::default(),
    }
}

async fn connect(ca: &Ca, state: &Path) -> AcmeClient {
    let config = AcmeConfig {
        directory: ca.directory(),
        contact: vec!["mailto:ops@example.test".into()],
        accept_terms: true,
        ca_roots: vec![ca.roots()],
        eab: None,
        profile: None,
    };
    AcmeClient::connect_with(&config, StateDir::open(state).unwrap(), options())
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", ca.name(), ca.log()))
}

fn request(name: &str, names: &[&str]) -> IssueRequest {
    IssueRequest {
        certificate: name.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        key_type: KeyType::EcdsaP256,
        reuse_key: false,
        profile: None,
        replaces: None,
    }
}

/// The uploaded chain: leaf and intermediate(s), each signed by the next, the
/// last signed by the CA's root, and no self-signed certificate in it.
fn check_serving_chain(ca: &Ca, issued: &IssuedCertificate) {
    let ders = certs::split_chain(&issued.chain_pem).unwrap();
    assert!(
        (2..=certs::MAX_CHAIN).contains(&ders.len()),
        "{}: {} certificates",
        ca.name(),
        ders.len()
    );
    let root = certs::split_chain(&ca.issuing_root()).unwrap();
    let mut all: Vec<Vec<u8>> = ders.iter().map(|d| d.to_vec()).collect();
    all.push(root[0].to_vec());
    let parsed: Vec<X509Certificate<'_>> = all
        .iter()
        .map(|d| X509Certificate::from_der(d).unwrap().1)
        .collect();
    for pair in parsed.windows(2) {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .unwrap_or_else(|e| panic!("{}: chain does not verify: {e}", ca.name()));
    }
    for c in &parsed[..parsed.len() - 1] {
        assert_ne!(
            c.subject(),
            c.issuer(),
            "{}: a self-signed certificate in the uploaded chain",
            ca.name()
        );
    }
}

async fn issues_and_uploads_leaf_and_intermediate(which: &str) {
    let srv = ChallTestSrv::start().await;
    let ca = Ca::start(which, &srv).await;
    let tmp = tempfile::tempdir().unwrap();
    let client = connect(&ca, tmp.path()).await;
    let solver = TestSolver::new(&srv);
    let issued = client
        .issue(
            &request("www", &["www.example.test", "example.test"]),
            &solver,
        )
        .await
        .unwrap_or_else(|e| panic!("{which}: {e}\n{}", ca.log()));
    check_serving_chain(&ca, &issued);
    assert_eq!(certs::split_chain(&issued.chain_pem).unwrap().len(), 2);
    let log = solver.log();
    assert_eq!(log.cleaned, log.presented, "{which}: every record removed");
    assert_eq!(client.stats().successes(Endpoint::NewOrder), 1);
}

#[tokio::test]
async fn pebble_issues_and_the_chain_is_leaf_and_intermediate() {
    issues_and_uploads_leaf_and_intermediate("pebble").await;
}

#[tokio::test]
async fn acme2certifier_issues_and_its_root_is_not_uploaded() {
    // acme2certifier returns leaf, intermediate and root (checked below against
    // its raw answer in the log of the order flow: three certificates in, two out).
    issues_and_uploads_leaf_and_intermediate("acme2certifier").await;
}

/// A wrong TXT value: the error must be the CA's verdict on the authorization,
/// quickly, not a timeout. Prints the time from the challenge request to the
/// error (the CA's own validation time included).
async fn a_failed_validation_is_reported_with_the_cas_words(which: &str) -> Duration {
    let srv = ChallTestSrv::start().await;
    let ca = Ca::start(which, &srv).await;
    let tmp = tempfile::tempdir().unwrap();
    let client = connect(&ca, tmp.path()).await;
    let mut solver = TestSolver::new(&srv);
    solver.wrong_value = true;
    let started = Instant::now();
    let e = client
        .issue(&request("bad", &["bad.example.test"]), &solver)
        .await
        .expect_err("a wrong TXT value must fail");
    let took = started.elapsed();
    eprintln!("{which}: failed validation reported after {took:?}: {e}");
    let challenge = client
        .stats()
        .snapshot()
        .get(&Endpoint::Challenge)
        .map(|s| s.total)
        .unwrap_or_default();
    println!(
        "FIGURE {which}: time to a clear failure for a failed validation: {} ms from the \
         start of the issuance; the challenge request (the CA validating) took {} ms",
        took.as_millis(),
        challenge.as_millis()
    );
    match &e {
        AcmeError::Authorization {
            identifier,
            problem,
        } => {
            assert_eq!(identifier, "bad.example.test", "{which}");
            let detail = problem.detail.as_deref().unwrap_or("");
            match ca {
                // Pebble puts its problem in the challenge.
                Ca::Pebble(_) => {
                    assert_eq!(
                        problem.r#type.as_deref(),
                        Some("urn:ietf:params:acme:error:unauthorized"),
                        "{e}"
                    );
                    assert!(detail.contains("Correct value not found"), "{e}");
                }
                // acme2certifier answers the challenge request `invalid` and
                // marks the authorization invalid, with no problem document
                // anywhere (its reason stays in its own log): we say exactly that.
                Ca::A2c(a) => {
                    assert_eq!(problem.r#type, None, "{e}");
                    assert!(
                        detail.contains("authorization invalid")
                            && detail.contains("dns-01 challenge invalid")
                            && detail.contains("gave no reason"),
                        "{e}"
                    );
                    assert!(
                        a.log().contains("DNS record not found or incorrect"),
                        "acme2certifier logged why"
                    );
                }
            }
        }
        other => panic!(
            "{which}: expected the CA's authorization failure, got {other:?}\n{}",
            ca.log()
        ),
    }
    assert!(!e.is_retryable(), "{which}");
    let log = solver.log();
    assert_eq!(log.cleaned, log.presented, "{which}: cleaned up");
    let state = StateDir::open(tmp.path()).unwrap();
    assert!(
        state.list("orders").unwrap().is_empty(),
        "{which}: the failed order is forgotten"
    );
    took
}

#[tokio::test]
async fn pebble_failed_validation_is_reported_with_the_cas_words() {
    a_failed_validation_is_reported_with_the_cas_words("pebble").await;
}

#[tokio::test]
async fn acme2certifier_failed_validation_is_reported_with_the_cas_words() {
    a_failed_validation_is_reported_with_the_cas_words("acme2certifier").await;
}

/// acme2certifier refuses to finalize (its CA handler is misconfigured: HTTP 500
/// `serverInternal`, "enrollment failed") and turns the order invalid: the error
/// carries its finalize answer, not a bare "the order is invalid".
#[tokio::test]
async fn acme2certifier_failed_enrollment_is_reported_with_the_cas_words() {
    let srv = ChallTestSrv::start().await;
    let mut opts = A2cOptions::new(srv.dns_addr);
    opts.break_enrollment = true;
    let ca = Ca::A2c(Acme2Certifier::start(opts).await);
    let tmp = tempfile::tempdir().unwrap();
    let client = connect(&ca, tmp.path()).await;
    let solver = TestSolver::new(&srv);
    let started = Instant::now();
    let e = client
        .issue(&request("www", &["www.example.test"]), &solver)
        .await
        .expect_err("enrollment is broken");
    println!(
        "FIGURE acme2certifier: time to a clear failure for a refused finalize: {} ms",
        started.elapsed().as_millis()
    );
    match &e {
        AcmeError::OrderInvalid { problem, .. } => {
            assert_eq!(
                problem.r#type.as_deref(),
                Some("urn:ietf:params:acme:error:serverInternal"),
                "{e}"
            );
            assert_eq!(problem.detail.as_deref(), Some("enrollment failed"), "{e}");
        }
        other => panic!("expected the order's failure, got {other:?}\n{}", ca.log()),
    }
    let state = StateDir::open(tmp.path()).unwrap();
    assert!(
        state.list("orders").unwrap().is_empty(),
        "the invalid order is forgotten"
    );
}

/// A renewal of an issued certificate, with `replaces` when the CA has ARI:
/// one newOrder per issuance at the CA, whatever it does with `replaces`.
async fn renews_with_one_order_per_issuance(which: &str) {
    let srv = ChallTestSrv::start().await;
    let ca = Ca::start(which, &srv).await;
    let tmp = tempfile::tempdir().unwrap();
    let client = connect(&ca, tmp.path()).await;
    let solver = TestSolver::new(&srv);
    let first = client
        .issue(&request("www", &["www.example.test"]), &solver)
        .await
        .unwrap_or_else(|e| panic!("{which}: {e}\n{}", ca.log()));
    client.mark_installed("www").await.unwrap();
    let ari_id = first.leaf.ari_id.clone().expect("leaf has an AKI");
    let window = client
        .renewal_info(&ari_id)
        .await
        .unwrap_or_else(|e| panic!("{which}: renewalInfo: {e}\n{}", ca.log()));
    match ca {
        // Pebble 2.4 has no renewalInfo in its directory.
        Ca::Pebble(_) => assert!(window.is_none(), "{which}: {window:?}"),
        Ca::A2c(_) => {
            let (w, _) = window.expect("acme2certifier advertises ARI");
            assert!(w.start < w.end, "{which}: {w:?}");
            assert!(
                w.end <= first.leaf.not_after,
                "{which}: window {w:?} ends after the certificate"
            );
        }
    }

    let mut renewal = request("www", &["www.example.test"]);
    renewal.replaces = first.leaf.certificate_identifier();
    assert!(renewal.replaces.is_some());
    let second = client
        .issue(&renewal, &solver)
        .await
        .unwrap_or_else(|e| panic!("{which}: renewal: {e}\n{}", ca.log()));
    assert_ne!(second.leaf.serial_hex, first.leaf.serial_hex, "{which}");
    check_serving_chain(&ca, &second);
    assert_eq!(
        client.stats().successes(Endpoint::NewOrder),
        2,
        "{which}: one order per issuance"
    );
    if let Ca::A2c(a) = &ca {
        // What the CA holds: two orders, both issued, none left pending.
        let orders = a.orders();
        assert_eq!(orders.len(), 2, "{orders:?}");
        assert!(orders.iter().all(|(_, s)| s == "valid"), "{orders:?}");
    }
}

#[tokio::test]
async fn pebble_renews_without_ari_in_one_order() {
    renews_with_one_order_per_issuance("pebble").await;
}

#[tokio::test]
async fn acme2certifier_renews_with_ari_in_one_order_though_replaces_is_not_echoed() {
    renews_with_one_order_per_issuance("acme2certifier").await;
}

/// `gclb-acme run`, the real binary, against acme2certifier and the emulator:
/// the CA's ARI window (starting ~9 s into a one-day certificate, 4 s long)
/// drives every renewal (the lifetime fallback would wait ~16 h), each renewal
/// sends `replaces`, and the CA ends up with one order per issuance, none pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme2certifier_the_daemon_renews_twice_on_the_cas_ari_window() {
    use std::process::Stdio;
    use support::lb::{Lab, NAMES};

    // Lab brings the emulator (zone, URL map); its Pebble stays unused.
    let lab = Lab::start().await;
    let mut opts = A2cOptions::new(lab.cloud.emu.dns_addrs()[0]);
    opts.validity_days = 1;
    opts.ari_window = Some((0.01, 4));
    let a2c = Acme2Certifier::start(opts).await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    // Metrics off: a free port picked here could be taken by another test first.
    let config_path = lab.write_cli_config(
        "[daemon]\nmetrics_listen = \"\"\nretry_initial = \"1s\"\nretry_max = \"5s\"\n",
    );
    let toml = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace(&lab.pebble.directory_url, &a2c.directory_url)
        // acme2certifier refuses an account without a contact (Pebble does not).
        .replace(
            "accept_terms = true",
            "accept_terms = true\ncontact = [\"mailto:ops@example.test\"]",
        )
        .replace(
            &lab.pebble.listener_ca_path.display().to_string(),
            &a2c.listener_ca_path.display().to_string(),
        );
    assert!(toml.contains(&a2c.directory_url), "{toml}");
    std::fs::write(&config_path, toml).unwrap();

    let home = tempfile::tempdir().unwrap();
    let log_path = lab.tmp.path().join("daemon.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gclb-acme"))
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env("HOME", home.path())
        .env("GCE_METADATA_HOST", lab.metadata_host())
        .args(["--log-format", "json", "-v", "run", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // The old certificate replaced, then renewed twice.
    let started = Instant::now();
    let mut seen = Vec::<String>::new();
    while seen.len() < 3 && started.elapsed() < Duration::from_secs(120) {
        let served = lab.served("p1").await;
        assert_eq!(served.len(), 1, "one certificate served at a time");
        if served[0] != old && !seen.contains(&served[0]) {
            seen.push(served[0].clone());
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early ({status}):\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let text = log();
    assert!(
        seen.len() >= 3,
        "only {} certificate(s) in {:?}:\n{text}\n{}",
        seen.len(),
        started.elapsed(),
        a2c.log_tail(40)
    );
    assert!(status.success(), "exit {status}:\n{text}");
    println!(
        "FIGURE acme2certifier daemon: first issuance and two ARI renewals in {:?}",
        started.elapsed()
    );

    // The renewals were ARI's doing, with `replaces`, and no second order.
    let by_ari = text.matches("\"reason\":\"Renewal(Ari)\"").count();
    assert!(by_ari >= 2, "{by_ari} ARI-driven renewal(s):\n{text}");
    assert!(
        text.matches("did not echo `replaces`").count() >= 2,
        "the log says what the CA did with `replaces`:\n{text}"
    );
    assert!(
        text.contains("uploading the chain without it"),
        "acme2certifier's root is dropped:\n{text}"
    );
    assert!(
        !text.contains("ordering without it"),
        "no second order:\n{text}"
    );
    let orders = a2c.orders();
    let valid = orders.iter().filter(|(_, s)| s == "valid").count();
    assert!(valid >= 3, "{orders:?}");
    // SIGTERM may land mid-renewal: at most that one order is not finished.
    assert!(orders.len() - valid <= 1, "orders left behind: {orders:?}");
}

/// The issue's case: acme2certifier answers the challenge request before it has
/// decided (its DNS server never answers, and the request waits only 1 s), then
/// marks the authorization invalid and leaves the order `pending`. Polling the
/// order alone waited for the 180 s timeout; reading the authorizations while
/// the order is pending reports the CA's verdict at the next poll.
#[tokio::test]
async fn acme2certifier_a_verdict_after_the_challenge_answer_is_seen_at_the_next_poll() {
    let srv = ChallTestSrv::start().await;
    // A DNS server that never answers: acme2certifier's lookup runs until
    // dnspython's lifetime (5 s) ends, then it calls the challenge invalid.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    // When its first query arrives: with the lookup's length from the CA's log,
    // when the CA decided.
    let first_query = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    {
        let first_query = first_query.clone();
        silent
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            if silent.recv(&mut buf).is_ok() {
                *first_query.lock().unwrap() = Some(Instant::now());
            }
            // Keep the socket open (and silent) a while longer.
            std::thread::sleep(Duration::from_secs(30));
        });
    }
    let mut opts = A2cOptions::new(silent_addr);
    opts.validation_timeout_secs = Some(1);
    let ca = Ca::A2c(Acme2Certifier::start(opts).await);
    let tmp = tempfile::tempdir().unwrap();
    let client = connect(&ca, tmp.path()).await;
    let solver = TestSolver::new(&srv);
    let started = Instant::now();
    let e = client
        .issue(&request("late", &["late.example.test"]), &solver)
        .await
        .expect_err("the CA cannot see the record");
    let ended = Instant::now();
    let took = ended - started;
    let Ca::A2c(a) = &ca else { unreachable!() };
    let log = a.log();
    // "The resolution lifetime expired after 5.403 seconds": the CA's lookup.
    let lookup = log
        .split("lifetime expired after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map(Duration::from_secs_f64);
    let after_decision = match (*first_query.lock().unwrap(), lookup) {
        (Some(q), Some(l)) => format!("{} ms", (ended - (q + l)).as_millis()),
        _ => "unknown".into(),
    };
    println!(
        "FIGURE acme2certifier (verdict after the challenge answer): clear failure {} ms after \
         the issuance started, {after_decision} after the CA decided",
        took.as_millis()
    );
    // The challenge answer was not the verdict: it came back still open.
    assert!(
        log.contains("Challenge validation still processing after timeout"),
        "the CA answered before deciding"
    );
    match &e {
        AcmeError::Authorization {
            identifier,
            problem,
        } => {
            assert_eq!(identifier, "late.example.test");
            let detail = problem.detail.as_deref().unwrap_or("");
            assert!(detail.contains("authorization invalid"), "{e}");
        }
        other => panic!(
            "expected the CA's authorization failure, got {other:?}\n{}",
            a.log_tail(60)
        ),
    }
    // The order stayed pending at the CA: the flow did not wait for it.
    let orders = a.orders();
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(
        orders[0].1, "pending",
        "acme2certifier leaves the order pending"
    );
    let state = StateDir::open(tmp.path()).unwrap();
    assert!(state.list("orders").unwrap().is_empty());
}

/// A CA that validates the challenge and then never moves the order past
/// `pending` (a stuck order, which neither Pebble nor acme2certifier shows):
/// reported as such within seconds, not after the 180 s timeout. An in-process
/// fake over plain HTTP on loopback; it checks no signatures.
mod stuck {
    use std::sync::Arc;

    use axum::Router;
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use serde_json::json;

    pub struct StuckCa {
        pub base: String,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for StuckCa {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn reply(status: StatusCode, body: serde_json::Value, location: Option<String>) -> Response {
        let mut r = (status, axum::Json(body)).into_response();
        r.headers_mut()
            .insert("Replay-Nonce", HeaderValue::from_static("stuck-nonce"));
        if let Some(l) = location {
            r.headers_mut()
                .insert("Location", HeaderValue::from_str(&l).unwrap());
        }
        r
    }

    impl StuckCa {
        pub async fn start() -> StuckCa {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://localhost:{}", listener.local_addr().unwrap().port());
            let b = Arc::new(base.clone());
            let order = {
                let b = b.clone();
                move || {
                    json!({
                        "status": "pending",
                        "identifiers": [{"type": "dns", "value": "stuck.example.test"}],
                        "authorizations": [format!("{b}/authz/1")],
                        "finalize": format!("{b}/finalize/1"),
                    })
                }
            };
            let authz = {
                let b = b.clone();
                move || {
                    json!({
                        "status": "valid",
                        "identifier": {"type": "dns", "value": "stuck.example.test"},
                        "challenges": [{"type": "dns-01", "url": format!("{b}/chall/1"),
                                        "token": "dG9rZW4tdG9rZW4tdG9rZW4", "status": "valid"}],
                    })
                }
            };
            let pending_authz = {
                let b = b.clone();
                move || {
                    json!({
                        "status": "pending",
                        "identifier": {"type": "dns", "value": "stuck.example.test"},
                        "challenges": [{"type": "dns-01", "url": format!("{b}/chall/1"),
                                        "token": "dG9rZW4tdG9rZW4tdG9rZW4", "status": "pending"}],
                    })
                }
            };
            let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let dir = {
                let b = b.clone();
                move || async move {
                    axum::Json(json!({
                        "newNonce": format!("{b}/nonce"),
                        "newAccount": format!("{b}/account"),
                        "newOrder": format!("{b}/order"),
                    }))
                }
            };
            let nonce = || async { reply(StatusCode::OK, json!({}), None) };
            let account = {
                let b = b.clone();
                move || async move {
                    reply(
                        StatusCode::CREATED,
                        json!({"status": "valid"}),
                        Some(format!("{b}/acct/1")),
                    )
                }
            };
            let new_order = {
                let (b, order) = (b.clone(), order.clone());
                move || async move { reply(StatusCode::CREATED, order(), Some(format!("{b}/order/1"))) }
            };
            let get_order = move || async move { reply(StatusCode::OK, order(), None) };
            let get_authz = {
                let asked = asked.clone();
                move || async move {
                    if asked.load(std::sync::atomic::Ordering::SeqCst) {
                        reply(StatusCode::OK, authz(), None)
                    } else {
                        reply(StatusCode::OK, pending_authz(), None)
                    }
                }
            };
            let chall = {
                let b = b.clone();
                move || async move {
                    asked.store(true, std::sync::atomic::Ordering::SeqCst);
                    reply(
                        StatusCode::OK,
                        json!({"type": "dns-01", "url": format!("{b}/chall/1"),
                        "token": "dG9rZW4tdG9rZW4tdG9rZW4", "status": "valid"}),
                        None,
                    )
                }
            };
            let app = Router::new()
                .route("/dir", get(dir))
                .route("/nonce", get(nonce).head(nonce))
                .route("/account", post(account))
                .route("/order", post(new_order))
                .route("/order/1", post(get_order))
                .route("/authz/1", post(get_authz))
                .route("/chall/1", post(chall));
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            StuckCa { base, task }
        }
    }
}

/// A solver that publishes nothing (the fake CA checks nothing).
struct NoDns;

impl gclb_acme::acme::Dns01Solver for NoDns {
    async fn present(
        &self,
        _: &[gclb_acme::acme::ChallengeRecord],
    ) -> Result<(), gclb_acme::acme::SolverError> {
        Ok(())
    }
    async fn cleanup(
        &self,
        _: &[gclb_acme::acme::ChallengeRecord],
    ) -> Result<(), gclb_acme::acme::SolverError> {
        Ok(())
    }
}

#[tokio::test]
async fn an_order_left_pending_with_every_authorization_valid_is_reported_as_stuck() {
    let ca = stuck::StuckCa::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let config = AcmeConfig {
        directory: format!("{}/dir", ca.base),
        contact: vec![],
        accept_terms: true,
        ca_roots: vec![],
        eab: None,
        profile: None,
    };
    let client = AcmeClient::connect_with(&config, StateDir::open(tmp.path()).unwrap(), options())
        .await
        .unwrap();
    let started = Instant::now();
    let e = client
        .issue(&request("stuck", &["stuck.example.test"]), &NoDns)
        .await
        .expect_err("the order never becomes ready");
    println!(
        "FIGURE stuck order reported after {} ms (poll timeout 180 s)",
        started.elapsed().as_millis()
    );
    match &e {
        AcmeError::Protocol { message, .. } => {
            assert!(message.contains("every authorization is valid"), "{e}");
            assert!(message.contains(&format!("{}/order/1", ca.base)), "{e}");
        }
        other => panic!("expected a stuck-order error, got {other:?}"),
    }
    // Kept on record: a later run resumes the order if the CA catches up.
    let state = StateDir::open(tmp.path()).unwrap();
    assert_eq!(state.list("orders").unwrap().len(), 1);
}
