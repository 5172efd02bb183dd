//! The IAM permissions the daemon and `bootstrap` need on the project, derived
//! from the configuration (gcp-api.md section 6; docs/iam.md lists them for
//! humans). Pure, so the lists are tested rather than trusted.

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
        "dns.resourceRecordSets.list",
        // Cloud DNS checks these on each change, by what the change does.
        "dns.resourceRecordSets.create",
        "dns.resourceRecordSets.update",
        "dns.resourceRecordSets.delete",
        "dns.changes.create",
        "dns.changes.get",
        "compute.sslCertificates.create",
        "compute.sslCertificates.get",
        "compute.sslCertificates.list",
        "compute.sslCertificates.delete",
        "compute.targetHttpsProxies.get",
        "compute.targetHttpsProxies.list",
        "compute.targetHttpsProxies.setSslCertificates",
        "compute.globalOperations.get",
        "compute.globalForwardingRules.list",
    ]);
    out
}

/// What `bootstrap` and `teardown` need beyond renewal, when `[stack]` is set.
pub fn bootstrap(config: &Config) -> Vec<&'static str> {
    let Some(stack) = &config.stack else {
        return Vec::new();
    };
    let mut out = vec![
        "compute.regionNetworkEndpointGroups.create",
        "compute.regionNetworkEndpointGroups.get",
        "compute.regionNetworkEndpointGroups.delete",
        "compute.regionNetworkEndpointGroups.use",
        "compute.regionOperations.get",
        "compute.backendServices.create",
        "compute.backendServices.get",
        "compute.backendServices.update",
        "compute.backendServices.delete",
        "compute.backendServices.use",
        "compute.urlMaps.create",
        "compute.urlMaps.get",
        "compute.urlMaps.delete",
        "compute.urlMaps.use",
        "compute.globalAddresses.create",
        "compute.globalAddresses.get",
        "compute.globalAddresses.delete",
        "compute.globalAddresses.use",
        "compute.globalForwardingRules.create",
        "compute.globalForwardingRules.get",
        "compute.globalForwardingRules.delete",
        "compute.targetHttpsProxies.create",
        "compute.targetHttpsProxies.delete",
        "compute.targetHttpsProxies.use",
        "run.services.get",
        "run.services.update",
        "run.services.getIamPolicy",
        "run.services.setIamPolicy",
        "resourcemanager.projects.get",
        "serviceusage.services.enable",
    ];
    if stack.iap.enabled {
        out.extend([
            "iap.webServices.getIamPolicy",
            "iap.webServices.setIamPolicy",
        ]);
    }
    if stack.http_redirect {
        out.extend([
            "compute.targetHttpProxies.create",
            "compute.targetHttpProxies.get",
            "compute.targetHttpProxies.delete",
            "compute.targetHttpProxies.use",
        ]);
    }
    let renewal = renewal(config);
    out.retain(|p| !renewal.contains(p));
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

    #[test]
    fn renewal_lists_what_the_daemon_calls() {
        let p = renewal(&config(BASE));
        for must in [
            "dns.managedZones.list",
            "dns.resourceRecordSets.list",
            "dns.changes.create",
            "dns.changes.get",
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
        assert!(!p.contains(&"dns.managedZones.get"));
        assert!(bootstrap(&config(BASE)).is_empty());
    }

    #[test]
    fn a_configured_zone_needs_get_not_list() {
        let p = renewal(&config(&format!("{BASE}zone = \"example-com\"\n")));
        assert!(p.contains(&"dns.managedZones.get"));
        assert!(!p.contains(&"dns.managedZones.list"));
    }

    #[test]
    fn the_stack_adds_bootstrap_permissions_once() {
        let c = config(&format!(
            "{BASE}[stack]\nregion = \"europe-west1\"\nservice = \"svc\"\n"
        ));
        let b = bootstrap(&c);
        for must in [
            "compute.backendServices.create",
            "run.services.setIamPolicy",
            "iap.webServices.setIamPolicy",
            "serviceusage.services.enable",
        ] {
            assert!(b.contains(&must), "{must} missing");
        }
        let r = renewal(&c);
        assert!(b.iter().all(|p| !r.contains(p)), "listed twice");
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
