//! `renew` end to end against real Pebble and the gcp-emulator: issuance through
//! Cloud DNS, upload, swap in place, clean up; crash injection at every step
//! boundary; faults; the exact API cost; the real binary.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gclb_acme::acme::Endpoint;
use gclb_acme::lb::step;
use gclb_acme::reconcile::{Done, Outcome, RenewError, Renewer};
use serde_json::{Value, json};
use support::lb::{Lab, NAMES, finalized};

async fn renew_one(r: &Renewer, force: bool) -> Result<Outcome, RenewError> {
    let mut v = r.renew_all(None, force).await;
    assert_eq!(v.len(), 1);
    v.remove(0).1
}

fn installed(o: &Outcome) -> (&gclb_acme::lb::InstallReport, bool) {
    match &o.done {
        Done::Installed { report, issued, .. } => (report, *issued),
        other => panic!("expected an installation, got {other:?}"),
    }
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn renewal_replaces_ours_in_place_keeps_the_unrelated_one_and_costs_three_mutations() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, "unrelated").await;
    lab.proxy("p1", &[&unrelated, &old]).await;
    let config = lab.config(&["p1"]);
    let r = lab.renewer(&config).await;
    lab.cloud.clear_requests().await;
    let acme_before = r.acme.stats().total_requests();

    let started = Instant::now();
    let out = renew_one(&r, false)
        .await
        .unwrap_or_else(|e| panic!("renew: {e}\n{}", lab.pebble.log()));
    let took = started.elapsed();
    let renewal_log = lab.cloud.requests().await;
    let (report, issued) = installed(&out);
    assert!(issued);
    assert!(out.healthy());
    let new = report.resource.clone();
    assert_eq!(lab.served("p1").await, [unrelated.clone(), new.clone()]);
    assert_eq!(report.deleted, std::slice::from_ref(&old));
    assert_eq!(report.swapped, ["p1"]);
    assert!(matches!(
        report.verify[..],
        [gclb_acme::lb::VerifyOutcome::Skipped { .. }]
    ));
    assert_eq!(lab.certificates().await, sorted(&[&new, &unrelated]));

    // The new one is Pebble's, for exactly the configured names.
    let c = r.gcp.get_ssl_certificate(&new).await.unwrap().unwrap();
    let mut sans = c.subject_alternative_names.clone();
    sans.sort();
    assert_eq!(sans, sorted(&NAMES));
    let leaf = gclb_acme::certs::leaf_info(
        &gclb_acme::certs::split_chain(c.certificate.as_deref().unwrap()).unwrap()[0],
    )
    .unwrap();
    assert!(
        leaf.issuer_cn.as_deref().unwrap_or("").contains("Pebble"),
        "{:?}",
        leaf.issuer_cn
    );
    // The unrelated one is untouched.
    let u = r
        .gcp
        .get_ssl_certificate(&unrelated)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.description.as_deref(), Some("uploaded by hand"));
    lab.assert_no_txt().await;
    assert!(r.acme.pending("app").await.unwrap().is_none());

    // Exactly three compute mutations: insert, setSslCertificates, delete.
    let muts = lab.cloud.compute_mutations().await;
    assert_eq!(
        muts,
        [
            "compute.sslCertificates.insert",
            "compute.targetHttpsProxies.setSslCertificates",
            "compute.sslCertificates.delete"
        ]
    );
    let reqs = lab.cloud.requests().await;
    let dns_changes = reqs
        .iter()
        .filter(|r| r["id"] == "dns.changes.create")
        .count();
    let compute_all = reqs
        .iter()
        .filter(|r| r["id"].as_str().is_some_and(|i| i.starts_with("compute.")))
        .count();
    let acme = r.acme.stats().total_requests() - acme_before;
    eprintln!(
        "FIGURES renew wildcard+apex on one proxy: {took:?}; compute mutations {}, compute requests {compute_all}, DNS changes {dns_changes}, ACME requests {acme}, finalize {}",
        muts.len(),
        finalized(&r)
    );
    assert_eq!(dns_changes, 2, "one change to present, one to clean up");
    assert_eq!(finalized(&r), 1);
    // Issue #18: the reads that decide (the proxy, the two certificates it
    // lists), the upload's list of ours (resumed? and what clean-up deletes),
    // the proxy right before its update, the forwarding rules for the check;
    // no quota read (a full quota refuses the insert itself), no list of the
    // project's proxies before deleting (Compute refuses to delete a
    // certificate in use), no read-back, no Cloud DNS change polled.
    let mut reads: std::collections::BTreeMap<&str, usize> = Default::default();
    for id in renewal_log.iter().filter_map(|r| r["id"].as_str()) {
        let read = id.starts_with("compute.")
            && !id.contains("Operations.")
            && (id.ends_with(".get") || id.ends_with(".list"));
        if read || id.starts_with("dns.changes.") {
            *reads.entry(id).or_default() += 1;
        }
    }
    assert_eq!(
        reads,
        [
            ("compute.globalForwardingRules.list", 1),
            ("compute.sslCertificates.get", 2),
            ("compute.sslCertificates.list", 1),
            ("compute.targetHttpsProxies.get", 2),
            ("dns.changes.create", 2),
        ]
        .into_iter()
        .collect()
    );

    // A second pass does nothing at all.
    lab.cloud.clear_requests().await;
    let again = renew_one(&r, false).await.unwrap();
    assert!(matches!(again.done, Done::Healthy { .. }), "{again:?}");
    assert!(lab.cloud.compute_mutations().await.is_empty());
    assert_eq!(finalized(&r), 1);

    // status agrees.
    let st = gclb_acme::reconcile::status(
        &r.gcp,
        &config,
        &gclb_acme::state::StateDir::open(&config.state.dir)
            .unwrap()
            .into(),
    )
    .await;
    assert!(st.healthy(), "{st:?}");
    let cert = &st.certificates[0];
    assert_eq!(cert.proxies[0].certificates.len(), 2);
    assert!(cert.proxies[0].certificates[1].ours);
    assert!(!cert.proxies[0].certificates[0].ours);
    assert!(cert.next_renewal.is_some());
}

#[tokio::test]
async fn one_certificate_on_two_proxies_is_swapped_on_both_before_the_old_one_goes() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    let other = lab.upload(&["other.test"], 1, 90, None, "other").await;
    lab.proxy("p1", &[&old]).await;
    lab.proxy("p2", &[&other, &old]).await;
    let r = lab.renewer(&lab.config(&["p1", "p2"])).await;
    lab.cloud.clear_requests().await;
    let out = renew_one(&r, false)
        .await
        .unwrap_or_else(|e| panic!("renew: {e}\n{}", lab.pebble.log()));
    let (report, _) = installed(&out);
    let new = report.resource.clone();
    assert_eq!(lab.served("p1").await, std::slice::from_ref(&new));
    assert_eq!(lab.served("p2").await, [other.clone(), new.clone()]);
    assert_eq!(lab.certificates().await, sorted(&[&new, &other]));
    // Order in the log: both swaps, then the delete.
    let ids: Vec<String> = lab
        .cloud
        .requests()
        .await
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| s < 300))
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    let last_set = ids
        .iter()
        .rposition(|i| i == "compute.targetHttpsProxies.setSslCertificates")
        .unwrap();
    let delete = ids
        .iter()
        .position(|i| i == "compute.sslCertificates.delete")
        .unwrap();
    assert!(last_set < delete);
    assert_eq!(
        ids.iter()
            .filter(|i| *i == "compute.targetHttpsProxies.setSslCertificates")
            .count(),
        2
    );
    lab.assert_no_txt().await;
}

/// The Unix ms at which the first logged request matching `f` started and ended.
fn span(log: &[Value], f: impl Fn(&Value) -> bool) -> (u64, u64) {
    log.iter()
        .find(|r| f(r))
        .map(|r| {
            (
                r["start_unix_ms"].as_u64().unwrap(),
                r["end_unix_ms"].as_u64().unwrap(),
            )
        })
        .unwrap_or_else(|| panic!("no such request in {log:#?}"))
}

fn is(r: &Value, id: &str, path_end: &str) -> bool {
    r["id"] == id && r["path"].as_str().is_some_and(|p| p.ends_with(path_end))
}

/// Issue #18: a certificate on two proxies is swapped on both at once: the
/// second update is sent while the first is still under way (held 3 s here).
#[tokio::test]
async fn the_proxies_of_one_certificate_are_swapped_at_once() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    lab.proxy("p2", &[&old]).await;
    let r = lab.renewer(&lab.config(&["p1", "p2"])).await;
    lab.cloud
        .fault(
            json!({"method": "compute.targetHttpsProxies.setSslCertificates",
                       "kind": "delay", "delay_ms": 3000, "count": 1}),
        )
        .await;
    lab.cloud.clear_requests().await;
    let out = renew_one(&r, false)
        .await
        .unwrap_or_else(|e| panic!("renew: {e}\n{}", lab.pebble.log()));
    let (report, _) = installed(&out);
    assert_eq!(
        sorted(
            &report
                .swapped
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        ),
        ["p1", "p2"]
    );
    assert_eq!(report.deleted, std::slice::from_ref(&old));
    let log = lab.cloud.requests().await;
    let set = "compute.targetHttpsProxies.setSslCertificates";
    let p1 = span(&log, |r| is(r, set, "/p1/setSslCertificates"));
    let p2 = span(&log, |r| is(r, set, "/p2/setSslCertificates"));
    let (first, second) = if p1.0 <= p2.0 { (p1, p2) } else { (p2, p1) };
    assert!(
        second.0 < first.1,
        "the second update ({second:?}) waited for the first ({first:?})"
    );
    lab.assert_serving(&["p1", "p2"]).await;
}

/// Issue #18: when the update of one of two proxies fails, the other serves
/// the new certificate, the failing one keeps the old one, nothing is deleted,
/// and the error names the proxy; the next run completes it without issuing
/// again.
#[tokio::test]
async fn a_swap_failing_on_one_proxy_keeps_its_old_certificate_and_is_reported() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    lab.proxy("p2", &[&old]).await;
    let r = lab.renewer(&lab.config(&["p1", "p2"])).await;
    lab.cloud
        .fault(json!({"method": "compute.targetHttpsProxies.setSslCertificates",
                       "path_prefix": format!("/compute/v1/projects/{}/targetHttpsProxies/p2/", support::gcp::PROJECT),
                       "kind": "operation", "status": 400, "reason": "invalid",
                       "message": "refused for the test", "count": 1}))
        .await;
    let err = renew_one(&r, false).await.unwrap_err();
    assert!(err.to_string().contains("p2"), "{err}");
    assert!(err.to_string().contains("refused for the test"), "{err}");
    let p1 = lab.served("p1").await;
    assert_ne!(p1, std::slice::from_ref(&old), "p1 was swapped");
    assert_eq!(lab.served("p2").await, std::slice::from_ref(&old));
    assert!(lab.certificates().await.contains(&old), "nothing deleted");

    let out = renew_one(&r, false).await.unwrap();
    let (report, issued) = installed(&out);
    assert!(
        !issued,
        "the pending certificate is installed, not issued again"
    );
    assert_eq!(report.deleted, std::slice::from_ref(&old));
    assert_eq!(lab.served("p2").await, p1);
    assert_eq!(finalized(&r), 1);
}

/// Issue #18: with one slot (`daemon.concurrency = 1`), the second
/// certificate starts once the first is served, not once the first one's old
/// certificate is deleted (held 3 s here); both old ones are gone at the end.
#[tokio::test]
async fn a_delete_holds_no_slot_and_the_next_certificate_starts_at_once() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    let old2 = lab
        .upload(&["www.example.test"], 80, 90, Some("app2"), "")
        .await;
    lab.proxy("p1", &[&old]).await;
    lab.proxy("p2", &[&old2]).await;
    let mut config = lab.config(&["p1"]);
    let mut second = config.certificates[0].clone();
    second.name = "app2".into();
    second.domains = vec!["www.example.test".into()];
    second.target_https_proxies = vec!["p2".into()];
    config.certificates.push(second);
    config.daemon.concurrency = 1;
    let r = lab.renewer(&config).await;
    lab.cloud
        .fault(json!({"method": "compute.sslCertificates.delete",
                       "kind": "delay", "delay_ms": 3000, "count": 1}))
        .await;
    lab.cloud.clear_requests().await;
    let results = r.renew_all(None, false).await;
    for (name, res) in &results {
        assert!(res.is_ok(), "{name}: {res:?}");
    }
    let log = lab.cloud.requests().await;
    let delete = span(&log, |r| r["id"] == "compute.sslCertificates.delete");
    let observe2 = span(&log, |r| is(r, "compute.targetHttpsProxies.get", "/p2"));
    assert!(
        observe2.0 < delete.1,
        "the second certificate ({observe2:?}) waited for the first one's delete ({delete:?})"
    );
    let left = lab.certificates().await;
    assert!(!left.contains(&old) && !left.contains(&old2), "{left:?}");
    lab.assert_no_txt().await;
}

/// Stops the first run at `at`, checks the proxies still serve, then lets a
/// fresh process (new ACME client, same state directory) finish.
async fn crash_at(at: &str) {
    let lab = Lab::start().await;
    // Two old certificates of ours (p2 lags behind), so that a crash between
    // two deletes leaves one to clean up.
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    let older = lab.upload(&NAMES, 85, 90, Some("app"), "").await;
    let other = lab.upload(&["other.test"], 1, 90, None, "other").await;
    lab.proxy("p1", &[&old, &other]).await;
    lab.proxy("p2", &[&older]).await;
    let config = lab.config(&["p1", "p2"]);

    let mut first = lab.renewer(&config).await;
    let stop = at.to_string();
    // `deleted:*`: after the first delete, whichever it is.
    first.install.hook = Some(Arc::new(move |s: &str| match stop.strip_suffix('*') {
        Some(prefix) => s.starts_with(prefix),
        None => s == stop,
    }));
    let err = renew_one(&first, false)
        .await
        .expect_err(&format!("the hook stops the run at {at}"));
    assert!(err.is_aborted(), "{at}: {err}");
    lab.assert_serving(&["p1", "p2"]).await;
    if at.starts_with("deleted:") {
        let left = lab.certificates().await;
        assert_eq!(
            left.iter().filter(|c| **c == old || **c == older).count(),
            1,
            "{at}: stopped between the two deletes: {left:?}"
        );
    }
    assert!(
        first.acme.pending("app").await.unwrap().is_some(),
        "{at}: the issued certificate stays pending until installed"
    );

    let second = lab.renewer(&config).await;
    let out = renew_one(&second, false)
        .await
        .unwrap_or_else(|e| panic!("{at}: resume: {e}"));
    let (report, issued) = installed(&out);
    assert!(!issued, "{at}: the resumed run must not issue again");
    lab.assert_serving(&["p1", "p2"]).await;
    assert_eq!(
        finalized(&first) + finalized(&second),
        1,
        "{at}: exactly one order finalized"
    );
    assert_eq!(
        second.acme.stats().requests(Endpoint::NewOrder),
        0,
        "{at}: no new order after the crash"
    );
    let new = report.resource.clone();
    assert_eq!(lab.served("p1").await, [new.clone(), other.clone()], "{at}");
    assert_eq!(lab.served("p2").await, std::slice::from_ref(&new), "{at}");
    assert_eq!(
        lab.certificates().await,
        sorted(&[&new, &other]),
        "{at}: no certificate of ours left unused"
    );
    assert!(second.acme.pending("app").await.unwrap().is_none());
    lab.assert_no_txt().await;
    // And a third run has nothing to do.
    let third = renew_one(&second, false).await.unwrap();
    assert!(matches!(third.done, Done::Healthy { .. }), "{at}");
}

#[tokio::test]
async fn a_crash_at_any_step_boundary_converges_with_one_issuance() {
    let steps = [
        step::PERSISTED.to_string(),
        step::INSERT_REQUESTED.to_string(),
        step::INSERT_DONE.to_string(),
        step::swapped("p1"),
        step::swapped("p2"),
        step::VERIFIED.to_string(),
        "deleted:*".to_string(),
    ];
    for s in steps {
        let started = Instant::now();
        crash_at(&s).await;
        eprintln!("crash at {s}: converged in {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn converges_in_one_run_despite_503s_rate_limits_and_failing_operations() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    lab.proxy("p2", &[&old]).await;
    let r = lab.renewer(&lab.config(&["p1", "p2"])).await;
    for rule in [
        json!({"method": "compute.*", "probability": 0.2, "kind": "error", "status": 503}),
        json!({"method": "compute.*", "probability": 0.2, "kind": "error", "status": 403, "reason": "rateLimitExceeded"}),
        json!({"method": "compute.sslCertificates.insert", "count": 2, "kind": "operation", "status": 503}),
        json!({"method": "compute.targetHttpsProxies.setSslCertificates", "count": 2, "kind": "operation", "status": 503}),
        json!({"method": "compute.sslCertificates.delete", "count": 1, "kind": "operation", "status": 503}),
    ] {
        lab.cloud.fault(rule).await;
    }
    lab.cloud.clear_requests().await;
    let out = renew_one(&r, false)
        .await
        .unwrap_or_else(|e| panic!("renew under faults: {e}"));
    let (report, _) = installed(&out);
    let new = report.resource.clone();
    let (s, _) = lab
        .cloud
        .http
        .delete(format!("{}emulator/faults", lab.cloud.emu.base_url()))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert!(s.is_success());
    assert_eq!(lab.served("p1").await, std::slice::from_ref(&new));
    assert_eq!(lab.served("p2").await, std::slice::from_ref(&new));
    assert_eq!(lab.certificates().await, std::slice::from_ref(&new));
    assert_eq!(finalized(&r), 1);
    lab.assert_no_txt().await;
    let reqs = lab.cloud.requests().await;
    let failed = reqs
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| s >= 400))
        .count();
    eprintln!(
        "faults: {failed} of {} requests failed, converged in one run",
        reqs.len()
    );
    assert!(failed > 0, "the faults fired");
}

/// The real binary, configured through a TOML file, with credentials from the
/// emulator's metadata server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_renews_then_reports_status_as_json() {
    let lab = Lab::start().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    let config_path = lab.write_cli_config("");
    let home = tempfile::tempdir().unwrap();
    let metadata_host = lab.metadata_host();
    let run = |args: Vec<String>| {
        let config_path = config_path.clone();
        let home = home.path().to_path_buf();
        let metadata_host = metadata_host.clone();
        tokio::task::spawn_blocking(move || {
            assert_cmd::Command::cargo_bin("gclb-acme")
                .unwrap()
                .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
                .env_remove("GCLB_ACME_CONFIG")
                .env_remove("GOOGLE_CLOUD_PROJECT")
                .env("HOME", &home)
                .env("GCE_METADATA_HOST", &metadata_host)
                .arg("--config")
                .arg(&config_path)
                .args(&args)
                .timeout(Duration::from_secs(120))
                .output()
                .unwrap()
        })
    };
    let out = run(vec!["renew".into()]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "renew failed:\n{stdout}\n{stderr}\n{}",
        lab.pebble.log()
    );
    assert!(
        stdout.starts_with("ok    app: issued and installed app-"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("deleted [{old}]")), "{stdout}");
    let served = lab.served("p1").await;
    assert_eq!(served.len(), 1);
    assert_ne!(served[0], old);
    assert_eq!(lab.certificates().await, served);

    let out = run(vec!["status".into(), "--json".into()]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "status failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let c = &v["certificates"][0];
    assert_eq!(c["name"], "app");
    assert_eq!(c["healthy"], true);
    assert_eq!(c["action"], "nothing");
    assert!(c["pending"].is_null());
    assert!(c["next_renewal"].is_string());
    let s = &c["proxies"][0]["certificates"][0];
    assert_eq!(s["name"], served[0].as_str());
    assert_eq!(s["ours"], true);
    assert_eq!(s["current"], true);
    assert!(s["days_left"].as_i64().unwrap() > 30);

    // Again: nothing to do, exit 0.
    let out = run(vec!["renew".into()]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("ok    app: nothing due"), "{stdout}");
}
