//! Certificate Manager over HTTP: certificates, maps, entries, operations,
//! Google's errors, IAM, faults and the latency model, and a target HTTPS proxy
//! serving from a map.

use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};

const P: &str = "demo-project";
const N: u64 = 123_456_789_012;
const LOC: &str = "v1/projects/demo-project/locations/global";
const LINK: &str = "https://www.googleapis.com/compute/v1/projects/demo-project/";
const MAP_ROOT: &str =
    "//certificatemanager.googleapis.com/projects/demo-project/locations/global/certificateMaps/";

thread_local! {
    static CLIENT: reqwest::Client = reqwest::Client::new();
}

async fn start() -> Emulator {
    Emulator::start(Config::default()).await.unwrap()
}

async fn call(emu: &Emulator, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = CLIENT.with(Clone::clone);
    let mut r = c.request(method.parse().unwrap(), format!("{}{path}", emu.base_url()));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A leaf for `names` (self-signed: the emulator checks shape and key, not trust).
fn pem_for(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn cert_body(names: &[&str]) -> Value {
    let (pem, key) = pem_for(names);
    json!({"description": "test", "labels": {"owner": "gclb-acme"},
           "selfManaged": {"pemCertificate": pem, "pemPrivateKey": key}})
}

/// Polls an operation until it is done; returns it.
async fn done(emu: &Emulator, op: &Value) -> Value {
    let name = op["name"].as_str().unwrap().to_string();
    let mut op = op.clone();
    for _ in 0..500 {
        if op["done"] == true {
            return op;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (s, v) = call(emu, "GET", &format!("v1/{name}"), None).await;
        assert_eq!(s, 200, "{v}");
        op = v;
    }
    panic!("operation {name} never finished");
}

/// A successful mutation: 200, then its operation done without error.
async fn ok(emu: &Emulator, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, op) = call(emu, method, path, body).await;
    assert_eq!(s, 200, "{method} {path}: {op}");
    let op = done(emu, &op).await;
    assert!(op.get("error").is_none(), "{op}");
    op
}

fn status(v: &Value) -> &str {
    v["error"]["status"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

async fn cert(emu: &Emulator, id: &str, names: &[&str]) -> Value {
    ok(
        emu,
        "POST",
        &format!("{LOC}/certificates?certificateId={id}"),
        Some(cert_body(names)),
    )
    .await
}

async fn map(emu: &Emulator, id: &str) {
    ok(
        emu,
        "POST",
        &format!("{LOC}/certificateMaps?certificateMapId={id}"),
        Some(json!({"labels": {"owner": "gclb-acme"}})),
    )
    .await;
}

async fn entry(emu: &Emulator, map: &str, id: &str, body: Value) -> (u16, Value) {
    let (s, op) = call(
        emu,
        "POST",
        &format!("{LOC}/certificateMaps/{map}/certificateMapEntries?certificateMapEntryId={id}"),
        Some(body),
    )
    .await;
    if s != 200 {
        return (s, op);
    }
    (s, done(emu, &op).await)
}

fn cert_ref(id: &str) -> String {
    format!("projects/{P}/locations/global/certificates/{id}")
}

#[tokio::test]
async fn certificate_create_get_list_and_the_key_is_never_returned() {
    let emu = start().await;
    let op = cert(&emu, "c1", &["a.example.com", "b.example.com"]).await;
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.cloud.certificatemanager.v1.OperationMetadata"
    );
    assert_eq!(op["metadata"]["verb"], "create");
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.cloud.certificatemanager.v1.Certificate"
    );
    assert!(
        op["name"]
            .as_str()
            .unwrap()
            .starts_with("projects/demo-project/locations/global/operations/operation-")
    );

    let (s, c) = call(&emu, "GET", &format!("{LOC}/certificates/c1"), None).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["name"], cert_ref("c1"));
    assert_eq!(c["sanDnsnames"], json!(["a.example.com", "b.example.com"]));
    assert!(
        c["pemCertificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(c["expireTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["scope"], "DEFAULT");
    assert_eq!(c["selfManaged"], json!({}));
    assert_eq!(c["labels"]["owner"], "gclb-acme");
    assert!(!c.to_string().contains("PRIVATE KEY"), "{c}");
    assert!(!op.to_string().contains("PRIVATE KEY"), "{op}");

    let (s, l) = call(&emu, "GET", &format!("{LOC}/certificates"), None).await;
    assert_eq!(s, 200);
    assert_eq!(l["certificates"].as_array().unwrap().len(), 1);
    assert!(l.get("nextPageToken").is_none());

    // The same id again: 409 ALREADY_EXISTS, synchronously.
    let (s, e) = call(
        &emu,
        "POST",
        &format!("{LOC}/certificates?certificateId=c1"),
        Some(cert_body(&["a.example.com"])),
    )
    .await;
    assert_eq!((s, status(&e)), (409, "ALREADY_EXISTS"), "{e}");
    assert!(message(&e).contains(&cert_ref("c1")), "{e}");

    // 404 as Google words it, without details.
    let (s, e) = call(&emu, "GET", &format!("{LOC}/certificates/nope"), None).await;
    assert_eq!((s, status(&e)), (404, "NOT_FOUND"));
    assert_eq!(
        message(&e),
        "Resource 'projects/demo-project/locations/global/certificates/nope' was not found"
    );
    assert!(e["error"].get("details").is_none(), "{e}");
}

#[tokio::test]
async fn bad_pem_mismatched_key_bad_ids_and_unknown_fields_are_invalid() {
    let emu = start().await;
    let create = |id: &str, body: Value| {
        let emu = &emu;
        let path = format!("{LOC}/certificates?certificateId={id}");
        async move { call(emu, "POST", &path, Some(body)).await }
    };
    let (_, key) = pem_for(&["a.example.com"]);
    let (s, e) = create(
        "bad",
        json!({"selfManaged": {"pemCertificate": "hello", "pemPrivateKey": key}}),
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");

    let (pem, _) = pem_for(&["a.example.com"]);
    let (s, e) = create(
        "mismatch",
        json!({"selfManaged": {"pemCertificate": pem, "pemPrivateKey": key}}),
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");
    assert!(message(&e).contains("do not match"), "{e}");

    let (s, e) = create("Bad_Id", cert_body(&["a.example.com"])).await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");
    let (s, e) = call(
        &emu,
        "POST",
        &format!("{LOC}/certificates"),
        Some(cert_body(&["a.example.com"])),
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");

    // Body validated against the discovery document.
    let (s, e) = create("x", json!({"bogus": 1})).await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");
    assert!(message(&e).contains("Unknown name \"bogus\""), "{e}");

    // Nothing was created by any of these.
    let (_, l) = call(&emu, "GET", &format!("{LOC}/certificates"), None).await;
    assert!(l.get("certificates").is_none(), "{l}");
}

#[tokio::test]
async fn patch_replaces_the_certificate_in_place_and_checks_the_mask() {
    let emu = start().await;
    cert(&emu, "c1", &["a.example.com"]).await;
    let (_, before) = call(&emu, "GET", &format!("{LOC}/certificates/c1"), None).await;

    let op = ok(
        &emu,
        "PATCH",
        &format!("{LOC}/certificates/c1?updateMask=selfManaged,labels"),
        Some(
            json!({"selfManaged": cert_body(&["a.example.com", "c.example.com"])["selfManaged"],
                    "labels": {"owner": "gclb-acme", "generation": "2"}}),
        ),
    )
    .await;
    assert_eq!(op["metadata"]["verb"], "update");
    let (_, after) = call(&emu, "GET", &format!("{LOC}/certificates/c1"), None).await;
    assert_eq!(
        after["sanDnsnames"],
        json!(["a.example.com", "c.example.com"])
    );
    assert_ne!(after["pemCertificate"], before["pemCertificate"]);
    assert_eq!(after["createTime"], before["createTime"]);
    assert_eq!(after["labels"]["generation"], "2");
    assert_eq!(after["description"], "test");

    let (s, e) = call(
        &emu,
        "PATCH",
        &format!("{LOC}/certificates/c1?updateMask=scope"),
        Some(json!({"scope": "EDGE_CACHE"})),
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");
    let (s, e) = call(
        &emu,
        "PATCH",
        &format!("{LOC}/certificates/c1"),
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");
    // A patch with a key of another certificate is refused and changes nothing.
    let (pem, _) = pem_for(&["a.example.com"]);
    let (_, other_key) = pem_for(&["a.example.com"]);
    let (s, e) = call(
        &emu,
        "PATCH",
        &format!("{LOC}/certificates/c1?update_mask=self_managed"),
        Some(json!({"selfManaged": {"pemCertificate": pem, "pemPrivateKey": other_key}})),
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");
    let (_, again) = call(&emu, "GET", &format!("{LOC}/certificates/c1"), None).await;
    assert_eq!(again["pemCertificate"], after["pemCertificate"]);
}

#[tokio::test]
async fn maps_entries_and_the_delete_in_use_errors() {
    let emu = start().await;
    cert(&emu, "c1", &["a.example.com"]).await;
    cert(&emu, "c2", &["*.example.com"]).await;
    map(&emu, "m").await;

    let (s, op) = entry(
        &emu,
        "m",
        "e-a",
        json!({"hostname": "a.example.com", "certificates": [cert_ref("c1")]}),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    let e = &op["response"];
    assert_eq!(
        e["@type"],
        "type.googleapis.com/google.cloud.certificatemanager.v1.CertificateMapEntry"
    );
    assert_eq!(e["hostname"], "a.example.com");
    assert_eq!(e["state"], "ACTIVE");
    // Stored and returned in project-number form.
    assert_eq!(
        e["certificates"],
        json!([format!("projects/{N}/locations/global/certificates/c1")])
    );
    // GAPIC clients send enums as numbers: matcher 1 is PRIMARY.
    let (s, op) = entry(
        &emu,
        "m",
        "primary",
        json!({"matcher": 1, "certificates": [format!("projects/{N}/locations/global/certificates/c2")]}),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(op["response"]["matcher"], "PRIMARY");

    // A second PRIMARY, a taken hostname, both or neither, five certificates, a
    // missing certificate, a missing map: refused.
    let refused = [
        ("p2", json!({"matcher": "PRIMARY"}), 400),
        ("dup", json!({"hostname": "a.example.com"}), 400),
        (
            "both",
            json!({"hostname": "b.example.com", "matcher": "PRIMARY"}),
            400,
        ),
        ("neither", json!({}), 400),
        (
            "five",
            json!({"hostname": "f.example.com", "certificates": vec![cert_ref("c1"); 5]}),
            400,
        ),
        (
            "ghost",
            json!({"hostname": "g.example.com", "certificates": [cert_ref("ghost")]}),
            404,
        ),
        ("bad-host", json!({"hostname": "Not A Host"}), 400),
    ];
    for (id, body, want) in refused {
        let (s, e) = entry(&emu, "m", id, body).await;
        assert_eq!(s, want, "{id}: {e}");
    }
    let (s, e) = entry(&emu, "nomap", "x", json!({"hostname": "x.example.com"})).await;
    assert_eq!((s, status(&e)), (404, "NOT_FOUND"), "{e}");

    let (_, l) = call(
        &emu,
        "GET",
        &format!("{LOC}/certificateMaps/m/certificateMapEntries"),
        None,
    )
    .await;
    assert_eq!(
        l["certificateMapEntries"].as_array().unwrap().len(),
        2,
        "{l}"
    );

    // usedBy names the entry; deleting the certificate is FAILED_PRECONDITION.
    let (_, c1) = call(&emu, "GET", &format!("{LOC}/certificates/c1"), None).await;
    assert_eq!(
        c1["usedBy"],
        json!([{"name": "//certificatemanager.googleapis.com/projects/demo-project/locations/global/certificateMaps/m/certificateMapEntries/e-a"}])
    );
    let (s, e) = call(&emu, "DELETE", &format!("{LOC}/certificates/c1"), None).await;
    assert_eq!((s, status(&e)), (400, "FAILED_PRECONDITION"), "{e}");
    assert_eq!(
        message(&e),
        "can't delete certificate that is referenced by a CertificateMapEntry or other resources"
    );
    let v = &e["error"]["details"][0];
    assert_eq!(
        v["@type"],
        "type.googleapis.com/google.rpc.PreconditionFailure"
    );
    assert_eq!(v["violations"][0]["type"], "RESOURCE_STILL_IN_USE");
    assert_eq!(
        v["violations"][0]["subject"],
        format!("projects/{N}/locations/global/certificates/c1")
    );

    // A map with entries cannot go either.
    let (s, e) = call(&emu, "DELETE", &format!("{LOC}/certificateMaps/m"), None).await;
    assert_eq!((s, status(&e)), (400, "FAILED_PRECONDITION"), "{e}");
    assert!(message(&e).contains("has nested resources"), "{e}");

    // Repoint the entry, then the old certificate can go.
    ok(
        &emu,
        "PATCH",
        &format!("{LOC}/certificateMaps/m/certificateMapEntries/e-a?updateMask=certificates"),
        Some(json!({"certificates": [cert_ref("c2")]})),
    )
    .await;
    let (s, e) = call(
        &emu,
        "PATCH",
        &format!("{LOC}/certificateMaps/m/certificateMapEntries/e-a?updateMask=hostname"),
        Some(json!({"hostname": "z.example.com"})),
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");
    ok(&emu, "DELETE", &format!("{LOC}/certificates/c1"), None).await;

    for e in ["e-a", "primary"] {
        let op = ok(
            &emu,
            "DELETE",
            &format!("{LOC}/certificateMaps/m/certificateMapEntries/{e}"),
            None,
        )
        .await;
        assert_eq!(
            op["response"]["@type"],
            "type.googleapis.com/google.protobuf.Empty"
        );
    }
    ok(&emu, "DELETE", &format!("{LOC}/certificateMaps/m"), None).await;
    ok(&emu, "DELETE", &format!("{LOC}/certificates/c2"), None).await;
    let (s, _) = call(&emu, "GET", &format!("{LOC}/certificateMaps/m"), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn lists_page_filter_and_order() {
    let emu = start().await;
    for i in 0..5 {
        let mut body = cert_body(&["a.example.com"]);
        body["labels"]["n"] = json!(format!("v{}", i % 2));
        ok(
            &emu,
            "POST",
            &format!("{LOC}/certificates?certificateId=c{i}"),
            Some(body),
        )
        .await;
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("{LOC}/certificates?pageSize=2");
        if let Some(t) = &token {
            path.push_str(&format!("&pageToken={t}"));
        }
        let (s, l) = call(&emu, "GET", &path, None).await;
        assert_eq!(s, 200, "{l}");
        pages += 1;
        for c in l["certificates"].as_array().unwrap() {
            names.push(
                c["name"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        match l["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);

    let (_, l) = call(
        &emu,
        "GET",
        &format!(
            "{LOC}/certificates?filter=labels.n%3Dv1%20AND%20labels.owner%3A*&orderBy=name%20desc"
        ),
        None,
    )
    .await;
    let got: Vec<&str> = l["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(got, ["c3", "c1"]);
    let (s, e) = call(
        &emu,
        "GET",
        &format!("{LOC}/certificates?pageToken=garbage"),
        None,
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");
    let (s, e) = call(
        &emu,
        "GET",
        &format!("{LOC}/certificates?filter=bogus"),
        None,
    )
    .await;
    assert_eq!((s, status(&e)), (400, "INVALID_ARGUMENT"), "{e}");

    let (_, ops) = call(&emu, "GET", &format!("{LOC}/operations"), None).await;
    assert_eq!(ops["operations"].as_array().unwrap().len(), 5);
    let name = ops["operations"][0]["name"].as_str().unwrap().to_string();
    let (s, v) = call(&emu, "DELETE", &format!("v1/{name}"), None).await;
    assert_eq!((s, v), (200, json!({})));
    let (s, _) = call(&emu, "GET", &format!("v1/{name}"), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn locations_projects_iam_faults_and_the_latency_model() {
    let emu = start().await;
    let base = emu.base_url();
    let c = CLIENT.with(Clone::clone);

    let (s, e) = call(
        &emu,
        "GET",
        "v1/projects/demo-project/locations/us-central1/certificates",
        None,
    )
    .await;
    assert_eq!((s, status(&e)), (404, "NOT_FOUND"), "{e}");
    // `-`: every location (and every map), for lists only.
    let (s, l) = call(
        &emu,
        "GET",
        "v1/projects/demo-project/locations/-/certificateMaps/-/certificateMapEntries",
        None,
    )
    .await;
    assert_eq!((s, l), (200, json!({})));
    let (s, e) = call(
        &emu,
        "GET",
        "v1/projects/demo-project/locations/-/certificates/c1",
        None,
    )
    .await;
    assert_eq!((s, status(&e)), (404, "NOT_FOUND"), "{e}");
    let (s, e) = call(
        &emu,
        "GET",
        "v1/projects/not-mine/locations/global/certificates",
        None,
    )
    .await;
    assert_eq!((s, status(&e)), (403, "PERMISSION_DENIED"), "{e}");

    // IAM: an entry needs `certs.use` on its certificates.
    cert(&emu, "c1", &["a.example.com"]).await;
    map(&emu, "m").await;
    c.post(format!("{base}emulator/iam/denied"))
        .json(&json!({"permissions": ["certificatemanager.certs.use"]}))
        .send()
        .await
        .unwrap();
    let (s, e) = entry(
        &emu,
        "m",
        "e",
        json!({"hostname": "a.example.com", "certificates": [cert_ref("c1")]}),
    )
    .await;
    assert_eq!((s, status(&e)), (403, "PERMISSION_DENIED"), "{e}");
    assert_eq!(e["error"]["details"][0]["reason"], "IAM_PERMISSION_DENIED");
    c.post(format!("{base}emulator/iam/denied"))
        .json(&json!({"permissions": []}))
        .send()
        .await
        .unwrap();
    let checked: Vec<String> = c
        .get(format!("{base}emulator/iam/checked"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "certificatemanager.certs.create",
        "certificatemanager.certmaps.create",
        "certificatemanager.certmapentries.create",
        "certificatemanager.certs.use",
    ] {
        assert!(checked.iter().any(|c| c == p), "{p} not in {checked:?}");
    }

    // An operation fault: the operation ends with the error, nothing is created.
    c.post(format!("{base}emulator/faults"))
        .json(
            &json!({"method": "certificatemanager.projects.locations.certificates.create",
                      "kind": "operation", "status": 503, "count": 1}),
        )
        .send()
        .await
        .unwrap();
    let (s, op) = call(
        &emu,
        "POST",
        &format!("{LOC}/certificates?certificateId=faulty"),
        Some(cert_body(&["a.example.com"])),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    let op = done(&emu, &op).await;
    assert_eq!(op["error"]["code"], 14, "{op}");
    let (s, _) = call(&emu, "GET", &format!("{LOC}/certificates/faulty"), None).await;
    assert_eq!(s, 404);
    // An error fault: Google's 503 in the AIP-193 shape.
    c.post(format!("{base}emulator/faults"))
        .json(&json!({"method": "certificatemanager.*", "status": 503, "count": 1}))
        .send()
        .await
        .unwrap();
    let (s, e) = call(&emu, "GET", &format!("{LOC}/certificates/c1"), None).await;
    assert_eq!((s, status(&e)), (503, "UNAVAILABLE"), "{e}");

    // Under a latency model the operation is not done when it starts.
    c.post(format!("{base}emulator/latency"))
        .json(&json!({"operation_ms": {"certificatemanager": 300}}))
        .send()
        .await
        .unwrap();
    let (s, op) = call(
        &emu,
        "POST",
        &format!("{LOC}/certificates?certificateId=slow"),
        Some(cert_body(&["a.example.com"])),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    assert!(op.get("done").is_none(), "{op}");
    let op = done(&emu, &op).await;
    assert!(op["metadata"]["endTime"].is_string(), "{op}");
    assert_eq!(op["response"]["name"], cert_ref("slow"));
    let checked: Vec<String> = c
        .get(format!("{base}emulator/iam/checked"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        checked
            .iter()
            .any(|c| c == "certificatemanager.operations.get"),
        "{checked:?}"
    );
}

/// URL map -> HTTPS proxy with an sslCertificate; a map with two entries.
async fn proxy_and_map(emu: &Emulator) {
    let compute = |path: &str| format!("compute/v1/projects/{P}/{path}");
    let wait = |v: Value| async move { v };
    let (s, v) = call(
        emu,
        "POST",
        &compute("global/urlMaps"),
        Some(json!({"name": "um", "defaultUrlRedirect": {"httpsRedirect": true}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (pem, key) = pem_for(&["legacy.example.com"]);
    let (s, v) = call(
        emu,
        "POST",
        &compute("global/sslCertificates"),
        Some(json!({"name": "legacy", "type": "SELF_MANAGED",
                    "selfManaged": {"certificate": pem, "privateKey": key}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        emu,
        "POST",
        &compute("global/targetHttpsProxies"),
        Some(
            json!({"name": "thp", "urlMap": format!("{LINK}global/urlMaps/um"),
                    "sslCertificates": [format!("{LINK}global/sslCertificates/legacy")]}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait(v).await;
    cert(emu, "c-a", &["a.example.com"]).await;
    cert(emu, "c-wild", &["*.example.com"]).await;
    cert(emu, "c-primary", &["primary.example.com"]).await;
    map(emu, "m").await;
    for (id, body) in [
        (
            "a",
            json!({"hostname": "a.example.com", "certificates": [cert_ref("c-a")]}),
        ),
        (
            "wild",
            json!({"hostname": "*.example.com", "certificates": [cert_ref("c-wild")]}),
        ),
        (
            "primary",
            json!({"matcher": "PRIMARY", "certificates": [cert_ref("c-primary")]}),
        ),
    ] {
        let (s, v) = entry(emu, "m", id, body).await;
        assert_eq!(s, 200, "{v}");
    }
}

async fn served(emu: &Emulator, sni: &str) -> (u16, Value) {
    call(
        emu,
        "GET",
        &format!("emulator/served?proxy=thp&sni={sni}"),
        None,
    )
    .await
}

#[tokio::test]
async fn a_proxy_with_a_map_serves_the_entry_for_the_sni_name() {
    let emu = start().await;
    proxy_and_map(&emu).await;
    let set = |map: Option<&str>| {
        let body = match map {
            Some(m) => json!({"certificateMap": format!("{MAP_ROOT}{m}")}),
            None => json!({}),
        };
        let emu = &emu;
        async move {
            call(
                emu,
                "POST",
                &format!("compute/v1/projects/{P}/global/targetHttpsProxies/thp/setCertificateMap"),
                Some(body),
            )
            .await
        }
    };

    // Before: the proxy's sslCertificate.
    let (s, v) = served(&emu, "a.example.com").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["source"], "sslCertificates");

    // A map that does not exist, a malformed reference: refused.
    let (s, e) = set(Some("ghost")).await;
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["error"]["errors"][0]["reason"], "notFound");
    let (s, e) = call(
        &emu,
        "POST",
        &format!("compute/v1/projects/{P}/global/targetHttpsProxies/thp/setCertificateMap"),
        Some(json!({"certificateMap": "projects/demo-project/locations/global/certificateMaps/m"})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["errors"][0]["reason"].as_str()),
        (400, Some("invalid")),
        "{e}"
    );

    // The map's API URL (what gcloud sends) is taken and stored as the full name.
    let (s, op) = call(
        &emu,
        "POST",
        &format!("compute/v1/projects/{P}/global/targetHttpsProxies/thp/setCertificateMap"),
        Some(json!({"certificateMap": "https://certificatemanager.googleapis.com/v1/projects/demo-project/locations/global/certificateMaps/m"})),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(op["operationType"], "setCertificateMap");
    let (_, px) = call(
        &emu,
        "GET",
        &format!("compute/v1/projects/{P}/global/targetHttpsProxies/thp"),
        None,
    )
    .await;
    assert_eq!(px["certificateMap"], format!("{MAP_ROOT}m"));

    // The map takes precedence over sslCertificates: exact, wildcard, PRIMARY.
    for (sni, want_cert, want_entry) in [
        ("a.example.com", "c-a", "a"),
        ("b.example.com", "c-wild", "wild"),
        ("other.test", "c-primary", "primary"),
    ] {
        let (s, v) = served(&emu, sni).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["source"], "certificateMap");
        assert_eq!(v["certificate"], cert_ref(want_cert), "{sni}");
        assert!(
            v["entry"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{want_entry}"))
        );
    }

    // Patching the certificate in place changes what is served at once.
    let (_, before) = served(&emu, "a.example.com").await;
    ok(
        &emu,
        "PATCH",
        &format!("{LOC}/certificates/c-a?updateMask=selfManaged"),
        Some(json!({"selfManaged": cert_body(&["a.example.com"])["selfManaged"]})),
    )
    .await;
    let (_, after) = served(&emu, "a.example.com").await;
    assert_ne!(before["pem"], after["pem"]);

    // The map is in use: it cannot be deleted even once empty.
    for e in ["a", "wild", "primary"] {
        ok(
            &emu,
            "DELETE",
            &format!("{LOC}/certificateMaps/m/certificateMapEntries/{e}"),
            None,
        )
        .await;
    }
    let (s, e) = call(&emu, "DELETE", &format!("{LOC}/certificateMaps/m"), None).await;
    assert_eq!((s, status(&e)), (400, "FAILED_PRECONDITION"), "{e}");
    let (s, _) = served(&emu, "a.example.com").await;
    assert_eq!(s, 404, "a map without entries serves nothing");

    // Detach: back to the sslCertificates. Without any, detaching is refused.
    let (s, op) = set(None).await;
    assert_eq!(s, 200, "{op}");
    let (_, v) = served(&emu, "a.example.com").await;
    assert_eq!(v["source"], "sslCertificates");
    ok(&emu, "DELETE", &format!("{LOC}/certificateMaps/m"), None).await;
}

#[tokio::test]
async fn a_proxy_may_be_created_with_a_map_only_and_then_not_detached() {
    let emu = start().await;
    map(&emu, "m").await;
    let compute = |path: &str| format!("compute/v1/projects/{P}/{path}");
    let (s, v) = call(
        &emu,
        "POST",
        &compute("global/urlMaps"),
        Some(json!({"name": "um", "defaultUrlRedirect": {"httpsRedirect": true}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &emu,
        "POST",
        &compute("global/targetHttpsProxies"),
        Some(
            json!({"name": "thp", "urlMap": format!("{LINK}global/urlMaps/um"),
                    "certificateMap": format!("{MAP_ROOT}m")}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, e) = call(
        &emu,
        "POST",
        &compute("global/targetHttpsProxies/thp/setCertificateMap"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(
        e["error"]["message"],
        "There must be at least one certificate configured for a target proxy."
    );
    // gclbTargets lists the proxy once a forwarding rule points at it.
    let (s, v) = call(
        &emu,
        "POST",
        &compute("global/forwardingRules"),
        Some(json!({"name": "fr", "portRange": "443",
                    "target": format!("{LINK}global/targetHttpsProxies/thp"),
                    "loadBalancingScheme": "EXTERNAL_MANAGED"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, m) = call(&emu, "GET", &format!("{LOC}/certificateMaps/m"), None).await;
    assert_eq!(
        m["gclbTargets"][0]["targetHttpsProxy"],
        "//compute.googleapis.com/projects/demo-project/global/targetHttpsProxies/thp"
    );
    assert_eq!(m["gclbTargets"][0]["ipConfigs"][0]["ports"], json!([443]));
}

#[tokio::test]
async fn an_entry_serves_ecdsa_before_rsa_and_a_disabled_api_is_403() {
    let emu = start().await;
    proxy_and_map(&emu).await;
    let rsa_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa_pem = rcgen::CertificateParams::new(vec!["r.example.com".to_string()])
        .unwrap()
        .self_signed(&rsa_key)
        .unwrap()
        .pem();
    ok(
        &emu,
        "POST",
        &format!("{LOC}/certificates?certificateId=c-rsa"),
        Some(json!({"selfManaged": {"pemCertificate": rsa_pem, "pemPrivateKey": rsa_key.serialize_pem()}})),
    )
    .await;
    cert(&emu, "c-ec", &["r.example.com"]).await;
    let (s, v) = entry(
        &emu,
        "m",
        "r",
        json!({"hostname": "r.example.com", "certificates": [cert_ref("c-rsa"), cert_ref("c-ec")]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &emu,
        "POST",
        &format!("compute/v1/projects/{P}/global/targetHttpsProxies/thp/setCertificateMap"),
        Some(json!({"certificateMap": format!("{MAP_ROOT}m")})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = served(&emu, "r.example.com").await;
    assert_eq!(v["certificate"], cert_ref("c-ec"));

    let c = CLIENT.with(Clone::clone);
    c.post(format!("{}emulator/apis", emu.base_url()))
        .json(&json!({"api": "certificatemanager.googleapis.com", "enabled": false}))
        .send()
        .await
        .unwrap();
    let (s, e) = call(&emu, "GET", &format!("{LOC}/certificates"), None).await;
    assert_eq!((s, status(&e)), (403, "PERMISSION_DENIED"), "{e}");
    assert_eq!(e["error"]["details"][0]["reason"], "SERVICE_DISABLED");
}
