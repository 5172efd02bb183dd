//! What the configured proxies serve now, read from GCP every time (GCP is the
//! source of truth, not our state directory).

use std::collections::HashMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::acme::store::normalize_names;
use crate::certs::{self, LeafInfo};
use crate::config::CertificateConfig;
use crate::gcp::Gcp;
use crate::gcp::compute::{SslCertificate, name_of};
use crate::lb::{LbError, naming};

/// One entry of a proxy's certificate list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServedCertificate {
    /// Resource name.
    pub name: String,
    /// The reference as the proxy holds it.
    pub url: String,
    /// False when the proxy references a certificate that cannot be read.
    pub exists: bool,
    /// Created by us for this certificate config ([`naming::is_ours`]).
    pub ours: bool,
    pub description: Option<String>,
    /// `expireTime` as Compute reports it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_time: Option<OffsetDateTime>,
    /// `subjectAlternativeNames`, lower case.
    pub sans: Vec<String>,
    /// The leaf parsed from the served PEM (key type, serial, validity).
    pub leaf: Option<LeafInfo>,
}

impl ServedCertificate {
    /// Whether its SANs include every configured name (wildcards compared as
    /// strings: `*.example.com` is covered only by `*.example.com`).
    pub fn covers(&self, names: &[String]) -> bool {
        self.exists && names.iter().all(|n| self.sans.iter().any(|s| s == n))
    }
}

/// A target HTTPS proxy and what it serves, in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyObservation {
    pub name: String,
    pub self_link: String,
    pub certificates: Vec<ServedCertificate>,
    /// A Certificate Manager map, which would override the list.
    pub certificate_map: Option<String>,
}

impl ProxyObservation {
    /// The served certificates that cover `names`, ours first, then by latest expiry.
    pub fn current(&self, names: &[String]) -> Vec<&ServedCertificate> {
        let mut v: Vec<&ServedCertificate> = self
            .certificates
            .iter()
            .filter(|c| c.covers(names))
            .collect();
        v.sort_by_key(|c| (!c.ours, std::cmp::Reverse(c.expire_time)));
        v
    }
}

/// Everything observed for one configured certificate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Observation {
    /// `[[certificates]].name`.
    pub certificate: String,
    /// The configured names, normalised.
    pub names: Vec<String>,
    /// One per configured proxy, in configuration order.
    pub proxies: Vec<ProxyObservation>,
}

/// Reads every proxy `cert` names and each certificate they serve (each
/// certificate once, however many proxies serve it).
pub async fn observe(gcp: &Gcp, cert: &CertificateConfig) -> Result<Observation, LbError> {
    let mut seen: HashMap<String, ServedCertificate> = HashMap::new();
    let mut proxies = Vec::with_capacity(cert.target_https_proxies.len());
    for proxy_name in &cert.target_https_proxies {
        let proxy = match gcp.get_target_https_proxy(proxy_name).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => {
                return Err(LbError::ProxyNotFound {
                    proxy: proxy_name.clone(),
                    certificate: cert.name.clone(),
                    project: gcp.project.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let mut served = Vec::with_capacity(proxy.ssl_certificates.len());
        for url in &proxy.ssl_certificates {
            let name = name_of(url).to_string();
            if let Some(s) = seen.get(&name) {
                served.push(ServedCertificate {
                    url: url.clone(),
                    ..s.clone()
                });
                continue;
            }
            let s = match gcp.get_ssl_certificate(&name).await? {
                Some(c) => served_from(&cert.name, url, c),
                None => ServedCertificate {
                    name: name.clone(),
                    url: url.clone(),
                    exists: false,
                    ours: false,
                    description: None,
                    expire_time: None,
                    sans: Vec::new(),
                    leaf: None,
                },
            };
            seen.insert(name, s.clone());
            served.push(s);
        }
        proxies.push(ProxyObservation {
            name: proxy.name.clone(),
            self_link: proxy.self_link.clone(),
            certificates: served,
            certificate_map: proxy.certificate_map.clone().filter(|m| !m.is_empty()),
        });
    }
    Ok(Observation {
        certificate: cert.name.clone(),
        names: normalize_names(&cert.domains),
        proxies,
    })
}

/// What we know of a certificate resource, parsing its served PEM for the leaf.
pub(crate) fn served_from(cert_name: &str, url: &str, c: SslCertificate) -> ServedCertificate {
    let leaf = c
        .certificate
        .as_deref()
        .and_then(|pem| certs::split_chain(pem).ok())
        .and_then(|ders| ders.first().and_then(|d| certs::leaf_info(d).ok()));
    let expire_time = c
        .expire_time
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .or_else(|| leaf.as_ref().map(|l| l.not_after));
    let mut sans: Vec<String> = c
        .subject_alternative_names
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if sans.is_empty()
        && let Some(l) = &leaf
    {
        sans = l.dns_names.clone();
    }
    ServedCertificate {
        ours: naming::is_ours(cert_name, &c.name, c.description.as_deref()),
        name: c.name,
        url: url.to_string(),
        exists: true,
        description: c.description,
        expire_time,
        sans,
        leaf,
    }
}

impl ServedCertificate {
    /// What the takeover rules need of it (`lb::takeover`).
    pub fn listed(&self) -> crate::lb::takeover::Listed {
        crate::lb::takeover::Listed {
            name: self.name.clone(),
            exists: self.exists,
            ours: self.ours,
            marked: self
                .description
                .as_deref()
                .and_then(naming::parse_description)
                .is_some(),
            sans: self.sans.clone(),
        }
    }
}

impl ProxyObservation {
    /// What installing `new_name` would do to this proxy's list.
    pub fn takeover(&self, names: &[String], new_name: &str) -> crate::lb::takeover::ProxyTakeover {
        let listed: Vec<_> = self
            .certificates
            .iter()
            .map(ServedCertificate::listed)
            .collect();
        crate::lb::takeover::plan_proxy(&self.name, names, new_name, &listed)
    }
}
