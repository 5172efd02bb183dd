//! DNS-01 through Cloud DNS against the gcp-emulator: zone choice, atomic merged
//! writes, conflict retries, CNAME delegation and authoritative propagation.

mod support;

use std::time::{Duration, Instant};

use gclb_acme::config::{DnsConfig, HumanDuration};
use gclb_acme::dns::Checker;
use gclb_acme::dns::{CloudDns, DnsError, TxtRecord};
use serde_json::json;
use support::gcp::Cloud;

fn dns_config(cloud: &Cloud, timeout: Duration) -> DnsConfig {
    DnsConfig {
        nameservers: cloud.nameservers(),
        propagation_timeout: HumanDuration(timeout),
        ttl: 60,
        ..DnsConfig::default()
    }
}

fn rec(name: &str, value: &str) -> TxtRecord {
    TxtRecord {
        name: name.into(),
        value: value.into(),
    }
}

/// Every simulated name server serves `value` at `name` right now.
async fn served_everywhere(cloud: &Cloud, name: &str, value: &str) -> bool {
    let c = Checker::new();
    for addr in cloud.emu.dns_addrs() {
        if !c.txt(name, addr).await.unwrap().iter().any(|v| v == value) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn wildcard_and_apex_share_one_set_and_each_zone_gets_one_change() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    cloud
        .zone("example-test-private", "example.test.", true)
        .await;
    cloud.zone("other-test", "other.test.", false).await;
    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(10)),
        None,
    );
    let records = [
        rec("_acme-challenge.example.test", "apex-token"),
        rec("_acme-challenge.example.test", "wildcard-token"),
        rec("_acme-challenge.www.other.test", "other-token"),
    ];
    cloud.clear_requests().await;
    let report = solver.present(&records).await.unwrap();
    assert_eq!(report.changes, 2);
    assert_eq!(cloud.count("dns.changes.create", true).await, 2);

    let mut apex = cloud
        .txt("example-test", "_acme-challenge.example.test.")
        .await;
    apex.sort();
    assert_eq!(apex, ["apex-token", "wildcard-token"]);
    assert_eq!(
        cloud
            .txt("other-test", "_acme-challenge.www.other.test.")
            .await,
        ["other-token"]
    );
    // The private zone of the same name was never written.
    assert!(
        cloud
            .txt("example-test-private", "_acme-challenge.example.test.")
            .await
            .is_empty()
    );
    assert!(served_everywhere(&cloud, "_acme-challenge.example.test.", "wildcard-token").await);

    solver.cleanup(&records).await.unwrap();
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
}

#[tokio::test]
async fn another_clients_value_survives_our_write_and_our_cleanup() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    let (s, b) = cloud
        .change(
            "example-test",
            json!([{"name": "_acme-challenge.example.test.", "type": "TXT", "ttl": 300, "rrdatas": ["\"theirs\""]}]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(10)),
        None,
    );
    let ours = [rec("_acme-challenge.example.test", "ours")];
    solver.present(&ours).await.unwrap();
    let mut both = cloud
        .txt("example-test", "_acme-challenge.example.test.")
        .await;
    both.sort();
    assert_eq!(both, ["ours", "theirs"]);
    solver.cleanup(&ours).await.unwrap();
    assert_eq!(
        cloud
            .txt("example-test", "_acme-challenge.example.test.")
            .await,
        ["theirs"]
    );
}

#[tokio::test]
async fn conflicts_on_the_first_change_are_reread_and_retried() {
    for (status, reason) in [(412, "conditionNotMet"), (409, "alreadyExists")] {
        let cloud = Cloud::start().await;
        cloud.zone("example-test", "example.test.", false).await;
        cloud
            .fault(json!({"method": "dns.changes.create", "count": 1, "status": status, "reason": reason}))
            .await;
        let solver = CloudDns::new(
            cloud.gcp(),
            &dns_config(&cloud, Duration::from_secs(10)),
            None,
        );
        solver
            .present(&[rec("_acme-challenge.example.test", "v")])
            .await
            .unwrap();
        assert_eq!(
            cloud.count("dns.changes.create", false).await,
            2,
            "{reason}"
        );
        assert_eq!(cloud.count("dns.changes.create", true).await, 1, "{reason}");
        assert_eq!(
            cloud
                .txt("example-test", "_acme-challenge.example.test.")
                .await,
            ["v"]
        );
    }
}

#[tokio::test]
async fn a_real_concurrent_writer_is_not_overwritten() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    let a = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(10)),
        None,
    );
    let b = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(10)),
        None,
    );
    let ra: Vec<_> = (0..5)
        .map(|i| rec("_acme-challenge.example.test", &format!("a{i}")))
        .collect();
    let rb: Vec<_> = (0..5)
        .map(|i| rec("_acme-challenge.example.test", &format!("b{i}")))
        .collect();
    let (x, y) = tokio::join!(a.present(&ra), b.present(&rb));
    x.unwrap();
    y.unwrap();
    assert_eq!(
        cloud
            .txt("example-test", "_acme-challenge.example.test.")
            .await
            .len(),
        10
    );
    let (x, y) = tokio::join!(a.cleanup(&ra), b.cleanup(&rb));
    x.unwrap();
    y.unwrap();
    assert!(
        cloud
            .txt("example-test", "_acme-challenge.example.test.")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn waits_for_the_lagging_name_server() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    cloud.lags(&[0, 2000]).await;
    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(20)),
        None,
    );
    let started = Instant::now();
    let report = solver
        .present(&[rec("_acme-challenge.example.test", "slow")])
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "returned after {took:?}, before the lag passed"
    );
    assert!(served_everywhere(&cloud, "_acme-challenge.example.test.", "slow").await);
    // Backing off: a 2 s wait costs tens of queries, not hundreds.
    assert!(
        report.dns_queries >= 3 && report.dns_queries < 60,
        "{} queries",
        report.dns_queries
    );
}

/// Issue #18: a change is not polled to `done`. Cloud DNS applies an accepted
/// change (the zone is the sum of its changes, in sequence) and `done` says
/// only that the servers were sent the update, which the solver asks itself:
/// here every server serves the value while the change is still `pending`.
#[tokio::test]
async fn changes_are_not_polled_to_done() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    let (s, b) = cloud
        .post("emulator/settings", json!({"dns_change_delay_ms": 60_000}))
        .await;
    assert!(s == 204 || s == 200, "{s} {b}");
    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(20)),
        None,
    );
    let r = [rec("_acme-challenge.example.test", "v")];
    cloud.clear_requests().await;
    let report = solver.present(&r).await.unwrap();
    assert_eq!(report.changes, 1);
    assert!(served_everywhere(&cloud, "_acme-challenge.example.test.", "v").await);
    solver.cleanup(&r).await.unwrap();
    assert!(
        cloud
            .txt("example-test", "_acme-challenge.example.test.")
            .await
            .is_empty()
    );
    assert_eq!(cloud.count("dns.changes.create", true).await, 2);
    assert_eq!(cloud.count("dns.changes.get", false).await, 0);
    let (_, list) = cloud
        .get(&format!(
            "dns/v1/projects/{}/managedZones/example-test/changes",
            support::gcp::PROJECT
        ))
        .await;
    let pending = list["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "pending")
        .count();
    assert_eq!(pending, 2, "both still pending: {list}");
}

#[tokio::test]
async fn propagation_timeout_names_the_servers_still_missing() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    cloud.lags(&[0, 60_000]).await;
    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_millis(700)),
        None,
    );
    let err = solver
        .present(&[rec("_acme-challenge.example.test", "never")])
        .await
        .unwrap_err();
    let lagging = cloud.emu.dns_addrs()[1].to_string();
    let text = err.to_string();
    assert!(matches!(err, DnsError::Propagation(_)), "{err:?}");
    assert!(text.contains(&lagging), "{text}");
    assert!(
        !text.contains(&cloud.emu.dns_addrs()[0].to_string()),
        "{text}"
    );
    assert!(text.contains("_acme-challenge.example.test."), "{text}");
}

#[tokio::test]
async fn cname_delegation_is_followed_into_another_zone() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    cloud
        .zone("acme-zone", "acme-delegation.test.", false)
        .await;
    let (s, b) = cloud
        .change(
            "example-test",
            json!([{"name": "_acme-challenge.app.example.test.", "type": "CNAME", "ttl": 300, "rrdatas": ["app.acme-delegation.test."]}]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(10)),
        None,
    );
    let target = solver
        .target("_acme-challenge.app.example.test")
        .await
        .unwrap();
    assert_eq!(target.zone.name, "acme-zone");
    assert_eq!(target.name, "app.acme-delegation.test.");
    let r = [rec("_acme-challenge.app.example.test", "delegated")];
    solver.present(&r).await.unwrap();
    assert_eq!(
        cloud.txt("acme-zone", "app.acme-delegation.test.").await,
        ["delegated"]
    );
    solver.cleanup(&r).await.unwrap();
    assert!(
        cloud
            .txt("acme-zone", "app.acme-delegation.test.")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn explicit_zone_skips_discovery_and_no_zone_is_a_clear_error() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(10)),
        Some("example-test".into()),
    );
    cloud.clear_requests().await;
    solver
        .present(&[rec("_acme-challenge.example.test", "z")])
        .await
        .unwrap();
    assert_eq!(cloud.count("dns.managedZones.list", false).await, 0);
    assert_eq!(cloud.count("dns.managedZones.get", true).await, 1);

    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(10)),
        None,
    );
    let err = solver
        .present(&[rec("_acme-challenge.nowhere.test", "z")])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no public Cloud DNS zone of project demo-project holds _acme-challenge.nowhere.test."
    );
}

#[tokio::test]
async fn permission_denied_is_reported_with_googles_reason() {
    let cloud = Cloud::start().await;
    cloud.zone("example-test", "example.test.", false).await;
    cloud
        .fault(json!({"method": "dns.changes.create", "status": 403, "reason": "forbidden", "message": "Forbidden"}))
        .await;
    let solver = CloudDns::new(
        cloud.gcp(),
        &dns_config(&cloud, Duration::from_secs(10)),
        None,
    );
    let err = solver
        .present(&[rec("_acme-challenge.example.test", "z")])
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    let g = err.gcp().expect("a GCP error");
    assert!(g.is(403, "forbidden"), "{g}");
    assert_eq!(
        cloud.count("dns.changes.create", false).await,
        1,
        "not retried"
    );
}
