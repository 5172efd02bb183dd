//! Issue #14: taking over from the walkthrough's hand-made certificate, against
//! the gcp-emulator and Pebble. The walkthrough's stack is created with its
//! resource names (Cloud Run service, serverless NEG, backend, URL map, IP,
//! hand-made certificate, HTTPS proxy, forwarding rule), plus an unrelated
//! certificate on the proxy.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gclb_acme::lb::StepHook;
use gclb_acme::reconcile::{Done, Outcome, Renewer};
use serde_json::{Value, json};
use support::gcp::{Cloud, PROJECT};
use support::lb::{Lab, link};

const REGION: &str = "europe-west1";
const DOMAIN: &str = "app.example.test";
const PROXY: &str = "cloud-run-iap-http-proxy";
const HAND_MADE: &str = "cloud-run-iap-cert";
const UNRELATED: &str = "unrelated-cert";

/// Posts a resource and waits until it can be read.
async fn create(cloud: &Cloud, collection_path: &str, body: Value) {
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/{collection_path}"),
            body.clone(),
        )
        .await;
    assert_eq!(s, 200, "{collection_path}: {b}");
    let name = body["name"].as_str().unwrap_or_default();
    for _ in 0..200 {
        let (s, _) = cloud
            .get(&format!(
                "compute/v1/projects/{PROJECT}/{collection_path}/{name}"
            ))
            .await;
        if s == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{collection_path}/{name} never appeared");
}

/// The walkthrough's end state, as its gcloud commands leave it: `hand_made`
/// lists the certificates on the proxy, in order, which the caller uploaded.
async fn walkthrough(lab: &Lab, proxy_certs: &[&str]) {
    let cloud = &lab.cloud;
    let (s, b) = cloud
        .post(
            &format!("v2/projects/{PROJECT}/locations/{REGION}/services?serviceId=cloud-run-iap"),
            json!({"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    create(
        cloud,
        &format!("regions/{REGION}/networkEndpointGroups"),
        json!({"name": "cloud-run-iap-neg", "networkEndpointType": "SERVERLESS",
               "cloudRun": {"service": "cloud-run-iap"}}),
    )
    .await;
    let neg = format!(
        "https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/{REGION}/networkEndpointGroups/cloud-run-iap-neg"
    );
    create(
        cloud,
        "global/backendServices",
        json!({"name": "cloud-run-iap-backend", "loadBalancingScheme": "EXTERNAL",
               "backends": [{"group": neg}]}),
    )
    .await;
    create(
        cloud,
        "global/urlMaps",
        json!({"name": "cloud-run-iap-url-map",
               "defaultService": link("backendServices", "cloud-run-iap-backend")}),
    )
    .await;
    create(
        cloud,
        "global/addresses",
        json!({"name": "cloud-run-iap-ip"}),
    )
    .await;
    create(
        cloud,
        "global/targetHttpsProxies",
        json!({"name": PROXY, "urlMap": link("urlMaps", "cloud-run-iap-url-map"),
               "sslCertificates": proxy_certs.iter().map(|c| link("sslCertificates", c)).collect::<Vec<_>>()}),
    )
    .await;
    create(
        cloud,
        "global/forwardingRules",
        json!({"name": "cloud-run-iap-forwarding-rule", "loadBalancingScheme": "EXTERNAL",
               "IPAddress": link("addresses", "cloud-run-iap-ip"), "portRange": "443",
               "target": link("targetHttpsProxies", PROXY)}),
    )
    .await;
}

/// A configuration for [`DOMAIN`] on the walkthrough's proxy.
fn config(lab: &Lab, domains: &[&str], adopt: &[&str]) -> gclb_acme::config::Config {
    let mut c = lab.config(&[PROXY]);
    c.certificates[0].domains = domains.iter().map(|s| s.to_string()).collect();
    c.certificates[0].adopt = adopt.iter().map(|s| s.to_string()).collect();
    c
}

/// One proxy list as seen at a step boundary: (certificate, SANs, not_after).
type Seen = Vec<(String, Vec<String>, time::OffsetDateTime)>;

/// Every boundary: (step, what the proxy lists, every certificate of the project).
type Log = Arc<Mutex<Vec<(String, Seen, Vec<String>)>>>;

/// A renewer whose step hook records, at every boundary, what `proxy` lists
/// and which certificates exist: every mutation sits between two boundaries,
/// so no state of the proxy goes unseen. (TLS verification is off: the
/// walkthrough's forwarding rule has an address nothing listens on.)
async fn watched(lab: &Lab, config: &gclb_acme::config::Config) -> (Renewer, Log) {
    let mut r = lab.renewer(config).await;
    r.install.verify = None;
    let log: Log = Arc::default();
    let gcp = r.gcp.clone();
    let l = log.clone();
    let hook: StepHook = Arc::new(move |step: &str| {
        let gcp = gcp.clone();
        let seen = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let p = gcp.get_target_https_proxy(PROXY).await.expect("proxy");
                let mut seen = Seen::new();
                for u in &p.ssl_certificates {
                    let name = gclb_acme::gcp::compute::name_of(u).to_string();
                    let c = gcp
                        .get_ssl_certificate(&name)
                        .await
                        .expect("get")
                        .unwrap_or_else(|| panic!("{PROXY} lists a missing {name}"));
                    let pem = c.certificate.clone().expect("pem");
                    let leaf = gclb_acme::certs::leaf_info(
                        &gclb_acme::certs::split_chain(&pem).expect("chain")[0],
                    )
                    .expect("leaf");
                    seen.push((name, leaf.dns_names.clone(), leaf.not_after));
                }
                let all: Vec<String> = gcp
                    .list_ssl_certificates(None)
                    .await
                    .expect("list")
                    .into_iter()
                    .map(|c| c.name)
                    .collect();
                (seen, all)
            })
        });
        l.lock().unwrap().push((step.to_string(), seen.0, seen.1));
        false
    });
    r.install.hook = Some(hook);
    (r, log)
}

/// At every recorded moment exactly one listed certificate serves `name`, and
/// it is valid.
fn assert_one_valid_certificate_for(name: &str, log: &[(String, Seen, Vec<String>)]) {
    assert!(!log.is_empty());
    let now = time::OffsetDateTime::now_utc();
    for (step, seen, _) in log {
        let serving: Vec<&(String, Vec<String>, time::OffsetDateTime)> = seen
            .iter()
            .filter(|(_, sans, _)| sans.iter().any(|s| gclb_acme::lb::serves(s, name)))
            .collect();
        assert_eq!(
            serving.len(),
            1,
            "at {step} the proxy lists {} certificates for {name}: {seen:?}",
            serving.len()
        );
        assert!(
            serving[0].2 > now,
            "at {step} the one for {name} has expired"
        );
    }
}

async fn renew(r: &Renewer, lab: &Lab, force: bool) -> Outcome {
    let mut v = r.renew_all(None, force).await;
    assert_eq!(v.len(), 1);
    v.remove(0)
        .1
        .unwrap_or_else(|e| panic!("renew: {e}\n{}", lab.pebble.log()))
}

fn report(o: &Outcome) -> &gclb_acme::lb::InstallReport {
    match &o.done {
        Done::Installed { report, .. } | Done::Swapped { report, .. } => report,
        other => panic!("expected an installation, got {other:?}"),
    }
}

async fn exists(lab: &Lab, name: &str) -> bool {
    lab.cloud
        .gcp()
        .get_ssl_certificate(name)
        .await
        .expect("get")
        .is_some()
}

async fn status(
    r: &Renewer,
    config: &gclb_acme::config::Config,
) -> gclb_acme::reconcile::CertificateStatus {
    let st = gclb_acme::reconcile::status(
        &r.gcp,
        config,
        &gclb_acme::state::StateDir::open(&config.state.dir)
            .unwrap()
            .into(),
    )
    .await;
    st.certificates[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_renewal_takes_the_hand_made_slot_keeps_the_resource_and_changes_nothing_else() {
    let lab = Lab::start().await;
    // The hand-made certificate expires in a few weeks, as in the issue.
    let hand = lab.upload(&[DOMAIN], 70, 90, None, HAND_MADE).await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, UNRELATED).await;
    walkthrough(&lab, &[&hand, &unrelated]).await;
    let config = config(&lab, &[DOMAIN], &[]);
    let (r, log) = watched(&lab, &config).await;

    // check previews what the first renewal will do, before anything changes.
    let lines = gclb_acme::preflight::takeover::check(&config, &r.gcp).await;
    let text: Vec<String> = lines
        .iter()
        .map(|l| format!("{:?} {}", l.status, l.what))
        .collect();
    eprintln!("{}", text.join("\n"));
    assert_eq!(lines.len(), 1, "{text:?}");
    assert_eq!(lines[0].status, gclb_acme::preflight::Status::Ok);
    assert!(text[0].contains(&format!(
        "<new> replaces {HAND_MADE} (hand-made: taken off, kept in the project; delete it later with: gcloud compute ssl-certificates delete {HAND_MADE} --global --project {PROJECT})"
    )), "{}", text[0]);
    assert!(
        text[0].contains(&format!("keeps {UNRELATED} in place")),
        "{}",
        text[0]
    );

    // Before: status says the hand-made one is not ours and nothing of ours is served.
    let before = status(&r, &config).await;
    assert!(!before.healthy);

    lab.cloud.clear_requests().await;
    let out = renew(&r, &lab, false).await;
    let rep = report(&out).clone();
    let ours = rep.resource.clone();
    assert_eq!(lab.served(PROXY).await, [ours.clone(), unrelated.clone()]);
    assert!(
        exists(&lab, &hand).await,
        "the hand-made resource is never deleted by default"
    );
    assert_eq!(rep.superseded.len(), 1);
    let h = &rep.superseded[0];
    assert_eq!(h.name, HAND_MADE);
    assert!(!h.deleted);
    assert!(h.still_served_by.is_empty());
    let said = h.to_string();
    assert!(said.contains("is no longer served by any proxy"), "{said}");
    assert!(
        said.contains(&format!("delete it with: gcloud compute ssl-certificates delete {HAND_MADE} --global --project {PROJECT}")),
        "{said}"
    );
    assert!(rep.deleted.is_empty() && rep.adopted_deleted.is_empty() && rep.competing.is_empty());
    // Nothing else changed: one upload, one swap.
    let muts = lab.cloud.compute_mutations().await;
    eprintln!(
        "FIGURES takeover: compute mutations {} {muts:?}",
        muts.len()
    );
    assert_eq!(
        muts,
        [
            "compute.sslCertificates.insert",
            "compute.targetHttpsProxies.setSslCertificates"
        ]
    );
    assert_eq!(lab.certificates().await, {
        let mut v = vec![hand.clone(), ours.clone(), unrelated.clone()];
        v.sort();
        v
    });
    assert_one_valid_certificate_for(DOMAIN, &log.lock().unwrap());

    // status names the hand-made one, says it is not served, gives the command.
    let st = status(&r, &config).await;
    assert!(st.healthy, "{st:?}");
    assert_eq!(st.hand_made.len(), 1, "{st:?}");
    assert!(
        st.hand_made[0]
            .message
            .contains("no longer served by any proxy"),
        "{:?}",
        st.hand_made
    );
    assert_eq!(
        st.hand_made[0].delete_command.as_deref(),
        Some(
            format!(
                "gcloud compute ssl-certificates delete {HAND_MADE} --global --project {PROJECT}"
            )
            .as_str()
        )
    );
    let roles: Vec<&str> = st.proxies[0].certificates.iter().map(|c| c.role).collect();
    assert_eq!(roles, ["ours", "unrelated"]);

    // The second renewal is an ordinary one: ours replaced in place, the old deleted.
    log.lock().unwrap().clear();
    lab.cloud.clear_requests().await;
    let out = renew(&r, &lab, true).await;
    let rep2 = report(&out).clone();
    assert_ne!(rep2.resource, ours);
    assert_eq!(
        lab.served(PROXY).await,
        [rep2.resource.clone(), unrelated.clone()]
    );
    assert_eq!(rep2.deleted, std::slice::from_ref(&ours));
    assert!(rep2.superseded.is_empty());
    assert!(exists(&lab, &hand).await);
    assert_eq!(
        lab.cloud.compute_mutations().await,
        [
            "compute.sslCertificates.insert",
            "compute.targetHttpsProxies.setSslCertificates",
            "compute.sslCertificates.delete"
        ]
    );
    assert_one_valid_certificate_for(DOMAIN, &log.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_hand_made_certificate_is_deleted_after_the_swap_and_not_before() {
    let lab = Lab::start().await;
    let hand = lab.upload(&[DOMAIN], 70, 90, None, HAND_MADE).await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, UNRELATED).await;
    walkthrough(&lab, &[&hand, &unrelated]).await;
    let config = config(&lab, &[DOMAIN], &[HAND_MADE]);
    let (r, log) = watched(&lab, &config).await;
    lab.cloud.clear_requests().await;
    let out = renew(&r, &lab, false).await;
    let rep = report(&out).clone();
    assert_eq!(
        lab.served(PROXY).await,
        [rep.resource.clone(), unrelated.clone()]
    );
    assert!(!exists(&lab, &hand).await);
    assert_eq!(rep.adopted_deleted, [HAND_MADE]);
    assert!(rep.superseded[0].deleted);
    assert!(rep.superseded[0].to_string().contains("deleted (adopted)"));
    // Exactly three mutations, the delete last.
    assert_eq!(
        lab.cloud.compute_mutations().await,
        [
            "compute.sslCertificates.insert",
            "compute.targetHttpsProxies.setSslCertificates",
            "compute.sslCertificates.delete"
        ]
    );
    // It existed at every boundary until its own deletion.
    let log = log.lock().unwrap().clone();
    let steps: Vec<&str> = log.iter().map(|(s, _, _)| s.as_str()).collect();
    let swapped = steps
        .iter()
        .position(|s| *s == format!("swapped:{PROXY}"))
        .expect("swap step");
    let deleted = steps
        .iter()
        .position(|s| *s == format!("deleted:{HAND_MADE}"))
        .expect("delete step");
    assert!(swapped < deleted, "{steps:?}");
    for (step, _, all) in &log[..deleted] {
        assert!(
            all.contains(&hand.to_string()),
            "{HAND_MADE} gone at {step}"
        );
    }
    assert!(!log[deleted].2.contains(&hand.to_string()));
    assert_one_valid_certificate_for(DOMAIN, &log);
    // status has nothing left to say about it.
    let st = status(&r, &config).await;
    assert!(st.hand_made.is_empty(), "{:?}", st.hand_made);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_we_were_not_told_about_keeps_the_hand_made_one_and_adoption_refuses() {
    let lab = Lab::start().await;
    let hand = lab.upload(&[DOMAIN], 70, 90, None, HAND_MADE).await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, UNRELATED).await;
    walkthrough(&lab, &[&hand, &unrelated]).await;
    create(
        &lab.cloud,
        "global/targetHttpsProxies",
        json!({"name": "staging-proxy", "urlMap": link("urlMaps", "cloud-run-iap-url-map"),
               "sslCertificates": [link("sslCertificates", HAND_MADE)]}),
    )
    .await;
    let config = config(&lab, &[DOMAIN], &[HAND_MADE]);
    let (r, _log) = watched(&lab, &config).await;

    let lines = gclb_acme::preflight::takeover::check(&config, &r.gcp).await;
    let warn: Vec<&gclb_acme::preflight::Line> = lines
        .iter()
        .filter(|l| l.status == gclb_acme::preflight::Status::Warn)
        .collect();
    assert_eq!(warn.len(), 1, "{lines:?}");
    assert!(
        warn[0]
            .what
            .contains("target HTTPS proxy staging-proxy still serves it and is not configured"),
        "{}",
        warn[0].what
    );

    lab.cloud.clear_requests().await;
    let out = renew(&r, &lab, false).await;
    let rep = report(&out).clone();
    assert_eq!(
        lab.served(PROXY).await,
        [rep.resource.clone(), unrelated.clone()]
    );
    assert_eq!(
        lab.served("staging-proxy").await,
        std::slice::from_ref(&hand)
    );
    assert!(exists(&lab, &hand).await);
    assert!(rep.adopted_deleted.is_empty());
    assert_eq!(rep.adoption_refused.len(), 1);
    let m = &rep.adoption_refused[0];
    assert!(
        m.contains(&format!("not deleting adopted sslCertificate {HAND_MADE}: target HTTPS proxy staging-proxy still serves it and is not configured for this certificate")),
        "{m}"
    );
    assert_eq!(rep.superseded[0].still_served_by, ["staging-proxy"]);
    assert_eq!(
        lab.cloud.compute_mutations().await,
        [
            "compute.sslCertificates.insert",
            "compute.targetHttpsProxies.setSslCertificates"
        ]
    );
    let st = status(&r, &config).await;
    assert_eq!(st.hand_made.len(), 1);
    assert!(
        st.hand_made[0]
            .message
            .contains("still served by target HTTPS proxy staging-proxy, which is not configured"),
        "{:?}",
        st.hand_made
    );
    assert_eq!(st.hand_made[0].delete_command, None);
}

/// One partial-overlap case: the hand-made certificate for `hand_names`, the
/// configuration for `domains`; returns the renewal's report and what the
/// proxy lists afterwards.
async fn overlap_case(
    hand_names: &[&str],
    domains: &[&str],
) -> (
    Lab,
    gclb_acme::lb::InstallReport,
    Vec<String>,
    Vec<gclb_acme::preflight::Line>,
) {
    let lab = Lab::start().await;
    let hand = lab.upload(hand_names, 10, 90, None, HAND_MADE).await;
    walkthrough(&lab, &[&hand]).await;
    let config = config(&lab, domains, &[HAND_MADE]);
    let (r, _log) = watched(&lab, &config).await;
    let lines = gclb_acme::preflight::takeover::check(&config, &r.gcp).await;
    let out = renew(&r, &lab, false).await;
    let rep = report(&out).clone();
    let served = lab.served(PROXY).await;
    (lab, rep, served, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_overlap_a_wider_hand_made_certificate_is_kept_and_warned_about() {
    let (lab, rep, served, lines) = overlap_case(&[DOMAIN, "www.other.test"], &[DOMAIN]).await;
    // Kept in place (it serves www.other.test), ours added behind it.
    assert_eq!(served, [HAND_MADE.to_string(), rep.resource.clone()]);
    assert!(exists(&lab, HAND_MADE).await);
    assert!(rep.superseded.is_empty());
    assert_eq!(rep.competing.len(), 1);
    let c = rep.competing[0].to_string();
    assert!(
        c.contains(&format!("also lists {HAND_MADE} for {DOMAIN}")),
        "{c}"
    );
    assert!(c.contains("up to Google's certificate selection"), "{c}");
    // Adopted, but it serves another name: refused.
    assert_eq!(rep.adoption_refused.len(), 1);
    assert!(
        rep.adoption_refused[0].contains("still serves it"),
        "{:?}",
        rep.adoption_refused
    );
    let warns: Vec<String> = lines
        .iter()
        .filter(|l| l.status == gclb_acme::preflight::Status::Warn)
        .map(|l| l.what.clone())
        .collect();
    assert_eq!(warns.len(), 2, "{lines:?}");
    assert!(
        warns[0].contains("up to Google's certificate selection"),
        "{warns:?}"
    );
    assert!(warns[1].contains("still serves it"), "{warns:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_overlap_a_hand_made_wildcard_competes_with_one_configured_name() {
    let (lab, rep, served, _lines) = overlap_case(&["*.example.test"], &[DOMAIN]).await;
    assert_eq!(served, [HAND_MADE.to_string(), rep.resource.clone()]);
    assert!(exists(&lab, HAND_MADE).await);
    assert_eq!(rep.competing.len(), 1);
    assert_eq!(rep.competing[0].shared, ["*.example.test"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_overlap_a_hand_made_certificate_for_fewer_names_is_superseded() {
    // Ours serves every name it has: it takes its slot, and adoption deletes it.
    let (lab, rep, served, lines) = overlap_case(&[DOMAIN], &[DOMAIN, "www.example.test"]).await;
    assert_eq!(served, std::slice::from_ref(&rep.resource));
    assert!(!exists(&lab, HAND_MADE).await);
    assert_eq!(rep.adopted_deleted, [HAND_MADE]);
    assert!(rep.competing.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l.status == gclb_acme::preflight::Status::Ok),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_takes_over_and_renews_again_never_two_certificates_never_none() {
    use std::process::{Command, Stdio};
    // 20 s certificates: the daemon renews ours at half-life (~10 s).
    let lab = Lab::start_with(|o| o.validity = Some(Duration::from_secs(20))).await;
    let hand = lab.upload(&[DOMAIN], 70, 90, None, HAND_MADE).await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, UNRELATED).await;
    walkthrough(&lab, &[&hand, &unrelated]).await;
    // The forwarding rule's address has no listener: no TLS check.
    let path = lab.write_cli_config(
        "[daemon]\nretry_initial = \"1s\"\nretry_max = \"5s\"\nverify_after_swap = false\n",
    );
    let toml = std::fs::read_to_string(&path).unwrap();
    let toml = toml
        .replace(
            "target_https_proxies = [\"p1\"]",
            &format!("target_https_proxies = [\"{PROXY}\"]"),
        )
        .replace(
            "domains = [\"example.test\", \"*.example.test\"]",
            &format!("domains = [\"{DOMAIN}\"]"),
        );
    assert!(toml.contains(PROXY) && toml.contains(&format!("[\"{DOMAIN}\"]")));
    std::fs::write(&path, toml).unwrap();
    lab.cloud.clear_requests().await;
    let home = tempfile::tempdir().unwrap();
    let log_path = lab.tmp.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gclb-acme"))
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("NOTIFY_SOCKET")
        .env("HOME", home.path())
        .env("GCE_METADATA_HOST", lab.metadata_host())
        .args(["--log-format", "json", "-v", "run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let gcp = lab.cloud.gcp();
    // Every list the proxy goes through, in order (each lasts ~10 s; read every 50 ms).
    let mut lists: Vec<Vec<String>> = Vec::new();
    let started = std::time::Instant::now();
    let mut failure = None;
    while started.elapsed() < Duration::from_secs(90) {
        let served = lab.served(PROXY).await;
        if lists.last() != Some(&served) {
            let now = time::OffsetDateTime::now_utc();
            let mut for_domain = Vec::new();
            for n in &served {
                let Some(c) = gcp.get_ssl_certificate(n).await.unwrap() else {
                    failure = Some(format!("{PROXY} lists the missing {n}"));
                    break;
                };
                let leaf = gclb_acme::certs::leaf_info(
                    &gclb_acme::certs::split_chain(c.certificate.as_deref().unwrap()).unwrap()[0],
                )
                .unwrap();
                if leaf.dns_names.iter().any(|d| d == DOMAIN) && leaf.not_after > now {
                    for_domain.push(n.clone());
                } else if leaf.dns_names.iter().any(|d| d == DOMAIN) {
                    failure = Some(format!("{n} for {DOMAIN} has expired"));
                }
            }
            if for_domain.len() != 1 {
                failure = Some(format!(
                    "{PROXY} lists {served:?}: {} valid for {DOMAIN}",
                    for_domain.len()
                ));
            }
            lists.push(served);
        }
        if failure.is_some() || lists.len() >= 3 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early ({status}):\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(f) = failure {
        panic!("{f}; lists {lists:?}\n{}", log());
    }
    assert_eq!(lists.len(), 3, "{lists:?}\n{}", log());
    // [hand-made, unrelated] -> [ours, unrelated] -> [ours', unrelated]
    assert_eq!(lists[0], [hand.clone(), unrelated.clone()]);
    assert_eq!(lists[1][1], unrelated);
    assert_eq!(lists[2][1], unrelated);
    assert_ne!(lists[1][0], lists[2][0]);
    assert!(exists(&lab, &hand).await, "kept: not adopted");
    // The daemon's log names the hand-made one and the command to delete it.
    let text = log();
    assert!(
        text.contains(&format!("hand-made sslCertificate {HAND_MADE} was replaced on {PROXY} and is no longer served by any proxy; gclb-acme keeps it; delete it with: gcloud compute ssl-certificates delete {HAND_MADE} --global --project {PROJECT}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("target HTTPS proxy {PROXY} lists")),
        "{text}"
    );
    assert!(!text.contains("now serves"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_on_the_hand_built_stack_shows_and_does_the_same_takeover() {
    use gclb_acme::stack::{self, Desired, Options};
    let lab = Lab::start().await;
    let hand = lab.upload(&[DOMAIN], 70, 90, None, HAND_MADE).await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, UNRELATED).await;
    walkthrough(&lab, &[&hand, &unrelated]).await;
    let mut config = config(&lab, &[DOMAIN], &[]);
    config.stack = Some(
        toml::from_str(&format!(
            r#"region = "{REGION}"
service = "cloud-run-iap"
domains = ["{DOMAIN}"]
certificate = "app"
load_balancing_scheme = "EXTERNAL"
http_redirect = false
manage_dns = false
[iap]
enabled = false
[names]
neg = "cloud-run-iap-neg"
backend = "cloud-run-iap-backend"
url_map = "cloud-run-iap-url-map"
ip = "cloud-run-iap-ip"
https_proxy = "{PROXY}"
forwarding_rule = "cloud-run-iap-forwarding-rule"
"#
        ))
        .unwrap(),
    );
    let gcp = lab.cloud.gcp();
    let desired = Desired::from_config(&config, PROJECT).unwrap();
    let certs = stack::IssueWithAcme::new(gcp.clone(), &config, &desired).unwrap();

    lab.cloud.clear_requests().await;
    let dry = stack::bootstrap(
        &gcp,
        &desired,
        &certs,
        Options {
            dry_run: true,
            quiet: true,
        },
    )
    .await
    .unwrap();
    assert!(lab.cloud.compute_mutations().await.is_empty());
    let notes = dry.notes.join("\n");
    eprintln!("dry run notes:\n{notes}\nplanned: {:?}", dry.planned);
    for (kind, name) in [
        ("backend service", "cloud-run-iap-backend"),
        ("URL map", "cloud-run-iap-url-map"),
        ("global address", "cloud-run-iap-ip"),
        ("target HTTPS proxy", PROXY),
        ("forwarding rule", "cloud-run-iap-forwarding-rule"),
    ] {
        assert!(
            notes.contains(&format!("{kind} {name} exists and was not created by gclb-acme: bootstrap uses it, teardown will leave it alone")),
            "{kind} {name}:\n{notes}"
        );
    }
    let takeover = format!(
        "certificate: sslCertificate {HAND_MADE} exists and was not created by gclb-acme: <a certificate of ours for {DOMAIN}> takes its place on target HTTPS proxy {PROXY} ([{HAND_MADE}, {UNRELATED}] -> [<a certificate of ours for {DOMAIN}>, {UNRELATED}]); {HAND_MADE} is kept, served by no configured proxy (delete it later with: gcloud compute ssl-certificates delete {HAND_MADE} --global --project {PROJECT}), and teardown will leave it alone"
    );
    assert!(notes.contains(&takeover), "{notes}");
    assert_eq!(lab.served(PROXY).await, [hand.clone(), unrelated.clone()]);

    let done = stack::bootstrap(
        &gcp,
        &desired,
        &certs,
        Options {
            dry_run: false,
            quiet: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("bootstrap: {e}\n{}", lab.pebble.log()));
    let served = lab.served(PROXY).await;
    assert_eq!(served.len(), 2);
    assert!(served[0].starts_with("app-"), "{served:?}");
    assert_eq!(served[1], unrelated);
    assert!(exists(&lab, &hand).await);
    assert!(done.notes.join("\n").contains(&takeover));
    // The takeover's own compute mutations: one upload, one swap.
    let muts = lab.cloud.compute_mutations().await;
    assert_eq!(
        muts.iter()
            .filter(|m| m.starts_with("compute.sslCertificates.")
                || m.starts_with("compute.targetHttpsProxies."))
            .collect::<Vec<_>>(),
        [
            "compute.sslCertificates.insert",
            "compute.targetHttpsProxies.setSslCertificates"
        ],
        "{muts:?}"
    );

    // Again: nothing to take over; teardown leaves the hand-built stack and the
    // hand-made certificate alone.
    let again = stack::bootstrap(
        &gcp,
        &desired,
        &certs,
        Options {
            dry_run: true,
            quiet: true,
        },
    )
    .await
    .unwrap();
    assert!(
        !again.notes.join("\n").contains("takes its place"),
        "{:?}",
        again.notes
    );
    let down = stack::teardown(
        &gcp,
        &desired,
        Options {
            dry_run: true,
            quiet: true,
        },
    )
    .await
    .unwrap();
    assert!(
        !down.planned.iter().any(|a| a.contains(HAND_MADE)
            || a.contains(PROXY)
            || a.contains("cloud-run-iap-backend")),
        "{:?}",
        down.planned
    );
}

/// Runs the real binary with `args` against the lab; returns (exit code, stdout).
fn cli(
    lab: &Lab,
    home: &std::path::Path,
    args: &[&str],
    config: &std::path::Path,
) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gclb-acme"))
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env("HOME", home)
        .env("GCE_METADATA_HOST", lab.metadata_host())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "$ gclb-acme {}\n{stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_previews_renews_and_reports_the_takeover() {
    let lab = Lab::start().await;
    let hand = lab.upload(&[DOMAIN], 70, 90, None, HAND_MADE).await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, UNRELATED).await;
    walkthrough(&lab, &[&hand, &unrelated]).await;
    let path = lab.write_cli_config("[daemon]\nverify_after_swap = false\n");
    let toml = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "target_https_proxies = [\"p1\"]",
            &format!("target_https_proxies = [\"{PROXY}\"]"),
        )
        .replace(
            "domains = [\"example.test\", \"*.example.test\"]",
            &format!("domains = [\"{DOMAIN}\"]"),
        );
    std::fs::write(&path, toml).unwrap();
    let home = tempfile::tempdir().unwrap();
    let cmd =
        format!("gcloud compute ssl-certificates delete {HAND_MADE} --global --project {PROJECT}");

    let (_, out) = cli(&lab, home.path(), &["check"], &path);
    assert!(
        out.contains(&format!("certificate app on target HTTPS proxy {PROXY}: <new> replaces {HAND_MADE} (hand-made: taken off, kept in the project; delete it later with: {cmd})")),
        "{out}"
    );
    let (code, out) = cli(&lab, home.path(), &["status"], &path);
    assert_ne!(code, 0, "{out}");

    lab.cloud.clear_requests().await;
    let (code, out) = cli(&lab, home.path(), &["renew"], &path);
    assert_eq!(code, 0, "{out}");
    let compute: Vec<String> = lab
        .cloud
        .requests()
        .await
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .filter(|i| i.starts_with("compute."))
        .collect();
    eprintln!(
        "FIGURES takeover by the binary: compute requests {} ({} reads or waits, {} mutations)",
        compute.len(),
        compute.len() - lab.cloud.compute_mutations().await.len(),
        lab.cloud.compute_mutations().await.len()
    );
    assert!(
        out.contains(&format!("hand-made sslCertificate {HAND_MADE} was replaced on {PROXY} and is no longer served by any proxy; gclb-acme keeps it; delete it with: {cmd}")),
        "{out}"
    );
    let (code, out) = cli(&lab, home.path(), &["status"], &path);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("hand-made sslCertificate {HAND_MADE} (for {DOMAIN}) is no longer served by any proxy; gclb-acme keeps it; delete it with: {cmd}")),
        "{out}"
    );
    assert!(out.contains(&format!("{UNRELATED} expires")), "{out}");
    assert_eq!(lab.served(PROXY).await.len(), 2);
    assert_eq!(lab.served(PROXY).await[1], unrelated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_left_with_both_by_the_appending_version_is_fixed_without_issuing() {
    // The issue's "after": [hand-made, unrelated, ours], ours fresh.
    let lab = Lab::start().await;
    let hand = lab.upload(&[DOMAIN], 70, 90, None, HAND_MADE).await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, UNRELATED).await;
    let ours = lab.upload(&[DOMAIN], 1, 90, Some("app"), "").await;
    walkthrough(&lab, &[&hand, &unrelated, &ours]).await;
    let config = config(&lab, &[DOMAIN], &[]);
    let (r, log) = watched(&lab, &config).await;
    // status no longer says ok here (issue #20).
    let st = status(&r, &config).await;
    assert!(!st.healthy, "{st:?}");
    assert_eq!(st.action, gclb_acme::reconcile::Verdict::Swap);
    assert!(
        st.reasons[0].contains(&format!("proxy {PROXY} still lists {HAND_MADE}")),
        "{:?}",
        st.reasons
    );
    lab.cloud.clear_requests().await;
    let out = renew(&r, &lab, false).await;
    assert!(matches!(out.done, Done::Swapped { .. }), "{out:?}");
    assert_eq!(support::lb::finalized(&r), 0, "nothing issued");
    // Ours moves into the hand-made one's slot; the unrelated one keeps its place.
    assert_eq!(lab.served(PROXY).await, [ours.clone(), unrelated.clone()]);
    assert!(exists(&lab, &hand).await);
    assert_eq!(report(&out).superseded[0].name, HAND_MADE);
    assert_eq!(
        lab.cloud.compute_mutations().await,
        ["compute.targetHttpsProxies.setSslCertificates"]
    );
    assert_one_valid_certificate_for(DOMAIN, &log.lock().unwrap());
    let st = status(&r, &config).await;
    assert!(st.healthy, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_swap_still_deletes_the_adopted_certificate_on_the_next_run() {
    let lab = Lab::start().await;
    let hand = lab.upload(&[DOMAIN], 70, 90, None, HAND_MADE).await;
    let unrelated = lab.upload(&["other.test"], 1, 90, None, UNRELATED).await;
    walkthrough(&lab, &[&hand, &unrelated]).await;
    let config = config(&lab, &[DOMAIN], &[HAND_MADE]);
    let mut r = lab.renewer(&config).await;
    r.install.verify = None;
    let stop_at = format!("swapped:{PROXY}");
    r.install.hook = Some(Arc::new(move |s: &str| s == stop_at));
    let err = r.renew_all(None, false).await.remove(0).1.unwrap_err();
    assert!(err.is_aborted(), "{err}");
    let ours = lab.served(PROXY).await;
    assert_eq!(ours[1], unrelated);
    assert!(
        exists(&lab, &hand).await,
        "not deleted before the run finished"
    );
    // The next run installs the pending certificate (nothing issued again) and
    // finishes the hand-over.
    r.install.hook = None;
    let out = renew(&r, &lab, false).await;
    assert!(
        matches!(out.done, Done::Installed { issued: false, .. }),
        "{out:?}"
    );
    assert_eq!(support::lb::finalized(&r), 1);
    assert_eq!(report(&out).adopted_deleted, [HAND_MADE]);
    assert!(!exists(&lab, &hand).await);
    assert_eq!(lab.served(PROXY).await, ours);
}
