//! `gclb-acme check` against the in-process gcp-emulator: a healthy setup passes
//! every check, and each failing check names the problem and its fix. One test
//! runs the real binary, with credentials from the emulator's metadata server.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gclb_acme::config::Config;
use gclb_acme::gcp::Auth;
use gclb_acme::preflight::{self, Credentials, Detection, Report, Source, Status};
use serde_json::json;
use support::gcp::{Cloud, PROJECT};

/// A project holding a public zone `example-com` for example.com. and a target
/// HTTPS proxy `app-proxy`, plus a state directory.
struct Setup {
    cloud: Cloud,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn healthy() -> Setup {
        let cloud = Cloud::start().await;
        cloud.zone("example-com", "example.com.", false).await;
        seed_proxy(&cloud, "app-proxy").await;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        Setup { cloud, dir }
    }

    /// The configuration text; `extra` is appended inside `[[certificates]]`,
    /// `tail` after everything.
    fn toml(&self, project: bool, cert_extra: &str, tail: &str) -> String {
        let e = self.cloud.endpoints();
        let ns = quoted(&self.cloud.nameservers());
        format!(
            r#"
[gcp]
{project}
[gcp.endpoints]
compute = "{}"
dns = "{}"
iap = "{}"
run = "{}"
serviceusage = "{}"
resourcemanager = "{}"
certificatemanager = "{}"

[acme]
directory = "letsencrypt"
accept_terms = true

[dns]
nameservers = {ns}
resolvers = {ns}

[state]
dir = "{}"

[[certificates]]
name = "app"
domains = ["app.example.com", "*.app.example.com"]
target_https_proxies = ["app-proxy"]
{cert_extra}
{tail}
"#,
            e.compute,
            e.dns,
            e.iap,
            e.run,
            e.serviceusage,
            e.resourcemanager,
            e.certificatemanager,
            self.dir.path().join("state").display(),
            project = if project {
                format!("project = \"{PROJECT}\"")
            } else {
                String::new()
            },
        )
    }

    fn write(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the checks in-process with injected credentials.
    async fn check_with(&self, cert_extra: &str, tail: &str) -> Report {
        let path = self.write(&self.toml(true, cert_extra, tail));
        let config = Config::load(&path).unwrap();
        let creds = Credentials {
            source: Source::Injected,
            kind: "test credentials".into(),
            identity: Some("tester@demo-project.iam.gserviceaccount.com".into()),
            file_project: None,
            auth: Ok(Auth::None),
        };
        preflight::run(&config, &path, Detection::Found(creds)).await
    }

    async fn check(&self) -> Report {
        self.check_with("", "").await
    }
}

fn quoted(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", q.join(", "))
}

fn link(collection: &str, name: &str) -> String {
    format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/{collection}/{name}")
}

/// A URL map, a self-signed certificate and a proxy serving it.
async fn seed_proxy(cloud: &Cloud, name: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["app.example.com".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let base = format!("compute/v1/projects/{PROJECT}/global");
    for (what, body) in [
        (
            "sslCertificates",
            json!({"name": "seed", "certificate": cert.pem(), "privateKey": key.serialize_pem()}),
        ),
        (
            "urlMaps",
            json!({"name": "um", "defaultUrlRedirect": {"httpsRedirect": true}}),
        ),
        (
            "targetHttpsProxies",
            json!({"name": name, "urlMap": link("urlMaps", "um"), "sslCertificates": [link("sslCertificates", "seed")]}),
        ),
    ] {
        let (s, b) = cloud.post(&format!("{base}/{what}"), body).await;
        assert_eq!(s, 200, "{what}: {b}");
    }
    // Let the operations finish, so the proxy is there when check looks.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Adds an rrset to `example-com` through the Cloud DNS API.
async fn add(cloud: &Cloud, name: &str, rtype: &str, rrdatas: &[&str]) {
    let (s, b) = cloud
        .change(
            "example-com",
            json!([{"name": name, "type": rtype, "ttl": 300, "rrdatas": rrdatas}]),
            json!([]),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

/// The failing lines, printed for the test log.
fn fails(r: &Report) -> Vec<String> {
    print!("{r}");
    r.with(Status::Fail).iter().map(|l| l.to_string()).collect()
}

/// Exactly one FAIL, and it contains every needle.
fn assert_one_fail(r: &Report, needles: &[&str]) {
    let f = fails(r);
    assert_eq!(f.len(), 1, "expected one FAIL, got:\n{}", f.join("\n"));
    for n in needles {
        assert!(f[0].contains(n), "{n:?} not in:\n{}", f[0]);
    }
    assert!(r.failed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes_every_check() {
    let s = Setup::healthy().await;
    let started = Instant::now();
    let r = s.check().await;
    let took = started.elapsed();
    print!("{r}");
    println!("check took {took:?}");
    assert!(!r.failed(), "{r}");
    assert!(r.with(Status::Warn).is_empty(), "{r}");
    assert!(r.with(Status::Skip).is_empty(), "{r}");
    let text = r.to_string();
    let delegation = format!(
        "ok    delegation of example.com.: public DNS delegates it to the {} name servers of Cloud DNS zone example-com",
        s.cloud.nameservers().len()
    );
    for want in [
        "ok    configuration",
        "ok    state directory",
        "ok    credentials: test credentials, identity tester@demo-project.iam.gserviceaccount.com",
        "ok    project demo-project (from gcp.project in the configuration)",
        "ok    API dns.googleapis.com: enabled",
        "ok    API compute.googleapis.com: enabled",
        "permissions renewal needs in project demo-project",
        "ok    zone of app.example.com: example-com (example.com., public)",
        "ok    zone of *.app.example.com: example-com",
        delegation.as_str(),
        "ok    CAA for app.example.com: no CAA records up to example.com.",
        "ok    CAA for *.app.example.com: no CAA records",
        "ok    _acme-challenge.app.example.com.: no CNAME",
        "ok    target HTTPS proxy app-proxy: exists (1 certificate(s) attached)",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    assert!(took < Duration::from_secs(5), "check took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_api_fails_with_the_enable_command() {
    let s = Setup::healthy().await;
    let (st, b) = s
        .cloud
        .post(
            "emulator/apis",
            json!({"api": "compute.googleapis.com", "enabled": false}),
        )
        .await;
    assert!(st < 300, "{b}");
    let r = s.check().await;
    assert_one_fail(
        &r,
        &[
            "FAIL  API compute.googleapis.com: disabled in project demo-project",
            "fix: gcloud services enable compute.googleapis.com --project demo-project",
        ],
    );
    // The proxy read is skipped, not reported as a second failure.
    assert!(
        r.to_string().contains(
            "skip  target HTTPS proxy app-proxy: not checked (the Compute API is disabled)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_cloud_dns_api_is_one_failure() {
    let s = Setup::healthy().await;
    let (st, b) = s
        .cloud
        .post(
            "emulator/apis",
            json!({"api": "dns.googleapis.com", "enabled": false}),
        )
        .await;
    assert!(st < 300, "{b}");
    let r = s.check().await;
    assert_one_fail(
        &r,
        &[
            "FAIL  API dns.googleapis.com: disabled in project demo-project",
            "fix: gcloud services enable dns.googleapis.com --project demo-project",
        ],
    );
    assert!(r.to_string().contains("skip  zones, delegation, CAA, challenge CNAMEs: not checked (the Cloud DNS API is disabled)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_permission_is_named() {
    let s = Setup::healthy().await;
    let (st, b) = s
        .cloud
        .post(
            "emulator/iam/denied",
            json!({"permissions": ["dns.changes.create", "compute.targetHttpsProxies.setSslCertificates"]}),
        )
        .await;
    assert!(st < 300, "{b}");
    let r = s.check().await;
    assert_one_fail(
        &r,
        &[
            "IAM: identity tester@demo-project.iam.gserviceaccount.com lacks 2 permission(s) renewal needs in project demo-project: dns.changes.create, compute.targetHttpsProxies.setSslCertificates",
            "docs/iam.md",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_zone_only_fails() {
    let cloud = Cloud::start().await;
    cloud.zone("corp-example", "example.com.", true).await;
    seed_proxy(&cloud, "app-proxy").await;
    let s = Setup {
        cloud,
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::create_dir(s.dir.path().join("state")).unwrap();
    let r = s.check().await;
    let f = fails(&r);
    // Both names of the certificate live in the private zone only.
    assert_eq!(f.len(), 2, "{}", f.join("\n"));
    for l in &f {
        assert!(
            l.contains("zone corp-example (example.com.) is private"),
            "{l}"
        );
        assert!(l.contains("fix: create a public zone"), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caa_record_forbidding_the_ca_fails() {
    let s = Setup::healthy().await;
    add(
        &s.cloud,
        "example.com.",
        "CAA",
        &["0 issue \"sectigo.com\""],
    )
    .await;
    let r = s.check().await;
    let f = fails(&r);
    // The plain name and the wildcard (no issuewild, so issue governs it too).
    assert_eq!(f.len(), 2, "{}", f.join("\n"));
    assert!(
        f[0].contains("CAA for app.example.com: the CA (letsencrypt.org) may not issue: issue allows only sectigo.com (CAA at example.com.: 0 issue \"sectigo.com\")"),
        "{}",
        f[0]
    );
    assert!(f[0].contains("fix: add a CAA record `0 issue \"letsencrypt.org\"` at example.com."));
    assert!(f[1].contains("CAA for *.app.example.com"), "{}", f[1]);

    // A nearer name's CAA set wins (RFC 8659 climbing stops at the first).
    add(
        &s.cloud,
        "app.example.com.",
        "CAA",
        &["0 issue \"letsencrypt.org\""],
    )
    .await;
    let r = s.check().await;
    assert!(!r.failed(), "{r}");
    assert!(r.to_string().contains(
        "ok    CAA for app.example.com: the CAA records at app.example.com. allow letsencrypt.org"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_elsewhere_fails_with_both_lists() {
    let s = Setup::healthy().await;
    // The emulator's name servers answer the apex NS rrset for the zone's own
    // name: replacing it makes public DNS show another provider's servers while
    // the zone's nameServers stay Cloud DNS's, as after a registrar change.
    let (st, b) = s
        .cloud
        .get(&format!(
            "dns/v1/projects/{PROJECT}/managedZones/example-com/rrsets?name=example.com.&type=NS"
        ))
        .await;
    assert_eq!(st, 200, "{b}");
    let current = b["rrsets"][0].clone();
    let cloud_ns: Vec<String> = current["rrdatas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let (st, b) = s
        .cloud
        .change(
            "example-com",
            json!([{"name": "example.com.", "type": "NS", "ttl": 21600, "rrdatas": ["ns1.other-dns.com.", "ns2.other-dns.com."]}]),
            json!([current]),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let r = s.check().await;
    assert_one_fail(
        &r,
        &[
            "FAIL  delegation of example.com.: the registrar delegates example.com. to ns1.other-dns.com., ns2.other-dns.com.; Cloud DNS zone example-com is served by",
            &cloud_ns[0],
            "fix: update the NS records at your registrar (or in the parent zone) to",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_certificate_manager_cname_fails() {
    let s = Setup::healthy().await;
    add(
        &s.cloud,
        "_acme-challenge.app.example.com.",
        "CNAME",
        &["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.9.authorize.certificatemanager.goog."],
    )
    .await;
    let r = s.check().await;
    assert_one_fail(
        &r,
        &[
            "FAIL  _acme-challenge.app.example.com.: a CNAME to 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.9.authorize.certificatemanager.goog. left by a Certificate Manager DNS authorization",
            "can hold no TXT record",
            "fix: delete the CNAME",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_into_another_zone_of_ours_is_fine() {
    let s = Setup::healthy().await;
    s.cloud.zone("acme-zone", "acme.example.net.", false).await;
    add(
        &s.cloud,
        "_acme-challenge.app.example.com.",
        "CNAME",
        &["app.acme.example.net."],
    )
    .await;
    let r = s.check().await;
    assert!(!r.failed(), "{r}");
    assert!(r.to_string().contains("ok    _acme-challenge.app.example.com.: delegated by CNAME to app.acme.example.net., in zone acme-zone"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_proxy_fails() {
    let s = Setup::healthy().await;
    let text = s
        .toml(true, "", "")
        .replace("[\"app-proxy\"]", "[\"app-proxy\", \"other-proxy\"]");
    let path = s.write(&text);
    let config = Config::load(&path).unwrap();
    let creds = Credentials {
        source: Source::Injected,
        kind: "test credentials".into(),
        identity: None,
        file_project: None,
        auth: Ok(Auth::None),
    };
    let r = preflight::run(&config, &path, Detection::Found(creds)).await;
    assert_one_fail(
        &r,
        &[
            "FAIL  target HTTPS proxy other-proxy: does not exist in project demo-project",
            "fix: create it, or run gclb-acme bootstrap",
        ],
    );
    assert!(
        r.to_string()
            .contains("ok    target HTTPS proxy app-proxy: exists")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_zone_that_does_not_exist_fails() {
    let s = Setup::healthy().await;
    let r = s.check_with("zone = \"no-such-zone\"", "").await;
    let f = fails(&r);
    assert_eq!(f.len(), 2, "{}", f.join("\n"));
    assert!(
        f[0].contains("the configured zone no-such-zone does not exist in project demo-project")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_adds_run_iap_and_serviceusage() {
    let s = Setup::healthy().await;
    let stack = "[stack]\nregion = \"europe-west1\"\nservice = \"hello\"\n";
    let r = s.check_with("", stack).await;
    assert_one_fail(
        &r,
        &[
            "FAIL  Cloud Run service hello does not exist in region europe-west1 of project demo-project",
            "gcloud run deploy hello --region europe-west1",
        ],
    );
    let text = r.to_string();
    for api in ["iap", "run", "serviceusage"] {
        assert!(
            text.contains(&format!("ok    API {api}.googleapis.com: enabled")),
            "{api} missing in:\n{text}"
        );
    }
    assert!(
        text.contains("extra permissions bootstrap/teardown/certificate-map attach need"),
        "{text}"
    );

    // Bootstrap-only permissions missing: a warning, since renewal does not need them.
    let (st, b) = s
        .cloud
        .post(
            "emulator/iam/denied",
            json!({"permissions": ["run.services.setIamPolicy"]}),
        )
        .await;
    assert!(st < 300, "{b}");
    let (st, b) = s
        .cloud
        .post(
            "emulator/apis",
            json!({"api": "run.googleapis.com", "enabled": false}),
        )
        .await;
    assert!(st < 300, "{b}");
    let r = s.check_with("", stack).await;
    let f = fails(&r);
    assert_eq!(f.len(), 1, "{}", f.join("\n"));
    assert!(
        f[0].contains("FAIL  API run.googleapis.com: disabled"),
        "{}",
        f[0]
    );
    let warns: Vec<String> = r.with(Status::Warn).iter().map(|l| l.to_string()).collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].contains("lacks 1 permission(s) bootstrap/teardown/certificate-map attach need (renewal does not): run.services.setIamPolicy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_map_adds_certificate_manager_api_map_and_permissions() {
    let s = Setup::healthy().await;
    let in_map = "certificate_map = \"sites\"";
    // The certificate lists app-proxy, which does not serve the map yet: its
    // renewal would fail, so check does.
    let r = s.check_with(in_map, "").await;
    assert_one_fail(
        &r,
        &[
            "FAIL  target HTTPS proxy app-proxy: does not serve certificate map sites (it serves 1 sslCertificate(s)), but certificate app lives there and lists it",
            "fix: gclb-acme certificate-map attach --proxy app-proxy --map sites",
        ],
    );
    let text = r.to_string();
    for want in [
        "ok    API certificatemanager.googleapis.com: enabled",
        "ok    certificate map sites: does not exist yet in project demo-project; the first renewal creates it",
        "extra permissions bootstrap/teardown/certificate-map attach need",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    // Without a map, Certificate Manager is not asked about.
    let plain = s.check().await.to_string();
    assert!(!plain.contains("certificatemanager"), "{plain}");

    // The map exists and the proxy serves it: all good.
    let (st, b) = s
        .cloud
        .post(
            &format!(
                "v1/projects/{PROJECT}/locations/global/certificateMaps?certificateMapId=sites"
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (st, b) = s
        .cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/targetHttpsProxies/app-proxy/setCertificateMap"),
            json!({"certificateMap": format!("//certificatemanager.googleapis.com/projects/{PROJECT}/locations/global/certificateMaps/sites")}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = s.check_with(in_map, "").await;
    assert!(!r.failed(), "{r}");
    let text = r.to_string();
    assert!(
        text.contains("ok    certificate map sites: exists"),
        "{text}"
    );
    assert!(
        text.contains("ok    target HTTPS proxy app-proxy: serves certificate map sites"),
        "{text}"
    );

    // A permission the map's renewal calls, and one attaching it needs.
    let (st, b) = s
        .cloud
        .post(
            "emulator/iam/denied",
            json!({"permissions": ["certificatemanager.certs.update", "certificatemanager.certmaps.use"]}),
        )
        .await;
    assert!(st < 300, "{b}");
    let r = s.check_with(in_map, "").await;
    assert_one_fail(
        &r,
        &[
            "lacks 1 permission(s) renewal needs in project demo-project: certificatemanager.certs.update",
        ],
    );
    let warns: Vec<String> = r.with(Status::Warn).iter().map(|l| l.to_string()).collect();
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(
        warns[0].contains("certificatemanager.certmaps.use"),
        "{}",
        warns[0]
    );

    // The API disabled: one failure, with the command that enables it.
    let (st, b) = s
        .cloud
        .post(
            "emulator/apis",
            json!({"api": "certificatemanager.googleapis.com", "enabled": false}),
        )
        .await;
    assert!(st < 300, "{b}");
    let (st, b) = s
        .cloud
        .post("emulator/iam/denied", json!({"permissions": []}))
        .await;
    assert!(st < 300, "{b}");
    let r = s.check_with(in_map, "").await;
    assert_one_fail(
        &r,
        &[
            "FAIL  API certificatemanager.googleapis.com: disabled in project demo-project",
            "fix: gcloud services enable certificatemanager.googleapis.com --project demo-project",
        ],
    );
    assert!(
        r.to_string().contains(
            "skip  certificate map sites: not checked (the Certificate Manager API is disabled)"
        ),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_problems_are_reported_too() {
    let s = Setup::healthy().await;
    use std::os::unix::fs::PermissionsExt;
    let state = s.dir.path().join("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = s.dir.path().join("eab.key");
    std::fs::write(&key, "c2VjcmV0LWhtYWMta2V5\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let tail = format!(
        "[acme.eab]\nkid = \"kid-1\"\nhmac_key_file = \"{}\"\n",
        key.display()
    );
    // [acme.eab] must follow [acme]: put it after the certificates as its own table.
    let r = s.check_with("", &tail).await;
    print!("{r}");
    assert!(!r.failed(), "{r}");
    let warns: Vec<String> = r.with(Status::Warn).iter().map(|l| l.to_string()).collect();
    assert_eq!(warns.len(), 2, "{warns:?}");
    assert!(
        warns[0].contains("mode 0755 lets others in"),
        "{}",
        warns[0]
    );
    assert!(warns[0].contains(&format!("fix: chmod 0700 {}", state.display())));
    assert!(
        warns[1].contains("readable by every user (mode 0644)"),
        "{}",
        warns[1]
    );
}

/// The real binary, as on a VM: credentials and project from the metadata server
/// (the emulator's), no credentials file, an empty HOME.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_checks_a_healthy_setup_with_metadata_credentials() {
    let s = Setup::healthy().await;
    let path = s.write(&s.toml(false, "", ""));
    let home = tempfile::tempdir().unwrap();
    let metadata = s.cloud.emu.http_addr().to_string();
    let run = |path: PathBuf, home: PathBuf, metadata: String| {
        tokio::task::spawn_blocking(move || binary(&path, &home, &metadata))
    };
    let (code, out, took) = run(path.clone(), home.path().into(), metadata.clone())
        .await
        .unwrap();
    println!("{out}\nbinary check took {took:?}");
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "ok    credentials: the VM's service account (metadata server",
        "-compute@developer.gserviceaccount.com: an access token was obtained",
        "ok    project demo-project (from the metadata server)",
        "ok    delegation of example.com.",
        "ok    target HTTPS proxy app-proxy: exists",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    assert!(
        !out.contains("FAIL") && !out.contains("warn") && !out.contains("skip"),
        "{out}"
    );
    assert!(took < Duration::from_secs(5), "binary check took {took:?}");

    // The same binary exits 1 on a failing check and prints its fix.
    add(
        &s.cloud,
        "example.com.",
        "CAA",
        &["0 issue \"sectigo.com\""],
    )
    .await;
    let (code, out, _) = run(path, home.path().into(), metadata).await.unwrap();
    println!("{out}");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL  CAA for app.example.com: the CA (letsencrypt.org) may not issue"));
}

fn binary(config: &Path, home: &Path, metadata: &str) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = assert_cmd::Command::cargo_bin("gclb-acme")
        .unwrap()
        .args(["check", "--config"])
        .arg(config)
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("CLOUDSDK_CORE_PROJECT")
        .env_remove("CLOUDSDK_CONFIG")
        .env("HOME", home)
        .env("GCE_METADATA_HOST", metadata)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let took = started.elapsed();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text, took)
}
