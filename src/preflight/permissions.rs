//! The IAM permissions the daemon and `bootstrap` need on the project, derived
//! from the configuration (docs/iam.md lists them for
//! humans). Pure, so the lists are tested rather than trusted: the unit tests
//! below hold docs/iam.md to them, and `tests/least_privilege.rs` runs renewals,
//! bootstrap and teardown against the gcp-emulator granted exactly these lists,
//! and checks that every permission was needed and none was missing.

use crate::config::Config;

/// What renewing needs: Cloud DNS for DNS-01, Compute for upload and swap.
pub fn renewal(config: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    // A configured zone is read with `.get`; discovery lists every zone.
    if config.certificates.iter().any(|c| c.zone.is_none()) {
        out.push("dns.managedZones.list");
    }
    if config.certificates.iter().any(|c| c.zone.is_some()) {
        out.push("dns.managedZones.get");
    }
    out.extend([
        // The TXT values already there (other writers' are kept), and CNAMEs.
        "dns.resourceRecordSets.list",
        // Cloud DNS checks these on each change, by what the change does: a new
        // set is a create, a set merged with another writer's values an update,
        // the last of our values removed a delete.
        "dns.resourceRecordSets.create",
        "dns.resourceRecordSets.update",
        "dns.resourceRecordSets.delete",
        // Not `dns.changes.get`: a change is not polled to done, the name
        // servers are asked directly.
        "dns.changes.create",
    ]);
    // Certificates on proxies' sslCertificates (any entry without a map).
    let ssl = config
        .certificates
        .iter()
        .any(|c| c.certificate_map.is_none());
    // Map certificates listing the proxies that serve the map: each is read
    // (and TLS-verified).
    let map_proxies = config
        .certificates
        .iter()
        .any(|c| c.certificate_map.is_some() && !c.target_https_proxies.is_empty());
    if ssl {
        out.extend([
            // Creating a proxy list that names a certificate reads it too
            // (setSslCertificates checks `sslCertificates.get` on each).
            "compute.sslCertificates.create",
            "compute.sslCertificates.get",
            "compute.sslCertificates.list",
            "compute.sslCertificates.delete",
            "compute.targetHttpsProxies.get",
            // Which proxies serve a certificate: when Compute refuses to
            // delete a superseded one as in use, and when a hand-made one is
            // taken over.
            "compute.targetHttpsProxies.list",
            "compute.targetHttpsProxies.setSslCertificates",
            "compute.globalOperations.get",
        ]);
    } else if map_proxies {
        out.push("compute.targetHttpsProxies.get");
    }
    if config.daemon.verify_after_swap && (ssl || map_proxies) {
        // The proxies' IP addresses, for the TLS check after a swap.
        out.push("compute.globalForwardingRules.list");
    }
    if uses_certificate_maps(config) {
        out.extend(CERTIFICATE_MANAGER_RENEWAL);
    }
    if config
        .certificates
        .iter()
        .any(|c| c.certificate_map.is_some() && !c.adopt.is_empty())
    {
        // An adopted hand-made certificate no entry uses any more is deleted.
        out.push("certificatemanager.certs.delete");
    }
    out
}

/// Whether any `[[certificates]]` entry lives in a Certificate Manager map.
pub fn uses_certificate_maps(config: &Config) -> bool {
    config
        .certificates
        .iter()
        .any(|c| c.certificate_map.is_some())
}

/// What renewing a certificate held in a certificate map calls (`lb::certmap`):
/// the map read (and created when missing), the self-managed certificate
/// `gclb-acme-<name>` (and those the entries name) read, created, and patched
/// in place on renewal, the entries read, created and repointed, and the
/// long-running operations polled. Creating or updating an entry also checks
/// `certs.use` on each certificate it names.
///
/// `certs.list`: `status` looks for hand-made certificates our names cover that
/// no entry uses any more; `certmapentries.delete`: clean-up removes our entries
/// for names no longer configured.
pub const CERTIFICATE_MANAGER_RENEWAL: [&str; 13] = [
    "certificatemanager.certmaps.get",
    "certificatemanager.certmaps.create",
    "certificatemanager.certs.get",
    "certificatemanager.certs.list",
    "certificatemanager.certs.create",
    "certificatemanager.certs.update",
    "certificatemanager.certs.use",
    "certificatemanager.certmapentries.get",
    "certificatemanager.certmapentries.list",
    "certificatemanager.certmapentries.create",
    "certificatemanager.certmapentries.update",
    "certificatemanager.certmapentries.delete",
    "certificatemanager.operations.get",
];

/// What attaching a map to a target HTTPS proxy, or detaching it, needs
/// (bootstrap with `stack.certificate_map`, `gclb-acme certificate-map
/// attach`/`detach`): Compute checks `certmaps.use` on the map it is given;
/// the move reads the proxy and its sslCertificates first and waits for the
/// operation (the map side is read with renewal's permissions).
pub const CERTIFICATE_MAP_ATTACH: [&str; 5] = [
    "compute.targetHttpsProxies.setCertificateMap",
    "certificatemanager.certmaps.use",
    "compute.targetHttpsProxies.get",
    "compute.sslCertificates.get",
    "compute.globalOperations.get",
];

/// What teardown of a stack built with a certificate map deletes: our entries,
/// then the map, then our certificate.
pub const CERTIFICATE_MAP_TEARDOWN: [&str; 3] = [
    "certificatemanager.certmapentries.delete",
    "certificatemanager.certmaps.delete",
    "certificatemanager.certs.delete",
];

/// What `bootstrap` and `teardown` need beyond renewal, when `[stack]` is set.
/// Bootstrap also repairs drift in place (a backend service or URL map patched,
/// a proxy pointed back at its URL map, an A record replaced), so the
/// permissions of those repairs are here too.
pub fn bootstrap(config: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if uses_certificate_maps(config) {
        // Moving a proxy onto a map and back (`certificate-map attach`/`detach`).
        out.extend(CERTIFICATE_MAP_ATTACH);
    }
    let Some(stack) = &config.stack else {
        let renewal = renewal(config);
        out.retain(|p| !renewal.contains(p));
        return out;
    };
    out.extend([
        // The serverless NEG; `use`: the backend service refers to it.
        "compute.regionNetworkEndpointGroups.create",
        "compute.regionNetworkEndpointGroups.get",
        "compute.regionNetworkEndpointGroups.delete",
        "compute.regionNetworkEndpointGroups.use",
        "compute.regionOperations.get",
        // `update`: drift repair (IAP, backends, protocol); `use`: the URL map
        // refers to it.
        "compute.backendServices.create",
        "compute.backendServices.get",
        "compute.backendServices.update",
        "compute.backendServices.delete",
        "compute.backendServices.use",
        // `update`: drift repair; `use`: the proxies refer to it.
        "compute.urlMaps.create",
        "compute.urlMaps.get",
        "compute.urlMaps.update",
        "compute.urlMaps.delete",
        "compute.urlMaps.use",
        "compute.globalAddresses.create",
        "compute.globalAddresses.get",
        "compute.globalAddresses.delete",
        "compute.globalAddresses.use",
        "compute.globalForwardingRules.create",
        "compute.globalForwardingRules.get",
        "compute.globalForwardingRules.delete",
        // `setUrlMap`: drift repair; `use`: the forwarding rule refers to it.
        "compute.targetHttpsProxies.create",
        "compute.targetHttpsProxies.delete",
        "compute.targetHttpsProxies.use",
        "compute.targetHttpsProxies.setUrlMap",
        // Teardown looks for the HTTP redirect half even when it is off.
        "compute.targetHttpProxies.get",
        // The stack's own needs that renewal's list covers when a certificate
        // lives in sslCertificates (only then, with maps only, listed here):
        // the HTTPS proxy read, Compute operations waited for, and teardown
        // listing and deleting our sslCertificates.
        "compute.targetHttpsProxies.get",
        "compute.globalOperations.get",
        "compute.sslCertificates.list",
        "compute.sslCertificates.delete",
        // Read whenever the backend service exists, IAP on or off.
        "iap.webServices.getIamPolicy",
        // The ingress (a long-running operation, polled).
        "run.services.get",
        "run.services.update",
        "run.operations.get",
        // Whether IAP's service agent may invoke the service (teardown always
        // looks) and the project number that names the agent.
        "run.services.getIamPolicy",
        "resourcemanager.projects.get",
    ]);
    if stack.certificate_map.is_some() {
        // The stack's certificate gets the map (config validation), so the
        // attach permissions are in already.
        out.extend(CERTIFICATE_MAP_TEARDOWN);
    }
    if stack.http_redirect {
        out.extend([
            "compute.targetHttpProxies.create",
            "compute.targetHttpProxies.delete",
            "compute.targetHttpProxies.use",
            "compute.targetHttpProxies.setUrlMap",
        ]);
    }
    if stack.iap.enabled {
        // IAP's service agent as invoker. Creating the agent first
        // (generateServiceIdentity) needs no permission, Google documents.
        out.push("run.services.setIamPolicy");
    }
    if !stack.iap.members.is_empty() {
        out.push("iap.webServices.setIamPolicy");
    }
    if stack.manage_dns {
        // The A record's change is waited for until done.
        out.push("dns.changes.get");
    }
    let renewal = renewal(config);
    out.retain(|p| !renewal.contains(p));
    // The attach reads and the stack's overlap: each once, first place kept.
    let mut seen = Vec::new();
    out.retain(|p| {
        let first = !seen.contains(p);
        seen.push(*p);
        first
    });
    out
}

/// The permissions of `wanted` not in `granted`, in `wanted`'s order.
pub fn missing<'a>(wanted: &[&'a str], granted: &[String]) -> Vec<&'a str> {
    wanted
        .iter()
        .copied()
        .filter(|w| !granted.iter().any(|g| g == w))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, "t.toml", None).unwrap()
    }

    const BASE: &str = r#"
[acme]
accept_terms = true
[[certificates]]
name = "app"
domains = ["app.example.com"]
target_https_proxies = ["p"]
"#;

    /// Every option that adds a permission switched on: a certificate whose zone
    /// is discovered and one whose zone is configured, verification after swaps,
    /// and a stack with the HTTP redirect, IAP with members, and DNS records.
    const MAXIMAL: &str = r#"
[acme]
accept_terms = true
[daemon]
verify_after_swap = true
[[certificates]]
name = "app"
domains = ["app.example.com"]
target_https_proxies = ["p"]
adopt = ["hand-made"]
[[certificates]]
name = "api"
domains = ["api.example.org"]
target_https_proxies = ["q"]
zone = "example-org"
[stack]
region = "europe-west1"
service = "app"
certificate = "app"
certificate_map = "app-map"
http_redirect = true
manage_dns = true
[stack.iap]
enabled = true
members = ["user:alice@example.com"]
"#;

    #[test]
    fn renewal_lists_what_the_daemon_calls() {
        let p = renewal(&config(BASE));
        for must in [
            "dns.managedZones.list",
            "dns.resourceRecordSets.list",
            "dns.changes.create",
            "compute.sslCertificates.create",
            "compute.sslCertificates.get",
            "compute.sslCertificates.list",
            "compute.sslCertificates.delete",
            "compute.targetHttpsProxies.get",
            "compute.targetHttpsProxies.list",
            "compute.targetHttpsProxies.setSslCertificates",
            "compute.globalOperations.get",
            "compute.globalForwardingRules.list",
        ] {
            assert!(p.contains(&must), "{must} missing");
        }
        // The quota is not read: a full one refuses the insert itself.
        assert!(!p.contains(&"compute.projects.get"));
        assert!(!p.contains(&"dns.managedZones.get"));
        assert!(bootstrap(&config(BASE)).is_empty());
    }

    #[test]
    fn a_certificate_map_adds_certificate_manager_and_attaching() {
        let base = config(BASE);
        let in_map = config(&format!("{BASE}certificate_map = \"sites\"\n"));
        let r = renewal(&in_map);
        for p in CERTIFICATE_MANAGER_RENEWAL {
            assert!(r.contains(&p), "{p} missing");
            assert!(!renewal(&base).contains(&p), "{p} without a map");
        }
        // No certificate deleted while renewing (it is patched in place),
        // except an adopted hand-made one.
        assert!(!r.contains(&"certificatemanager.certs.delete"));
        // Attaching the map (certificate-map attach/detach) is not renewal's;
        // the reads renewal makes already are not listed twice.
        let b = bootstrap(&in_map);
        assert_eq!(
            b,
            [
                "compute.targetHttpsProxies.setCertificateMap",
                "certificatemanager.certmaps.use",
                "compute.sslCertificates.get",
                "compute.globalOperations.get",
            ]
        );
        assert!(bootstrap(&base).is_empty());
        // A stack with a map also deletes entries, map and certificate on teardown.
        let stack = config(&format!(
            "{BASE}[stack]\nregion = \"europe-west1\"\nservice = \"svc\"\ncertificate_map = \"lb\"\n"
        ));
        let b = bootstrap(&stack);
        let r = renewal(&stack);
        for p in CERTIFICATE_MAP_ATTACH
            .iter()
            .chain(&CERTIFICATE_MAP_TEARDOWN)
        {
            assert!(b.contains(p) || r.contains(p), "{p} missing");
        }
        let unique: BTreeSet<_> = b.iter().collect();
        assert_eq!(unique.len(), b.len(), "a duplicate in {b:?}");
        let without = config(&format!(
            "{BASE}[stack]\nregion = \"europe-west1\"\nservice = \"svc\"\n"
        ));
        assert!(
            bootstrap(&without)
                .iter()
                .all(|p| !p.starts_with("certificatemanager.") && !p.ends_with("setCertificateMap"))
        );
    }

    #[test]
    fn a_configured_zone_needs_get_not_list() {
        let p = renewal(&config(&format!("{BASE}zone = \"example-com\"\n")));
        assert!(p.contains(&"dns.managedZones.get"));
        assert!(!p.contains(&"dns.managedZones.list"));
    }

    #[test]
    fn without_verification_no_forwarding_rules_are_listed() {
        let c = config(&BASE.replace(
            "[[certificates]]",
            "[daemon]\nverify_after_swap = false\n[[certificates]]",
        ));
        assert!(!renewal(&c).contains(&"compute.globalForwardingRules.list"));
    }

    #[test]
    fn the_stack_adds_bootstrap_permissions_once() {
        let c = config(MAXIMAL);
        let b = bootstrap(&c);
        for must in [
            "compute.backendServices.create",
            "run.services.setIamPolicy",
            "run.operations.get",
            "iap.webServices.setIamPolicy",
            "compute.targetHttpProxies.create",
            "compute.targetHttpsProxies.setUrlMap",
        ] {
            assert!(b.contains(&must), "{must} missing");
        }
        // Never called: not asked for.
        for never in [
            "serviceusage.services.enable",
            "serviceusage.services.use",
            "compute.urlMaps.list",
            "run.services.list",
        ] {
            assert!(!b.contains(&never), "{never} listed");
        }
        let r = renewal(&c);
        assert!(b.iter().all(|p| !r.contains(p)), "listed twice");
        let unique: BTreeSet<_> = b.iter().collect();
        assert_eq!(unique.len(), b.len(), "a duplicate");
    }

    #[test]
    fn a_smaller_stack_needs_less() {
        let c = config(&format!(
            "{BASE}[stack]\nregion = \"europe-west1\"\nservice = \"svc\"\nhttp_redirect = false\n[stack.iap]\nenabled = false\n"
        ));
        let b = bootstrap(&c);
        for gone in [
            "compute.targetHttpProxies.create",
            "compute.targetHttpProxies.setUrlMap",
            "run.services.setIamPolicy",
            "iap.webServices.setIamPolicy",
        ] {
            assert!(!b.contains(&gone), "{gone} listed");
        }
        // Teardown still looks for what an earlier configuration may have made.
        for kept in [
            "compute.targetHttpProxies.get",
            "iap.webServices.getIamPolicy",
            "run.services.getIamPolicy",
        ] {
            assert!(b.contains(&kept), "{kept} missing");
        }
    }

    #[test]
    fn docs_bucket_permissions_are_exactly_what_the_state_calls() {
        let doc = include_str!("../../docs/iam.md");
        let at = doc
            .find("## State in a Cloud Storage bucket")
            .expect("docs/iam.md has the bucket section");
        let section = &doc[at + 2..];
        let section = &section[..section.find("\n## ").expect("a next section")];
        let found: BTreeSet<String> = section
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.starts_with("storage.") && !t.contains(' '))
            .map(str::to_string)
            .collect();
        let code = set(&[
            crate::state::REQUIRED_PERMISSIONS,
            crate::state::CHECK_PERMISSIONS,
        ]
        .concat());
        assert_eq!(found, code, "docs/iam.md bucket tables vs src/state/gcs.rs");
        // The renewer role (project level) never grants storage: the bucket's own IAM does.
        assert!(
            !role_file(doc, "gclb-acme-renewer.yaml")
                .iter()
                .any(|p| p.starts_with("storage."))
        );
    }

    /// The `includedPermissions` of the role file `file` in docs/iam.md.
    fn role_file(doc: &str, file: &str) -> Vec<String> {
        let at = doc
            .find(&format!("`{file}`:"))
            .unwrap_or_else(|| panic!("docs/iam.md has no {file}"));
        let rest = &doc[at..];
        let start = rest.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
        let block = &rest[start..];
        let block = &block[..block.find("```").expect("the block ends")];
        let list = block
            .split("includedPermissions:\n")
            .nth(1)
            .expect("includedPermissions");
        list.lines()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.strip_prefix("- ")
                    .unwrap_or_else(|| panic!("not a list item: {l}"))
                    .to_string()
            })
            .collect()
    }

    fn set<S: AsRef<str>>(v: &[S]) -> BTreeSet<String> {
        let s: BTreeSet<String> = v.iter().map(|x| x.as_ref().to_string()).collect();
        assert_eq!(s.len(), v.len(), "a duplicate in {:?}", s);
        s
    }

    #[test]
    fn docs_role_files_are_exactly_the_lists_for_a_maximal_config() {
        let doc = include_str!("../../docs/iam.md");
        let c = config(MAXIMAL);
        assert_eq!(
            set(&role_file(doc, "gclb-acme-renewer.yaml")),
            set(&renewal(&c)),
            "docs/iam.md gclb-acme-renewer.yaml vs permissions::renewal"
        );
        assert_eq!(
            set(&role_file(doc, "gclb-acme-bootstrap.yaml")),
            set(&bootstrap(&c)),
            "docs/iam.md gclb-acme-bootstrap.yaml vs permissions::bootstrap"
        );
        // The one documented exception: `iam.serviceAccounts.actAs`, which Cloud
        // Run checks on the service's runtime service account when the ingress is
        // updated, is granted on that service account (roles/iam.serviceAccountUser),
        // not in a project role, so neither list nor YAML file has it; the prose
        // must say so.
        assert!(doc.contains("`iam.serviceAccounts.actAs`"));
        assert!(doc.contains("roles/iam.serviceAccountUser"));
    }

    #[test]
    fn docs_zone_scoped_role_is_the_dns_part_of_renewal() {
        let doc = include_str!("../../docs/iam.md");
        let line = doc
            .lines()
            .find(|l| l.trim_start().starts_with("--permissions "))
            .expect("the gclbAcmeDns --permissions line");
        let listed: Vec<&str> = line
            .trim()
            .trim_start_matches("--permissions ")
            .trim_end_matches('\\')
            .trim()
            .split(',')
            .collect();
        // Zone-scoped DNS: every certificate names its zone.
        let c = config(&format!("{BASE}zone = \"example-com\"\n"));
        let dns: Vec<&str> = renewal(&c)
            .into_iter()
            .filter(|p| p.starts_with("dns."))
            .collect();
        assert_eq!(set(&listed), set(&dns));
    }

    #[test]
    fn missing_keeps_order() {
        let granted = vec!["b.c.d".to_string()];
        assert_eq!(
            missing(&["a.b.c", "b.c.d", "c.d.e"], &granted),
            ["a.b.c", "c.d.e"]
        );
    }
}
