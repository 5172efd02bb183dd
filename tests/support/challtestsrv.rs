//! pebble-challtestsrv (Debian package `pebble`) as the DNS server Pebble
//! validates DNS-01 against, plus a test `Dns01Solver` that writes through its
//! management API.
//!
//! Facts checked against 2.4.0: several `/set-txt` calls for one host serve all
//! values at once (wildcard + apex share `_acme-challenge.<apex>`); `/clear-txt`
//! removes every value of a host (no per-value removal); there is no `-doh` flag.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gclb_acme::acme::{ChallengeRecord, Dns01Solver, SolverError};

/// A running pebble-challtestsrv.
pub struct ChallTestSrv {
    child: Child,
    _dir: tempfile::TempDir,
    /// UDP/TCP DNS address (give it to Pebble's `-dnsserver`).
    pub dns_addr: SocketAddr,
    /// `http://127.0.0.1:PORT` management API.
    pub management_url: String,
    log_path: PathBuf,
}

fn binary() -> PathBuf {
    let p = Path::new("/usr/bin/pebble-challtestsrv");
    if p.is_file() {
        return p.to_path_buf();
    }
    panic!(
        "pebble-challtestsrv is not installed: run `apt-get install -y pebble` (scripts/test \
         does this). Tests that need it fail rather than skip."
    );
}

impl ChallTestSrv {
    pub async fn start() -> ChallTestSrv {
        let bin = binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let dns_addr = super::free_addr();
        let mgmt = super::free_addr();
        let log_path = dir.path().join("challtestsrv.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let child = Command::new(bin)
            .arg("-dns01")
            .arg(dns_addr.to_string())
            .arg("-management")
            .arg(mgmt.to_string())
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn pebble-challtestsrv");
        let mut srv = ChallTestSrv {
            child,
            _dir: dir,
            dns_addr,
            management_url: format!("http://{mgmt}"),
            log_path,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = srv.child.try_wait() {
                panic!("pebble-challtestsrv exited ({status}):\n{}", srv.log());
            }
            // Any HTTP answer means the management server is up.
            if client
                .post(format!("{}/clear-txt", srv.management_url))
                .body(r#"{"host":"ready.invalid."}"#)
                .send()
                .await
                .is_ok()
                && std::net::UdpSocket::bind("127.0.0.1:0").is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                panic!("pebble-challtestsrv did not start:\n{}", srv.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        srv
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Adds one TXT value to `name` (no trailing dot needed).
    pub async fn set_txt(&self, name: &str, value: &str) -> Result<(), String> {
        self.post(
            "set-txt",
            serde_json::json!({"host": fqdn(name), "value": value}),
        )
        .await
    }

    /// Removes every TXT value of `name`.
    pub async fn clear_txt(&self, name: &str) -> Result<(), String> {
        self.post("clear-txt", serde_json::json!({"host": fqdn(name)}))
            .await
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<(), String> {
        let rsp = reqwest::Client::new()
            .post(format!("{}/{path}", self.management_url))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if rsp.status().is_success() {
            Ok(())
        } else {
            Err(format!("{path}: HTTP {}", rsp.status()))
        }
    }

    /// TXT values served for `name`, asked over DNS with `dig`.
    pub fn query_txt(&self, name: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                "+short",
                "+time=2",
                "+tries=1",
                &format!("@{}", self.dns_addr.ip()),
                "-p",
                &self.dns_addr.port().to_string(),
                "TXT",
                name,
            ])
            .output()
            .expect("dig (apt-get install bind9-dnsutils; scripts/test does this)");
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().trim_matches('"').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        v
    }
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// What the test solver saw.
#[derive(Debug, Default, Clone)]
pub struct SolverLog {
    /// Each `present` call's records.
    pub presented: Vec<Vec<ChallengeRecord>>,
    /// Each `cleanup` call's records.
    pub cleaned: Vec<Vec<ChallengeRecord>>,
    /// For each record name of each present: the values DNS served afterwards.
    pub served: Vec<(String, Vec<String>)>,
}

/// A `Dns01Solver` over pebble-challtestsrv.
pub struct TestSolver<'a> {
    pub srv: &'a ChallTestSrv,
    /// Publish a wrong value instead of the right one (authorization failure test).
    pub wrong_value: bool,
    /// Fail `present` with a permanent error after writing (crash-mid-order test).
    pub fail_present: bool,
    pub log: Mutex<SolverLog>,
}

impl<'a> TestSolver<'a> {
    pub fn new(srv: &'a ChallTestSrv) -> Self {
        TestSolver {
            srv,
            wrong_value: false,
            fail_present: false,
            log: Mutex::new(SolverLog::default()),
        }
    }

    pub fn log(&self) -> SolverLog {
        self.log.lock().unwrap().clone()
    }
}

impl Dns01Solver for TestSolver<'_> {
    async fn present(&self, records: &[ChallengeRecord]) -> Result<(), SolverError> {
        self.log.lock().unwrap().presented.push(records.to_vec());
        for r in records {
            let value = if self.wrong_value {
                "d3JvbmctdmFsdWUtd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc".to_string()
            } else {
                r.value.clone()
            };
            self.srv
                .set_txt(&r.record_name, &value)
                .await
                .map_err(SolverError::transient)?;
        }
        // Like the real solver: return once the server answers with every value.
        let mut names: Vec<&str> = records.iter().map(|r| r.record_name.as_str()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let served = self.srv.query_txt(name);
            if !self.wrong_value {
                for r in records.iter().filter(|r| r.record_name == name) {
                    if !served.contains(&r.value) {
                        return Err(SolverError::transient(format!(
                            "{name} does not serve {} yet",
                            r.value
                        )));
                    }
                }
            }
            self.log
                .lock()
                .unwrap()
                .served
                .push((name.to_string(), served));
        }
        if self.fail_present {
            return Err(SolverError::permanent("simulated crash after present"));
        }
        Ok(())
    }

    async fn cleanup(&self, records: &[ChallengeRecord]) -> Result<(), SolverError> {
        self.log.lock().unwrap().cleaned.push(records.to_vec());
        let mut names: Vec<&str> = records.iter().map(|r| r.record_name.as_str()).collect();
        names.sort();
        names.dedup();
        for name in names {
            self.srv
                .clear_txt(name)
                .await
                .map_err(SolverError::transient)?;
        }
        Ok(())
    }
}
