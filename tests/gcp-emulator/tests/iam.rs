//! IAM enforcement over HTTP: the allow-list and deny-list, Google's 403 in the
//! shape of each API family, the permissions checked on referenced resources,
//! `testIamPermissions` answering from the same sets, and the record of what was
//! checked.

use std::time::Duration;

use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};

const P: &str = "demo-project";
const LINK: &str = "https://www.googleapis.com/compute/v1/projects/demo-project";
const RUN: &str = "v2/projects/demo-project/locations/us-central1/services";
const IAP_RES: &str = "v1/projects/demo-project/iap_web/compute/services/bs-app";

struct T {
    emu: Emulator,
    http: reqwest::Client,
}

impl T {
    async fn new() -> T {
        let config = Config {
            operation_delay: Duration::from_millis(5),
            dns_change_delay: Duration::from_millis(5),
            ..Config::default()
        };
        T {
            emu: Emulator::start(config).await.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.emu.base_url(), path);
        let mut r = self.http.request(method.parse().unwrap(), url);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// The caller holds exactly `perms` (`None`: everything).
    async fn grant(&self, perms: Option<&[&str]>) {
        let (s, b) = self
            .call(
                "POST",
                "emulator/iam/granted",
                Some(json!({"permissions": perms})),
            )
            .await;
        assert_eq!(s, 204, "{b}");
    }

    async fn checked(&self) -> Vec<String> {
        let (s, b) = self.call("GET", "emulator/iam/checked", None).await;
        assert_eq!(s, 200, "{b}");
        serde_json::from_value(b).unwrap()
    }

    async fn reset_checked(&self) {
        let (s, _) = self.call("DELETE", "emulator/iam/checked", None).await;
        assert_eq!(s, 204);
    }

    /// A self-signed certificate upload body.
    fn cert_body(name: &str) -> Value {
        let ck = rcgen::generate_simple_self_signed(vec!["a.example.test".into()]).unwrap();
        json!({"name": name, "certificate": ck.cert.pem(), "privateKey": ck.signing_key.serialize_pem()})
    }

    async fn compute_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, op) = self
            .call(method, &format!("compute/v1/projects/{P}/{path}"), body)
            .await;
        assert_eq!(s, 200, "{method} {path}: {op}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        op
    }
}

/// `(error.status, details[0].reason, metadata.permission)` of an AIP-193 error.
fn aip(v: &Value) -> (&str, &str, &str) {
    (
        v["error"]["status"].as_str().unwrap_or(""),
        v["error"]["details"][0]["reason"].as_str().unwrap_or(""),
        v["error"]["details"][0]["metadata"]["permission"]
            .as_str()
            .unwrap_or(""),
    )
}

#[tokio::test]
async fn compute_answers_required_permission_for_the_resource() {
    let t = T::new().await;
    t.grant(Some(&["compute.sslCertificates.get"])).await;
    let (s, e) = t
        .call(
            "POST",
            &format!("compute/v1/projects/{P}/global/sslCertificates"),
            Some(T::cert_body("x")),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    let msg = format!(
        "Required 'compute.sslCertificates.create' permission for 'projects/{P}/global/sslCertificates/x'"
    );
    assert_eq!(
        e,
        json!({"error": {
            "code": 403,
            "message": msg,
            "errors": [{"message": msg, "domain": "global", "reason": "forbidden"}],
            "status": "PERMISSION_DENIED",
        }})
    );
    // Nothing was created; the read that is granted answers.
    let (s, _) = t
        .call(
            "GET",
            &format!("compute/v1/projects/{P}/global/sslCertificates/x"),
            None,
        )
        .await;
    assert_eq!(s, 404);
    // A list is checked on the project.
    let (s, e) = t
        .call(
            "GET",
            &format!("compute/v1/projects/{P}/global/sslCertificates"),
            None,
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        e["error"]["message"],
        format!("Required 'compute.sslCertificates.list' permission for 'projects/{P}'")
    );
    assert_eq!(
        t.checked().await,
        [
            "compute.sslCertificates.create",
            "compute.sslCertificates.get",
            "compute.sslCertificates.list"
        ]
    );
}

#[tokio::test]
async fn compute_checks_the_resources_a_request_refers_to() {
    let t = T::new().await;
    t.compute_ok("POST", "global/sslCertificates", Some(T::cert_body("c")))
        .await;
    t.compute_ok(
        "POST",
        "global/urlMaps",
        Some(json!({"name": "um", "defaultUrlRedirect": {"httpsRedirect": true}})),
    )
    .await;
    t.compute_ok("POST", "global/addresses", Some(json!({"name": "ip"})))
        .await;
    let proxy = json!({"name": "px", "urlMap": format!("{LINK}/global/urlMaps/um"),
                       "sslCertificates": [format!("{LINK}/global/sslCertificates/c")]});

    // Creating a proxy uses the URL map and reads each certificate.
    t.grant(Some(&[
        "compute.targetHttpsProxies.create",
        "compute.sslCertificates.get",
    ]))
    .await;
    t.reset_checked().await;
    let path = format!("compute/v1/projects/{P}/global/targetHttpsProxies");
    let (s, e) = t.call("POST", &path, Some(proxy.clone())).await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(
        e["error"]["message"],
        format!("Required 'compute.urlMaps.use' permission for 'projects/{P}/global/urlMaps/um'")
    );
    t.grant(Some(&[
        "compute.targetHttpsProxies.create",
        "compute.urlMaps.use",
    ]))
    .await;
    let (s, e) = t.call("POST", &path, Some(proxy.clone())).await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(
        e["error"]["message"],
        format!(
            "Required 'compute.sslCertificates.get' permission for 'projects/{P}/global/sslCertificates/c'"
        )
    );
    t.grant(Some(&[
        "compute.targetHttpsProxies.create",
        "compute.urlMaps.use",
        "compute.sslCertificates.get",
    ]))
    .await;
    let (s, e) = t.call("POST", &path, Some(proxy)).await;
    assert_eq!(s, 200, "{e}");
    tokio::time::sleep(Duration::from_millis(20)).await;

    // A forwarding rule uses its proxy and its address, also when the address is
    // given as the literal IP.
    t.grant(None).await;
    let (_, addr) = t
        .call(
            "GET",
            &format!("compute/v1/projects/{P}/global/addresses/ip"),
            None,
        )
        .await;
    let ip = addr["address"].as_str().unwrap().to_string();
    t.grant(Some(&[
        "compute.globalForwardingRules.create",
        "compute.targetHttpsProxies.use",
    ]))
    .await;
    let (s, e) = t
        .call(
            "POST",
            &format!("compute/v1/projects/{P}/global/forwardingRules"),
            Some(json!({"name": "fr", "IPAddress": ip, "portRange": "443",
                        "target": format!("{LINK}/global/targetHttpsProxies/px")})),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(
        e["error"]["message"],
        format!(
            "Required 'compute.globalAddresses.use' permission for 'projects/{P}/global/addresses/ip'"
        )
    );

    // Swapping certificates reads the new list's certificates.
    t.grant(Some(&["compute.targetHttpsProxies.setSslCertificates"]))
        .await;
    let (s, e) = t
        .call(
            "POST",
            &format!("compute/v1/projects/{P}/targetHttpsProxies/px/setSslCertificates"),
            Some(json!({"sslCertificates": [format!("{LINK}/global/sslCertificates/c")]})),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(
        e["error"]["message"],
        format!(
            "Required 'compute.sslCertificates.get' permission for 'projects/{P}/global/sslCertificates/c'"
        )
    );

    let mut want = vec![
        "compute.globalAddresses.use",
        "compute.globalForwardingRules.create",
        "compute.sslCertificates.get",
        "compute.targetHttpsProxies.create",
        "compute.targetHttpsProxies.setSslCertificates",
        "compute.targetHttpsProxies.use",
        "compute.urlMaps.use",
        // The address read above, with everything granted.
        "compute.globalAddresses.get",
    ];
    want.sort();
    assert_eq!(t.checked().await, want);
}

#[tokio::test]
async fn cloud_dns_answers_forbidden_and_checks_what_the_change_does() {
    let t = T::new().await;
    let (s, b) = t
        .call(
            "POST",
            &format!("dns/v1/projects/{P}/managedZones"),
            Some(json!({"name": "z", "dnsName": "example.test.", "description": ""})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let changes = format!("dns/v1/projects/{P}/managedZones/z/changes");
    let txt = |v: &str| json!({"name": "_acme-challenge.example.test.", "type": "TXT", "ttl": 60, "rrdatas": [format!("\"{v}\"")]});

    t.grant(Some(&["dns.changes.create"])).await;
    t.reset_checked().await;
    let (s, e) = t
        .call("POST", &changes, Some(json!({"additions": [txt("a")]})))
        .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(
        e,
        json!({"error": {
            "code": 403,
            "message": "Forbidden",
            "errors": [{"message": "Forbidden", "domain": "global", "reason": "forbidden"}],
            "status": "PERMISSION_DENIED",
        }})
    );
    assert_eq!(
        t.checked().await,
        ["dns.changes.create", "dns.resourceRecordSets.create"]
    );

    // Create, then replace (update), then remove (delete): each needs its own.
    t.grant(Some(&[
        "dns.changes.create",
        "dns.resourceRecordSets.create",
    ]))
    .await;
    let (s, e) = t
        .call("POST", &changes, Some(json!({"additions": [txt("a")]})))
        .await;
    assert_eq!(s, 200, "{e}");
    let replace = json!({"deletions": [txt("a")], "additions": [txt("b")]});
    let (s, _) = t.call("POST", &changes, Some(replace.clone())).await;
    assert_eq!(s, 403);
    t.grant(Some(&[
        "dns.changes.create",
        "dns.resourceRecordSets.update",
    ]))
    .await;
    let (s, e) = t.call("POST", &changes, Some(replace)).await;
    assert_eq!(s, 200, "{e}");
    let remove = json!({"deletions": [txt("b")]});
    let (s, _) = t.call("POST", &changes, Some(remove.clone())).await;
    assert_eq!(s, 403);
    t.grant(Some(&[
        "dns.changes.create",
        "dns.resourceRecordSets.delete",
    ]))
    .await;
    let (s, e) = t.call("POST", &changes, Some(remove)).await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(
        t.checked().await,
        [
            "dns.changes.create",
            "dns.resourceRecordSets.create",
            "dns.resourceRecordSets.delete",
            "dns.resourceRecordSets.update"
        ]
    );
    // The detail names each check's method, resource and verdict.
    let (_, d) = t
        .call("GET", "emulator/iam/checked?detail=true", None)
        .await;
    let last = d.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        json!({"method": "dns.changes.create", "permission": "dns.resourceRecordSets.delete",
               "resource": format!("projects/{P}/managedZones/z/rrsets/_acme-challenge.example.test./TXT"),
               "granted": true})
    );
}

#[tokio::test]
async fn aip193_apis_answer_permission_denied_naming_permission_and_resource() {
    let t = T::new().await;
    let (s, op) = t
        .call(
            "POST",
            &format!("{RUN}?serviceId=app"),
            Some(json!({"template": {"containers": [{"image": "gcr.io/x/app"}]}})),
        )
        .await;
    assert_eq!(s, 200, "{op}");
    t.grant(Some(&["run.services.get"])).await;

    let (s, e) = t
        .call(
            "PATCH",
            &format!("{RUN}/app?updateMask=ingress"),
            Some(json!({"ingress": "INGRESS_TRAFFIC_NONE"})),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    let res = format!("projects/{P}/locations/us-central1/services/app");
    assert_eq!(
        e,
        json!({"error": {
            "code": 403,
            "message": format!("Permission 'run.services.update' denied on resource '{res}' (or it may not exist)."),
            "status": "PERMISSION_DENIED",
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": "run.services.update", "resource": res},
            }],
        }})
    );
    let (s, _) = t.call("GET", &format!("{RUN}/app"), None).await;
    assert_eq!(s, 200);

    let (s, e) = t
        .call(
            "POST",
            &format!("{IAP_RES}:setIamPolicy"),
            Some(json!({"policy": {}})),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        aip(&e),
        (
            "PERMISSION_DENIED",
            "IAM_PERMISSION_DENIED",
            "iap.webServices.setIamPolicy"
        )
    );
    assert_eq!(
        e["error"]["details"][0]["metadata"]["resource"],
        format!("projects/{P}/iap_web/compute/services/bs-app")
    );

    let (s, e) = t.call("GET", &format!("v3/projects/{P}"), None).await;
    assert_eq!(s, 403);
    assert_eq!(
        aip(&e),
        (
            "PERMISSION_DENIED",
            "IAM_PERMISSION_DENIED",
            "resourcemanager.projects.get"
        )
    );

    for path in [
        format!("v1/projects/{P}/services/dns.googleapis.com:enable"),
        format!("v1beta1/projects/{P}/services/dns.googleapis.com:enable"),
    ] {
        let (s, e) = t.call("POST", &path, None).await;
        assert_eq!(s, 403, "{path}: {e}");
        assert_eq!(
            aip(&e),
            (
                "PERMISSION_DENIED",
                "IAM_PERMISSION_DENIED",
                "serviceusage.services.enable"
            ),
            "{path}"
        );
    }

    // Needs no permission at all (Google documents none for it).
    let (s, op) = t
        .call(
            "POST",
            &format!("v1beta1/projects/{P}/services/iap.googleapis.com:generateServiceIdentity"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{op}");
    assert!(!t.checked().await.iter().any(|p| p.contains("Identity")));
}

#[tokio::test]
async fn test_iam_permissions_answers_from_the_same_sets() {
    let t = T::new().await;
    let wanted = json!({"permissions": ["compute.sslCertificates.create", "dns.changes.create", "run.services.update"]});
    let path = format!("v3/projects/{P}:testIamPermissions");
    t.grant(Some(&["dns.changes.create", "run.services.update"]))
        .await;
    let (s, r) = t.call("POST", &path, Some(wanted.clone())).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["permissions"],
        json!(["dns.changes.create", "run.services.update"])
    );
    // The deny-list applies on top of the allow-list.
    let (s, _) = t
        .call(
            "POST",
            "emulator/iam/denied",
            Some(json!({"permissions": ["run.services.update"]})),
        )
        .await;
    assert_eq!(s, 204);
    let (_, r) = t.call("POST", &path, Some(wanted.clone())).await;
    assert_eq!(r["permissions"], json!(["dns.changes.create"]));
    // Lifting the allow-list grants everything but the denied.
    t.grant(None).await;
    let (_, r) = t.call("POST", &path, Some(wanted.clone())).await;
    assert_eq!(
        r["permissions"],
        json!(["compute.sslCertificates.create", "dns.changes.create"])
    );
    let (s, _) = t
        .call("DELETE", &format!("emulator/iam/granted?project={P}"), None)
        .await;
    assert_eq!(s, 204);
    // testIamPermissions itself needs nothing, and is not a check.
    t.grant(Some(&[])).await;
    t.reset_checked().await;
    let (s, r) = t.call("POST", &path, Some(wanted)).await;
    assert_eq!(s, 200);
    assert_eq!(r, json!({}));
    assert_eq!(t.checked().await, Vec::<String>::new());
    // An unknown project is refused by its handler, as before.
    let (s, _) = t
        .call(
            "POST",
            "emulator/iam/granted",
            Some(json!({"permissions": [], "project": "nope"})),
        )
        .await;
    assert_eq!(s, 404);
}
