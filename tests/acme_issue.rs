//! The ACME engine against real Pebble, with pebble-challtestsrv as the DNS
//! server Pebble validates DNS-01 against. Pebble rejects 5 % of nonces by
//! default: every test here survives that.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use gclb_acme::acme::{
    AcmeClient, AcmeError, ClientOptions, Endpoint, IssueRequest, IssuedCertificate, PollConfig,
    RetryConfig, account_file, load_pending,
};
use gclb_acme::certs;
use gclb_acme::config::{AcmeConfig, EabConfig, KeyType};
use gclb_acme::state::StateDir;
use support::challtestsrv::{ChallTestSrv, TestSolver};
use support::pebble::{Pebble, PebbleOptions};
use x509_parser::prelude::{FromDer, X509Certificate};

struct Env {
    srv: ChallTestSrv,
    pebble: Pebble,
}

async fn env_with(f: impl FnOnce(&mut PebbleOptions)) -> Env {
    let srv = ChallTestSrv::start().await;
    let mut opts = PebbleOptions::new(srv.dns_addr);
    f(&mut opts);
    let pebble = Pebble::start(opts).await;
    Env { srv, pebble }
}

async fn env() -> Env {
    env_with(|_| {}).await
}

fn acme_config(pebble: &Pebble) -> AcmeConfig {
    AcmeConfig {
        directory: pebble.directory_url.clone(),
        contact: vec!["mailto:ops@example.test".into()],
        accept_terms: true,
        ca_roots: vec![pebble.listener_ca_path.clone()],
        eab: None,
        profile: None,
    }
}

/// Fast polling and retries: Pebble answers in milliseconds.
fn options() -> ClientOptions {
    ClientOptions {
        retry: RetryConfig {
            attempts: 5,
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        },
        poll: PollConfig {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
        },
    }
}

async fn connect(pebble: &Pebble, state: &Path) -> AcmeClient {
    AcmeClient::connect_with(
        &acme_config(pebble),
        StateDir::open(state).unwrap(),
        options(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}\n{}", pebble.log()))
}

fn request(name: &str, names: &[&str], key_type: KeyType) -> IssueRequest {
    IssueRequest {
        certificate: name.into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        key_type,
        reuse_key: false,
        profile: None,
        replaces: None,
    }
}

/// Leaf -> intermediate -> Pebble's issuing root, with signature checks.
fn verify_against_root(issued: &IssuedCertificate, root_pem: &str) {
    let chain = certs::split_chain(&issued.chain_pem).unwrap();
    assert!(chain.len() >= 2, "leaf + intermediate expected");
    let root = certs::split_chain(root_pem).unwrap();
    let mut all: Vec<_> = chain.iter().map(|d| d.to_vec()).collect();
    all.push(root[0].to_vec());
    let parsed: Vec<X509Certificate<'_>> = all
        .iter()
        .map(|d| X509Certificate::from_der(d).unwrap().1)
        .collect();
    for pair in parsed.windows(2) {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .expect("signature chains up to Pebble's issuing root");
        assert_eq!(pair[0].issuer(), pair[1].subject());
    }
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn issues_wildcard_apex_and_other_name_then_reuses_account_and_stored_certificate() {
    let env = env().await;
    let tmp = tempfile::tempdir().unwrap();
    let state_path = tmp.path().join("state");
    let names = ["example.test", "*.example.test", "www.other.test"];

    let client = connect(&env.pebble, &state_path).await;
    assert!(client.account_created());
    assert_eq!(client.stats().successes(Endpoint::NewAccount), 1);

    let solver = TestSolver::new(&env.srv);
    let req = request("site", &names, KeyType::EcdsaP256);
    let started = Instant::now();
    let issued = client
        .issue(&req, &solver)
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\n{}", env.pebble.log()));
    eprintln!("wildcard+apex+other issuance: {:?}", started.elapsed());

    // The certificate: names, key type, chain to Pebble's root, key match.
    assert_eq!(issued.names, sorted(&names));
    let mut sans = issued.leaf.dns_names.clone();
    sans.sort();
    assert_eq!(sans, sorted(&names));
    assert_eq!(issued.leaf.key_type, Some(KeyType::EcdsaP256));
    verify_against_root(&issued, &env.pebble.issuing_root_pem);
    let key = issued.key_pem.key_pair().unwrap();
    certs::validate_chain(
        &issued.chain_pem,
        &issued.names,
        &key,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();

    // One batch: three records, wildcard and apex on one name, both values served at once.
    let log = solver.log();
    assert_eq!(log.presented.len(), 1);
    assert_eq!(log.presented[0].len(), 3);
    let apex: Vec<_> = log.presented[0]
        .iter()
        .filter(|r| r.record_name == "_acme-challenge.example.test")
        .collect();
    assert_eq!(apex.len(), 2, "{:?}", log.presented[0]);
    let mut ids: Vec<_> = apex.iter().map(|r| r.identifier.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["*.example.test", "example.test"]);
    assert_ne!(apex[0].value, apex[1].value);
    let served = &log
        .served
        .iter()
        .find(|(n, _)| n == "_acme-challenge.example.test")
        .unwrap()
        .1;
    assert!(served.contains(&apex[0].value) && served.contains(&apex[1].value));
    // Cleanup happened, with the same records, and DNS no longer serves them.
    assert_eq!(log.cleaned, log.presented);
    assert!(env.srv.query_txt("_acme-challenge.example.test").is_empty());

    // Persisted before returning; the order record is gone.
    let state = StateDir::open(&state_path).unwrap();
    let pending = load_pending(&state.clone().into(), "site")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.leaf.serial_hex, issued.leaf.serial_hex);
    assert!(state.list("orders").unwrap().is_empty());
    drop(client);

    // Second run: the account is loaded, not created; the crash-after-issuance
    // case returns the stored certificate and orders nothing.
    let client2 = connect(&env.pebble, &state_path).await;
    assert!(!client2.account_created());
    assert_eq!(client2.stats().successes(Endpoint::NewAccount), 0);
    let solver2 = TestSolver::new(&env.srv);
    let again = client2.issue(&req, &solver2).await.unwrap();
    assert_eq!(again.leaf.serial_hex, issued.leaf.serial_hex);
    assert_eq!(client2.stats().successes(Endpoint::NewOrder), 0);
    assert!(solver2.log().presented.is_empty());
    assert_eq!(state.list("accounts").unwrap().len(), 1);

    // Installed: the next issue orders anew, and `replaces` (Pebble 2.4 has no
    // ARI) is dropped after the refusal rather than failing the renewal.
    assert!(client2.mark_installed("site").await.unwrap());
    assert!(!client2.mark_installed("site").await.unwrap());
    let mut renew = req.clone();
    renew.replaces = issued.leaf.certificate_identifier();
    assert!(renew.replaces.is_some());
    let renewed = client2.issue(&renew, &solver2).await.unwrap();
    assert_ne!(renewed.leaf.serial_hex, issued.leaf.serial_hex);
    assert_eq!(client2.stats().successes(Endpoint::NewOrder), 1);
    assert_eq!(client2.stats().successes(Endpoint::NewAccount), 0);
    // A new key per issuance unless reuse_key.
    assert_ne!(renewed.key_pem, issued.key_pem);
}

#[tokio::test]
async fn a_changed_directory_url_gets_its_own_account() {
    let a = env().await;
    let b = Pebble::start(PebbleOptions::new(a.srv.dns_addr)).await;
    let tmp = tempfile::tempdir().unwrap();
    let c1 = connect(&a.pebble, tmp.path()).await;
    let c2 = connect(&b, tmp.path()).await;
    assert!(c1.account_created() && c2.account_created());
    assert_ne!(c1.account_id(), c2.account_id());
    let state = StateDir::open(tmp.path()).unwrap();
    let files = state.list("accounts").unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    for dir in [&a.pebble.directory_url, &b.directory_url] {
        let f = account_file(dir);
        assert!(files.contains(&f.trim_start_matches("accounts/").to_string()));
    }
    // And each is reused afterwards.
    let again = connect(&b, tmp.path()).await;
    assert!(!again.account_created());
    assert_eq!(again.account_id(), c2.account_id());
}

#[tokio::test]
async fn external_account_binding() {
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let env = env_with(|o| o.eab_keys = vec![("kid-1".into(), hmac.clone())]).await;
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("eab.key");
    std::fs::write(&key_file, format!("{hmac}\n")).unwrap();

    // Without EAB the CA refuses, permanently, with its problem type.
    let mut cfg = acme_config(&env.pebble);
    let e = AcmeClient::connect_with(
        &cfg,
        StateDir::open(tmp.path().join("s0")).unwrap(),
        options(),
    )
    .await
    .err()
    .expect("EAB is required");
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(
        e.problem().and_then(|p| p.short_type()),
        Some("externalAccountRequired"),
        "{e}"
    );

    // A wrong HMAC key is refused too.
    let wrong = tmp.path().join("wrong.key");
    std::fs::write(
        &wrong,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([9u8; 32]),
    )
    .unwrap();
    cfg.eab = Some(EabConfig {
        kid: "kid-1".into(),
        hmac_key_file: wrong,
    });
    let e = AcmeClient::connect_with(
        &cfg,
        StateDir::open(tmp.path().join("s1")).unwrap(),
        options(),
    )
    .await
    .err()
    .expect("wrong EAB key");
    assert!(!e.is_retryable(), "{e}");
    assert!(!e.to_string().contains(&hmac));

    // The right key works, and the account then issues.
    cfg.eab = Some(EabConfig {
        kid: "kid-1".into(),
        hmac_key_file: key_file,
    });
    let client = AcmeClient::connect_with(
        &cfg,
        StateDir::open(tmp.path().join("s2")).unwrap(),
        options(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.pebble.log()));
    assert!(client.account_created());
    let solver = TestSolver::new(&env.srv);
    client
        .issue(
            &request("eab", &["eab.example.test"], KeyType::EcdsaP256),
            &solver,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_authorization_reports_the_cas_problem_and_cleans_up() {
    let env = env().await;
    let tmp = tempfile::tempdir().unwrap();
    let client = connect(&env.pebble, tmp.path()).await;
    let mut solver = TestSolver::new(&env.srv);
    solver.wrong_value = true;
    let e = client
        .issue(
            &request("bad", &["bad.example.test"], KeyType::EcdsaP256),
            &solver,
        )
        .await
        .expect_err("wrong TXT value must fail");
    eprintln!("{e}");
    match &e {
        AcmeError::Authorization {
            identifier,
            problem,
        } => {
            assert_eq!(identifier, "bad.example.test");
            assert_eq!(
                problem.r#type.as_deref(),
                Some("urn:ietf:params:acme:error:unauthorized"),
                "{problem}"
            );
            let detail = problem.detail.as_deref().unwrap_or("");
            assert!(detail.contains("Correct value not found"), "{detail}");
        }
        other => panic!("expected an authorization failure, got {other:?}"),
    }
    assert!(!e.is_retryable());
    let log = solver.log();
    assert_eq!(log.cleaned, log.presented);
    assert!(
        env.srv
            .query_txt("_acme-challenge.bad.example.test")
            .is_empty()
    );
    let state = StateDir::open(tmp.path()).unwrap();
    assert!(state.list("orders").unwrap().is_empty());
    assert!(state.list("pending").unwrap().is_empty());
}

#[tokio::test]
async fn a_crash_mid_order_resumes_the_recorded_order() {
    let env = env().await;
    let tmp = tempfile::tempdir().unwrap();
    let req = request(
        "resume",
        &["resume.example.test", "*.resume.example.test"],
        KeyType::EcdsaP384,
    );
    let first_order;
    {
        let client = connect(&env.pebble, tmp.path()).await;
        let mut solver = TestSolver::new(&env.srv);
        solver.fail_present = true;
        let e = client
            .issue(&req, &solver)
            .await
            .expect_err("present fails");
        assert!(matches!(e, AcmeError::Solver(_)), "{e}");
        assert_eq!(
            solver.log().cleaned.len(),
            1,
            "cleanup runs after a failed present"
        );
        let state = StateDir::open(tmp.path()).unwrap();
        assert_eq!(state.list("orders").unwrap(), vec!["resume.json"]);
        first_order = client.stats().successes(Endpoint::NewOrder);
        assert_eq!(first_order, 1);
    }
    let client = connect(&env.pebble, tmp.path()).await;
    let solver = TestSolver::new(&env.srv);
    let issued = client.issue(&req, &solver).await.unwrap();
    assert_eq!(
        client.stats().successes(Endpoint::NewOrder),
        0,
        "resumed, not re-ordered"
    );
    assert_eq!(issued.leaf.key_type, Some(KeyType::EcdsaP384));
    verify_against_root(&issued, &env.pebble.issuing_root_pem);
}

#[tokio::test]
async fn every_key_type_issues() {
    let env = env().await;
    let tmp = tempfile::tempdir().unwrap();
    let client = connect(&env.pebble, tmp.path()).await;
    let solver = TestSolver::new(&env.srv);
    for kt in [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ] {
        let name = format!("kt-{}", kt.as_str());
        let dns = format!("{name}.example.test");
        let issued = client
            .issue(&request(&name, &[&dns], kt), &solver)
            .await
            .unwrap_or_else(|e| panic!("{kt}: {e}"));
        assert_eq!(issued.leaf.key_type, Some(kt));
        assert_eq!(issued.leaf.public_key_algorithm, kt.as_str());
        assert_eq!(
            certs::key_type_of(&issued.key_pem.key_pair().unwrap()),
            Some(kt)
        );
        verify_against_root(&issued, &env.pebble.issuing_root_pem);
    }
}

#[tokio::test]
async fn state_is_private_even_with_umask_000() {
    let env = env().await;
    let tmp = tempfile::tempdir().unwrap();
    let state_path = tmp.path().join("state");
    // Process-wide: other tests then create files with a wider umask, harmless.
    let old = unsafe { umask(0) };
    let client = connect(&env.pebble, &state_path).await;
    let solver = TestSolver::new(&env.srv);
    let result = client
        .issue(
            &request("modes", &["modes.example.test"], KeyType::Rsa2048),
            &solver,
        )
        .await;
    unsafe { umask(old) };
    result.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state_path), 0o700);
    let mut files = 0;
    for sub in ["accounts", "pending"] {
        let d = state_path.join(sub);
        assert_eq!(mode(&d), 0o700, "{sub}");
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            files += 1;
        }
    }
    assert_eq!(files, 2);
}

#[tokio::test]
async fn survives_a_high_bad_nonce_rate() {
    // Half the nonces rejected: instant-acme retries badNonce 3 times, the flow
    // retries the step on top of that.
    let env = env_with(|o| o.nonce_reject_percent = 50).await;
    let tmp = tempfile::tempdir().unwrap();
    let client = connect(&env.pebble, tmp.path()).await;
    let solver = TestSolver::new(&env.srv);
    for i in 0..2 {
        let apex = format!("nonce{i}.example.test");
        let wild = format!("*.{apex}");
        client
            .issue(
                &request(&format!("nonce{i}"), &[&apex, &wild], KeyType::EcdsaP256),
                &solver,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", env.pebble.log()));
    }
    let stats = client.stats().snapshot();
    let errors: u64 = stats.values().map(|s| s.errors).sum();
    eprintln!("requests with 50% bad nonces: {stats:?}");
    // ~30 signed requests at 50%: zero rejections would mean the setting did not apply.
    assert!(errors > 0, "Pebble rejected no nonce at 50%?");
}

/// The figure: wildcard + apex issuance time against local Pebble, median of 10,
/// with the default poll tuning (what the daemon uses).
#[tokio::test]
async fn median_issuance_time_wildcard_and_apex() {
    let env = env().await;
    let tmp = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect(
        &acme_config(&env.pebble),
        StateDir::open(tmp.path()).unwrap(),
    )
    .await
    .unwrap();
    let solver = TestSolver::new(&env.srv);
    let mut times = Vec::new();
    for i in 0..10 {
        let apex = format!("bench{i}.example.test");
        let wild = format!("*.{apex}");
        let started = Instant::now();
        client
            .issue(
                &request(&format!("bench{i}"), &[&apex, &wild], KeyType::EcdsaP256),
                &solver,
            )
            .await
            .unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    let median = (times[4] + times[5]) / 2;
    let per_issue = client.stats().total_requests() as f64 / 10.0;
    eprintln!(
        "FIGURE issuance wildcard+apex: median {median:?}, min {:?}, max {:?}, {per_issue:.1} requests/issuance (default PollConfig)",
        times[0], times[9]
    );
    assert!(median < Duration::from_secs(30));
}

unsafe extern "C" {
    fn umask(mask: u32) -> u32;
}
