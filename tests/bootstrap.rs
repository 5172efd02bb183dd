//! `bootstrap` and `teardown` against the gcp-emulator: the full graph, idempotent
//! re-runs with zero mutations, crashes at every step, drift, teardown of only
//! what is ours, dry runs, and transient faults.

mod support;

use std::time::{Duration, Instant};

use gclb_acme::config::{Scheme, StackConfig};
use gclb_acme::gcp::Gcp;
use gclb_acme::gcp::compute::{NewSslCertificate, SelfManaged};
use gclb_acme::lb::naming;
use gclb_acme::stack::{self, CertificateSource, Desired, DesiredIap, Options, Secret, StackError};
use serde_json::{Value, json};
use support::gcp::{Cloud, PROJECT};

const REGION: &str = "europe-west1";
const DOMAIN: &str = "app.example.test";
const SECRET: &str = "oauth-client-secret";
const LINK: &str = "https://www.googleapis.com/compute/v1/projects/demo-project";

/// Uploads a self-signed certificate named and marked as ours, reusing a valid
/// one that exists: a real upload through the emulator.
struct SelfSigned {
    gcp: Gcp,
    cert_name: String,
}

impl CertificateSource for SelfSigned {
    async fn ensure(&self, names: &[String]) -> Result<String, StackError> {
        if let Some(c) = stack::find_ours(&self.gcp, &self.cert_name, names).await? {
            return Ok(c.self_link);
        }
        let ck = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| StackError::Certificate(e.to_string()))?;
        let hash = naming::leaf_sha256(ck.cert.der());
        let name = naming::certificate_resource_name(&self.cert_name, &hash);
        let body = NewSslCertificate {
            name: name.clone(),
            description: naming::certificate_description(&self.cert_name, &hash),
            cert_type: "SELF_MANAGED",
            self_managed: SelfManaged {
                certificate: ck.cert.pem(),
                private_key: ck.signing_key.serialize_pem(),
            },
        };
        let err = |e: gclb_acme::gcp::GcpError| StackError::Certificate(e.to_string());
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
}

fn desired() -> Desired {
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
        certificate_map: None,
        zone: None,
        scheme: Scheme::ExternalManaged,
        http_redirect: true,
        manage_dns: true,
        dns_ttl: 300,
        iap: DesiredIap {
            enabled: true,
            client_id: Some("1234-abc.apps.googleusercontent.com".into()),
            client_secret: Some(Secret(SECRET.into())),
            members: vec![
                "user:alice@example.test".into(),
                "group:platform@example.test".into(),
            ],
        },
        names: s.names(),
    }
}

fn quiet() -> Options {
    Options {
        dry_run: false,
        quiet: true,
    }
}

fn dry() -> Options {
    Options {
        dry_run: true,
        quiet: true,
    }
}

/// An emulator holding a Cloud Run service `app` in europe-west1 and the zone
/// example.test.
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
    let certs = SelfSigned {
        gcp: cloud.gcp(),
        cert_name: "app".into(),
    };
    (cloud, certs)
}

/// Requests that change something: not GETs, not operation polling, not IAP's
/// read-only `getIamPolicy` POST.
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

async fn compute(cloud: &Cloud, path: &str) -> Value {
    let (s, b) = cloud
        .get(&format!("compute/v1/projects/{PROJECT}/{path}"))
        .await;
    assert_eq!(s, 200, "GET {path}: {b}");
    b
}

async fn exists(cloud: &Cloud, path: &str) -> bool {
    cloud
        .get(&format!("compute/v1/projects/{PROJECT}/{path}"))
        .await
        .0
        == 200
}

async fn a_record(cloud: &Cloud) -> Vec<String> {
    let (s, b) = cloud
        .get(&format!(
            "dns/v1/projects/{PROJECT}/managedZones/example-test/rrsets?name={DOMAIN}.&type=A"
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    b["rrsets"][0]["rrdatas"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

async fn iap_policy(cloud: &Cloud) -> Value {
    let (s, b) = cloud
        .post(
            &format!("v1/projects/{PROJECT}/iap_web/compute/services/app-backend:getIamPolicy"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

fn members(policy: &Value, role: &str) -> Vec<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role)
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

const AGENT: &str = "serviceAccount:service-123456789012@gcp-sa-iap.iam.gserviceaccount.com";

/// Asserts the whole graph through the emulator's API; returns the IP.
async fn assert_graph(cloud: &Cloud) -> String {
    let neg = compute(
        cloud,
        &format!("regions/{REGION}/networkEndpointGroups/app-neg"),
    )
    .await;
    assert_eq!(neg["networkEndpointType"], "SERVERLESS");
    assert_eq!(neg["cloudRun"]["service"], "app");
    assert!(
        neg["description"]
            .as_str()
            .unwrap()
            .starts_with(naming::MARKER)
    );

    let bs = compute(cloud, "global/backendServices/app-backend").await;
    assert_eq!(
        bs["backends"][0]["group"],
        format!("{LINK}/regions/{REGION}/networkEndpointGroups/app-neg")
    );
    assert_eq!(bs["backends"].as_array().unwrap().len(), 1);
    assert_eq!(bs["loadBalancingScheme"], "EXTERNAL_MANAGED");
    assert_eq!(bs["protocol"], "HTTP");
    assert!(bs.get("healthChecks").is_none());
    assert_eq!(bs["iap"]["enabled"], true);
    assert_eq!(
        bs["iap"]["oauth2ClientId"],
        "1234-abc.apps.googleusercontent.com"
    );
    assert_eq!(
        bs["iap"]["oauth2ClientSecretSha256"],
        Secret(SECRET.into()).sha256()
    );

    let um = compute(cloud, "global/urlMaps/app-url-map").await;
    assert_eq!(
        um["defaultService"],
        format!("{LINK}/global/backendServices/app-backend")
    );

    let addr = compute(cloud, "global/addresses/app-ip").await;
    let ip = addr["address"].as_str().unwrap().to_string();

    let px = compute(cloud, "global/targetHttpsProxies/app-https-proxy").await;
    assert_eq!(px["urlMap"], format!("{LINK}/global/urlMaps/app-url-map"));
    let certs = px["sslCertificates"].as_array().unwrap();
    assert_eq!(certs.len(), 1);
    let cert_name = certs[0].as_str().unwrap().rsplit('/').next().unwrap();
    let cert = compute(cloud, &format!("global/sslCertificates/{cert_name}")).await;
    assert!(naming::is_ours(
        "app",
        cert_name,
        cert["description"].as_str()
    ));
    // The served PEM's SANs name the domain.
    let pem = cert["certificate"].as_str().unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let x = p.parse_x509().unwrap();
    let sans: Vec<String> = x
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert!(sans.iter().any(|s| s.contains(DOMAIN)), "{sans:?}");

    let fr = compute(cloud, "global/forwardingRules/app-forwarding-rule").await;
    assert_eq!(
        fr["target"],
        format!("{LINK}/global/targetHttpsProxies/app-https-proxy")
    );
    assert_eq!(fr["IPAddress"], ip.as_str());
    assert_eq!(fr["portRange"], "443-443");
    assert_eq!(fr["loadBalancingScheme"], "EXTERNAL_MANAGED");
    assert_eq!(fr["networkTier"], "PREMIUM");

    let rm = compute(cloud, "global/urlMaps/app-http-redirect").await;
    assert_eq!(rm["defaultUrlRedirect"]["httpsRedirect"], true);
    assert_eq!(
        rm["defaultUrlRedirect"]["redirectResponseCode"],
        "MOVED_PERMANENTLY_DEFAULT"
    );
    let hp = compute(cloud, "global/targetHttpProxies/app-http-proxy").await;
    assert_eq!(
        hp["urlMap"],
        format!("{LINK}/global/urlMaps/app-http-redirect")
    );
    let fr80 = compute(cloud, "global/forwardingRules/app-http-forwarding-rule").await;
    assert_eq!(
        fr80["target"],
        format!("{LINK}/global/targetHttpProxies/app-http-proxy")
    );
    assert_eq!(fr80["IPAddress"], ip.as_str());
    assert_eq!(fr80["portRange"], "80-80");

    assert_eq!(a_record(cloud).await, vec![ip.clone()]);

    let mut m = members(&iap_policy(cloud).await, "roles/iap.httpsResourceAccessor");
    m.sort();
    assert_eq!(
        m,
        ["group:platform@example.test", "user:alice@example.test"]
    );

    let (s, run) = cloud
        .get(&format!(
            "v2/projects/{PROJECT}/locations/{REGION}/services/app"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(run["ingress"], "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER");
    let (s, rp) = cloud
        .get(&format!(
            "v2/projects/{PROJECT}/locations/{REGION}/services/app:getIamPolicy"
        ))
        .await;
    assert_eq!(s, 200, "{rp}");
    assert_eq!(members(&rp, "roles/run.invoker"), [AGENT]);
    ip
}

/// Names of a global collection.
async fn names(cloud: &Cloud, coll: &str) -> Vec<String> {
    let b = compute(cloud, &format!("global/{coll}")).await;
    let mut n: Vec<String> = b["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn bootstrap_builds_the_graph_reruns_change_nothing_and_teardown_removes_only_ours() {
    let (cloud, certs) = world().await;
    let gcp = cloud.gcp();
    let d = desired();
    // Foreign resources in the same project: teardown must not touch them.
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/backendServices"),
            json!({"name": "foreign-backend", "loadBalancingScheme": "EXTERNAL_MANAGED"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/urlMaps"),
            json!({"name": "foreign-map", "defaultService": format!("{LINK}/global/backendServices/foreign-backend")}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let foreign = rcgen::generate_simple_self_signed(vec!["other.example.test".into()]).unwrap();
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/sslCertificates"),
            json!({"name": "app-foreign", "description": "uploaded by hand",
                   "certificate": foreign.cert.pem(), "privateKey": foreign.signing_key.serialize_pem()}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Dry run on an empty stack: the full plan, no mutation.
    cloud.clear_requests().await;
    let r = stack::bootstrap(&gcp, &d, &certs, dry()).await.unwrap();
    assert_eq!(r.planned.len(), 15, "{:#?}", r.planned);
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());

    cloud.clear_requests().await;
    let started = Instant::now();
    let r = stack::bootstrap(&gcp, &d, &certs, quiet()).await.unwrap();
    let took = started.elapsed();
    let first = mutations(&cloud).await;
    println!(
        "full bootstrap: {} actions, {} mutations, {} requests, {took:?}",
        r.applied.len(),
        first.len(),
        cloud.requests().await.len()
    );
    assert_eq!(r.applied.len(), 15, "{:#?}", r.applied);
    let ip = assert_graph(&cloud).await;
    assert_eq!(r.ip.as_deref(), Some(ip.as_str()));

    // Again: nothing to do, zero mutations.
    cloud.clear_requests().await;
    let r = stack::bootstrap(&gcp, &d, &certs, quiet()).await.unwrap();
    assert_eq!(r.applied, Vec::<String>::new());
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());
    // Dry runs of both commands change nothing either.
    let r = stack::bootstrap(&gcp, &d, &certs, dry()).await.unwrap();
    assert_eq!(r.planned, Vec::<String>::new());
    // 13 deletions and revocations, then the Cloud Run ingress put back.
    let r = stack::teardown(&gcp, &d, dry()).await.unwrap();
    assert_eq!(r.planned.len(), 14, "{:#?}", r.planned);
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());

    // Teardown: everything of ours goes, the foreign resources stay.
    let r = stack::teardown(&gcp, &d, quiet()).await.unwrap();
    assert_eq!(r.applied.len(), 14, "{:#?}", r.applied);
    assert_eq!(names(&cloud, "urlMaps").await, ["foreign-map"]);
    assert_eq!(names(&cloud, "backendServices").await, ["foreign-backend"]);
    assert_eq!(names(&cloud, "sslCertificates").await, ["app-foreign"]);
    for coll in [
        "addresses",
        "forwardingRules",
        "targetHttpsProxies",
        "targetHttpProxies",
    ] {
        assert_eq!(names(&cloud, coll).await, Vec::<String>::new(), "{coll}");
    }
    assert!(
        !exists(
            &cloud,
            &format!("regions/{REGION}/networkEndpointGroups/app-neg")
        )
        .await
    );
    assert_eq!(a_record(&cloud).await, Vec::<String>::new());
    let (_, rp) = cloud
        .get(&format!(
            "v2/projects/{PROJECT}/locations/{REGION}/services/app:getIamPolicy"
        ))
        .await;
    assert_eq!(members(&rp, "roles/run.invoker"), Vec::<String>::new());

    // A second teardown is a no-op.
    cloud.clear_requests().await;
    let r = stack::teardown(&gcp, &d, quiet()).await.unwrap();
    assert_eq!(r.applied, Vec::<String>::new());
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());
}

#[tokio::test]
async fn killed_after_each_mutation_bootstrap_completes_without_duplicates() {
    let (cloud, certs) = world().await;
    let gcp = cloud.gcp();
    let d = desired();
    // Kill each run as soon as it has sent one mutation: each run continues
    // where the last one died (usually in the middle of an operation wait).
    let mut kills = 0;
    loop {
        cloud.clear_requests().await;
        let task = {
            let (gcp, d) = (gcp.clone(), d.clone());
            let certs = SelfSigned {
                gcp: gcp.clone(),
                cert_name: "app".into(),
            };
            tokio::spawn(async move { stack::bootstrap(&gcp, &d, &certs, quiet()).await })
        };
        let finished = loop {
            if task.is_finished() {
                break true;
            }
            if !mutations(&cloud).await.is_empty() {
                task.abort();
                break false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if finished {
            task.await.unwrap().unwrap();
            break;
        }
        let _ = task.await;
        kills += 1;
        assert!(kills < 60, "bootstrap never completed");
    }
    println!("bootstrap completed after {kills} kills");
    // On a loaded machine a run can send two mutations before the abort lands, so
    // fewer kills than the 15 actions; still, most steps must have been cut.
    assert!(
        kills >= 7,
        "the crash loop ended early, after {kills} kills"
    );
    // A final run completes and finds nothing to do.
    let r = stack::bootstrap(&gcp, &d, &certs, quiet()).await.unwrap();
    assert_eq!(r.applied, Vec::<String>::new());
    assert_graph(&cloud).await;
    // Nothing duplicated: one resource of each, one certificate of ours.
    assert_eq!(
        names(&cloud, "urlMaps").await,
        ["app-http-redirect", "app-url-map"]
    );
    assert_eq!(names(&cloud, "addresses").await, ["app-ip"]);
    assert_eq!(names(&cloud, "sslCertificates").await.len(), 1);
    assert_eq!(a_record(&cloud).await.len(), 1);
}

#[tokio::test]
async fn drift_is_fixed_in_place_with_fingerprints() {
    let (cloud, certs) = world().await;
    let gcp = cloud.gcp();
    let d = desired();
    stack::bootstrap(&gcp, &d, &certs, quiet()).await.unwrap();
    let bs = compute(&cloud, "global/backendServices/app-backend").await;
    let um = compute(&cloud, "global/urlMaps/app-url-map").await;
    // Someone turns IAP off and points the URL map at another backend.
    let patch = |path: &str, body: Value| {
        let url = format!(
            "{}compute/v1/projects/{PROJECT}/{path}",
            cloud.emu.base_url()
        );
        cloud.http.patch(url).json(&body).send()
    };
    let r = patch(
        "global/backendServices/app-backend",
        json!({"fingerprint": bs["fingerprint"], "iap": {"enabled": false}}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/backendServices"),
            json!({"name": "other-backend", "loadBalancingScheme": "EXTERNAL_MANAGED"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = patch(
        "global/urlMaps/app-url-map",
        json!({"fingerprint": um["fingerprint"], "defaultService": format!("{LINK}/global/backendServices/other-backend")}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        compute(&cloud, "global/backendServices/app-backend").await["iap"]["enabled"],
        false
    );

    cloud.clear_requests().await;
    let r = stack::bootstrap(&gcp, &d, &certs, quiet()).await.unwrap();
    assert_eq!(r.applied.len(), 2, "{:#?}", r.applied);
    assert!(r.applied[0].starts_with("fix backend service app-backend: IAP is off"));
    assert!(r.applied[1].starts_with("fix URL map app-url-map: default service is other-backend"));
    assert_eq!(
        mutations(&cloud).await,
        [
            "\"PATCH\" compute.backendServices.patch",
            "\"PATCH\" compute.urlMaps.patch"
        ]
    );
    assert_graph(&cloud).await;
    // Fixed, not recreated.
    assert_eq!(
        compute(&cloud, "global/backendServices/app-backend").await["id"],
        bs["id"]
    );
    assert_eq!(
        compute(&cloud, "global/urlMaps/app-url-map").await["id"],
        um["id"]
    );
}

#[tokio::test]
async fn unfixable_drift_stops_with_the_reason() {
    let (cloud, certs) = world().await;
    let gcp = cloud.gcp();
    let d = desired();
    // A forwarding rule of that name already listens on another address.
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/addresses"),
            json!({"name": "elsewhere"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stack::bootstrap(&gcp, &d, &certs, quiet()).await.unwrap();
    let other = compute(&cloud, "global/addresses/elsewhere").await["address"]
        .as_str()
        .unwrap()
        .to_string();
    let fr = compute(&cloud, "global/forwardingRules/app-forwarding-rule").await;
    let del = cloud
        .http
        .delete(format!(
            "{}compute/v1/projects/{PROJECT}/global/forwardingRules/app-forwarding-rule",
            cloud.emu.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/forwardingRules"),
            json!({"name": "app-forwarding-rule", "IPAddress": other, "portRange": "443",
                   "target": fr["target"], "loadBalancingScheme": "EXTERNAL_MANAGED"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    cloud.clear_requests().await;
    let e = stack::bootstrap(&gcp, &d, &certs, quiet())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "forwarding rule app-forwarding-rule listens on {other}"
        )),
        "{text}"
    );
    assert!(
        text.contains("IPAddress cannot be changed after creation"),
        "{text}"
    );
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());
}

#[tokio::test]
async fn bootstrap_converges_through_transient_compute_failures() {
    let (cloud, certs) = world().await;
    let gcp = cloud.gcp();
    let d = desired();
    cloud
        .fault(json!({"method": "compute.*", "probability": 0.2, "status": 503}))
        .await;
    stack::bootstrap(&gcp, &d, &certs, quiet()).await.unwrap();
    let failed = cloud
        .requests()
        .await
        .iter()
        .filter(|r| r["status"] == 503)
        .count();
    assert!(failed > 0, "no fault fired");
    let (s, _) = cloud
        .http
        .delete(format!("{}emulator/faults", cloud.emu.base_url()))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert!(s < 300);
    assert_graph(&cloud).await;
    cloud.clear_requests().await;
    stack::bootstrap(&gcp, &d, &certs, quiet()).await.unwrap();
    assert_eq!(mutations(&cloud).await, Vec::<String>::new());
}

#[tokio::test]
async fn errors_users_meet_say_what_to_do() {
    let (cloud, certs) = world().await;
    let gcp = cloud.gcp();
    // The service is in another region.
    let mut d = desired();
    d.region = "us-central1".into();
    let e = stack::bootstrap(&gcp, &d, &certs, quiet())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("Cloud Run service app does not exist in region us-central1"),
        "{e}"
    );
    // An API is disabled: which one, and the command that enables it.
    let (s, b) = cloud
        .post(
            "emulator/apis",
            json!({"api": "iap.googleapis.com", "enabled": false}),
        )
        .await;
    assert!(s < 300, "{b}");
    let d = desired();
    let e = stack::bootstrap(&gcp, &d, &certs, quiet())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("gcloud services enable iap.googleapis.com"),
        "{text}"
    );
    // A missing permission: Google's message names it.
    cloud
        .post(
            "emulator/apis",
            json!({"api": "iap.googleapis.com", "enabled": true}),
        )
        .await;
    let (s, b) = cloud
        .post(
            "emulator/iam/denied",
            json!({"permissions": ["resourcemanager.projects.get"]}),
        )
        .await;
    assert!(s < 300, "{b}");
    let e = stack::bootstrap(&gcp, &d, &certs, quiet())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("resourcemanager.projects.get"), "{text}");
    assert!(text.contains("grant the missing permission"), "{text}");
}

fn cli() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("gclb-acme").unwrap();
    c.env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env("HOME", "/nonexistent");
    c
}

#[test]
fn teardown_refuses_without_yes_when_it_cannot_ask() {
    let example = format!("{}/config/example.toml", env!("CARGO_MANIFEST_DIR"));
    let out = cli()
        .args(["--config", &example, "teardown"])
        .write_stdin("yes\n")
        .assert()
        .code(1);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("stdin is not a terminal"), "{err}");
    assert!(err.contains("gclb-acme teardown --yes"), "{err}");
}

#[test]
fn bootstrap_without_a_stack_section_says_so() {
    let example = std::fs::read_to_string(format!(
        "{}/config/example.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let cut = example.find("[stack]").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(&f, &example[..cut]).unwrap();
    let out = cli()
        .args(["--config", f.to_str().unwrap(), "bootstrap", "--dry-run"])
        .assert()
        .code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("no [stack] section"), "{err}");
}
