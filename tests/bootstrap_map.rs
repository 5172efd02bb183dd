//! `bootstrap` / `teardown` with `stack.certificate_map` against the
//! gcp-emulator: the HTTPS proxy created with a Certificate Manager map instead
//! of `sslCertificates`, a converged stack planning nothing, teardown removing
//! our entries, map and certificate (and nothing we did not create), bootstrap
//! again; and an existing sslCertificates stack switched onto a map with the
//! names served valid at every step.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use gclb_acme::config::{Scheme, StackConfig};
use gclb_acme::gcp::Gcp;
use gclb_acme::gcp::certificatemanager::{self as cm, EntryMatch, NewCertificate, NewMapEntry};
use gclb_acme::gcp::compute::{NewSslCertificate, SelfManaged};
use gclb_acme::lb::naming;
use gclb_acme::stack::{self, CertificateSource, Desired, DesiredIap, Options, StackError};
use serde_json::{Value, json};
use support::gcp::{Cloud, PROJECT};

const REGION: &str = "europe-west1";
const DOMAIN: &str = "app.example.test";
const MAP: &str = "app-map";
const PROXY: &str = "app-https-proxy";

/// Self-signed certificates, put where the stack wants them: an sslCertificate
/// of ours, or (what the map target does) the Certificate Manager certificate
/// `gclb-acme-app` and one entry per name, labelled ours.
struct SelfSigned {
    gcp: Gcp,
}

fn err(e: impl std::fmt::Display) -> StackError {
    StackError::Certificate(e.to_string())
}

impl CertificateSource for SelfSigned {
    async fn ensure(&self, names: &[String]) -> Result<String, StackError> {
        if let Some(c) = stack::find_ours(&self.gcp, "app", names).await? {
            return Ok(c.self_link);
        }
        let ck = rcgen::generate_simple_self_signed(names.to_vec()).map_err(err)?;
        let hash = naming::leaf_sha256(ck.cert.der());
        let name = naming::certificate_resource_name("app", &hash);
        let body = NewSslCertificate {
            name: name.clone(),
            description: naming::certificate_description("app", &hash),
            cert_type: "SELF_MANAGED",
            self_managed: SelfManaged {
                certificate: ck.cert.pem(),
                private_key: ck.signing_key.serialize_pem(),
            },
        };
        let op = self
            .gcp
            .insert_ssl_certificate(&body, &gclb_acme::gcp::request_id(&[&name]))
            .await
            .map_err(err)?;
        self.gcp
            .wait_operation(op, Duration::from_secs(30))
            .await
            .map_err(err)?;
        Ok(self.gcp.global_link("sslCertificates", &name))
    }

    async fn ensure_in_map(&self, names: &[String], map: &str) -> Result<(), StackError> {
        let id = naming::cm_certificate_id("app");
        let wait = Duration::from_secs(30);
        if self.gcp.get_certificate(&id).await.map_err(err)?.is_none() {
            let ck = rcgen::generate_simple_self_signed(names.to_vec()).map_err(err)?;
            let body = NewCertificate {
                description: None,
                labels: naming::cm_labels("app"),
                self_managed: cm::SelfManaged {
                    pem_certificate: ck.cert.pem(),
                    pem_private_key: ck.signing_key.serialize_pem(),
                },
            };
            let op = self.gcp.create_certificate(&id, &body).await.map_err(err)?;
            self.gcp
                .wait_certificate_manager(op, wait)
                .await
                .map_err(err)?;
        }
        for n in names {
            let entry = naming::map_entry_id(n);
            if self
                .gcp
                .get_certificate_map_entry(map, &entry)
                .await
                .map_err(err)?
                .is_some()
            {
                continue;
            }
            let body = NewMapEntry {
                matches: EntryMatch::Hostname(n.clone()),
                certificates: vec![self.gcp.certificate_name(&id)],
                description: None,
                labels: naming::cm_labels("app"),
            };
            let op = self
                .gcp
                .create_certificate_map_entry(map, &entry, &body)
                .await
                .map_err(err)?;
            self.gcp
                .wait_certificate_manager(op, wait)
                .await
                .map_err(err)?;
        }
        Ok(())
    }
}

fn desired(map: Option<&str>) -> Desired {
    let s: StackConfig = toml::from_str(&format!(
        "region = \"{REGION}\"\nservice = \"app\"\ndomains = [\"{DOMAIN}\"]\n"
    ))
    .unwrap();
    Desired {
        project: PROJECT.into(),
        region: REGION.into(),
        service: "app".into(),
        domains: vec![DOMAIN.into()],
        certificate: "app".into(),
        certificate_map: map.map(str::to_string),
        zone: None,
        scheme: Scheme::ExternalManaged,
        http_redirect: true,
        manage_dns: true,
        dns_ttl: 300,
        iap: DesiredIap {
            enabled: false,
            client_id: None,
            client_secret: None,
            members: vec![],
        },
        names: s.names(),
    }
}

fn opts(dry_run: bool) -> Options {
    Options {
        dry_run,
        quiet: true,
    }
}

/// An emulator holding a Cloud Run service `app` and the zone example.test.
async fn world() -> (Cloud, SelfSigned) {
    let cloud = Cloud::start().await;
    let (s, b) = cloud
        .post(
            &format!("v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=app"),
            json!({"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    cloud.zone("example-test", "example.test.", false).await;
    let certs = SelfSigned { gcp: cloud.gcp() };
    (cloud, certs)
}

/// Requests that change something (not reads, not operation polling).
async fn mutations(cloud: &Cloud) -> Vec<String> {
    cloud
        .requests()
        .await
        .iter()
        .filter(|r| r["method"] != "GET")
        .filter(|r| {
            let id = r["id"].as_str().unwrap_or("");
            !id.ends_with("perations.wait") && !id.ends_with("getIamPolicy")
        })
        .map(|r| format!("{} {}", r["method"], r["id"].as_str().unwrap_or("?")))
        .collect()
}

async fn get(cloud: &Cloud, path: &str) -> (u16, Value) {
    cloud.get(path).await
}

fn cm_path(rest: &str) -> String {
    format!("v1/projects/{PROJECT}/locations/global/{rest}")
}

/// The proxy as Compute returns it.
async fn proxy(cloud: &Cloud) -> Value {
    let (s, b) = get(
        cloud,
        &format!("compute/v1/projects/{PROJECT}/global/targetHttpsProxies/{PROXY}"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b
}

/// What the proxy serves for `sni`: `(source, certificate id)`; asserts the
/// certificate is valid now and names `sni`.
async fn served(cloud: &Cloud, sni: &str) -> (String, String) {
    let (s, v) = cloud
        .get(&format!("emulator/served?proxy={PROXY}&sni={sni}"))
        .await;
    assert_eq!(s, 200, "nothing served for {sni}: {v}");
    let pem = v["pem"].as_str().unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let x = p.parse_x509().unwrap();
    assert!(x.validity().is_valid(), "served certificate not valid now");
    let sans: Vec<String> = x
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert!(sans.iter().any(|s| s.contains(sni)), "{sans:?} vs {sni}");
    (
        v["source"].as_str().unwrap().to_string(),
        v["certificate"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string(),
    )
}

/// Entry ids of the map (404: none).
async fn entries(cloud: &Cloud) -> Vec<String> {
    let (s, b) = get(
        cloud,
        &cm_path(&format!("certificateMaps/{MAP}/certificateMapEntries")),
    )
    .await;
    if s == 404 {
        return vec![];
    }
    assert_eq!(s, 200, "{b}");
    b["certificateMapEntries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            e["name"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn cm_exists(cloud: &Cloud, rest: &str) -> bool {
    get(cloud, &cm_path(rest)).await.0 == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_teardown_bootstrap_with_a_certificate_map() {
    let (cloud, certs) = world().await;
    let gcp = cloud.gcp();
    let d = desired(Some(MAP));

    // A dry run prints the map steps in order and changes nothing.
    cloud.clear_requests().await;
    let r = stack::bootstrap(&gcp, &d, &certs, opts(true))
        .await
        .unwrap();
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());
    let at = |needle: &str| {
        r.planned
            .iter()
            .position(|a| a.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not planned: {:#?}", r.planned))
    };
    let created = at(&format!("create certificate map {MAP}"));
    let installed = at(&format!(
        "install the certificate for {DOMAIN} into certificate map {MAP} (the map is new)"
    ));
    let proxy_created = at(&format!(
        "create target HTTPS proxy {PROXY} serving certificate map {MAP}"
    ));
    assert!(
        created < installed && installed < proxy_created,
        "{:#?}",
        r.planned
    );
    assert!(
        r.planned
            .iter()
            .all(|a| !a.contains("get the first certificate")),
        "no sslCertificate: {:#?}",
        r.planned
    );

    stack::bootstrap(&gcp, &d, &certs, opts(false))
        .await
        .unwrap();
    let px = proxy(&cloud).await;
    assert!(
        px["certificateMap"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/locations/global/certificateMaps/{MAP}")),
        "{px}"
    );
    assert!(px.get("sslCertificates").is_none(), "{px}");
    let (s, map) = get(&cloud, &cm_path(&format!("certificateMaps/{MAP}"))).await;
    assert_eq!(s, 200, "{map}");
    assert_eq!(map["labels"]["managed-by"], "gclb-acme");
    assert!(d.is_marked(map["description"].as_str()));
    assert_eq!(entries(&cloud).await, [naming::map_entry_id(DOMAIN)]);
    assert_eq!(
        served(&cloud, DOMAIN).await,
        ("certificateMap".into(), naming::cm_certificate_id("app"))
    );
    // No sslCertificate was made for the stack.
    let (_, list) = get(
        &cloud,
        &format!("compute/v1/projects/{PROJECT}/global/sslCertificates"),
    )
    .await;
    assert!(
        list.get("items")
            .is_none_or(|i| i.as_array().unwrap().is_empty()),
        "{list}"
    );

    // Converged: a second run plans and changes nothing.
    cloud.clear_requests().await;
    let again = stack::bootstrap(&gcp, &d, &certs, opts(false))
        .await
        .unwrap();
    assert_eq!(again.planned, Vec::<String>::new());
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());

    // A hand-made entry (and its certificate) in another map of the project,
    // pointing at nothing of ours: teardown never sees it. In our map, a
    // foreign entry keeps the map.
    let their_cert = {
        let ck = rcgen::generate_simple_self_signed(vec!["theirs.example.test".into()]).unwrap();
        let op = gcp
            .create_certificate(
                "theirs",
                &NewCertificate {
                    description: None,
                    labels: BTreeMap::new(),
                    self_managed: cm::SelfManaged {
                        pem_certificate: ck.cert.pem(),
                        pem_private_key: ck.signing_key.serialize_pem(),
                    },
                },
            )
            .await
            .unwrap();
        gcp.wait_certificate_manager(op, Duration::from_secs(30))
            .await
            .unwrap();
        gcp.certificate_name("theirs")
    };
    let op = gcp
        .create_certificate_map_entry(
            MAP,
            "theirs",
            &NewMapEntry {
                matches: EntryMatch::Hostname("theirs.example.test".into()),
                certificates: vec![their_cert],
                description: None,
                labels: BTreeMap::new(),
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, Duration::from_secs(30))
        .await
        .unwrap();

    // Teardown: a dry run first, then for real.
    cloud.clear_requests().await;
    let t = stack::teardown(&gcp, &d, opts(true)).await.unwrap();
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());
    let pos = |needle: &str| {
        t.planned
            .iter()
            .position(|a| a.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not planned: {:#?}", t.planned))
    };
    let proxy_gone = pos(&format!("delete target HTTPS proxy {PROXY}"));
    let entry_gone = pos(&format!(
        "delete entry {} of certificate map {MAP}",
        naming::map_entry_id(DOMAIN)
    ));
    let cert_gone = pos("delete certificate gclb-acme-app (Certificate Manager)");
    assert!(
        proxy_gone < entry_gone && entry_gone < cert_gone,
        "{:#?}",
        t.planned
    );
    assert!(
        t.planned
            .iter()
            .all(|a| !a.contains("delete certificate map")),
        "{:#?}",
        t.planned
    );
    assert!(
        t.notes.iter().any(
            |n| n.contains("still holds entries gclb-acme did not create") && n.contains("theirs")
        ),
        "{:#?}",
        t.notes
    );
    let t = stack::teardown(&gcp, &d, opts(false)).await.unwrap();
    assert_eq!(t.deleted_certificates, ["gclb-acme-app"]);
    assert_eq!(entries(&cloud).await, ["theirs"]);
    assert!(cm_exists(&cloud, &format!("certificateMaps/{MAP}")).await);
    assert!(cm_exists(&cloud, "certificates/theirs").await);
    assert!(!cm_exists(&cloud, "certificates/gclb-acme-app").await);

    // Their entry gone: the next teardown removes our (empty) map.
    let op = gcp
        .delete_certificate_map_entry(MAP, "theirs")
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, Duration::from_secs(30))
        .await
        .unwrap();
    let t = stack::teardown(&gcp, &d, opts(false)).await.unwrap();
    assert_eq!(t.applied, [format!("delete certificate map {MAP}")]);
    assert!(!cm_exists(&cloud, &format!("certificateMaps/{MAP}")).await);
    assert!(cm_exists(&cloud, "certificates/theirs").await, "never ours");
    let t = stack::teardown(&gcp, &d, opts(false)).await.unwrap();
    assert_eq!(t.applied, Vec::<String>::new());

    // Bootstrap again: the same stack, served from a new map.
    stack::bootstrap(&gcp, &d, &certs, opts(false))
        .await
        .unwrap();
    assert_eq!(
        served(&cloud, DOMAIN).await,
        ("certificateMap".into(), naming::cm_certificate_id("app"))
    );
    assert_eq!(entries(&cloud).await, [naming::map_entry_id(DOMAIN)]);
    let again = stack::bootstrap(&gcp, &d, &certs, opts(false))
        .await
        .unwrap();
    assert_eq!(again.planned, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sslcertificates_stack_moves_onto_a_map_served_at_every_step() {
    let (cloud, certs) = world().await;
    let gcp = cloud.gcp();
    stack::bootstrap(&gcp, &desired(None), &certs, opts(false))
        .await
        .unwrap();
    let (source, before) = served(&cloud, DOMAIN).await;
    assert_eq!(source, "sslCertificates");

    let d = desired(Some(MAP));
    let r = stack::bootstrap(&gcp, &d, &certs, opts(true))
        .await
        .unwrap();
    assert_eq!(
        r.planned,
        [
            format!("create certificate map {MAP} (Certificate Manager)"),
            format!(
                "install the certificate for {DOMAIN} into certificate map {MAP} (the map is new)"
            ),
            format!(
                "attach certificate map {MAP} to target HTTPS proxy {PROXY} (its sslCertificates are then ignored, and kept)"
            ),
        ]
    );
    // Still served from sslCertificates after the dry run.
    assert_eq!(served(&cloud, DOMAIN).await.1, before);

    // Apply one step at a time: the name stays served after each.
    let steps = stack::plan_steps(&gcp, &d).await.unwrap();
    assert_eq!(steps.len(), 3);
    for (i, a) in steps.iter().enumerate() {
        stack::apply_one(&gcp, &d, a, &certs).await.unwrap();
        let (source, cert) = served(&cloud, DOMAIN).await;
        if i < 2 {
            assert_eq!(
                (source.as_str(), cert.as_str()),
                ("sslCertificates", before.as_str())
            );
        } else {
            assert_eq!(
                (source.as_str(), cert.as_str()),
                ("certificateMap", "gclb-acme-app")
            );
        }
    }
    // The sslCertificates are kept on the proxy (ignored while the map is on).
    let px = proxy(&cloud).await;
    assert!(
        px["sslCertificates"][0]
            .as_str()
            .unwrap()
            .ends_with(&before),
        "{px}"
    );
    let again = stack::bootstrap(&gcp, &d, &certs, opts(false))
        .await
        .unwrap();
    assert_eq!(again.planned, Vec::<String>::new());
}

/// Runs `run` again and again, each time killed as soon as it has sent one
/// mutation, until one run finishes; returns how many were killed.
async fn until_done<F, Fut>(cloud: &Cloud, mut run: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<stack::Report, StackError>> + Send + 'static,
{
    let mut kills = 0;
    loop {
        cloud.clear_requests().await;
        let task = tokio::spawn(run());
        let finished = loop {
            if task.is_finished() {
                break true;
            }
            if !mutations(cloud).await.is_empty() {
                task.abort();
                break false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if finished {
            task.await.unwrap().unwrap();
            return kills;
        }
        let _ = task.await;
        kills += 1;
        assert!(kills < 60, "never completed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_each_mutation_a_map_stack_completes_and_goes_without_leftovers() {
    let (cloud, _) = world().await;
    let gcp = cloud.gcp();
    let d = desired(Some(MAP));
    let kills = until_done(&cloud, || {
        let (gcp, d) = (gcp.clone(), d.clone());
        async move {
            let certs = SelfSigned { gcp: gcp.clone() };
            stack::bootstrap(&gcp, &d, &certs, opts(false)).await
        }
    })
    .await;
    println!("bootstrap with a map completed after {kills} kills");
    assert!(
        kills >= 5,
        "the crash loop ended early, after {kills} kills"
    );
    let certs = SelfSigned { gcp: gcp.clone() };
    let r = stack::bootstrap(&gcp, &d, &certs, opts(false))
        .await
        .unwrap();
    assert_eq!(r.applied, Vec::<String>::new());
    assert_eq!(
        served(&cloud, DOMAIN).await,
        ("certificateMap".into(), naming::cm_certificate_id("app"))
    );
    // One of each: the map, our entry, our certificate.
    let (_, maps) = get(&cloud, &cm_path("certificateMaps")).await;
    assert_eq!(
        maps["certificateMaps"].as_array().unwrap().len(),
        1,
        "{maps}"
    );
    assert_eq!(entries(&cloud).await, [naming::map_entry_id(DOMAIN)]);
    let (_, certs_list) = get(&cloud, &cm_path("certificates")).await;
    assert_eq!(
        certs_list["certificates"].as_array().unwrap().len(),
        1,
        "{certs_list}"
    );

    let kills = until_done(&cloud, || {
        let (gcp, d) = (gcp.clone(), d.clone());
        async move { stack::teardown(&gcp, &d, opts(false)).await }
    })
    .await;
    println!("teardown with a map completed after {kills} kills");
    assert!(
        kills >= 5,
        "the crash loop ended early, after {kills} kills"
    );
    let t = stack::teardown(&gcp, &d, opts(false)).await.unwrap();
    assert_eq!(t.applied, Vec::<String>::new());
    let (_, maps) = get(&cloud, &cm_path("certificateMaps")).await;
    assert!(
        maps["certificateMaps"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{maps}"
    );
    let (_, certs_list) = get(&cloud, &cm_path("certificates")).await;
    assert!(
        certs_list["certificates"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{certs_list}"
    );
}
