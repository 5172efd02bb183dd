//! Executes one action: the calls, waiting on each operation. Decides nothing
//! beyond what an action says, except treating "already there" on a create and
//! "already gone" on a delete as done (a step repeated after a crash).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::gcp::certificatemanager::{MapFields, is_already_exists, is_in_use};
use crate::gcp::dns::{Change, ResourceRecordSet};
use crate::gcp::operation::Operation;
use crate::gcp::run::INGRESS_INTERNAL_LOAD_BALANCER;
use crate::gcp::stack_resources::{Collection, NewTargetHttpsProxy};
use crate::gcp::{Gcp, GcpError, request_id};

use super::plan::{Action, Target};
use super::{
    CertificateSource, Desired, IAP_ACCESSOR_ROLE, Out, RUN_INVOKER_ROLE, StackError, gcp_err,
};

/// How long one Compute operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a Cloud DNS change may stay pending.
const DNS_TIMEOUT: Duration = Duration::from_secs(300);
/// Deletions refused because a dependent is still being released are retried
/// this many times.
const IN_USE_ATTEMPTS: u32 = 10;

/// What earlier steps produced, for the steps after them.
pub(crate) struct Ctx {
    pub ip: Option<String>,
    pub certificate: Option<String>,
    /// Makes this run's requestIds unique: a retried request reuses its id (so
    /// Compute does the work once), but a later run re-creating a deleted
    /// resource must not get the old operation back.
    nonce: String,
}

impl Ctx {
    pub(crate) fn new(ip: Option<String>) -> Ctx {
        let n: u64 = rand::random();
        Ctx {
            ip,
            certificate: None,
            nonce: format!("{n:016x}"),
        }
    }

    fn rid(&self, verb: &str, name: &str) -> String {
        request_id(&[&self.nonce, verb, name])
    }
}

async fn wait(gcp: &Gcp, op: Operation) -> Result<Operation, GcpError> {
    gcp.wait_operation(op, OP_TIMEOUT).await
}

/// A create that finds the resource already there (a repeat after a crash, or a
/// concurrent bootstrap) is done: the next observation compares it.
fn created(r: Result<Operation, GcpError>) -> Result<Option<Operation>, GcpError> {
    match r {
        Ok(op) => Ok(Some(op)),
        Err(e) if e.code() == Some(409) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn create(gcp: &Gcp, r: Result<Operation, GcpError>) -> Result<(), GcpError> {
    match created(r)? {
        Some(op) => match wait(gcp, op).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(409) => Ok(()),
            Err(e) => Err(e),
        },
        None => Ok(()),
    }
}

/// Runs one action, printing `what ... done in 1.2s`.
pub(crate) async fn run<C: CertificateSource>(
    gcp: &Gcp,
    d: &Desired,
    a: &Action,
    ctx: &mut Ctx,
    certs: &C,
    out: &Out,
) -> Result<(), StackError> {
    let started = Instant::now();
    let what = a.to_string();
    let _step = crate::progress::Step::start(what.clone());
    tracing::debug!(action = ?a, "applying");
    let r = step(gcp, d, a, ctx, certs).await;
    match &r {
        Ok(()) => out.line(&format!(
            "{what} ... done in {:.1}s",
            started.elapsed().as_secs_f64()
        )),
        Err(e) => {
            tracing::warn!(error = %e, "stack step failed");
            out.line(&format!(
                "{what} ... FAILED after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    r
}

async fn step<C: CertificateSource>(
    gcp: &Gcp,
    d: &Desired,
    a: &Action,
    ctx: &mut Ctx,
    certs: &C,
) -> Result<(), StackError> {
    let err = |w: String| gcp_err(w);
    match a {
        Action::SetRunIngress { labels, .. } => {
            gcp.set_run_ingress(
                &d.region,
                &d.service,
                INGRESS_INTERNAL_LOAD_BALANCER,
                labels.as_ref(),
            )
            .await
            .map_err(err(format!(
                "setting the ingress of Cloud Run service {}",
                d.service
            )))?;
        }
        Action::RestoreRunIngress { to, labels } => {
            match gcp
                .set_run_ingress(&d.region, &d.service, to, Some(labels))
                .await
            {
                Ok(_) => {}
                // The service is gone: nothing to restore.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(err(format!(
                        "restoring the ingress of Cloud Run service {} to {to}",
                        d.service
                    ))(e));
                }
            }
        }
        Action::CreateIapAgent => {
            gcp.generate_service_identity("iap.googleapis.com")
                .await
                .map_err(err(
                    "creating the IAP service agent (Service Usage generateServiceIdentity)".into(),
                ))?;
        }
        Action::GrantRunInvoker { member } => {
            gcp.edit_run_policy(&d.region, &d.service, |p| p.add(RUN_INVOKER_ROLE, member))
                .await
                .map_err(err(format!(
                    "granting roles/run.invoker on Cloud Run service {} to {member}",
                    d.service
                )))?;
        }
        Action::CreateNeg(neg) => {
            let r = gcp
                .insert_neg(&d.region, neg, &ctx.rid("neg.insert", &neg.name))
                .await;
            create(gcp, r)
                .await
                .map_err(err(format!("creating network endpoint group {}", neg.name)))?;
        }
        Action::CreateBackend(b) => {
            let r = gcp
                .insert_backend_service(b, &ctx.rid("backend.insert", &b.name))
                .await;
            create(gcp, r)
                .await
                .map_err(err(format!("creating backend service {}", b.name)))?;
        }
        Action::PatchBackend {
            name,
            fingerprint,
            backends,
            protocol,
            iap,
            ..
        } => {
            let mut patch = json!({ "fingerprint": fingerprint });
            if let Some(b) = backends {
                patch["backends"] = to_value(b);
            }
            if let Some(p) = protocol {
                patch["protocol"] = json!(p);
            }
            if let Some(i) = iap {
                patch["iap"] = to_value(i);
            }
            let op = gcp
                .patch_global(
                    Collection::BackendServices,
                    name,
                    &patch,
                    &ctx.rid("backend.patch", name),
                )
                .await
                .map_err(err(format!("patching backend service {name}")))?;
            wait(gcp, op)
                .await
                .map_err(err(format!("patching backend service {name}")))?;
        }
        Action::CreateUrlMap(m) => {
            let r = gcp
                .insert_global(Collection::UrlMaps, m, &ctx.rid("urlmap.insert", &m.name))
                .await;
            create(gcp, r)
                .await
                .map_err(err(format!("creating URL map {}", m.name)))?;
        }
        Action::PatchUrlMap {
            name,
            fingerprint,
            default_service,
            redirect,
            ..
        } => {
            let mut patch = json!({ "fingerprint": fingerprint });
            match (default_service, redirect) {
                (Some(s), _) => {
                    patch["defaultService"] = json!(s);
                    patch["defaultUrlRedirect"] = Value::Null;
                }
                (None, Some(r)) => {
                    patch["defaultUrlRedirect"] = to_value(r);
                    patch["defaultService"] = Value::Null;
                }
                (None, None) => {}
            }
            let op = gcp
                .patch_global(
                    Collection::UrlMaps,
                    name,
                    &patch,
                    &ctx.rid("urlmap.patch", name),
                )
                .await
                .map_err(err(format!("patching URL map {name}")))?;
            wait(gcp, op)
                .await
                .map_err(err(format!("patching URL map {name}")))?;
        }
        Action::CreateAddress(addr) => {
            let r = gcp
                .insert_global(
                    Collection::Addresses,
                    addr,
                    &ctx.rid("address.insert", &addr.name),
                )
                .await;
            create(gcp, r)
                .await
                .map_err(err(format!("creating global address {}", addr.name)))?;
            let got = gcp
                .get_global_address(&addr.name)
                .await
                .map_err(err(format!("reading global address {}", addr.name)))?;
            ctx.ip = got.and_then(|a| a.address);
        }
        Action::SetDnsA {
            zone,
            fqdn,
            ip,
            replace,
        } => {
            let Some(ip) = ip.clone().or_else(|| ctx.ip.clone()) else {
                return Err(StackError::Config(format!(
                    "cannot write the A record of {fqdn}: the address {} has no IP yet",
                    d.names.ip
                )));
            };
            if replace.as_ref().is_some_and(|r| r.rrdatas == [ip.clone()]) {
                return Ok(());
            }
            let change = Change {
                additions: vec![ResourceRecordSet {
                    name: fqdn.clone(),
                    rtype: "A".into(),
                    ttl: Some(d.dns_ttl),
                    rrdatas: vec![ip.clone()],
                    other: Default::default(),
                }],
                deletions: replace.iter().cloned().collect(),
                ..Default::default()
            };
            let what = format!("writing DNS record {fqdn} A {ip} in zone {zone}");
            let c = gcp
                .create_change(zone, &change)
                .await
                .map_err(err(what.clone()))?;
            gcp.wait_change(zone, c, DNS_TIMEOUT)
                .await
                .map_err(err(what))?;
        }
        Action::EnsureCertificate { names } => {
            ctx.certificate = Some(certs.ensure(names).await?);
        }
        Action::CreateHttpsProxy {
            name,
            description,
            url_map,
            certificate,
            certificate_map,
        } => {
            let ssl_certificates = match (
                certificate_map,
                certificate.clone().or_else(|| ctx.certificate.clone()),
            ) {
                (Some(_), _) => Vec::new(),
                (None, Some(cert)) => vec![cert],
                (None, None) => {
                    return Err(StackError::Certificate(format!(
                        "no certificate to create target HTTPS proxy {name} with"
                    )));
                }
            };
            let body = NewTargetHttpsProxy {
                name: name.clone(),
                description: description.clone(),
                url_map: url_map.clone(),
                ssl_certificates,
                certificate_map: certificate_map.clone(),
            };
            let r = gcp
                .insert_global(
                    Collection::TargetHttpsProxies,
                    &body,
                    &ctx.rid("https.insert", name),
                )
                .await;
            create(gcp, r)
                .await
                .map_err(err(format!("creating target HTTPS proxy {name}")))?;
        }
        Action::CreateHttpProxy(px) => {
            let r = gcp
                .insert_global(
                    Collection::TargetHttpProxies,
                    px,
                    &ctx.rid("http.insert", &px.name),
                )
                .await;
            create(gcp, r)
                .await
                .map_err(err(format!("creating target HTTP proxy {}", px.name)))?;
        }
        Action::SetProxyUrlMap {
            proxy,
            name,
            url_map,
        } => {
            let op = gcp
                .set_proxy_url_map(*proxy, name, url_map, &ctx.rid("seturlmap", name))
                .await
                .map_err(err(format!("pointing proxy {name} at {url_map}")))?;
            wait(gcp, op)
                .await
                .map_err(err(format!("pointing proxy {name} at {url_map}")))?;
        }
        Action::CreateForwardingRule(fr) => {
            let r = gcp
                .insert_global(
                    Collection::ForwardingRules,
                    fr,
                    &ctx.rid("fr.insert", &fr.name),
                )
                .await;
            create(gcp, r)
                .await
                .map_err(err(format!("creating forwarding rule {}", fr.name)))?;
        }
        Action::GrantIapAccess { backend, members } => {
            gcp.edit_iap_policy(backend, |p| {
                let mut changed = false;
                for m in members {
                    changed |= p.add(IAP_ACCESSOR_ROLE, m);
                }
                changed
            })
            .await
            .map_err(err(format!("granting IAP access on {backend}")))?;
        }
        Action::RevokeIapAccess { backend, members } => {
            let r = gcp
                .edit_iap_policy(backend, |p| {
                    let mut changed = false;
                    for m in members {
                        changed |= p.remove(IAP_ACCESSOR_ROLE, m);
                    }
                    changed
                })
                .await;
            match r {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(err(format!("revoking IAP access on {backend}"))(e)),
            }
        }
        Action::Delete { what, name } => delete(gcp, what, name, ctx).await?,
        Action::CreateCertificateMap {
            id,
            description,
            labels,
        } => {
            let what = format!("creating certificate map {id}");
            let fields = MapFields {
                description: Some(description.clone()),
                labels: Some(labels.clone()),
            };
            match gcp.create_certificate_map(id, &fields).await {
                Ok(op) => match gcp.wait_certificate_manager(op, OP_TIMEOUT).await {
                    Ok(_) => {}
                    Err(e) if is_already_exists(&e) => {}
                    Err(e) => return Err(err(what)(e)),
                },
                // A repeat after a crash, or made meanwhile (by the first
                // renewal): the next observation reads it.
                Err(e) if is_already_exists(&e) => {}
                Err(e) => return Err(err(what)(e)),
            }
        }
        Action::EnsureMapCertificate { map, names, .. } => {
            certs.ensure_in_map(names, map).await?;
        }
        Action::SetCertificateMap { proxy, map } => {
            let what = format!("attaching certificate map {map} to target HTTPS proxy {proxy}");
            let op = gcp
                .set_certificate_map(proxy, Some(map), &ctx.rid("setcertificatemap", proxy))
                .await
                .map_err(err(what.clone()))?;
            wait(gcp, op).await.map_err(err(what))?;
        }
        Action::DeleteMapEntry { map, entry } => {
            cm_delete(
                gcp,
                &format!("deleting entry {entry} of certificate map {map}"),
                || gcp.delete_certificate_map_entry(map, entry),
            )
            .await?;
        }
        Action::DeleteCertificateMap { id } => {
            cm_delete(gcp, &format!("deleting certificate map {id}"), || {
                gcp.delete_certificate_map(id)
            })
            .await?;
        }
        Action::DeleteCmCertificate { id } => {
            cm_delete(
                gcp,
                &format!("deleting certificate {id} (Certificate Manager)"),
                || gcp.delete_certificate(id),
            )
            .await?;
        }
        Action::DeleteDnsA { zone, record } => {
            let change = Change {
                deletions: vec![record.clone()],
                ..Default::default()
            };
            let what = format!("deleting DNS record {} in zone {zone}", record.name);
            match gcp.create_change(zone, &change).await {
                Ok(c) => {
                    gcp.wait_change(zone, c, DNS_TIMEOUT)
                        .await
                        .map_err(err(what))?;
                }
                // Already gone or changed since we read it: not ours to touch any more.
                Err(e) if matches!(e.code(), Some(404 | 412)) => {
                    tracing::info!(error = %e, "DNS record changed since it was read; left alone");
                }
                Err(e) => return Err(err(what)(e)),
            }
        }
        Action::RevokeRunInvoker { member } => {
            let r = gcp
                .edit_run_policy(&d.region, &d.service, |p| {
                    p.remove(RUN_INVOKER_ROLE, member)
                })
                .await;
            match r {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(err(format!(
                        "revoking roles/run.invoker on Cloud Run service {} from {member}",
                        d.service
                    ))(e));
                }
            }
        }
    }
    Ok(())
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // Serializing our own plain structs into a Value cannot fail (no maps with
    // non-string keys, no failing Serialize impls).
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Deletes one Certificate Manager resource: 404 is done (a repeat after a
/// crash); "still in use" (400 `FAILED_PRECONDITION`, a dependent being
/// released) is retried with back-off.
async fn cm_delete<F, Fut>(gcp: &Gcp, what: &str, start: F) -> Result<(), StackError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<crate::gcp::operation::LongRunning, GcpError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = match start().await {
            Ok(op) => gcp
                .wait_certificate_manager(op, OP_TIMEOUT)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) if is_in_use(&e) && attempt < IN_USE_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "still in use; retrying the delete");
                tokio::time::sleep(gcp.retry.delay(attempt)).await;
            }
            Err(e) => return Err(gcp_err(what.to_string())(e)),
        }
    }
}

/// Deletes one resource: 404 is done; "in use" / "not ready" are retried with
/// back-off while dependents are released.
async fn delete(gcp: &Gcp, what: &Target, name: &str, ctx: &Ctx) -> Result<(), StackError> {
    let label = format!("deleting {name}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let rid = ctx.rid(&format!("delete{attempt}"), name);
        let r = match what {
            Target::Global(c) => gcp.delete_global(*c, name, &rid).await,
            Target::Neg { region } => gcp.delete_neg(region, name, &rid).await,
        };
        let r = match r {
            Ok(op) => wait(gcp, op).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e)
                if (e.reason() == Some("resourceInUseByAnotherResource")
                    || e.reason() == Some("resourceNotReady")
                    || e.reason() == Some("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"))
                    && attempt < IN_USE_ATTEMPTS =>
            {
                tracing::debug!(error = %e, attempt, "resource still in use; retrying the delete");
                tokio::time::sleep(gcp.retry.delay(attempt)).await;
            }
            Err(e) => return Err(gcp_err(label)(e)),
        }
    }
}
