//! The checks that ask Google and public DNS. Each check is an async function
//! returning report lines; the decisions they make are the pure functions of
//! `caa.rs`, `delegation.rs` and `permissions.rs` plus [`api_line`] and
//! [`zone_line`] here. Independent checks run concurrently.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};
use reqwest::Method;
use serde_json::{Value, json};

use super::Line;
use super::caa::{self, CaaRecord};
use super::credentials::Credentials;
use super::delegation::{self, Delegation};
use super::permissions;
use super::resolver::{Resolver, ResolverError};
use crate::config::Config;
use crate::dns::zone::{self, ZoneError};
use crate::gcp::dns::ManagedZone;
use crate::gcp::{Api, Auth, Call, Gcp, GcpError, RetryPolicy};

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
enum TokenError {
    #[error("no answer in {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Credentials(google_cloud_auth::errors::CredentialsError),
}

/// Why a configured zone cannot be used.
#[derive(Debug, thiserror::Error)]
enum ConfiguredZoneError {
    #[error("the configured zone {zone} does not exist in project {project}")]
    Missing { zone: String, project: String },
    /// Only the first line: the rest is Google's detail, shown elsewhere.
    #[error("{}", first_line(.0))]
    Read(GcpError),
}

/// One request may not hold `check` up for longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A short retry ladder: `check` is interactive, and a transient error shows up
/// as a failed line the user can simply re-run.
fn check_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
    }
}

/// Runs every online check with these credentials.
pub async fn run(config: &Config, creds: Credentials) -> Vec<Line> {
    let mut lines = Vec::new();
    let who = creds
        .identity
        .clone()
        .map(|i| format!("identity {i}"))
        .unwrap_or_else(|| "identity unknown".into());
    let skip_rest = |lines: &mut Vec<Line>, why: &str| {
        lines.push(Line::skip(format!(
            "APIs, IAM permissions, zones, delegation, CAA, proxies: not checked ({why})"
        )));
    };
    let auth = match creds.auth {
        Ok(a) => a,
        Err(e) => {
            lines.push(Line::fail(
                format!("credentials: {}: unusable: {e}", creds.kind),
                creds.source.fix(),
            ));
            skip_rest(&mut lines, "no usable credentials");
            return lines;
        }
    };
    match token(&auth).await {
        Ok(how) => lines.push(Line::ok(format!(
            "credentials: {}, {who}: {how}",
            creds.kind
        ))),
        Err(e) => {
            lines.push(Line::fail(
                format!("credentials: {}, {who}: no access token: {e}", creds.kind),
                creds.source.fix(),
            ));
            skip_rest(&mut lines, "the credentials do not work");
            return lines;
        }
    }
    let (project, source) = match project(config, creds.file_project.as_deref()).await {
        Ok(p) => p,
        Err(e) => {
            lines.push(Line::fail(
                format!("project: {e}"),
                "set gcp.project in the configuration",
            ));
            skip_rest(&mut lines, "no project");
            return lines;
        }
    };
    lines.push(Line::ok(format!("project {project} (from {source})")));
    let mut gcp = match Gcp::new(config.gcp.endpoints.clone(), project, auth) {
        Ok(g) => g,
        Err(e) => {
            lines.push(Line::fail(
                format!("HTTP client: {e}"),
                "report this as a bug",
            ));
            return lines;
        }
    };
    gcp.retry = check_retry();
    lines.extend(checks(config, &gcp, &who).await);
    lines
}

/// Every check after credentials and project, with a ready client. Public so tests
/// can run them against an emulator with injected credentials.
pub async fn checks(config: &Config, gcp: &Gcp, who: &str) -> Vec<Line> {
    let resolver = Resolver::from_config(&config.dns.resolvers).await;
    let (apis, iam, dns, proxies) = tokio::join!(
        apis(config, gcp),
        iam(config, gcp, who),
        domains(config, gcp, resolver),
        proxies(config, gcp),
    );
    // After the proxy lines, which report a missing proxy.
    let takeover = super::takeover::check(config, gcp).await;
    [apis, iam, dns, proxies, takeover].concat()
}

async fn token(auth: &Auth) -> Result<&'static str, TokenError> {
    match auth {
        Auth::Adc(c) => tokio::time::timeout(CALL_TIMEOUT, c.access_token())
            .await
            .map_err(|_| TokenError::Timeout(CALL_TIMEOUT))?
            .map(|_| "an access token was obtained")
            .map_err(TokenError::Credentials),
        Auth::Static(_) => Ok("a fixed access token is used"),
        Auth::None => Ok("no access token is sent (emulator)"),
    }
}

/// The project the daemon would use, and where it comes from (the same order as
/// `Gcp::from_config`).
async fn project(
    config: &Config,
    file_project: Option<&str>,
) -> Result<(String, String), GcpError> {
    if let Some(p) = &config.gcp.project {
        return Ok((p.clone(), "gcp.project in the configuration".into()));
    }
    let p = crate::gcp::discover_project().await?;
    for var in ["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"] {
        if std::env::var(var).is_ok_and(|v| v == p) {
            return Ok((p, var.into()));
        }
    }
    // discover_project reads only GOOGLE_APPLICATION_CREDENTIALS' file, not gcloud's.
    let source = if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some()
        && file_project == Some(p.as_str())
    {
        "the credentials file's project_id"
    } else {
        "the metadata server"
    };
    Ok((p, source.into()))
}

/// A GET (or POST with `body`) of any JSON, bounded in time.
async fn probe(
    gcp: &Gcp,
    api: Api,
    op: &'static str,
    path: String,
    body: Option<Value>,
) -> Result<Value, GcpError> {
    let url = gcp.url(api, &path);
    let mut call = Call::new(api, op);
    call.timeout = CALL_TIMEOUT;
    let method = if body.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    gcp.call::<Value, Value>(call, method, &url, body.as_ref())
        .await
}

/// The verdict on "is `api` enabled" from the answer to a cheap read of it. Any
/// answer but `accessNotConfigured`/`SERVICE_DISABLED` proves it is enabled: Google
/// checks that first, before permissions or existence.
pub fn api_line(api: &str, project: &str, answer: &Result<Value, GcpError>) -> Line {
    let what = format!("API {api}");
    match answer {
        Ok(_) => Line::ok(format!("{what}: enabled")),
        Err(e) if is_disabled(e) => Line::fail(
            format!("{what}: disabled in project {project}"),
            format!("gcloud services enable {api} --project {project}"),
        ),
        // A refusal on the merits (permission, existence, argument) comes from the
        // service itself; 401 and 429 may come from Google's front end.
        Err(GcpError::Api(a)) if (400..500).contains(&a.code) && !matches!(a.code, 401 | 429) => {
            Line::ok(format!(
                "{what}: enabled (the probe read answered {} {}, which only an enabled API does)",
                a.code, a.reason
            ))
        }
        Err(e) => Line::warn(
            format!(
                "{what}: could not tell whether it is enabled: {}",
                first_line(e)
            ),
            "re-run check; if it persists, look at the error above",
        ),
    }
}

fn is_disabled(e: &GcpError) -> bool {
    e.code() == Some(403) && matches!(e.reason(), Some("accessNotConfigured" | "SERVICE_DISABLED"))
}

/// The error without the hint line (the fix goes in the line's own fix).
fn first_line(e: &GcpError) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

/// The fix for an unexpected Google error: its hint, or a generic one.
fn fix_for(e: &GcpError) -> String {
    e.api()
        .and_then(|a| a.hint())
        .unwrap_or_else(|| "re-run check; if it persists, look at the error".into())
}

async fn apis(config: &Config, gcp: &Gcp) -> Vec<Line> {
    let p = gcp.project.clone();
    let mut probes: Vec<(&str, BoxFuture<'_, Result<Value, GcpError>>)> = vec![
        (
            "dns.googleapis.com",
            probe(gcp, Api::Dns, "projects.get", format!("projects/{p}"), None).boxed(),
        ),
        (
            "compute.googleapis.com",
            probe(
                gcp,
                Api::Compute,
                "projects.get",
                format!("projects/{p}"),
                None,
            )
            .boxed(),
        ),
    ];
    if let Some(stack) = &config.stack {
        let names = stack.names();
        probes.push((
            "serviceusage.googleapis.com",
            probe(
                gcp,
                Api::ServiceUsage,
                "services.get",
                format!("projects/{p}/services/serviceusage.googleapis.com"),
                None,
            )
            .boxed(),
        ));
        // IAP has no plain read; testing a permission on the backend's IAP
        // resource reads nothing and changes nothing.
        probes.push((
            "iap.googleapis.com",
            probe(
                gcp,
                Api::Iap,
                "webServices.testIamPermissions",
                format!(
                    "projects/{p}/iap_web/compute/services/{}:testIamPermissions",
                    names.backend
                ),
                Some(json!({"permissions": ["iap.webServices.getIamPolicy"]})),
            )
            .boxed(),
        ));
    }
    let (apis, futures): (Vec<&str>, Vec<_>) = probes.into_iter().unzip();
    let answers = join_all(futures).await;
    let mut lines: Vec<Line> = apis
        .iter()
        .zip(&answers)
        .map(|(api, a)| api_line(api, &p, a))
        .collect();
    if let Some(stack) = &config.stack {
        // The Cloud Run service read doubles as the Run API probe.
        let answer = probe(
            gcp,
            Api::Run,
            "services.get",
            format!(
                "projects/{p}/locations/{}/services/{}",
                stack.region, stack.service
            ),
            None,
        )
        .await;
        lines.push(api_line("run.googleapis.com", &p, &answer));
        lines.push(match &answer {
            Ok(_) => Line::ok(format!(
                "Cloud Run service {} exists in {}",
                stack.service, stack.region
            )),
            Err(e) if e.is_not_found() => Line::fail(
                format!(
                    "Cloud Run service {} does not exist in region {} of project {p}",
                    stack.service, stack.region
                ),
                format!(
                    "deploy it first (gcloud run deploy {} --region {}), or fix stack.service / stack.region",
                    stack.service, stack.region
                ),
            ),
            Err(e) if is_disabled(e) => Line::skip(format!(
                "Cloud Run service {}: not checked (the Run API is disabled)",
                stack.service
            )),
            Err(e) => Line::fail(
                format!("Cloud Run service {}: cannot read: {}", stack.service, first_line(e)),
                fix_for(e),
            ),
        });
    }
    lines
}

async fn iam(config: &Config, gcp: &Gcp, who: &str) -> Vec<Line> {
    let renewal = permissions::renewal(config);
    let bootstrap = permissions::bootstrap(config);
    let wanted: Vec<String> = renewal
        .iter()
        .chain(&bootstrap)
        .map(|s| s.to_string())
        .collect();
    let granted = match gcp.test_project_permissions(&wanted).await {
        Ok(g) => g,
        Err(e) => {
            return vec![Line::fail(
                format!("IAM permissions: cannot test them: {}", first_line(&e)),
                fix_for(&e),
            )];
        }
    };
    let p = &gcp.project;
    let mut lines = Vec::new();
    let missing = permissions::missing(&renewal, &granted);
    lines.push(if missing.is_empty() {
        Line::ok(format!(
            "IAM: {who} holds all {} permissions renewal needs in project {p}",
            renewal.len()
        ))
    } else {
        Line::fail(
            format!(
                "IAM: {who} lacks {} permission(s) renewal needs in project {p}: {}",
                missing.len(),
                missing.join(", ")
            ),
            "grant them (docs/iam.md has a custom role with exactly the daemon's permissions, and the predefined roles that hold them)",
        )
    });
    if !bootstrap.is_empty() {
        let missing = permissions::missing(&bootstrap, &granted);
        lines.push(if missing.is_empty() {
            Line::ok(format!(
                "IAM: {who} holds all {} extra permissions bootstrap/teardown need",
                bootstrap.len()
            ))
        } else {
            // The daemon does not need these; whoever runs bootstrap does.
            Line::warn(
                format!(
                    "IAM: {who} lacks {} permission(s) bootstrap/teardown need (renewal does not): {}",
                    missing.len(),
                    missing.join(", ")
                ),
                "run bootstrap as someone who holds them, or grant them (docs/iam.md)",
            )
        });
    }
    lines
}

/// The verdict on the zone of one domain.
pub fn zone_line(
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

async fn domains(
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

async fn proxies(config: &Config, gcp: &Gcp) -> Vec<Line> {
    let mut names: Vec<&str> = Vec::new();
    for c in &config.certificates {
        for p in &c.target_https_proxies {
            if !names.contains(&p.as_str()) {
                names.push(p);
            }
        }
    }
    let project = &gcp.project;
    let answers = join_all(names.iter().map(|n| gcp.get_target_https_proxy(n))).await;
    names
        .iter()
        .zip(answers)
        .map(|(n, a)| {
            let what = format!("target HTTPS proxy {n}");
            match a {
                Ok(p) if p.certificate_map.as_deref().is_some_and(|m| !m.is_empty()) => Line::warn(
                    format!(
                        "{what}: uses certificate map {}; a proxy with a map serves from it and ignores sslCertificates",
                        p.certificate_map.as_deref().unwrap_or("")
                    ),
                    format!("detach the map (gcloud compute target-https-proxies update {n} --clear-certificate-map) or keep Certificate Manager"),
                ),
                Ok(p) => Line::ok(format!(
                    "{what}: exists ({} certificate(s) attached)",
                    p.ssl_certificates.len()
                )),
                Err(e) if e.is_not_found() => Line::fail(
                    format!("{what}: does not exist in project {project}"),
                    "create it, or run gclb-acme bootstrap (with [stack]), or fix certificates[].target_https_proxies",
                ),
                Err(e) if is_disabled(&e) => Line::skip(format!(
                    "{what}: not checked (the Compute API is disabled)"
                )),
                Err(e) => Line::fail(format!("{what}: cannot read: {}", first_line(&e)), fix_for(&e)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::ApiError;
    use crate::preflight::Status;

    fn err(code: u16, reason: &str, message: &str) -> Result<Value, GcpError> {
        Err(GcpError::Api(ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
            status: String::new(),
            request: "GET u".into(),
            needs: Box::default(),
        }))
    }

    #[test]
    fn api_verdicts() {
        let l = api_line(
            "dns.googleapis.com",
            "p",
            &err(403, "accessNotConfigured", "off"),
        );
        assert_eq!(l.status, Status::Fail);
        assert_eq!(
            l.fix.as_deref(),
            Some("gcloud services enable dns.googleapis.com --project p")
        );
        let l = api_line(
            "run.googleapis.com",
            "p",
            &err(403, "SERVICE_DISABLED", "off"),
        );
        assert_eq!(l.status, Status::Fail);
        let l = api_line(
            "dns.googleapis.com",
            "p",
            &err(403, "forbidden", "no dns.projects.get"),
        );
        assert_eq!(l.status, Status::Ok);
        let l = api_line(
            "run.googleapis.com",
            "p",
            &err(404, "NOT_FOUND", "no service"),
        );
        assert_eq!(l.status, Status::Ok);
        assert_eq!(api_line("x", "p", &Ok(json!({}))).status, Status::Ok);
        assert_eq!(
            api_line("x", "p", &err(503, "backendError", "")).status,
            Status::Warn
        );
    }

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
