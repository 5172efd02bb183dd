//! Certificates held in a Certificate Manager map (`lb::certmap`), end to end
//! against the emulator and Pebble: first issuance into a new map, renewal in
//! place, many certificates on one map, a hand-made entry taken over, crash
//! injection at every step boundary, GCP faults. What a proxy serves is asked
//! of the emulator (`/emulator/served`): it terminates no TLS.

mod support;

use gclb_acme::certs;
use gclb_acme::config::Config;
use gclb_acme::gcp::certificatemanager::{NewCertificate, SelfManaged};
use gclb_acme::lb::{LbError, naming};
use gclb_acme::reconcile::{Done, RenewError};
use serde_json::{Value, json};
use support::gcp::{Cloud, PROJECT};
use support::lb::{Lab, NAMES, finalized, self_signed};

const MAP: &str = "sites";
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The lab's configuration with certificate `app` held in map [`MAP`],
/// served by `proxies`.
fn map_config(lab: &Lab, proxies: &[&str]) -> Config {
    let mut config = lab.config(proxies);
    config.certificates[0].certificate_map = Some(MAP.into());
    config
}

/// A target HTTPS proxy `name` serving map `map` (which must exist).
async fn map_proxy(cloud: &Cloud, name: &str, map: &str) {
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/targetHttpsProxies"),
            json!({"name": name, "urlMap": support::lb::link("urlMaps", "um"),
                   "certificateMap": cloud.gcp().certificate_map_reference(map)}),
        )
        .await;
    assert_eq!(s, 200, "proxy {name}: {b}");
}

/// What `proxy` serves for `sni`: `(certificate id, entry id, leaf serial)`.
async fn served(cloud: &Cloud, proxy: &str, sni: &str) -> (String, String, String) {
    let (s, v) = cloud
        .get(&format!("emulator/served?proxy={proxy}&sni={sni}"))
        .await;
    assert_eq!(s, 200, "served {proxy} {sni}: {v}");
    assert_eq!(v["source"], "certificateMap", "{v}");
    let last = |k: &str| {
        v[k].as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let pem = v["pem"].as_str().expect("pem");
    let leaf = certs::leaf_info(&certs::split_chain(pem).expect("chain")[0]).expect("leaf");
    (last("certificate"), last("entry"), leaf.serial_hex)
}

/// Successful Certificate Manager mutations in the request log.
fn cm_mutations(reqs: &[Value]) -> Vec<String> {
    reqs.iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| s < 300))
        .filter(|r| r["method"] != "GET")
        .filter_map(|r| r["id"].as_str())
        .filter(|id| id.starts_with("certificatemanager."))
        .map(str::to_string)
        .collect()
}

/// Every certificate id and entry id in the project's map, sorted.
async fn inventory(cloud: &Cloud) -> (Vec<String>, Vec<String>) {
    let gcp = cloud.gcp();
    let mut certs: Vec<String> = gcp
        .list_certificates(None)
        .await
        .expect("certificates")
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    certs.sort();
    let mut entries: Vec<String> = match gcp.list_certificate_map_entries(MAP, None).await {
        Ok(v) => v.iter().map(|e| e.id().to_string()).collect(),
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("entries: {e}"),
    };
    entries.sort();
    (certs, entries)
}

/// Our entry ids for [`NAMES`], sorted.
fn our_entries() -> Vec<String> {
    let mut v: Vec<String> = NAMES.iter().map(|n| naming::map_entry_id(n)).collect();
    v.sort();
    v
}

#[tokio::test]
async fn first_issuance_creates_map_certificate_and_entries_then_renewal_patches_in_place() {
    let lab = Lab::start().await;
    let config = map_config(&lab, &[]);
    let renewer = lab.renewer(&config).await;
    let cert = &config.certificates[0];

    // Nothing there yet: observing is "nothing served", not an error.
    let obs = {
        use gclb_acme::lb::CertificateTarget;
        gclb_acme::lb::choose(&renewer.gcp, cert)
            .observe(cert)
            .await
            .expect("observe an absent map")
    };
    assert_eq!(obs.proxies.len(), 2);
    assert!(obs.proxies.iter().all(|p| p.certificates.is_empty()));

    let out = renewer.renew(cert, false).await.expect("first issuance");
    let Done::Installed { issued, report, .. } = &out.done else {
        panic!("expected an installation, got {:?}", out.done);
    };
    assert!(issued);
    assert!(report.uploaded);
    assert_eq!(report.resource, naming::cm_certificate_id("app"));
    assert_eq!(report.swapped.len(), 2, "{report:?}");
    assert_eq!(finalized(&renewer), 1);

    let gcp = lab.cloud.gcp();
    let map = gcp.get_certificate_map(MAP).await.unwrap().expect("map");
    assert!(naming::cm_is_ours("app", &map.labels), "{map:?}");
    let c = gcp
        .get_certificate(&naming::cm_certificate_id("app"))
        .await
        .unwrap()
        .expect("certificate");
    assert!(naming::cm_is_ours("app", &c.labels));
    let (certs_now, entries) = inventory(&lab.cloud).await;
    assert_eq!(certs_now, [naming::cm_certificate_id("app")]);
    assert_eq!(entries, our_entries());

    // A proxy serving the map hands out our certificate for every name.
    map_proxy(&lab.cloud, "p1", MAP).await;
    let (id, _, first_serial) = served(&lab.cloud, "p1", "example.test").await;
    assert_eq!(id, naming::cm_certificate_id("app"));
    let (id, entry, serial) = served(&lab.cloud, "p1", "www.example.test").await;
    assert_eq!(id, naming::cm_certificate_id("app"));
    assert_eq!(entry, naming::map_entry_id("*.example.test"));
    assert_eq!(serial, first_serial);

    // Healthy now: nothing to do, nothing sent.
    let config = map_config(&lab, &["p1"]);
    let renewer = lab.renewer(&config).await;
    let cert = &config.certificates[0];
    lab.cloud.clear_requests().await;
    let out = renewer.renew(cert, false).await.expect("healthy");
    assert!(matches!(out.done, Done::Healthy { .. }), "{:?}", out.done);
    assert!(cm_mutations(&lab.cloud.requests().await).is_empty());

    // A forced renewal: one new order, exactly one mutation (the patch), the
    // served serial changes, no resource added.
    lab.cloud.clear_requests().await;
    let out = renewer.renew(cert, true).await.expect("renewal");
    let Done::Installed { report, .. } = &out.done else {
        panic!("expected an installation, got {:?}", out.done);
    };
    assert!(report.uploaded && report.swapped.is_empty(), "{report:?}");
    assert_eq!(finalized(&renewer), 1);
    let reqs = lab.cloud.requests().await;
    assert_eq!(
        cm_mutations(&reqs),
        ["certificatemanager.projects.locations.certificates.patch"]
    );
    let (_, _, renewed) = served(&lab.cloud, "p1", "example.test").await;
    assert_ne!(renewed, first_serial);
    let (_, _, wild) = served(&lab.cloud, "p1", "a.example.test").await;
    assert_eq!(wild, renewed);
    assert_eq!(
        inventory(&lab.cloud).await.0,
        [naming::cm_certificate_id("app")]
    );
    assert_eq!(inventory(&lab.cloud).await.1, our_entries());
}

#[tokio::test]
async fn a_proxy_not_serving_the_map_and_a_certificate_with_our_id_not_ours_are_refused() {
    let lab = Lab::start().await;
    let legacy = lab.upload(&["legacy.example.test"], 0, 90, None, "legacy").await;
    lab.proxy("plain", &[&legacy]).await;
    let config = map_config(&lab, &["plain"]);
    let renewer = lab.renewer(&config).await;
    let err = renewer
        .renew(&config.certificates[0], false)
        .await
        .expect_err("a proxy without the map");
    assert!(
        matches!(&err, RenewError::Lb(LbError::MapNotOnProxy { proxy, .. }) if proxy == "plain"),
        "{err}"
    );
    assert!(err.to_string().contains("--certificate-map=sites"), "{err}");
    assert_eq!(finalized(&renewer), 0);

    // Someone else's certificate under our id: never overwritten.
    let gcp = lab.cloud.gcp();
    let theirs = self_signed(&NAMES, 0, 90);
    let op = gcp
        .create_certificate(
            &naming::cm_certificate_id("app"),
            &NewCertificate {
                description: Some("by hand".into()),
                labels: Default::default(),
                self_managed: SelfManaged {
                    pem_certificate: theirs.chain_pem.clone(),
                    pem_private_key: theirs.key_pem.expose().to_string(),
                },
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let config = map_config(&lab, &[]);
    let renewer = lab.renewer(&config).await;
    let err = renewer
        .renew(&config.certificates[0], false)
        .await
        .expect_err("our id taken");
    assert!(
        matches!(&err, RenewError::Lb(LbError::NotOurs { .. })),
        "{err}"
    );
    let c = gcp
        .get_certificate(&naming::cm_certificate_id("app"))
        .await
        .unwrap()
        .unwrap();
    let leaf =
        certs::leaf_info(&certs::split_chain(c.pem_certificate.as_deref().unwrap()).unwrap()[0])
            .unwrap();
    assert_eq!(leaf.serial_hex, theirs.leaf.serial_hex, "left untouched");
}
