//! Reads what exists of the stack. Only reads (IAP's `getIamPolicy` is a POST,
//! but changes nothing).

use crate::dns::zone;
use crate::gcp::compute::{SslCertificate, TargetHttpsProxy};
use crate::gcp::dns::ResourceRecordSet;
use crate::gcp::run::RunService;
use crate::gcp::stack_resources::{
    Address, BackendService, ForwardingRule, NetworkEndpointGroup, TargetHttpProxy, UrlMap,
};
use crate::gcp::{Gcp, GcpError};
use crate::lb::naming;

use super::{Desired, IAP_ACCESSOR_ROLE, RUN_INVOKER_ROLE, StackError, gcp_err};

/// One domain's DNS as found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DnsObserved {
    /// Without the trailing dot.
    pub domain: String,
    /// The managed zone holding it.
    pub zone: Option<String>,
    /// Why no zone holds it.
    pub zone_problem: Option<String>,
    /// The A record set at the name, as Google returned it.
    pub a: Option<ResourceRecordSet>,
}

/// What exists of the stack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedStack {
    /// The Cloud Run service in `stack.region`.
    pub run: Option<RunService>,
    /// Regions holding a service of that name, when it is not in `stack.region`.
    pub run_elsewhere: Vec<String>,
    /// `serviceAccount:service-N@gcp-sa-iap.iam.gserviceaccount.com`.
    pub iap_agent: Option<String>,
    /// Whether the IAP agent holds `roles/run.invoker` on the service.
    pub invoker_granted: bool,
    pub neg: Option<NetworkEndpointGroup>,
    pub backend: Option<BackendService>,
    pub url_map: Option<UrlMap>,
    pub address: Option<Address>,
    pub dns: Vec<DnsObserved>,
    pub https_proxy: Option<TargetHttpsProxy>,
    pub forwarding_rule: Option<ForwardingRule>,
    pub http_url_map: Option<UrlMap>,
    pub http_proxy: Option<TargetHttpProxy>,
    pub http_forwarding_rule: Option<ForwardingRule>,
    /// Unconditional members of `roles/iap.httpsResourceAccessor` on the backend
    /// service; `None` when the backend service does not exist.
    pub iap_members: Option<Vec<String>>,
    /// Certificates named and marked as ours (read for teardown only).
    pub certificates: Vec<SslCertificate>,
    /// The certificate map of `stack.certificate_map`, its entries and their
    /// certificates; `None` without a map.
    pub map: Option<super::certmap::MapObserved>,
}

impl ObservedStack {
    /// The load balancer's IP, once the address exists.
    pub fn ip(&self) -> Option<String> {
        self.address.as_ref().and_then(|a| a.address.clone())
    }
}

fn fqdn(d: &str) -> String {
    format!("{}.", d.trim_end_matches('.'))
}

/// Reads the stack. `for_teardown` also lists our certificates.
pub(crate) async fn observe(
    gcp: &Gcp,
    d: &Desired,
    for_teardown: bool,
) -> Result<ObservedStack, StackError> {
    let n = &d.names;
    let mut o = ObservedStack {
        run: gcp
            .get_run_service(&d.region, &d.service)
            .await
            .map_err(gcp_err(format!("reading Cloud Run service {}", d.service)))?,
        ..Default::default()
    };
    if o.run.is_none() {
        // Where is it, then? Best effort: an error here must not hide the real one.
        match gcp.list_run_services_everywhere().await {
            Ok(list) => {
                o.run_elsewhere = list
                    .iter()
                    .filter(|s| s.name.rsplit('/').next() == Some(d.service.as_str()))
                    .filter_map(|s| s.name.split('/').nth(3).map(str::to_string))
                    .filter(|r| *r != d.region)
                    .collect();
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot list Cloud Run services of other regions")
            }
        }
    }
    if o.run.is_some() && (d.iap.enabled || for_teardown) {
        let number = gcp
            .project_number()
            .await
            .map_err(gcp_err("reading the project number (Resource Manager)"))?;
        let agent = format!("serviceAccount:service-{number}@gcp-sa-iap.iam.gserviceaccount.com");
        let policy = gcp
            .get_run_policy(&d.region, &d.service)
            .await
            .map_err(gcp_err(format!(
                "reading the IAM policy of Cloud Run service {}",
                d.service
            )))?;
        o.invoker_granted = policy.has(RUN_INVOKER_ROLE, &agent);
        o.iap_agent = Some(agent);
    }
    let what = |kind: &str, name: &str| format!("reading {kind} {name}");
    o.neg = gcp
        .get_neg(&d.region, &n.neg)
        .await
        .map_err(gcp_err(what("network endpoint group", &n.neg)))?;
    o.backend = gcp
        .get_backend_service(&n.backend)
        .await
        .map_err(gcp_err(what("backend service", &n.backend)))?;
    o.url_map = gcp
        .get_url_map(&n.url_map)
        .await
        .map_err(gcp_err(what("URL map", &n.url_map)))?;
    o.address = gcp
        .get_global_address(&n.ip)
        .await
        .map_err(gcp_err(what("global address", &n.ip)))?;
    o.https_proxy = gcp
        .find_target_https_proxy(&n.https_proxy)
        .await
        .map_err(gcp_err(what("target HTTPS proxy", &n.https_proxy)))?;
    o.forwarding_rule = gcp
        .get_global_forwarding_rule(&n.forwarding_rule)
        .await
        .map_err(gcp_err(what("forwarding rule", &n.forwarding_rule)))?;
    // Teardown looks for the redirect half even when it is switched off now.
    if d.http_redirect || for_teardown {
        o.http_url_map = gcp
            .get_url_map(&n.http_url_map)
            .await
            .map_err(gcp_err(what("URL map", &n.http_url_map)))?;
        o.http_proxy = gcp
            .get_target_http_proxy(&n.http_proxy)
            .await
            .map_err(gcp_err(what("target HTTP proxy", &n.http_proxy)))?;
        o.http_forwarding_rule = gcp
            .get_global_forwarding_rule(&n.http_forwarding_rule)
            .await
            .map_err(gcp_err(what("forwarding rule", &n.http_forwarding_rule)))?;
    }
    if o.backend.is_some() {
        let p = gcp
            .get_iap_policy(&n.backend)
            .await
            .map_err(gcp_err(format!("reading the IAP policy of {}", n.backend)))?;
        o.iap_members = Some(
            p.bindings
                .iter()
                .filter(|b| b.role == IAP_ACCESSOR_ROLE && b.condition.is_none())
                .flat_map(|b| b.members.iter().cloned())
                .collect(),
        );
    }
    if d.manage_dns || for_teardown {
        o.dns = observe_dns(gcp, d).await?;
    }
    if let Some(map) = &d.certificate_map {
        o.map = Some(super::certmap::observe(gcp, map, Some(&d.certificate)).await?);
    }
    if for_teardown {
        let filter = format!("name eq {}-.*", d.certificate);
        o.certificates = gcp
            .list_ssl_certificates(Some(&filter))
            .await
            .map_err(gcp_err("listing our certificates"))?
            .into_iter()
            .filter(|c| naming::is_ours(&d.certificate, &c.name, c.description.as_deref()))
            .collect();
    }
    Ok(o)
}

async fn observe_dns(gcp: &Gcp, d: &Desired) -> Result<Vec<DnsObserved>, StackError> {
    let zones = match &d.zone {
        Some(z) => match gcp.get_zone(z).await {
            Ok(z) => vec![z],
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(gcp_err(format!("reading managed zone {z}"))(e)),
        },
        None => gcp
            .list_zones(None)
            .await
            .map_err(gcp_err("listing Cloud DNS managed zones"))?,
    };
    let mut out = Vec::new();
    for dn in &d.domains {
        let name = fqdn(dn);
        let mut obs = DnsObserved {
            domain: dn.clone(),
            ..Default::default()
        };
        let chosen = match &d.zone {
            Some(z) => match zones.first() {
                Some(zone) => zone::check_explicit(zone, &name)
                    .map(|()| zone)
                    .map_err(|e| e.to_string()),
                None => Err(format!(
                    "managed zone {z} does not exist in project {}",
                    gcp.project
                )),
            },
            None => zone::select(&zones, &name, &gcp.project).map_err(|e| e.to_string()),
        };
        match chosen {
            Ok(z) => {
                let sets = list_a(gcp, &z.name, &name).await?;
                obs.zone = Some(z.name.clone());
                obs.a = sets.into_iter().find(|r| r.rtype == "A");
            }
            Err(why) => obs.zone_problem = Some(why),
        }
        out.push(obs);
    }
    Ok(out)
}

async fn list_a(gcp: &Gcp, zone: &str, name: &str) -> Result<Vec<ResourceRecordSet>, StackError> {
    gcp.list_rrsets(zone, name, "A")
        .await
        .map_err(|e: GcpError| gcp_err(format!("reading the A record of {name} in zone {zone}"))(e))
}
