//! The gcp-emulator for integration tests: started in-process on free ports, with
//! helpers to seed it through its own API, steer faults and lag, read its request
//! log, and build our `Gcp` client pointed at it.

use std::time::Duration;

use gclb_acme::config::Endpoints;
use gclb_acme::gcp::{Auth, Gcp, RetryPolicy};
use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};

pub const PROJECT: &str = "demo-project";

/// A running emulator plus a plain HTTP client for seeding and inspection.
pub struct Cloud {
    pub emu: Emulator,
    pub http: reqwest::Client,
}

impl Cloud {
    pub async fn start() -> Cloud {
        Cloud::with(Config {
            operation_delay: Duration::from_millis(20),
            dns_change_delay: Duration::from_millis(20),
            ..Config::default()
        })
        .await
    }

    pub async fn with(config: Config) -> Cloud {
        let emu = Emulator::start(config).await.expect("emulator starts");
        Cloud {
            emu,
            http: reqwest::Client::new(),
        }
    }

    /// Our API endpoints, all on the emulator.
    pub fn endpoints(&self) -> Endpoints {
        let b = self.emu.base_url();
        Endpoints {
            compute: format!("{b}compute/v1/"),
            dns: format!("{b}dns/v1/"),
            iap: format!("{b}v1/"),
            run: format!("{b}v2/"),
            serviceusage: format!("{b}v1beta1/"),
            resourcemanager: format!("{b}v3/"),
            storage: b.clone(),
            certificatemanager: format!("{b}v1/"),
        }
    }

    /// Our client, with short retry delays.
    pub fn gcp(&self) -> Gcp {
        let mut g = Gcp::new(self.endpoints(), PROJECT.to_string(), Auth::None).expect("client");
        g.retry = RetryPolicy::fast();
        g
    }

    /// `host:port` of each simulated name server.
    pub fn nameservers(&self) -> Vec<String> {
        self.emu.dns_addrs().iter().map(|a| a.to_string()).collect()
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// GET `path` under the base URL.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.emu.base_url())))
            .await
    }

    /// POST `body` to `path` under the base URL.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}{path}", self.emu.base_url()))
                .json(&body),
        )
        .await
    }

    /// Creates a managed zone (public unless `private`).
    pub async fn zone(&self, name: &str, dns_name: &str, private: bool) {
        let mut body = json!({"name": name, "dnsName": dns_name, "description": "test zone"});
        if private {
            body["visibility"] = json!("private");
            body["privateVisibilityConfig"] = json!({"networks": [{"networkUrl": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/networks/default")}]});
        }
        let (s, b) = self
            .post(&format!("dns/v1/projects/{PROJECT}/managedZones"), body)
            .await;
        assert_eq!(s, 200, "create zone {name}: {b}");
    }

    /// Applies a change to a zone through the API (seeding other writers' data).
    pub async fn change(&self, zone: &str, additions: Value, deletions: Value) -> (u16, Value) {
        self.post(
            &format!("dns/v1/projects/{PROJECT}/managedZones/{zone}/changes"),
            json!({"additions": additions, "deletions": deletions}),
        )
        .await
    }

    /// The TXT values (unquoted) at `name` in `zone`, as the API holds them.
    pub async fn txt(&self, zone: &str, name: &str) -> Vec<String> {
        let (s, b) = self
            .get(&format!(
                "dns/v1/projects/{PROJECT}/managedZones/{zone}/rrsets?name={name}&type=TXT"
            ))
            .await;
        assert_eq!(s, 200, "{b}");
        b["rrsets"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|r| r["rrdatas"].as_array())
            .map(|d| {
                d.iter()
                    .filter_map(Value::as_str)
                    .map(gclb_acme::dns::txt::unquote)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds a fault rule (`/emulator/faults`).
    pub async fn fault(&self, rule: Value) {
        let (s, b) = self.post("emulator/faults", rule).await;
        assert!(s < 300, "fault rule refused: {s} {b}");
    }

    /// Sets every name server's propagation lag.
    pub async fn lags(&self, lags_ms: &[u64]) {
        let (s, b) = self
            .post("emulator/dns/lag", json!({"lags_ms": lags_ms}))
            .await;
        assert!(s < 300, "{b}");
    }

    /// The request log.
    pub async fn requests(&self) -> Vec<Value> {
        let (s, b) = self.get("emulator/requests").await;
        assert_eq!(s, 200);
        b.as_array().cloned().unwrap_or_default()
    }

    /// Compute mutations in the log: successful Compute calls other than reads,
    /// lists, operation waits and the quota read.
    pub async fn compute_mutations(&self) -> Vec<String> {
        self.requests()
            .await
            .iter()
            .filter(|r| r["status"].as_u64().is_some_and(|s| s < 300))
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .filter(|id| id.starts_with("compute."))
            .filter(|id| {
                !(id.ends_with(".get")
                    || id.ends_with(".list")
                    || id.ends_with(".wait")
                    || id.starts_with("compute.globalOperations")
                    || id == "compute.projects.get")
            })
            .collect()
    }

    /// How many logged requests had this discovery method id (and a 2xx status,
    /// when `ok_only`).
    pub async fn count(&self, id: &str, ok_only: bool) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|r| r["id"] == id)
            .filter(|r| !ok_only || r["status"].as_u64().is_some_and(|s| s < 300))
            .count()
    }

    /// The caller holds exactly `permissions` in the project (`None`: everything,
    /// the default).
    pub async fn grant(&self, permissions: Option<&[&str]>) {
        let (s, b) = self
            .post(
                "emulator/iam/granted",
                json!({"permissions": permissions, "project": PROJECT}),
            )
            .await;
        assert_eq!(s, 204, "grant refused: {b}");
    }

    /// Every IAM check since the last reset, in order:
    /// `{"method", "permission", "resource", "granted"}`.
    pub async fn iam_checks(&self) -> Vec<Value> {
        let (s, b) = self
            .get(&format!(
                "emulator/iam/checked?project={PROJECT}&detail=true"
            ))
            .await;
        assert_eq!(s, 200, "{b}");
        b.as_array().cloned().unwrap_or_default()
    }

    /// Forgets the IAM checks made so far.
    pub async fn reset_iam_checks(&self) {
        let r = self
            .http
            .delete(format!(
                "{}emulator/iam/checked?project={PROJECT}",
                self.emu.base_url()
            ))
            .send()
            .await
            .expect("reset");
        assert!(r.status().is_success());
    }

    pub async fn clear_requests(&self) {
        let r = self
            .http
            .delete(format!("{}emulator/requests", self.emu.base_url()))
            .send()
            .await
            .expect("clear");
        assert!(r.status().is_success());
    }
}
