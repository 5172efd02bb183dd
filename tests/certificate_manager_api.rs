//! The typed Certificate Manager client (`gcp::certificatemanager`) and Compute's
//! `setCertificateMap` against the emulator: the whole lifecycle of a map on a
//! proxy, Google's errors kept, faults retried or surfaced, list paging, and the
//! mutations each way of renewing costs.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use gclb_acme::gcp::certificatemanager::{
    Certificate, CertificateMap, CertificateMapEntry, CertificatePatch, EntryMatch, EntryPatch,
    MapFields, NewCertificate, NewMapEntry, SelfManaged, is_already_exists, is_in_use,
};
use gclb_acme::gcp::{Api, Gcp};
use serde_json::json;
use support::gcp::{Cloud, PROJECT};

const WAIT: Duration = Duration::from_secs(30);
const LINK: &str = "https://www.googleapis.com/compute/v1/projects/demo-project/";

/// A self-signed leaf for `names` and its key (the emulator checks shape and
/// key, not trust).
fn self_managed(names: &[&str]) -> SelfManaged {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    SelfManaged {
        pem_certificate: params.self_signed(&key).unwrap().pem(),
        pem_private_key: key.serialize_pem(),
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("managed-by".to_string(), "gclb-acme".to_string())])
}

async fn new_cert(gcp: &Gcp, id: &str, names: &[&str]) -> Certificate {
    let op = gcp
        .create_certificate(
            id,
            &NewCertificate {
                description: Some("test".into()),
                labels: labels(),
                self_managed: self_managed(names),
            },
        )
        .await
        .unwrap();
    gcp.certificate_manager_result(op, WAIT).await.unwrap()
}

async fn new_map(gcp: &Gcp, id: &str) -> CertificateMap {
    let op = gcp
        .create_certificate_map(
            id,
            &MapFields {
                description: None,
                labels: Some(labels()),
            },
        )
        .await
        .unwrap();
    gcp.certificate_manager_result(op, WAIT).await.unwrap()
}

async fn new_entry(
    gcp: &Gcp,
    map: &str,
    id: &str,
    matches: EntryMatch,
    cert: &str,
) -> CertificateMapEntry {
    let op = gcp
        .create_certificate_map_entry(
            map,
            id,
            &NewMapEntry {
                matches,
                certificates: vec![gcp.certificate_name(cert)],
                description: None,
                labels: labels(),
            },
        )
        .await
        .unwrap();
    gcp.certificate_manager_result(op, WAIT).await.unwrap()
}

/// URL map, an sslCertificate and an HTTPS proxy serving it, seeded directly.
async fn proxy(cloud: &Cloud) {
    let compute = |p: &str| format!("compute/v1/projects/{PROJECT}/{p}");
    let (s, b) = cloud
        .post(
            &compute("global/urlMaps"),
            json!({"name": "um", "defaultUrlRedirect": {"httpsRedirect": true}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let sm = self_managed(&["legacy.example.com"]);
    let (s, b) = cloud
        .post(
            &compute("global/sslCertificates"),
            json!({"name": "legacy", "type": "SELF_MANAGED",
                   "selfManaged": {"certificate": sm.pem_certificate, "privateKey": sm.pem_private_key}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = cloud
        .post(
            &compute("global/targetHttpsProxies"),
            json!({"name": "thp", "urlMap": format!("{LINK}global/urlMaps/um"),
                   "sslCertificates": [format!("{LINK}global/sslCertificates/legacy")]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

/// What the proxy serves for `sni`: `(source, certificate id, PEM)`.
async fn served(cloud: &Cloud, sni: &str) -> (String, String, String) {
    let (s, v) = cloud
        .get(&format!("emulator/served?proxy=thp&sni={sni}"))
        .await;
    assert_eq!(s, 200, "{v}");
    (
        v["source"].as_str().unwrap().to_string(),
        v["certificate"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string(),
        v["pem"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_map_on_a_proxy_from_creation_to_teardown() {
    let cloud = Cloud::start().await;
    let gcp = cloud.gcp();
    proxy(&cloud).await;

    let cert = new_cert(&gcp, "site-a", &["a.example.com"]).await;
    assert_eq!(cert.id(), "site-a");
    assert_eq!(cert.san_dnsnames, ["a.example.com"]);
    assert!(cert.self_managed.is_some());
    assert!(
        cert.pem_certificate
            .as_deref()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let fallback = new_cert(&gcp, "site-fallback", &["*.example.com"]).await;
    let got = gcp.get_certificate("site-a").await.unwrap().unwrap();
    assert_eq!(got.labels, labels());
    assert!(got.expire_time.is_some());
    assert!(gcp.get_certificate("nope").await.unwrap().is_none());
    let listed = gcp
        .list_certificates(Some("labels.managed-by=gclb-acme"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);

    let map = new_map(&gcp, "sites").await;
    assert_eq!(map.id(), "sites");
    let e = new_entry(
        &gcp,
        "sites",
        "a",
        EntryMatch::Hostname("a.example.com".into()),
        "site-a",
    )
    .await;
    assert_eq!(e.hostname.as_deref(), Some("a.example.com"));
    assert_eq!(e.certificate_ids(), ["site-a"]);
    let p = new_entry(&gcp, "sites", "primary", EntryMatch::Primary, fallback.id()).await;
    assert!(p.is_primary());
    let entries = gcp
        .list_certificate_map_entries("sites", None)
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    let used = gcp.get_certificate("site-a").await.unwrap().unwrap();
    assert_eq!(used.used_by.len(), 1);

    // Attach the map to the proxy: it serves the map from then on.
    assert_eq!(served(&cloud, "a.example.com").await.0, "sslCertificates");
    let op = gcp
        .set_certificate_map(
            "thp",
            Some(&gcp.certificate_map_reference("sites")),
            "attach",
        )
        .await
        .unwrap();
    gcp.wait_operation(op, WAIT).await.unwrap();
    let px = gcp.get_target_https_proxy("thp").await.unwrap();
    assert_eq!(
        px.certificate_map.as_deref(),
        Some(
            "//certificatemanager.googleapis.com/projects/demo-project/locations/global/certificateMaps/sites"
        )
    );
    let (source, id, before) = served(&cloud, "a.example.com").await;
    assert_eq!((source.as_str(), id.as_str()), ("certificateMap", "site-a"));
    assert_eq!(served(&cloud, "b.example.com").await.1, "site-fallback");

    // Renewal in place: patch, and the proxy serves the new chain.
    let renewed = self_managed(&["a.example.com"]);
    let op = gcp
        .patch_certificate(
            "site-a",
            &CertificatePatch {
                self_managed: Some(renewed.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let after: Certificate = gcp.certificate_manager_result(op, WAIT).await.unwrap();
    assert_eq!(
        after.pem_certificate.as_deref(),
        Some(renewed.pem_certificate.as_str())
    );
    let (_, _, now) = served(&cloud, "a.example.com").await;
    assert_ne!(now, before);
    assert_eq!(now, renewed.pem_certificate);

    // In use: the delete is refused, Google's status and message kept.
    let err = gcp.delete_certificate("site-a").await.unwrap_err();
    assert!(is_in_use(&err), "{err}");
    let api = err.api().unwrap();
    assert_eq!(
        (api.code, api.status.as_str()),
        (400, "FAILED_PRECONDITION")
    );
    assert!(
        api.message.contains("referenced by a CertificateMapEntry"),
        "{err}"
    );
    let err = gcp.delete_certificate_map("sites").await.unwrap_err();
    assert!(is_in_use(&err), "{err}");

    // Repoint an entry and label it.
    let op = gcp
        .patch_certificate_map_entry(
            "sites",
            "a",
            &EntryPatch {
                certificates: Some(vec![gcp.certificate_name("site-fallback")]),
                labels: Some(BTreeMap::from([("generation".into(), "2".into())])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e: CertificateMapEntry = gcp.certificate_manager_result(op, WAIT).await.unwrap();
    assert_eq!(e.certificate_ids(), ["site-fallback"]);
    assert_eq!(e.labels["generation"], "2");
    assert_eq!(served(&cloud, "a.example.com").await.1, "site-fallback");

    // Detach, then take everything down in order.
    let op = gcp
        .set_certificate_map("thp", None, "detach")
        .await
        .unwrap();
    gcp.wait_operation(op, WAIT).await.unwrap();
    assert!(
        gcp.get_target_https_proxy("thp")
            .await
            .unwrap()
            .certificate_map
            .is_none()
    );
    assert_eq!(served(&cloud, "a.example.com").await.0, "sslCertificates");
    for e in ["a", "primary"] {
        let op = gcp.delete_certificate_map_entry("sites", e).await.unwrap();
        gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    }
    assert!(
        gcp.get_certificate_map_entry("sites", "a")
            .await
            .unwrap()
            .is_none()
    );
    let op = gcp.delete_certificate_map("sites").await.unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    for c in ["site-a", "site-fallback"] {
        let op = gcp.delete_certificate(c).await.unwrap();
        gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    }
    assert!(gcp.list_certificates(None).await.unwrap().is_empty());
    assert!(gcp.get_certificate_map("sites").await.unwrap().is_none());
    // A delete repeated after success: 404, which callers take as done.
    assert!(
        gcp.delete_certificate("site-a")
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn errors_keep_googles_code_status_and_message() {
    let cloud = Cloud::start().await;
    let gcp = cloud.gcp();
    new_cert(&gcp, "dup", &["a.example.com"]).await;
    let err = gcp
        .create_certificate(
            "dup",
            &NewCertificate {
                description: None,
                labels: BTreeMap::new(),
                self_managed: self_managed(&["a.example.com"]),
            },
        )
        .await
        .unwrap_err();
    assert!(is_already_exists(&err), "{err}");
    let api = err.api().unwrap();
    assert_eq!(api.status, "ALREADY_EXISTS");
    assert!(
        api.message
            .contains("projects/demo-project/locations/global/certificates/dup")
    );

    let mut bad = self_managed(&["a.example.com"]);
    bad.pem_private_key = self_managed(&["a.example.com"]).pem_private_key;
    let err = gcp
        .create_certificate(
            "mismatch",
            &NewCertificate {
                description: None,
                labels: BTreeMap::new(),
                self_managed: bad,
            },
        )
        .await
        .unwrap_err();
    let api = err.api().unwrap();
    assert_eq!((api.code, api.status.as_str()), (400, "INVALID_ARGUMENT"));
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");

    // A map entry on a map that does not exist: 404.
    let err = gcp
        .create_certificate_map_entry(
            "ghost",
            "e",
            &NewMapEntry {
                matches: EntryMatch::Primary,
                certificates: vec![gcp.certificate_name("dup")],
                description: None,
                labels: BTreeMap::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // A map that does not exist on a proxy: Compute's 404.
    proxy(&cloud).await;
    let err = gcp
        .set_certificate_map("thp", Some(&gcp.certificate_map_reference("ghost")), "x")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // A failure inside an operation: Err with Google's status, nothing created.
    cloud
        .fault(
            json!({"method": "certificatemanager.projects.locations.certificateMaps.create",
                      "kind": "operation", "status": 503, "count": 1}),
        )
        .await;
    let op = gcp
        .create_certificate_map("faulty", &MapFields::default())
        .await
        .unwrap();
    let err = gcp.wait_certificate_manager(op, WAIT).await.unwrap_err();
    let api = err.api().unwrap();
    assert_eq!(
        (api.code, api.status.as_str()),
        (503, "UNAVAILABLE"),
        "{err}"
    );
    assert!(gcp.get_certificate_map("faulty").await.unwrap().is_none());
}

#[tokio::test]
async fn transient_errors_are_retried_and_lists_follow_pages() {
    let cloud = Cloud::start().await;
    let gcp = cloud.gcp();
    cloud
        .fault(
            json!({"method": "certificatemanager.projects.locations.certificateMaps.create",
                      "status": 503, "count": 2}),
        )
        .await;
    new_map(&gcp, "m0").await;
    assert_eq!(
        cloud
            .count(
                "certificatemanager.projects.locations.certificateMaps.create",
                false
            )
            .await,
        3
    );
    let stats = gcp.stats.snapshot();
    assert_eq!(
        stats
            .get(&(Api::CertificateManager, "certificateMaps.create", 503))
            .map(|s| s.0),
        Some(2)
    );

    // 1001 maps: more than a page of 1000.
    for i in 1..=1000 {
        let op = gcp
            .create_certificate_map(&format!("m{i}"), &MapFields::default())
            .await
            .unwrap();
        assert!(op.done, "{op:?}");
    }
    cloud.clear_requests().await;
    let maps = gcp.list_certificate_maps(None).await.unwrap();
    assert_eq!(maps.len(), 1001);
    assert_eq!(
        cloud
            .count(
                "certificatemanager.projects.locations.certificateMaps.list",
                true
            )
            .await,
        2
    );
}

/// The two ways of renewing a certificate served through a map, counted: patch
/// in place is one mutation whatever the number of entries; a new certificate
/// is a create, one patch per entry using the old one, and a delete.
#[tokio::test]
async fn mutations_per_renewal_in_place_and_by_repointing() {
    let cloud = Cloud::start().await;
    let gcp = cloud.gcp();
    new_cert(&gcp, "gen-1", &["a.example.com", "b.example.com"]).await;
    new_map(&gcp, "m").await;
    for (id, host) in [("a", "a.example.com"), ("b", "b.example.com")] {
        new_entry(&gcp, "m", id, EntryMatch::Hostname(host.into()), "gen-1").await;
    }
    let mutations = |reqs: &[serde_json::Value]| {
        reqs.iter()
            .filter(|r| r["method"] != "GET" && r["status"].as_u64().is_some_and(|s| s < 300))
            .count()
    };

    cloud.clear_requests().await;
    let op = gcp
        .patch_certificate(
            "gen-1",
            &CertificatePatch {
                self_managed: Some(self_managed(&["a.example.com", "b.example.com"])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let in_place = cloud.requests().await;

    cloud.clear_requests().await;
    new_cert(&gcp, "gen-2", &["a.example.com", "b.example.com"]).await;
    for e in ["a", "b"] {
        let op = gcp
            .patch_certificate_map_entry(
                "m",
                e,
                &EntryPatch {
                    certificates: Some(vec![gcp.certificate_name("gen-2")]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    }
    let op = gcp.delete_certificate("gen-1").await.unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let repoint = cloud.requests().await;

    assert_eq!(mutations(&in_place), 1);
    assert_eq!(mutations(&repoint), 2 + 2);
    println!(
        "renewal of a certificate behind 2 entries: in place {} mutation(s), {} request(s); \
         new certificate + repoint + delete {} mutation(s), {} request(s)",
        mutations(&in_place),
        in_place.len(),
        mutations(&repoint),
        repoint.len()
    );
}

/// Wall time of one renewal each way under the emulator's `google` latency
/// profile (round trips 60-120 ms, a Certificate Manager operation 2 s): printed,
/// not asserted (machines are noisy).
#[tokio::test]
async fn renewal_wall_time_under_the_google_latency_profile() {
    let cloud = Cloud::start().await;
    let gcp = cloud.gcp();
    new_cert(&gcp, "gen-1", &["a.example.com"]).await;
    new_map(&gcp, "m").await;
    new_entry(
        &gcp,
        "m",
        "a",
        EntryMatch::Hostname("a.example.com".into()),
        "gen-1",
    )
    .await;
    let (s, b) = cloud
        .post("emulator/latency", json!({"profile": "google", "seed": 1}))
        .await;
    assert_eq!(s, 200, "{b}");

    let started = std::time::Instant::now();
    let op = gcp
        .patch_certificate(
            "gen-1",
            &CertificatePatch {
                self_managed: Some(self_managed(&["a.example.com"])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let in_place = started.elapsed();

    let started = std::time::Instant::now();
    new_cert(&gcp, "gen-2", &["a.example.com"]).await;
    let op = gcp
        .patch_certificate_map_entry(
            "m",
            "a",
            &EntryPatch {
                certificates: Some(vec![gcp.certificate_name("gen-2")]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let op = gcp.delete_certificate("gen-1").await.unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let repoint = started.elapsed();
    let entry = gcp
        .get_certificate_map_entry("m", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.certificate_ids(), ["gen-2"]);
    println!(
        "one renewal under the google profile: in place {:.2} s, new certificate + repoint + delete {:.2} s",
        in_place.as_secs_f64(),
        repoint.as_secs_f64()
    );
}
