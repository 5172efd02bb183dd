//! `[stack]`: the Cloud Run + IAP + HTTPS load balancer that `bootstrap` builds.
//! Resource names default to the walkthrough's (`<service>-neg`, `<service>-backend`, ...).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Problems;
use crate::names::{gcp_name_rule, is_gcp_name, normalize_dns_name};

/// `[stack]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// Region of the Cloud Run service (and so of the serverless NEG).
    pub region: String,
    /// The existing Cloud Run service.
    pub service: String,
    /// The names users reach the service at; default: the domains of `certificate`.
    #[serde(default)]
    pub domains: Vec<String>,
    /// The `[[certificates]]` entry served by the proxy; default: the first one.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Build the HTTPS proxy with this Certificate Manager certificate map
    /// (location `global`) instead of `sslCertificates`. The stack's
    /// certificate entry gets the map (its own `certificate_map`, which must be
    /// unset or the same): bootstrap installs the first certificate there, and
    /// teardown removes the entries, the map and the certificate it created.
    #[serde(default)]
    pub certificate_map: Option<String>,
    #[serde(default)]
    pub load_balancing_scheme: Scheme,
    /// Redirect HTTP (port 80) to HTTPS on the same address.
    #[serde(default = "default_true")]
    pub http_redirect: bool,
    /// Create the DNS A record of each domain in its Cloud DNS zone.
    #[serde(default = "default_true")]
    pub manage_dns: bool,
    #[serde(default)]
    pub iap: IapConfig,
    #[serde(default)]
    pub names: StackNames,
}

/// Load-balancing scheme of the backend service and forwarding rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Scheme {
    /// Global external Application Load Balancer (recommended).
    #[default]
    #[serde(rename = "EXTERNAL_MANAGED")]
    ExternalManaged,
    /// Classic Application Load Balancer.
    #[serde(rename = "EXTERNAL")]
    External,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::ExternalManaged => "EXTERNAL_MANAGED",
            Scheme::External => "EXTERNAL",
        }
    }
}

/// `[stack.iap]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IapConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Your own OAuth client; without it IAP uses Google's managed client, which
    /// admits only users of the project's organisation.
    #[serde(default)]
    pub oauth_client_id: Option<String>,
    /// File holding the OAuth client secret (kept out of the config file).
    #[serde(default)]
    pub oauth_client_secret_file: Option<PathBuf>,
    /// Who may pass: `user:`, `group:`, `domain:`, `serviceAccount:` members.
    #[serde(default)]
    pub members: Vec<String>,
}

impl Default for IapConfig {
    fn default() -> Self {
        IapConfig {
            enabled: true,
            oauth_client_id: None,
            oauth_client_secret_file: None,
            members: Vec::new(),
        }
    }
}

/// `[stack.names]`: overrides of the resource names.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackNames {
    pub neg: Option<String>,
    pub backend: Option<String>,
    pub url_map: Option<String>,
    pub ip: Option<String>,
    pub https_proxy: Option<String>,
    pub forwarding_rule: Option<String>,
    pub http_url_map: Option<String>,
    pub http_proxy: Option<String>,
    pub http_forwarding_rule: Option<String>,
}

/// The resolved resource names of the stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedNames {
    pub neg: String,
    pub backend: String,
    pub url_map: String,
    pub ip: String,
    pub https_proxy: String,
    pub forwarding_rule: String,
    pub http_url_map: String,
    pub http_proxy: String,
    pub http_forwarding_rule: String,
}

fn default_true() -> bool {
    true
}

impl StackConfig {
    /// The resource names, defaults filled from the service name.
    pub fn names(&self) -> ResolvedNames {
        let s = &self.service;
        let n = &self.names;
        let pick =
            |o: &Option<String>, suffix: &str| o.clone().unwrap_or_else(|| format!("{s}-{suffix}"));
        ResolvedNames {
            neg: pick(&n.neg, "neg"),
            backend: pick(&n.backend, "backend"),
            url_map: pick(&n.url_map, "url-map"),
            ip: pick(&n.ip, "ip"),
            https_proxy: pick(&n.https_proxy, "https-proxy"),
            forwarding_rule: pick(&n.forwarding_rule, "forwarding-rule"),
            http_url_map: pick(&n.http_url_map, "http-redirect"),
            http_proxy: pick(&n.http_proxy, "http-proxy"),
            http_forwarding_rule: pick(&n.http_forwarding_rule, "http-forwarding-rule"),
        }
    }

    pub(super) fn validate(&mut self, base: Option<&Path>, p: &mut Problems) {
        if !is_region(&self.region) {
            p.push(
                "stack.region",
                format!(
                    "\"{}\" is not a region: expected e.g. \"europe-west1\"",
                    self.region
                ),
            );
        }
        // Cloud Run service ids: a letter first, no trailing hyphen, under 50 characters.
        if !is_gcp_name(&self.service, 49) {
            p.push(
                "stack.service",
                format!(
                    "\"{}\" is not a Cloud Run service name: {}",
                    self.service,
                    gcp_name_rule(49)
                ),
            );
        }
        for (j, dn) in self.domains.iter_mut().enumerate() {
            match normalize_dns_name(dn) {
                Ok(n) if n.starts_with("*.") => p.push(
                    format!("stack.domains[{j}]"),
                    format!("\"{dn}\" is a wildcard: the stack needs concrete names to point A records at"),
                ),
                Ok(n) => *dn = n,
                Err(e) => p.push(
                    format!("stack.domains[{j}]"),
                    format!("\"{dn}\" is not a valid DNS name: {e}"),
                ),
            }
        }
        let names = self.names();
        for (key, value) in [
            ("neg", &names.neg),
            ("backend", &names.backend),
            ("url_map", &names.url_map),
            ("ip", &names.ip),
            ("https_proxy", &names.https_proxy),
            ("forwarding_rule", &names.forwarding_rule),
            ("http_url_map", &names.http_url_map),
            ("http_proxy", &names.http_proxy),
            ("http_forwarding_rule", &names.http_forwarding_rule),
        ] {
            if !is_gcp_name(value, 63) {
                p.push(
                    format!("stack.names.{key}"),
                    format!("\"{value}\" is not a resource name: {}", gcp_name_rule(63)),
                );
            }
        }
        let iap = &mut self.iap;
        if iap.oauth_client_id.is_some() != iap.oauth_client_secret_file.is_some() {
            p.push(
                "stack.iap",
                "oauth_client_id and oauth_client_secret_file go together: set both, or neither to use Google's managed OAuth client",
            );
        }
        if let Some(f) = &mut iap.oauth_client_secret_file {
            if f.is_relative()
                && let Some(b) = base
            {
                *f = b.join(&*f);
            }
            if let Err(e) = std::fs::metadata(&*f) {
                p.push(
                    "stack.iap.oauth_client_secret_file",
                    format!(
                        "cannot read \"{}\": {e}; expected a file holding the OAuth client secret",
                        f.display()
                    ),
                );
            }
        }
        for (j, m) in iap.members.iter().enumerate() {
            let ok = ["user:", "group:", "domain:", "serviceAccount:"]
                .iter()
                .any(|prefix| {
                    m.strip_prefix(prefix)
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
                });
            if !ok {
                p.push(
                    format!("stack.iap.members[{j}]"),
                    format!("\"{m}\" is not an IAM member: expected \"user:EMAIL\", \"group:EMAIL\", \"domain:DOMAIN\" or \"serviceAccount:EMAIL\""),
                );
            }
        }
    }
}

fn is_region(s: &str) -> bool {
    // e.g. us-central1, europe-west1, northamerica-northeast2
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().last().is_some_and(|b| b.is_ascii_digit()))
}

/// `stack.certificate_map` and the stack's certificate (`stack.certificate`, or
/// the first `[[certificates]]`) agree on where that certificate lives: set on
/// one side, it is copied to the other; set to two different maps, a problem.
/// Runs before the certificates are validated, so the copied value is checked
/// with them.
pub(super) fn share_certificate_map(
    stack: &mut StackConfig,
    certificates: &mut [super::CertificateConfig],
    p: &mut Problems,
) {
    if let Some(map) = &stack.certificate_map
        && !is_gcp_name(map, 63)
    {
        p.push(
            "stack.certificate_map",
            format!(
                "\"{map}\" is not a certificate map id: {}",
                gcp_name_rule(63)
            ),
        );
        return;
    }
    let at = match &stack.certificate {
        Some(n) => certificates.iter().position(|c| &c.name == n),
        None if certificates.is_empty() => None,
        None => Some(0),
    };
    let Some(i) = at else {
        if stack.certificate_map.is_some() {
            p.push(
                "stack.certificate_map",
                "is set, but the stack has no [[certificates]] entry to hold in the map: add one (stack.certificate names it, default the first)",
            );
        }
        return;
    };
    let cert = &mut certificates[i];
    match (&stack.certificate_map, &cert.certificate_map) {
        (Some(s), Some(c)) if s != c => p.push(
            "stack.certificate_map",
            format!(
                "is \"{s}\", but the stack's certificate certificates[{i}] (\"{}\") lives in certificate map \"{c}\": the proxy must serve the map the daemon renews into; use one map id in both places",
                cert.name
            ),
        ),
        (Some(s), None) => cert.certificate_map = Some(s.clone()),
        (None, Some(c)) => stack.certificate_map = Some(c.clone()),
        _ => {}
    }
}
