//! Lifecycles, not single commands: bootstrap, renew, teardown, bootstrap again,
//! renew, with hand edits and crashes in between, against the gcp-emulator and
//! Pebble. After each step what exists, what the proxy serves and what the state
//! directory says must agree. The walkthrough's names are used: its HTTPS proxy
//! is called `cloud-run-iap-http-proxy`, which is also the default name of the
//! HTTP proxy of a service called `cloud-run-iap` (two collections, one name).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gclb_acme::acme::load_pending;
use gclb_acme::config::Config;
use gclb_acme::gcp::Gcp;
use gclb_acme::gcp::run::INGRESS_INTERNAL_LOAD_BALANCER;
use gclb_acme::lb::naming;
use gclb_acme::reconcile::{Outcome, RenewError};
use gclb_acme::stack::INGRESS_LABEL;
use gclb_acme::stack::IssueWithAcme;
use gclb_acme::stack::{self, Desired, Options, Report, StackError};
use gclb_acme::state::{State, StateDir};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestCaseError, TestError, TestRunner};
use serde_json::{Value, json};
use support::gcp::{Cloud, PROJECT};
use support::lb::Lab;

const REGION: &str = "europe-west1";
const SERVICE: &str = "cloud-run-iap";
/// The walkthrough's HTTPS proxy name.
const HTTPS_PROXY: &str = "cloud-run-iap-http-proxy";
const CERT: &str = "app";
const DOMAIN: &str = "example.test";
/// A certificate uploaded by hand under a name of our shape: never ours.
const HANDMADE: &str = "app-handmade";

struct World {
    lab: Lab,
    config: Config,
    desired: Desired,
    state: State,
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

/// The stack section; `names` is appended verbatim under `[names]`.
fn stack_toml(secret: &std::path::Path, names: &str) -> String {
    format!(
        r#"region = "{REGION}"
service = "{SERVICE}"
domains = ["{DOMAIN}"]
certificate = "{CERT}"
[iap]
oauth_client_id = "1234-abc.apps.googleusercontent.com"
oauth_client_secret_file = "{}"
members = ["user:alice@example.test"]
[names]
https_proxy = "{HTTPS_PROXY}"
{names}
"#,
        secret.display()
    )
}

/// Emulator (zone example.test, a Cloud Run service with ingress `ingress`)
/// and Pebble; the walkthrough's names; `names` adds to `[stack.names]`.
async fn world_with(ingress: &str, names: &str) -> World {
    let lab = Lab::start().await;
    let (s, b) = lab
        .cloud
        .post(
            &format!("v2/projects/{PROJECT}/locations/{REGION}/services?serviceId={SERVICE}"),
            json!({"ingress": ingress, "template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let secret = lab.tmp.path().join("oauth-secret");
    std::fs::write(&secret, "oauth-client-secret").unwrap();
    let mut config = lab.config(&[HTTPS_PROXY]);
    // The load balancer's IP is not on this machine: nothing to connect to.
    config.daemon.verify_after_swap = false;
    config.stack = Some(toml::from_str(&stack_toml(&secret, names)).unwrap());
    let desired = Desired::from_config(&config, PROJECT).unwrap();
    let state = StateDir::open(&config.state.dir).unwrap().into();
    // Let the service's creation settle (it is reconciling at first).
    tokio::time::sleep(Duration::from_millis(50)).await;
    World {
        lab,
        config,
        desired,
        state,
    }
}

async fn world() -> World {
    world_with("INGRESS_TRAFFIC_ALL", "").await
}

impl World {
    fn cloud(&self) -> &Cloud {
        &self.lab.cloud
    }

    fn gcp(&self) -> Gcp {
        self.lab.cloud.gcp()
    }

    async fn bootstrap_with(&self, opts: Options) -> Result<Report, StackError> {
        let gcp = self.gcp();
        let certs = IssueWithAcme::new(gcp.clone(), &self.config, &self.desired)?;
        stack::bootstrap(&gcp, &self.desired, &certs, opts).await
    }

    async fn bootstrap(&self) -> Result<Report, StackError> {
        self.bootstrap_with(quiet()).await
    }

    async fn teardown(&self) -> Result<Report, StackError> {
        stack::teardown_with_state(&self.gcp(), &self.desired, quiet(), Some(&self.state)).await
    }

    async fn renew(&self) -> Result<Outcome, RenewError> {
        let mut r = self.lab.renewer(&self.config).await;
        r.install.verify = None;
        r.renew(&self.config.certificates[0], true).await
    }

    /// The resource the pending certificate would be uploaded as.
    async fn pending_resource(&self) -> Option<String> {
        load_pending(&self.state, CERT)
            .await
            .unwrap()
            .map(|p| naming::certificate_resource_name(CERT, &p.leaf.sha256_hex))
    }

    async fn compute(&self, path: &str) -> (u16, Value) {
        self.cloud()
            .get(&format!("compute/v1/projects/{PROJECT}/{path}"))
            .await
    }

    async fn exists(&self, path: &str) -> bool {
        let (s, b) = self.compute(path).await;
        assert!(s == 200 || s == 404, "GET {path}: {s} {b}");
        s == 200
    }

    /// Every sslCertificate: name -> description.
    async fn certificates(&self) -> BTreeMap<String, Option<String>> {
        let (s, b) = self.compute("global/sslCertificates").await;
        assert_eq!(s, 200, "{b}");
        b["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["description"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    async fn ours(&self) -> BTreeSet<String> {
        self.certificates()
            .await
            .into_iter()
            .filter(|(n, d)| naming::is_ours(CERT, n, d.as_deref()))
            .map(|(n, _)| n)
            .collect()
    }

    /// Names of the certificates the HTTPS proxy serves; `None` without proxy.
    async fn served(&self) -> Option<Vec<String>> {
        let (s, b) = self
            .compute(&format!("global/targetHttpsProxies/{HTTPS_PROXY}"))
            .await;
        if s == 404 {
            return None;
        }
        assert_eq!(s, 200, "{b}");
        Some(
            b["sslCertificates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| u.as_str().unwrap().rsplit('/').next().unwrap().to_string())
                .collect(),
        )
    }

    async fn run_service(&self) -> Value {
        let (s, b) = self
            .cloud()
            .get(&format!(
                "v2/projects/{PROJECT}/locations/{REGION}/services/{SERVICE}"
            ))
            .await;
        assert_eq!(s, 200, "{b}");
        b
    }

    async fn invokers(&self) -> Vec<String> {
        let (s, b) = self
            .cloud()
            .get(&format!(
                "v2/projects/{PROJECT}/locations/{REGION}/services/{SERVICE}:getIamPolicy"
            ))
            .await;
        assert_eq!(s, 200, "{b}");
        b["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["role"] == "roles/run.invoker")
            .flat_map(|x| x["members"].as_array().cloned().unwrap_or_default())
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect()
    }

    async fn a_record(&self) -> Vec<String> {
        let (s, b) = self
            .cloud()
            .get(&format!(
                "dns/v1/projects/{PROJECT}/managedZones/example-test/rrsets?name={DOMAIN}.&type=A"
            ))
            .await;
        assert_eq!(s, 200, "{b}");
        b["rrsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["rrdatas"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// Every resource of the stack, by (collection path, name), that exists.
    async fn stack_resources(&self) -> Vec<String> {
        let n = &self.desired.names;
        let mut out = Vec::new();
        for (coll, name) in [
            ("global/forwardingRules", &n.forwarding_rule),
            ("global/forwardingRules", &n.http_forwarding_rule),
            ("global/targetHttpsProxies", &n.https_proxy),
            ("global/targetHttpProxies", &n.http_proxy),
            ("global/urlMaps", &n.url_map),
            ("global/urlMaps", &n.http_url_map),
            ("global/backendServices", &n.backend),
            ("global/addresses", &n.ip),
        ] {
            if self.exists(&format!("{coll}/{name}")).await {
                out.push(format!("{coll}/{name}"));
            }
        }
        let neg = format!("regions/{REGION}/networkEndpointGroups/{}", n.neg);
        if self.exists(&neg).await {
            out.push(neg);
        }
        out
    }

    /// After a successful bootstrap: the stack is complete (a dry run plans
    /// nothing), the proxy serves one valid certificate of ours for the domain,
    /// the ingress is the load balancer's with the earlier value recorded.
    async fn assert_up(&self, ctx: &str) {
        let r = self.bootstrap_with(dry()).await.unwrap();
        assert_eq!(r.planned, Vec::<String>::new(), "{ctx}: stack incomplete");
        let served = self.served().await.expect("proxy exists");
        assert_eq!(served.len(), 1, "{ctx}: serves {served:?}");
        let ours = self.ours().await;
        assert!(
            ours.contains(&served[0]),
            "{ctx}: serves {served:?}, ours are {ours:?}"
        );
        let (_, c) = self
            .compute(&format!("global/sslCertificates/{}", served[0]))
            .await;
        let sans: Vec<&str> = c["subjectAlternativeNames"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(sans.contains(&DOMAIN), "{ctx}: SANs {sans:?}");
        let svc = self.run_service().await;
        assert_eq!(svc["ingress"], INGRESS_INTERNAL_LOAD_BALANCER, "{ctx}");
        assert_eq!(
            svc["labels"][INGRESS_LABEL], "ingress_traffic_all",
            "{ctx}: {svc}"
        );
        assert_eq!(self.a_record().await.len(), 1, "{ctx}");
    }

    /// After a successful renew: [`World::assert_up`]'s certificate facts, nothing
    /// pending, and no certificate of ours but the served one.
    async fn assert_renewed(&self, ctx: &str) {
        let served = self.served().await.expect("proxy exists");
        let ours = self.ours().await;
        assert_eq!(
            ours,
            served.iter().cloned().collect::<BTreeSet<_>>(),
            "{ctx}: ours vs served"
        );
        assert_eq!(self.pending_resource().await, None, "{ctx}: still pending");
    }

    /// After a successful teardown: nothing of the stack, no certificate of
    /// ours, no A record, no invoker binding, the ingress as before bootstrap,
    /// and no pending certificate naming one that teardown deleted.
    async fn assert_down(&self, ctx: &str, r: &Report, ingress_before: &str) {
        assert_eq!(self.stack_resources().await, Vec::<String>::new(), "{ctx}");
        assert_eq!(self.ours().await, BTreeSet::new(), "{ctx}");
        assert_eq!(self.a_record().await, Vec::<String>::new(), "{ctx}");
        assert_eq!(self.invokers().await, Vec::<String>::new(), "{ctx}");
        let svc = self.run_service().await;
        assert_eq!(svc["ingress"], ingress_before, "{ctx}");
        assert!(svc["labels"].get(INGRESS_LABEL).is_none(), "{ctx}: {svc}");
        if let Some(p) = self.pending_resource().await {
            assert!(
                !r.deleted_certificates.contains(&p),
                "{ctx}: state still holds {p}, which teardown deleted"
            );
        }
        let again = stack::teardown(&self.gcp(), &self.desired, dry())
            .await
            .unwrap();
        assert_eq!(again.planned, Vec::<String>::new(), "{ctx}");
    }

    /// Every requestId sent so far, with each distinct `METHOD path` it was
    /// sent with: an id used for two different mutations is a defect (Compute
    /// answers the second with the first's operation and does nothing).
    async fn shared_request_ids(&self) -> (usize, Vec<String>) {
        let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in self.cloud().requests().await {
            let q = r["query"].as_str().unwrap_or("");
            if let Some(id) = q.split('&').find_map(|kv| kv.strip_prefix("requestId=")) {
                by_id
                    .entry(id.to_ascii_lowercase())
                    .or_default()
                    .insert(format!(
                        "{} {}",
                        r["method"].as_str().unwrap_or("?"),
                        r["path"].as_str().unwrap_or("?")
                    ));
            }
        }
        let shared = by_id
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        (by_id.len(), shared)
    }

    /// A certificate uploaded by hand, with a name of our shape but no marker.
    async fn handmade_certificate(&self) {
        let c = rcgen::generate_simple_self_signed(vec![DOMAIN.into()]).unwrap();
        let (s, b) = self
            .cloud()
            .post(
                &format!("compute/v1/projects/{PROJECT}/global/sslCertificates"),
                json!({"name": HANDMADE, "description": "uploaded by hand",
                       "certificate": c.cert.pem(), "privateKey": c.signing_key.serialize_pem()}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }

    /// Deletes by hand (the way a user with gcloud would) the HTTPS forwarding
    /// rule and the HTTPS proxy, when they exist.
    async fn delete_proxy_by_hand(&self) {
        let n = &self.desired.names;
        for path in [
            format!("global/forwardingRules/{}", n.forwarding_rule),
            format!("global/targetHttpsProxies/{HTTPS_PROXY}"),
        ] {
            let r = self
                .cloud()
                .http
                .delete(format!(
                    "{}compute/v1/projects/{PROJECT}/{path}",
                    self.cloud().emu.base_url()
                ))
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success() || r.status() == 404,
                "delete {path}: {}",
                r.status()
            );
            // Let the operation finish before the next delete needs it gone.
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }

    /// Points both proxies (one name, two collections) at the URL map `um` by
    /// hand, when they exist: drift bootstrap repairs with `setUrlMap`.
    async fn repoint_proxies_by_hand(&self) {
        for coll in ["targetHttpsProxies", "targetHttpProxies"] {
            let (s, b) = self
                .cloud()
                .post(
                    &format!("compute/v1/projects/{PROJECT}/{coll}/{HTTPS_PROXY}/setUrlMap"),
                    json!({"urlMap": support::lb::link("urlMaps", "um")}),
                )
                .await;
            assert!(s == 200 || s == 404, "{coll} setUrlMap: {s} {b}");
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    /// Sets the service's ingress by hand, labels untouched.
    async fn set_ingress_by_hand(&self, ingress: &str) {
        let r = self
            .cloud()
            .http
            .patch(format!(
                "{}v2/projects/{PROJECT}/locations/{REGION}/services/{SERVICE}?updateMask=ingress",
                self.cloud().emu.base_url()
            ))
            .json(&json!({ "ingress": ingress }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// The issue's sequence with the walkthrough's names: the HTTPS proxy and the
/// HTTP proxy are both `cloud-run-iap-http-proxy`. Teardown used to send both
/// deletes with one requestId; the HTTPS proxy survived, and everything behind
/// it too. Every step must succeed, and no requestId may name two mutations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_names_bootstrap_renew_teardown_bootstrap_renew() {
    let w = world().await;
    assert_eq!(w.desired.names.http_proxy, w.desired.names.https_proxy);
    let r = w.bootstrap().await.unwrap();
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("stack.names.https_proxy") && n.contains("stack.names.http_proxy")),
        "the shared name is not noted: {:#?}",
        r.notes
    );
    w.assert_up("first bootstrap").await;
    w.renew().await.unwrap();
    w.assert_renewed("first renew").await;
    // Both proxies pointed elsewhere: one repair each, in one run.
    w.repoint_proxies_by_hand().await;
    let r = w.bootstrap().await.unwrap();
    assert_eq!(
        r.applied
            .iter()
            .filter(|a| a.starts_with("point target"))
            .count(),
        2,
        "{:#?}",
        r.applied
    );
    w.assert_up("bootstrap after drift").await;

    let r = w.teardown().await.unwrap();
    w.assert_down("teardown", &r, "INGRESS_TRAFFIC_ALL").await;
    assert!(
        r.applied
            .iter()
            .any(|a| a == &format!("delete target HTTPS proxy {HTTPS_PROXY}")),
        "{:#?}",
        r.applied
    );

    w.bootstrap().await.unwrap();
    w.assert_up("second bootstrap").await;
    w.renew().await.unwrap();
    w.assert_renewed("second renew").await;
    let r = w.teardown().await.unwrap();
    w.assert_down("second teardown", &r, "INGRESS_TRAFFIC_ALL")
        .await;

    let (ids, shared) = w.shared_request_ids().await;
    println!("{ids} distinct requestIds sent");
    assert!(ids > 20, "too few mutations seen: {ids}");
    assert_eq!(
        shared,
        Vec::<String>::new(),
        "requestIds shared by mutations"
    );
}

/// A teardown that left the issued certificate in the state directory (an
/// older gclb-acme, or a renew that issued after teardown) must not make every
/// later bootstrap and renew fail: uploading it again used to reuse the first
/// upload's requestId, Compute answered with the old DONE operation, nothing
/// was created, and the proxy creation met 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_after_a_teardown_that_kept_the_issued_certificate() {
    let w = world().await;
    w.bootstrap().await.unwrap();
    let pending = w
        .pending_resource()
        .await
        .expect("bootstrap leaves it pending");
    assert!(w.ours().await.contains(&pending));
    // Teardown without the state directory: the certificate goes, the file stays.
    let r = stack::teardown(&w.gcp(), &w.desired, quiet())
        .await
        .unwrap();
    assert!(r.deleted_certificates.contains(&pending), "{r:?}");
    assert_eq!(
        w.pending_resource().await.as_deref(),
        Some(pending.as_str())
    );

    // Bootstrap re-uploads what the state directory still holds.
    w.bootstrap().await.unwrap();
    w.assert_up("bootstrap after teardown").await;
    assert_eq!(w.served().await.unwrap(), vec![pending.clone()]);
    w.renew().await.unwrap();
    w.assert_renewed("renew after").await;
    w.renew().await.unwrap();
    w.assert_renewed("second renew").await;

    // And with the state directory, teardown forgets what it deleted: the
    // pending copy and the renewal bookkeeping of the served certificate.
    w.bootstrap().await.unwrap();
    let pending = w.pending_resource().await;
    let book = gclb_acme::schedule::Book {
        failures: 3,
        ..Default::default()
    };
    book.save(&w.state, CERT).await.unwrap();
    let r = w.teardown().await.unwrap();
    assert_eq!(
        w.state.read(&format!("daemon/{CERT}.json")).await.unwrap(),
        None
    );
    assert!(
        r.forgotten.contains(&format!("daemon/{CERT}.json")),
        "{:?}",
        r.forgotten
    );
    w.assert_down("teardown with state", &r, "INGRESS_TRAFFIC_ALL")
        .await;
    if let Some(p) = pending {
        assert!(r.forgotten.iter().any(|f| f.contains(CERT)), "{r:?} {p}");
    }
    assert_eq!(w.pending_resource().await, None);
}

/// Renew after teardown issues, then fails (no proxy), leaving the certificate
/// pending and never uploaded; bootstrap then installs exactly that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_after_teardown_fails_clearly_and_bootstrap_uses_what_it_issued() {
    let w = world().await;
    w.bootstrap().await.unwrap();
    w.renew().await.unwrap();
    let r = w.teardown().await.unwrap();
    w.assert_down("teardown", &r, "INGRESS_TRAFFIC_ALL").await;
    let e = w.renew().await.unwrap_err();
    assert!(e.to_string().contains(HTTPS_PROXY), "{e}");
    w.bootstrap().await.unwrap();
    w.assert_up("bootstrap").await;
    w.renew().await.unwrap();
    w.assert_renewed("renew").await;
}

/// A service whose ingress was already the load balancer's before bootstrap:
/// bootstrap records nothing, teardown leaves it and says why and how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_restores_only_the_ingress_bootstrap_changed() {
    let w = world_with(INGRESS_INTERNAL_LOAD_BALANCER, "").await;
    let r = w.bootstrap().await.unwrap();
    assert!(
        !r.applied.iter().any(|a| a.contains("ingress")),
        "{:#?}",
        r.applied
    );
    assert!(w.run_service().await["labels"].get(INGRESS_LABEL).is_none());
    let r = w.teardown().await.unwrap();
    assert_eq!(
        w.run_service().await["ingress"],
        INGRESS_INTERNAL_LOAD_BALANCER
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("recorded no earlier value") && n.contains("--ingress all")),
        "{:#?}",
        r.notes
    );

    // Changed by hand to internal-only, bootstrap records that, teardown puts it back.
    w.set_ingress_by_hand("INGRESS_TRAFFIC_INTERNAL_ONLY").await;
    w.bootstrap().await.unwrap();
    assert_eq!(
        w.run_service().await["labels"][INGRESS_LABEL],
        "ingress_traffic_internal_only"
    );
    // A second bootstrap after a hand edit keeps the first record.
    w.set_ingress_by_hand("INGRESS_TRAFFIC_ALL").await;
    w.bootstrap().await.unwrap();
    assert_eq!(
        w.run_service().await["labels"][INGRESS_LABEL],
        "ingress_traffic_internal_only"
    );
    let r = w.teardown().await.unwrap();
    w.assert_down("teardown", &r, "INGRESS_TRAFFIC_INTERNAL_ONLY")
        .await;
}

/// Two stack resources of one collection under one name: the dry run refuses
/// before changing anything, and so does bootstrap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_collisions_are_refused_by_the_dry_run_before_any_change() {
    let w = world_with(
        "INGRESS_TRAFFIC_ALL",
        "http_url_map = \"cloud-run-iap-url-map\"\nhttp_forwarding_rule = \"cloud-run-iap-forwarding-rule\"",
    )
    .await;
    w.cloud().clear_requests().await;
    for opts in [dry(), quiet()] {
        let e = w.bootstrap_with(opts).await.unwrap_err().to_string();
        assert!(
            e.contains("stack.names.url_map and stack.names.http_url_map")
                && e.contains("stack.names.forwarding_rule and stack.names.http_forwarding_rule"),
            "{e}"
        );
    }
    let mutations: Vec<Value> = w
        .cloud()
        .requests()
        .await
        .into_iter()
        .filter(|r| {
            r["method"] != "GET" && !r["id"].as_str().unwrap_or("").ends_with("getIamPolicy")
        })
        .collect();
    assert_eq!(mutations, Vec::<Value>::new());
}

/// Each command killed at random moments, several times in a row, then run to
/// the end: every sequence converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_random_points_then_every_command_converges() {
    let w = world().await;
    let mut rng = rand::rng();
    for round in 0..2 {
        for cmd in [Cmd::Bootstrap, Cmd::Renew, Cmd::Teardown] {
            for _ in 0..3 {
                let ms = rand::RngExt::random_range(&mut rng, 5..600);
                let finished = crash(&w, cmd, ms).await;
                println!("round {round}: {cmd:?} stopped after {ms} ms (finished: {finished})");
            }
            let ctx = format!("round {round}: {cmd:?} after crashes");
            match cmd {
                Cmd::Bootstrap => {
                    w.bootstrap().await.unwrap();
                    w.assert_up(&ctx).await;
                }
                Cmd::Renew => {
                    w.renew().await.unwrap();
                    w.assert_renewed(&ctx).await;
                }
                Cmd::Teardown => {
                    let r = w.teardown().await.unwrap();
                    w.assert_down(&ctx, &r, "INGRESS_TRAFFIC_ALL").await;
                }
            }
        }
    }
    let (_, shared) = w.shared_request_ids().await;
    assert_eq!(shared, Vec::<String>::new());
}

#[derive(Clone, Copy, Debug)]
enum Cmd {
    Bootstrap,
    Renew,
    Teardown,
}

/// Runs `cmd` and drops it after `ms` (a crash at whatever await point it had
/// reached); returns whether it finished first.
async fn crash(w: &World, cmd: Cmd, ms: u64) -> bool {
    let limit = Duration::from_millis(ms);
    match cmd {
        Cmd::Bootstrap => tokio::time::timeout(limit, w.bootstrap()).await.is_ok(),
        Cmd::Renew => tokio::time::timeout(limit, w.renew()).await.is_ok(),
        Cmd::Teardown => tokio::time::timeout(limit, w.teardown()).await.is_ok(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Run(Cmd),
    Crash(Cmd, u64),
    DeleteProxyByHand,
    HandmadeCertificate,
    IngressAllByHand,
    RepointProxiesByHand,
}

fn op() -> impl Strategy<Value = Op> {
    let cmd = prop_oneof![Just(Cmd::Bootstrap), Just(Cmd::Renew), Just(Cmd::Teardown)];
    prop_oneof![
        6 => cmd.clone().prop_map(Op::Run),
        2 => (cmd, 5u64..300).prop_map(|(c, ms)| Op::Crash(c, ms)),
        1 => Just(Op::DeleteProxyByHand),
        1 => Just(Op::HandmadeCertificate),
        1 => Just(Op::IngressAllByHand),
        1 => Just(Op::RepointProxiesByHand),
    ]
}

/// One drawn sequence; after each step what exists, what is served and what
/// the state directory says must agree.
async fn run_sequence(ops: &[Op]) -> Result<(), String> {
    let w = world().await;
    let mut handmade = false;
    for (i, op) in ops.iter().enumerate() {
        let ctx = format!("step {i} ({op:?})");
        match op {
            Op::Run(Cmd::Bootstrap) => {
                w.bootstrap().await.map_err(|e| format!("{ctx}: {e}"))?;
                w.assert_up(&ctx).await;
            }
            Op::Run(Cmd::Renew) => {
                let proxy = w.served().await.is_some();
                match w.renew().await {
                    Ok(_) => {
                        if !proxy {
                            return Err(format!("{ctx}: renewed without a proxy"));
                        }
                        w.assert_renewed(&ctx).await;
                    }
                    Err(e) if !proxy && e.to_string().contains(HTTPS_PROXY) => {}
                    Err(e) => return Err(format!("{ctx}: {e}")),
                }
            }
            Op::Run(Cmd::Teardown) => {
                let r = w.teardown().await.map_err(|e| format!("{ctx}: {e}"))?;
                w.assert_down(&ctx, &r, "INGRESS_TRAFFIC_ALL").await;
            }
            Op::Crash(cmd, ms) => {
                crash(&w, *cmd, *ms).await;
            }
            Op::DeleteProxyByHand => w.delete_proxy_by_hand().await,
            Op::HandmadeCertificate => {
                if !handmade {
                    w.handmade_certificate().await;
                    handmade = true;
                }
            }
            Op::IngressAllByHand => w.set_ingress_by_hand("INGRESS_TRAFFIC_ALL").await,
            Op::RepointProxiesByHand => w.repoint_proxies_by_hand().await,
        }
        if handmade && !w.certificates().await.contains_key(HANDMADE) {
            return Err(format!("{ctx}: the hand-made certificate was deleted"));
        }
    }
    // Whatever happened, bootstrap, renew and teardown converge from here.
    w.bootstrap()
        .await
        .map_err(|e| format!("final bootstrap: {e}"))?;
    w.assert_up("final bootstrap").await;
    w.renew().await.map_err(|e| format!("final renew: {e}"))?;
    w.assert_renewed("final renew").await;
    let r = w
        .teardown()
        .await
        .map_err(|e| format!("final teardown: {e}"))?;
    w.assert_down("final teardown", &r, "INGRESS_TRAFFIC_ALL")
        .await;
    let (_, shared) = w.shared_request_ids().await;
    if !shared.is_empty() {
        return Err(format!("requestIds shared by mutations: {shared:?}"));
    }
    Ok(())
}

/// Stateful property test: a few drawn sequences of bootstrap, renew, teardown,
/// crashes and hand edits (bounded: 6 cases of at most 7 steps, no shrinking,
/// since each step costs real issuance). The drawn sequence is printed before
/// it runs and in the failure.
#[test]
fn drawn_lifecycles_keep_gcp_and_the_state_directory_in_agreement() {
    // GCLB_ACME_SOAK=long draws more (a soak, not the default run).
    let cases = match std::env::var("GCLB_ACME_SOAK").as_deref() {
        Ok("long") => 40,
        _ => 6,
    };
    let mut runner = TestRunner::new(PropConfig {
        cases,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let seqs = Arc::new(Mutex::new(0usize));
    let result = runner.run(&prop::collection::vec(op(), 2..=7), |ops| {
        *seqs.lock().unwrap() += 1;
        println!("drawn sequence: {ops:?}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_sequence(&ops))
            .map_err(|e| TestCaseError::fail(format!("{e}\nsequence: {ops:?}")))
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => panic!("{why}\nfailing sequence: {ops:?}"),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(
        *seqs.lock().unwrap(),
        cases as usize,
        "every drawn case ran"
    );
}

/// Log lines written through `tracing` while a test runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// With every Google call failing 503, the operator sees the first failure at
/// once (a WARN naming the attempt, how many remain and when the next one
/// comes), each retry after it, and a summary at the end; and a garbled body
/// does not start a second ladder: one call sends at most `max_attempts`
/// requests whatever mix of failures it meets.
#[tokio::test(flavor = "current_thread")]
async fn google_down_is_reported_at_the_first_failure_and_one_ladder_per_call() {
    let cloud = Cloud::start().await;
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut gcp = cloud.gcp();
    gcp.retry = gclb_acme::gcp::RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };

    cloud
        .fault(json!({"method": "compute.sslCertificates.list", "status": 503}))
        .await;
    cloud.clear_requests().await;
    let e = gcp.list_ssl_certificates(None).await.unwrap_err();
    assert_eq!(e.code(), Some(503), "{e}");
    assert_eq!(cloud.count("compute.sslCertificates.list", false).await, 4);
    let lines = logs.lines();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", lines.join("\n")))
    };
    let first = pos("attempt 1 of 4");
    assert!(lines[first].contains("WARN"), "{}", lines[first]);
    assert!(lines[first].contains("retrying in"), "{}", lines[first]);
    assert!(lines[first].contains("503"), "{}", lines[first]);
    assert!(first < pos("attempt 2 of 4"));
    assert!(first < pos("attempt 3 of 4"));
    let end = pos("giving up after 4 attempts");
    assert!(lines[end].contains("WARN"), "{}", lines[end]);
    assert!(end > pos("attempt 3 of 4"));

    // Two truncated 200s, then 503s: four requests in all, not 2 + 4.
    let (s, _) = cloud.send_delete("emulator/faults").await;
    assert!(s < 300);
    cloud
        .fault(json!({"method": "compute.sslCertificates.list", "kind": "corrupt", "count": 2}))
        .await;
    cloud
        .fault(json!({"method": "compute.sslCertificates.list", "status": 503}))
        .await;
    cloud.clear_requests().await;
    let e = gcp.list_ssl_certificates(None).await.unwrap_err();
    assert_eq!(e.code(), Some(503), "{e}");
    assert_eq!(cloud.count("compute.sslCertificates.list", false).await, 4);

    // Recovering after failures is summarised too.
    let (s, _) = cloud.send_delete("emulator/faults").await;
    assert!(s < 300);
    cloud
        .fault(json!({"method": "compute.sslCertificates.list", "status": 503, "count": 1}))
        .await;
    assert_eq!(gcp.list_ssl_certificates(None).await.unwrap().len(), 0);
    assert!(
        logs.lines()
            .iter()
            .any(|l| l.contains("succeeded after retries") && l.contains("attempts=2")),
        "{}",
        logs.lines().join("\n")
    );
}

trait SendDelete {
    async fn send_delete(&self, path: &str) -> (u16, ());
}

impl SendDelete for Cloud {
    async fn send_delete(&self, path: &str) -> (u16, ()) {
        let r = self
            .http
            .delete(format!("{}{path}", self.emu.base_url()))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    }
}

/// Renew stopped right after uploading (as by a crash), then the unused upload
/// deleted by hand: the state directory still holds the certificate, and the
/// next renew uploads it again under a new requestId and installs it, instead
/// of failing on its name for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_reuploads_a_pending_certificate_deleted_by_hand() {
    let w = world().await;
    w.bootstrap().await.unwrap();
    w.renew().await.unwrap();
    let served = w.served().await.unwrap();

    let mut r = w.lab.renewer(&w.config).await;
    r.install.verify = None;
    r.install.hook = Some(Arc::new(|s: &str| s == gclb_acme::lb::step::INSERT_DONE));
    let e = r.renew(&w.config.certificates[0], true).await.unwrap_err();
    assert!(e.is_aborted(), "{e}");
    let pending = w.pending_resource().await.expect("pending after the crash");
    assert!(w.ours().await.contains(&pending));
    assert_eq!(w.served().await.unwrap(), served, "not swapped yet");

    let del = w
        .cloud()
        .send_delete(&format!(
            "compute/v1/projects/{PROJECT}/global/sslCertificates/{pending}"
        ))
        .await;
    assert_eq!(del.0, 200);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!w.ours().await.contains(&pending));

    w.renew().await.unwrap();
    w.assert_renewed("renew after the hand delete").await;
    assert_eq!(w.served().await.unwrap(), vec![pending]);
}

/// The same certificate installed twice on a proxy of one name, the proxy
/// deleted and created again in between (a hand rebuild): the second swap sets
/// the same list and used to carry the same requestId, so Compute answered with
/// the first swap's operation and the new proxy never got the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_on_a_recreated_proxy_is_not_taken_for_a_replay() {
    let lab = Lab::start().await;
    let names = support::lb::NAMES;
    // A certificate for other names: it keeps its place beside ours (one for the
    // same names would be superseded, and the list would not show the replay).
    let foreign = lab
        .upload(&["other.example.org"], 1, 90, None, "handmade-one")
        .await;
    lab.proxy("p1", &[&foreign]).await;
    let config = lab.config(&["p1"]);
    let cert = &config.certificates[0];
    let issued = support::lb::self_signed(&names, 0, 90);
    let resource = naming::certificate_resource_name(CERT, &issued.leaf.sha256_hex);
    let mut opts = support::lb::fast_install();
    opts.verify = None;
    let gcp = lab.cloud.gcp();
    gclb_acme::lb::install(&gcp, cert, &issued, &opts)
        .await
        .unwrap();
    assert_eq!(lab.served("p1").await, [foreign.clone(), resource.clone()]);

    // Rebuilt by hand as it was before the install.
    let del = lab
        .cloud
        .send_delete(&format!(
            "compute/v1/projects/{PROJECT}/global/targetHttpsProxies/p1"
        ))
        .await;
    assert_eq!(del.0, 200);
    tokio::time::sleep(Duration::from_millis(60)).await;
    lab.proxy("p1", &[&foreign]).await;
    tokio::time::sleep(Duration::from_millis(60)).await;

    let report = gclb_acme::lb::install(&gcp, cert, &issued, &opts)
        .await
        .unwrap();
    assert_eq!(report.swapped, ["p1"]);
    assert_eq!(lab.served("p1").await, [foreign, resource]);
}

/// The same lifecycle through the real binary, as a user runs it: bootstrap,
/// renew, teardown --yes, bootstrap, renew, teardown --yes. Teardown from the
/// command line forgets in the state directory what it deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_the_walkthrough_lifecycle() {
    let w = world().await;
    let secret = w.lab.tmp.path().join("oauth-secret");
    let stack = stack_toml(&secret, "")
        .lines()
        .map(|l| {
            // Nest the stack's tables under [stack].
            if l == "[iap]" || l == "[names]" {
                format!("[stack.{}", &l[1..])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let body = format!(
        "[daemon]\nverify_after_swap = false\n\n[[certificates]]\nname = \"{CERT}\"\ndomains = [\"example.test\", \"*.example.test\"]\ntarget_https_proxies = [\"{HTTPS_PROXY}\"]\n\n[stack]\n{stack}\n"
    );
    let config = support::fleet::write_config(&w.lab, &body);
    let config = config.to_str().unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    let log = w.lab.tmp.path().join("cli.log");
    let run = |args: &[&str]| {
        let mut full = vec!["--config", config.as_str()];
        full.extend_from_slice(args);
        let status = support::fleet::command(&w.lab, home.path(), &log, &full)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "gclb-acme {args:?}: {status}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    for round in 0..2 {
        run(&["bootstrap"]);
        w.assert_up(&format!("round {round}: bootstrap")).await;
        if round == 0 {
            run(&["renew", "--certificate", CERT, "--force"]);
            w.assert_renewed(&format!("round {round}: renew")).await;
        } else {
            // Straight to teardown: the certificate bootstrap issued is still
            // pending in the state directory, and teardown deletes it.
            assert!(w.pending_resource().await.is_some());
        }
        run(&["teardown", "--yes"]);
        let ctx = format!("round {round}: teardown");
        assert_eq!(w.stack_resources().await, Vec::<String>::new(), "{ctx}");
        assert_eq!(w.ours().await, BTreeSet::new(), "{ctx}");
        assert_eq!(
            w.run_service().await["ingress"],
            "INGRESS_TRAFFIC_ALL",
            "{ctx}"
        );
        assert_eq!(w.pending_resource().await, None, "{ctx}");
    }
    run(&["bootstrap"]);
    w.assert_up("bootstrap after two teardowns").await;
    run(&["renew", "--certificate", CERT]);
    w.assert_renewed("renew after two teardowns").await;
    let (_, shared) = w.shared_request_ids().await;
    assert_eq!(shared, Vec::<String>::new());
}
