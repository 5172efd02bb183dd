//! What to do, decided from the desired and the observed stack. Pure: no I/O.

use std::fmt;

use serde_json::{Map, Value};

use crate::gcp::dns::ResourceRecordSet;
use crate::gcp::run::INGRESS_INTERNAL_LOAD_BALANCER;
use crate::gcp::stack_resources::{
    Address, Backend, BackendIap, BackendService, CloudRunTarget, Collection, ForwardingRule,
    NetworkEndpointGroup, TargetHttpProxy, UrlMap, UrlRedirect,
};

use super::observe::ObservedStack;
use super::{Desired, StackError};

/// What a deletion removes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A global resource.
    Global(Collection),
    /// The regional serverless NEG.
    Neg { region: String },
}

impl Target {
    fn noun(&self) -> &'static str {
        match self {
            Target::Global(c) => noun(*c),
            Target::Neg { .. } => "network endpoint group",
        }
    }
}

fn noun(c: Collection) -> &'static str {
    match c {
        Collection::BackendServices => "backend service",
        Collection::UrlMaps => "URL map",
        Collection::Addresses => "global address",
        Collection::ForwardingRules => "forwarding rule",
        Collection::TargetHttpsProxies => "target HTTPS proxy",
        Collection::TargetHttpProxies => "target HTTP proxy",
        Collection::SslCertificates => "SSL certificate",
    }
}

/// One step. `Display` is what the user reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Restrict the Cloud Run service to internal + load balancer traffic.
    SetRunIngress {
        from: Option<String>,
        /// The service's labels with [`INGRESS_LABEL`] recording `from`, written
        /// in the same update; `None` when a value is recorded already (the
        /// first one is what teardown restores).
        labels: Option<Map<String, Value>>,
    },
    /// Teardown: put back the ingress bootstrap recorded, and drop the record.
    RestoreRunIngress {
        to: String,
        /// The service's labels without [`INGRESS_LABEL`].
        labels: Map<String, Value>,
    },
    /// Create IAP's service agent (Service Usage `generateServiceIdentity`).
    CreateIapAgent,
    /// Grant `roles/run.invoker` on the service to the IAP agent.
    GrantRunInvoker {
        member: String,
    },
    CreateNeg(NetworkEndpointGroup),
    CreateBackend(BackendService),
    /// Merge-patch the backend service (with the fingerprint read).
    PatchBackend {
        name: String,
        fingerprint: String,
        backends: Option<Vec<Backend>>,
        protocol: Option<String>,
        iap: Option<BackendIap>,
        why: Vec<String>,
    },
    CreateUrlMap(UrlMap),
    /// Merge-patch a URL map (with the fingerprint read).
    PatchUrlMap {
        name: String,
        fingerprint: String,
        default_service: Option<String>,
        redirect: Option<UrlRedirect>,
        why: String,
    },
    CreateAddress(Address),
    /// Point `fqdn` at the load balancer, replacing `replace` exactly.
    SetDnsA {
        zone: String,
        fqdn: String,
        /// `None`: the address created by an earlier step.
        ip: Option<String>,
        replace: Option<ResourceRecordSet>,
    },
    /// Ask the certificate source for the first certificate.
    EnsureCertificate {
        names: Vec<String>,
    },
    CreateHttpsProxy {
        name: String,
        description: String,
        url_map: String,
        /// `None`: the certificate of the previous step.
        certificate: Option<String>,
        /// Created with this certificate map (its full reference) instead of
        /// a certificate.
        certificate_map: Option<String>,
    },
    /// Create the certificate map of `stack.certificate_map`, labelled ours.
    CreateCertificateMap {
        id: String,
        description: String,
        labels: std::collections::BTreeMap<String, String>,
    },
    /// Ask the certificate source to make the map serve a valid certificate
    /// for every name (issued and installed through the map target).
    EnsureMapCertificate {
        map: String,
        names: Vec<String>,
        /// Why: what the map serves now.
        why: String,
    },
    /// `setCertificateMap` on the HTTPS proxy (`map`: the full reference; the
    /// map serves every name already: an earlier step made sure).
    SetCertificateMap {
        proxy: String,
        map: String,
    },
    /// Teardown: delete our entry of a certificate map.
    DeleteMapEntry {
        map: String,
        entry: String,
    },
    /// Teardown: delete our certificate map (its entries are gone).
    DeleteCertificateMap {
        id: String,
    },
    /// Teardown: delete our Certificate Manager certificate (no entry uses it).
    DeleteCmCertificate {
        id: String,
    },
    CreateHttpProxy(TargetHttpProxy),
    /// `setUrlMap` on a target proxy.
    SetProxyUrlMap {
        proxy: Collection,
        name: String,
        url_map: String,
    },
    CreateForwardingRule(ForwardingRule),
    /// Add members to `roles/iap.httpsResourceAccessor` on the backend service.
    GrantIapAccess {
        backend: String,
        members: Vec<String>,
    },
    /// Teardown: remove these members from the IAP policy.
    RevokeIapAccess {
        backend: String,
        members: Vec<String>,
    },
    /// Teardown: delete a resource of ours (404 counts as done).
    Delete {
        what: Target,
        name: String,
    },
    /// Teardown: delete our A record (exactly as read).
    DeleteDnsA {
        zone: String,
        record: ResourceRecordSet,
    },
    /// Teardown: remove the IAP agent's `roles/run.invoker` binding.
    RevokeRunInvoker {
        member: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::SetRunIngress { from, labels } => write!(
                f,
                "set Cloud Run ingress to {INGRESS_INTERNAL_LOAD_BALANCER} (was {}{})",
                from.as_deref().unwrap_or("unset"),
                if labels.is_some() {
                    "; recorded in label gclb-acme-ingress-before for teardown"
                } else {
                    ""
                }
            ),
            Action::RestoreRunIngress { to, .. } => {
                write!(f, "restore Cloud Run ingress to {to} (as before bootstrap)")
            }
            Action::CreateIapAgent => write!(f, "create the IAP service agent"),
            Action::GrantRunInvoker { member } => {
                write!(
                    f,
                    "grant roles/run.invoker on the Cloud Run service to {member}"
                )
            }
            Action::CreateNeg(n) => write!(
                f,
                "create network endpoint group {} (serverless, Cloud Run service {})",
                n.name,
                n.cloud_run
                    .as_ref()
                    .and_then(|c| c.service.as_deref())
                    .unwrap_or("?")
            ),
            Action::CreateBackend(b) => write!(f, "create backend service {}", b.name),
            Action::PatchBackend { name, why, .. } => {
                write!(f, "fix backend service {name}: {}", why.join("; "))
            }
            Action::CreateUrlMap(m) => write!(f, "create URL map {}", m.name),
            Action::PatchUrlMap { name, why, .. } => write!(f, "fix URL map {name}: {why}"),
            Action::CreateAddress(a) => write!(f, "create global address {}", a.name),
            Action::SetDnsA {
                zone,
                fqdn,
                ip,
                replace,
            } => {
                let ip = ip.as_deref().unwrap_or("the new address");
                match replace {
                    Some(r) => write!(
                        f,
                        "replace DNS record {fqdn} A {} with A {ip} (zone {zone})",
                        r.rrdatas.join(",")
                    ),
                    None => write!(f, "create DNS record {fqdn} A {ip} (zone {zone})"),
                }
            }
            Action::EnsureCertificate { names } => {
                write!(f, "get the first certificate for {}", names.join(", "))
            }
            Action::CreateHttpsProxy {
                name,
                certificate_map,
                ..
            } => match certificate_map.as_deref() {
                Some(m) => write!(
                    f,
                    "create target HTTPS proxy {name} serving certificate map {}",
                    super::certmap::map_id_of(m).unwrap_or(m)
                ),
                None => write!(f, "create target HTTPS proxy {name}"),
            },
            Action::CreateCertificateMap { id, .. } => {
                write!(f, "create certificate map {id} (Certificate Manager)")
            }
            Action::EnsureMapCertificate { map, names, why } => write!(
                f,
                "install the certificate for {} into certificate map {map} ({why})",
                names.join(", ")
            ),
            Action::SetCertificateMap { proxy, map } => write!(
                f,
                "attach certificate map {} to target HTTPS proxy {proxy} (its sslCertificates are then ignored, and kept)",
                super::certmap::map_id_of(map).unwrap_or(map)
            ),
            Action::DeleteMapEntry { map, entry } => {
                write!(f, "delete entry {entry} of certificate map {map}")
            }
            Action::DeleteCertificateMap { id } => write!(f, "delete certificate map {id}"),
            Action::DeleteCmCertificate { id } => {
                write!(f, "delete certificate {id} (Certificate Manager)")
            }
            Action::CreateHttpProxy(p) => write!(f, "create target HTTP proxy {}", p.name),
            Action::SetProxyUrlMap {
                proxy,
                name,
                url_map,
            } => write!(
                f,
                "point {} {name} at URL map {}",
                noun(*proxy),
                last(url_map)
            ),
            Action::CreateForwardingRule(r) => write!(
                f,
                "create forwarding rule {} (port {})",
                r.name,
                r.port_range.as_deref().unwrap_or("?")
            ),
            Action::GrantIapAccess { members, .. } => {
                write!(f, "grant IAP access to {}", members.join(", "))
            }
            Action::RevokeIapAccess { members, .. } => {
                write!(f, "revoke IAP access of {}", members.join(", "))
            }
            Action::Delete { what, name } => write!(f, "delete {} {name}", what.noun()),
            Action::DeleteDnsA { zone, record } => write!(
                f,
                "delete DNS record {} A {} (zone {zone})",
                record.name,
                record.rrdatas.join(",")
            ),
            Action::RevokeRunInvoker { member } => write!(
                f,
                "revoke roles/run.invoker on the Cloud Run service from {member}"
            ),
        }
    }
}

/// The Cloud Run label in which bootstrap records the ingress it replaced, so
/// teardown can put it back (label values: lower case; `unset` for none).
pub const INGRESS_LABEL: &str = "gclb-acme-ingress-before";

fn ingress_label_value(ingress: Option<&str>) -> String {
    ingress.unwrap_or("unset").to_ascii_lowercase()
}

/// The ingress a recorded label value stands for; `None` for a value that is
/// not one of Cloud Run's (edited by hand).
fn ingress_from_label(v: &str) -> Option<String> {
    const KNOWN: [&str; 4] = [
        "INGRESS_TRAFFIC_ALL",
        "INGRESS_TRAFFIC_INTERNAL_ONLY",
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        "INGRESS_TRAFFIC_NONE",
    ];
    let up = v.to_ascii_uppercase();
    match up.as_str() {
        // Unset means Cloud Run's default.
        "UNSET" | "INGRESS_TRAFFIC_UNSPECIFIED" => Some("INGRESS_TRAFFIC_ALL".into()),
        u if KNOWN.contains(&u) => Some(up),
        _ => None,
    }
}

/// Names that make two resources of the stack one: refused (the second create
/// would find the first and bootstrap would wire the stack to the wrong thing).
/// The same name in two collections is legal but easy to misread in `gcloud`
/// and in logs: a note.
pub(crate) fn name_collisions(d: &Desired) -> (Vec<String>, Vec<String>) {
    let n = &d.names;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let named: [(&str, &str, &str); 9] = [
        ("neg", "regionNetworkEndpointGroups", &n.neg),
        ("backend", "backendServices", &n.backend),
        ("url_map", "urlMaps", &n.url_map),
        ("http_url_map", "urlMaps", &n.http_url_map),
        ("ip", "addresses", &n.ip),
        ("https_proxy", "targetHttpsProxies", &n.https_proxy),
        ("http_proxy", "targetHttpProxies", &n.http_proxy),
        ("forwarding_rule", "forwardingRules", &n.forwarding_rule),
        (
            "http_forwarding_rule",
            "forwardingRules",
            &n.http_forwarding_rule,
        ),
    ];
    for (i, (ka, ca, na)) in named.iter().enumerate() {
        for (kb, cb, nb) in &named[i + 1..] {
            if na != nb {
                continue;
            }
            // The redirect half exists only with http_redirect.
            let redirect_only = |k: &str| k.starts_with("http_");
            if !d.http_redirect && (redirect_only(ka) || redirect_only(kb)) {
                continue;
            }
            if ca == cb {
                errors.push(format!(
                    "stack.names.{ka} and stack.names.{kb} are both \"{na}\", but they must be two different {ca}: give one another name"
                ));
            } else {
                warnings.push(format!(
                    "stack.names.{ka} and stack.names.{kb} are both \"{na}\" ({ca} and {cb}): legal, as they live in different collections, but easy to confuse; consider distinct names"
                ));
            }
        }
    }
    (errors, warnings)
}

/// The ordered actions plus what the user should know.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub notes: Vec<String>,
}

fn last(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// `443`, `443-443` -> 443.
fn port_of(range: Option<&str>) -> Option<u16> {
    range?.split('-').next()?.trim().parse().ok()
}

/// The `iap` block the backend service should have.
fn desired_iap(d: &Desired) -> BackendIap {
    BackendIap {
        enabled: d.iap.enabled,
        oauth2_client_id: d.iap.client_id.clone(),
        oauth2_client_secret: d.iap.client_secret.as_ref().map(|s| s.0.clone()),
        ..Default::default()
    }
}

/// What differs between the observed `iap` block and the desired one.
fn iap_drift(d: &Desired, seen: Option<&BackendIap>) -> Option<String> {
    let enabled = seen.is_some_and(|i| i.enabled);
    if enabled != d.iap.enabled {
        return Some(format!("IAP is {}", if enabled { "on" } else { "off" }));
    }
    if let Some(id) = &d.iap.client_id
        && seen.and_then(|i| i.oauth2_client_id.as_deref()) != Some(id.as_str())
    {
        return Some("IAP OAuth client id differs".into());
    }
    if let Some(s) = &d.iap.client_secret
        && seen.and_then(|i| i.oauth2_client_secret_sha256.as_deref()) != Some(s.sha256().as_str())
    {
        return Some("IAP OAuth client secret differs (SHA-256)".into());
    }
    None
}

/// The bootstrap plan: every missing resource created and every fixable drift
/// fixed, in dependency order. Unfixable drift is an error naming each resource.
pub(crate) fn plan(d: &Desired, o: &ObservedStack) -> Result<Plan, StackError> {
    let mut p = Plan::default();
    let (collide, confusing) = name_collisions(d);
    if !collide.is_empty() {
        return Err(StackError::Config(format!(
            "bootstrap refused before changing anything:\n{}",
            collide
                .iter()
                .map(|c| format!("  - {c}"))
                .collect::<Vec<_>>()
                .join("\n")
        )));
    }
    p.notes.extend(confusing);
    // Each section adds its actions and notes in this order, and its
    // unfixable drift to `bad`, reported together at the end.
    let mut bad: Vec<String> = Vec::new();
    run_service(d, o, &mut p)?;
    neg(d, o, &mut p, &mut bad);
    backend(d, o, &mut p, &mut bad);
    url_map(d, o, &mut p);
    address(d, o, &mut p, &mut bad);
    dns_records(d, o, &mut p, &mut bad);
    https_proxy(d, o, &mut p);
    let ip = o.ip();
    forwarding_rule(
        d,
        &mut p,
        &mut bad,
        o.forwarding_rule.as_ref(),
        &d.names.forwarding_rule,
        &d.link("targetHttpsProxies", &d.names.https_proxy),
        443,
        &d.link("addresses", &d.names.ip),
        ip.as_deref(),
    );
    if d.http_redirect {
        http_redirect(d, o, &mut p, &mut bad);
    }
    iap_members(d, o, &mut p);
    if !bad.is_empty() {
        return Err(StackError::Unfixable(bad));
    }
    Ok(p)
}

/// A note when an existing resource lacks our marker: bootstrap uses it, but
/// teardown will not delete it.
fn foreign(d: &Desired, p: &mut Plan, kind: &str, name: &str, desc: Option<&str>) {
    if !d.is_marked(desc) {
        p.notes.push(format!(
            "{kind} {name} exists and was not created by gclb-acme: bootstrap uses it, teardown will leave it alone"
        ));
    }
}

/// Cloud Run: must exist; ingress; IAP's agent may invoke it.
fn run_service(d: &Desired, o: &ObservedStack, p: &mut Plan) -> Result<(), StackError> {
    let Some(run) = &o.run else {
        return Err(StackError::RunServiceMissing {
            service: d.service.clone(),
            region: d.region.clone(),
            elsewhere: o.run_elsewhere.clone(),
        });
    };
    if run.ingress.as_deref() != Some(INGRESS_INTERNAL_LOAD_BALANCER) {
        let labels = run.label(INGRESS_LABEL).is_none().then(|| {
            let mut l = run.labels();
            l.insert(
                INGRESS_LABEL.into(),
                Value::String(ingress_label_value(run.ingress.as_deref())),
            );
            l
        });
        p.actions.push(Action::SetRunIngress {
            from: run.ingress.clone(),
            labels,
        });
    }
    if d.iap.enabled
        && !o.invoker_granted
        && let Some(agent) = &o.iap_agent
    {
        p.actions.push(Action::CreateIapAgent);
        p.actions.push(Action::GrantRunInvoker {
            member: agent.clone(),
        });
    }
    Ok(())
}

/// Serverless NEG.
fn neg(d: &Desired, o: &ObservedStack, p: &mut Plan, bad: &mut Vec<String>) {
    let Some(neg) = &o.neg else {
        p.actions.push(Action::CreateNeg(NetworkEndpointGroup {
            name: d.names.neg.clone(),
            description: Some(d.marker()),
            network_endpoint_type: Some("SERVERLESS".into()),
            cloud_run: Some(CloudRunTarget {
                service: Some(d.service.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }));
        return;
    };
    foreign(
        d,
        p,
        "network endpoint group",
        &neg.name,
        neg.description.as_deref(),
    );
    let svc = neg.cloud_run.as_ref().and_then(|c| c.service.as_deref());
    if svc != Some(d.service.as_str()) {
        bad.push(format!(
            "network endpoint group {} serves {}, not Cloud Run service {}; a NEG cannot be changed: delete it (gcloud compute network-endpoint-groups delete {} --region {}) or set stack.names.neg, then run bootstrap again",
            neg.name,
            svc.map(|s| format!("Cloud Run service {s}")).unwrap_or_else(|| "something else".into()),
            d.service,
            neg.name,
            d.region
        ));
    }
}

/// Backend service.
fn backend(d: &Desired, o: &ObservedStack, p: &mut Plan, bad: &mut Vec<String>) {
    let n = &d.names;
    let neg_link = d.neg_link();
    let want_backends = vec![Backend {
        group: neg_link.clone(),
        ..Default::default()
    }];
    let Some(b) = &o.backend else {
        p.actions.push(Action::CreateBackend(BackendService {
            name: n.backend.clone(),
            description: Some(d.marker()),
            load_balancing_scheme: Some(d.scheme.as_str().into()),
            protocol: Some("HTTP".into()),
            backends: want_backends,
            iap: Some(desired_iap(d)),
            ..Default::default()
        }));
        return;
    };
    foreign(d, p, "backend service", &b.name, b.description.as_deref());
    let scheme = b.load_balancing_scheme.as_deref().unwrap_or("EXTERNAL");
    if scheme != d.scheme.as_str() {
        bad.push(format!(
            "backend service {} uses load-balancing scheme {scheme}, the configuration says {}; the scheme cannot be changed in place: delete the load balancer (gclb-acme teardown, or gcloud) or set stack.load_balancing_scheme = \"{scheme}\"",
            b.name,
            d.scheme.as_str()
        ));
    }
    let mut why = Vec::new();
    let groups: Vec<&str> = b.backends.iter().map(|x| x.group.as_str()).collect();
    let backends = (groups != [neg_link.as_str()]).then(|| {
        why.push(format!(
            "backends are [{}], want [{}]",
            groups
                .iter()
                .map(|g| last(g))
                .collect::<Vec<_>>()
                .join(", "),
            n.neg
        ));
        want_backends.clone()
    });
    let protocol = (b.protocol.as_deref() != Some("HTTP")).then(|| {
        why.push(format!(
            "protocol is {}, want HTTP",
            b.protocol.as_deref().unwrap_or("unset")
        ));
        "HTTP".to_string()
    });
    let iap = iap_drift(d, b.iap.as_ref()).map(|w| {
        why.push(w);
        desired_iap(d)
    });
    if !why.is_empty() {
        p.actions.push(Action::PatchBackend {
            name: b.name.clone(),
            fingerprint: b.fingerprint.clone().unwrap_or_default(),
            backends,
            protocol,
            iap,
            why,
        });
    }
}

/// URL map (HTTPS): everything goes to the backend service.
fn url_map(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    let n = &d.names;
    let backend_link = d.link("backendServices", &n.backend);
    let Some(m) = &o.url_map else {
        p.actions.push(Action::CreateUrlMap(UrlMap {
            name: n.url_map.clone(),
            description: Some(d.marker()),
            default_service: Some(backend_link),
            ..Default::default()
        }));
        return;
    };
    foreign(d, p, "URL map", &m.name, m.description.as_deref());
    if m.default_service.as_deref() != Some(backend_link.as_str()) {
        p.actions.push(Action::PatchUrlMap {
            name: m.name.clone(),
            fingerprint: m.fingerprint.clone().unwrap_or_default(),
            default_service: Some(backend_link.clone()),
            redirect: None,
            why: format!(
                "default service is {}, want {}",
                m.default_service.as_deref().map(last).unwrap_or("unset"),
                n.backend
            ),
        });
    }
}

/// Global address.
fn address(d: &Desired, o: &ObservedStack, p: &mut Plan, bad: &mut Vec<String>) {
    let Some(a) = &o.address else {
        p.actions.push(Action::CreateAddress(Address {
            name: d.names.ip.clone(),
            description: Some(d.marker()),
            address_type: Some("EXTERNAL".into()),
            ip_version: Some("IPV4".into()),
            network_tier: Some("PREMIUM".into()),
            ..Default::default()
        }));
        return;
    };
    foreign(d, p, "global address", &a.name, a.description.as_deref());
    if a.address_type.as_deref() == Some("INTERNAL") || a.ip_version.as_deref() == Some("IPV6") {
        bad.push(format!(
            "global address {} is {} {}, the stack needs an external IPv4 address; an address cannot be changed: release it or set stack.names.ip",
            a.name,
            a.address_type.as_deref().unwrap_or("EXTERNAL"),
            a.ip_version.as_deref().unwrap_or("IPV4")
        ));
    }
}

/// DNS A records, once the address exists.
fn dns_records(d: &Desired, o: &ObservedStack, p: &mut Plan, bad: &mut Vec<String>) {
    if !d.manage_dns {
        return;
    }
    let ip = o.ip();
    for dn in &o.dns {
        let Some(zone) = &dn.zone else {
            bad.push(format!(
                "{}: {}; or set stack.manage_dns = false and create the A record yourself",
                dn.domain,
                dn.zone_problem
                    .as_deref()
                    .unwrap_or("no managed zone holds it")
            ));
            continue;
        };
        let fqdn = format!("{}.", dn.domain);
        let ok = match (&dn.a, &ip) {
            (Some(r), Some(ip)) => r.rrdatas == [ip.clone()],
            _ => false,
        };
        if !ok {
            p.actions.push(Action::SetDnsA {
                zone: zone.clone(),
                fqdn,
                ip: ip.clone(),
                replace: dn.a.clone(),
            });
        }
    }
}

/// The first certificate, and the HTTPS proxy.
fn https_proxy(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    if let Some(map) = &d.certificate_map {
        return https_proxy_with_map(d, o, p, map);
    }
    let n = &d.names;
    let url_map_link = d.link("urlMaps", &n.url_map);
    let Some(px) = &o.https_proxy else {
        p.actions.push(Action::EnsureCertificate {
            names: d.domains.clone(),
        });
        p.actions.push(Action::CreateHttpsProxy {
            name: n.https_proxy.clone(),
            description: d.marker(),
            url_map: url_map_link,
            certificate: None,
            certificate_map: None,
        });
        return;
    };
    foreign(
        d,
        p,
        "target HTTPS proxy",
        &px.name,
        px.other.get("description").and_then(|v| v.as_str()),
    );
    if px.url_map.as_deref() != Some(url_map_link.as_str()) {
        p.actions.push(Action::SetProxyUrlMap {
            proxy: Collection::TargetHttpsProxies,
            name: px.name.clone(),
            url_map: url_map_link,
        });
    }
}

/// The full reference of map `id` in the stack's project, as a proxy takes it.
pub(crate) fn map_reference(d: &Desired, id: &str) -> String {
    format!(
        "//certificatemanager.googleapis.com/projects/{}/locations/global/certificateMaps/{id}",
        d.project
    )
}

/// With `stack.certificate_map`: the map (ours when we create it), the first
/// certificate installed into it unless it serves every domain already, then
/// the HTTPS proxy created with the map or switched to it. Switching comes
/// after the map serves every name, so the proxy never serves nothing.
fn https_proxy_with_map(d: &Desired, o: &ObservedStack, p: &mut Plan, map: &str) {
    let n = &d.names;
    let observed = o
        .map
        .clone()
        .unwrap_or_else(|| super::certmap::MapObserved {
            id: map.to_string(),
            ..Default::default()
        });
    if observed.map.is_none() {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(
            crate::lb::naming::LABEL_MANAGED_BY.0.to_string(),
            crate::lb::naming::LABEL_MANAGED_BY.1.to_string(),
        );
        p.actions.push(Action::CreateCertificateMap {
            id: map.to_string(),
            description: d.marker(),
            labels,
        });
    }
    let now = time::OffsetDateTime::now_utc();
    let unserved: Vec<String> = d
        .domains
        .iter()
        .filter_map(|dn| super::certmap::map_serves(&observed, dn, now).err())
        .collect();
    if !unserved.is_empty() {
        p.actions.push(Action::EnsureMapCertificate {
            map: map.to_string(),
            names: d.domains.clone(),
            why: if observed.map.is_none() {
                "the map is new".into()
            } else {
                unserved.join("; ")
            },
        });
    }
    let reference = map_reference(d, map);
    let url_map_link = d.link("urlMaps", &n.url_map);
    let Some(px) = &o.https_proxy else {
        p.actions.push(Action::CreateHttpsProxy {
            name: n.https_proxy.clone(),
            description: d.marker(),
            url_map: url_map_link,
            certificate: None,
            certificate_map: Some(reference),
        });
        return;
    };
    foreign(
        d,
        p,
        "target HTTPS proxy",
        &px.name,
        px.other.get("description").and_then(|v| v.as_str()),
    );
    if px.url_map.as_deref() != Some(url_map_link.as_str()) {
        p.actions.push(Action::SetProxyUrlMap {
            proxy: Collection::TargetHttpsProxies,
            name: px.name.clone(),
            url_map: url_map_link,
        });
    }
    let attached = px
        .certificate_map
        .as_deref()
        .and_then(super::certmap::map_id_of);
    if attached != Some(map) {
        p.actions.push(Action::SetCertificateMap {
            proxy: px.name.clone(),
            map: reference,
        });
    }
}

/// Port 80: redirect to HTTPS on the same address.
fn http_redirect(d: &Desired, o: &ObservedStack, p: &mut Plan, bad: &mut Vec<String>) {
    let n = &d.names;
    let http_map_link = d.link("urlMaps", &n.http_url_map);
    http_url_map(d, o, p);
    let http_link = d.link("targetHttpProxies", &n.http_proxy);
    match &o.http_proxy {
        None => p.actions.push(Action::CreateHttpProxy(TargetHttpProxy {
            name: n.http_proxy.clone(),
            description: Some(d.marker()),
            url_map: Some(http_map_link.clone()),
            ..Default::default()
        })),
        Some(px) => {
            foreign(
                d,
                p,
                "target HTTP proxy",
                &px.name,
                px.description.as_deref(),
            );
            if px.url_map.as_deref() != Some(http_map_link.as_str()) {
                p.actions.push(Action::SetProxyUrlMap {
                    proxy: Collection::TargetHttpProxies,
                    name: px.name.clone(),
                    url_map: http_map_link.clone(),
                });
            }
        }
    }
    let ip = o.ip();
    forwarding_rule(
        d,
        p,
        bad,
        o.http_forwarding_rule.as_ref(),
        &n.http_forwarding_rule,
        &http_link,
        80,
        &d.link("addresses", &n.ip),
        ip.as_deref(),
    );
}

/// The port-80 URL map: a permanent redirect to HTTPS, no backend.
fn http_url_map(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    let redirect = UrlRedirect {
        https_redirect: Some(true),
        redirect_response_code: Some("MOVED_PERMANENTLY_DEFAULT".into()),
        strip_query: Some(false),
        ..Default::default()
    };
    let Some(m) = &o.http_url_map else {
        p.actions.push(Action::CreateUrlMap(UrlMap {
            name: d.names.http_url_map.clone(),
            description: Some(d.marker()),
            default_url_redirect: Some(redirect),
            ..Default::default()
        }));
        return;
    };
    foreign(d, p, "URL map", &m.name, m.description.as_deref());
    let r = m.default_url_redirect.as_ref();
    let redirects = r.is_some_and(|r| {
        r.https_redirect == Some(true)
            && r.redirect_response_code
                .as_deref()
                .unwrap_or("MOVED_PERMANENTLY_DEFAULT")
                == "MOVED_PERMANENTLY_DEFAULT"
    });
    if !redirects || m.default_service.is_some() {
        p.actions.push(Action::PatchUrlMap {
            name: m.name.clone(),
            fingerprint: m.fingerprint.clone().unwrap_or_default(),
            default_service: None,
            redirect: Some(redirect),
            why: "it does not redirect to HTTPS".into(),
        });
    }
}

/// Who may pass IAP.
fn iap_members(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    let have = o.iap_members.clone().unwrap_or_default();
    let missing: Vec<String> = d
        .iap
        .members
        .iter()
        .filter(|m| !have.contains(m))
        .cloned()
        .collect();
    if !missing.is_empty() {
        p.actions.push(Action::GrantIapAccess {
            backend: d.names.backend.clone(),
            members: missing,
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn forwarding_rule(
    d: &Desired,
    p: &mut Plan,
    bad: &mut Vec<String>,
    seen: Option<&ForwardingRule>,
    name: &str,
    target: &str,
    port: u16,
    address_link: &str,
    ip: Option<&str>,
) {
    let Some(fr) = seen else {
        p.actions.push(Action::CreateForwardingRule(ForwardingRule {
            name: name.to_string(),
            description: Some(d.marker()),
            ip_address: Some(address_link.to_string()),
            ip_protocol: Some("TCP".into()),
            port_range: Some(port.to_string()),
            target: Some(target.to_string()),
            load_balancing_scheme: Some(d.scheme.as_str().into()),
            network_tier: Some("PREMIUM".into()),
            ..Default::default()
        }));
        return;
    };
    if !d.is_marked(fr.description.as_deref()) {
        p.notes.push(format!(
            "forwarding rule {name} exists and was not created by gclb-acme: bootstrap uses it, teardown will leave it alone"
        ));
    }
    let how = format!(
        "delete it (gcloud compute forwarding-rules delete {name} --global) and run bootstrap again, or set stack.names to another name"
    );
    if let Some(ip) = ip
        && fr.ip_address.as_deref() != Some(ip)
    {
        bad.push(format!(
            "forwarding rule {name} listens on {}, but the stack's address {} is {ip}; IPAddress cannot be changed after creation: {how}",
            fr.ip_address.as_deref().unwrap_or("no IP"),
            d.names.ip
        ));
    }
    if port_of(fr.port_range.as_deref()) != Some(port) {
        bad.push(format!(
            "forwarding rule {name} is on port {}, want {port}; ports cannot be changed: {how}",
            fr.port_range.as_deref().unwrap_or("?")
        ));
    }
    if fr.target.as_deref() != Some(target) {
        bad.push(format!(
            "forwarding rule {name} sends traffic to {}, want {}: {how}",
            fr.target.as_deref().map(last).unwrap_or("nothing"),
            last(target)
        ));
    }
    let scheme = fr.load_balancing_scheme.as_deref().unwrap_or("EXTERNAL");
    if scheme != d.scheme.as_str() {
        bad.push(format!(
            "forwarding rule {name} uses load-balancing scheme {scheme}, want {}: {how}",
            d.scheme.as_str()
        ));
    }
}

mod teardown;
pub(crate) use teardown::teardown_plan;

#[cfg(test)]
mod tests;
