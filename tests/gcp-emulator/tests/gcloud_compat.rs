//! What the real Google Cloud CLI (`gcloud`) does differently from our own client,
//! each found by running gcloud against the emulator (see
//! `conformance/gcloud_test.py`) and pinned here as a regression test.

use std::time::Duration;

use gcp_emulator::{Config, Emulator};
use reqwest::Method;
use serde_json::{Value, json};

const P: &str = "demo-project";
const N: u64 = 123_456_789_012;
const LINK: &str = "https://www.googleapis.com/compute/v1/";

struct T {
    emu: Emulator,
    http: reqwest::Client,
}

impl T {
    async fn new() -> T {
        let config = Config {
            operation_delay: Duration::from_millis(10),
            ..Config::default()
        };
        T {
            emu: Emulator::start(config).await.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    /// `compute/...` paths are under the project; anything else is taken as is.
    fn url(&self, path: &str) -> String {
        match path.strip_prefix("compute:") {
            Some(rest) => format!("{}compute/v1/projects/{P}/{rest}", self.emu.base_url()),
            None => format!("{}{path}", self.emu.base_url()),
        }
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        host: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, None).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    /// Asserts a Compute call started an operation, and waits for it to end well.
    async fn ok(&self, (status, op): (u16, Value)) {
        assert_eq!(status, 200, "{op}");
        let link = op["selfLink"].as_str().unwrap();
        let rest = link.strip_prefix(LINK).unwrap();
        for _ in 0..50 {
            let (s, v) = self
                .call(
                    Method::POST,
                    &format!("compute/v1/{rest}/wait"),
                    Some(json!({})),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            if v["status"] == "DONE" {
                assert!(v.get("error").is_none(), "{v}");
                return;
            }
        }
        panic!("operation never finished: {op}");
    }

    /// NEG (europe-west1) -> backend service -> URL map, all with canonical links.
    async fn lb(&self) {
        self.ok(self
            .call(
                Method::POST,
                "compute:regions/europe-west1/networkEndpointGroups",
                Some(json!({"name": "neg", "networkEndpointType": "SERVERLESS",
                            "cloudRun": {"service": "app"}})),
            )
            .await)
            .await;
        self.ok(self
            .call(
                Method::POST,
                "compute:global/backendServices",
                Some(json!({"name": "bs", "loadBalancingScheme": "EXTERNAL",
                    "backends": [{"group": format!("{LINK}projects/{P}/regions/europe-west1/networkEndpointGroups/neg")}]})),
            )
            .await)
            .await;
        self.ok(self
            .call(
                Method::POST,
                "compute:global/urlMaps",
                Some(json!({"name": "um",
                    "defaultService": format!("{LINK}projects/{P}/global/backendServices/bs")})),
            )
            .await)
            .await;
    }
}

fn reason(v: &Value) -> &str {
    v["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

/// Standard base64 -> URL-safe, unpadded: what gcloud (apitools) sends back.
fn url_safe(s: &str) -> String {
    s.trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// gcloud echoes a fingerprint URL-safe encoded; Google decodes bytes fields in
/// either alphabet, so the same bytes are the same fingerprint. Different bytes
/// still fail with 412.
#[tokio::test]
async fn fingerprints_are_compared_as_bytes_in_either_base64_alphabet() {
    let t = T::new().await;
    t.lb().await;
    let mut saw_url_safe_only_chars = false;
    // Patch until a fingerprint holds `+` or `/` (about a third do), each time
    // sending it back in the URL-safe alphabet without padding.
    for i in 0..40 {
        let (_, bs) = t.get("compute:global/backendServices/bs").await;
        let fp = bs["fingerprint"].as_str().unwrap().to_string();
        let sent = url_safe(&fp);
        assert_ne!(sent, fp, "the padding alone differs");
        saw_url_safe_only_chars |= fp.contains(['+', '/']);
        t.ok(t
            .call(
                Method::PATCH,
                "compute:global/backendServices/bs",
                Some(json!({"description": format!("round {i}"), "fingerprint": sent})),
            )
            .await)
            .await;
        if saw_url_safe_only_chars {
            break;
        }
    }
    assert!(saw_url_safe_only_chars, "no fingerprint with + or / in 40");

    // Not the same bytes: refused, in either alphabet.
    let (_, bs) = t.get("compute:global/backendServices/bs").await;
    let fp = bs["fingerprint"].as_str().unwrap();
    let mut other = url_safe(fp).into_bytes();
    other[0] = if other[0] == b'A' { b'B' } else { b'A' };
    let other = String::from_utf8(other).unwrap();
    for bad in [other.as_str(), "not base64!", "AAAAAAAAAAA="] {
        let (s, e) = t
            .call(
                Method::PATCH,
                "compute:global/backendServices/bs",
                Some(json!({"description": "x", "fingerprint": bad})),
            )
            .await;
        assert_eq!((s, reason(&e)), (412, "conditionNotMet"), "{bad}: {e}");
    }
    // URL maps go through PUT as well as PATCH.
    let (_, um) = t.get("compute:global/urlMaps/um").await;
    let fp = url_safe(um["fingerprint"].as_str().unwrap());
    t.ok(t
        .call(
            Method::PUT,
            "compute:global/urlMaps/um",
            Some(json!({"name": "um", "fingerprint": fp,
                "defaultService": format!("{LINK}projects/{P}/global/backendServices/bs")})),
        )
        .await)
        .await;
}

/// An IAM policy's etag is a bytes field too: IAP's `setIamPolicy` takes it back
/// URL-safe and unpadded.
#[tokio::test]
async fn iap_policy_etags_are_compared_as_bytes() {
    let t = T::new().await;
    t.lb().await;
    let (_, bs) = t.get("compute:global/backendServices/bs").await;
    let id = bs["id"].as_str().unwrap();
    let res = format!("v1/projects/{N}/iap_web/compute/services/{id}");
    let mut etag = String::new();
    for i in 0..6 {
        let (s, pol) = t
            .call(
                Method::POST,
                &format!("{res}:getIamPolicy"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 200, "{pol}");
        etag = pol["etag"].as_str().unwrap().to_string();
        let (s, v) = t
            .call(
                Method::POST,
                &format!("{res}:setIamPolicy"),
                Some(json!({"policy": {"etag": url_safe(&etag), "bindings": [{
                    "role": "roles/iap.httpsResourceAccessor",
                    "members": [format!("user:u{i}@example.com")]}]}})),
            )
            .await;
        assert_eq!(s, 200, "round {i}: {v}");
        assert_ne!(v["etag"], json!(etag));
    }
    // The etag before the last set is stale, in either alphabet.
    let (s, v) = t
        .call(
            Method::POST,
            &format!("{res}:setIamPolicy"),
            Some(json!({"policy": {"etag": url_safe(&etag), "bindings": []}})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["status"], "ABORTED", "{v}");
}

/// gcloud writes references on the endpoint it was pointed at
/// (`http://127.0.0.1:PORT/compute/v1/projects/...`). Google accepts references
/// on its own hosts; the emulator's own host is its own. The stored reference is
/// canonical, and any other host is still malformed.
#[tokio::test]
async fn references_on_the_emulators_own_host_are_accepted_and_canonicalised() {
    let t = T::new().await;
    t.lb().await;
    let own = format!("{}compute/v1/projects/{P}", t.emu.base_url());
    t.ok(t
        .call(
            Method::POST,
            "compute:global/urlMaps",
            Some(json!({"name": "um2", "defaultService": format!("{own}/global/backendServices/bs")})),
        )
        .await)
        .await;
    let (_, um) = t.get("compute:global/urlMaps/um2").await;
    assert_eq!(
        um["defaultService"],
        format!("{LINK}projects/{P}/global/backendServices/bs")
    );
    // A backend group must be a full URL; the own host's is one.
    let (_, bs) = t.get("compute:global/backendServices/bs").await;
    t.ok(t
        .call(
            Method::PATCH,
            "compute:global/backendServices/bs",
            Some(json!({"fingerprint": bs["fingerprint"], "backends": [
                {"group": format!("{own}/regions/europe-west1/networkEndpointGroups/neg")}]})),
        )
        .await)
        .await;
    let (_, bs) = t.get("compute:global/backendServices/bs").await;
    assert_eq!(
        bs["backends"][0]["group"],
        format!("{LINK}projects/{P}/regions/europe-west1/networkEndpointGroups/neg")
    );

    // Reached under another name (as through a proxy), that name is the own host.
    t.ok(t
        .call_with(
            Method::POST,
            "compute:global/urlMaps",
            Some(json!({"name": "um3",
                "defaultService": format!("http://emulator.test:80/compute/v1/projects/{P}/global/backendServices/bs")})),
            Some("emulator.test:80"),
        )
        .await)
        .await;

    // Anybody else's host is not Google's.
    for foreign in [
        format!("http://example.com/compute/v1/projects/{P}/global/backendServices/bs"),
        format!(
            "{}compute/v2/projects/{P}/global/backendServices/bs",
            t.emu.base_url()
        ),
    ] {
        let (s, e) = t
            .call(
                Method::POST,
                "compute:global/urlMaps",
                Some(json!({"name": "bad", "defaultService": foreign})),
            )
            .await;
        assert_eq!((s, reason(&e)), (400, "invalid"), "{foreign}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("The URL is malformed."),
            "{e}"
        );
    }
}

/// `aggregatedList` (what `gcloud compute X list` calls without a scope flag):
/// every scope's resources grouped by scope, filtered and paged like `list`.
#[tokio::test]
async fn aggregated_lists_group_every_scope() {
    let t = T::new().await;
    t.lb().await;
    t.ok(t
        .call(
            Method::POST,
            "compute:regions/us-central1/networkEndpointGroups",
            Some(json!({"name": "neg2", "networkEndpointType": "SERVERLESS",
                        "cloudRun": {"service": "other"}})),
        )
        .await)
        .await;
    t.ok(t
        .call(
            Method::POST,
            "compute:global/addresses",
            Some(json!({"name": "ip"})),
        )
        .await)
        .await;

    let (s, v) = t.get("compute:aggregated/backendServices").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "compute#backendServiceAggregatedList");
    assert_eq!(v["id"], format!("projects/{P}/aggregated/backendServices"));
    assert_eq!(v["items"]["global"]["backendServices"][0]["name"], "bs");
    assert!(
        v["items"]["global"]["backendServices"][0]
            .get("__scope")
            .is_none()
    );

    let (_, v) = t.get("compute:aggregated/networkEndpointGroups").await;
    assert_eq!(v["kind"], "compute#networkEndpointGroupAggregatedList");
    assert_eq!(
        v["items"]["regions/europe-west1"]["networkEndpointGroups"][0]["name"],
        "neg"
    );
    assert_eq!(
        v["items"]["regions/us-central1"]["networkEndpointGroups"][0]["name"],
        "neg2"
    );

    let (_, v) = t.get("compute:aggregated/addresses").await;
    assert_eq!(v["kind"], "compute#addressAggregatedList");
    assert_eq!(v["items"]["global"]["addresses"][0]["name"], "ip");

    let (_, v) = t.get("compute:aggregated/urlMaps").await;
    assert_eq!(v["kind"], "compute#urlMapsAggregatedList");
    assert_eq!(v["items"]["global"]["urlMaps"][0]["name"], "um");

    // Filter and paging run over all scopes at once.
    let (_, v) = t
        .get("compute:aggregated/networkEndpointGroups?filter=name%20eq%20neg2")
        .await;
    let scopes: Vec<&String> = v["items"].as_object().unwrap().keys().collect();
    assert_eq!(scopes, ["regions/us-central1"], "{v}");
    let (_, p1) = t
        .get("compute:aggregated/networkEndpointGroups?maxResults=1")
        .await;
    let token = p1["nextPageToken"].as_str().unwrap();
    let (_, p2) = t
        .get(&format!(
            "compute:aggregated/networkEndpointGroups?maxResults=1&pageToken={token}"
        ))
        .await;
    assert!(p2.get("nextPageToken").is_none(), "{p2}");
    assert_eq!(p1["items"].as_object().unwrap().len(), 1);
    assert_eq!(p2["items"].as_object().unwrap().len(), 1);

    // Nothing at all: a warning in place of items, as Google answers.
    let (_, v) = t.get("compute:aggregated/forwardingRules").await;
    assert_eq!(v["kind"], "compute#forwardingRuleAggregatedList");
    assert_eq!(
        v["items"]["global"]["warning"]["code"],
        "NO_RESULTS_ON_PAGE"
    );

    // Only collections the emulator has; only GET.
    let (s, _) = t.get("compute:aggregated/instances").await;
    assert_eq!(s, 404);
    let (s, _) = t
        .call(
            Method::POST,
            "compute:aggregated/backendServices",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404);

    // The request log names Google's method.
    let (_, log) = t.get("emulator/requests").await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "compute.backendServices.aggregatedList"),
        "{log}"
    );
}
