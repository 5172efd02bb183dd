//! After a swap: a TLS handshake to each forwarding rule's IP with SNI for every
//! name, until the load balancer serves the new serial or a timeout passes.
//! Verification is never disabled: the served chain must verify against the
//! system roots plus the configured CA roots. It reports; it never blocks
//! cleanup for ever.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::certs;
use crate::gcp::compute::name_of;
use crate::gcp::{Api, Call, Gcp, GcpError};

/// Tuning of the post-swap check.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Give up (and report) after this long.
    pub timeout: Duration,
    /// Wait between two handshakes to the same name.
    pub interval: Duration,
    /// Extra trusted roots (PEM files), added to the system's.
    pub extra_roots: Vec<PathBuf>,
    /// Port of the HTTPS forwarding rules.
    pub port: u16,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            // Google Front Ends can take minutes to pick up a new certificate.
            timeout: Duration::from_secs(300),
            interval: Duration::from_secs(10),
            extra_roots: Vec::new(),
            port: 443,
        }
    }
}

/// The result of verifying one proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum VerifyOutcome {
    /// Every name served the new serial.
    Verified { proxy: String, ip: String },
    /// Nothing to connect to (no forwarding rule with an IP targets the proxy).
    Skipped { proxy: String, reason: String },
    /// The timeout passed before every name served the new serial.
    Stale {
        proxy: String,
        ip: String,
        name: String,
        /// The serial last served, when a handshake completed.
        served_serial: Option<String>,
        /// The last handshake error, when none completed.
        error: Option<String>,
    },
}

impl VerifyOutcome {
    /// False only for [`VerifyOutcome::Stale`].
    pub fn is_ok(&self) -> bool {
        !matches!(self, VerifyOutcome::Stale { .. })
    }
}

/// Canonical serial: lower-case hex, no separators, no leading zeros.
pub(crate) fn normalize_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let t = hex.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

/// Whether the leaf `served_der` has the serial `expected` (hex, any format).
pub(crate) fn serves_serial(served_der: &[u8], expected: &str) -> bool {
    certs::leaf_info(served_der)
        .is_ok_and(|l| normalize_serial(&l.serial_hex) == normalize_serial(expected))
}

/// The SNI host to try for a configured name: a wildcard is tried with a label
/// of our own under it.
pub(crate) fn sni_host(name: &str) -> String {
    match name.strip_prefix("*.") {
        Some(rest) => format!("gclb-acme-verify.{rest}"),
        None => name.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ForwardingRule {
    #[serde(default, rename = "IPAddress")]
    ip_address: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleList {
    #[serde(default)]
    items: Vec<ForwardingRule>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// Global forwarding rules: `(target name, IP)` for those with an IP.
async fn forwarding_rule_ips(gcp: &Gcp) -> Result<Vec<(String, IpAddr)>, GcpError> {
    let base = gcp.url(
        Api::Compute,
        &format!("projects/{}/global/forwardingRules", gcp.project),
    );
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            Some(t) => format!("{base}?maxResults=500&pageToken={t}"),
            None => format!("{base}?maxResults=500"),
        };
        let page: RuleList = gcp
            .call::<(), _>(
                Call::new(Api::Compute, "globalForwardingRules.list"),
                Method::GET,
                &url,
                None,
            )
            .await?;
        for r in page.items {
            if let (Some(t), Some(ip)) = (r.target, r.ip_address)
                && let Ok(ip) = ip.parse::<IpAddr>()
            {
                out.push((name_of(&t).to_string(), ip));
            }
        }
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// Verifies every `(proxy, self link)` in turn.
pub(crate) async fn verify_proxies(
    gcp: &Gcp,
    proxies: &[(String, String)],
    names: &[String],
    serial: &str,
    opts: &VerifyOptions,
) -> Vec<VerifyOutcome> {
    let rules = match forwarding_rule_ips(gcp).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list forwarding rules: verification skipped");
            return proxies
                .iter()
                .map(|(p, _)| VerifyOutcome::Skipped {
                    proxy: p.clone(),
                    reason: format!("cannot list forwarding rules: {e}"),
                })
                .collect();
        }
    };
    // Every proxy at once: each check can wait minutes for Google's front ends.
    futures_util::future::join_all(proxies.iter().map(|(proxy, _)| {
        let ip = rules.iter().find(|(t, _)| t == proxy).map(|(_, ip)| *ip);
        async move {
            let Some(ip) = ip else {
                tracing::info!(
                    proxy,
                    "verification skipped: no forwarding rule with an IP address targets this proxy"
                );
                return VerifyOutcome::Skipped {
                    proxy: proxy.clone(),
                    reason: "no forwarding rule with an IP address targets this proxy".into(),
                };
            };
            verify_ip(proxy, SocketAddr::new(ip, opts.port), names, serial, opts).await
        }
    }))
    .await
}

/// Handshakes with `addr` for each name until each serves `serial`.
pub(crate) async fn verify_ip(
    proxy: &str,
    addr: SocketAddr,
    names: &[String],
    serial: &str,
    opts: &VerifyOptions,
) -> VerifyOutcome {
    let deadline = Instant::now() + opts.timeout;
    let step = crate::progress::Step::start(format!(
        "checking that proxy {proxy} ({addr}) serves the new certificate"
    ));
    for name in names {
        let host = sni_host(name);
        step.set(format!(
            "checking that proxy {proxy} ({addr}) serves the new certificate for {name}"
        ));
        let mut served_serial = None;
        let mut error: Option<String>;
        loop {
            match served_leaf(&host, addr, &opts.extra_roots).await {
                Ok(der) if serves_serial(&der, serial) => break,
                Ok(der) => {
                    served_serial = certs::leaf_info(&der).ok().map(|l| l.serial_hex);
                    error = None;
                }
                Err(e) => error = Some(e.to_string()),
            }
            if Instant::now() + opts.interval > deadline {
                tracing::warn!(proxy, %addr, name, ?served_serial, ?error, "the load balancer does not serve the new certificate yet");
                return VerifyOutcome::Stale {
                    proxy: proxy.to_string(),
                    ip: addr.ip().to_string(),
                    name: name.clone(),
                    served_serial,
                    error,
                };
            }
            tokio::time::sleep(opts.interval).await;
        }
    }
    tracing::info!(proxy, %addr, "the load balancer serves the new certificate for every name");
    VerifyOutcome::Verified {
        proxy: proxy.to_string(),
        ip: addr.ip().to_string(),
    }
}

/// Why the served leaf could not be read. The caller reports it as text in
/// [`VerifyOutcome::Stale`]; the chain of causes is kept in the message.
#[derive(Debug, thiserror::Error)]
enum LeafError {
    #[error("{}: {source}", path.display())]
    ReadRoots {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    ParseRoots { path: PathBuf, message: String },
    #[error("{0}")]
    Trust(#[from] crate::trust::TrustError),
    #[error("{0}")]
    Client(reqwest::Error),
    /// The request failed; the text is the error and each of its causes.
    #[error("{0}")]
    Request(String),
    #[error("no peer certificate in the TLS session")]
    NoPeerCertificate,
}

/// The leaf served to SNI `host` at `addr`, after full verification.
async fn served_leaf(
    host: &str,
    addr: SocketAddr,
    extra_roots: &[PathBuf],
) -> Result<Vec<u8>, LeafError> {
    let mut roots = Vec::new();
    for path in extra_roots {
        let pem = std::fs::read(path).map_err(|source| LeafError::ReadRoots {
            path: path.clone(),
            source,
        })?;
        roots.extend(crate::trust::pem_certificates(&pem).map_err(|message| {
            LeafError::ParseRoots {
                path: path.clone(),
                message,
            }
        })?);
    }
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(crate::trust::client_config(&roots)?)
        .resolve(host, addr)
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(LeafError::Client)?;
    let url = format!("https://{host}:{}/", addr.port());
    let resp = client.head(&url).send().await.map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        LeafError::Request(s)
    })?;
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .map(<[u8]>::to_vec)
        .ok_or(LeafError::NoPeerCertificate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_any_hex_format() {
        assert_eq!(normalize_serial("00:AB:cd"), "abcd");
        assert_eq!(normalize_serial("0abcd"), "abcd");
        assert_eq!(normalize_serial("000"), "0");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x12, 0xab]));
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert!(serves_serial(&der, "12AB"));
        assert!(serves_serial(&der, "00:12:ab"));
        assert!(!serves_serial(&der, "12ac"));
        assert!(!serves_serial(b"garbage", "12ab"));
    }

    #[test]
    fn wildcards_get_a_concrete_sni_name() {
        assert_eq!(sni_host("*.example.com"), "gclb-acme-verify.example.com");
        assert_eq!(sni_host("example.com"), "example.com");
    }

    #[tokio::test]
    async fn an_unreachable_address_is_reported_stale_within_the_timeout() {
        let opts = VerifyOptions {
            timeout: Duration::from_millis(200),
            interval: Duration::from_millis(50),
            extra_roots: Vec::new(),
            port: 1,
        };
        let started = Instant::now();
        let out = verify_ip(
            "p",
            "127.0.0.1:1".parse().unwrap(),
            &["a.test".to_string()],
            "12ab",
            &opts,
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        match out {
            VerifyOutcome::Stale { error, .. } => assert!(error.is_some()),
            other => panic!("{other:?}"),
        }
    }
}
