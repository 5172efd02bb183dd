//! Soak: `gclb-acme run`, the real binary, keeps 20 certificates (each its own
//! `[[certificates]]` entry, name and proxy) renewed against Pebble issuing
//! short-lived certificates while the emulator fails about 20% of all GCP
//! calls at random (500, 503, 429, 403 rateLimitExceeded, and operations that
//! end DONE in error), Pebble rejects 5% of nonces, and the name servers lag at
//! random. Then the faults stop, the daemon settles and stops, and:
//!
//! - every proxy serves exactly one certificate of ours, valid, for its name;
//! - no certificate of ours is left unused, no TXT value, nothing pending;
//! - Pebble issued exactly one certificate per certificate ever served (one
//!   finalized order per renewal: never two issuances for one renewal), and the
//!   daemon's own finalize counter agrees;
//! - no panic, and every ERROR line is followed by a recovery (a later
//!   "certificate healthy" line for the same certificate).
//!
//! The short version runs in the suite (about 3 renewal rounds). The long one,
//! `GCLB_ACME_SOAK=long` (`scripts/soak`), runs several hundred renewals and
//! prints its figures.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::RngExt;
use support::fleet::{self, Fleet};

struct Plan {
    certificates: usize,
    validity: Duration,
    /// Distinct certificates each proxy must have served (the seeded one not
    /// counted) before the faults stop.
    rounds: usize,
    /// Safety timeout for the faulty phase (not a performance bound).
    timeout: Duration,
}

fn plan() -> Plan {
    match std::env::var("GCLB_ACME_SOAK").as_deref() {
        Ok("long") => Plan {
            certificates: 24,
            validity: Duration::from_secs(30),
            rounds: 16,
            timeout: Duration::from_secs(1800),
        },
        _ => Plan {
            certificates: 20,
            validity: Duration::from_secs(20),
            rounds: 3,
            timeout: Duration::from_secs(240),
        },
    }
}

/// `name{labels} value` from a Prometheus text page.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_certificates_renew_through_random_gcp_faults_and_dns_lag() {
    let plan = plan();
    let started = Instant::now();
    let fleet = Fleet::start(plan.certificates, plan.validity).await;
    let lab = &fleet.lab;
    let metrics_port = support::free_port();
    let config = fleet.write_config(
        &format!(
            "metrics_listen = \"127.0.0.1:{metrics_port}\"\nconcurrency = 10\nretry_initial = \"1s\"\nretry_max = \"5s\""
        ),
        "",
    );
    let seeded: BTreeSet<String> = lab.certificates().await.into_iter().collect();
    for rule in fleet::random_faults(20.0) {
        lab.cloud.fault(rule).await;
    }
    lab.cloud.clear_requests().await;

    let home = tempfile::tempdir().unwrap();
    let log_path = lab.tmp.path().join("daemon.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut child = fleet::spawn_daemon(lab, home.path(), &config, &log_path);

    // Faulty phase: watch every proxy, move the name servers' lag now and then.
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut lag_changes = 0;
    let pebble_lag: u64 = rand::rng().random_range(200..1500);
    let mut next_lag = Instant::now();
    let faulty = Instant::now();
    loop {
        for (p, names) in fleet.served().await {
            assert!(!names.is_empty(), "{p} serves nothing");
            let s = seen.entry(p).or_default();
            s.extend(names.into_iter().filter(|n| !seeded.contains(n)));
        }
        let least = (0..fleet.n)
            .map(|i| seen.get(&fleet::proxy(i)).map_or(0, |s| s.len()))
            .min()
            .unwrap_or(0);
        if least >= plan.rounds {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited ({status}):\n{}", tail(&log()));
        }
        assert!(
            faulty.elapsed() < plan.timeout,
            "only {least} round(s) in {:?}: {seen:?}\n{}",
            faulty.elapsed(),
            tail(&log())
        );
        if Instant::now() >= next_lag {
            // The emulator applies a lag to records already written: raising a
            // server's lag makes a served value vanish again, which real
            // propagation never does. So the server Pebble validates against
            // (0) keeps the lag drawn at the start; the others move at will,
            // and the daemon must wait for all of them.
            let lags: Vec<u64> = {
                let mut r = rand::rng();
                (0..lab.cloud.nameservers().len())
                    .map(|i| {
                        if i == 0 {
                            pebble_lag
                        } else if r.random::<f64>() < 0.5 {
                            r.random_range(0..2500)
                        } else {
                            0
                        }
                    })
                    .collect()
            };
            lab.cloud.lags(&lags).await;
            lag_changes += 1;
            next_lag = Instant::now() + Duration::from_millis(rand::rng().random_range(1000..4000));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let faulty_for = faulty.elapsed();

    // What was injected.
    let requests = lab.cloud.requests().await;
    let api_calls = requests.len();
    let failed_calls = requests
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| s >= 400))
        .count();

    // Faults off, lag off: every certificate is seen healthy again (a renewal in
    // back-off retries within retry_max; the others renew at half-life).
    fleet::clear_faults(lab).await;
    // Lowering a lag never hides a value.
    lab.cloud.lags(&[0, 0]).await;
    let mark = log().len();
    let settle = Instant::now();
    loop {
        let after = log()[mark..].to_string();
        let healthy: BTreeSet<String> = fleet::json_lines(&after)
            .iter()
            .filter(|l| l["message"] == "certificate healthy")
            .filter_map(|l| l["certificate"].as_str().map(String::from))
            .collect();
        if healthy.len() == fleet.n {
            break;
        }
        assert!(
            settle.elapsed() < plan.validity * 4,
            "not settled: healthy since the faults stopped: {healthy:?}\n{}",
            tail(&log())
        );
        for (p, names) in fleet.served().await {
            seen.entry(p).or_default().extend(names);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let status = fleet::stop(&mut child, Duration::from_secs(90)).await;
    assert!(status.success(), "exit {status}:\n{}", tail(&log()));
    for (p, names) in fleet.served().await {
        seen.entry(p).or_default().extend(names);
    }
    let text = log();
    fleet.keep_logs(&log_path);

    fleet.assert_converged().await;

    // One issuance per certificate served.
    let served_total: usize = seen.values().map(BTreeSet::len).sum();
    let issued_serials = fleet.issued();
    let issued = issued_serials.len();
    let installed = fleet::installed(&text);
    let finalize = metric(
        &metrics,
        "gclb_acme_acme_client_request_count_total{endpoint=\"finalize\"}",
    );
    let finalize_errors = metric(
        &metrics,
        "gclb_acme_acme_client_request_errors_total{endpoint=\"finalize\"}",
    );
    let failures: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("gclb_acme_renewal_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    println!(
        "soak: {} certificates, {} renewals (certificates served), {} issued by Pebble, \
         finalize requests {} ({} failed, e.g. bad nonce), {} of {} GCP calls failed by \
         injection (plus operation faults), {} lag changes, {} failed renewal attempts \
         recovered, faulty phase {:.0?}, wall time {:.0?}",
        fleet.n,
        served_total,
        issued,
        finalize,
        finalize_errors,
        failed_calls,
        api_calls,
        lag_changes,
        failures,
        faulty_for,
        started.elapsed()
    );
    // Exact: every serial Pebble issued was installed, once; and (sampled by
    // polling, so it can only undercount) the proxies served at least as many.
    let mut a = issued_serials.clone();
    a.sort();
    let mut b = installed.clone();
    b.sort();
    assert_eq!(a, b, "serials issued by Pebble vs installed by the daemon");
    let distinct: BTreeSet<&String> = b.iter().collect();
    assert_eq!(distinct.len(), b.len(), "a certificate installed twice");
    assert!(
        served_total <= issued,
        "served {served_total} certificates but Pebble issued only {issued}: {seen:?}"
    );
    assert!(
        served_total * 10 >= issued * 9,
        "polling saw only {served_total} of {issued} certificates: {seen:?}"
    );
    // Finalizes after the metrics snapshot would make the counter smaller, never larger.
    assert!(
        finalize - finalize_errors <= issued as u64,
        "successful finalize requests {finalize} - {finalize_errors} > issued {issued}"
    );
    assert!(
        failed_calls * 100 >= api_calls * 10,
        "fault injection too weak to mean anything: {failed_calls}/{api_calls}"
    );
    assert!(!text.contains("panicked"), "{}", tail(&text));
    let bad = fleet::unrecovered_errors(&text);
    assert!(bad.is_empty(), "ERROR lines without recovery: {bad:#?}");
    assert!(!text.contains("PRIVATE KEY"));
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
