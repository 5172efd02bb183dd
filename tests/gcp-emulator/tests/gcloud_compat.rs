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

    // Operations (`gcloud compute operations list`): global and regional.
    let (_, v) = t.get("compute:aggregated/operations").await;
    assert_eq!(v["kind"], "compute#operationAggregatedList");
    let global = v["items"]["global"]["operations"].as_array().unwrap();
    assert!(
        global.iter().any(|o| o["operationType"] == "insert"
            && o["targetLink"]
                .as_str()
                .unwrap()
                .ends_with("/global/backendServices/bs")),
        "{v}"
    );
    let regional = v["items"]["regions/us-central1"]["operations"]
        .as_array()
        .unwrap();
    assert_eq!(regional.len(), 1, "{v}");

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

async fn run_service(t: &T, region: &str, id: &str) {
    let (s, op) = t
        .call(
            Method::POST,
            &format!("v2/projects/{P}/locations/{region}/services?serviceId={id}"),
            Some(json!({"ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
                        "labels": {"team": "web"},
                        "template": {"containers": [{"image": "gcr.io/x/app"}]}})),
        )
        .await;
    assert_eq!(s, 200, "{op}");
    let name = op["name"].as_str().unwrap();
    let (s, done) = t
        .call(
            Method::POST,
            &format!("v2/{name}:wait"),
            Some(json!({"timeout": "5s"})),
        )
        .await;
    assert_eq!((s, &done["done"]), (200, &json!(true)), "{done}");
}

/// Cloud Run v1 (what gcloud speaks): Knative objects on regional hosts, the
/// `projects/.../locations/-` list, replaceService, IAM at v1 paths; one service
/// seen through v1 and v2 alike.
#[tokio::test]
async fn cloud_run_v1_serves_what_gcloud_uses() {
    let t = T::new().await;
    run_service(&t, "europe-west1", "app").await;
    run_service(&t, "us-central1", "other").await;
    let regional = Some("europe-west1-run.googleapis.com");
    let knative = format!("apis/serving.knative.dev/v1/namespaces/{P}/services/app");

    let (s, v) = t.call_with(Method::GET, &knative, None, regional).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["apiVersion"], "serving.knative.dev/v1");
    assert_eq!(v["kind"], "Service");
    assert_eq!(v["metadata"]["name"], "app");
    assert_eq!(v["metadata"]["namespace"], N.to_string());
    assert_eq!(v["metadata"]["generation"], 1);
    assert_eq!(
        v["metadata"]["labels"],
        json!({"team": "web", "cloud.googleapis.com/location": "europe-west1"})
    );
    assert_eq!(
        v["metadata"]["annotations"]["run.googleapis.com/ingress"],
        "internal-and-cloud-load-balancing"
    );
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["image"],
        "gcr.io/x/app"
    );
    assert_eq!(v["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(v["status"]["conditions"][0]["status"], "True");
    assert_eq!(v["status"]["observedGeneration"], 1);

    // Another region's host does not see it.
    let (s, e) = t
        .call_with(
            Method::GET,
            &knative,
            None,
            Some("us-central1-run.googleapis.com"),
        )
        .await;
    assert_eq!(
        (s, e["error"]["status"].as_str()),
        (404, Some("NOT_FOUND")),
        "{e}"
    );
    // The global host serves no Knative paths.
    let (s, e) = t.call(Method::GET, &knative, None).await;
    assert_eq!(s, 400, "{e}");

    // replaceService: the whole object back with the ingress annotation changed.
    let mut changed = v.clone();
    changed["metadata"]["annotations"]["run.googleapis.com/ingress"] = json!("all");
    let (s, r) = t
        .call_with(Method::PUT, &knative, Some(changed), regional)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["metadata"]["generation"], 2);
    assert_eq!(r["status"]["conditions"][0]["status"], "Unknown", "{r}");
    let (_, v2) = t
        .get(&format!(
            "v2/projects/{P}/locations/europe-west1/services/app"
        ))
        .await;
    assert_eq!(v2["ingress"], "INGRESS_TRAFFIC_ALL");
    assert_eq!(v2["labels"], json!({"team": "web"}));
    assert_eq!(v2["template"]["containers"][0]["image"], "gcr.io/x/app");
    // It settles to Ready at the new generation.
    let mut settled = Value::Null;
    for _ in 0..100 {
        let (_, v) = t.call_with(Method::GET, &knative, None, regional).await;
        if v["status"]["conditions"][0]["status"] == "True" {
            settled = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(settled["status"]["observedGeneration"], 2, "{settled}");

    // The ingress is the service's: no new revision. A new image is a new
    // template: a new revision, ready once the service settles.
    assert_eq!(
        settled["status"]["latestCreatedRevisionName"],
        v["status"]["latestCreatedRevisionName"]
    );
    let mut image = settled.clone();
    image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("gcr.io/x/app:v2");
    image["spec"]["template"]["metadata"]["labels"] = json!({"release": "v2"});
    let (s, r) = t
        .call_with(Method::PUT, &knative, Some(image), regional)
        .await;
    assert_eq!(s, 200, "{r}");
    let created = r["status"]["latestCreatedRevisionName"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(created.starts_with("app-00002-"), "{r}");
    assert_ne!(r["status"]["latestReadyRevisionName"], json!(created));
    assert_eq!(
        r["spec"]["template"]["metadata"]["labels"],
        json!({"release": "v2"})
    );
    let mut settled = Value::Null;
    for _ in 0..100 {
        let (_, v) = t.call_with(Method::GET, &knative, None, regional).await;
        if v["status"]["conditions"][0]["status"] == "True" {
            settled = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        settled["status"]["latestReadyRevisionName"],
        json!(created),
        "{settled}"
    );

    let mut bad = settled.clone();
    bad["metadata"]["annotations"]["run.googleapis.com/ingress"] = json!("everyone");
    let (s, e) = t
        .call_with(Method::PUT, &knative, Some(bad), regional)
        .await;
    assert_eq!(s, 400, "{e}");

    // The list across locations (`-`) and a region's list.
    let (s, l) = t
        .get(&format!("v1/projects/{P}/locations/-/services"))
        .await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["kind"], "ServiceList");
    let names: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "other"]);
    let (_, l) = t
        .get(&format!("v1/projects/{P}/locations/us-central1/services"))
        .await;
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    let (s, g) = t
        .get(&format!(
            "v1/projects/{P}/locations/europe-west1/services/app"
        ))
        .await;
    assert_eq!((s, &g["metadata"]["name"]), (200, &json!("app")), "{g}");

    // IAM at the v1 names.
    let iam = format!("v1/projects/{P}/locations/europe-west1/services/app");
    let (s, pol) = t.get(&format!("{iam}:getIamPolicy")).await;
    assert_eq!(s, 200, "{pol}");
    let (s, pol) = t
        .call(
            Method::POST,
            &format!("{iam}:setIamPolicy"),
            Some(json!({"policy": {"etag": pol["etag"], "bindings": [
                {"role": "roles/run.invoker", "members": ["user:a@example.com"]}]}})),
        )
        .await;
    assert_eq!(s, 200, "{pol}");
    assert_eq!(pol["bindings"][0]["role"], "roles/run.invoker");

    // Delete answers a Status; the service is gone from both views.
    let (s, st) = t.call_with(Method::DELETE, &knative, None, regional).await;
    assert_eq!((s, &st["status"]), (200, &json!("Success")), "{st}");
    let (s, _) = t
        .get(&format!(
            "v2/projects/{P}/locations/europe-west1/services/app"
        ))
        .await;
    assert_eq!(s, 404);

    let (_, log) = t.get("emulator/requests").await;
    let ids: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    for want in [
        "run.namespaces.services.get",
        "run.namespaces.services.replaceService",
        "run.namespaces.services.delete",
        "run.projects.locations.services.list",
    ] {
        assert!(ids.contains(&want), "{want} not in {ids:?}");
    }
}

/// Resource Manager v1 `projects.get` (gcloud iap looks the project number up
/// there): by id or number; an unknown project is Google's 403.
#[tokio::test]
async fn resource_manager_v1_project_get() {
    let t = T::new().await;
    for p in [P.to_string(), N.to_string()] {
        let (s, v) = t.get(&format!("v1/projects/{p}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["projectNumber"], N.to_string());
        assert_eq!(v["projectId"], P);
        assert_eq!(v["lifecycleState"], "ACTIVE");
    }
    let (s, e) = t.get("v1/projects/nope").await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"]["status"], "PERMISSION_DENIED");
}

/// The v1 paths are under IAM like the v2 ones: the Knative namespace is the
/// project, a denied permission is Google's 403, and a disabled Cloud Run API
/// answers SERVICE_DISABLED on v1 as on v2.
#[tokio::test]
async fn cloud_run_v1_is_under_iam_and_the_api_switch() {
    let t = T::new().await;
    run_service(&t, "europe-west1", "app").await;
    let regional = Some("europe-west1-run.googleapis.com");
    let knative = format!("apis/serving.knative.dev/v1/namespaces/{P}/services/app");
    let (s, _) = t
        .call(
            Method::POST,
            "emulator/iam/denied",
            Some(json!({"permissions": ["run.services.get", "resourcemanager.projects.get"]})),
        )
        .await;
    assert!(s < 300);
    let (s, e) = t.call_with(Method::GET, &knative, None, regional).await;
    assert_eq!(
        (s, e["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{e}"
    );
    let (s, _) = t
        .get(&format!(
            "v1/projects/{P}/locations/europe-west1/services/app"
        ))
        .await;
    assert_eq!(s, 403);
    let (s, _) = t.get(&format!("v1/projects/{P}")).await;
    assert_eq!(s, 403);
    let (s, _) = t
        .call(
            Method::POST,
            "emulator/iam/denied",
            Some(json!({"permissions": []})),
        )
        .await;
    assert!(s < 300);
    let (s, _) = t
        .call(
            Method::POST,
            "emulator/apis",
            Some(json!({"api": "run.googleapis.com", "enabled": false})),
        )
        .await;
    assert!(s < 300);
    let (s, e) = t.call_with(Method::GET, &knative, None, regional).await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(
        e["error"]["details"][0]["reason"], "SERVICE_DISABLED",
        "{e}"
    );
    let (s, e) = t
        .get(&format!("v1/projects/{P}/locations/-/services"))
        .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(
        e["error"]["details"][0]["reason"], "SERVICE_DISABLED",
        "{e}"
    );
    // IAP and Resource Manager v1 are other APIs: still on.
    let (s, e) = t.get(&format!("v1/projects/{P}")).await;
    assert_eq!(s, 200, "{e}");
}

/// gcloud, with the emulator as its HTTP proxy, sends absolute-form requests for
/// hosts that do not resolve (`europe-west1-127.0.0.1:PORT`); the emulator
/// serves them by path, and the Knative region comes from that host.
#[tokio::test]
async fn absolute_form_requests_through_the_proxy_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = T::new().await;
    run_service(&t, "europe-west1", "app").await;
    let addr = t.emu.http_addr();
    let host = format!("europe-west1-{addr}");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET http://{host}/apis/serving.knative.dev/v1/namespaces/{P}/services/app HTTP/1.1\r\n\
         Host: {host}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains(r#""cloud.googleapis.com/location":"europe-west1""#),
        "{out}"
    );
}
