//! `gclb-acme run`, the real binary, against Pebble issuing short-lived
//! certificates and the emulator: it renews on its own again and again, reports
//! READY and WATCHDOG to systemd's notify socket, serves metrics, keeps its old
//! configuration when SIGHUP brings a broken one, and exits 0 on SIGTERM with
//! nothing leaked.

mod support;

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::lb::{Lab, NAMES};

fn kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_renews_short_lived_certificates_on_its_own() {
    // 20 s certificates: short-lived, so they renew at half-life (~10 s).
    let lab = Lab::start_with(|o| o.validity = Some(Duration::from_secs(20))).await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    let metrics_port = support::free_port();
    let config_path = lab.write_cli_config(&format!(
        "[daemon]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nretry_initial = \"1s\"\nretry_max = \"5s\"\n"
    ));
    let notify_path = lab.tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let messages = Arc::clone(&messages);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = notify.recv(&mut buf) {
                    messages
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        })
    };
    let home = tempfile::tempdir().unwrap();
    let log_path = lab.tmp.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gclb-acme"))
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env("HOME", home.path())
        .env("GCE_METADATA_HOST", lab.metadata_host())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "2000000")
        .args(["--log-format", "json", "-v", "run", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Watch the proxy: the old certificate is replaced, then renewed twice more.
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    while seen.len() < 3 && started.elapsed() < Duration::from_secs(60) {
        let served = lab.served("p1").await;
        assert_eq!(
            served.len(),
            1,
            "the proxy always serves exactly one certificate"
        );
        if served[0] != old {
            seen.insert(served[0].clone());
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early ({status}):\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.len() >= 3,
        "only {} certificate(s) in {:?}:\n{}",
        seen.len(),
        started.elapsed(),
        log()
    );

    // Metrics.
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "gclb_acme_certificate_expiration_timestamp_seconds{certificate=\"app\"}",
        "gclb_acme_certificate_seconds_until_expiry{certificate=\"app\"}",
        "gclb_acme_certificate_renewal_timestamp_seconds{certificate=\"app\"}",
        "gclb_acme_certificate_ready_status{certificate=\"app\",condition=\"True\"} 1",
        "gclb_acme_acme_client_request_count_total{endpoint=\"finalize\"}",
        "gclb_acme_gcp_request_count_total{api=\"compute\",method=\"sslCertificates.insert\",code=\"200\"}",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    let health = reqwest::get(format!("http://127.0.0.1:{metrics_port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // systemd notifications.
    let msgs = messages.lock().unwrap().clone();
    assert!(msgs.iter().any(|m| m.contains("READY=1")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("WATCHDOG=1")), "{msgs:?}");

    // A broken configuration on SIGHUP is refused; the daemon keeps going.
    let good = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, "[acme\n").unwrap();
    kill(child.id(), "-HUP");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running:\n{}",
        log()
    );
    assert!(log().contains("new configuration refused"), "{}", log());
    std::fs::write(&config_path, good).unwrap();

    // SIGTERM: exit 0.
    kill(child.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    assert!(status.success(), "exit {status}:\n{}", log());
    let msgs = messages.lock().unwrap().clone();
    assert!(msgs.iter().any(|m| m.contains("STOPPING=1")), "{msgs:?}");

    // Nothing leaked: one certificate of ours (the served one), no TXT value, and
    // (after the last renewal settled) no pending file... unless SIGTERM landed
    // mid-renewal, in which case the next start installs it.
    let served = lab.served("p1").await;
    let all = lab.certificates().await;
    let pending = lab.state_dir().join("pending/app.json").exists();
    if pending {
        assert!(all.len() <= 2, "{all:?}");
    } else {
        assert_eq!(all, served, "only the served certificate of ours remains");
    }
    let txt = lab
        .cloud
        .txt("example-test", "_acme-challenge.example.test.")
        .await;
    assert!(txt.is_empty() || pending, "{txt:?}");

    // `status --json` shows the daemon's bookkeeping.
    let out = Command::new(env!("CARGO_BIN_EXE_gclb-acme"))
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env("HOME", home.path())
        .env("GCE_METADATA_HOST", lab.metadata_host())
        .args(["status", "--json", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let d = &report["certificates"][0]["daemon"];
    assert!(d["last_success"].is_string(), "{report}");
    assert!(d["last_attempt"].is_string(), "{report}");
    assert_eq!(d["failures"], 0, "{report}");

    // Log lines: structured, one per renewal, no panic, no secret.
    let text = log();
    let healthy = text
        .lines()
        .filter(|l| l.contains("\"certificate healthy\""))
        .count();
    assert!(healthy >= 3, "{healthy} healthy lines:\n{text}");
    assert!(
        text.lines().all(|l| l.starts_with('{')),
        "every line is JSON"
    );
    assert!(!text.contains("panicked"));
    assert!(!text.contains("PRIVATE KEY"));
}
