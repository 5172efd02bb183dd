//! Issuance end to end against real Pebble and the gcp-emulator: the Cloud DNS
//! solver writes the challenges, Pebble validates them against the emulator's
//! authoritative DNS servers.

mod support;

use std::time::{Duration, Instant};

use gclb_acme::acme::{AcmeClient, ClientOptions, Endpoint, IssueRequest, PollConfig, RetryConfig};
use gclb_acme::config::{AcmeConfig, DnsConfig, HumanDuration, KeyType};
use gclb_acme::dns::CloudDns;
use gclb_acme::state::StateDir;
use serde_json::json;
use support::gcp::Cloud;
use support::pebble::{Pebble, PebbleOptions};

fn acme_config(pebble: &Pebble) -> AcmeConfig {
    AcmeConfig {
        directory: pebble.directory_url.clone(),
        contact: vec![],
        accept_terms: true,
        ca_roots: vec![pebble.listener_ca_path.clone()],
        eab: None,
        profile: None,
    }
}

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

fn solver(cloud: &Cloud) -> CloudDns {
    let dns = DnsConfig {
        nameservers: cloud.nameservers(),
        propagation_timeout: HumanDuration(Duration::from_secs(20)),
        ttl: 60,
        ..DnsConfig::default()
    };
    CloudDns::new(cloud.gcp(), &dns, None)
}

fn request(names: &[&str]) -> IssueRequest {
    IssueRequest {
        certificate: "app".into(),
        names: names.iter().map(|s| s.to_string()).collect(),
        key_type: KeyType::EcdsaP384,
        reuse_key: false,
        profile: None,
        replaces: None,
    }
}

async fn zones(cloud: &Cloud) {
    cloud.zone("example-test", "example.test.", false).await;
    cloud
        .zone("example-test-private", "example.test.", true)
        .await;
    cloud.zone("other-test", "other.test.", false).await;
}

#[tokio::test]
async fn issues_across_two_zones_and_leaves_no_txt_behind() {
    let cloud = Cloud::start().await;
    zones(&cloud).await;
    let pebble = Pebble::start(PebbleOptions::new(cloud.emu.dns_addrs()[0])).await;
    let state = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect_with(
        &acme_config(&pebble),
        StateDir::open(state.path()).unwrap(),
        options(),
    )
    .await
    .unwrap();
    cloud.clear_requests().await;
    let issued = client
        .issue(
            &request(&["example.test", "*.example.test", "www.other.test"]),
            &solver(&cloud),
        )
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\n{}", pebble.log()));

    let mut sans = issued.leaf.dns_names.clone();
    sans.sort();
    assert_eq!(sans, ["*.example.test", "example.test", "www.other.test"]);
    assert_eq!(issued.leaf.key_type, Some(KeyType::EcdsaP384));
    // One change per zone to present, one per zone to clean up.
    assert_eq!(cloud.count("dns.changes.create", true).await, 4);
    assert!(
        cloud
            .txt("example-test", "_acme-challenge.example.test.")
            .await
            .is_empty()
    );
    assert!(
        cloud
            .txt("other-test", "_acme-challenge.www.other.test.")
            .await
            .is_empty()
    );
    // The private zone of the same name was never written to.
    let private_writes = cloud
        .requests()
        .await
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.contains("example-test-private"))
        })
        .count();
    assert_eq!(private_writes, 0);
    // Persisted before issue() returned.
    assert!(client.pending("app").await.unwrap().is_some());
}

#[tokio::test]
async fn validation_is_requested_only_after_the_lagging_server_serves_the_value() {
    let cloud = Cloud::start().await;
    zones(&cloud).await;
    cloud.lags(&[0, 2000]).await;
    // Pebble resolves through the lagging server: asked too early, it would
    // find no TXT value and the authorization would fail.
    // No rejected nonces here: a badNonce retry would count as a failed challenge
    // request and blur what this test asserts (no failed authorization).
    let mut opts = PebbleOptions::new(cloud.emu.dns_addrs()[1]);
    opts.nonce_reject_percent = 0;
    let pebble = Pebble::start(opts).await;
    let state = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect_with(
        &acme_config(&pebble),
        StateDir::open(state.path()).unwrap(),
        options(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let issued = client
        .issue(
            &request(&["example.test", "*.example.test"]),
            &solver(&cloud),
        )
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\n{}", pebble.log()));
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert_eq!(issued.leaf.dns_names.len(), 2);
    // No authorization failed: each challenge was answered once, successfully.
    let stats = client.stats();
    assert_eq!(
        stats.requests(Endpoint::Challenge),
        stats.successes(Endpoint::Challenge)
    );
    assert!(
        !pebble.log().contains("Error finalizing order"),
        "{}",
        pebble.log()
    );
}

#[tokio::test]
async fn conflicting_writes_on_the_first_change_do_not_fail_issuance() {
    let cloud = Cloud::start().await;
    zones(&cloud).await;
    cloud
        .fault(json!({"method": "dns.changes.create", "count": 1, "status": 412, "reason": "conditionNotMet"}))
        .await;
    cloud
        .fault(json!({"method": "dns.changes.create", "count": 1, "status": 409, "reason": "alreadyExists"}))
        .await;
    let pebble = Pebble::start(PebbleOptions::new(cloud.emu.dns_addrs()[0])).await;
    let state = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect_with(
        &acme_config(&pebble),
        StateDir::open(state.path()).unwrap(),
        options(),
    )
    .await
    .unwrap();
    client
        .issue(&request(&["example.test"]), &solver(&cloud))
        .await
        .unwrap_or_else(|e| panic!("issue: {e}\n{}", pebble.log()));
    assert_eq!(cloud.count("dns.changes.create", false).await, 4);
    assert!(
        cloud
            .txt("example-test", "_acme-challenge.example.test.")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn dns_permission_denied_fails_without_asking_the_ca_to_validate() {
    let cloud = Cloud::start().await;
    zones(&cloud).await;
    cloud
        .fault(json!({"method": "dns.changes.create", "status": 403, "reason": "forbidden", "message": "Forbidden"}))
        .await;
    let pebble = Pebble::start(PebbleOptions::new(cloud.emu.dns_addrs()[0])).await;
    let state = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect_with(
        &acme_config(&pebble),
        StateDir::open(state.path()).unwrap(),
        options(),
    )
    .await
    .unwrap();
    let err = client
        .issue(&request(&["example.test"]), &solver(&cloud))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("forbidden"), "{err}");
    // Validation was never requested: no failed authorization at the CA.
    assert_eq!(client.stats().requests(Endpoint::Challenge), 0);
}
