//! A load balancer to install on: the gcp-emulator with a zone, a URL map that
//! only redirects (no backend needed), proxies, certificates of ours (rcgen,
//! named and described as gclb-acme would) and foreign ones, plus Pebble
//! validating against the emulator's DNS, and a [`Renewer`] wired to both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gclb_acme::acme::normalize_names;
use gclb_acme::acme::{
    AcmeClient, ClientOptions, Endpoint, IssuedCertificate, PollConfig, RetryConfig,
};
use gclb_acme::certs;
use gclb_acme::certs::SecretPem;
use gclb_acme::config::{
    AcmeConfig, CertificateConfig, Config, DnsConfig, GcpConfig, HumanDuration, KeyType,
    StateConfig,
};
use gclb_acme::gcp::compute::{NewSslCertificate, SelfManaged, name_of};
use gclb_acme::lb::{InstallOptions, VerifyOptions, naming};
use gclb_acme::reconcile::Renewer;
use gclb_acme::state::StateDir;
use serde_json::json;

use super::gcp::{Cloud, PROJECT};
use super::pebble::{Pebble, PebbleOptions};

/// The configured names: a wildcard and its apex.
pub const NAMES: [&str; 2] = ["example.test", "*.example.test"];

/// Emulator + Pebble + a state directory.
pub struct Lab {
    pub cloud: Cloud,
    pub pebble: Pebble,
    pub tmp: tempfile::TempDir,
}

impl Lab {
    /// The emulator with zone `example.test.` and URL map `um`, and Pebble.
    pub async fn start() -> Lab {
        Lab::start_with(|_| {}).await
    }

    /// [`Lab::start`] with Pebble's options adjusted (e.g. short-lived certificates).
    pub async fn start_with(f: impl FnOnce(&mut PebbleOptions)) -> Lab {
        let cloud = Cloud::start().await;
        cloud.zone("example-test", "example.test.", false).await;
        url_map(&cloud).await;
        let mut opts = PebbleOptions::new(cloud.emu.dns_addrs()[0]);
        f(&mut opts);
        let pebble = Pebble::start(opts).await;
        Lab {
            cloud,
            pebble,
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    /// The configuration: certificate `app` for [`NAMES`] on `proxies`.
    pub fn config(&self, proxies: &[&str]) -> Config {
        Config {
            gcp: GcpConfig {
                project: Some(PROJECT.into()),
                endpoints: self.cloud.endpoints(),
            },
            acme: AcmeConfig {
                directory: self.pebble.directory_url.clone(),
                contact: vec![],
                accept_terms: true,
                ca_roots: vec![self.pebble.listener_ca_path.clone()],
                eab: None,
                profile: None,
            },
            dns: DnsConfig {
                nameservers: self.cloud.nameservers(),
                propagation_timeout: HumanDuration(Duration::from_secs(20)),
                ttl: 60,
                ..DnsConfig::default()
            },
            state: StateConfig {
                dir: self.state_dir(),
            },
            certificates: vec![CertificateConfig {
                name: "app".into(),
                domains: NAMES.iter().map(|s| s.to_string()).collect(),
                target_https_proxies: proxies.iter().map(|s| s.to_string()).collect(),
                key_type: KeyType::EcdsaP256,
                zone: None,
                reuse_key: false,
                adopt: Vec::new(),
                certificate_map: None,
                primary: false,
            }],
            ..Config::default()
        }
    }

    /// A renewer with fast retries, polls and back-off.
    pub async fn renewer(&self, config: &Config) -> Renewer {
        let acme = AcmeClient::connect_with(
            &config.acme,
            StateDir::open(&config.state.dir).expect("state dir"),
            ClientOptions {
                retry: RetryConfig {
                    attempts: 5,
                    initial: Duration::from_millis(100),
                    max_delay: Duration::from_secs(2),
                },
                poll: PollConfig {
                    initial: Duration::from_millis(50),
                    max_delay: Duration::from_millis(500),
                    timeout: Duration::from_secs(30),
                },
            },
        )
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.pebble.log()));
        Renewer {
            gcp: self.cloud.gcp(),
            acme: Arc::new(acme),
            config: Arc::new(config.clone()),
            install: fast_install(),
        }
    }

    /// Creates a proxy serving `certs` (names), in order.
    pub async fn proxy(&self, name: &str, certs: &[&str]) {
        proxy(&self.cloud, name, certs).await
    }

    /// See [`upload`].
    pub async fn upload(
        &self,
        names: &[&str],
        age_days: i64,
        lifetime_days: i64,
        ours: Option<&str>,
        foreign_name: &str,
    ) -> String {
        upload(
            &self.cloud,
            names,
            age_days,
            lifetime_days,
            ours,
            foreign_name,
        )
        .await
        .0
    }

    /// Names of the certificates `proxy` serves, in order.
    pub async fn served(&self, proxy: &str) -> Vec<String> {
        served(&self.cloud, proxy).await
    }

    /// Writes a TOML configuration for the real binary (certificate `app` for
    /// [`NAMES`] on proxy `p1`, everything pointed at the emulator and Pebble),
    /// with `extra` appended (e.g. a `[daemon]` table); returns its path.
    pub fn write_cli_config(&self, extra: &str) -> PathBuf {
        let e = self.cloud.endpoints();
        let config_path = self.tmp.path().join("config.toml");
        let toml = format!(
            r#"
[gcp]
project = "{project}"
[gcp.endpoints]
compute = "{compute}"
dns = "{dns}"
iap = "{iap}"
run = "{run}"
serviceusage = "{su}"
resourcemanager = "{rm}"
certificatemanager = "{cm}"

[acme]
directory = "{dir}"
accept_terms = true
ca_roots = ["{roots}"]

[dns]
nameservers = [{ns}]
propagation_timeout = "20s"

[state]
dir = "{state}"

[[certificates]]
name = "app"
domains = ["example.test", "*.example.test"]
target_https_proxies = ["p1"]

{extra}
"#,
            project = PROJECT,
            compute = e.compute,
            dns = e.dns,
            iap = e.iap,
            run = e.run,
            su = e.serviceusage,
            rm = e.resourcemanager,
            cm = e.certificatemanager,
            dir = self.pebble.directory_url,
            roots = self.pebble.listener_ca_path.display(),
            ns = self
                .cloud
                .nameservers()
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", "),
            state = self.state_dir().display(),
            extra = extra,
        );
        std::fs::write(&config_path, toml).expect("write config");
        config_path
    }

    /// `host:port` of the emulator's metadata server, for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.cloud
            .emu
            .base_url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }

    /// Names of every sslCertificate in the project.
    pub async fn certificates(&self) -> Vec<String> {
        certificates(&self.cloud).await
    }
}

/// Creates a proxy serving `certs` (names), in order.
pub async fn proxy(cloud: &Cloud, name: &str, certs: &[&str]) {
    let links: Vec<String> = certs.iter().map(|c| link("sslCertificates", c)).collect();
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/targetHttpsProxies"),
            json!({"name": name, "urlMap": link("urlMaps", "um"), "sslCertificates": links}),
        )
        .await;
    assert_eq!(s, 200, "proxy {name}: {b}");
}

/// The URL map `um` (a redirect only, so no backend is needed).
pub async fn url_map(cloud: &Cloud) {
    let (s, b) = cloud
        .post(
            &format!("compute/v1/projects/{PROJECT}/global/urlMaps"),
            json!({"name": "um", "defaultUrlRedirect": {"httpsRedirect": true}}),
        )
        .await;
    assert_eq!(s, 200, "url map: {b}");
}

/// A self-signed certificate for `names`, valid from `age_days` ago for
/// `lifetime_days`, as the ACME engine would hand it over.
pub fn self_signed(names: &[&str], age_days: i64, lifetime_days: i64) -> IssuedCertificate {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(age_days);
    params.not_after = params.not_before + time::Duration::days(lifetime_days);
    let cert = params.self_signed(&key).expect("self-signed");
    let leaf = certs::leaf_info(cert.der()).expect("leaf");
    IssuedCertificate {
        certificate: "app".into(),
        names: normalize_names(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        key_type: KeyType::EcdsaP256,
        key_pem: SecretPem::new(key.serialize_pem()),
        chain_pem: cert.pem(),
        leaf,
        order_url: String::new(),
        directory: String::new(),
        issued_at: now,
    }
}

/// Uploads a self-signed certificate (see [`self_signed`]). `ours`: named and
/// described as gclb-acme would for that certificate config; otherwise named
/// `foreign_name` with a hand-written description. Returns its name and itself.
pub async fn upload(
    cloud: &Cloud,
    names: &[&str],
    age_days: i64,
    lifetime_days: i64,
    ours: Option<&str>,
    foreign_name: &str,
) -> (String, IssuedCertificate) {
    let issued = self_signed(names, age_days, lifetime_days);
    let sha = &issued.leaf.sha256_hex;
    let (name, description) = match ours {
        Some(cfg) => (
            naming::certificate_resource_name(cfg, sha),
            naming::certificate_description(cfg, sha),
        ),
        None => (foreign_name.to_string(), "uploaded by hand".to_string()),
    };
    let rid = gclb_acme::gcp::request_id(&[&name, "seed"]);
    let op = cloud
        .gcp()
        .insert_ssl_certificate(
            &NewSslCertificate {
                name: name.clone(),
                description,
                cert_type: "SELF_MANAGED",
                self_managed: SelfManaged {
                    certificate: issued.chain_pem.clone(),
                    private_key: issued.key_pem.expose().to_string(),
                },
            },
            &rid,
        )
        .await
        .expect("seed insert");
    cloud
        .gcp()
        .wait_operation(op, Duration::from_secs(10))
        .await
        .expect("seed insert done");
    (name, issued)
}

/// Names of the certificates `proxy` serves, in order.
pub async fn served(cloud: &Cloud, proxy: &str) -> Vec<String> {
    cloud
        .gcp()
        .get_target_https_proxy(proxy)
        .await
        .expect("proxy")
        .ssl_certificates
        .iter()
        .map(|u| name_of(u).to_string())
        .collect()
}

/// Names of every sslCertificate in the project, sorted.
pub async fn certificates(cloud: &Cloud) -> Vec<String> {
    let mut v: Vec<String> = cloud
        .gcp()
        .list_ssl_certificates(None)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    v.sort();
    v
}

impl Lab {
    /// Every proxy's list names only existing certificates, and each covers
    /// [`NAMES`] with at least one certificate valid now.
    pub async fn assert_serving(&self, proxies: &[&str]) {
        let gcp = self.cloud.gcp();
        for p in proxies {
            let mut ok = false;
            for name in self.served(p).await {
                let c = gcp
                    .get_ssl_certificate(&name)
                    .await
                    .expect("get")
                    .unwrap_or_else(|| panic!("{p} references missing {name}"));
                let pem = c.certificate.expect("pem");
                let leaf =
                    certs::leaf_info(&certs::split_chain(&pem).expect("chain")[0]).expect("leaf");
                let now = time::OffsetDateTime::now_utc();
                let covers = NAMES.iter().all(|n| leaf.dns_names.iter().any(|d| d == n));
                ok |= covers && leaf.not_before <= now && now < leaf.not_after;
            }
            assert!(ok, "proxy {p} serves no valid certificate for {NAMES:?}");
        }
    }

    /// No `_acme-challenge` TXT value left in the zone.
    pub async fn assert_no_txt(&self) {
        assert!(
            self.cloud
                .txt("example-test", "_acme-challenge.example.test.")
                .await
                .is_empty(),
            "TXT values left behind"
        );
    }
}

/// Successful finalize requests so far.
pub fn finalized(r: &Renewer) -> u64 {
    r.acme.stats().successes(Endpoint::Finalize)
}

/// Install options for tests: verification on (it skips without a forwarding
/// rule), short back-off.
pub fn fast_install() -> InstallOptions {
    InstallOptions {
        operation_timeout: Duration::from_secs(20),
        attempts: 6,
        cleanup_initial: Duration::from_millis(20),
        cleanup_attempts: 6,
        verify: Some(VerifyOptions {
            timeout: Duration::from_secs(2),
            interval: Duration::from_millis(100),
            extra_roots: vec![],
            port: 443,
        }),
        hook: None,
    }
}

/// The canonical link of a global resource of the test project.
pub fn link(collection: &str, name: &str) -> String {
    format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/{collection}/{name}")
}
