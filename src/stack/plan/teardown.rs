//! The teardown plan: what bootstrap created, backwards. Resources without our
//! marker are left alone and noted. One function per section, in the order the
//! actions run (each section's resources are referenced only by earlier ones).

use crate::gcp::run::INGRESS_INTERNAL_LOAD_BALANCER;
use crate::gcp::stack_resources::Collection;

use super::{Action, INGRESS_LABEL, Plan, Target, ingress_from_label, last, noun};
use crate::stack::Desired;
use crate::stack::observe::ObservedStack;

/// What bootstrap created, to be removed in reverse order of dependency.
pub(crate) fn teardown_plan(d: &Desired, o: &ObservedStack) -> Plan {
    let mut p = Plan::default();
    iap_members(d, o, &mut p);
    frontends(d, o, &mut p);
    certificate_map(d, o, &mut p);
    backends(d, o, &mut p);
    dns_and_address(d, o, &mut p);
    run_service(d, o, &mut p);
    p
}

/// Deletes a global resource when it exists and carries our marker; notes it
/// otherwise. `desc` is `None` when the resource does not exist.
fn delete_if_ours(
    d: &Desired,
    p: &mut Plan,
    c: Collection,
    name: &str,
    desc: Option<Option<&str>>,
) {
    let Some(desc) = desc else { return };
    if d.is_marked(desc) {
        p.actions.push(Action::Delete {
            what: Target::Global(c),
            name: name.to_string(),
        });
    } else {
        p.notes.push(format!(
            "{} {name} was not created by gclb-acme (no \"{}\" marker in its description): left alone",
            noun(c),
            crate::lb::naming::MARKER
        ));
    }
}

/// IAP members first: the policy goes away with the backend service.
fn iap_members(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    if let (Some(b), Some(have)) = (&o.backend, &o.iap_members)
        && d.is_marked(b.description.as_deref())
    {
        let ours: Vec<String> = d
            .iap
            .members
            .iter()
            .filter(|m| have.contains(m))
            .cloned()
            .collect();
        if !ours.is_empty() {
            p.actions.push(Action::RevokeIapAccess {
                backend: b.name.clone(),
                members: ours,
            });
        }
    }
}

/// Forwarding rules, proxies, then our certificates (unless a proxy we keep
/// still serves them).
fn frontends(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    let n = &d.names;
    let fr = Collection::ForwardingRules;
    let http_rule = o.http_forwarding_rule.as_ref();
    delete_if_ours(
        d,
        p,
        fr,
        &n.http_forwarding_rule,
        http_rule.map(|r| r.description.as_deref()),
    );
    let rule = o.forwarding_rule.as_ref();
    delete_if_ours(
        d,
        p,
        fr,
        &n.forwarding_rule,
        rule.map(|r| r.description.as_deref()),
    );
    let http_proxy = o.http_proxy.as_ref().map(|r| r.description.as_deref());
    delete_if_ours(
        d,
        p,
        Collection::TargetHttpProxies,
        &n.http_proxy,
        http_proxy,
    );
    let https_desc = o
        .https_proxy
        .as_ref()
        .map(|r| r.other.get("description").and_then(|v| v.as_str()));
    delete_if_ours(
        d,
        p,
        Collection::TargetHttpsProxies,
        &n.https_proxy,
        https_desc,
    );
    let kept: &[String] = match &o.https_proxy {
        Some(px) if !d.is_marked(https_desc.flatten()) => &px.ssl_certificates,
        _ => &[],
    };
    for c in &o.certificates {
        if kept.iter().any(|u| last(u) == c.name) {
            p.notes.push(format!(
                "certificate {} is ours but served by target HTTPS proxy {}, which is not: left alone",
                c.name, n.https_proxy
            ));
        } else {
            p.actions.push(Action::Delete {
                what: Target::Global(Collection::SslCertificates),
                name: c.name.clone(),
            });
        }
    }
}

/// URL maps, the backend service, then the serverless NEG.
fn backends(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    let n = &d.names;
    let http_map = o.http_url_map.as_ref().map(|r| r.description.as_deref());
    delete_if_ours(d, p, Collection::UrlMaps, &n.http_url_map, http_map);
    let map = o.url_map.as_ref().map(|r| r.description.as_deref());
    delete_if_ours(d, p, Collection::UrlMaps, &n.url_map, map);
    let backend = o.backend.as_ref().map(|r| r.description.as_deref());
    delete_if_ours(d, p, Collection::BackendServices, &n.backend, backend);
    if let Some(neg) = &o.neg {
        if d.is_marked(neg.description.as_deref()) {
            p.actions.push(Action::Delete {
                what: Target::Neg {
                    region: d.region.clone(),
                },
                name: neg.name.clone(),
            });
        } else {
            p.notes.push(format!(
                "network endpoint group {} was not created by gclb-acme: left alone",
                neg.name
            ));
        }
    }
}

/// Our A records (exactly our address, nothing else), then the address.
fn dns_and_address(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    if let Some(ip) = o.ip() {
        for dn in &o.dns {
            if let (Some(zone), Some(a)) = (&dn.zone, &dn.a) {
                if a.rrdatas == [ip.clone()] {
                    p.actions.push(Action::DeleteDnsA {
                        zone: zone.clone(),
                        record: a.clone(),
                    });
                } else {
                    p.notes.push(format!(
                        "DNS record {} A {} does not point only at our address {ip}: left alone",
                        a.name,
                        a.rrdatas.join(",")
                    ));
                }
            }
        }
    }
    let address = o.address.as_ref().map(|r| r.description.as_deref());
    delete_if_ours(d, p, Collection::Addresses, &d.names.ip, address);
}

/// The IAP agent's invoker grant, then, last, the ingress: with the load
/// balancer gone, the ingress bootstrap set would leave the service unreachable.
fn run_service(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    if o.invoker_granted
        && let Some(agent) = &o.iap_agent
    {
        p.actions.push(Action::RevokeRunInvoker {
            member: agent.clone(),
        });
    }
    let Some(run) = &o.run else { return };
    let lb_only = run.ingress.as_deref() == Some(INGRESS_INTERNAL_LOAD_BALANCER);
    match run.label(INGRESS_LABEL).map(|v| (ingress_from_label(&v), v)) {
        Some((Some(to), _)) => {
            let mut labels = run.labels();
            labels.remove(INGRESS_LABEL);
            p.actions.push(Action::RestoreRunIngress { to, labels });
        }
        Some((None, v)) => p.notes.push(format!(
            "Cloud Run service {} has label {INGRESS_LABEL}={v}, which names no ingress setting: its ingress is left at {}; set it yourself (gcloud run services update {} --region {} --ingress all) and remove the label",
            d.service,
            run.ingress.as_deref().unwrap_or("unset"),
            d.service,
            d.region
        )),
        None if lb_only => p.notes.push(format!(
            "Cloud Run service {} keeps ingress {INGRESS_INTERNAL_LOAD_BALANCER}: bootstrap recorded no earlier value (it was already so, or an older gclb-acme set it), so teardown does not guess; without the load balancer only internal traffic reaches it: to open it, run gcloud run services update {} --region {} --ingress all",
            d.service, d.service, d.region
        )),
        None => {}
    }
}

/// With `stack.certificate_map`, after the proxies: our entries of the map,
/// then the map when it is ours (labelled `managed-by=gclb-acme`) and nothing
/// else is left in it, then our certificate when no entry we keep uses it.
/// Nothing is touched while a proxy we keep still serves the map.
fn certificate_map(d: &Desired, o: &ObservedStack, p: &mut Plan) {
    use crate::lb::naming::{cm_certificate_id, cm_is_ours};
    let (Some(id), Some(m)) = (&d.certificate_map, &o.map) else {
        return;
    };
    let n = &d.names;
    let https_desc = o
        .https_proxy
        .as_ref()
        .and_then(|r| r.other.get("description").and_then(|v| v.as_str()));
    if let Some(px) = &o.https_proxy
        && !d.is_marked(https_desc)
        && px
            .certificate_map
            .as_deref()
            .and_then(crate::stack::certmap::map_id_of)
            == Some(id.as_str())
    {
        p.notes.push(format!(
            "certificate map {id} is served by target HTTPS proxy {}, which gclb-acme did not create: the map, its entries and certificates are left alone",
            n.https_proxy
        ));
        return;
    }
    // The map may be gone already (a teardown cut short after deleting it):
    // our certificate is still looked at below.
    if let Some(map) = &m.map {
        map_and_entries(d, m, map, id, o, p);
    }
    let cert_id = cm_certificate_id(&d.certificate);
    let Some(cert) = m.certificate(&cert_id) else {
        return;
    };
    if !cm_is_ours(&d.certificate, &cert.labels) {
        p.notes.push(format!(
            "certificate {cert_id} (Certificate Manager) was not created by gclb-acme: left alone"
        ));
        return;
    }
    // Entries of this map we delete are no users any more; any other is.
    let deleted: Vec<String> = m
        .entries
        .iter()
        .filter(|e| cm_is_ours(&d.certificate, &e.labels))
        .map(|e| format!("/certificateMaps/{id}/certificateMapEntries/{}", e.id()))
        .collect();
    let users: Vec<&str> = cert
        .used_by
        .iter()
        .map(|u| u.name.as_str())
        .filter(|u| !deleted.iter().any(|x| u.ends_with(x.as_str())))
        .collect();
    if users.is_empty() {
        p.actions.push(Action::DeleteCmCertificate { id: cert_id });
    } else {
        p.notes.push(format!(
            "certificate {cert_id} (Certificate Manager) is ours but still used by {}: left alone",
            users.join(", ")
        ));
    }
}

/// Our entries of the map, then the map itself when it is ours and empty.
fn map_and_entries(
    d: &Desired,
    m: &crate::stack::certmap::MapObserved,
    map: &crate::gcp::certificatemanager::CertificateMap,
    id: &String,
    o: &ObservedStack,
    p: &mut Plan,
) {
    use crate::lb::naming::{LABEL_MANAGED_BY, cm_is_ours};
    let n = &d.names;
    let https_desc = o
        .https_proxy
        .as_ref()
        .and_then(|r| r.other.get("description").and_then(|v| v.as_str()));
    let mut kept_entries = Vec::new();
    for e in &m.entries {
        if cm_is_ours(&d.certificate, &e.labels) {
            p.actions.push(Action::DeleteMapEntry {
                map: id.clone(),
                entry: e.id().to_string(),
            });
        } else {
            kept_entries.push(e);
        }
    }
    let ours_map =
        map.labels.get(LABEL_MANAGED_BY.0).map(String::as_str) == Some(LABEL_MANAGED_BY.1);
    // Proxies other than the stack's (deleted above when ours) serving the map.
    let ours_proxy = format!("/targetHttpsProxies/{}", n.https_proxy);
    let proxy_deleted = o.https_proxy.is_some() && d.is_marked(https_desc);
    let other_targets: Vec<&str> = map
        .gclb_targets
        .iter()
        .filter_map(|t| t.target_https_proxy.as_deref())
        .filter(|t| !(proxy_deleted && t.ends_with(&ours_proxy)))
        .collect();
    if !ours_map {
        p.notes.push(format!(
            "certificate map {id} was not created by gclb-acme (no label {}={}): left alone, only our entries removed",
            LABEL_MANAGED_BY.0, LABEL_MANAGED_BY.1
        ));
    } else if !kept_entries.is_empty() {
        p.notes.push(format!(
            "certificate map {id} still holds entries gclb-acme did not create for this stack ({}): left alone",
            kept_entries.iter().map(|e| e.id()).collect::<Vec<_>>().join(", ")
        ));
    } else if !other_targets.is_empty() {
        p.notes.push(format!(
            "certificate map {id} is still served by {}: left alone",
            other_targets.join(", ")
        ));
    } else {
        p.actions
            .push(Action::DeleteCertificateMap { id: id.clone() });
    }
}
