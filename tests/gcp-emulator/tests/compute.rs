//! Compute Engine v1 in the emulator, over HTTP, as a client sees it.

use std::time::{Duration, Instant};

use gcp_emulator::{Config, Emulator};
use reqwest::Method;
use serde_json::{Value, json};

const P: &str = "demo-project";
const LINK: &str = "https://www.googleapis.com/compute/v1/";

struct T {
    emu: Emulator,
    http: reqwest::Client,
}

impl T {
    async fn new() -> T {
        Self::with_delay(Duration::from_millis(20)).await
    }

    async fn with_delay(delay: Duration) -> T {
        let config = Config {
            operation_delay: delay,
            ..Config::default()
        };
        T {
            emu: Emulator::start(config).await.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        if let Some(rest) = path.strip_prefix(LINK) {
            return format!("{}compute/v1/{rest}", self.emu.base_url());
        }
        if path.is_empty() {
            return format!("{}compute/v1/projects/{P}", self.emu.base_url());
        }
        format!("{}compute/v1/projects/{P}/{path}", self.emu.base_url())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Long-polls an operation until DONE.
    async fn wait(&self, op: &Value) -> Value {
        let link = op["selfLink"].as_str().unwrap().to_string();
        for _ in 0..50 {
            let (s, v) = self.call(Method::POST, &format!("{link}/wait"), None).await;
            assert_eq!(s, 200, "{v}");
            if v["status"] == "DONE" {
                return v;
            }
        }
        panic!("operation never finished: {op}");
    }

    /// Asserts the call started an operation that ends without error.
    async fn ok(&self, (status, op): (u16, Value)) -> Value {
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["kind"], "compute#operation", "{op}");
        let done = self.wait(&op).await;
        assert!(done.get("error").is_none(), "{done}");
        done
    }

    async fn settings(&self, body: Value) {
        let r = self
            .http
            .post(format!("{}emulator/settings", self.emu.base_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
}

fn reason(v: &Value) -> &str {
    v["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

fn link(path: &str) -> String {
    format!("{LINK}projects/{P}/{path}")
}

/// A leaf for `names` signed by a small CA: (leaf + CA PEM, leaf key PEM).
fn chain_for(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Emulator Test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let leaf_key = rcgen::KeyPair::generate_for(alg).unwrap();
    let mut leaf_params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    leaf_params.not_after = rcgen::date_time_ymd(2031, 1, 2);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (
        format!("{}{}", leaf.pem(), ca_cert.pem()),
        leaf_key.serialize_pem(),
    )
}

fn chain() -> (String, String) {
    chain_for(
        &["example.com", "www.example.com"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
    )
}

fn cert_body(name: &str, pem: &str, key: &str) -> Value {
    json!({
        "name": name,
        "type": "SELF_MANAGED",
        "selfManaged": {"certificate": pem, "privateKey": key},
    })
}

async fn make_cert(t: &T, name: &str, pem: &str, key: &str) {
    t.ok(t
        .post("global/sslCertificates", cert_body(name, pem, key))
        .await)
        .await;
}

/// NEG -> backend service -> URL map -> certificate -> HTTPS proxy.
async fn make_proxy(t: &T, pem: &str, key: &str) {
    t.ok(t
        .post(
            "regions/us-central1/networkEndpointGroups",
            json!({"name": "neg", "networkEndpointType": "SERVERLESS", "cloudRun": {"service": "app"}}),
        )
        .await)
        .await;
    t.ok(t
        .post(
            "global/backendServices",
            json!({"name": "bs", "loadBalancingScheme": "EXTERNAL_MANAGED",
                   "backends": [{"group": link("regions/us-central1/networkEndpointGroups/neg")}]}),
        )
        .await)
        .await;
    t.ok(t
        .post(
            "global/urlMaps",
            json!({"name": "um", "defaultService": link("global/backendServices/bs")}),
        )
        .await)
        .await;
    make_cert(t, "c1", pem, key).await;
    t.ok(t
        .post(
            "global/targetHttpsProxies",
            json!({"name": "thp", "urlMap": link("global/urlMaps/um"),
                   "sslCertificates": [link("global/sslCertificates/c1")]}),
        )
        .await)
        .await;
}

#[tokio::test]
async fn cert_insert_then_get_reports_expiry_sans_and_never_the_key() {
    let t = T::new().await;
    let (pem, key) = chain();
    let (s, op) = t
        .post("global/sslCertificates", cert_body("site-1", &pem, &key))
        .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(op["operationType"], "insert");
    assert_eq!(op["targetLink"], link("global/sslCertificates/site-1"));
    let done = t.wait(&op).await;
    assert_eq!(done["status"], "DONE");
    assert_eq!(done["progress"], 100);

    let (s, c) = t.get("global/sslCertificates/site-1").await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["kind"], "compute#sslCertificate");
    assert_eq!(c["name"], "site-1");
    assert_eq!(c["type"], "SELF_MANAGED");
    assert_eq!(c["selfLink"], link("global/sslCertificates/site-1"));
    assert!(c["id"].as_str().unwrap().parse::<u64>().is_ok(), "{c}");
    assert_eq!(c["id"], done["targetId"]);
    assert!(c["creationTimestamp"].is_string());
    // notAfter 2031-01-02T00:00:00Z, rendered in Compute's -07:00 style.
    assert_eq!(c["expireTime"], "2031-01-01T17:00:00.000-07:00");
    assert_eq!(
        c["subjectAlternativeNames"],
        json!(["example.com", "www.example.com"])
    );
    assert_eq!(c["certificate"], pem);
    assert_eq!(c["selfManaged"]["certificate"], pem);
    let text = c.to_string();
    assert!(!text.contains("privateKey"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[tokio::test]
async fn cert_legacy_top_level_fields_and_rsa_2048_are_accepted() {
    let t = T::new().await;
    let (pem, key) = chain_for(&["rsa.example.com"], &rcgen::PKCS_RSA_SHA256);
    t.ok(t
        .post(
            "global/sslCertificates",
            json!({"name": "legacy", "certificate": pem, "privateKey": key}),
        )
        .await)
        .await;
    let (s, c) = t.get("global/sslCertificates/legacy").await;
    assert_eq!(s, 200);
    assert_eq!(c["type"], "SELF_MANAGED");
    assert_eq!(c["subjectAlternativeNames"], json!(["rsa.example.com"]));
    assert!(!c.to_string().contains("PRIVATE KEY"));
}

#[tokio::test]
async fn cert_with_a_key_that_does_not_match_the_leaf_is_invalid() {
    let t = T::new().await;
    let (pem, _) = chain();
    let (_, other_key) = chain();
    let (s, e) = t
        .post("global/sslCertificates", cert_body("bad", &pem, &other_key))
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    assert_eq!(message(&e), "The SSL certificate and key do not match.");
    assert_eq!(t.get("global/sslCertificates/bad").await.0, 404);
}

#[tokio::test]
async fn cert_chain_of_six_is_invalid() {
    let t = T::new().await;
    let (pem, key) = chain();
    let ca = &pem[pem.find("-----END CERTIFICATE-----").unwrap() + 26..];
    let six = format!("{pem}{ca}{ca}{ca}{ca}");
    assert_eq!(six.matches("BEGIN CERTIFICATE").count(), 6);
    let (s, e) = t
        .post("global/sslCertificates", cert_body("long", &six, &key))
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    assert!(message(&e).contains("chain is too long"), "{e}");
    // Five is still fine.
    let five = format!("{pem}{ca}{ca}{ca}");
    t.ok(t
        .post("global/sslCertificates", cert_body("five", &five, &key))
        .await)
        .await;
}

#[tokio::test]
async fn cert_garbage_pem_and_unsupported_key_types_are_invalid() {
    let t = T::new().await;
    let (pem, key) = chain();
    let (s, e) = t
        .post(
            "global/sslCertificates",
            cert_body("g1", "this is not a certificate", &key),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    assert_eq!(message(&e), "The SSL certificate could not be parsed.");

    let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
    let (s, e) = t
        .post("global/sslCertificates", cert_body("g2", broken, &key))
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");

    let (s, e) = t
        .post("global/sslCertificates", cert_body("g3", &pem, "garbage"))
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    assert_eq!(message(&e), "The SSL key could not be parsed.");

    let (p521, p521_key) = chain_for(&["x.example.com"], &rcgen::PKCS_ECDSA_P521_SHA512);
    let (s, e) = t
        .post("global/sslCertificates", cert_body("g4", &p521, &p521_key))
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    assert!(message(&e).contains("not supported"), "{e}");

    let (s, e) = t
        .post(
            "global/sslCertificates",
            json!({"name": "g5", "type": "SELF_MANAGED", "selfManaged": {"certificate": pem}}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "required"), "{e}");
    assert!(
        message(&e).contains("resource.selfManaged.privateKey"),
        "{e}"
    );

    let (s, list) = t.get("global/sslCertificates").await;
    assert_eq!(s, 200);
    assert!(list.get("items").is_none(), "{list}");
}

#[tokio::test]
async fn duplicate_name_is_409_and_bad_names_are_400() {
    let t = T::new().await;
    let (pem, key) = chain();
    make_cert(&t, "dup", &pem, &key).await;
    let (s, e) = t
        .post("global/sslCertificates", cert_body("dup", &pem, &key))
        .await;
    assert_eq!((s, reason(&e)), (409, "alreadyExists"), "{e}");
    assert_eq!(
        message(&e),
        format!("The resource 'projects/{P}/global/sslCertificates/dup' already exists")
    );

    for bad in ["Bad", "-a", "a-", "a_b", &"a".repeat(64)] {
        let (s, e) = t
            .post("global/sslCertificates", cert_body(bad, &pem, &key))
            .await;
        assert_eq!((s, reason(&e)), (400, "invalid"), "{bad}: {e}");
        assert!(message(&e).contains("'resource.name'"), "{e}");
    }
    let (s, e) = t
        .post(
            "global/sslCertificates",
            json!({"selfManaged": {"certificate": pem, "privateKey": key}}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "required"), "{e}");
}

#[tokio::test]
async fn missing_resources_are_404_with_compute_wording() {
    let t = T::new().await;
    for (method, path) in [
        (Method::GET, "global/sslCertificates/nope"),
        (Method::DELETE, "global/sslCertificates/nope"),
    ] {
        let (s, e) = t.call(method, path, None).await;
        assert_eq!((s, reason(&e)), (404, "notFound"), "{e}");
        assert_eq!(
            message(&e),
            format!("The resource 'projects/{P}/global/sslCertificates/nope' was not found")
        );
    }
    let (s, e) = t.get("global/operations/operation-nope").await;
    assert_eq!((s, reason(&e)), (404, "notFound"), "{e}");
    // A reference to a missing resource.
    let (s, e) = t
        .post(
            "global/targetHttpProxies",
            json!({"name": "p", "urlMap": link("global/urlMaps/ghost")}),
        )
        .await;
    assert_eq!((s, reason(&e)), (404, "notFound"), "{e}");
    assert!(message(&e).contains("global/urlMaps/ghost"), "{e}");
}

#[tokio::test]
async fn request_id_replay_returns_the_original_operation_and_creates_once() {
    let t = T::new().await;
    let (pem, key) = chain();
    let rid = "6f1c1b3e-2d4a-4c8e-9f00-0123456789ab";
    let path = format!("global/sslCertificates?requestId={rid}");
    let (s1, op1) = t.post(&path, cert_body("once", &pem, &key)).await;
    assert_eq!(s1, 200, "{op1}");
    t.wait(&op1).await;
    let (s2, op2) = t.post(&path, cert_body("once", &pem, &key)).await;
    assert_eq!(s2, 200, "{op2}");
    assert_eq!(op2["name"], op1["name"]);
    assert_eq!(op2["id"], op1["id"]);
    assert_eq!(op2["clientOperationId"], rid);
    // A different body under the same id still replays, creating nothing.
    let (s3, op3) = t.post(&path, cert_body("other", &pem, &key)).await;
    assert_eq!((s3, &op3["name"]), (200, &op1["name"]));
    let (_, list) = t.get("global/sslCertificates").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(t.get("global/sslCertificates/other").await.0, 404);
    // Without the id, the retry is a plain duplicate.
    let (s, e) = t
        .post("global/sslCertificates", cert_body("once", &pem, &key))
        .await;
    assert_eq!((s, reason(&e)), (409, "alreadyExists"));

    for bad in ["00000000-0000-0000-0000-000000000000", "not-a-uuid"] {
        let (s, e) = t
            .post(
                &format!("global/sslCertificates?requestId={bad}"),
                cert_body("x", &pem, &key),
            )
            .await;
        assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
        assert!(message(&e).contains("requestId"), "{e}");
    }
}

#[tokio::test]
async fn operation_goes_pending_running_done_and_wait_is_bounded() {
    let t = T::with_delay(Duration::from_millis(800)).await;
    let (pem, key) = chain();
    let (s, op) = t
        .post("global/sslCertificates", cert_body("slow", &pem, &key))
        .await;
    assert_eq!(s, 200);
    assert_eq!(op["status"], "PENDING", "{op}");
    assert_eq!(op["progress"], 0);
    assert!(op.get("startTime").is_none() && op.get("endTime").is_none());
    assert!(op["insertTime"].is_string());
    assert_eq!(op["user"].as_str().map(|u| u.contains('@')), Some(true));
    let name = op["name"].as_str().unwrap();
    assert!(name.starts_with("operation-"), "{name}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, mid) = t.get(&format!("global/operations/{name}")).await;
    assert_eq!(s, 200);
    assert_eq!(mid["status"], "RUNNING", "{mid}");
    assert!(mid["startTime"].is_string() && mid.get("endTime").is_none());

    let started = Instant::now();
    let (s, done) = t
        .call(
            Method::POST,
            &format!("global/operations/{name}/wait"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(done["status"], "DONE", "{done}");
    assert_eq!(done["progress"], 100);
    assert!(done["endTime"].is_string());
    assert!(started.elapsed() < Duration::from_millis(1500));

    // An operation that takes longer than the long-poll comes back unfinished.
    t.settings(json!({"operation_delay_ms": 10_000})).await;
    let (_, op) = t.delete("global/sslCertificates/slow").await;
    let started = Instant::now();
    let (s, polled) = t
        .call(
            Method::POST,
            &format!("{}/wait", op["selfLink"].as_str().unwrap()),
            None,
        )
        .await;
    let took = started.elapsed();
    assert_eq!(s, 200);
    assert_ne!(polled["status"], "DONE");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_millis(4000),
        "{took:?}"
    );
}

#[tokio::test]
async fn injected_operation_failure_ends_done_with_error_and_changes_nothing() {
    let t = T::new().await;
    let (pem, key) = chain();
    let r = t
        .http
        .post(format!("{}emulator/faults", t.emu.base_url()))
        .json(
            &json!({"method": "compute.sslCertificates.insert", "kind": "operation",
                      "status": 403, "reason": "quotaExceeded", "count": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (s, op) = t
        .post("global/sslCertificates", cert_body("doomed", &pem, &key))
        .await;
    assert_eq!(s, 200, "{op}");
    let done = t.wait(&op).await;
    assert_eq!(done["status"], "DONE");
    assert_eq!(
        done["error"]["errors"][0]["code"], "QUOTA_EXCEEDED",
        "{done}"
    );
    assert_eq!(done["httpErrorStatusCode"], 403);
    assert_eq!(done["httpErrorMessage"], "FORBIDDEN");
    let (s, e) = t.get("global/sslCertificates/doomed").await;
    assert_eq!((s, reason(&e)), (404, "notFound"));
    // The rule fired once; the retry succeeds.
    make_cert(&t, "doomed", &pem, &key).await;
}

#[tokio::test]
async fn set_ssl_certificates_limits_and_references() {
    let t = T::new().await;
    let (pem, key) = chain();
    make_proxy(&t, &pem, &key).await;
    for i in 2..=16 {
        make_cert(&t, &format!("c{i}"), &pem, &key).await;
    }
    let all: Vec<String> = (1..=16)
        .map(|i| link(&format!("global/sslCertificates/c{i}")))
        .collect();
    let path = "targetHttpsProxies/thp/setSslCertificates";

    let (s, e) = t.post(path, json!({"sslCertificates": all})).await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    assert!(message(&e).contains("15"), "{e}");

    let (s, e) = t.post(path, json!({"sslCertificates": []})).await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");

    let (s, e) = t
        .post(
            path,
            json!({"sslCertificates": [link("global/sslCertificates/ghost")]}),
        )
        .await;
    assert_eq!((s, reason(&e)), (404, "notFound"), "{e}");

    let done = t
        .ok(t.post(path, json!({"sslCertificates": all[..15]})).await)
        .await;
    assert_eq!(done["operationType"], "setSslCertificates");
    let (_, proxy) = t.get("global/targetHttpsProxies/thp").await;
    assert_eq!(proxy["sslCertificates"], json!(all[..15]));
    // The /global/ form of this path does not exist.
    let (s, _) = t
        .post(
            "global/targetHttpsProxies/thp/setSslCertificates",
            json!({"sslCertificates": all[..1]}),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn deleting_a_cert_on_a_proxy_is_resource_in_use() {
    let t = T::new().await;
    let (pem, key) = chain();
    make_proxy(&t, &pem, &key).await;
    let (s, e) = t.delete("global/sslCertificates/c1").await;
    assert_eq!(
        (s, reason(&e)),
        (400, "resourceInUseByAnotherResource"),
        "{e}"
    );
    assert_eq!(
        message(&e),
        format!(
            "The ssl_certificate resource 'projects/{P}/global/sslCertificates/c1' is already being used by 'projects/{P}/global/targetHttpsProxies/thp'"
        )
    );
    // After swapping in another certificate, the old one can go.
    make_cert(&t, "c2", &pem, &key).await;
    t.ok(t
        .post(
            "targetHttpsProxies/thp/setSslCertificates",
            json!({"sslCertificates": [link("global/sslCertificates/c2")]}),
        )
        .await)
        .await;
    t.ok(t.delete("global/sslCertificates/c1").await).await;
}

#[tokio::test]
async fn url_map_patch_and_update_need_a_fresh_fingerprint() {
    let t = T::new().await;
    let (pem, key) = chain();
    make_proxy(&t, &pem, &key).await;
    let (_, um) = t.get("global/urlMaps/um").await;
    let fp = um["fingerprint"].as_str().unwrap().to_string();
    let bs = link("global/backendServices/bs");

    let (s, e) = t
        .call(
            Method::PATCH,
            "global/urlMaps/um",
            Some(json!({"description": "x"})),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "required"), "{e}");
    assert!(message(&e).contains("fingerprint"), "{e}");

    let (s, e) = t
        .call(
            Method::PATCH,
            "global/urlMaps/um",
            Some(json!({"description": "x", "fingerprint": "AAAAAAAAAAA="})),
        )
        .await;
    assert_eq!((s, reason(&e)), (412, "conditionNotMet"), "{e}");
    assert_eq!(message(&e), "Invalid fingerprint.");

    let patch = json!({
        "fingerprint": fp,
        "hostRules": [{"hosts": ["example.com"], "pathMatcher": "pm"}],
        "pathMatchers": [{"name": "pm", "defaultService": bs,
                          "pathRules": [{"paths": ["/api/*"], "service": bs}]}],
    });
    let done = t
        .ok(t
            .call(Method::PATCH, "global/urlMaps/um", Some(patch.clone()))
            .await)
        .await;
    assert_eq!(done["operationType"], "patch");
    let (_, um2) = t.get("global/urlMaps/um").await;
    assert_eq!(um2["hostRules"][0]["pathMatcher"], "pm");
    assert_eq!(um2["pathMatchers"][0]["pathRules"][0]["service"], bs);
    assert_eq!(um2["defaultService"], bs);
    assert_ne!(um2["fingerprint"], fp);

    // The old fingerprint is now stale, for PUT too.
    let (s, e) = t
        .call(
            Method::PUT,
            "global/urlMaps/um",
            Some(json!({"name": "um", "defaultService": bs, "fingerprint": fp})),
        )
        .await;
    assert_eq!((s, reason(&e)), (412, "conditionNotMet"), "{e}");
    let done = t
        .ok(t
            .call(
                Method::PUT,
                "global/urlMaps/um",
                Some(
                    json!({"name": "um", "defaultService": bs, "fingerprint": um2["fingerprint"]}),
                ),
            )
            .await)
        .await;
    assert_eq!(done["operationType"], "update");
    let (_, um3) = t.get("global/urlMaps/um").await;
    assert!(um3.get("hostRules").is_none(), "PUT replaces: {um3}");

    // A host rule pointing at a missing path matcher is invalid.
    let (s, e) = t
        .call(
            Method::PATCH,
            "global/urlMaps/um",
            Some(json!({"fingerprint": um3["fingerprint"],
                        "hostRules": [{"hosts": ["a.com"], "pathMatcher": "nope"}]})),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
}

#[tokio::test]
async fn redirect_only_url_map_needs_no_backend_but_a_map_needs_a_default() {
    let t = T::new().await;
    t.ok(t
        .post(
            "global/urlMaps",
            json!({"name": "redirect", "defaultUrlRedirect": {
                "httpsRedirect": true, "redirectResponseCode": "MOVED_PERMANENTLY_DEFAULT"}}),
        )
        .await)
        .await;
    let (_, m) = t.get("global/urlMaps/redirect").await;
    assert_eq!(m["defaultUrlRedirect"]["httpsRedirect"], true);
    assert!(m.get("defaultService").is_none());
    let (s, e) = t.post("global/urlMaps", json!({"name": "empty"})).await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    let (s, e) = t
        .post(
            "global/urlMaps",
            json!({"name": "r2", "defaultUrlRedirect": {"redirectResponseCode": "BOGUS", "httpsRedirect": true}}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
}

#[tokio::test]
async fn backend_service_patch_fingerprint_and_wholesale_arrays() {
    let t = T::new().await;
    let (pem, key) = chain();
    make_proxy(&t, &pem, &key).await;
    t.ok(t
        .post(
            "regions/us-central1/networkEndpointGroups",
            json!({"name": "neg2", "networkEndpointType": "SERVERLESS", "cloudRun": {"service": "app2"}}),
        )
        .await)
        .await;
    let (_, bs) = t.get("global/backendServices/bs").await;
    assert_eq!(
        bs["usedBy"],
        json!([{"reference": link("global/urlMaps/um")}])
    );
    let neg2 = link("regions/us-central1/networkEndpointGroups/neg2");

    let (s, e) = t
        .call(
            Method::PATCH,
            "global/backendServices/bs",
            Some(json!({"backends": [{"group": neg2}], "fingerprint": "c3RhbGU="})),
        )
        .await;
    assert_eq!((s, reason(&e)), (412, "conditionNotMet"), "{e}");
    let (s, e) = t
        .call(
            Method::PATCH,
            "global/backendServices/bs",
            Some(json!({"backends": [{"group": neg2}]})),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "required"), "{e}");

    t.ok(t
        .call(
            Method::PATCH,
            "global/backendServices/bs",
            Some(
                json!({"backends": [{"group": neg2}], "fingerprint": bs["fingerprint"],
                        "description": "patched"}),
            ),
        )
        .await)
        .await;
    let (_, bs2) = t.get("global/backendServices/bs").await;
    let backends = bs2["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1, "arrays are replaced: {bs2}");
    assert_eq!(backends[0]["group"], neg2);
    assert_eq!(
        bs2["loadBalancingScheme"], "EXTERNAL_MANAGED",
        "merge keeps the rest"
    );
    assert_eq!(bs2["description"], "patched");
    // The first NEG is free now.
    t.ok(t
        .delete("regions/us-central1/networkEndpointGroups/neg")
        .await)
        .await;
}

#[tokio::test]
async fn backend_service_validation() {
    let t = T::new().await;
    let (s, e) = t
        .post(
            "global/backendServices",
            json!({"name": "b1", "loadBalancingScheme": "SIDEWAYS"}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    assert!(message(&e).contains("loadBalancingScheme"), "{e}");
    let (s, e) = t
        .post(
            "global/backendServices",
            json!({"name": "b2", "backends": [{"group": link("regions/us-central1/networkEndpointGroups/ghost")}]}),
        )
        .await;
    assert_eq!((s, reason(&e)), (404, "notFound"), "{e}");
    let (s, e) = t
        .post(
            "global/backendServices",
            json!({"name": "b3", "backends": [{"group": "regions/us-central1/networkEndpointGroups/ghost"}]}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "partial URL: {e}");
    let (s, e) = t
        .post(
            "global/backendServices",
            json!({"name": "b4", "backends": [{}]}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "required"), "{e}");
}

#[tokio::test]
async fn iap_client_secret_is_write_only_and_read_back_as_sha256() {
    let t = T::new().await;
    t.ok(t
        .post(
            "global/backendServices",
            json!({"name": "bs", "loadBalancingScheme": "EXTERNAL_MANAGED",
                   "iap": {"enabled": true, "oauth2ClientId": "cid", "oauth2ClientSecret": "s3cret-value"}}),
        )
        .await)
        .await;
    let (s, bs) = t.get("global/backendServices/bs").await;
    assert_eq!(s, 200);
    assert!(!bs.to_string().contains("s3cret-value"), "{bs}");
    assert!(bs["iap"].get("oauth2ClientSecret").is_none());
    assert_eq!(
        bs["iap"]["oauth2ClientSecretSha256"],
        "bf496b76b91b82820ee599d4f83ba3d87b0c9365666694241916c40843d2a524"
    );
    assert_eq!(bs["iap"]["enabled"], true);
    assert_eq!(bs["iap"]["oauth2ClientId"], "cid");
    // A patch that leaves the secret alone keeps its hash.
    t.ok(t
        .call(
            Method::PATCH,
            "global/backendServices/bs",
            Some(json!({"iap": {"enabled": false}, "fingerprint": bs["fingerprint"]})),
        )
        .await)
        .await;
    let (_, bs2) = t.get("global/backendServices/bs").await;
    assert_eq!(bs2["iap"]["enabled"], false);
    assert_eq!(
        bs2["iap"]["oauth2ClientSecretSha256"],
        bs["iap"]["oauth2ClientSecretSha256"]
    );
}

#[tokio::test]
async fn ssl_certificate_quota_is_reported_and_enforced() {
    let t = T::new().await;
    t.emu
        .shared()
        .world()
        .project(P)
        .unwrap()
        .compute
        .quota_limits
        .insert("SSL_CERTIFICATES".into(), 2.0);
    let (pem, key) = chain();
    make_cert(&t, "q1", &pem, &key).await;
    make_cert(&t, "q2", &pem, &key).await;
    let (s, proj) = t.get("").await;
    assert_eq!(s, 200, "{proj}");
    assert_eq!(proj["kind"], "compute#project");
    assert_eq!(proj["name"], P);
    let quota = |m: &str| {
        proj["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["metric"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("no {m}"))
    };
    assert_eq!(quota("SSL_CERTIFICATES")["limit"], 2.0);
    assert_eq!(quota("SSL_CERTIFICATES")["usage"], 2.0);
    for m in [
        "TARGET_HTTPS_PROXIES",
        "URL_MAPS",
        "BACKEND_SERVICES",
        "STATIC_ADDRESSES",
        "FORWARDING_RULES",
    ] {
        assert_eq!(quota(m)["usage"], 0.0);
    }
    let (s, e) = t
        .post("global/sslCertificates", cert_body("q3", &pem, &key))
        .await;
    assert_eq!((s, reason(&e)), (403, "quotaExceeded"), "{e}");
    assert!(message(&e).contains("SSL_CERTIFICATES"), "{e}");
    // Deleting one frees a slot.
    t.ok(t.delete("global/sslCertificates/q1").await).await;
    make_cert(&t, "q3", &pem, &key).await;
}

#[tokio::test]
async fn full_load_balancer_graph_up_and_down() {
    let t = T::new().await;
    let (pem, key) = chain();
    let region = "regions/us-central1";

    let done = t
        .ok(t
            .post(
                &format!("{region}/networkEndpointGroups"),
                json!({"name": "neg", "networkEndpointType": "SERVERLESS", "cloudRun": {"service": "app"}}),
            )
            .await)
        .await;
    assert_eq!(done["region"], link(region));
    assert!(
        done["selfLink"]
            .as_str()
            .unwrap()
            .starts_with(&link(&format!("{region}/operations/")))
    );
    let (s, e) = t
        .get(&format!(
            "global/operations/{}",
            done["name"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (s, reason(&e)),
        (404, "notFound"),
        "regional op is not global"
    );
    let (_, neg) = t.get(&format!("{region}/networkEndpointGroups/neg")).await;
    assert_eq!(neg["cloudRun"]["service"], "app");
    assert_eq!(neg["region"], link(region));

    t.ok(t
        .post(
            "global/backendServices",
            json!({"name": "bs", "loadBalancingScheme": "EXTERNAL_MANAGED", "protocol": "HTTPS",
                   "backends": [{"group": link(&format!("{region}/networkEndpointGroups/neg"))}],
                   "iap": {"enabled": true, "oauth2ClientId": "id", "oauth2ClientSecret": "sec"}}),
        )
        .await)
        .await;
    t.ok(t
        .post(
            "global/urlMaps",
            json!({"name": "um", "defaultService": link("global/backendServices/bs")}),
        )
        .await)
        .await;
    make_cert(&t, "cert", &pem, &key).await;
    t.ok(t
        .post(
            "global/targetHttpsProxies",
            json!({"name": "thp", "urlMap": link("global/urlMaps/um"),
                   "sslCertificates": [link("global/sslCertificates/cert")]}),
        )
        .await)
        .await;
    t.ok(t
        .post(
            "global/addresses",
            json!({"name": "ip", "addressType": "EXTERNAL", "ipVersion": "IPV4"}),
        )
        .await)
        .await;
    let (_, addr) = t.get("global/addresses/ip").await;
    assert_eq!(addr["status"], "RESERVED");
    let ip = addr["address"].as_str().unwrap().to_string();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{addr}");

    t.ok(t
        .post(
            "global/forwardingRules",
            json!({"name": "fr", "IPAddress": link("global/addresses/ip"), "IPProtocol": "TCP",
                   "portRange": "443", "target": link("global/targetHttpsProxies/thp"),
                   "loadBalancingScheme": "EXTERNAL_MANAGED", "networkTier": "PREMIUM"}),
        )
        .await)
        .await;
    let (_, fr) = t.get("global/forwardingRules/fr").await;
    assert_eq!(fr["IPAddress"], ip);
    assert_eq!(fr["portRange"], "443-443");
    let (_, addr) = t.get("global/addresses/ip").await;
    assert_eq!(addr["status"], "IN_USE");
    assert_eq!(addr["users"], json!([link("global/forwardingRules/fr")]));

    // HTTP -> HTTPS redirect on the same IP, port 80, by literal address.
    t.ok(t
        .post(
            "global/urlMaps",
            json!({"name": "redirect", "defaultUrlRedirect": {"httpsRedirect": true}}),
        )
        .await)
        .await;
    t.ok(t
        .post(
            "global/targetHttpProxies",
            json!({"name": "http", "urlMap": link("global/urlMaps/redirect")}),
        )
        .await)
        .await;
    t.ok(t
        .post(
            "global/forwardingRules",
            json!({"name": "fr-http", "IPAddress": ip, "portRange": "80",
                   "target": link("global/targetHttpProxies/http"),
                   "loadBalancingScheme": "EXTERNAL_MANAGED"}),
        )
        .await)
        .await;
    // Same IP and port again is a conflict; a scheme that differs from the backend's is invalid.
    let (s, e) = t
        .post(
            "global/forwardingRules",
            json!({"name": "fr-dup", "IPAddress": ip, "portRange": "443",
                   "target": link("global/targetHttpsProxies/thp"), "loadBalancingScheme": "EXTERNAL_MANAGED"}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    let (s, e) = t
        .post(
            "global/forwardingRules",
            json!({"name": "fr-classic", "portRange": "443",
                   "target": link("global/targetHttpsProxies/thp"), "loadBalancingScheme": "EXTERNAL"}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");

    // Everything in use refuses to go, each naming its user.
    for (path, user) in [
        ("global/addresses/ip", "global/forwardingRules/fr"),
        ("global/targetHttpsProxies/thp", "global/forwardingRules/fr"),
        ("global/urlMaps/um", "global/targetHttpsProxies/thp"),
        ("global/backendServices/bs", "global/urlMaps/um"),
        (
            "regions/us-central1/networkEndpointGroups/neg",
            "global/backendServices/bs",
        ),
    ] {
        let (s, e) = t.delete(path).await;
        assert_eq!(
            (s, reason(&e)),
            (400, "resourceInUseByAnotherResource"),
            "{path}: {e}"
        );
        assert!(
            message(&e).ends_with(&format!("is already being used by 'projects/{P}/{user}'")),
            "{e}"
        );
    }

    // Teardown in reverse order.
    for path in [
        "global/forwardingRules/fr-http",
        "global/forwardingRules/fr",
        "global/targetHttpProxies/http",
        "global/targetHttpsProxies/thp",
        "global/sslCertificates/cert",
        "global/urlMaps/redirect",
        "global/urlMaps/um",
        "global/backendServices/bs",
        "regions/us-central1/networkEndpointGroups/neg",
        "global/addresses/ip",
    ] {
        let done = t.ok(t.delete(path).await).await;
        assert_eq!(done["operationType"], "delete");
        assert_eq!(t.get(path).await.0, 404, "{path}");
    }
    for coll in [
        "global/forwardingRules",
        "global/targetHttpsProxies",
        "global/sslCertificates",
        "global/urlMaps",
        "global/backendServices",
        "global/addresses",
        "regions/us-central1/networkEndpointGroups",
    ] {
        let (s, list) = t.get(coll).await;
        assert_eq!(s, 200);
        assert!(list.get("items").is_none(), "{coll}: {list}");
        assert_eq!(list["selfLink"], link(coll));
    }
}

#[tokio::test]
async fn neg_and_address_validation() {
    let t = T::new().await;
    let (s, e) = t
        .post(
            "regions/us-central1/networkEndpointGroups",
            json!({"name": "n1", "networkEndpointType": "SERVERLESS"}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    let (s, e) = t
        .post(
            "regions/us-central1/networkEndpointGroups",
            json!({"name": "n2", "networkEndpointType": "WORMHOLE", "cloudRun": {"service": "a"}}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    assert!(message(&e).contains("networkEndpointType"), "{e}");
    let (s, e) = t
        .post(
            "regions/not_a_region/networkEndpointGroups",
            json!({"name": "n3", "networkEndpointType": "SERVERLESS", "cloudRun": {"service": "a"}}),
        )
        .await;
    assert_eq!((s, reason(&e)), (404, "notFound"), "{e}");
    let (s, e) = t
        .post(
            "global/addresses",
            json!({"name": "a1", "ipVersion": "IPV7"}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    let (s, e) = t
        .post(
            "global/addresses",
            json!({"name": "a2", "networkTier": "STANDARD"}),
        )
        .await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
    t.ok(t.post("global/addresses", json!({"name": "a3"})).await)
        .await;
    t.ok(t.post("global/addresses", json!({"name": "a4"})).await)
        .await;
    let (_, a3) = t.get("global/addresses/a3").await;
    let (_, a4) = t.get("global/addresses/a4").await;
    assert_ne!(a3["address"], a4["address"]);
}

#[tokio::test]
async fn list_filters_and_paging() {
    let t = T::new().await;
    let (pem, key) = chain();
    for n in ["site-a", "site-b", "other"] {
        make_cert(&t, n, &pem, &key).await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let q = |f: &str| format!("global/sslCertificates?filter={}", urlencode(f));
    let (s, v) = t.get(&q("name eq site-.*")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(names(&v), ["site-a", "site-b"]);
    assert_eq!(v["kind"], "compute#sslCertificateList");
    assert_eq!(v["id"], format!("projects/{P}/global/sslCertificates"));
    // Full match: a prefix alone does not match.
    let (_, v) = t.get(&q("name eq site")).await;
    assert!(v.get("items").is_none(), "{v}");
    let (_, v) = t.get(&q("name ne site-.*")).await;
    assert_eq!(names(&v), ["other"]);
    let (_, v) = t.get(&q("name = \"site-b\"")).await;
    assert_eq!(names(&v), ["site-b"]);
    let (_, v) = t.get(&q("name != \"site-b\" AND name != other")).await;
    assert_eq!(names(&v), ["site-a"]);
    for bad in ["name eq site-.* AND name = \"x\"", "name =", "name ~ x"] {
        let (s, e) = t.get(&q(bad)).await;
        assert_eq!((s, reason(&e)), (400, "invalid"), "{bad}: {e}");
    }

    let (_, p1) = t.get("global/sslCertificates?maxResults=2").await;
    assert_eq!(names(&p1), ["other", "site-a"]);
    let token = p1["nextPageToken"].as_str().unwrap();
    let (_, p2) = t
        .get(&format!(
            "global/sslCertificates?maxResults=2&pageToken={token}"
        ))
        .await;
    assert_eq!(names(&p2), ["site-b"]);
    assert!(p2.get("nextPageToken").is_none());
    let (s, e) = t.get("global/sslCertificates?maxResults=501").await;
    assert_eq!((s, reason(&e)), (400, "invalid"), "{e}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn proxies_set_url_map_list_and_patch_with_fingerprint() {
    let t = T::new().await;
    let (pem, key) = chain();
    make_proxy(&t, &pem, &key).await;
    t.ok(t
        .post(
            "global/urlMaps",
            json!({"name": "redirect", "defaultUrlRedirect": {"httpsRedirect": true}}),
        )
        .await)
        .await;
    t.ok(t
        .post(
            "global/targetHttpProxies",
            json!({"name": "http", "urlMap": link("global/urlMaps/um")}),
        )
        .await)
        .await;
    let done = t
        .ok(t
            .post(
                "targetHttpProxies/http/setUrlMap",
                json!({"urlMap": link("global/urlMaps/redirect")}),
            )
            .await)
        .await;
    assert_eq!(done["operationType"], "setUrlMap");
    let (_, http) = t.get("global/targetHttpProxies/http").await;
    assert_eq!(http["urlMap"], link("global/urlMaps/redirect"));
    let (s, e) = t
        .post(
            "targetHttpProxies/http/setUrlMap",
            json!({"urlMap": link("global/urlMaps/ghost")}),
        )
        .await;
    assert_eq!((s, reason(&e)), (404, "notFound"), "{e}");
    let (_, list) = t.get("global/targetHttpProxies").await;
    assert_eq!(list["kind"], "compute#targetHttpProxyList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // HTTPS proxy: setUrlMap needs no fingerprint, PATCH does.
    t.ok(t
        .post(
            "targetHttpsProxies/thp/setUrlMap",
            json!({"urlMap": link("global/urlMaps/redirect")}),
        )
        .await)
        .await;
    let (_, thp) = t.get("global/targetHttpsProxies/thp").await;
    assert_eq!(thp["urlMap"], link("global/urlMaps/redirect"));
    assert_eq!(thp["quicOverride"], "NONE");
    let (s, e) = t
        .call(
            Method::PATCH,
            "global/targetHttpsProxies/thp",
            Some(json!({"quicOverride": "ENABLE", "fingerprint": "c3RhbGU="})),
        )
        .await;
    assert_eq!((s, reason(&e)), (412, "conditionNotMet"), "{e}");
    t.ok(t
        .call(
            Method::PATCH,
            "global/targetHttpsProxies/thp",
            Some(json!({"quicOverride": "ENABLE", "fingerprint": thp["fingerprint"]})),
        )
        .await)
        .await;
    let (_, thp2) = t.get("global/targetHttpsProxies/thp").await;
    assert_eq!(thp2["quicOverride"], "ENABLE");
    assert_eq!(thp2["sslCertificates"], thp["sslCertificates"]);
    // The URL map the proxies left is free to go.
    t.ok(t.delete("global/urlMaps/um").await).await;
}
