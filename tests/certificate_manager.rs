//! Certificates held in a Certificate Manager map (`lb::certmap`), end to end
//! against the emulator and Pebble: first issuance into a new map, renewal in
//! place, many certificates on one map, a hand-made entry taken over, crash
//! injection at every step boundary, GCP faults. What a proxy serves is asked
//! of the emulator (`/emulator/served`): it terminates no TLS.

mod support;

use gclb_acme::certs;
use gclb_acme::config::Config;
use std::sync::Arc;

use gclb_acme::gcp::certificatemanager::{
    EntryMatch, MapFields, NewCertificate, NewMapEntry, SelfManaged,
};
use gclb_acme::lb::{LbError, naming, step};
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
    // Verification ran for the listed proxy, and skipped it: no forwarding
    // rule (the emulator terminates no TLS).
    assert!(
        matches!(report.verify.as_slice(), [gclb_acme::lb::VerifyOutcome::Skipped { proxy, .. }] if proxy == "p1"),
        "{:?}",
        report.verify
    );
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

    // status: the map's entries and the certificate each serves.
    let st = gclb_acme::reconcile::status(
        &renewer.gcp,
        &config,
        &gclb_acme::state::StateDir::open(&config.state.dir)
            .unwrap()
            .into(),
    )
    .await;
    assert!(st.healthy(), "{st:?}");
    let c = &st.certificates[0];
    assert_eq!(c.target, "certificate_map");
    assert_eq!(c.certificate_map.as_deref(), Some(MAP));
    let mut names = NAMES.map(str::to_string).to_vec();
    names.sort();
    assert_eq!(
        c.proxies.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
        names
    );
    for p in &c.proxies {
        assert_eq!(p.certificate_map.as_deref(), Some(MAP));
        assert_eq!(
            p.entry.as_deref(),
            Some(naming::map_entry_id(&p.name).as_str())
        );
        assert_eq!(p.certificates.len(), 1, "{p:?}");
        let s = &p.certificates[0];
        assert_eq!(s.name, naming::cm_certificate_id("app"));
        assert!(s.ours && s.current && s.role == "ours", "{s:?}");
        assert_eq!(s.serial.as_deref(), Some(renewed.as_str()));
    }
}

#[tokio::test]
async fn a_proxy_not_serving_the_map_and_a_certificate_with_our_id_not_ours_are_refused() {
    let lab = Lab::start().await;
    let legacy = lab
        .upload(&["legacy.example.test"], 0, 90, None, "legacy")
        .await;
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
    assert!(
        err.to_string()
            .contains("gclb-acme certificate-map attach --proxy"),
        "{err}"
    );
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

/// The served leaf behind `sni` is valid now.
async fn assert_valid(cloud: &Cloud, proxy: &str, sni: &str) {
    let (s, v) = cloud
        .get(&format!("emulator/served?proxy={proxy}&sni={sni}"))
        .await;
    assert_eq!(s, 200, "nothing served for {sni}: {v}");
    let pem = v["pem"].as_str().expect("pem");
    let leaf = certs::leaf_info(&certs::split_chain(pem).expect("chain")[0]).expect("leaf");
    let now = time::OffsetDateTime::now_utc();
    assert!(
        leaf.not_before <= now && now < leaf.not_after,
        "{sni}: served certificate not valid now"
    );
}

#[tokio::test]
async fn twenty_certificates_on_one_map_are_issued_then_each_renewed_with_one_patch() {
    let lab = Lab::start().await;
    let mut config = map_config(&lab, &[]);
    config.daemon.concurrency = 8;
    let template = config.certificates[0].clone();
    config.certificates = (0..20)
        .map(|i| {
            let mut c = template.clone();
            c.name = format!("c{i}");
            c.domains = vec![format!("n{i}.example.test")];
            c.primary = i == 0;
            c
        })
        .collect();
    let renewer = lab.renewer(&config).await;
    for (name, r) in renewer.renew_all(None, false).await {
        let out = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(matches!(out.done, Done::Installed { .. }), "{name}");
    }
    assert_eq!(finalized(&renewer), 20);
    let (certs_now, entries) = inventory(&lab.cloud).await;
    assert_eq!(certs_now.len(), 20, "{certs_now:?}");
    assert_eq!(entries.len(), 21, "20 hostnames and the PRIMARY entry");
    map_proxy(&lab.cloud, "p1", MAP).await;
    let mut before = Vec::new();
    for i in 0..20 {
        let (id, entry, serial) = served(&lab.cloud, "p1", &format!("n{i}.example.test")).await;
        assert_eq!(id, naming::cm_certificate_id(&format!("c{i}")));
        assert_eq!(entry, naming::map_entry_id(&format!("n{i}.example.test")));
        before.push(serial);
    }
    // No SNI name the map knows: the PRIMARY entry, c0's certificate.
    let (id, entry, _) = served(&lab.cloud, "p1", "unknown.example.org").await;
    assert_eq!(
        (id.as_str(), entry.as_str()),
        (
            naming::cm_certificate_id("c0").as_str(),
            naming::PRIMARY_ENTRY_ID
        )
    );

    lab.cloud.clear_requests().await;
    for (name, r) in renewer.renew_all(None, true).await {
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let mutations = cm_mutations(&lab.cloud.requests().await);
    assert_eq!(mutations.len(), 20, "{mutations:?}");
    assert!(mutations.iter().all(|m| m.ends_with("certificates.patch")));
    for (i, old) in before.iter().enumerate() {
        let (_, _, serial) = served(&lab.cloud, "p1", &format!("n{i}.example.test")).await;
        assert_ne!(&serial, old, "n{i} renewed");
    }
    assert_eq!(inventory(&lab.cloud).await.1.len(), 21);
}

/// Seeds map [`MAP`] by hand: certificate `legacy` for `legacy_names`, an
/// entry `hand` for `example.test` pointing at it.
async fn hand_made_entry(cloud: &Cloud, legacy_names: &[&str]) {
    let gcp = cloud.gcp();
    let legacy = self_signed(legacy_names, 0, 90);
    let op = gcp
        .create_certificate(
            "legacy",
            &NewCertificate {
                description: Some("uploaded by hand".into()),
                labels: Default::default(),
                self_managed: SelfManaged {
                    pem_certificate: legacy.chain_pem.clone(),
                    pem_private_key: legacy.key_pem.expose().to_string(),
                },
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let op = gcp
        .create_certificate_map(MAP, &MapFields::default())
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let op = gcp
        .create_certificate_map_entry(
            MAP,
            "hand",
            &NewMapEntry {
                matches: EntryMatch::Hostname("example.test".into()),
                certificates: vec![gcp.certificate_name("legacy")],
                description: None,
                labels: Default::default(),
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    map_proxy(cloud, "p1", MAP).await;
}

#[tokio::test]
async fn a_hand_made_entry_is_taken_over_its_certificate_kept_then_deleted_once_adopted() {
    let lab = Lab::start().await;
    hand_made_entry(&lab.cloud, &["example.test"]).await;
    let (legacy_id, _, _) = served(&lab.cloud, "p1", "example.test").await;
    assert_eq!(legacy_id, "legacy");
    let mut config = map_config(&lab, &["p1"]);
    let renewer = lab.renewer(&config).await;
    let out = renewer
        .renew(&config.certificates[0], false)
        .await
        .expect("take over");
    let Done::Installed { report, .. } = &out.done else {
        panic!("{:?}", out.done);
    };
    // The hand-made entry now lists our certificate; its certificate is kept
    // and reported with the command deleting it; the map is not relabelled.
    let ours = naming::cm_certificate_id("app");
    let (id, entry, _) = served(&lab.cloud, "p1", "example.test").await;
    assert_eq!((id.as_str(), entry.as_str()), (ours.as_str(), "hand"));
    let (id, _, _) = served(&lab.cloud, "p1", "www.example.test").await;
    assert_eq!(id, ours);
    assert_eq!(report.superseded.len(), 1, "{report:?}");
    let h = &report.superseded[0];
    assert_eq!((h.name.as_str(), h.deleted), ("legacy", false));
    assert_eq!(h.taken_off, ["example.test"]);
    assert!(h.still_served_by.is_empty(), "{h:?}");
    assert!(
        h.delete_command
            .as_deref()
            .is_some_and(|c| c.contains("certificate-manager certificates delete legacy")),
        "{h:?}"
    );
    let (certs_now, entries) = inventory(&lab.cloud).await;
    assert_eq!(certs_now, [ours.clone(), "legacy".to_string()]);
    let mut want = vec!["hand".to_string(), naming::map_entry_id("*.example.test")];
    want.sort();
    assert_eq!(entries, want, "no second entry for a hostname");
    let gcp = lab.cloud.gcp();
    let hand = gcp
        .get_certificate_map_entry(MAP, "hand")
        .await
        .unwrap()
        .unwrap();
    assert!(hand.labels.is_empty(), "their entry keeps its labels");
    assert!(
        gcp.get_certificate_map(MAP)
            .await
            .unwrap()
            .unwrap()
            .labels
            .is_empty()
    );

    // Healthy: the taken-over entry counts as served.
    let out = renewer.renew(&config.certificates[0], false).await.unwrap();
    assert!(matches!(out.done, Done::Healthy { .. }), "{:?}", out.done);
    // status names the certificate left behind, and how to delete it.
    let st = gclb_acme::reconcile::status(
        &renewer.gcp,
        &config,
        &gclb_acme::state::StateDir::open(&config.state.dir)
            .unwrap()
            .into(),
    )
    .await;
    assert!(st.healthy(), "{st:?}");
    let left = &st.certificates[0].hand_made;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].name, "legacy");
    assert!(left[0].served_by.is_empty());
    assert!(
        left[0]
            .delete_command
            .as_deref()
            .is_some_and(|c| c.contains("certificates delete legacy --location=global")),
        "{left:?}"
    );

    // Adopted: deleted at the next installation, since no entry uses it.
    config.certificates[0].adopt = vec!["legacy".into()];
    let renewer = lab.renewer(&config).await;
    let out = renewer.renew(&config.certificates[0], true).await.unwrap();
    let Done::Installed { report, .. } = &out.done else {
        panic!("{:?}", out.done);
    };
    assert_eq!(report.adopted_deleted, ["legacy"], "{report:?}");
    assert_eq!(inventory(&lab.cloud).await.0, [ours]);
}

#[tokio::test]
async fn an_adopted_certificate_still_used_by_an_entry_is_not_deleted() {
    let lab = Lab::start().await;
    // `legacy` also serves other.test, through a second hand-made entry.
    hand_made_entry(&lab.cloud, &["example.test", "other.test"]).await;
    let gcp = lab.cloud.gcp();
    let op = gcp
        .create_certificate_map_entry(
            MAP,
            "other",
            &NewMapEntry {
                matches: EntryMatch::Hostname("other.test".into()),
                certificates: vec![gcp.certificate_name("legacy")],
                description: None,
                labels: Default::default(),
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let mut config = map_config(&lab, &["p1"]);
    config.certificates[0].adopt = vec!["legacy".into()];
    let renewer = lab.renewer(&config).await;
    let out = renewer.renew(&config.certificates[0], false).await.unwrap();
    let Done::Installed { report, .. } = &out.done else {
        panic!("{:?}", out.done);
    };
    // It competes for example.test (it serves other.test too): kept beside ours.
    assert_eq!(report.competing.len(), 1, "{report:?}");
    assert!(report.adopted_deleted.is_empty());
    assert_eq!(report.adoption_refused.len(), 1, "{report:?}");
    assert!(
        report.adoption_refused[0].contains("other"),
        "{:?}",
        report.adoption_refused
    );
    let (id, _, _) = served(&lab.cloud, "p1", "other.test").await;
    assert_eq!(id, "legacy", "other.test still served by its certificate");
    let (id, _, _) = served(&lab.cloud, "p1", "example.test").await;
    assert_eq!(id, naming::cm_certificate_id("app"), "ECDSA ours first");
}

/// Stops a run at `at`, then lets a fresh renewer (same state directory)
/// finish: one order in all, no leaked certificate or entry. `renewal`:
/// the certificate is already issued and served (the crash hits a renewal,
/// and the names stay served throughout); else the first issuance.
async fn crash_at(at: &str, renewal: bool) {
    let lab = Lab::start().await;
    let config = map_config(&lab, &[]);
    let cert = &config.certificates[0];
    if renewal {
        // Its own renewer: its order is not counted below.
        let r = lab.renewer(&config).await;
        r.renew(cert, false).await.expect("seed issuance");
        map_proxy(&lab.cloud, "p1", MAP).await;
    }
    let mut first = lab.renewer(&config).await;
    let stop = at.to_string();
    first.install.hook = Some(Arc::new(move |s: &str| match stop.strip_suffix('*') {
        Some(prefix) => s.starts_with(prefix),
        None => s == stop,
    }));
    let err = first
        .renew(cert, renewal)
        .await
        .expect_err(&format!("the hook stops the run at {at}"));
    assert!(err.is_aborted(), "{at}: {err}");
    if renewal {
        for n in ["example.test", "www.example.test"] {
            assert_valid(&lab.cloud, "p1", n).await;
        }
    }
    assert!(first.acme.pending("app").await.unwrap().is_some(), "{at}");

    let second = lab.renewer(&config).await;
    let out = second
        .renew(cert, false)
        .await
        .unwrap_or_else(|e| panic!("{at}: resume: {e}"));
    let Done::Installed { issued, .. } = &out.done else {
        panic!("{at}: {:?}", out.done);
    };
    assert!(!issued, "{at}: the resumed run must not issue again");
    assert_eq!(
        finalized(&first) + finalized(&second),
        1,
        "{at}: exactly one order finalized"
    );
    assert!(second.acme.pending("app").await.unwrap().is_none(), "{at}");
    let (certs_now, entries) = inventory(&lab.cloud).await;
    assert_eq!(certs_now, [naming::cm_certificate_id("app")], "{at}");
    assert_eq!(entries, our_entries(), "{at}");
    if !renewal {
        map_proxy(&lab.cloud, "p1", MAP).await;
    }
    let pending_serial = match &out.done {
        Done::Installed { serial, .. } => serial.clone(),
        _ => unreachable!(),
    };
    for n in ["example.test", "www.example.test"] {
        let (_, _, serial) = served(&lab.cloud, "p1", n).await;
        assert_eq!(
            serial, pending_serial,
            "{at}: {n} serves the new certificate"
        );
    }
    let third = second.renew(cert, false).await.unwrap();
    assert!(matches!(third.done, Done::Healthy { .. }), "{at}");
}

#[tokio::test]
async fn a_crash_at_any_step_boundary_of_a_first_issuance_converges_with_one_order() {
    let steps = [
        step::PERSISTED.to_string(),
        step::CM_MAP_CREATED.to_string(),
        step::CM_CERTIFICATE_REQUESTED.to_string(),
        step::CM_CERTIFICATE_DONE.to_string(),
        "entry:*".to_string(),
        step::entry(&naming::map_entry_id("example.test")),
        step::entry(&naming::map_entry_id("*.example.test")),
        step::VERIFIED.to_string(),
    ];
    for s in steps {
        crash_at(&s, false).await;
    }
}

#[tokio::test]
async fn a_crash_at_any_step_boundary_of_a_renewal_keeps_serving_and_converges() {
    let steps = [
        step::PERSISTED,
        step::CM_CERTIFICATE_REQUESTED,
        step::CM_CERTIFICATE_DONE,
        step::VERIFIED,
    ];
    for s in steps {
        crash_at(s, true).await;
    }
}

#[tokio::test]
async fn converges_in_one_run_despite_twenty_percent_gcp_faults() {
    let lab = Lab::start().await;
    let config = map_config(&lab, &[]);
    let renewer = lab.renewer(&config).await;
    for rule in [
        // Every GCP API (Certificate Manager, Cloud DNS, Compute): 20% 503s.
        json!({"method": "*", "probability": 0.2, "kind": "error", "status": 503}),
        json!({"method": "certificatemanager.projects.locations.certificates.create", "count": 1, "kind": "operation", "status": 503}),
        json!({"method": "certificatemanager.projects.locations.certificateMapEntries.create", "count": 2, "kind": "operation", "status": 503}),
        json!({"method": "certificatemanager.projects.locations.certificateMaps.create", "count": 1, "kind": "operation", "status": 503}),
    ] {
        lab.cloud.fault(rule).await;
    }
    let out = renewer
        .renew(&config.certificates[0], false)
        .await
        .unwrap_or_else(|e| panic!("first issuance under faults: {e}"));
    assert!(matches!(out.done, Done::Installed { .. }));
    lab.cloud
        .fault(json!({"method": "certificatemanager.projects.locations.certificates.patch", "count": 2, "kind": "operation", "status": 503}))
        .await;
    let out = renewer
        .renew(&config.certificates[0], true)
        .await
        .unwrap_or_else(|e| panic!("renewal under faults: {e}"));
    let Done::Installed { serial, .. } = &out.done else {
        panic!("{:?}", out.done);
    };
    let reqs = lab.cloud.requests().await;
    // 5xx only: the first issuance's reads of what is not there yet are 404s.
    let failed = reqs
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| s >= 500))
        .count();
    let r = lab
        .cloud
        .http
        .delete(format!("{}emulator/faults", lab.cloud.emu.base_url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(finalized(&renewer), 2);
    let (certs_now, entries) = inventory(&lab.cloud).await;
    assert_eq!(certs_now, [naming::cm_certificate_id("app")]);
    assert_eq!(entries, our_entries());
    map_proxy(&lab.cloud, "p1", MAP).await;
    for n in ["example.test", "www.example.test"] {
        assert_eq!(&served(&lab.cloud, "p1", n).await.2, serial);
    }
    eprintln!(
        "faults: {failed} of {} requests failed with 5xx, two installations converged",
        reqs.len()
    );
    assert!(failed > 0, "the faults fired");
}

#[tokio::test]
async fn a_name_removed_from_domains_loses_its_entry_of_ours_at_the_next_renewal() {
    let lab = Lab::start().await;
    let mut config = map_config(&lab, &[]);
    config.certificates[0].primary = true;
    let renewer = lab.renewer(&config).await;
    renewer.renew(&config.certificates[0], false).await.unwrap();
    let mut all = our_entries();
    all.push(naming::PRIMARY_ENTRY_ID.to_string());
    all.sort();
    assert_eq!(inventory(&lab.cloud).await.1, all);

    // The wildcard and the PRIMARY entry go from the configuration: the names
    // changed, so a certificate is issued; its clean-up deletes both entries.
    // A crash after the first delete: the resumed run deletes the other.
    config.certificates[0].domains = vec!["example.test".into()];
    config.certificates[0].primary = false;
    let mut first = lab.renewer(&config).await;
    first.install.hook = Some(Arc::new(|s: &str| s.starts_with("deleted:")));
    let err = first
        .renew(&config.certificates[0], false)
        .await
        .expect_err("stopped after the first delete");
    assert!(err.is_aborted(), "{err}");
    assert_eq!(inventory(&lab.cloud).await.1.len(), 2);
    let renewer = lab.renewer(&config).await;
    let out = renewer.renew(&config.certificates[0], false).await.unwrap();
    let Done::Installed { report, issued, .. } = &out.done else {
        panic!("{:?}", out.done);
    };
    assert!(!issued, "resumed, not issued again");
    assert_eq!(finalized(&first) + finalized(&renewer), 1);
    assert_eq!(report.deleted.len(), 1, "{report:?}");
    let gone = [
        naming::map_entry_id("*.example.test"),
        naming::PRIMARY_ENTRY_ID.to_string(),
    ];
    assert!(gone.contains(&report.deleted[0]), "{report:?}");
    assert_eq!(
        inventory(&lab.cloud).await,
        (
            vec![naming::cm_certificate_id("app")],
            vec![naming::map_entry_id("example.test")]
        )
    );
    map_proxy(&lab.cloud, "p1", MAP).await;
    let (id, _, _) = served(&lab.cloud, "p1", "example.test").await;
    assert_eq!(id, naming::cm_certificate_id("app"));
}

#[tokio::test]
async fn an_entry_of_another_certificates_entry_is_refused_before_issuing() {
    let lab = Lab::start().await;
    let gcp = lab.cloud.gcp();
    let other = self_signed(&["example.test"], 0, 90);
    let op = gcp
        .create_certificate(
            "gclb-acme-other",
            &NewCertificate {
                description: None,
                labels: naming::cm_labels("other"),
                self_managed: SelfManaged {
                    pem_certificate: other.chain_pem.clone(),
                    pem_private_key: other.key_pem.expose().to_string(),
                },
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let op = gcp
        .create_certificate_map(MAP, &MapFields::default())
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let entry = naming::map_entry_id("example.test");
    let op = gcp
        .create_certificate_map_entry(
            MAP,
            &entry,
            &NewMapEntry {
                matches: EntryMatch::Hostname("example.test".into()),
                certificates: vec![gcp.certificate_name("gclb-acme-other")],
                description: None,
                labels: naming::cm_labels("other"),
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
        .expect_err("the entry is another [[certificates]]'s");
    assert!(
        matches!(&err, RenewError::Lb(LbError::EntryTaken { owner, hostname, .. })
            if owner == "other" && hostname == "example.test"),
        "{err}"
    );
    assert_eq!(finalized(&renewer), 0, "nothing issued");
    let e = gcp
        .get_certificate_map_entry(MAP, &entry)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.certificate_ids(), ["gclb-acme-other"], "untouched");
    assert_eq!(inventory(&lab.cloud).await.0, ["gclb-acme-other"]);
}
