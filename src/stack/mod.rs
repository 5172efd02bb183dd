//! The stack reconciler behind `bootstrap` and `teardown`: the Cloud Run + IAP +
//! HTTPS load balancer of the walkthrough, as a dependency graph of resources.
//!
//! `observe` reads what exists (I/O only), `plan::plan` / `plan::teardown_plan`
//! decide what to do (pure, unit-tested), `apply` executes one action at a time,
//! waiting on each operation, then everything is observed again: a converged
//! stack plans nothing. Every resource we create carries a `description` starting
//! with [`crate::lb::naming::MARKER`] and naming the stack, and teardown deletes
//! only resources that carry it.

mod apply;
pub(crate) mod cert;
pub(crate) mod certmap;
pub(crate) mod mapmove;
mod observe;
pub(crate) mod plan;
pub(crate) mod takeover;

use std::fmt;
use std::path::Path;
use std::time::Instant;

use sha2::Digest;

pub use cert::{CertificateSource, ReuseExisting};
pub use cert::{IssueWithAcme, find_ours, map_unserved};
pub use certmap::MapObserved;
pub use mapmove::{MoveError, MoveReport, attach_certificate_map, detach_certificate_map};
pub use observe::{DnsObserved, ObservedStack};
pub use plan::INGRESS_LABEL;
pub use plan::{Action, Plan, Target};

use crate::config::stack::{ResolvedNames, Scheme};
use crate::config::{Config, StackConfig};
use crate::gcp::{Gcp, GcpError};
use crate::lb::naming::MARKER;

/// Why bootstrap or teardown failed. Google's code, reason and message are kept
/// in [`StackError::Gcp`].
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The configuration cannot describe a stack.
    #[error("{0}")]
    Config(String),
    /// A Google API call failed.
    #[error("{what}: {source}")]
    Gcp {
        what: String,
        #[source]
        source: Box<GcpError>,
    },
    /// The Cloud Run service the stack fronts does not exist in `stack.region`.
    #[error("{}", run_missing(.service, .region, .elsewhere))]
    RunServiceMissing {
        service: String,
        region: String,
        /// Regions where a service of that name does exist.
        elsewhere: Vec<String>,
    },
    /// Resources that exist but differ in ways the API cannot change in place.
    #[error("bootstrap stopped: {} cannot be fixed in place:\n{}", if .0.len() == 1 { "one resource" } else { "some resources" }, .0.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n"))]
    Unfixable(Vec<String>),
    /// The certificate source could not provide the first certificate.
    #[error("the first certificate: {0}")]
    Certificate(String),
    /// Applying the plan did not reach a stack that plans nothing.
    #[error("the stack did not converge after {rounds} rounds; still to do:\n{remaining}")]
    NotConverged { rounds: u32, remaining: String },
}

fn run_missing(service: &str, region: &str, elsewhere: &[String]) -> String {
    if elsewhere.is_empty() {
        format!(
            "Cloud Run service {service} does not exist in region {region}: deploy it first (gcloud run deploy {service} --region {region} ...), or set stack.service / stack.region to the service the load balancer should front"
        )
    } else {
        format!(
            "Cloud Run service {service} is not in region {region} but in {}: set stack.region = \"{}\" (the serverless NEG must be in the service's region)",
            elsewhere.join(", "),
            elsewhere[0]
        )
    }
}

pub(crate) fn gcp_err(what: impl Into<String>) -> impl FnOnce(GcpError) -> StackError {
    let what = what.into();
    move |source| StackError::Gcp {
        what,
        source: Box::new(source),
    }
}

/// An OAuth client secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[censored]")
    }
}

impl Secret {
    /// Lower-case hex SHA-256, as Compute reports `oauth2ClientSecretSha256`.
    pub fn sha256(&self) -> String {
        sha2::Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// IAP as the stack wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredIap {
    pub enabled: bool,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// Members granted `roles/iap.httpsResourceAccessor`.
    pub members: Vec<String>,
}

/// The stack the configuration describes, names resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub project: String,
    pub region: String,
    /// The Cloud Run service.
    pub service: String,
    /// Names users reach the service at (no trailing dot).
    pub domains: Vec<String>,
    /// The `[[certificates]]` name our sslCertificates are named and marked by.
    pub certificate: String,
    /// `stack.certificate_map`: the HTTPS proxy serves this Certificate
    /// Manager map (location `global`) instead of `sslCertificates`.
    pub certificate_map: Option<String>,
    /// Managed zone of the domains, when configured (else discovered).
    pub zone: Option<String>,
    pub scheme: Scheme,
    pub http_redirect: bool,
    pub manage_dns: bool,
    /// TTL of the A records we write.
    pub dns_ttl: u32,
    pub iap: DesiredIap,
    pub names: ResolvedNames,
}

/// IAP's role for users who may pass.
pub const IAP_ACCESSOR_ROLE: &str = "roles/iap.httpsResourceAccessor";
/// Cloud Run's role for who may invoke the service.
pub const RUN_INVOKER_ROLE: &str = "roles/run.invoker";
/// The A record TTL when writing DNS.
pub const DEFAULT_A_TTL: u32 = 300;

impl Desired {
    /// The stack of `config.stack` in `project`; reads the OAuth secret file.
    pub fn from_config(config: &Config, project: &str) -> Result<Desired, StackError> {
        let Some(s) = &config.stack else {
            return Err(StackError::Config(
                "the configuration has no [stack] section: add one (see config/example.toml) to say which Cloud Run service, region and domains the load balancer serves".into(),
            ));
        };
        Desired::new(s, config, project)
    }

    fn new(s: &StackConfig, config: &Config, project: &str) -> Result<Desired, StackError> {
        let cert = match &s.certificate {
            Some(n) => Some(config.certificate(n).ok_or_else(|| {
                StackError::Config(format!(
                    "stack.certificate = \"{n}\" names no [[certificates]] entry"
                ))
            })?),
            None => config.certificates.first(),
        };
        let domains = if s.domains.is_empty() {
            cert.map(|c| c.domains.clone()).unwrap_or_default()
        } else {
            s.domains.clone()
        };
        if domains.is_empty() {
            return Err(StackError::Config(
                "the stack has no domains: set stack.domains, or add a [[certificates]] entry whose domains it serves".into(),
            ));
        }
        let client_secret = match &s.iap.oauth_client_secret_file {
            Some(f) => Some(read_secret(f)?),
            None => None,
        };
        Ok(Desired {
            project: project.to_string(),
            region: s.region.clone(),
            service: s.service.clone(),
            domains,
            certificate: cert
                .map(|c| c.name.clone())
                .unwrap_or_else(|| s.service.clone()),
            certificate_map: s.certificate_map.clone(),
            zone: cert.and_then(|c| c.zone.clone()),
            scheme: s.load_balancing_scheme,
            http_redirect: s.http_redirect,
            manage_dns: s.manage_dns,
            dns_ttl: DEFAULT_A_TTL,
            iap: DesiredIap {
                enabled: s.iap.enabled,
                client_id: s.iap.oauth_client_id.clone(),
                client_secret,
                members: s.iap.members.clone(),
            },
            names: s.names(),
        })
    }

    /// The canonical URL of a global resource (`collection` as in the path).
    pub fn link(&self, collection: &str, name: &str) -> String {
        format!(
            "https://www.googleapis.com/compute/v1/projects/{}/global/{collection}/{name}",
            self.project
        )
    }

    /// The canonical URL of the serverless NEG.
    pub fn neg_link(&self) -> String {
        format!(
            "https://www.googleapis.com/compute/v1/projects/{}/regions/{}/networkEndpointGroups/{}",
            self.project, self.region, self.names.neg
        )
    }

    /// The `description` of every resource we create for this stack.
    pub fn marker(&self) -> String {
        format!(
            "{MARKER} stack={} (created by gclb-acme bootstrap; gclb-acme teardown deletes it)",
            self.service
        )
    }

    /// Whether a description marks a resource as created by this stack.
    pub fn is_marked(&self, description: Option<&str>) -> bool {
        let want = format!("stack={}", self.service);
        description
            .and_then(|d| d.strip_prefix(MARKER))
            .is_some_and(|rest| rest.split_whitespace().any(|w| w == want))
    }

    /// `https://domain/` for each domain.
    pub fn urls(&self) -> Vec<String> {
        self.domains
            .iter()
            .map(|d| format!("https://{d}/"))
            .collect()
    }
}

fn read_secret(f: &Path) -> Result<Secret, StackError> {
    let text = std::fs::read_to_string(f).map_err(|e| {
        StackError::Config(format!(
            "cannot read the OAuth client secret file {}: {e}",
            f.display()
        ))
    })?;
    let t = text.trim();
    if t.is_empty() {
        return Err(StackError::Config(format!(
            "the OAuth client secret file {} is empty",
            f.display()
        )));
    }
    Ok(Secret(t.to_string()))
}

/// How to run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Observe and print the plan; change nothing.
    pub dry_run: bool,
    /// Print nothing to stdout (progress goes to tracing only).
    pub quiet: bool,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The first plan, as printed.
    pub planned: Vec<String>,
    /// Actions executed, in order.
    pub applied: Vec<String>,
    /// Notes: foreign resources used or left alone, records to create by hand.
    pub notes: Vec<String>,
    /// The load balancer's IP, when the address exists.
    pub ip: Option<String>,
    /// Wall time of the whole run.
    pub elapsed: std::time::Duration,
    /// sslCertificates (and Certificate Manager certificates) this run
    /// deleted (teardown).
    pub deleted_certificates: Vec<String>,
    /// State-directory files teardown removed because they described a
    /// certificate it deleted.
    pub forgotten: Vec<String>,
}

pub(crate) struct Out {
    quiet: bool,
}

impl Out {
    pub(crate) fn line(&self, s: &str) {
        // The terminal gets the line once; logs get it at debug level.
        tracing::debug!(target: "gclb_acme::stack", "{s}");
        if !self.quiet {
            crate::progress::println(s);
        }
    }
}

/// Builds (or repairs) the stack. With `dry_run`, prints the plan and changes
/// nothing. A complete stack plans nothing and makes no mutation.
pub async fn bootstrap<C: CertificateSource>(
    gcp: &Gcp,
    desired: &Desired,
    certs: &C,
    opts: Options,
) -> Result<Report, StackError> {
    let started = Instant::now();
    let out = Out { quiet: opts.quiet };
    let mut report = Report::default();
    let mut observed = observe::observe(gcp, desired, false).await?;
    let p = plan::plan(desired, &observed)?;
    report.planned = p.actions.iter().map(|a| a.to_string()).collect();
    for n in &p.notes {
        out.line(&format!("note: {n}"));
    }
    report.notes = p.notes.clone();
    if opts.dry_run {
        dry_run(&p, "dry run: the stack is complete; nothing to do", &out);
        report
            .notes
            .extend(takeover::run(gcp, desired, certs, &out, true).await?);
        report.ip = observed.ip();
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    if p.actions.is_empty() {
        out.line("the stack is complete; nothing to do");
    }
    let ip = observed.ip();
    if let Some(last) = converge(gcp, desired, p, ip, certs, &out, &mut report, || async {
        let observed = observe::observe(gcp, desired, false).await?;
        let p = plan::plan(desired, &observed)?;
        Ok((observed, p))
    })
    .await?
    {
        observed = last;
    }
    // Hand-made certificates on a proxy bootstrap found (not created) give up
    // their slot, as the first renewal would.
    report
        .notes
        .extend(takeover::run(gcp, desired, certs, &out, false).await?);
    report.ip = observed.ip();
    report.elapsed = started.elapsed();
    summary(desired, &observed, &report, &out);
    Ok(report)
}

/// The bootstrap plan's actions as of now (observe, then plan), for callers
/// that apply them one at a time ([`apply_one`]) and look in between.
pub async fn plan_steps(gcp: &Gcp, desired: &Desired) -> Result<Vec<Action>, StackError> {
    let observed = observe::observe(gcp, desired, false).await?;
    Ok(plan::plan(desired, &observed)?.actions)
}

/// Applies one action of [`plan_steps`] on its own (quietly). Actions that
/// take what an earlier one produced (the IP of a new address, the first
/// certificate) need the whole run: [`bootstrap`].
pub async fn apply_one<C: CertificateSource>(
    gcp: &Gcp,
    desired: &Desired,
    action: &Action,
    certs: &C,
) -> Result<(), StackError> {
    let mut ctx = apply::Ctx::new(None);
    apply::run(gcp, desired, action, &mut ctx, certs, &Out { quiet: true }).await
}

/// Prints what a dry run would do.
fn dry_run(p: &Plan, nothing: &str, out: &Out) {
    if p.actions.is_empty() {
        out.line(nothing);
        return;
    }
    out.line(&format!(
        "dry run: {} action(s) would run:",
        p.actions.len()
    ));
    for (i, a) in p.actions.iter().enumerate() {
        out.line(&format!("  {:>2}. {a}", i + 1));
    }
}

/// Applies `p`, observes and plans again with `replan`, until nothing is left to
/// do; gives up after three rounds. Returns the last observation (`None` when
/// `p` was empty).
#[allow(clippy::too_many_arguments)]
async fn converge<C, F, Fut>(
    gcp: &Gcp,
    desired: &Desired,
    mut p: Plan,
    ip: Option<String>,
    certs: &C,
    out: &Out,
    report: &mut Report,
    mut replan: F,
) -> Result<Option<ObservedStack>, StackError>
where
    C: CertificateSource,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(ObservedStack, Plan), StackError>>,
{
    let mut ctx = apply::Ctx::new(ip);
    let mut last = None;
    let mut rounds = 0;
    while !p.actions.is_empty() {
        rounds += 1;
        if rounds > 3 {
            return Err(StackError::NotConverged {
                rounds: rounds - 1,
                remaining: p
                    .actions
                    .iter()
                    .map(|a| format!("  - {a}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        for a in &p.actions {
            apply::run(gcp, desired, a, &mut ctx, certs, out).await?;
            report.applied.push(a.to_string());
            if let Action::Delete {
                what: Target::Global(crate::gcp::stack_resources::Collection::SslCertificates),
                name,
            } = a
            {
                report.deleted_certificates.push(name.clone());
            }
            if let Action::DeleteCmCertificate { id } = a {
                report.deleted_certificates.push(id.clone());
            }
        }
        let (observed, next) = replan().await?;
        last = Some(observed);
        p = next;
    }
    Ok(last)
}

fn summary(d: &Desired, o: &ObservedStack, r: &Report, out: &Out) {
    let ip = r.ip.clone().unwrap_or_else(|| "(unknown)".into());
    out.line(&format!(
        "done in {:.1}s ({} change(s))",
        r.elapsed.as_secs_f64(),
        r.applied.len()
    ));
    out.line(&format!("  load balancer IP: {ip}"));
    for u in d.urls() {
        out.line(&format!("  URL: {u}"));
    }
    if d.manage_dns {
        for dn in &o.dns {
            out.line(&format!(
                "  DNS: {}. A {ip} (zone {})",
                dn.domain,
                dn.zone.as_deref().unwrap_or("?")
            ));
        }
    } else {
        out.line("  DNS is not managed (stack.manage_dns = false): create these records yourself:");
        for dn in &d.domains {
            out.line(&format!("    {dn}. {} IN A {ip}", d.dns_ttl));
        }
    }
    out.line("  Google's edge can take some minutes (often 10-20) to serve a new certificate and load balancer: until then, expect TLS errors or 404s.");
}

/// Removes what bootstrap created (only resources carrying our marker, our DNS
/// records, the IAM members we added). With `dry_run`, prints the plan only.
/// Leaves the state directory alone: see [`teardown_with_state`].
pub async fn teardown(gcp: &Gcp, desired: &Desired, opts: Options) -> Result<Report, StackError> {
    teardown_with_state(gcp, desired, opts, None).await
}

/// [`teardown`], then forgets in `state` what it deleted: an issued certificate
/// still waiting there to be installed whose sslCertificate teardown removed
/// would otherwise be installed again by the next bootstrap or renew.
pub async fn teardown_with_state(
    gcp: &Gcp,
    desired: &Desired,
    opts: Options,
    state: Option<&crate::state::StateDir>,
) -> Result<Report, StackError> {
    let mut report = teardown_gcp(gcp, desired, opts).await?;
    if let Some(state) = state
        && !opts.dry_run
    {
        report.forgotten =
            cert::forget_deleted(state, &desired.certificate, &report.deleted_certificates).await?;
    }
    Ok(report)
}

async fn teardown_gcp(gcp: &Gcp, desired: &Desired, opts: Options) -> Result<Report, StackError> {
    let started = Instant::now();
    let out = Out { quiet: opts.quiet };
    let mut report = Report::default();
    let observed = observe::observe(gcp, desired, true).await?;
    let p = plan::teardown_plan(desired, &observed);
    report.planned = p.actions.iter().map(|a| a.to_string()).collect();
    report.notes = p.notes.clone();
    report.ip = observed.ip();
    for n in &p.notes {
        out.line(&format!("note: {n}"));
    }
    if opts.dry_run {
        dry_run(&p, "dry run: nothing of ours to remove", &out);
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    if p.actions.is_empty() {
        out.line("nothing of ours to remove");
    }
    let certs = ReuseExisting::new(gcp.clone(), desired);
    converge(
        gcp,
        desired,
        p,
        observed.ip(),
        &certs,
        &out,
        &mut report,
        || async {
            let observed = observe::observe(gcp, desired, true).await?;
            let p = plan::teardown_plan(desired, &observed);
            Ok((observed, p))
        },
    )
    .await?;
    report.elapsed = started.elapsed();
    out.line(&format!(
        "teardown done in {:.1}s ({} change(s))",
        report.elapsed.as_secs_f64(),
        report.applied.len()
    ));
    Ok(report)
}
