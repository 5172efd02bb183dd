//! Every configuration rule, with a passing case and a failing case whose message
//! is asserted. Compiled only under #[cfg(test)] (see mod.rs).

use super::*;

const MINIMAL: &str = r#"
[acme]
accept_terms = true

[[certificates]]
name = "app"
domains = ["app.example.com", "*.app.example.com"]
target_https_proxies = ["cloud-run-iap-http-proxy"]
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, "config.toml", None)
}

/// The rendered error for `text`, which must fail.
fn error(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// MINIMAL with `line` appended inside the `[[certificates]]` table.
fn cert_with(line: &str) -> String {
    format!("{MINIMAL}{line}\n")
}

fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

#[test]
fn minimal_config_gets_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.acme.directory, LETSENCRYPT);
    assert_eq!(c.dns.ttl, 60);
    assert_eq!(c.dns.propagation_timeout.get().as_secs(), 180);
    assert_eq!(c.state.dir, PathBuf::from("/var/lib/gclb-acme"));
    assert_eq!(c.certificates[0].key_type, KeyType::EcdsaP256);
    assert!(!c.certificates[0].reuse_key);
    assert_eq!(
        c.gcp.endpoints.compute,
        "https://compute.googleapis.com/compute/v1/"
    );
    assert_eq!(c.daemon.metrics_listen, "127.0.0.1:9464");
    assert!(c.stack.is_none());
}

#[test]
fn the_issue_example_parses() {
    let text = r#"
[gcp]
project = "my-project"
[gcp.endpoints]
compute = "https://compute.googleapis.com/compute/v1/"
dns = "https://dns.googleapis.com/dns/v1/"
iap = "https://iap.googleapis.com/v1/"
run = "https://run.googleapis.com/v2/"

[acme]
directory = "https://acme-v02.api.letsencrypt.org/directory"
contact = ["mailto:ops@example.com"]
accept_terms = true
ca_roots = []

[dns]
nameservers = []
propagation_timeout = "180s"
ttl = 60

[state]
dir = "/var/lib/gclb-acme"

[[certificates]]
name = "app"
domains = ["app.example.com", "*.app.example.com"]
target_https_proxies = ["cloud-run-iap-http-proxy"]
key_type = "ecdsa-p256"
"#;
    let c = load(text).unwrap();
    assert_eq!(c.gcp.project.as_deref(), Some("my-project"));
    assert_eq!(c.acme.contact, vec!["mailto:ops@example.com"]);
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let e = error(&format!("{MINIMAL}colour = \"blue\"\n"));
    assert_contains(&e, "config.toml:");
    assert_contains(&e, "certificates[0]");
    assert_contains(&e, "unknown field `colour`");
    let e = error("[acme]\ndirectroy = \"x\"\n");
    assert_contains(&e, "unknown field `directroy`");
    assert_contains(&e, "acme");
}

#[test]
fn wrong_types_name_the_key_and_line() {
    let e = error("[dns]\nttl = \"sixty\"\n");
    assert_contains(&e, "config.toml:2:");
    assert_contains(&e, "dns.ttl");
    let e = error(&cert_with("key_type = \"ed25519\""));
    assert_contains(&e, "certificates[0].key_type");
    assert_contains(&e, "ecdsa-p256");
}

#[test]
fn the_dns_provider_defaults_to_cloud_dns_and_names_the_choices() {
    let c = parse(MINIMAL, "config.toml").unwrap();
    assert_eq!(c.dns.provider, DnsProviderKind::CloudDns);
    let e = error("[dns]\nprovider = \"route53\"\n");
    assert_contains(&e, "config.toml:2:");
    assert_contains(&e, "dns.provider");
    assert_contains(&e, "unknown variant `route53`, expected `cloud_dns`");
}

#[test]
fn malformed_toml_names_the_line() {
    let e = error("[acme\naccept_terms = true\n");
    assert_contains(&e, "config.toml:1:");
    assert_contains(&e, "not valid TOML");
}

#[test]
fn domains_are_validated_and_normalised() {
    let c = load(&MINIMAL.replace("app.example.com\"", "App.Example.com.\"")).unwrap();
    assert_eq!(c.certificates[0].domains[0], "app.example.com");

    let e = error(&MINIMAL.replace("\"app.example.com\"", "\"exa mple.com\""));
    assert_contains(
        &e,
        "config.toml: certificates[0].domains[0]: \"exa mple.com\" is not a valid DNS name",
    );
    let e = error(&MINIMAL.replace("*.app.example.com", "app.*.example.com"));
    assert_contains(&e, "certificates[0].domains[1]");
    assert_contains(&e, "only as the whole leftmost label");
    let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
    let e = error(&MINIMAL.replace("app.example.com\"", &format!("{long}\"")));
    assert_contains(&e, "at most 253");
    let e = error(&MINIMAL.replace("\"*.app.example.com\"", "\"app.example.com\""));
    assert_contains(&e, "listed twice");
    let e = error(&MINIMAL.replace(
        "domains = [\"app.example.com\", \"*.app.example.com\"]",
        "domains = []",
    ));
    assert_contains(&e, "certificates[0].domains: is empty");
}

#[test]
fn ten_thousand_domains_are_refused_without_listing_each() {
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("\"n{i}.example.com\""))
        .collect();
    let text = MINIMAL.replace(
        "domains = [\"app.example.com\", \"*.app.example.com\"]",
        &format!("domains = [{}]", many.join(",")),
    );
    let e = error(&text);
    assert_contains(&e, "certificates[0].domains: has 10000 names");
    assert!(e.lines().count() < 5, "{e}");
}

#[test]
fn gcp_resource_names_are_validated() {
    let e = error(&MINIMAL.replace("name = \"app\"", "name = \"App_1\""));
    assert_contains(&e, "certificates[0].name: \"App_1\" is not usable");
    assert_contains(&e, "lowercase letters");
    let e = error(&MINIMAL.replace("name = \"app\"", &format!("name = \"{}\"", "a".repeat(51))));
    assert_contains(&e, "1 to 50 characters");
    let e = error(&MINIMAL.replace("cloud-run-iap-http-proxy", "proxy-"));
    assert_contains(
        &e,
        "certificates[0].target_https_proxies[0]: \"proxy-\" is not a proxy name",
    );
    let e = error(&cert_with("zone = \"Example.com\""));
    assert_contains(
        &e,
        "certificates[0].zone: \"Example.com\" is not a managed-zone name",
    );
    load(&cert_with("zone = \"example-com\"")).unwrap();
    let e = error(&format!(
        "{MINIMAL}\n[[certificates]]\nname = \"app\"\ndomains = [\"b.example.com\"]\ntarget_https_proxies = [\"p\"]\n"
    ));
    assert_contains(
        &e,
        "certificates[1].name: \"app\" is used by an earlier certificate",
    );
    let e = error(&MINIMAL.replace("target_https_proxies = [\"cloud-run-iap-http-proxy\"]", ""));
    assert_contains(&e, "certificates[0].target_https_proxies: is empty");
}

#[test]
fn project_ids_are_validated() {
    load(&format!("[gcp]\nproject = \"my-project-1\"\n{MINIMAL}")).unwrap();
    let e = error(&format!("[gcp]\nproject = \"My Project\"\n{MINIMAL}"));
    assert_contains(&e, "gcp.project: \"My Project\" is not a project id");
}

#[test]
fn durations_are_validated() {
    let c = load(&format!("[dns]\npropagation_timeout = \"2m\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.dns.propagation_timeout.get().as_secs(), 120);
    let e = error(&format!("[dns]\npropagation_timeout = \"0s\"\n{MINIMAL}"));
    assert_contains(&e, "dns.propagation_timeout: \"0s\" is out of range");
    let e = error(&format!("[dns]\npropagation_timeout = \"-5s\"\n{MINIMAL}"));
    assert_contains(&e, "dns.propagation_timeout");
    assert_contains(&e, "negative");
    let e = error(&format!("[dns]\npropagation_timeout = 90\n{MINIMAL}"));
    assert_contains(&e, "no unit");
    let e = error(&format!(
        "[dns]\npropagation_timeout = \"3 fortnights\"\n{MINIMAL}"
    ));
    assert_contains(&e, "expected a duration");
    let e = error(&format!(
        "[daemon]\nretry_initial = \"2h\"\nretry_max = \"1h\"\n{MINIMAL}"
    ));
    assert_contains(
        &e,
        "daemon.retry_max: \"1h\" is shorter than daemon.retry_initial",
    );
    let e = error(&format!("[daemon]\nerror_before = \"0s\"\n{MINIMAL}"));
    assert_contains(&e, "daemon.error_before");
}

#[test]
fn ttl_and_concurrency_ranges() {
    let e = error(&format!("[dns]\nttl = 0\n{MINIMAL}"));
    assert_contains(&e, "dns.ttl: 0 is out of range");
    let e = error(&format!("[dns]\nttl = -1\n{MINIMAL}"));
    assert_contains(&e, "dns.ttl");
    let e = error(&format!("[daemon]\nconcurrency = 0\n{MINIMAL}"));
    assert_contains(&e, "daemon.concurrency: 0 is out of range");
    load(&format!("[daemon]\nconcurrency = 16\n{MINIMAL}")).unwrap();
}

#[test]
fn urls_are_validated() {
    let c = load(&format!(
        "[gcp.endpoints]\ncompute = \"http://127.0.0.1:8080/compute/v1\"\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(c.gcp.endpoints.compute, "http://127.0.0.1:8080/compute/v1/");
    let e = error(&format!("[gcp.endpoints]\ndns = \"not-a-url\"\n{MINIMAL}"));
    assert_contains(&e, "gcp.endpoints.dns: \"not-a-url\" is not a URL");
    // Found by fuzzing: the parser drops a trailing space, the stored string kept
    // it (then gained a '/') and no longer loaded.
    let e = error(&format!(
        "[gcp.endpoints]\ncompute = \"http://127.0.0.1:1/x \"\n{MINIMAL}"
    ));
    assert_contains(
        &e,
        "gcp.endpoints.compute: \"http://127.0.0.1:1/x \" contains a space or control character",
    );
    let e = error(&format!(
        "[gcp.endpoints]\ndns = \"https://dns.goo\\tgleapis.com/\"\n{MINIMAL}"
    ));
    assert_contains(&e, "gcp.endpoints.dns");
    let e = error(&MINIMAL.replace(
        "[acme]",
        "[acme]\ndirectory = \"http://acme.example.com/directory\"",
    ));
    assert_contains(
        &e,
        "acme.directory: \"http://acme.example.com/directory\" uses http",
    );
    load(&MINIMAL.replace(
        "[acme]",
        "[acme]\ndirectory = \"https://localhost:14000/dir\"",
    ))
    .unwrap();
}

#[test]
fn ca_aliases_expand() {
    let c =
        load(&MINIMAL.replace("[acme]", "[acme]\ndirectory = \"letsencrypt-staging\"")).unwrap();
    assert_eq!(c.acme.directory, LETSENCRYPT_STAGING);
    let e = error(&MINIMAL.replace("[acme]", "[acme]\ndirectory = \"letsencrypt-stagin\""));
    assert_contains(&e, "or one of letsencrypt, letsencrypt-staging");
}

#[test]
fn contacts_and_terms() {
    load(&MINIMAL.replace("[acme]", "[acme]\ncontact = [\"mailto:ops@example.com\"]")).unwrap();
    let e = error(&MINIMAL.replace("[acme]", "[acme]\ncontact = [\"ops@example.com\"]"));
    assert_contains(&e, "acme.contact[0]: \"ops@example.com\" is not a contact");
    let e = error(&MINIMAL.replace("accept_terms = true", "accept_terms = false"));
    assert_contains(&e, "acme.accept_terms: must be true");
}

#[test]
fn key_types() {
    for kt in [
        "ecdsa-p256",
        "ecdsa-p384",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
    ] {
        let c = load(&cert_with(&format!("key_type = \"{kt}\""))).unwrap();
        assert_eq!(c.certificates[0].key_type.as_str(), kt);
    }
    let e = error(&cert_with("key_type = \"rsa-1024\""));
    assert_contains(&e, "certificates[0].key_type");
    assert_contains(&e, "unknown variant `rsa-1024`");
}

#[test]
fn resolvers_are_host_port_and_default_to_none() {
    assert!(load(MINIMAL).unwrap().dns.resolvers.is_empty());
    let c = load(&format!(
        "[dns]\nresolvers = [\"8.8.8.8:53\", \"dns.google:53\"]\n{MINIMAL}"
    ))
    .unwrap();
    assert_eq!(c.dns.resolvers, ["8.8.8.8:53", "dns.google:53"]);
    let e = error(&format!("[dns]\nresolvers = [\"8.8.8.8\"]\n{MINIMAL}"));
    assert_contains(&e, "dns.resolvers[0]: \"8.8.8.8\" has no port");
}

#[test]
fn nameservers_are_host_port() {
    load(&format!(
        "[dns]\nnameservers = [\"127.0.0.1:8053\", \"ns-cloud-a1.googledomains.com:53\"]\n{MINIMAL}"
    ))
    .unwrap();
    let e = error(&format!("[dns]\nnameservers = [\"127.0.0.1\"]\n{MINIMAL}"));
    assert_contains(&e, "dns.nameservers[0]: \"127.0.0.1\" has no port");
    let e = error(&format!(
        "[dns]\nnameservers = [\"ns.example.com:99999\"]\n{MINIMAL}"
    ));
    assert_contains(&e, "has a bad port");
}

#[test]
fn files_are_checked_and_resolved_against_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    let e = Config::from_toml(
        &MINIMAL.replace("[acme]", "[acme]\nca_roots = [\"missing.pem\"]"),
        "config.toml",
        Some(dir.path()),
    )
    .unwrap_err()
    .to_string();
    assert_contains(&e, "acme.ca_roots[0]: cannot read");
    assert_contains(&e, "missing.pem");

    std::fs::write(dir.path().join("junk.pem"), "hello").unwrap();
    let e = Config::from_toml(
        &MINIMAL.replace("[acme]", "[acme]\nca_roots = [\"junk.pem\"]"),
        "config.toml",
        Some(dir.path()),
    )
    .unwrap_err()
    .to_string();
    assert_contains(&e, "holds no \"BEGIN CERTIFICATE\" block");

    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ca.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.path().join("root.pem"), cert.pem()).unwrap();
    let c = Config::from_toml(
        &MINIMAL.replace("[acme]", "[acme]\nca_roots = [\"root.pem\"]"),
        "config.toml",
        Some(dir.path()),
    )
    .unwrap();
    assert_eq!(c.acme.ca_roots[0], dir.path().join("root.pem"));

    let e = Config::from_toml(
        &MINIMAL.replace(
            "[acme]",
            "[acme]\neab = { kid = \"\", hmac_key_file = \"nope.key\" }",
        ),
        "config.toml",
        Some(dir.path()),
    )
    .unwrap_err()
    .to_string();
    assert_contains(&e, "acme.eab.kid: is empty");
    assert_contains(&e, "acme.eab.hmac_key_file: cannot read");
}

#[test]
fn profile_names() {
    load(&MINIMAL.replace("[acme]", "[acme]\nprofile = \"tlsserver\"")).unwrap();
    let e = error(&MINIMAL.replace("[acme]", "[acme]\nprofile = \"two words\""));
    assert_contains(&e, "acme.profile: \"two words\" is not a profile name");
}

#[test]
fn metrics_address_and_maintenance_window() {
    load(&format!("[daemon]\nmetrics_listen = \"\"\n{MINIMAL}")).unwrap();
    let e = error(&format!(
        "[daemon]\nmetrics_listen = \"localhost\"\n{MINIMAL}"
    ));
    assert_contains(&e, "daemon.metrics_listen: \"localhost\" is not an address");
    load(&format!(
        "[daemon]\nmaintenance_window = \"* 2-4 * * mon-fri\"\n{MINIMAL}"
    ))
    .unwrap();
    let e = error(&format!(
        "[daemon]\nmaintenance_window = \"* 25 * * *\"\n{MINIMAL}"
    ));
    assert_contains(
        &e,
        "daemon.maintenance_window: \"* 25 * * *\" has a bad hour field",
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = MINIMAL
        .replace("name = \"app\"", "name = \"APP\"")
        .replace("\"app.example.com\"", "\"exa mple.com\"");
    let e = load(&format!("[dns]\nttl = 0\n{text}")).unwrap_err();
    let problems = e.problems();
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "dns.ttl",
            "certificates[0].name",
            "certificates[0].domains[0]"
        ]
    );
}

#[test]
fn stack_section() {
    let base = format!(
        "{MINIMAL}\n[stack]\nregion = \"europe-west1\"\nservice = \"cloud-run-iap\"\ndomains = [\"app.example.com\"]\n"
    );
    let c = load(&base).unwrap();
    let s = c.stack.as_ref().unwrap();
    let n = s.names();
    assert_eq!(n.neg, "cloud-run-iap-neg");
    assert_eq!(n.backend, "cloud-run-iap-backend");
    assert_eq!(n.url_map, "cloud-run-iap-url-map");
    assert_eq!(n.ip, "cloud-run-iap-ip");
    assert_eq!(n.https_proxy, "cloud-run-iap-https-proxy");
    assert_eq!(n.forwarding_rule, "cloud-run-iap-forwarding-rule");
    assert!(s.iap.enabled && s.http_redirect && s.manage_dns);
    assert_eq!(s.load_balancing_scheme.as_str(), "EXTERNAL_MANAGED");

    let e = error(&base.replace("europe-west1", "Europe"));
    assert_contains(&e, "stack.region: \"Europe\" is not a region");
    let e = error(&base.replace("cloud-run-iap\"", "Cloud_Run\""));
    assert_contains(
        &e,
        "stack.service: \"Cloud_Run\" is not a Cloud Run service name",
    );
    let e = error(&format!(
        "{base}[stack.iap]\nmembers = [\"alice@example.com\"]\n"
    ));
    assert_contains(
        &e,
        "stack.iap.members[0]: \"alice@example.com\" is not an IAM member",
    );
    load(&format!(
        "{base}[stack.iap]\nmembers = [\"user:alice@example.com\", \"domain:example.com\"]\n"
    ))
    .unwrap();
    let e = error(&format!(
        "{base}[stack.iap]\noauth_client_id = \"x.apps.googleusercontent.com\"\n"
    ));
    assert_contains(
        &e,
        "stack.iap: oauth_client_id and oauth_client_secret_file go together",
    );
    let e = error(&base.replace(
        "region = \"europe-west1\"",
        "region = \"europe-west1\"\nload_balancing_scheme = \"INTERNAL\"",
    ));
    assert_contains(&e, "stack.load_balancing_scheme");
    let e = error(&format!("{base}[stack.names]\nneg = \"Neg\"\n"));
    assert_contains(&e, "stack.names.neg: \"Neg\" is not a resource name");
}

#[test]
fn adopt_takes_exact_certificate_names_only() {
    let c = load(&cert_with("adopt = [\"cloud-run-iap-cert\"]")).unwrap();
    assert_eq!(c.certificates[0].adopt, ["cloud-run-iap-cert"]);
    assert!(load(MINIMAL).unwrap().certificates[0].adopt.is_empty());
    let e = error(&cert_with("adopt = [\"cloud-run-*\"]"));
    assert_contains(
        &e,
        "certificates[0].adopt[0]: \"cloud-run-*\" is not an sslCertificates name (exact names only, no patterns)",
    );
}

#[test]
fn a_certificate_map_replaces_proxies_and_shares_hostnames_with_no_one() {
    let in_map = MINIMAL.replace(
        "target_https_proxies = [\"cloud-run-iap-http-proxy\"]",
        "certificate_map = \"sites\"\nprimary = true",
    );
    let c = load(&in_map).unwrap();
    assert_eq!(c.certificates[0].certificate_map.as_deref(), Some("sites"));
    assert!(c.certificates[0].primary);
    assert!(c.certificates[0].target_https_proxies.is_empty());
    // Proxies serving the map may be listed too.
    load(&cert_with("certificate_map = \"sites\"")).unwrap();

    let e = error(&cert_with("certificate_map = \"Sites\""));
    assert_contains(
        &e,
        "certificates[0].certificate_map: \"Sites\" is not a certificate map id",
    );
    let e = error(&cert_with("primary = true"));
    assert_contains(
        &e,
        "certificates[0].primary: is true without certificate_map",
    );
    let e = error(&MINIMAL.replace("target_https_proxies = [\"cloud-run-iap-http-proxy\"]", ""));
    assert_contains(&e, "or a certificate_map");

    let second = "\n[[certificates]]\nname = \"other\"\ndomains = [\"www.example.com\", \"APP.example.com\"]\ncertificate_map = \"sites\"\nprimary = true\n";
    let e = error(&format!("{in_map}{second}"));
    assert_contains(
        &e,
        "certificates[1].domains[1]: \"app.example.com\" is already served from certificate map \"sites\" by certificates[0] (\"app\")",
    );
    assert_contains(
        &e,
        "certificates[1].primary: certificate map \"sites\" already has its PRIMARY entry from certificates[0] (\"app\")",
    );
    // The same hostname in two different maps is fine.
    load(&format!(
        "{in_map}{}",
        second
            .replace("\"sites\"", "\"other-map\"")
            .replace("APP.example.com", "app.example.com")
    ))
    .unwrap();
}

#[test]
fn the_stack_and_its_certificate_share_one_certificate_map() {
    let stack = "\n[stack]\nregion = \"europe-west1\"\nservice = \"svc\"\n";
    // Set on the stack: the certificate gets it.
    let c = load(&format!("{MINIMAL}{stack}certificate_map = \"lb\"\n")).unwrap();
    assert_eq!(c.certificates[0].certificate_map.as_deref(), Some("lb"));
    assert_eq!(
        c.stack.as_ref().unwrap().certificate_map.as_deref(),
        Some("lb")
    );
    // Set on the certificate: the stack gets it.
    let c = load(&format!("{}{stack}", cert_with("certificate_map = \"lb\""))).unwrap();
    assert_eq!(
        c.stack.as_ref().unwrap().certificate_map.as_deref(),
        Some("lb")
    );
    // Neither: no map anywhere.
    let c = load(&format!("{MINIMAL}{stack}")).unwrap();
    assert!(c.stack.as_ref().unwrap().certificate_map.is_none());
    assert!(c.certificates[0].certificate_map.is_none());
    // Two different maps: refused, naming both.
    let e = error(&format!(
        "{}{stack}certificate_map = \"lb\"\n",
        cert_with("certificate_map = \"other\"")
    ));
    assert_contains(
        &e,
        "stack.certificate_map: is \"lb\", but the stack's certificate certificates[0] (\"app\") lives in certificate map \"other\"",
    );
    let e = error(&format!("{MINIMAL}{stack}certificate_map = \"LB\"\n"));
    assert_contains(
        &e,
        "stack.certificate_map: \"LB\" is not a certificate map id",
    );
    // stack.certificate picks which entry gets it.
    let two = format!(
        "{MINIMAL}\n[[certificates]]\nname = \"api\"\ndomains = [\"api.example.com\"]\ntarget_https_proxies = [\"p\"]\n{stack}certificate = \"api\"\ncertificate_map = \"lb\"\n"
    );
    let c = load(&two).unwrap();
    assert!(c.certificates[0].certificate_map.is_none());
    assert_eq!(c.certificates[1].certificate_map.as_deref(), Some("lb"));
}
