//! Per domain: its Cloud DNS zone, the zone's delegation in public DNS, CAA,
//! and stale challenge CNAMEs.

use std::collections::BTreeMap;

use futures_util::future::join_all;

use super::{first_line, fix_for, is_disabled};
use crate::config::Config;
use crate::dns::zone::{self, ZoneError};
use crate::gcp::dns::ManagedZone;
use crate::gcp::{Gcp, GcpError};
use crate::preflight::Line;
use crate::preflight::caa::{self, CaaRecord};
use crate::preflight::delegation::{self, Delegation};
use crate::preflight::resolver::{Resolver, ResolverError};

/// Why a configured zone cannot be used.
#[derive(Debug, thiserror::Error)]
enum ConfiguredZoneError {
    #[error("the configured zone {zone} does not exist in project {project}")]
    Missing { zone: String, project: String },
    /// Only the first line: the rest is Google's detail, shown elsewhere.
    #[error("{}", first_line(.0))]
    Read(GcpError),
}

/// The verdict on the zone of one domain.
pub(super) fn zone_line(
    domain: &str,
    found: &Result<ManagedZone, ZoneError>,
    zones: &[ManagedZone],
) -> Line {
    let what = format!("zone of {domain}");
    match found {
        Ok(z) => Line::ok(format!("{what}: {} ({}, public)", z.name, z.dns_name)),
        Err(ZoneError::NoZone {
            private_only: true,
            name,
            project,
        }) => {
            let private: Vec<String> = zones
                .iter()
                .filter(|z| !z.is_public() && zone::in_zone(name, &z.dns_name))
                .map(|z| format!("{} ({})", z.name, z.dns_name))
                .collect();
            Line::fail(
                format!(
                    "{what}: zone {} is private: the CA resolves public DNS, so challenges must go to a public zone, and project {project} has none holding {name}",
                    private.join(", ")
                ),
                "create a public zone for the domain (gcloud dns managed-zones create --visibility=public) and delegate it at your registrar",
            )
        }
        Err(e @ ZoneError::Private { .. }) => Line::fail(
            format!("{what}: {e}"),
            "set certificates[].zone to the public zone, or remove it to discover the zone",
        ),
        Err(e) => Line::fail(
            format!("{what}: {e}"),
            "create a public Cloud DNS zone holding the name (or fix certificates[].zone)",
        ),
    }
}

/// What every domain check needs to know about one domain.
struct Domain {
    name: String,
    zone: Result<ManagedZone, ZoneError>,
}

pub(super) async fn domains(
    config: &Config,
    gcp: &Gcp,
    resolver: Result<Resolver, ResolverError>,
) -> Vec<Line> {
    let mut lines = Vec::new();
    let project = gcp.project.clone();
    // One list for every discovered zone; one get per configured zone.
    let mut all: Vec<ManagedZone> = Vec::new();
    if config.certificates.iter().any(|c| c.zone.is_none()) {
        match gcp.list_zones(None).await {
            Ok(z) => all = z,
            Err(e) if is_disabled(&e) => {
                lines.push(Line::skip(
                    "zones, delegation, CAA, challenge CNAMEs: not checked (the Cloud DNS API is disabled)",
                ));
                return lines;
            }
            Err(e) => {
                lines.push(Line::fail(
                    format!(
                        "zones: cannot list the Cloud DNS zones of {project}: {}",
                        first_line(&e)
                    ),
                    fix_for(&e),
                ));
                return lines;
            }
        }
    }
    let mut configured: BTreeMap<String, Result<ManagedZone, ConfiguredZoneError>> =
        BTreeMap::new();
    for c in &config.certificates {
        if let Some(z) = &c.zone
            && !configured.contains_key(z)
        {
            let r = gcp.get_zone(z).await.map_err(|e| {
                if e.is_not_found() {
                    ConfiguredZoneError::Missing {
                        zone: z.clone(),
                        project: project.clone(),
                    }
                } else {
                    ConfiguredZoneError::Read(e)
                }
            });
            configured.insert(z.clone(), r);
        }
    }
    let mut domains: Vec<Domain> = Vec::new();
    for c in &config.certificates {
        for d in &c.domains {
            if domains.iter().any(|x| &x.name == d) {
                continue;
            }
            let challenge = delegation::challenge_name(d);
            let zone = match &c.zone {
                Some(z) => match configured.get(z) {
                    Some(Ok(zone)) => zone::check_explicit(zone, &challenge).map(|()| zone.clone()),
                    Some(Err(e)) => {
                        lines.push(Line::fail(
                            format!("zone of {d}: {e}"),
                            "fix certificates[].zone, or remove it to discover the zone",
                        ));
                        continue;
                    }
                    None => continue,
                },
                None => zone::select(&all, &challenge, &project).cloned(),
            };
            lines.push(zone_line(d, &zone, &all));
            domains.push(Domain {
                name: d.clone(),
                zone,
            });
        }
    }
    let resolver = match resolver {
        Ok(r) => r,
        Err(e) => {
            lines.push(Line::warn(
                format!(
                    "delegation, CAA, challenge CNAMEs: not checked: cannot use the resolver: {e}"
                ),
                "set dns.resolvers to reachable public resolvers, e.g. [\"8.8.8.8:53\"]",
            ));
            return lines;
        }
    };
    let ca = caa::ca_domain(&config.acme.directory);
    let mut zones: Vec<&ManagedZone> = Vec::new();
    for d in &domains {
        if let Ok(z) = &d.zone
            && !zones.iter().any(|x| x.name == z.name)
        {
            zones.push(z);
        }
    }
    let mut challenges: Vec<String> = Vec::new();
    for d in &domains {
        if d.zone.is_ok() {
            let c = delegation::challenge_name(&d.name);
            if !challenges.contains(&c) {
                challenges.push(c);
            }
        }
    }
    let (delegations, caas, cnames) = tokio::join!(
        join_all(zones.iter().map(|z| delegation_line(&resolver, z))),
        join_all(domains.iter().filter_map(|d| {
            let z = d.zone.as_ref().ok()?;
            Some(caa_line(&resolver, &d.name, z, ca, &config.acme.directory))
        })),
        join_all(
            challenges
                .iter()
                .map(|c| cname_line(&resolver, c, &all, &project))
        ),
    );
    lines.extend(delegations);
    lines.extend(caas);
    lines.extend(cnames);
    lines
}

async fn delegation_line(resolver: &Resolver, zone: &ManagedZone) -> Line {
    let what = format!("delegation of {}", zone.dns_name);
    let served = match resolver.ns(&zone.dns_name).await {
        Ok(s) => s,
        Err(e) => {
            return Line::warn(
                format!(
                    "{what}: cannot ask the resolver {}: {e}",
                    resolver.describe()
                ),
                "set dns.resolvers to reachable public resolvers",
            );
        }
    };
    let ours = zone.name_servers.join(", ");
    match delegation::compare_ns(&served, &zone.name_servers) {
        Delegation::Match => Line::ok(format!(
            "{what}: public DNS delegates it to the {} name servers of Cloud DNS zone {}",
            zone.name_servers.len(),
            zone.name
        )),
        Delegation::Subset { missing } => Line::warn(
            format!(
                "{what}: public DNS lists only some of zone {}'s name servers (missing {})",
                zone.name,
                missing.join(", ")
            ),
            format!("list all of {ours} at your registrar"),
        ),
        Delegation::Elsewhere { served, .. } => Line::fail(
            format!(
                "{what}: the registrar delegates {} to {}; Cloud DNS zone {} is served by {ours}, so the CA will never see the challenge records",
                zone.dns_name,
                served.join(", "),
                zone.name
            ),
            format!("update the NS records at your registrar (or in the parent zone) to {ours}"),
        ),
        Delegation::None => Line::fail(
            format!(
                "{what}: public DNS has no NS records for it: the name is not delegated to Cloud DNS zone {}",
                zone.name
            ),
            format!("set the NS records at your registrar (or in the parent zone) to {ours}"),
        ),
    }
}

async fn caa_line(
    resolver: &Resolver,
    domain: &str,
    zone: &ManagedZone,
    ca: Option<&str>,
    directory: &str,
) -> Line {
    let what = format!("CAA for {domain}");
    let Some(ca) = ca else {
        return Line::skip(format!(
            "{what}: not judged: the CAA domain of {directory} is not known (only Let's Encrypt, ZeroSSL and Google Trust Services are)"
        ));
    };
    let wildcard = domain.starts_with("*.");
    for name in caa::climb(domain, &zone.dns_name) {
        let records: Vec<CaaRecord> = match resolver.caa(&name).await {
            Ok(r) => r,
            Err(e) => {
                return Line::warn(
                    format!("{what}: cannot look up CAA at {name}: {e}"),
                    "set dns.resolvers to reachable public resolvers",
                );
            }
        };
        if records.is_empty() {
            continue;
        }
        let shown: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        return match caa::evaluate(&records, ca, wildcard) {
            Ok(()) => Line::ok(format!("{what}: the CAA records at {name} allow {ca}")),
            Err(why) => Line::fail(
                format!(
                    "{what}: the CA ({ca}) may not issue: {why} (CAA at {name}: {})",
                    shown.join("; ")
                ),
                format!(
                    "add a CAA record `0 {} \"{ca}\"` at {name}, or use a CA the records allow",
                    if wildcard { "issuewild" } else { "issue" }
                ),
            ),
        };
    }
    Line::ok(format!(
        "{what}: no CAA records up to {}: every CA may issue",
        zone.dns_name
    ))
}

async fn cname_line(
    resolver: &Resolver,
    challenge: &str,
    zones: &[ManagedZone],
    project: &str,
) -> Line {
    match resolver.cname(challenge).await {
        Err(e) => Line::warn(
            format!("{challenge}: cannot look up a CNAME: {e}"),
            "set dns.resolvers to reachable public resolvers",
        ),
        Ok(None) => Line::ok(format!("{challenge}: no CNAME; the TXT records go there")),
        Ok(Some(t)) if delegation::is_certificate_manager_cname(&t) => Line::fail(
            format!(
                "{challenge}: a CNAME to {t} left by a Certificate Manager DNS authorization: a name with a CNAME can hold no TXT record, and the CA would follow it to Google's record instead of ours"
            ),
            format!(
                "delete the CNAME (gcloud dns record-sets delete {challenge} --type=CNAME --zone=<zone>) and the unused DNS authorization (gcloud certificate-manager dns-authorizations list)"
            ),
        ),
        Ok(Some(t)) => match zone::select(zones, &t, project) {
            Ok(z) => Line::ok(format!(
                "{challenge}: delegated by CNAME to {t}, in zone {}; the TXT records go there",
                z.name
            )),
            // Without the zone list (configured zones only) we cannot tell.
            Err(_) if zones.is_empty() => Line::warn(
                format!(
                    "{challenge}: a CNAME to {t}; whether a zone of {project} holds it was not checked"
                ),
                "make sure the CNAME target is in a public Cloud DNS zone of the project",
            ),
            Err(e) => Line::fail(
                format!("{challenge}: a CNAME to {t}, which DNS-01 cannot write: {e}"),
                "remove the CNAME, or create a public zone holding its target",
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    #[test]
    fn a_private_zone_is_named() {
        let zones = vec![ManagedZone {
            name: "corp".into(),
            dns_name: "example.com.".into(),
            visibility: Some("private".into()),
            ..Default::default()
        }];
        let found = zone::select(&zones, "_acme-challenge.app.example.com.", "p").cloned();
        let l = zone_line("app.example.com", &found, &zones);
        assert_eq!(l.status, Status::Fail);
        assert!(
            l.what.contains("zone corp (example.com.) is private"),
            "{}",
            l.what
        );
    }
}
