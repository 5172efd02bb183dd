//! Cloud DNS v1 API and the authoritative DNS servers of the emulator.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gcp_emulator::{Config, Emulator};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const P: &str = "demo-project";

struct Api {
    emu: Emulator,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Api {
        Self::with(Config::default()).await
    }

    async fn with(config: Config) -> Api {
        let emu = Emulator::start(config).await.expect("emulator starts");
        Api {
            emu,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}dns/v1/projects/{P}{path}", self.emu.base_url())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.patch(self.url(path)).json(&body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    async fn zone(&self, name: &str, dns_name: &str) -> Value {
        let (s, b) = self
            .post(
                "/managedZones",
                json!({"name": name, "dnsName": dns_name, "description": "test"}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b
    }

    async fn change(&self, zone: &str, additions: Value, deletions: Value) -> (u16, Value) {
        self.post(
            &format!("/managedZones/{zone}/changes"),
            json!({"additions": additions, "deletions": deletions}),
        )
        .await
    }

    async fn admin(&self, path: &str, body: Value) {
        let resp = self
            .http
            .post(format!("{}emulator/{path}", self.emu.base_url()))
            .json(&body)
            .send()
            .await
            .expect("admin call");
        assert!(resp.status().is_success(), "{}", resp.status());
    }
}

fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

fn txt(name: &str, ttl: i64, values: &[&str]) -> Value {
    let rrdatas: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    json!({"name": name, "type": "TXT", "ttl": ttl, "rrdatas": rrdatas})
}

// ---------------------------------------------------------------- Cloud DNS API

#[tokio::test]
async fn zone_create_get_and_list_by_exact_dns_name() {
    let api = Api::start().await;
    let z = api.zone("example-com", "example.com.").await;
    assert_eq!(z["kind"], "dns#managedZone");
    assert_eq!(z["name"], "example-com");
    assert_eq!(z["dnsName"], "example.com.");
    assert_eq!(z["visibility"], "public");
    assert!(z["id"].is_string());
    assert!(z["creationTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    let ns = z["nameServers"].as_array().expect("nameServers");
    assert_eq!(ns.len(), 2, "one name server per simulated server");
    for (i, n) in ns.iter().enumerate() {
        let n = n.as_str().unwrap_or("");
        assert!(
            n.starts_with("ns-cloud-") && n.ends_with(&format!("{}.googledomains.com.", i + 1)),
            "{n}"
        );
    }
    api.zone("sub-example-com", "sub.example.com.").await;

    let (s, b) = api.get("/managedZones/example-com").await;
    assert_eq!(s, 200);
    assert_eq!(b, z);
    // By numeric id too.
    let (s, b) = api
        .get(&format!("/managedZones/{}", z["id"].as_str().unwrap_or("")))
        .await;
    assert_eq!((s, &b["name"]), (200, &json!("example-com")));

    let (s, b) = api.get("/managedZones?dnsName=example.com.").await;
    assert_eq!(s, 200);
    assert_eq!(b["kind"], "dns#managedZonesListResponse");
    let names: Vec<&str> = b["managedZones"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|z| z["name"].as_str())
        .collect();
    assert_eq!(names, vec!["example-com"], "exact match, not suffix");
    let (s, b) = api.get("/managedZones?dnsName=sub.example.com.").await;
    assert_eq!(s, 200);
    assert_eq!(b["managedZones"][0]["name"], "sub-example-com");
    assert_eq!(b["managedZones"].as_array().map(Vec::len), Some(1));
    let (s, b) = api.get("/managedZones?dnsName=other.com.").await;
    assert_eq!(s, 200);
    assert_eq!(b["managedZones"], json!([]));

    // Paging.
    let (s, b) = api.get("/managedZones?maxResults=1").await;
    assert_eq!(s, 200);
    assert_eq!(b["managedZones"].as_array().map(Vec::len), Some(1));
    let token = b["nextPageToken"].as_str().expect("token").to_string();
    let (s, b) = api
        .get(&format!("/managedZones?maxResults=1&pageToken={token}"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["managedZones"][0]["name"], "sub-example-com");
    assert!(b.get("nextPageToken").is_none());
    let (s, b) = api.get("/managedZones?maxResults=0").await;
    assert_eq!((s, reason(&b)), (400, "invalid"));
}

#[tokio::test]
async fn zone_create_validation_and_duplicates() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let (s, b) = api
        .post(
            "/managedZones",
            json!({"name": "example-com", "dnsName": "example.com.", "description": "x"}),
        )
        .await;
    assert_eq!((s, reason(&b)), (409, "alreadyExists"));
    assert_eq!(
        message(&b),
        "The resource 'entity.managedZone' named 'example-com' already exists"
    );

    let (s, b) = api
        .post(
            "/managedZones",
            json!({"name": "nodot", "dnsName": "example.org", "description": "x"}),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "invalid"));
    assert!(message(&b).contains("entity.managedZone.dnsName"), "{b}");

    let (s, b) = api
        .post(
            "/managedZones",
            json!({"name": "Bad_Name", "dnsName": "example.org.", "description": "x"}),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "invalid"));
    assert!(message(&b).contains("entity.managedZone.name"), "{b}");

    let (s, b) = api
        .post(
            "/managedZones",
            json!({"name": "nodesc", "dnsName": "example.org."}),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "required"));

    // Unknown fields fail the discovery-schema check.
    let (s, b) = api
        .post(
            "/managedZones",
            json!({"name": "z", "dnsName": "example.org.", "description": "x", "bogus": 1}),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "invalid"));

    let (s, b) = api.get("/managedZones/missing").await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
}

#[tokio::test]
async fn zone_creation_makes_apex_soa_and_ns_as_change_zero() {
    let api = Api::start().await;
    let z = api.zone("example-com", "example.com.").await;
    let (s, b) = api.get("/managedZones/example-com/rrsets").await;
    assert_eq!(s, 200);
    assert_eq!(b["kind"], "dns#resourceRecordSetsListResponse");
    let sets = b["rrsets"].as_array().expect("rrsets");
    assert_eq!(sets.len(), 2);
    let (s, ns) = api
        .get("/managedZones/example-com/rrsets/example.com./NS")
        .await;
    assert_eq!(s, 200);
    assert_eq!(ns["rrdatas"], z["nameServers"]);
    let (s, soa) = api
        .get("/managedZones/example-com/rrsets/example.com./SOA")
        .await;
    assert_eq!(s, 200);
    let first_ns = z["nameServers"][0].as_str().unwrap_or("");
    assert_eq!(
        soa["rrdatas"][0],
        format!("{first_ns} cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300")
    );
    let (s, c) = api.get("/managedZones/example-com/changes/0").await;
    assert_eq!(s, 200);
    assert_eq!(c["status"], "done");
    assert_eq!(c["additions"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn txt_change_is_pending_then_done() {
    let api = Api::with(Config {
        dns_change_delay: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    api.zone("example-com", "example.com.").await;
    let name = "_acme-challenge.example.com.";
    let (s, c) = api
        .change("example-com", json!([txt(name, 60, &["tok1"])]), json!([]))
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["kind"], "dns#change");
    assert_eq!(c["id"], "1");
    assert_eq!(c["status"], "pending");
    assert!(c["startTime"].is_string());
    assert_eq!(c["additions"][0]["rrdatas"], json!(["\"tok1\""]));
    assert!(c.get("deletions").is_none());

    let (s, g) = api.get("/managedZones/example-com/changes/1").await;
    assert_eq!((s, &g["status"]), (200, &json!("pending")));
    // The records are in the zone at once (the API shows them while pending).
    let (s, r) = api
        .get(&format!("/managedZones/example-com/rrsets/{name}/TXT"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        r["rrdatas"],
        json!(["\"tok1\""]),
        "TXT kept quoted as given"
    );
    assert_eq!(r["ttl"], 60);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let (s, g) = api.get("/managedZones/example-com/changes/1").await;
    assert_eq!((s, &g["status"]), (200, &json!("done")));

    let (s, l) = api
        .get("/managedZones/example-com/changes?sortOrder=descending")
        .await;
    assert_eq!(s, 200);
    assert_eq!(l["kind"], "dns#changesListResponse");
    let ids: Vec<&str> = l["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["1", "0"]);

    let (s, b) = api.get("/managedZones/example-com/changes/9").await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
}

#[tokio::test]
async fn adding_an_existing_set_is_409_already_exists() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let name = "_acme-challenge.example.com.";
    let (s, _) = api
        .change("example-com", json!([txt(name, 60, &["a"])]), json!([]))
        .await;
    assert_eq!(s, 200);
    let (s, b) = api
        .change("example-com", json!([txt(name, 60, &["b"])]), json!([]))
        .await;
    assert_eq!((s, reason(&b)), (409, "alreadyExists"));
    assert_eq!(
        message(&b),
        "The resource 'entity.change.additions[0]' named '_acme-challenge.example.com. (TXT)' already exists"
    );
    assert_eq!(b["error"]["status"], "ALREADY_EXISTS");
}

#[tokio::test]
async fn deleting_an_absent_set_is_404_not_found() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let (s, b) = api
        .change(
            "example-com",
            json!([]),
            json!([txt("_acme-challenge.example.com.", 60, &["a"])]),
        )
        .await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
    assert_eq!(
        message(&b),
        "The 'entity.change.deletions[0]' resource named '_acme-challenge.example.com. (TXT)' does not exist."
    );
}

#[tokio::test]
async fn mismatched_deletion_is_412_condition_not_met() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let name = "_acme-challenge.example.com.";
    let (s, _) = api
        .change(
            "example-com",
            json!([txt(name, 60, &["a", "b"])]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200);
    for wrong in [
        txt(name, 300, &["a", "b"]), // ttl differs
        txt(name, 60, &["a", "c"]),  // an rrdata differs
        txt(name, 60, &["a"]),       // an rrdata is missing
        json!({"name": name, "type": "TXT", "ttl": 60, "rrdatas": ["a", "b"]}), // unquoted
    ] {
        let (s, b) = api.change("example-com", json!([]), json!([wrong])).await;
        assert_eq!((s, reason(&b)), (412, "conditionNotMet"), "{wrong}");
        assert_eq!(
            message(&b),
            "Precondition not met for 'entity.change.deletions[0]'"
        );
    }
    // The exact set (rrdatas in any order) deletes.
    let (s, b) = api
        .change(
            "example-com",
            json!([]),
            json!([txt(name, 60, &["b", "a"])]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = api
        .get(&format!("/managedZones/example-com/rrsets/{name}/TXT"))
        .await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
}

#[tokio::test]
async fn a_failed_change_changes_nothing() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let a = "a.example.com.";
    let b_name = "b.example.com.";
    let (s, _) = api
        .change(
            "example-com",
            json!([txt(a, 60, &["a"]), txt(b_name, 60, &["b"])]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200);
    // Deletion of `a` is valid, the second addition collides: all or nothing.
    let (s, b) = api
        .change(
            "example-com",
            json!([txt("c.example.com.", 60, &["c"]), txt(b_name, 60, &["x"])]),
            json!([txt(a, 60, &["a"])]),
        )
        .await;
    assert_eq!((s, reason(&b)), (409, "alreadyExists"));
    assert!(message(&b).contains("entity.change.additions[1]"), "{b}");
    let (s, _) = api
        .get("/managedZones/example-com/rrsets/a.example.com./TXT")
        .await;
    assert_eq!(s, 200, "the valid deletion was not applied");
    let (s, b) = api
        .get("/managedZones/example-com/rrsets/c.example.com./TXT")
        .await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
    let (_, l) = api.get("/managedZones/example-com/changes").await;
    assert_eq!(
        l["changes"].as_array().map(Vec::len),
        Some(2),
        "no change recorded"
    );

    // Names outside the zone, bad rdata and duplicates are 400 and change nothing.
    let (s, b) = api
        .change(
            "example-com",
            json!([txt("x.example.org.", 60, &["x"])]),
            json!([]),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "invalid"));
    assert_eq!(
        message(&b),
        "Invalid value for 'entity.change.additions[0].name': 'x.example.org.'"
    );
    let (s, b) = api
        .change(
            "example-com",
            json!([txt("notexample.com.", 60, &["x"])]),
            json!([]),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "invalid"));
    let (s, b) = api
        .change(
            "example-com",
            json!([{"name": "w.example.com.", "type": "A", "ttl": 60, "rrdatas": ["300.1.1.1"]}]),
            json!([]),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "invalid"));
    assert!(
        message(&b).contains("entity.change.additions[0].rrdata[0]"),
        "{b}"
    );
    let (s, b) = api
        .change(
            "example-com",
            json!([
                txt("d.example.com.", 60, &["1"]),
                txt("d.example.com.", 60, &["2"])
            ]),
            json!([]),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "invalid"));
    let (s, b) = api.change("example-com", json!([]), json!([])).await;
    assert_eq!((s, reason(&b)), (400, "required"));
    let (_, l) = api.get("/managedZones/example-com/rrsets").await;
    assert_eq!(l["rrsets"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn merged_upsert_replaces_the_set_in_one_change() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let name = "_acme-challenge.example.com.";
    let (s, _) = api
        .change("example-com", json!([txt(name, 60, &["tok1"])]), json!([]))
        .await;
    assert_eq!(s, 200);
    let (s, c) = api
        .change(
            "example-com",
            json!([txt(name, 60, &["tok1", "tok2"])]),
            json!([txt(name, 60, &["tok1"])]),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["id"], "2");
    assert_eq!(c["deletions"][0]["rrdatas"], json!(["\"tok1\""]));
    let (s, r) = api
        .get(&format!("/managedZones/example-com/rrsets/{name}/TXT"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["rrdatas"], json!(["\"tok1\"", "\"tok2\""]));
    // A stale upsert (someone else changed it meanwhile) is 412.
    let (s, b) = api
        .change(
            "example-com",
            json!([txt(name, 60, &["tok1", "tok3"])]),
            json!([txt(name, 60, &["tok1"])]),
        )
        .await;
    assert_eq!((s, reason(&b)), (412, "conditionNotMet"));
}

#[tokio::test]
async fn rrsets_list_filters_by_name_and_type() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let (s, _) = api
        .change(
            "example-com",
            json!([
                txt("www.example.com.", 60, &["t"]),
                {"name": "www.example.com.", "type": "A", "ttl": 300, "rrdatas": ["192.0.2.1"]},
                txt("other.example.com.", 60, &["o"]),
            ]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200);
    let types = |b: &Value| -> Vec<String> {
        b["rrsets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        format!(
                            "{} {}",
                            r["name"].as_str().unwrap_or(""),
                            r["type"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (s, b) = api
        .get("/managedZones/example-com/rrsets?name=www.example.com.")
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        types(&b),
        vec!["www.example.com. A", "www.example.com. TXT"]
    );
    let (s, b) = api
        .get("/managedZones/example-com/rrsets?name=www.example.com.&type=TXT")
        .await;
    assert_eq!(s, 200);
    assert_eq!(types(&b), vec!["www.example.com. TXT"]);
    let (s, b) = api
        .get("/managedZones/example-com/rrsets?name=nothing.example.com.&type=TXT")
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["rrsets"], json!([]));
    let (s, b) = api.get("/managedZones/example-com/rrsets?type=TXT").await;
    assert_eq!((s, reason(&b)), (400, "invalid"), "type requires name");
    let (s, b) = api
        .get("/managedZones/example-com/rrsets?filter=name%3D%22www.example.com.%22%20AND%20type%3D%22A%22")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(types(&b), vec!["www.example.com. A"]);
    // Paging over all five sets.
    let (s, b) = api
        .get("/managedZones/example-com/rrsets?maxResults=3")
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["rrsets"].as_array().map(Vec::len), Some(3));
    let token = b["nextPageToken"].as_str().expect("token").to_string();
    let (_, b) = api
        .get(&format!(
            "/managedZones/example-com/rrsets?maxResults=3&pageToken={token}"
        ))
        .await;
    assert_eq!(b["rrsets"].as_array().map(Vec::len), Some(2));
    let (s, b) = api.get("/managedZones/missing/rrsets").await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
}

#[tokio::test]
async fn simple_rrset_endpoints() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let base = "/managedZones/example-com/rrsets";
    let name = "_acme-challenge.example.com.";
    let (s, r) = api.post(base, txt(name, 60, &["a"])).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["kind"], "dns#resourceRecordSet");
    let (s, b) = api.post(base, txt(name, 60, &["a"])).await;
    assert_eq!((s, reason(&b)), (409, "alreadyExists"));
    let (s, r) = api
        .patch(
            &format!("{base}/{name}/TXT"),
            json!({"ttl": 120, "rrdatas": ["\"a\"", "\"b\""]}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["ttl"], 120);
    let (s, r) = api.get(&format!("{base}/{name}/TXT")).await;
    assert_eq!((s, &r["rrdatas"]), (200, &json!(["\"a\"", "\"b\""])));
    let (s, b) = api.delete(&format!("{base}/{name}/TXT")).await;
    assert_eq!((s, &b), (200, &json!({})));
    let (s, b) = api.delete(&format!("{base}/{name}/TXT")).await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
    let (s, b) = api
        .patch(&format!("{base}/{name}/TXT"), json!({"ttl": 5}))
        .await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
    // The apex SOA cannot go.
    let (s, b) = api.delete(&format!("{base}/example.com./SOA")).await;
    assert_eq!((s, reason(&b)), (400, "invalidZoneApex"));
}

#[tokio::test]
async fn deleting_a_non_empty_zone_is_400_container_not_empty() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let name = "www.example.com.";
    let (s, _) = api
        .change("example-com", json!([txt(name, 60, &["x"])]), json!([]))
        .await;
    assert_eq!(s, 200);
    let (s, b) = api.delete("/managedZones/example-com").await;
    assert_eq!((s, reason(&b)), (400, "containerNotEmpty"));
    let (s, _) = api.get("/managedZones/example-com").await;
    assert_eq!(s, 200, "still there");
    let (s, _) = api
        .change("example-com", json!([]), json!([txt(name, 60, &["x"])]))
        .await;
    assert_eq!(s, 200);
    // Only the apex SOA and NS are left: deletable.
    let (s, b) = api.delete("/managedZones/example-com").await;
    assert_eq!((s, &b), (204, &Value::Null));
    let (s, b) = api.get("/managedZones/example-com").await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
    let (s, b) = api.delete("/managedZones/example-com").await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
}

#[tokio::test]
async fn injected_operation_fault_fails_the_change_and_changes_nothing() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    api.admin(
        "faults",
        json!({"method": "dns.changes.create", "kind": "operation", "status": 503, "count": 1}),
    )
    .await;
    let name = "x.example.com.";
    let (s, b) = api
        .change("example-com", json!([txt(name, 60, &["x"])]), json!([]))
        .await;
    assert_eq!((s, reason(&b)), (503, "backendError"));
    let (s, _) = api
        .get(&format!("/managedZones/example-com/rrsets/{name}/TXT"))
        .await;
    assert_eq!(s, 404);
    // The rule was for one request only.
    let (s, c) = api
        .change("example-com", json!([txt(name, 60, &["x"])]), json!([]))
        .await;
    assert_eq!(s, 200);
    assert_eq!(c["id"], "1", "the failed change took no id");
}

#[tokio::test]
async fn project_get_reports_quota() {
    let api = Api::start().await;
    let (s, b) = api.get("").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["kind"], "dns#project");
    assert_eq!(b["id"], P);
    assert_eq!(b["number"], "123456789012");
    assert_eq!(b["quota"]["kind"], "dns#quota");
    assert_eq!(b["quota"]["rrsetAdditionsPerChange"], 1000);
    assert_eq!(b["quota"]["rrsetDeletionsPerChange"], 1000);
    let resp = api
        .http
        .get(format!("{}dns/v1/projects/nope", api.emu.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 404);
}

// ---------------------------------------------------------------- DNS servers

fn query_bytes(name: &str, rtype: RecordType) -> (u16, Vec<u8>) {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    m.metadata.recursion_desired = true;
    m.set_edns(Edns::new());
    (m.metadata.id, m.to_vec().expect("encode"))
}

async fn udp_query(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let (id, bytes) = query_bytes(name, rtype);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    sock.send_to(&bytes, addr).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("UDP answer in time")
        .expect("recv");
    let m = Message::from_vec(&buf[..n]).expect("decode");
    assert_eq!(m.metadata.id, id);
    m
}

async fn tcp_query(addr: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let (id, bytes) = query_bytes(name, rtype);
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let len = u16::try_from(bytes.len()).expect("small");
    s.write_all(&len.to_be_bytes()).await.expect("write");
    s.write_all(&bytes).await.expect("write");
    let n = tokio::time::timeout(Duration::from_secs(2), s.read_u16())
        .await
        .expect("TCP answer in time")
        .expect("len");
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await.expect("read");
    let m = Message::from_vec(&buf).expect("decode");
    assert_eq!(m.metadata.id, id);
    m
}

fn txt_values(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

fn has_soa_authority(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| matches!(r.data, RData::SOA(_)))
}

#[tokio::test]
async fn serves_txt_and_soa_over_udp_and_tcp_authoritatively() {
    let api = Api::start().await;
    let z = api.zone("example-com", "example.com.").await;
    let name = "_acme-challenge.example.com.";
    let (s, _) = api
        .change(
            "example-com",
            json!([txt(name, 60, &["tok1", "tok2"])]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200);
    let addrs = api.emu.dns_addrs();
    assert_eq!(addrs.len(), 2);
    for addr in &addrs {
        for m in [
            udp_query(*addr, name, RecordType::TXT).await,
            tcp_query(*addr, name, RecordType::TXT).await,
        ] {
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative, "AA set");
            assert!(!m.metadata.recursion_available, "RA clear");
            let mut v = txt_values(&m);
            v.sort();
            assert_eq!(v, vec!["tok1", "tok2"]);
            assert!(m.answers.iter().all(|r| r.ttl == 60));
        }
        for m in [
            udp_query(*addr, "example.com.", RecordType::SOA).await,
            tcp_query(*addr, "example.com.", RecordType::SOA).await,
        ] {
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative);
            let RData::SOA(soa) = &m.answers[0].data else {
                panic!("SOA expected: {m:?}");
            };
            assert_eq!(
                soa.mname.to_ascii(),
                z["nameServers"][0].as_str().unwrap_or("")
            );
            assert_eq!(soa.rname.to_ascii(), "cloud-dns-hostmaster.google.com.");
        }
        let m = udp_query(*addr, "example.com.", RecordType::NS).await;
        assert_eq!(m.answers.len(), 2);
    }
}

#[tokio::test]
async fn nxdomain_nodata_refused_and_cname() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let (s, b) = api
        .change(
            "example-com",
            json!([
                txt("www.example.com.", 60, &["t"]),
                {"name": "alias.example.com.", "type": "CNAME", "ttl": 60, "rrdatas": ["www.example.com."]},
                {"name": "a.b.example.com.", "type": "A", "ttl": 60, "rrdatas": ["192.0.2.7"]},
            ]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let addr = api.emu.dns_addrs()[0];

    let m = udp_query(addr, "missing.example.com.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert!(has_soa_authority(&m), "SOA in authority");

    let m = udp_query(addr, "www.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "NODATA");
    assert!(m.answers.is_empty());
    assert!(has_soa_authority(&m));

    // Empty non-terminal: NODATA, not NXDOMAIN.
    let m = udp_query(addr, "b.example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(has_soa_authority(&m));

    let m = udp_query(addr, "alias.example.com.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(m.answers[0].data, RData::CNAME(_)), "{m:?}");
    assert_eq!(txt_values(&m), vec!["t"], "alias followed inside the zone");

    let m = udp_query(addr, "example.org.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    let m = tcp_query(addr, "notexample.com.", RecordType::SOA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn nested_zones_answer_by_longest_suffix() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    api.zone("sub-example-com", "sub.example.com.").await;
    let name = "_acme-challenge.sub.example.com.";
    let (s, _) = api
        .change(
            "sub-example-com",
            json!([txt(name, 60, &["child"])]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200);
    let addr = api.emu.dns_addrs()[1];
    let m = udp_query(addr, name, RecordType::TXT).await;
    assert_eq!(txt_values(&m), vec!["child"]);
    let m = udp_query(addr, "sub.example.com.", RecordType::SOA).await;
    let RData::SOA(_) = &m.answers[0].data else {
        panic!("SOA of the child zone expected: {m:?}");
    };
    let m = udp_query(addr, "nothing.sub.example.com.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].name.to_ascii(), "sub.example.com.");
}

#[tokio::test]
async fn private_zones_are_not_served() {
    let api = Api::start().await;
    let (s, z) = api
        .post(
            "/managedZones",
            json!({
                "name": "internal",
                "dnsName": "internal.example.",
                "description": "private",
                "visibility": "private",
                "privateVisibilityConfig": {"networks": [{"networkUrl": "https://www.googleapis.com/compute/v1/projects/demo-project/global/networks/default"}]},
            }),
        )
        .await;
    assert_eq!(s, 200, "{z}");
    assert_eq!(z["visibility"], "private");
    assert!(z["privateVisibilityConfig"]["networks"].is_array());
    let (s, _) = api
        .change(
            "internal",
            json!([txt("x.internal.example.", 60, &["secret"])]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200);
    for addr in api.emu.dns_addrs() {
        let m = udp_query(addr, "x.internal.example.", RecordType::TXT).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(m.answers.is_empty());
    }
}

#[tokio::test]
async fn each_name_server_serves_changes_after_its_own_lag() {
    let api = Api::start().await;
    api.admin("dns/lag", json!({"server": 1, "lag_ms": 1500}))
        .await;
    api.zone("example-com", "example.com.").await;
    let [fast, slow] = api.emu.dns_addrs()[..] else {
        panic!("two servers");
    };
    let name = "_acme-challenge.example.com.";
    // The lagging server does not know the new zone yet.
    let m = udp_query(slow, name, RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let (s, _) = api
        .change("example-com", json!([txt(name, 60, &["v1"])]), json!([]))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        txt_values(&udp_query(fast, name, RecordType::TXT).await),
        vec!["v1"]
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        txt_values(&udp_query(slow, name, RecordType::TXT).await),
        vec!["v1"]
    );

    let (s, _) = api
        .change(
            "example-com",
            json!([txt(name, 60, &["v2"])]),
            json!([txt(name, 60, &["v1"])]),
        )
        .await;
    assert_eq!(s, 200);
    let changed = Instant::now();
    assert_eq!(
        txt_values(&udp_query(fast, name, RecordType::TXT).await),
        vec!["v2"]
    );
    assert_eq!(
        txt_values(&udp_query(slow, name, RecordType::TXT).await),
        vec!["v1"],
        "server 1 still serves the old value"
    );
    assert_eq!(
        txt_values(&tcp_query(slow, name, RecordType::TXT).await),
        vec!["v1"]
    );
    loop {
        let v = txt_values(&udp_query(slow, name, RecordType::TXT).await);
        if v == ["v2"] {
            break;
        }
        assert_eq!(v, vec!["v1"]);
        assert!(
            changed.elapsed() < Duration::from_secs(3),
            "lag never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = changed.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "served too early: {waited:?}"
    );
    // Lags change at run time.
    api.admin("dns/lag", json!({"lags_ms": [0, 0]})).await;
    let (s, _) = api
        .change(
            "example-com",
            json!([txt(name, 60, &["v3"])]),
            json!([txt(name, 60, &["v2"])]),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        txt_values(&udp_query(slow, name, RecordType::TXT).await),
        vec!["v3"]
    );
}

async fn dig(addr: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args([
            "-p",
            &addr.port().to_string(),
            "+norecurse",
            "+time=2",
            "+tries=1",
        ])
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run `dig` ({e}): install it with `apt-get install -y bind9-dnsutils`")
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dig failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // dig separates columns with tabs; compare with single spaces.
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn dig_reads_txt_and_soa() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let name = "_acme-challenge.example.com.";
    let (s, _) = api
        .change(
            "example-com",
            json!([txt(name, 60, &["dig-token"])]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200);
    let addr = api.emu.dns_addrs()[0];
    for transport in ["+notcp", "+tcp"] {
        let out = dig(addr, &[transport, "TXT", name]).await;
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("flags: qr aa;"), "AA set, RD/RA clear: {out}");
        assert!(
            out.contains("_acme-challenge.example.com. 60 IN TXT \"dig-token\""),
            "{out}"
        );
        let out = dig(addr, &[transport, "SOA", "example.com."]).await;
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(
            out.contains("cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"),
            "{out}"
        );
    }
    let out = dig(addr, &["TXT", "missing.example.com."]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let out = dig(addr, &["TXT", "example.net."]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
}

#[tokio::test]
async fn zone_patch_returns_a_done_operation() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let (s, op) = api
        .patch(
            "/managedZones/example-com",
            json!({"description": "new", "labels": {"team": "acme"}}),
        )
        .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(op["kind"], "dns#operation");
    assert_eq!(op["status"], "done");
    assert_eq!(op["zoneContext"]["oldValue"]["description"], "test");
    assert_eq!(op["zoneContext"]["newValue"]["description"], "new");
    let (s, z) = api.get("/managedZones/example-com").await;
    assert_eq!(s, 200);
    assert_eq!(z["labels"]["team"], "acme");
    let id = op["id"].as_str().unwrap_or("");
    let (s, g) = api
        .get(&format!("/managedZones/example-com/operations/{id}"))
        .await;
    assert_eq!((s, &g), (200, &op));
    let (s, b) = api
        .patch(
            "/managedZones/example-com",
            json!({"dnsName": "other.com."}),
        )
        .await;
    assert_eq!((s, reason(&b)), (400, "invalid"));
    let (s, b) = api.get("/managedZones/example-com/operations/99").await;
    assert_eq!((s, reason(&b)), (404, "notFound"));
}

#[tokio::test]
async fn wildcards_and_udp_truncation() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    let long: Vec<String> = (0..20)
        .map(|i| format!("{i:02}{}", "x".repeat(98)))
        .collect();
    let long_refs: Vec<&str> = long.iter().map(String::as_str).collect();
    let (s, b) = api
        .change(
            "example-com",
            json!([
                txt("*.wild.example.com.", 60, &["w"]),
                txt("big.example.com.", 60, &long_refs),
            ]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let addr = api.emu.dns_addrs()[0];
    let m = udp_query(addr, "anything.wild.example.com.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(txt_values(&m), vec!["w"]);
    assert_eq!(m.answers[0].name.to_ascii(), "anything.wild.example.com.");

    // 2 KB of TXT does not fit a 1232-byte UDP answer: TC set, full answer over TCP.
    let m = udp_query(addr, "big.example.com.", RecordType::TXT).await;
    assert!(m.metadata.truncation, "TC set");
    assert!(m.answers.is_empty());
    let m = tcp_query(addr, "big.example.com.", RecordType::TXT).await;
    assert!(!m.metadata.truncation);
    assert_eq!(txt_values(&m).len(), 20);
}

#[tokio::test]
async fn a_deleted_zone_stays_served_by_a_lagging_server_until_its_lag_passes() {
    let api = Api::start().await;
    api.zone("example-com", "example.com.").await;
    api.admin("dns/lag", json!({"lags_ms": [0, 800]})).await;
    let [fast, slow] = api.emu.dns_addrs()[..] else {
        panic!("two servers");
    };
    tokio::time::sleep(Duration::from_millis(850)).await;
    let m = udp_query(slow, "example.com.", RecordType::SOA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let (s, _) = api.delete("/managedZones/example-com").await;
    assert_eq!(s, 204);
    let gone = Instant::now();
    let m = udp_query(fast, "example.com.", RecordType::SOA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = udp_query(slow, "example.com.", RecordType::SOA).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "still served"
    );
    assert!(gone.elapsed() < Duration::from_millis(800));
    tokio::time::sleep(Duration::from_millis(850)).await;
    let m = udp_query(slow, "example.com.", RecordType::SOA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}
