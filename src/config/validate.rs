//! `validate` per section: each section checks its own keys and pushes problems
//! named by their key path; `Config::validate` calls them in file order.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use super::checks::{check_host_port, check_pem_certificates, check_url};
use super::{
    AcmeConfig, CA_ALIASES, CertificateConfig, DaemonConfig, DnsConfig, GcpConfig, MAX_CERT_NAME,
    MAX_DOMAINS, Problems, is_project_id, resolve, truncate,
};
use crate::names::{gcp_name_rule, is_gcp_name, normalize_dns_name};

impl GcpConfig {
    /// `[gcp]`: the project id and the endpoint URLs (which get a trailing `/`).
    pub(super) fn validate(&mut self, p: &mut Problems) {
        if let Some(project) = &self.project
            && !is_project_id(project)
        {
            p.push(
            "gcp.project",
            format!("\"{project}\" is not a project id: expected 6 to 30 characters, lowercase letters, digits and '-', starting with a letter"),
        );
        }
        let e = &mut self.endpoints;
        for (key, url) in [
            ("compute", &mut e.compute),
            ("dns", &mut e.dns),
            ("iap", &mut e.iap),
            ("run", &mut e.run),
            ("serviceusage", &mut e.serviceusage),
            ("resourcemanager", &mut e.resourcemanager),
            ("storage", &mut e.storage),
            ("certificatemanager", &mut e.certificatemanager),
        ] {
            match check_url(url, false) {
                Ok(()) => {
                    if !url.ends_with('/') {
                        url.push('/');
                    }
                }
                Err(m) => p.push(format!("gcp.endpoints.{key}"), m.to_string()),
            }
        }
    }
}

impl AcmeConfig {
    /// `[acme]`: CA aliases become URLs, relative files resolve against `base`.
    pub(super) fn validate(
        &mut self,
        base: Option<&Path>,
        has_certificates: bool,
        p: &mut Problems,
    ) {
        if let Some((_, url)) = CA_ALIASES
            .iter()
            .find(|(alias, _)| *alias == self.directory)
        {
            self.directory = (*url).to_string();
        }
        if let Err(m) = check_url(&self.directory, true) {
            let aliases: Vec<&str> = CA_ALIASES.iter().map(|(a, _)| *a).collect();
            p.push(
                "acme.directory",
                format!("{m}, or one of {}", aliases.join(", ")),
            );
        }
        for (i, c) in self.contact.iter().enumerate() {
            let ok = c
            .strip_prefix("mailto:")
            .is_some_and(|addr| {
                let mut parts = addr.split('@');
                matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && normalize_dns_name(d).is_ok())
            });
            if !ok {
                p.push(
                    format!("acme.contact[{i}]"),
                    format!("\"{c}\" is not a contact: expected \"mailto:name@example.com\""),
                );
            }
        }
        if !self.accept_terms && has_certificates {
            p.push(
            "acme.accept_terms",
            "must be true: the CA requires agreeing to its terms of service before it issues (read them at the directory's meta.termsOfService)",
        );
        }
        for (i, f) in self.ca_roots.iter_mut().enumerate() {
            resolve(base, f);
            if let Err(m) = check_pem_certificates(f) {
                p.push(format!("acme.ca_roots[{i}]"), m.to_string());
            }
        }
        if let Some(eab) = &mut self.eab {
            if eab.kid.trim().is_empty() {
                p.push(
                    "acme.eab.kid",
                    "is empty: expected the key id your CA gave you",
                );
            }
            resolve(base, &mut eab.hmac_key_file);
            if let Err(e) = std::fs::metadata(&eab.hmac_key_file) {
                p.push(
                    "acme.eab.hmac_key_file",
                    format!(
                        "cannot read \"{}\": {e}; expected a file holding the base64url HMAC key",
                        eab.hmac_key_file.display()
                    ),
                );
            }
        }
        if let Some(profile) = &self.profile
            && (profile.is_empty()
                || !profile
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            p.push(
            "acme.profile",
            format!("\"{profile}\" is not a profile name: expected e.g. \"tlsserver\" or \"shortlived\""),
        );
        }
    }
}

impl DnsConfig {
    /// `[dns]`
    pub(super) fn validate(&self, p: &mut Problems) {
        for (i, ns) in self.nameservers.iter().enumerate() {
            if let Err(m) = check_host_port(ns) {
                p.push(format!("dns.nameservers[{i}]"), m.to_string());
            }
        }
        for (i, r) in self.resolvers.iter().enumerate() {
            if let Err(m) = check_host_port(r) {
                p.push(format!("dns.resolvers[{i}]"), m.to_string());
            }
        }
        let timeout = self.propagation_timeout.get();
        if timeout.is_zero() || timeout > std::time::Duration::from_secs(3600) {
            p.push(
                "dns.propagation_timeout",
                format!(
                    "\"{}\" is out of range: expected more than 0s and at most 1h",
                    self.propagation_timeout
                ),
            );
        }
        if !(1..=86_400).contains(&self.ttl) {
            p.push(
                "dns.ttl",
                format!("{} is out of range: expected 1 to 86400 seconds", self.ttl),
            );
        }
    }
}

impl DaemonConfig {
    /// `[daemon]`
    pub(super) fn validate(&self, p: &mut Problems) {
        let d = self;
        if !d.metrics_listen.is_empty() && d.metrics_listen.parse::<SocketAddr>().is_err() {
            p.push(
            "daemon.metrics_listen",
            format!("\"{}\" is not an address: expected \"127.0.0.1:9464\", or \"\" to turn metrics off", d.metrics_listen),
        );
        }
        if !(1..=64).contains(&d.concurrency) {
            p.push(
                "daemon.concurrency",
                format!("{} is out of range: expected 1 to 64", d.concurrency),
            );
        }
        if let Some(cron) = &d.maintenance_window
            && let Err(m) = crate::schedule::window::Cron::parse(cron)
        {
            p.push("daemon.maintenance_window", format!("\"{cron}\" {m}"));
        }
        if d.retry_initial.get() < std::time::Duration::from_secs(1) {
            p.push(
                "daemon.retry_initial",
                format!("\"{}\" is too short: expected at least 1s", d.retry_initial),
            );
        }
        if d.retry_max.get() < d.retry_initial.get() {
            p.push(
                "daemon.retry_max",
                format!(
                    "\"{}\" is shorter than daemon.retry_initial (\"{}\")",
                    d.retry_max, d.retry_initial
                ),
            );
        }
        if d.error_before.get().is_zero() {
            p.push(
                "daemon.error_before",
                "\"0s\" is out of range: expected more than 0s, e.g. \"7d\"",
            );
        }
    }
}

/// `[[certificates]]`: names unique, domains normalised to lower case.
pub(super) fn validate_certificates(certificates: &mut [CertificateConfig], p: &mut Problems) {
    let mut names = BTreeSet::new();
    for (i, c) in certificates.iter_mut().enumerate() {
        c.validate(&format!("certificates[{i}]"), &mut names, p);
    }
    validate_certificate_maps(certificates, p);
}

/// Entries sharing a certificate map: a hostname is served by one entry of a
/// map, so it may belong to one `[[certificates]]` of that map only, and the
/// map has one PRIMARY entry.
fn validate_certificate_maps(certificates: &[CertificateConfig], p: &mut Problems) {
    // (map, hostname) -> index of the first entry claiming it; map -> primary.
    let mut hosts: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    let mut primaries: std::collections::BTreeMap<&str, usize> = Default::default();
    for (i, c) in certificates.iter().enumerate() {
        let Some(map) = c.certificate_map.as_deref() else {
            continue;
        };
        for (j, d) in c.domains.iter().enumerate() {
            if let Some(first) = hosts.insert((map, d.as_str()), i)
                && first != i
            {
                hosts.insert((map, d.as_str()), first);
                p.push(
                    format!("certificates[{i}].domains[{j}]"),
                    format!(
                        "\"{d}\" is already served from certificate map \"{map}\" by certificates[{first}] (\"{}\"): a map has one entry per hostname",
                        certificates[first].name
                    ),
                );
            }
        }
        if c.primary {
            if let Some(first) = primaries.get(map) {
                p.push(
                    format!("certificates[{i}].primary"),
                    format!(
                        "certificate map \"{map}\" already has its PRIMARY entry from certificates[{first}] (\"{}\"): at most one per map",
                        certificates[*first].name
                    ),
                );
            } else {
                primaries.insert(map, i);
            }
        }
    }
}

impl CertificateConfig {
    /// One `[[certificates]]` entry at key path `at`; `names` holds the names of
    /// the entries before it.
    fn validate(&mut self, at: &str, names: &mut BTreeSet<String>, p: &mut Problems) {
        if !is_gcp_name(&self.name, MAX_CERT_NAME) {
            p.push(
                format!("{at}.name"),
                format!(
                    "\"{}\" is not usable: {}",
                    self.name,
                    gcp_name_rule(MAX_CERT_NAME)
                ),
            );
        } else if !names.insert(self.name.clone()) {
            p.push(
                format!("{at}.name"),
                format!(
                    "\"{}\" is used by an earlier certificate: names must be unique",
                    self.name
                ),
            );
        }
        if self.domains.is_empty() {
            p.push(
                format!("{at}.domains"),
                "is empty: expected at least one DNS name",
            );
        }
        if self.domains.len() > MAX_DOMAINS {
            p.push(
                format!("{at}.domains"),
                format!(
                    "has {} names: a certificate may hold at most {MAX_DOMAINS}; split them over several [[certificates]]",
                    self.domains.len()
                ),
            );
        } else {
            let mut seen = BTreeSet::new();
            for (j, dn) in self.domains.iter_mut().enumerate() {
                match normalize_dns_name(dn) {
                    Ok(n) => {
                        if !seen.insert(n.clone()) {
                            p.push(
                                format!("{at}.domains[{j}]"),
                                format!("\"{dn}\" is listed twice"),
                            );
                        }
                        *dn = n;
                    }
                    Err(e) => p.push(
                        format!("{at}.domains[{j}]"),
                        format!("\"{}\" is not a valid DNS name: {e}", truncate(dn, 80)),
                    ),
                }
            }
        }
        if let Some(map) = &self.certificate_map {
            if !is_gcp_name(map, 63) {
                p.push(
                    format!("{at}.certificate_map"),
                    format!(
                        "\"{}\" is not a certificate map id: {}",
                        truncate(map, 80),
                        gcp_name_rule(63)
                    ),
                );
            }
        } else {
            if self.target_https_proxies.is_empty() {
                p.push(
                    format!("{at}.target_https_proxies"),
                    "is empty: expected the name of at least one target HTTPS proxy to serve this certificate, or a certificate_map",
                );
            }
            if self.primary {
                p.push(
                    format!("{at}.primary"),
                    "is true without certificate_map: only a certificate map has a PRIMARY entry",
                );
            }
        }
        if self.target_https_proxies.len() > 100 {
            p.push(
                format!("{at}.target_https_proxies"),
                format!(
                    "has {} proxies: expected at most 100",
                    self.target_https_proxies.len()
                ),
            );
        } else {
            for (j, proxy) in self.target_https_proxies.iter().enumerate() {
                if !is_gcp_name(proxy, 63) {
                    p.push(
                        format!("{at}.target_https_proxies[{j}]"),
                        format!(
                            "\"{}\" is not a proxy name: {}",
                            truncate(proxy, 80),
                            gcp_name_rule(63)
                        ),
                    );
                }
            }
        }
        for (j, a) in self.adopt.iter().enumerate() {
            if !is_gcp_name(a, 63) {
                p.push(
                    format!("{at}.adopt[{j}]"),
                    format!(
                        "\"{}\" is not an sslCertificates name (exact names only, no patterns): {}",
                        truncate(a, 80),
                        gcp_name_rule(63)
                    ),
                );
            }
        }
        if let Some(zone) = &self.zone
            && !is_gcp_name(zone, 63)
        {
            p.push(
                format!("{at}.zone"),
                format!(
                    "\"{zone}\" is not a managed-zone name: {}",
                    gcp_name_rule(63)
                ),
            );
        }
    }
}
