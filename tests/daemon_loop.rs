//! The daemon's loop with a scripted renewer: it renews on schedule by itself,
//! backs off after failures, reloads on SIGHUP (refusing a broken file) and exits 0
//! on SIGTERM. The real pipeline is exercised in tests/daemon.rs.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gclb_acme::config::{CertificateConfig, Config};
use gclb_acme::daemon::{self, Assessment, Failure, Options, Renewed, Worker, WorkerFactory};
use gclb_acme::metrics::Metrics;
use gclb_acme::schedule::{AriWindow, Validity};
use time::OffsetDateTime;

#[derive(Clone, Default)]
struct Script {
    /// Calls to renew, with when they happened.
    calls: Arc<Mutex<Vec<(String, Instant, bool)>>>,
    /// Fail this many renew calls first.
    failures: Arc<Mutex<u32>>,
    /// Lifetime of the certificates "issued".
    lifetime_s: i64,
    /// When set, a renewal comes back served with the rest of its work
    /// (clean-up) waiting for this.
    hold_rest: Option<Arc<tokio::sync::Semaphore>>,
    /// Rests that have finished.
    rested: Arc<Mutex<Vec<String>>>,
    /// Panic in this many renew calls first (after recording the call).
    panics: Arc<Mutex<u32>>,
}

impl Worker for Script {
    async fn observe(&self, _c: &CertificateConfig) -> Result<Assessment, Failure> {
        Ok(Assessment {
            needs_action: true,
            summary: "nothing served".into(),
            ..Default::default()
        })
    }

    async fn renew(&self, c: &CertificateConfig, force: bool) -> Result<Assessment, Failure> {
        self.calls
            .lock()
            .unwrap()
            .push((c.name.clone(), Instant::now(), force));
        let panic_now = {
            let mut p = self.panics.lock().unwrap();
            let now = *p > 0;
            *p = p.saturating_sub(1);
            now
        };
        assert!(!panic_now, "scripted panic in renew");
        {
            let mut f = self.failures.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(Failure {
                    message: "Cloud DNS said 503".into(),
                    reason: "gcp:backendError".into(),
                    retryable: true,
                    retry_after: None,
                });
            }
        }
        let now = OffsetDateTime::now_utc();
        Ok(Assessment {
            validity: Some(Validity {
                not_before: now,
                not_after: now + time::Duration::seconds(self.lifetime_s),
            }),
            needs_action: false,
            ari_id: None,
            summary: "renewed".into(),
        })
    }

    async fn renew_until_served(
        &self,
        c: &CertificateConfig,
        force: bool,
    ) -> Result<Renewed, Failure> {
        let obs = self.renew(c, force).await?;
        let Some(gate) = self.hold_rest.clone() else {
            return Ok(Renewed::Done(obs));
        };
        let rested = Arc::clone(&self.rested);
        let name = c.name.clone();
        Ok(Renewed::Served(Box::pin(async move {
            let _ = gate.acquire().await;
            rested.lock().unwrap().push(name);
            Ok(obs)
        })))
    }

    async fn renewal_info(&self, _id: &str) -> Result<Option<(AriWindow, Duration)>, Failure> {
        Ok(None)
    }
}

struct Factory(Script);

impl WorkerFactory for Factory {
    type R = Script;
    async fn build(&self, _c: &Config) -> Result<Script, daemon::DaemonError> {
        Ok(self.0.clone())
    }
}

fn write_config(path: &Path, state: &Path, names: &[&str]) {
    let mut text = format!(
        "[acme]\naccept_terms = true\n[state]\ndir = \"{}\"\n[daemon]\nmetrics_listen = \"\"\nretry_initial = \"1s\"\nretry_max = \"4s\"\n",
        state.display()
    );
    for n in names {
        text.push_str(&format!(
            "[[certificates]]\nname = \"{n}\"\ndomains = [\"{n}.example.test\"]\ntarget_https_proxies = [\"p\"]\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn options() -> Options {
    Options {
        max_sleep: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(2),
        summary_every: Duration::from_secs(3600),
        permanent_failure_wait: Duration::from_secs(3600),
    }
}

/// The scenarios send real signals to this process, so they run one after the
/// other in a single test: concurrent tests would receive each other's signals.
#[tokio::test]
async fn daemon_loop_scenarios() {
    renews_short_lived_certificates_on_its_own_then_stops_on_sigterm().await;
    failures_back_off_and_are_kept_across_restarts().await;
    sighup_reloads_and_a_broken_file_keeps_the_old_configuration().await;
    a_served_certificate_gives_its_slot_up_while_it_cleans_up().await;
    a_panicking_renewal_is_retried_not_left_running().await;
}

fn signal(sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn renews_short_lived_certificates_on_its_own_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("config.toml");
    write_config(&cfg_path, &dir.path().join("state"), &["app"]);
    let config = Config::load(&cfg_path).unwrap();
    let script = Script {
        lifetime_s: 4,
        ..Default::default()
    };
    let metrics = Metrics::new();
    let run = tokio::spawn(daemon::run(
        cfg_path.clone(),
        config,
        Factory(script.clone()),
        Arc::clone(&metrics),
        options(),
    ));
    // 4 s certificates renew at half-life (minus jitter): about every 2 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    signal("-TERM");
    let result = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    let calls = script.calls.lock().unwrap().clone();
    assert!(calls.len() >= 3, "renewed {} times", calls.len());
    assert!(!calls[0].2, "the first is needed, not forced");
    assert!(
        calls[1..].iter().all(|c| c.2),
        "later ones are due renewals"
    );
    // Never hammering: at least about a second between renewals.
    for w in calls.windows(2) {
        assert!(
            w[1].1 - w[0].1 >= Duration::from_millis(900),
            "{:?}",
            w[1].1 - w[0].1
        );
    }
    assert!(metrics.is_ready());
    let m = metrics.certificate("app").unwrap();
    assert!(m.ready && m.expires_at.is_some() && m.last_success_at.is_some());
    assert!(
        metrics
            .render()
            .contains("gclb_acme_certificate_seconds_until_expiry{certificate=\"app\",target=\"ssl_certificates\"}")
    );
}

async fn failures_back_off_and_are_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("config.toml");
    write_config(&cfg_path, &dir.path().join("state"), &["app"]);
    let script = Script {
        lifetime_s: 3600,
        failures: Arc::new(Mutex::new(3)),
        ..Default::default()
    };
    let metrics = Metrics::new();
    let run = tokio::spawn(daemon::run(
        cfg_path.clone(),
        Config::load(&cfg_path).unwrap(),
        Factory(script.clone()),
        Arc::clone(&metrics),
        options(),
    ));
    tokio::time::sleep(Duration::from_millis(4500)).await;
    signal("-TERM");
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let calls = script.calls.lock().unwrap().clone();
    // Attempts at 0, ~0.5-1 s, then ~1-2 s later, then ~2-4 s later: 3 or 4 calls in
    // 4.5 s, never a burst.
    assert!((3..=4).contains(&calls.len()), "{} calls", calls.len());
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(gaps[0] >= Duration::from_millis(450), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(950), "{gaps:?}");
    assert!(gaps[1] > gaps[0] / 2, "{gaps:?}");
    let m = metrics.certificate("app").unwrap();
    assert_eq!(m.failures.get("gcp:backendError"), Some(&3));

    // The bookkeeping survives a restart: the failure count is on disk.
    let book = std::fs::read_to_string(dir.path().join("state/daemon/app.json")).unwrap();
    assert!(book.contains("\"failures\""), "{book}");
}

async fn sighup_reloads_and_a_broken_file_keeps_the_old_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("config.toml");
    let state = dir.path().join("state");
    write_config(&cfg_path, &state, &["app"]);
    let script = Script {
        lifetime_s: 3600,
        ..Default::default()
    };
    let metrics = Metrics::new();
    let run = tokio::spawn(daemon::run(
        cfg_path.clone(),
        Config::load(&cfg_path).unwrap(),
        Factory(script.clone()),
        Arc::clone(&metrics),
        options(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A broken file: refused, the daemon keeps running the old configuration.
    std::fs::write(&cfg_path, "[acme\n").unwrap();
    signal("-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!run.is_finished());
    // A valid file with a second certificate: it gets renewed.
    write_config(&cfg_path, &state, &["app", "api"]);
    signal("-HUP");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    signal("-TERM");
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let names: Vec<String> = script
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.0.clone())
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "app").count(), 1, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "api").count(), 1, "{names:?}");
}

/// Issue #18: once a certificate is served, the rest of its renewal (deleting
/// what it replaced, seconds against Google) holds no concurrency slot: with
/// `concurrency = 1`, the second certificate is renewed while the first one's
/// clean-up is still under way; and that clean-up is finished before exit.
async fn a_served_certificate_gives_its_slot_up_while_it_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("config.toml");
    write_config(&cfg_path, &dir.path().join("state"), &["a", "b"]);
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("[daemon]\n", "[daemon]\nconcurrency = 1\n");
    std::fs::write(&cfg_path, text).unwrap();
    let config = Config::load(&cfg_path).unwrap();
    assert_eq!(config.daemon.concurrency, 1);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let script = Script {
        lifetime_s: 3600,
        hold_rest: Some(Arc::clone(&gate)),
        ..Default::default()
    };
    let run = tokio::spawn(daemon::run(
        cfg_path.clone(),
        config,
        Factory(script.clone()),
        Metrics::new(),
        options(),
    ));
    let started = Instant::now();
    while script.calls.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second certificate waited for the first one's clean-up: {:?}",
            script.calls.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        script.rested.lock().unwrap().is_empty(),
        "both still resting"
    );
    gate.add_permits(2);
    while script.rested.lock().unwrap().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal("-TERM");
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut rested = script.rested.lock().unwrap().clone();
    rested.sort();
    assert_eq!(rested, ["a", "b"]);
}

/// A panic in one certificate's task comes back as a retryable failure: the
/// slot is freed and the certificate retried with back-off (before, the slot
/// stayed `running` and the certificate was never worked on again).
async fn a_panicking_renewal_is_retried_not_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("config.toml");
    write_config(&cfg_path, &dir.path().join("state"), &["app"]);
    let script = Script {
        lifetime_s: 3600,
        panics: Arc::new(Mutex::new(1)),
        ..Default::default()
    };
    let metrics = Metrics::new();
    let run = tokio::spawn(daemon::run(
        cfg_path.clone(),
        Config::load(&cfg_path).unwrap(),
        Factory(script.clone()),
        Arc::clone(&metrics),
        options(),
    ));
    // The retry comes after the first back-off (retry_initial 1 s, jittered).
    let deadline = Instant::now() + Duration::from_secs(8);
    while script.calls.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal("-TERM");
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let calls = script.calls.lock().unwrap().len();
    assert_eq!(
        calls, 2,
        "the panicked renewal was retried once and then succeeded"
    );
    let m = metrics.certificate("app").unwrap();
    assert_eq!(m.failures.get("panic"), Some(&1));
}
