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
        "gclb_acme_certificate_expiration_timestamp_seconds{certificate=\"app\",target=\"ssl_certificates\"}",
        "gclb_acme_certificate_seconds_until_expiry{certificate=\"app\",target=\"ssl_certificates\"}",
        "gclb_acme_certificate_renewal_timestamp_seconds{certificate=\"app\",target=\"ssl_certificates\"}",
        "gclb_acme_certificate_ready_status{certificate=\"app\",target=\"ssl_certificates\",condition=\"True\"} 1",
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

/// What `proxy` serves for `sni` from its certificate map: the leaf serial, or
/// `None` while nothing is (the map or its entry is not there yet).
async fn map_serial(lab: &Lab, proxy: &str, sni: &str) -> Option<String> {
    let (s, v) = lab
        .cloud
        .get(&format!("emulator/served?proxy={proxy}&sni={sni}"))
        .await;
    if s != 200 {
        return None;
    }
    assert_eq!(v["source"], "certificateMap", "{v}");
    let pem = v["pem"].as_str()?;
    let der = gclb_acme::certs::split_chain(pem).ok()?;
    Some(gclb_acme::certs::leaf_info(&der[0]).ok()?.serial_hex)
}

/// Issue #16: the daemon renews a certificate held in a Certificate Manager
/// map on its own: it creates the map, the certificate and the entries, then
/// patches the certificate in place again and again; metrics label it
/// `target="certificate_map"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_renews_a_map_held_certificate_in_place_on_its_own() {
    let lab = Lab::start_with(|o| o.validity = Some(Duration::from_secs(20))).await;
    let metrics_port = support::free_port();
    let config_path = lab.write_cli_config(&format!(
        "[daemon]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\nretry_initial = \"1s\"\nretry_max = \"5s\"\n"
    ));
    let toml = std::fs::read_to_string(&config_path).unwrap().replace(
        "target_https_proxies = [\"p1\"]",
        "certificate_map = \"sites\"",
    );
    assert!(toml.contains("certificate_map = \"sites\""));
    std::fs::write(&config_path, toml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let log_path = lab.tmp.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gclb-acme"))
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

    // The proxy can point at the map once the daemon has created it.
    let gcp = lab.cloud.gcp();
    let started = Instant::now();
    while gcp.get_certificate_map("sites").await.unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no map:\n{}",
            log()
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early ({status}):\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, b) = lab
        .cloud
        .post(
            &format!(
                "compute/v1/projects/{}/global/targetHttpsProxies",
                support::gcp::PROJECT
            ),
            serde_json::json!({"name": "p1", "urlMap": support::lb::link("urlMaps", "um"),
                               "certificateMap": gcp.certificate_map_reference("sites")}),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // Three serials in a row for every name, never a gap once served.
    let mut seen = BTreeSet::new();
    let mut served_once = false;
    while seen.len() < 3 && started.elapsed() < Duration::from_secs(70) {
        let apex = map_serial(&lab, "p1", "example.test").await;
        let wild = map_serial(&lab, "p1", "www.example.test").await;
        if served_once {
            assert!(
                apex.is_some() && wild.is_some(),
                "a name stopped being served"
            );
        }
        if let (Some(a), Some(_)) = (&apex, &wild) {
            served_once = true;
            seen.insert(a.clone());
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early ({status}):\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.len() >= 3,
        "only {} serial(s) in {:?}:\n{}",
        seen.len(),
        started.elapsed(),
        log()
    );

    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "gclb_acme_certificate_seconds_until_expiry{certificate=\"app\",target=\"certificate_map\"}",
        "gclb_acme_renewal_attempts_total{certificate=\"app\",target=\"certificate_map\"}",
        "gclb_acme_gcp_request_count_total{api=\"certificatemanager\",method=\"certificates.patch\",code=\"200\"}",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }

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
    assert!(status.success(), "exit {status}:\n{}", log());

    // Renewed in place: one certificate, one entry per name, nothing else.
    let certs: Vec<String> = gcp
        .list_certificates(None)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    assert_eq!(certs, ["gclb-acme-app"]);
    let entries = gcp
        .list_certificate_map_entries("sites", None)
        .await
        .unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let text = log();
    assert!(!text.contains("panicked"));
    assert!(!text.contains("PRIVATE KEY"));
}
