//! Compute's state: the collections served, each project's resources, and the
//! identities (`Res`, `Ctx`, `Target`) that mutations pass around.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use super::*;

/// The resource collections the emulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coll {
    /// `global/sslCertificates`
    SslCertificates,
    /// `global/targetHttpsProxies`
    TargetHttpsProxies,
    /// `global/targetHttpProxies`
    TargetHttpProxies,
    /// `global/urlMaps`
    UrlMaps,
    /// `global/backendServices`
    BackendServices,
    /// `global/addresses`
    Addresses,
    /// `global/forwardingRules`
    ForwardingRules,
    /// `regions/R/networkEndpointGroups`
    NetworkEndpointGroups,
}

impl Coll {
    const ALL: [Coll; 8] = [
        Coll::SslCertificates,
        Coll::TargetHttpsProxies,
        Coll::TargetHttpProxies,
        Coll::UrlMaps,
        Coll::BackendServices,
        Coll::Addresses,
        Coll::ForwardingRules,
        Coll::NetworkEndpointGroups,
    ];

    /// The path segment.
    pub fn path(self) -> &'static str {
        match self {
            Coll::SslCertificates => "sslCertificates",
            Coll::TargetHttpsProxies => "targetHttpsProxies",
            Coll::TargetHttpProxies => "targetHttpProxies",
            Coll::UrlMaps => "urlMaps",
            Coll::BackendServices => "backendServices",
            Coll::Addresses => "addresses",
            Coll::ForwardingRules => "forwardingRules",
            Coll::NetworkEndpointGroups => "networkEndpointGroups",
        }
    }

    pub(super) fn from_path(s: &str) -> Option<Coll> {
        Coll::ALL.into_iter().find(|c| c.path() == s)
    }

    pub(super) fn kind(self) -> &'static str {
        match self {
            Coll::SslCertificates => "compute#sslCertificate",
            Coll::TargetHttpsProxies => "compute#targetHttpsProxy",
            Coll::TargetHttpProxies => "compute#targetHttpProxy",
            Coll::UrlMaps => "compute#urlMap",
            Coll::BackendServices => "compute#backendService",
            Coll::Addresses => "compute#address",
            Coll::ForwardingRules => "compute#forwardingRule",
            Coll::NetworkEndpointGroups => "compute#networkEndpointGroup",
        }
    }

    /// The resource type as Compute names it in `resourceInUseByAnotherResource`.
    pub(super) fn noun(self) -> &'static str {
        match self {
            Coll::SslCertificates => "ssl_certificate",
            Coll::TargetHttpsProxies => "target_https_proxy",
            Coll::TargetHttpProxies => "target_http_proxy",
            Coll::UrlMaps => "url_map",
            Coll::BackendServices => "backend_service",
            Coll::Addresses => "address",
            Coll::ForwardingRules => "forwarding_rule",
            Coll::NetworkEndpointGroups => "network_endpoint_group",
        }
    }

    pub(super) fn regional(self) -> bool {
        self == Coll::NetworkEndpointGroups
    }

    /// The project quota metric an insert counts against.
    pub(super) fn quota(self) -> Option<&'static str> {
        match self {
            Coll::SslCertificates => Some("SSL_CERTIFICATES"),
            Coll::TargetHttpsProxies => Some("TARGET_HTTPS_PROXIES"),
            Coll::TargetHttpProxies => Some("TARGET_HTTP_PROXIES"),
            Coll::UrlMaps => Some("URL_MAPS"),
            Coll::BackendServices => Some("BACKEND_SERVICES"),
            Coll::Addresses => Some("STATIC_ADDRESSES"),
            Coll::ForwardingRules => Some("FORWARDING_RULES"),
            Coll::NetworkEndpointGroups => None,
        }
    }

    pub(super) fn has_fingerprint(self) -> bool {
        matches!(
            self,
            Coll::TargetHttpsProxies
                | Coll::TargetHttpProxies
                | Coll::UrlMaps
                | Coll::BackendServices
                | Coll::ForwardingRules
        )
    }
}

/// The quota metrics `projects.get` reports.
pub const QUOTA_METRICS: [&str; 7] = [
    "SSL_CERTIFICATES",
    "TARGET_HTTPS_PROXIES",
    "TARGET_HTTP_PROXIES",
    "URL_MAPS",
    "BACKEND_SERVICES",
    "STATIC_ADDRESSES",
    "FORWARDING_RULES",
];

/// The default limit of a quota metric.
pub fn default_quota_limit(metric: &str) -> f64 {
    match metric {
        "SSL_CERTIFICATES" => 30.0,
        _ => 50.0,
    }
}

/// Per-project Compute state.
#[derive(Default, Clone)]
pub struct State {
    /// `"global/sslCertificates"` or `"regions/R/networkEndpointGroups"` -> name ->
    /// the resource as stored (keys starting with `__` are private).
    pub resources: BTreeMap<String, BTreeMap<String, Value>>,
    /// Operations by name.
    pub operations: BTreeMap<String, Operation>,
    /// `requestId` -> operation name, so retried mutations return the original.
    pub request_ids: HashMap<String, String>,
    /// Quota limits that differ from [`default_quota_limit`].
    pub quota_limits: BTreeMap<String, f64>,
}

impl State {
    /// The limit of a quota metric.
    pub fn quota_limit(&self, metric: &str) -> f64 {
        self.quota_limits
            .get(metric)
            .copied()
            .unwrap_or_else(|| default_quota_limit(metric))
    }

    /// How many resources a quota metric counts.
    pub fn quota_usage(&self, metric: &str) -> usize {
        Coll::ALL
            .into_iter()
            .filter(|c| c.quota() == Some(metric))
            .map(|c| self.count(c))
            .sum()
    }

    pub(super) fn count(&self, coll: Coll) -> usize {
        self.resources
            .iter()
            .filter(|(k, _)| k.rsplit('/').next() == Some(coll.path()))
            .map(|(_, m)| m.len())
            .sum()
    }

    pub(super) fn get(&self, r: &Res) -> Option<&Value> {
        self.resources.get(&r.key()).and_then(|m| m.get(&r.name))
    }

    pub(super) fn put(&mut self, r: &Res, v: Value) {
        self.resources
            .entry(r.key())
            .or_default()
            .insert(r.name.clone(), v);
    }

    pub(super) fn remove(&mut self, r: &Res) {
        if let Some(m) = self.resources.get_mut(&r.key()) {
            m.remove(&r.name);
        }
    }

    /// Every stored resource with its collection.
    pub(super) fn all(&self) -> impl Iterator<Item = (Coll, &Value)> {
        self.resources.iter().flat_map(|(k, m)| {
            let coll = k.rsplit('/').next().and_then(Coll::from_path);
            m.values().filter_map(move |v| coll.map(|c| (c, v)))
        })
    }

    /// The selfLinks of the resources that reference `link`, sorted.
    pub(super) fn users_of(&self, link: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .all()
            .filter(|(c, v)| refs_of(*c, v).iter().any(|r| r == link))
            .filter_map(|(_, v)| v["selfLink"].as_str().map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The references a stored resource holds (canonical selfLinks).
pub(super) fn refs_of(coll: Coll, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |x: &Value| {
        if let Some(s) = x.as_str() {
            out.push(s.to_string());
        }
    };
    let arr = |x: &Value| x.as_array().cloned().unwrap_or_default();
    match coll {
        Coll::TargetHttpsProxies => {
            push(&v["urlMap"]);
            for c in arr(&v["sslCertificates"]) {
                push(&c);
            }
        }
        Coll::TargetHttpProxies => push(&v["urlMap"]),
        Coll::UrlMaps => {
            push(&v["defaultService"]);
            for pm in arr(&v["pathMatchers"]) {
                push(&pm["defaultService"]);
                for pr in arr(&pm["pathRules"]) {
                    push(&pr["service"]);
                }
                for rr in arr(&pm["routeRules"]) {
                    push(&rr["service"]);
                }
            }
        }
        Coll::BackendServices => {
            for b in arr(&v["backends"]) {
                push(&b["group"]);
            }
        }
        Coll::ForwardingRules => {
            push(&v["target"]);
            push(&v["__address"]);
        }
        Coll::SslCertificates | Coll::Addresses | Coll::NetworkEndpointGroups => {}
    }
    out
}

/// A resource's identity.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Res {
    pub(super) project: String,
    /// `global` or `regions/R`.
    pub(super) scope: String,
    pub(super) coll: Coll,
    pub(super) name: String,
}

impl Res {
    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.scope, self.coll.path())
    }

    /// `projects/P/global/sslCertificates/N`, as Compute's messages name it.
    pub(super) fn path(&self) -> String {
        format!(
            "projects/{}/{}/{}/{}",
            self.project,
            self.scope,
            self.coll.path(),
            self.name
        )
    }

    pub(super) fn link(&self) -> String {
        format!("{LINK_ROOT}{}", self.path())
    }
}

/// `https://www.googleapis.com/compute/v1/projects/P/...` -> `projects/P/...`.
pub(super) fn path_of(link: &str) -> &str {
    link.strip_prefix(LINK_ROOT).unwrap_or(link)
}

/// What a mutation needs to know about its request.
pub(super) struct Ctx {
    pub(super) project: String,
    pub(super) number: u64,
    pub(super) now: SystemTime,
    pub(super) new_id: u64,
    pub(super) region: Option<String>,
    /// `host[:port]` the request was addressed to: Google accepts references on
    /// its own hosts, and gcloud writes them on the endpoint it was pointed at.
    pub(super) host: Option<String>,
    /// Ids of the project's Certificate Manager maps (`certificateMap` checks).
    pub(super) cert_maps: std::collections::BTreeSet<String>,
}

impl Ctx {
    pub(super) fn scope(&self) -> String {
        match &self.region {
            Some(r) => format!("regions/{r}"),
            None => "global".to_string(),
        }
    }

    pub(super) fn res(&self, coll: Coll, name: &str) -> Res {
        Res {
            project: self.project.clone(),
            scope: self.scope(),
            coll,
            name: name.to_string(),
        }
    }
}

/// The resource an operation acts on.
pub(super) struct Target {
    pub(super) link: String,
    pub(super) id: u64,
}
