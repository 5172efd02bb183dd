//! Many certificates at once, for the soak and crash tests: certificate `cNN`
//! for `cNN.example.test` on its own proxy `pNN`, a configuration for the real
//! binary with one `[[certificates]]` entry each, the daemon as a child
//! process, and the end-of-test invariants (every proxy served a valid
//! certificate of ours, nothing leaked, one issuance per certificate seen).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gclb_acme::certs;
use serde_json::{Value, json};

use super::gcp::PROJECT;
use super::lb::Lab;

/// Name of certificate `i`.
pub fn cert(i: usize) -> String {
    format!("c{i:02}")
}

/// The one name certificate `i` covers.
pub fn domain(i: usize) -> String {
    format!("c{i:02}.example.test")
}

/// The proxy certificate `i` is served on.
pub fn proxy(i: usize) -> String {
    format!("p{i:02}")
}

/// A lab with `n` proxies, each serving an old (due) certificate of ours.
pub struct Fleet {
    pub lab: Lab,
    pub n: usize,
}

impl Fleet {
    /// Emulator + Pebble issuing `validity`-long certificates + `n` proxies.
    pub async fn start(n: usize, validity: Duration) -> Fleet {
        let lab = Lab::start_with(|o| o.validity = Some(validity)).await;
        for i in 0..n {
            let d = domain(i);
            let old = lab.upload(&[d.as_str()], 80, 90, Some(&cert(i)), "").await;
            lab.proxy(&proxy(i), &[&old]).await;
        }
        Fleet { lab, n }
    }

    /// Writes the configuration for the real binary: every certificate, the
    /// given `[daemon]` body (without the header), and `extra` appended.
    pub fn write_config(&self, daemon: &str, extra: &str) -> PathBuf {
        let state = format!("dir = \"{}\"", self.lab.state_dir().display());
        self.write_config_state(&state, daemon, extra)
    }

    /// [`Fleet::write_config`] with `state` as the body of `[state]`.
    pub fn write_config_state(&self, state: &str, daemon: &str, extra: &str) -> PathBuf {
        let mut certs = String::new();
        for i in 0..self.n {
            certs.push_str(&format!(
                "[[certificates]]\nname = \"{}\"\ndomains = [\"{}\"]\ntarget_https_proxies = [\"{}\"]\n\n",
                cert(i),
                domain(i),
                proxy(i)
            ));
        }
        // A port of its own: tests run in parallel, and 9464 may be taken.
        let metrics = if daemon.contains("metrics_listen") {
            String::new()
        } else {
            format!("metrics_listen = \"127.0.0.1:{}\"\n", super::free_port())
        };
        write_config_with_state(
            &self.lab,
            state,
            &format!("[daemon]\n{metrics}{daemon}\n\n{certs}{extra}"),
        )
    }

    /// What each proxy serves now; proxies whose read failed (faults are on)
    /// are left out.
    pub async fn served(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for i in 0..self.n {
            let (s, b) = self
                .lab
                .cloud
                .get(&format!(
                    "compute/v1/projects/{PROJECT}/global/targetHttpsProxies/{}",
                    proxy(i)
                ))
                .await;
            let Some(list) = b["sslCertificates"].as_array().filter(|_| s == 200) else {
                continue;
            };
            let names = list
                .iter()
                .filter_map(Value::as_str)
                .map(|u| u.rsplit('/').next().unwrap_or(u).to_string())
                .collect();
            out.insert(proxy(i), names);
        }
        out
    }

    /// Copies the daemon's and Pebble's logs to `$GCLB_ACME_TEST_LOGS/` (when
    /// set) for a look after the test.
    pub fn keep_logs(&self, daemon_log: &Path) {
        if let Ok(dir) = std::env::var("GCLB_ACME_TEST_LOGS") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).expect("logs dir");
            let _ = std::fs::copy(daemon_log, dir.join("daemon.log"));
            let _ = std::fs::copy(&self.lab.pebble.log_path, dir.join("pebble.log"));
        }
    }

    /// Serials of the certificates Pebble issued so far (one per finalized
    /// order), in order.
    pub fn issued(&self) -> Vec<String> {
        self.lab
            .pebble
            .log()
            .lines()
            .filter_map(|l| {
                let rest = l.split("Issued certificate serial ").nth(1)?;
                Some(rest.split_whitespace().next()?.to_string())
            })
            .collect()
    }

    /// The invariants once the daemon has stopped and faults are off: each proxy
    /// serves exactly one certificate, valid now, for its name, named for its
    /// certificate; the project holds no other certificate of ours; no TXT value
    /// is left; no issued certificate waits in `pending/`.
    pub async fn assert_converged(&self) {
        let gcp = self.lab.cloud.gcp();
        let mut served_all = BTreeSet::new();
        for i in 0..self.n {
            let served = self.lab.served(&proxy(i)).await;
            assert_eq!(served.len(), 1, "{}: {served:?}", proxy(i));
            let name = &served[0];
            assert!(
                name.starts_with(&format!("{}-", cert(i))),
                "{} serves {name}, not a certificate of {}",
                proxy(i),
                cert(i)
            );
            let c = gcp.get_ssl_certificate(name).await.unwrap().unwrap();
            let pem = c.certificate.unwrap();
            let chain = certs::split_chain(&pem).unwrap();
            let leaf = certs::leaf_info(&chain[0]).unwrap();
            let now = time::OffsetDateTime::now_utc();
            assert!(
                leaf.not_before <= now && now < leaf.not_after,
                "{name} is not valid now"
            );
            assert_eq!(leaf.dns_names, vec![domain(i)], "{name}");
            // Issued by Pebble (an intermediate follows), not the seeded self-signed one.
            assert!(chain.len() >= 2, "{name} has no chain: not from the CA");
            served_all.insert(name.clone());
            let txt = self
                .lab
                .cloud
                .txt("example-test", &format!("_acme-challenge.{}.", domain(i)))
                .await;
            assert!(txt.is_empty(), "TXT left at {}: {txt:?}", domain(i));
            let pending = self
                .lab
                .state_dir()
                .join(format!("pending/{}.json", cert(i)));
            assert!(!pending.exists(), "{} still pending", cert(i));
        }
        let all: BTreeSet<String> = self.lab.certificates().await.into_iter().collect();
        assert_eq!(
            all, served_all,
            "certificates of ours that no proxy serves were left behind"
        );
    }
}

/// Writes `config.toml` in the lab's directory: `[gcp]`, `[acme]`, `[dns]` and
/// `[state]` pointed at the emulator and Pebble, then `body` verbatim.
pub fn write_config(lab: &Lab, body: &str) -> PathBuf {
    write_config_with_state(
        lab,
        &format!("dir = \"{}\"", lab.state_dir().display()),
        body,
    )
}

/// [`write_config`] with `state` as the body of `[state]`.
pub fn write_config_with_state(lab: &Lab, state: &str, body: &str) -> PathBuf {
    let e = lab.cloud.endpoints();
    let ns = lab
        .cloud
        .nameservers()
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let toml = format!(
        r#"[gcp]
project = "{PROJECT}"
[gcp.endpoints]
compute = "{}"
dns = "{}"
iap = "{}"
run = "{}"
serviceusage = "{}"
resourcemanager = "{}"
storage = "{}"

[acme]
directory = "{}"
accept_terms = true
ca_roots = ["{}"]

[dns]
nameservers = [{ns}]
propagation_timeout = "30s"

[state]
{state}

{body}
"#,
        e.compute,
        e.dns,
        e.iap,
        e.run,
        e.serviceusage,
        e.resourcemanager,
        e.storage,
        lab.pebble.directory_url,
        lab.pebble.listener_ca_path.display(),
    );
    let path = lab.tmp.path().join("config.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

/// The real binary with a clean environment pointed at the lab, `args` after
/// the global flags; stdout and stderr appended to `log`.
pub fn command(lab: &Lab, home: &Path, log: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gclb-acme"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    cmd.env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("GCLB_ACME_LOG")
        .env("HOME", home)
        .env("GCE_METADATA_HOST", lab.metadata_host())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(out);
    cmd
}

/// A daemon child process, SIGKILLed on drop (a failing test leaves none behind).
pub struct Daemon(pub Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `gclb-acme --log-format json run --config <config>`, started.
pub fn spawn_daemon(lab: &Lab, home: &Path, config: &Path, log: &Path) -> Daemon {
    Daemon(
        command(
            lab,
            home,
            log,
            &[
                "--log-format",
                "json",
                "run",
                "--config",
                config.to_str().unwrap(),
            ],
        )
        .spawn()
        .expect("spawn gclb-acme run"),
    )
}

/// Sends `sig` (e.g. `-TERM`, `-KILL`) to `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// SIGTERM, then wait (at most `within`) for the exit status.
pub async fn stop(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    signal(child.id(), "-TERM");
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within {within:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The JSON log lines of a log file (other lines are skipped).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Serials the daemon reports installing ("issued and installed certificate
/// <serial>" or "installed certificate <serial>" in "certificate healthy" lines).
pub fn installed(text: &str) -> Vec<String> {
    json_lines(text)
        .iter()
        .filter(|l| l["message"] == "certificate healthy")
        .filter_map(|l| {
            let s = l["summary"].as_str()?;
            let rest = s.split("installed certificate ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_string())
        })
        .collect()
}

/// Every ERROR line that names a certificate is followed, later in the log, by
/// a "certificate healthy" line for that certificate; lines that name none are
/// returned for the caller to judge.
pub fn unrecovered_errors(text: &str) -> Vec<String> {
    let lines = json_lines(text);
    let mut bad = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l["level"] != "ERROR" {
            continue;
        }
        let Some(c) = l["certificate"].as_str() else {
            bad.push(l.to_string());
            continue;
        };
        let recovered = lines[i + 1..]
            .iter()
            .any(|m| m["certificate"] == c && m["message"] == "certificate healthy");
        if !recovered {
            bad.push(l.to_string());
        }
    }
    bad
}

/// Fault rules that fail about `percent`% of every GCP call at random, spread
/// over 500, 503, 429, 403 rateLimitExceeded and operations that end in error.
pub fn random_faults(percent: f64) -> Vec<Value> {
    // Rules are tried in order, each with its own draw: p each gives about
    // 1 - (1 - p)^k in all. Operation faults (compute only: Cloud DNS changes
    // have no error state) apply to mutations on top.
    let p = 1.0 - (1.0 - percent / 100.0).powf(1.0 / 5.0);
    vec![
        json!({"method": "*", "probability": p, "status": 500}),
        json!({"method": "*", "probability": p, "status": 503}),
        json!({"method": "*", "probability": p, "status": 429}),
        json!({"method": "*", "probability": p, "status": 403, "reason": "rateLimitExceeded"}),
        json!({"method": "compute.*", "http_method": "POST", "probability": p * 2.0, "kind": "operation", "status": 503}),
        json!({"method": "compute.*", "http_method": "DELETE", "probability": p * 2.0, "kind": "operation", "status": 503}),
    ]
}

/// Removes every fault rule.
pub async fn clear_faults(lab: &Lab) {
    let r = lab
        .cloud
        .http
        .delete(format!("{}emulator/faults", lab.cloud.emu.base_url()))
        .send()
        .await
        .expect("clear faults");
    assert!(r.status().is_success());
}
