//! IAP, Cloud Run, Service Usage, Resource Manager, API switches and the metadata
//! server, over HTTP, asserting Google's exact statuses and reasons.

use std::time::Duration;

use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};

const P: &str = "demo-project";
const N: u64 = 123_456_789_012;
const IAP_RES: &str = "v1/projects/demo-project/iap_web/compute/services/bs-app";
const RUN: &str = "v2/projects/demo-project/locations/us-central1/services";

async fn start() -> Emulator {
    Emulator::start(Config::default()).await.unwrap()
}

thread_local! {
    // Building a client is costly (TLS roots); each test runs on its own thread
    // and runtime, so one client per thread is both cheap and runtime-safe.
    static CLIENT: reqwest::Client = reqwest::Client::new();
}

async fn call(emu: &Emulator, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = CLIENT.with(Clone::clone);
    let url = format!("{}{}", emu.base_url(), path);
    let mut r = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// `(status, error.status, details[0].reason)` of an AIP-193 error.
fn aip(v: &Value) -> (&str, &str) {
    (
        v["error"]["status"].as_str().unwrap_or(""),
        v["error"]["details"][0]["reason"].as_str().unwrap_or(""),
    )
}

async fn create_service(emu: &Emulator, id: &str) -> Value {
    let (s, op) = call(
        emu,
        "POST",
        &format!("{RUN}?serviceId={id}"),
        Some(json!({"template": {"containers": [{"image": "gcr.io/x/app"}]}})),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    wait_op(emu, &op).await
}

async fn wait_op(emu: &Emulator, op: &Value) -> Value {
    let name = op["name"].as_str().unwrap().to_string();
    for _ in 0..20 {
        let (s, op) = call(
            emu,
            "POST",
            &format!("v2/{name}:wait"),
            Some(json!({"timeout": "60s"})),
        )
        .await;
        assert_eq!(s, 200, "{op}");
        if op["done"] == true {
            return op;
        }
    }
    panic!("operation {name} never finished");
}

#[tokio::test]
async fn iap_policy_get_set_and_stale_etag_conflict() {
    let emu = start().await;
    let (s, p0) = call(
        &emu,
        "POST",
        &format!("{IAP_RES}:getIamPolicy"),
        Some(json!({"options": {"requestedPolicyVersion": 3}})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p0, json!({"etag": "ACAB"}));

    let binding = json!({"role": "roles/iap.httpsResourceAccessor",
        "members": ["user:alice@example.com", "group:ops@example.com", "domain:example.com"]});
    let (s, p1) = call(
        &emu,
        "POST",
        &format!("{IAP_RES}:setIamPolicy"),
        Some(json!({"policy": {"etag": "ACAB", "bindings": [binding]}})),
    )
    .await;
    assert_eq!(s, 200, "{p1}");
    assert_eq!(p1["version"], 1);
    assert_ne!(p1["etag"], "ACAB");
    assert_eq!(p1["bindings"][0]["members"][2], "domain:example.com");

    // Read back by project number: same policy.
    let (s, p2) = call(
        &emu,
        "POST",
        &format!("v1/projects/{N}/iap_web/compute/services/bs-app:getIamPolicy"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p2, p1);

    // Writing with the old etag is a concurrent-change conflict.
    let (s, e) = call(
        &emu,
        "POST",
        &format!("{IAP_RES}:setIamPolicy"),
        Some(json!({"policy": {"etag": "ACAB", "bindings": []}})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(aip(&e), ("ABORTED", "aborted"));

    // A numeric backend-service id resolves once Compute registers the alias.
    emu.shared()
        .world()
        .project(P)
        .unwrap()
        .cloud
        .alias_backend_service("4242", "bs-app");
    let (s, p3) = call(
        &emu,
        "POST",
        &format!("v1/projects/{N}/iap_web/compute/services/4242:getIamPolicy"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p3["etag"], p1["etag"]);
}

#[tokio::test]
async fn iap_rejects_bad_members_roles_and_unknown_fields() {
    let emu = start().await;
    for member in ["alice@example.com", "person:alice@example.com"] {
        let (s, e) = call(
            &emu,
            "POST",
            &format!("{IAP_RES}:setIamPolicy"),
            Some(json!({"policy": {"bindings": [
                {"role": "roles/iap.httpsResourceAccessor", "members": [member]}]}})),
        )
        .await;
        assert_eq!(s, 400, "{member}: {e}");
        assert_eq!(aip(&e), ("INVALID_ARGUMENT", "invalid"));
    }
    let (s, e) = call(
        &emu,
        "POST",
        &format!("{IAP_RES}:setIamPolicy"),
        Some(json!({"policy": {"bindings": [
            {"role": "roles/run.invoker", "members": ["user:a@example.com"]}]}})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not supported"),
        "{e}"
    );
    // Unknown field in the body: rejected by the discovery schema.
    let (s, e) = call(
        &emu,
        "POST",
        &format!("{IAP_RES}:setIamPolicy"),
        Some(json!({"policy": {"bindingz": []}})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT");
    // Unknown project: Google's indistinguishable 403.
    let (s, e) = call(
        &emu,
        "POST",
        "v1/projects/nope/iap_web/compute/services/bs:getIamPolicy",
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(aip(&e), ("PERMISSION_DENIED", "IAM_PERMISSION_DENIED"));
}

#[tokio::test]
async fn run_create_get_patch_ingress_via_lro_and_wait() {
    let emu = start().await;
    let (s, op) = call(
        &emu,
        "POST",
        &format!("{RUN}?serviceId=app"),
        Some(json!({"template": {"containers": [{"image": "gcr.io/x/app"}]}})),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    let name = op["name"].as_str().unwrap();
    assert!(
        name.starts_with("projects/demo-project/locations/us-central1/operations/"),
        "{name}"
    );
    assert!(
        op.get("done").is_none(),
        "a fresh operation is not done: {op}"
    );
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );
    let done = wait_op(&emu, &op).await;
    assert_eq!(
        done["response"]["@type"],
        "type.googleapis.com/google.cloud.run.v2.Service"
    );
    assert!(done.get("error").is_none());

    let (s, svc) = call(&emu, "GET", &format!("{RUN}/app"), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        svc["name"],
        "projects/demo-project/locations/us-central1/services/app"
    );
    assert_eq!(svc["ingress"], "INGRESS_TRAFFIC_ALL");
    assert_eq!(svc["reconciling"], false);
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_SUCCEEDED");
    assert_eq!(svc["generation"], "1");
    assert!(
        svc["uri"].as_str().unwrap().ends_with("-uc.a.run.app"),
        "{svc}"
    );
    let etag1 = svc["etag"].clone();

    let (s, op) = call(
        &emu,
        "PATCH",
        &format!("{RUN}/app?updateMask=ingress"),
        Some(json!({"ingress": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"})),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    // The operation is also pollable with GET.
    let (s, polled) = call(
        &emu,
        "GET",
        &format!("v2/{}", op["name"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(polled["name"], op["name"]);
    let done = wait_op(&emu, &op).await;
    assert_eq!(
        done["response"]["ingress"],
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    );
    let (_, svc) = call(&emu, "GET", &format!("{RUN}/app"), None).await;
    assert_eq!(svc["ingress"], "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER");
    assert_eq!(svc["generation"], "2");
    assert_eq!(svc["observedGeneration"], "2");
    assert_ne!(svc["etag"], etag1);
    // The masked patch kept the template.
    assert_eq!(svc["template"]["containers"][0]["image"], "gcr.io/x/app");

    // Bad enum value.
    let (s, e) = call(
        &emu,
        "PATCH",
        &format!("{RUN}/app?updateMask=ingress"),
        Some(json!({"ingress": "INGRESS_TRAFFIC_SOMETIMES"})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(aip(&e), ("INVALID_ARGUMENT", "invalid"));
    // Stale etag.
    let (s, e) = call(
        &emu,
        "PATCH",
        &format!("{RUN}/app?updateMask=ingress"),
        Some(json!({"ingress": "INGRESS_TRAFFIC_ALL", "etag": etag1})),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(aip(&e), ("ABORTED", "aborted"));
}

#[tokio::test]
async fn run_not_found_in_other_region_and_bad_ids_and_duplicates() {
    let emu = start().await;
    create_service(&emu, "app").await;
    let (s, e) = call(
        &emu,
        "GET",
        "v2/projects/demo-project/locations/europe-west1/services/app",
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(aip(&e), ("NOT_FOUND", "notFound"));
    assert_eq!(
        e["error"]["message"],
        "Resource 'projects/demo-project/locations/europe-west1/services/app' was not found"
    );
    for bad in ["9app", "app-", "App", &"a".repeat(50)] {
        let (s, e) = call(
            &emu,
            "POST",
            &format!("{RUN}?serviceId={bad}"),
            Some(json!({})),
        )
        .await;
        assert_eq!(s, 400, "{bad}: {e}");
        assert_eq!(aip(&e), ("INVALID_ARGUMENT", "invalid"));
    }
    let (s, e) = call(
        &emu,
        "POST",
        &format!("{RUN}?serviceId=app"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 409);
    assert_eq!(aip(&e), ("ALREADY_EXISTS", "alreadyExists"));
    let (s, list) = call(&emu, "GET", RUN, None).await;
    assert_eq!(s, 200);
    assert_eq!(list["services"].as_array().unwrap().len(), 1);

    let (s, op) = call(&emu, "DELETE", &format!("{RUN}/app"), None).await;
    assert_eq!(s, 200);
    let done = wait_op(&emu, &op).await;
    assert_eq!(
        done["response"]["name"],
        "projects/demo-project/locations/us-central1/services/app"
    );
    let (s, _) = call(&emu, "GET", &format!("{RUN}/app"), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn run_operation_fault_ends_with_error_and_changes_nothing() {
    let emu = start().await;
    create_service(&emu, "app").await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}emulator/faults", emu.base_url()))
        .json(&json!({"method": "run.projects.locations.services.patch", "kind": "operation",
            "status": 400, "reason": "failedPrecondition", "message": "Revision failed to start", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (s, op) = call(
        &emu,
        "PATCH",
        &format!("{RUN}/app?updateMask=ingress"),
        Some(json!({"ingress": "INGRESS_TRAFFIC_NONE"})),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    let done = wait_op(&emu, &op).await;
    assert_eq!(done["error"]["code"], 9, "FAILED_PRECONDITION: {done}");
    assert_eq!(done["error"]["message"], "Revision failed to start");
    assert!(done.get("response").is_none());
    let (_, svc) = call(&emu, "GET", &format!("{RUN}/app"), None).await;
    assert_eq!(svc["ingress"], "INGRESS_TRAFFIC_ALL");
    assert_eq!(svc["generation"], "1");
}

#[tokio::test]
async fn run_wait_is_bounded_and_get_shows_pending() {
    let emu = Emulator::start(Config {
        operation_delay: Duration::from_secs(30),
        ..Config::default()
    })
    .await
    .unwrap();
    let (s, op) = call(
        &emu,
        "POST",
        &format!("{RUN}?serviceId=slow"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200);
    let t = std::time::Instant::now();
    let (s, w) = call(
        &emu,
        "POST",
        &format!("v2/{}:wait", op["name"].as_str().unwrap()),
        Some(json!({"timeout": "0.2s"})),
    )
    .await;
    assert_eq!(s, 200);
    assert!(w.get("done").is_none(), "{w}");
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(t.elapsed() < Duration::from_secs(3));
    let (s, svc) = call(&emu, "GET", &format!("{RUN}/slow"), None).await;
    assert_eq!(s, 200);
    assert_eq!(svc["reconciling"], true);
    assert_eq!(svc["terminalCondition"]["state"], "CONDITION_RECONCILING");
}

#[tokio::test]
async fn run_iam_get_set() {
    let emu = start().await;
    create_service(&emu, "app").await;
    let (s, p) = call(
        &emu,
        "GET",
        &format!("{RUN}/app:getIamPolicy?options.requestedPolicyVersion=3"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p, json!({"etag": "ACAB"}));
    let (s, p) = call(
        &emu,
        "POST",
        &format!("{RUN}/app:setIamPolicy"),
        Some(json!({"policy": {"etag": "ACAB", "bindings": [
            {"role": "roles/run.invoker", "members": ["serviceAccount:caller@demo-project.iam.gserviceaccount.com"]}]}})),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let (s, p2) = call(&emu, "GET", &format!("{RUN}/app:getIamPolicy"), None).await;
    assert_eq!(s, 200);
    assert_eq!(p2, p);
    let (s, e) = call(
        &emu,
        "GET",
        &format!("{RUN}/app:getIamPolicy?options.requestedPolicyVersion=2"),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(aip(&e), ("INVALID_ARGUMENT", "invalid"));
    let (s, e) = call(&emu, "GET", &format!("{RUN}/ghost:getIamPolicy"), None).await;
    assert_eq!(s, 404);
    assert_eq!(aip(&e), ("NOT_FOUND", "notFound"));
}

#[tokio::test]
async fn iap_agent_binding_fails_until_generate_service_identity() {
    let emu = start().await;
    create_service(&emu, "app").await;
    let agent = format!("service-{N}@gcp-sa-iap.iam.gserviceaccount.com");
    let set = json!({"policy": {"bindings": [
        {"role": "roles/run.invoker", "members": [format!("serviceAccount:{agent}")]}]}});
    let (s, e) = call(
        &emu,
        "POST",
        &format!("{RUN}/app:setIamPolicy"),
        Some(set.clone()),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(aip(&e), ("INVALID_ARGUMENT", "invalid"));
    assert_eq!(
        e["error"]["message"],
        format!("Service account {agent} does not exist.")
    );

    let (s, op) = call(
        &emu,
        "POST",
        "v1beta1/projects/demo-project/services/iap.googleapis.com:generateServiceIdentity",
        None,
    )
    .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.api.serviceusage.v1beta1.ServiceIdentity"
    );
    assert_eq!(op["response"]["email"], agent);

    let (s, p) = call(&emu, "POST", &format!("{RUN}/app:setIamPolicy"), Some(set)).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        p["bindings"][0]["members"][0],
        format!("serviceAccount:{agent}")
    );
}

#[tokio::test]
async fn crm_project_get_and_test_iam_permissions() {
    let emu = start().await;
    for id in [P.to_string(), N.to_string()] {
        let (s, p) = call(&emu, "GET", &format!("v3/projects/{id}"), None).await;
        assert_eq!(s, 200);
        assert_eq!(p["name"], format!("projects/{N}"));
        assert_eq!(p["projectId"], P);
        assert_eq!(p["state"], "ACTIVE");
        assert!(p["createTime"].is_string() && p["etag"].is_string());
    }
    let (s, e) = call(&emu, "GET", "v3/projects/other-project", None).await;
    assert_eq!(s, 403);
    assert_eq!(aip(&e), ("PERMISSION_DENIED", "IAM_PERMISSION_DENIED"));

    let perms = json!({"permissions": ["compute.sslCertificates.create", "dns.changes.create", "run.services.update"]});
    let (s, r) = call(
        &emu,
        "POST",
        &format!("v3/projects/{P}:testIamPermissions"),
        Some(perms.clone()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(r["permissions"].as_array().unwrap().len(), 3);

    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}emulator/iam/denied", emu.base_url()))
        .json(&json!({"permissions": ["dns.changes.create"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (s, r) = call(
        &emu,
        "POST",
        &format!("v3/projects/{P}:testIamPermissions"),
        Some(perms),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        r["permissions"],
        json!(["compute.sslCertificates.create", "run.services.update"])
    );
    let (s, e) = call(
        &emu,
        "POST",
        &format!("v3/projects/{P}:testIamPermissions"),
        Some(json!({"permissions": ["nonsense"]})),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(aip(&e), ("INVALID_ARGUMENT", "invalid"));
}

#[tokio::test]
async fn disabled_api_answers_403_access_not_configured() {
    let emu = start().await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}emulator/apis", emu.base_url()))
        .json(&json!({"api": "dns.googleapis.com", "enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, e) = call(
        &emu,
        "GET",
        &format!("dns/v1/projects/{P}/managedZones"),
        None,
    )
    .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"]["errors"][0]["reason"], "accessNotConfigured");
    assert_eq!(e["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(e["error"]["status"], "PERMISSION_DENIED");
    assert!(
        e["error"]["message"].as_str().unwrap().starts_with(&format!(
            "Cloud DNS API has not been used in project {N} before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/dns.googleapis.com/overview?project={N} then retry."
        )),
        "{e}"
    );
    // Other APIs still answer.
    let (s, _) = call(&emu, "GET", &format!("v3/projects/{P}"), None).await;
    assert_eq!(s, 200);

    // The AIP-193 APIs say SERVICE_DISABLED in their ErrorInfo.
    c.post(format!("{}emulator/apis", emu.base_url()))
        .json(&json!({"api": "run.googleapis.com", "enabled": false}))
        .send()
        .await
        .unwrap();
    let (s, e) = call(&emu, "GET", &format!("{RUN}/app"), None).await;
    assert_eq!(s, 403);
    assert_eq!(aip(&e), ("PERMISSION_DENIED", "SERVICE_DISABLED"));
    assert_eq!(
        e["error"]["details"][0]["metadata"]["service"],
        "run.googleapis.com"
    );

    // Enabling through Service Usage turns it back on.
    let (s, op) = call(
        &emu,
        "POST",
        &format!("v1/projects/{P}/services/run.googleapis.com:enable"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(op["done"], true);
    let (s, _) = call(&emu, "GET", &format!("{RUN}/app"), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn required_token_is_enforced_on_apis_not_on_metadata() {
    let emu = Emulator::start(Config {
        required_token: Some("secret-token".into()),
        ..Config::default()
    })
    .await
    .unwrap();
    let c = reqwest::Client::new();
    let url = format!("{}{RUN}/app", emu.base_url());
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["status"], "UNAUTHENTICATED");
    let r = c.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // The metadata server hands out exactly the token the APIs want.
    let tok: Value = c
        .get(format!(
            "{}computeMetadata/v1/instance/service-accounts/default/token",
            emu.base_url()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tok["access_token"], "secret-token");
    let r = c
        .get(&url)
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        404,
        "authorised: the service simply does not exist"
    );
    // The metadata root ping needs no bearer token, only the flavor header.
    let r = c
        .get(emu.base_url())
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["metadata-flavor"], "Google");
}

#[tokio::test]
async fn metadata_requires_flavor_and_serves_token_and_project() {
    let emu = start().await;
    let c = reqwest::Client::new();
    let md = |p: &str| format!("{}computeMetadata/v1/{p}", emu.base_url());

    let r = c
        .get(md("instance/service-accounts/default/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.headers()["metadata-flavor"], "Google");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Missing Metadata-Flavor:Google header.")
    );

    let r = c
        .get(md("instance/service-accounts/default/token"))
        .header("Metadata-Flavor", "Google")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let r = c
        .get(md("instance/service-accounts/default/token?scopes=https://www.googleapis.com/auth/cloud-platform"))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["metadata-flavor"], "Google");
    let tok: Value = r.json().await.unwrap();
    assert_eq!(
        tok,
        json!({"access_token": gcp_emulator::metadata::DEFAULT_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
    );

    let get_text = |p: String| {
        let c = c.clone();
        async move {
            let r = c
                .get(p)
                .header("Metadata-Flavor", "Google")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        get_text(md("project/project-id")).await,
        (200, P.to_string())
    );
    assert_eq!(
        get_text(md("project/numeric-project-id")).await,
        (200, N.to_string())
    );
    assert_eq!(
        get_text(md("instance/zone")).await,
        (200, format!("projects/{N}/zones/us-central1-a"))
    );
    let email = format!("{N}-compute@developer.gserviceaccount.com");
    assert_eq!(
        get_text(md("instance/service-accounts/default/email")).await,
        (200, email.clone())
    );
    assert_eq!(
        get_text(md("universe/universe-domain")).await,
        (200, "googleapis.com".into())
    );
    let (s, body) = get_text(md("instance/service-accounts/default/?recursive=true")).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["email"], email);
    assert_eq!(v["aliases"], json!(["default"]));
    assert_eq!(get_text(md("instance/region")).await.0, 404);
    // Presence checks.
    assert_eq!(get_text(md("")).await.0, 200);
    assert_eq!(get_text(emu.base_url()).await.0, 200);
    let r = c.get(emu.base_url()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn denied_permission_blocks_the_matching_call() {
    let emu = start().await;
    create_service(&emu, "app").await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}emulator/iam/denied", emu.base_url()))
        .json(&json!({"permissions": ["run.services.update", "iap.webServices.setIamPolicy"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (s, e) = call(
        &emu,
        "PATCH",
        &format!("{RUN}/app?updateMask=ingress"),
        Some(json!({"ingress": "INGRESS_TRAFFIC_NONE"})),
    )
    .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(aip(&e), ("PERMISSION_DENIED", "IAM_PERMISSION_DENIED"));
    assert_eq!(
        e["error"]["details"][0]["metadata"]["permission"],
        "run.services.update"
    );
    let (s, e) = call(
        &emu,
        "POST",
        &format!("{IAP_RES}:setIamPolicy"),
        Some(json!({"policy": {}})),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(aip(&e), ("PERMISSION_DENIED", "IAM_PERMISSION_DENIED"));
    // Reads are still allowed.
    let (s, _) = call(&emu, "GET", &format!("{RUN}/app"), None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&emu, "POST", &format!("{IAP_RES}:getIamPolicy"), None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn generate_service_identity_operation_fault_creates_no_agent() {
    let emu = start().await;
    create_service(&emu, "app").await;
    let c = reqwest::Client::new();
    c.post(format!("{}emulator/faults", emu.base_url()))
        .json(
            &json!({"method": "serviceusage.services.generateServiceIdentity",
            "kind": "operation", "status": 503, "count": 1}),
        )
        .send()
        .await
        .unwrap();
    let path = "v1beta1/projects/demo-project/services/iap.googleapis.com:generateServiceIdentity";
    let (s, op) = call(&emu, "POST", path, None).await;
    assert_eq!(s, 200);
    assert_eq!(op["done"], true);
    assert_eq!(op["error"]["code"], 14, "UNAVAILABLE: {op}");
    assert!(op.get("response").is_none());
    let agent = format!("serviceAccount:service-{N}@gcp-sa-iap.iam.gserviceaccount.com");
    let set = json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": [agent]}]}});
    let (s, _) = call(
        &emu,
        "POST",
        &format!("{RUN}/app:setIamPolicy"),
        Some(set.clone()),
    )
    .await;
    assert_eq!(s, 400, "the failed operation created no agent");
    // The retry succeeds.
    let (s, op) = call(&emu, "POST", path, None).await;
    assert_eq!(s, 200);
    assert!(op.get("error").is_none(), "{op}");
    let (s, _) = call(&emu, "POST", &format!("{RUN}/app:setIamPolicy"), Some(set)).await;
    assert_eq!(s, 200);
}
