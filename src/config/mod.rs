//! The configuration file: TOML, loaded once and validated as a whole.
//!
//! Every problem is reported with the file, the key path, the bad value and what
//! was expected, e.g. `config.toml: certificates[1].domains[0]: "exa mple.com" is
//! not a valid DNS name: ...`. All problems are collected, not just the first.

mod checks;
pub mod duration;
pub(crate) mod stack;
mod state;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use checks::{HostPortError, PemError, UrlError};
pub use duration::HumanDuration;
pub use stack::Scheme;
pub use stack::StackConfig;
pub use state::{
    BadLocation, DEFAULT_LEASE_MS, DEFAULT_SKEW_MS, GcsLocation, LeaseParams, LeaseParamsError,
    state_name_problem,
};

use crate::names::is_gcp_name;

/// Where the configuration lives unless `--config` or `GCLB_ACME_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/gclb-acme/config.toml";

/// Let's Encrypt's production directory, the default CA.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// ZeroSSL (needs EAB).
pub const ZEROSSL: &str = "https://acme.zerossl.com/v2/DV90";
/// Google Trust Services (needs EAB).
pub const GOOGLE_TRUST_SERVICES: &str = "https://dv.acme-v02.api.pki.goog/directory";
/// Google Trust Services staging (needs EAB).
pub const GOOGLE_TRUST_SERVICES_STAGING: &str = "https://dv.acme-v02.test-api.pki.goog/directory";

/// Short names accepted for `acme.directory`.
const CA_ALIASES: &[(&str, &str)] = &[
    ("letsencrypt", LETSENCRYPT),
    ("letsencrypt-staging", LETSENCRYPT_STAGING),
    ("zerossl", ZEROSSL),
    ("google", GOOGLE_TRUST_SERVICES),
    ("google-staging", GOOGLE_TRUST_SERVICES_STAGING),
];

/// Longest `[[certificates]].name`: the sslCertificates we create are named
/// `<name>-<12 hex digits of the leaf's hash>`, which must fit in 63 characters.
pub const MAX_CERT_NAME: usize = 50;

/// Let's Encrypt's limit of names per certificate.
pub const MAX_DOMAINS: usize = 100;

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gcp: GcpConfig,
    #[serde(default)]
    pub acme: AcmeConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
    #[serde(default)]
    pub stack: Option<StackConfig>,
}

/// `[gcp]`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// Project id; default: from the credentials or the metadata server.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// `[gcp.endpoints]`: base URLs of the Google APIs (overridden in tests).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    #[serde(default = "default_compute")]
    pub compute: String,
    #[serde(default = "default_dns")]
    pub dns: String,
    #[serde(default = "default_iap")]
    pub iap: String,
    #[serde(default = "default_run")]
    pub run: String,
    #[serde(default = "default_serviceusage")]
    pub serviceusage: String,
    #[serde(default = "default_resourcemanager")]
    pub resourcemanager: String,
    /// Cloud Storage's host: the JSON API lives under `storage/v1/`, uploads
    /// under `upload/storage/v1/`.
    #[serde(default = "default_storage")]
    pub storage: String,
    #[serde(default = "default_certificatemanager")]
    pub certificatemanager: String,
}

fn default_compute() -> String {
    "https://compute.googleapis.com/compute/v1/".into()
}
fn default_dns() -> String {
    "https://dns.googleapis.com/dns/v1/".into()
}
fn default_iap() -> String {
    "https://iap.googleapis.com/v1/".into()
}
fn default_run() -> String {
    "https://run.googleapis.com/v2/".into()
}
fn default_serviceusage() -> String {
    "https://serviceusage.googleapis.com/v1beta1/".into()
}
fn default_resourcemanager() -> String {
    "https://cloudresourcemanager.googleapis.com/v3/".into()
}
fn default_storage() -> String {
    "https://storage.googleapis.com/".into()
}
fn default_certificatemanager() -> String {
    "https://certificatemanager.googleapis.com/v1/".into()
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            compute: default_compute(),
            dns: default_dns(),
            iap: default_iap(),
            run: default_run(),
            serviceusage: default_serviceusage(),
            resourcemanager: default_resourcemanager(),
            storage: default_storage(),
            certificatemanager: default_certificatemanager(),
        }
    }
}

/// `[acme]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// Directory URL, or one of `letsencrypt`, `letsencrypt-staging`, `zerossl`,
    /// `google`, `google-staging`.
    #[serde(default = "default_directory")]
    pub directory: String,
    #[serde(default)]
    pub contact: Vec<String>,
    #[serde(default)]
    pub accept_terms: bool,
    /// Extra PEM files trusted for the ACME server's TLS (added to the system roots).
    #[serde(default)]
    pub ca_roots: Vec<PathBuf>,
    #[serde(default)]
    pub eab: Option<EabConfig>,
    /// ACME profile (e.g. `tlsserver`, `shortlived`).
    #[serde(default)]
    pub profile: Option<String>,
}

fn default_directory() -> String {
    LETSENCRYPT.into()
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            directory: default_directory(),
            contact: Vec::new(),
            accept_terms: false,
            ca_roots: Vec::new(),
            eab: None,
            profile: None,
        }
    }
}

/// `[acme.eab]`: External Account Binding (ZeroSSL, Google Trust Services).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EabConfig {
    pub kid: String,
    /// File holding the base64url HMAC key (kept out of the config file).
    pub hmac_key_file: PathBuf,
}

/// `[dns]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Where the challenge TXT records are written (`dns::from_config` is the
    /// one place that reads it).
    #[serde(default)]
    pub provider: DnsProviderKind,
    /// `host:port` list; when set, propagation is checked against these instead of
    /// the zone's own name servers.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// `host:port` list of public recursive resolvers, used by `check` to see the
    /// zone's delegation and CAA records as a CA sees them; default: the system
    /// resolver from /etc/resolv.conf, falling back to 8.8.8.8:53.
    #[serde(default)]
    pub resolvers: Vec<String>,
    #[serde(default = "default_propagation_timeout")]
    pub propagation_timeout: HumanDuration,
    /// TTL of the challenge TXT records, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_propagation_timeout() -> HumanDuration {
    HumanDuration::from_secs(180)
}
fn default_ttl() -> u32 {
    60
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            provider: DnsProviderKind::default(),
            nameservers: Vec::new(),
            resolvers: Vec::new(),
            propagation_timeout: default_propagation_timeout(),
            ttl: default_ttl(),
        }
    }
}

/// `[state]`: where the ACME account, issued-but-not-installed certificates
/// and the renewal bookkeeping live.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The state directory (the older key; `location` replaces it).
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// A directory path or `gs://BUCKET[/PREFIX]` (several daemons sharing
    /// state, with a lease per certificate). Unset: `dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// How long a lease on a certificate lasts without renewal (a bucket
    /// only): how long a crashed daemon's certificates wait for another.
    #[serde(default = "default_lease_duration")]
    pub lease_duration: HumanDuration,
    /// The clock skew between daemons a lease tolerates (less than a third
    /// of `lease_duration`).
    #[serde(default = "default_lease_skew")]
    pub lease_clock_skew: HumanDuration,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/gclb-acme")
}
fn default_lease_duration() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(DEFAULT_LEASE_MS))
}
fn default_lease_skew() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(DEFAULT_SKEW_MS))
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
            location: None,
            lease_duration: default_lease_duration(),
            lease_clock_skew: default_lease_skew(),
        }
    }
}

impl StateConfig {
    /// Where state lives: `location` when set, else `dir`.
    pub fn location(&self) -> String {
        match &self.location {
            Some(l) => l.clone(),
            None => self.dir.display().to_string(),
        }
    }

    /// Whether the state is a bucket.
    pub fn is_bucket(&self) -> bool {
        self.location
            .as_deref()
            .is_some_and(|l| l.starts_with("gs://"))
    }

    /// The lease parameters (validated by [`Config::validate`]).
    pub fn lease_params(&self) -> LeaseParams {
        let duration_ms = self.lease_duration.get().as_millis() as u64;
        let skew_ms = self.lease_clock_skew.get().as_millis() as u64;
        LeaseParams::new(duration_ms, skew_ms).unwrap_or(LeaseParams {
            duration_ms: DEFAULT_LEASE_MS,
            skew_ms: DEFAULT_SKEW_MS,
        })
    }

    fn validate(&mut self, base: Option<&Path>, p: &mut Problems) {
        resolve(base, &mut self.dir);
        if let Some(loc) = &self.location {
            if loc.starts_with("gs://") {
                if let Err(BadLocation { reason, .. }) = GcsLocation::parse(loc) {
                    p.push(
                        "state.location",
                        format!(
                            "{loc:?}: {reason} (expected a directory path or gs://BUCKET[/PREFIX])"
                        ),
                    );
                }
            } else if loc.contains("://") || loc.trim().is_empty() {
                p.push(
                    "state.location",
                    format!("{loc:?}: expected a directory path or gs://BUCKET[/PREFIX]"),
                );
            } else {
                // A directory: `dir` follows it, so everything that reads `dir` agrees.
                let mut dir = PathBuf::from(loc);
                resolve(base, &mut dir);
                self.location = Some(dir.display().to_string());
                self.dir = dir;
            }
        }
        let duration_ms = self.lease_duration.get().as_millis() as u64;
        let skew_ms = self.lease_clock_skew.get().as_millis() as u64;
        if duration_ms < 3_000 {
            p.push(
                "state.lease_duration",
                format!(
                    "{}: expected at least \"3s\" (a lease is renewed every third of it)",
                    self.lease_duration
                ),
            );
        } else if let Err(e) = LeaseParams::new(duration_ms, skew_ms) {
            p.push(
                "state.lease_clock_skew",
                format!("{}: {e}", self.lease_clock_skew),
            );
        }
    }
}

/// `[daemon]`: the long-running service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// `/metrics` and `/healthz` address; empty turns them off.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    /// How many certificates are worked on at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Cron expression (`min hour day month weekday`, UTC) limiting when swaps
    /// happen; emergencies ignore it.
    #[serde(default)]
    pub maintenance_window: Option<String>,
    /// Log at ERROR when less than this remains before expiry.
    #[serde(default = "default_error_before")]
    pub error_before: HumanDuration,
    /// First retry delay after a failure; doubles up to `retry_max`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial: HumanDuration,
    #[serde(default = "default_retry_max")]
    pub retry_max: HumanDuration,
    /// Check the served certificate with a TLS handshake after a swap.
    #[serde(default = "default_true")]
    pub verify_after_swap: bool,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_concurrency() -> usize {
    4
}
fn default_error_before() -> HumanDuration {
    HumanDuration::from_secs(7 * 86400)
}
fn default_retry_initial() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_retry_max() -> HumanDuration {
    HumanDuration::from_secs(6 * 3600)
}
fn default_true() -> bool {
    true
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            metrics_listen: default_metrics_listen(),
            concurrency: default_concurrency(),
            maintenance_window: None,
            error_before: default_error_before(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            verify_after_swap: true,
        }
    }
}

/// The DNS providers gclb-acme can write DNS-01 records with (`[dns] provider`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum DnsProviderKind {
    /// Cloud DNS, in the project of `gcp.project`.
    #[default]
    #[serde(rename = "cloud_dns")]
    CloudDns,
}

/// Key algorithms the load balancer accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum KeyType {
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[certificates]]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// GCP-name-safe; prefixes the sslCertificates we create.
    pub name: String,
    pub domains: Vec<String>,
    /// Target HTTPS proxies whose `sslCertificates` list carries this
    /// certificate; with `certificate_map`, the proxies that serve that map
    /// (optional: checked and TLS-verified when listed).
    #[serde(default)]
    pub target_https_proxies: Vec<String>,
    /// A Certificate Manager certificate map (location `global`) to hold this
    /// certificate instead of proxies' `sslCertificates`: one self-managed
    /// certificate `gclb-acme-<name>` patched in place on renewal, and one map
    /// entry per domain (see `lb::naming` and docs/certificate-manager.md).
    #[serde(default)]
    pub certificate_map: Option<String>,
    /// With `certificate_map`: also point the map's PRIMARY entry (served to
    /// clients without SNI or with an unmatched name) at this certificate. At
    /// most one `[[certificates]]` per map.
    #[serde(default)]
    pub primary: bool,
    #[serde(default)]
    pub key_type: KeyType,
    /// Managed-zone name; default: discovered per domain.
    #[serde(default)]
    pub zone: Option<String>,
    /// Keep the private key across renewals (default: a fresh key each time).
    #[serde(default)]
    pub reuse_key: bool,
    /// Hand-made sslCertificates (exact names) handed over to gclb-acme: once
    /// the new certificate is served everywhere they are deleted, unless a
    /// proxy still serves them or they serve names this certificate does not.
    #[serde(default)]
    pub adopt: Vec<String>,
}

/// One problem found in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `certificates[1].domains[0]`.
    pub path: String,
    pub message: String,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the configuration: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {path}{message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        /// `key.path: ` or empty.
        path: String,
        message: String,
    },
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems (one for a parse error).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { source, .. } => vec![Problem {
                path: String::new(),
                message: source.to_string(),
            }],
            ConfigError::Parse { path, message, .. } => vec![Problem {
                path: path.trim_end_matches(": ").to_string(),
                message: message.clone(),
            }],
            ConfigError::Invalid { problems, .. } => problems.clone(),
        }
    }
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            if p.path.is_empty() {
                format!("{file}: {}", p.message)
            } else {
                format!("{file}: {}: {}", p.path, p.message)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads, parses and validates the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::from_toml(&text, &file, path.parent())
    }

    /// Parses and validates TOML text; `file` names it in errors, `base` resolves
    /// relative paths inside it.
    pub fn from_toml(text: &str, file: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = parse(text, file)?;
        let problems = config.validate(base);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                file: file.to_string(),
                problems,
            })
        }
    }

    /// Checks every rule, normalising values on the way (domains to lower case,
    /// CA aliases to URLs, relative paths against the config's directory).
    pub fn validate(&mut self, base: Option<&Path>) -> Vec<Problem> {
        let mut p = Problems::default();
        self.gcp.validate(&mut p);
        let has_certificates = !self.certificates.is_empty();
        self.acme.validate(base, has_certificates, &mut p);
        self.dns.validate(&mut p);
        self.state.validate(base, &mut p);
        self.daemon.validate(&mut p);
        if let Some(stack) = &mut self.stack {
            stack::share_certificate_map(stack, &mut self.certificates, &mut p);
        }
        validate::validate_certificates(&mut self.certificates, &mut p);

        // [stack]
        if let Some(stack) = &mut self.stack {
            stack.validate(base, &mut p);
        }

        p.0
    }

    /// The certificate with this name.
    pub fn certificate(&self, name: &str) -> Option<&CertificateConfig> {
        self.certificates.iter().find(|c| c.name == name)
    }
}

/// Collects problems.
#[derive(Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let located = |span: Option<std::ops::Range<usize>>| {
        let offset = span.map(|s| s.start).unwrap_or(0).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (line, column)
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let (line, column) = located(e.span());
        ConfigError::Parse {
            file: file.to_string(),
            line,
            column,
            path: String::new(),
            message: format!("not valid TOML: {}", e.message().trim()),
        }
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = located(inner.span());
        ConfigError::Parse {
            file: file.to_string(),
            line,
            column,
            path: if path == "." || path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            },
            message: inner.message().trim().to_string(),
        }
    })
}

/// A relative path in the file is relative to the file's directory.
fn resolve(base: Option<&Path>, f: &mut PathBuf) {
    if f.is_relative()
        && let Some(b) = base
    {
        *f = b.join(&*f);
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

/// GCP project ids: 6 to 30 characters, lowercase letters, digits, hyphens, starting
/// with a letter, not ending with a hyphen.
pub fn is_project_id(s: &str) -> bool {
    (6..=30).contains(&s.len()) && is_gcp_name(s, 30)
}

#[cfg(test)]
mod tests;
