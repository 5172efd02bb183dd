//! Upload, swap, verify, clean up: the I/O half of installing one issued
//! certificate. Each step first reads what GCP holds and does only what is
//! missing, so a run that resumes after a crash at any point converges.

use std::collections::{HashMap, HashSet};

use crate::acme::IssuedCertificate;
use crate::acme::store::normalize_names;
use crate::config::CertificateConfig;
use crate::gcp::compute::{NewSslCertificate, SelfManaged, TargetHttpsProxy, name_of};
use crate::gcp::{Gcp, GcpError, request_id};
use crate::lb::observe::served_from;
use crate::lb::options::{HandMade, InstallOptions, InstallReport, step};
use crate::lb::proxies::{self, Rewrite};
use crate::lb::takeover::{self, Listed};
use crate::lb::target::{CertificateTarget, Upload};
use crate::lb::verify;
use crate::lb::{LbError, Observation, left_behind, naming, observe};

/// The first implementation: Compute `sslCertificates` resources listed on
/// target HTTPS proxies (`setSslCertificates`).
pub struct SslCertificates<'a> {
    pub gcp: &'a Gcp,
}

impl CertificateTarget for SslCertificates<'_> {
    type Run = Run;
    type Project = left_behind::Project;

    async fn observe(&self, cert: &CertificateConfig) -> Result<Observation, LbError> {
        observe::observe(self.gcp, cert).await
    }

    async fn left_behind(
        &self,
        cert: &CertificateConfig,
        project: &left_behind::Project,
    ) -> Result<Vec<left_behind::LeftBehind>, left_behind::LeftBehindError> {
        left_behind::left_behind(self.gcp, cert, project).await
    }

    async fn upload(
        &self,
        cert: &CertificateConfig,
        what: Upload<'_>,
        observed: Option<&Observation>,
        opts: &InstallOptions,
    ) -> Result<Run, LbError> {
        let gcp = self.gcp;
        match what {
            Upload::Issued(issued) => {
                let resource =
                    naming::certificate_resource_name(&cert.name, &issued.leaf.sha256_hex);
                let mut run = Run::prepare(gcp, cert, &resource, observed).await?;
                let (uploaded, ours) = upload_listing(gcp, cert, issued, &resource, opts).await?;
                run.report.uploaded = uploaded;
                run.ours = Some(ours);
                run.expect = Some((issued.names.clone(), issued.leaf.serial_hex.clone()));
                Ok(run)
            }
            Upload::Uploaded(resource) => Run::prepare(gcp, cert, resource, observed).await,
        }
    }

    async fn attach(
        &self,
        cert: &CertificateConfig,
        run: &mut Run,
        opts: &InstallOptions,
    ) -> Result<(), LbError> {
        let links = run.swap_all(self.gcp, cert, opts).await?;
        if let (Some(v), Some((names, serial))) = (&opts.verify, &run.expect) {
            run.report.verify = verify::verify_proxies(self.gcp, &links, names, serial, v).await;
        }
        Ok(())
    }

    async fn clean_up(
        &self,
        cert: &CertificateConfig,
        run: Run,
        opts: &InstallOptions,
    ) -> Result<InstallReport, LbError> {
        run.finish(self.gcp, cert, opts).await
    }
}

/// One installation on target HTTPS proxies under way.
pub struct Run {
    new_url: String,
    cache: HashMap<String, Listed>,
    superseded: Vec<HandMade>,
    /// The names and serial TLS must show after the swap (a fresh upload only).
    expect: Option<(Vec<String>, String)>,
    /// Every certificate of ours for this entry the upload's list found
    /// (`None`: not listed, clean-up lists them itself).
    ours: Option<Vec<String>>,
    report: InstallReport,
}

impl Run {
    /// Checks every proxy and refuses before uploading anything when one cannot
    /// take the certificate, so a refusal leaves no unused certificate behind.
    ///
    /// With `observed` (what this renewal read at its start, under the entry's
    /// lock), nothing is read again here: the proxies and the certificates they
    /// list are taken from it. A proxy changed by hand since then (minutes at
    /// most) is caught by the swap, which reads each proxy right before its
    /// update; the upload then waits, ours, in pending/ for the next run.
    async fn prepare(
        gcp: &Gcp,
        cert: &CertificateConfig,
        resource: &str,
        observed: Option<&Observation>,
    ) -> Result<Run, LbError> {
        let mut run = Run {
            new_url: gcp.global_link("sslCertificates", resource),
            cache: HashMap::new(),
            superseded: Vec::new(),
            expect: None,
            ours: None,
            report: InstallReport {
                resource: resource.to_string(),
                ..InstallReport::default()
            },
        };
        for proxy in &cert.target_https_proxies {
            let seen = observed.and_then(|o| o.proxies.iter().find(|p| &p.name == proxy));
            let p = match seen {
                Some(seen) => {
                    if let Some(map) = &seen.certificate_map {
                        return Err(LbError::CertificateMap {
                            proxy: proxy.clone(),
                            map: map.clone(),
                        });
                    }
                    for c in &seen.certificates {
                        run.cache.insert(c.name.clone(), c.listed());
                    }
                    TargetHttpsProxy {
                        name: seen.name.clone(),
                        self_link: seen.self_link.clone(),
                        ssl_certificates: seen.certificates.iter().map(|c| c.url.clone()).collect(),
                        ..TargetHttpsProxy::default()
                    }
                }
                None => get_proxy(gcp, cert, proxy).await?,
            };
            let (_, t) = rewrite_for(gcp, cert, &p, &run.new_url, &mut run.cache).await?;
            for name in &t.superseded {
                match run.superseded.iter_mut().find(|h| &h.name == name) {
                    Some(h) => h.taken_off.push(proxy.clone()),
                    None => run.superseded.push(HandMade {
                        name: name.clone(),
                        taken_off: vec![proxy.clone()],
                        ..HandMade::default()
                    }),
                }
            }
            for c in t.competing {
                tracing::warn!(certificate = %cert.name, proxy, competing = %c.certificate, shared = %c.shared.join(","), "{c}");
                run.report.competing.push(c);
            }
        }
        Ok(run)
    }

    /// Swaps on every proxy at once (each its own read, update and operation:
    /// proxies are independent, and each update takes seconds); returns each
    /// proxy's self link. A proxy whose swap fails keeps its old certificate,
    /// which clean-up then never runs to delete: every failure is logged with
    /// its proxy, and the first is returned.
    async fn swap_all(
        &mut self,
        gcp: &Gcp,
        cert: &CertificateConfig,
        opts: &InstallOptions,
    ) -> Result<Vec<(String, String)>, LbError> {
        let results =
            futures_util::future::join_all(cert.target_https_proxies.iter().map(|proxy| {
                let mut cache = self.cache.clone();
                let new_url = self.new_url.as_str();
                async move { swap(gcp, cert, proxy, new_url, &mut cache, opts).await }
            }))
            .await;
        let mut links = Vec::new();
        let mut first_error = None;
        for (proxy, r) in cert.target_https_proxies.iter().zip(results) {
            match r {
                Ok(s) => {
                    if s.changed {
                        self.report.swapped.push(proxy.clone());
                    }
                    links.push((proxy.clone(), s.self_link));
                }
                Err(e) => {
                    tracing::warn!(certificate = %cert.name, proxy, error = %e, "the swap failed on this proxy: it keeps serving its certificate; nothing is deleted");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(links),
        }
    }

    /// Deletes our superseded certificates, then hands the hand-made ones over.
    async fn finish(
        mut self,
        gcp: &Gcp,
        cert: &CertificateConfig,
        opts: &InstallOptions,
    ) -> Result<InstallReport, LbError> {
        self.report.deleted = match self.ours.take() {
            Some(ours) => delete_unused(gcp, &cert.name, &self.report.resource, ours, opts).await?,
            None => cleanup(gcp, &cert.name, &self.report.resource, opts).await?,
        };
        hand_over(gcp, cert, &mut self.superseded, &mut self.report, opts).await?;
        self.report.superseded = self.superseded;
        Ok(self.report)
    }
}

/// After the new certificate is served everywhere: deletes the adopted
/// hand-made certificates that may go, and says of every hand-made one taken
/// off a proxy where it stands and how to delete it.
async fn hand_over(
    gcp: &Gcp,
    cert: &CertificateConfig,
    superseded: &mut [HandMade],
    report: &mut InstallReport,
    opts: &InstallOptions,
) -> Result<(), LbError> {
    if superseded.is_empty() && cert.adopt.is_empty() {
        return Ok(());
    }
    let names = normalize_names(&cert.domains);
    let proxies = gcp.list_target_https_proxies().await?;
    let served_by = |name: &str| -> Vec<String> {
        proxies
            .iter()
            .filter(|p| p.ssl_certificates.iter().any(|u| name_of(u) == name))
            .map(|p| p.name.clone())
            .collect()
    };
    for adopted in &cert.adopt {
        let Some(c) = gcp.get_ssl_certificate(adopted).await? else {
            // Deleted already (by an earlier run, or by hand).
            continue;
        };
        let listed = served_from(&cert.name, "", c).listed();
        let by = served_by(adopted);
        match takeover::may_delete_adopted(&names, &cert.target_https_proxies, &listed, &by) {
            Ok(()) => {
                delete(gcp, adopted, opts).await?;
                tracing::info!(certificate = %cert.name, deleted = %adopted, "deleted the adopted hand-made certificate: the new one is served in its place everywhere");
                report.adopted_deleted.push(adopted.clone());
                if let Some(h) = superseded.iter_mut().find(|h| &h.name == adopted) {
                    h.deleted = true;
                }
                opts.at(&step::deleted(adopted))?;
            }
            Err(refusal) => {
                tracing::warn!(certificate = %cert.name, adopted = %adopted, "{refusal}");
                report.adoption_refused.push(refusal.to_string());
            }
        }
    }
    for h in superseded.iter_mut().filter(|h| !h.deleted) {
        h.still_served_by = served_by(&h.name);
        h.delete_command = Some(takeover::delete_command(&gcp.project, &h.name));
        tracing::warn!(certificate = %cert.name, hand_made = %h.name, "{h}");
    }
    Ok(())
}

/// Uploads the certificate as `resource` unless it is already there; returns
/// whether it did. Bootstrap uses it alone (the proxy does not exist yet).
pub(crate) async fn upload(
    gcp: &Gcp,
    cert: &CertificateConfig,
    issued: &IssuedCertificate,
    resource: &str,
    opts: &InstallOptions,
) -> Result<bool, LbError> {
    upload_listing(gcp, cert, issued, resource, opts)
        .await
        .map(|(uploaded, _)| uploaded)
}

/// [`upload`], also returning every certificate of ours for `cert` that
/// existed before it (the candidates clean-up deletes once the new one is
/// served).
///
/// One list of the entry's names answers both questions the upload asks
/// first: is `resource` there already (a resumed run; or, refused, a
/// certificate with our name that is not ours), and which of ours exist.
/// Clean-up reuses the list: under the entry's lock nothing else creates
/// certificates of this entry, and one deleted by hand meanwhile is simply
/// gone when clean-up deletes it.
///
/// The `SSL_CERTIFICATES` quota is not read first: the insert is the first
/// thing sent, and Compute refuses it on a full quota (403 `quotaExceeded`,
/// or `QUOTA_EXCEEDED` inside its operation) without creating anything, which
/// is what a read beforehand bought. That refusal becomes [`LbError::Quota`].
async fn upload_listing(
    gcp: &Gcp,
    cert: &CertificateConfig,
    issued: &IssuedCertificate,
    resource: &str,
    opts: &InstallOptions,
) -> Result<(bool, Vec<String>), LbError> {
    let sha = &issued.leaf.sha256_hex;
    let listed = list_ours(gcp, &cert.name).await?;
    let ours: Vec<String> = listed
        .iter()
        .filter(|c| {
            c.name != resource && naming::is_ours(&cert.name, &c.name, c.description.as_deref())
        })
        .map(|c| c.name.clone())
        .collect();
    // A resumed run finds its own upload and sends nothing.
    if let Some(existing) = listed.iter().find(|c| c.name == resource) {
        return ours_with_hash(&cert.name, existing, sha).map(|_| (false, ours));
    }
    let body = NewSslCertificate {
        name: resource.to_string(),
        description: naming::certificate_description(&cert.name, sha),
        cert_type: "SELF_MANAGED",
        self_managed: SelfManaged {
            certificate: issued.chain_pem.clone(),
            private_key: issued.key_pem.expose().to_string(),
        },
    };
    // A fresh requestId per run and attempt, never one derived from the
    // certificate alone: a certificate uploaded, deleted (teardown, by hand)
    // and uploaded again under the same id gets the first upload's DONE
    // operation back and nothing is created (issue #20). Nothing is lost by
    // it: the name, derived from the leaf, is the idempotency key, so an insert
    // repeated after a crash meets alreadyExists and finds the certificate
    // ours. Hence no read-back after DONE either: a new id cannot be a replay.
    let run: u64 = rand::random();
    let run = format!("{run:016x}");
    let mut attempt = 0;
    loop {
        let n = attempt.to_string();
        let rid = request_id(&[resource, "insert", sha, &run, &n]);
        // Synchronously (409) or inside the operation (RESOURCE_ALREADY_EXISTS):
        // an insert of ours from a stopped run got there first, or someone
        // else's certificate has our name.
        let exists =
            |e: &GcpError| e.is(409, "alreadyExists") || e.is(409, "RESOURCE_ALREADY_EXISTS");
        let result = match gcp.insert_ssl_certificate(&body, &rid).await {
            Ok(op) => {
                opts.at(step::INSERT_REQUESTED)?;
                gcp.wait_operation(op, opts.operation_timeout).await
            }
            Err(e) if exists(&e) => Err(e),
            Err(e) if quota_exceeded(&e) => return Err(quota_error(gcp, e)),
            // Refused outright (the client has retried what it retries).
            Err(e) => return Err(e.into()),
        };
        match result {
            Err(e) if quota_exceeded(&e) => return Err(quota_error(gcp, e)),
            Ok(_) => {
                opts.at(step::INSERT_DONE)?;
                return Ok((true, ours));
            }
            Err(e) if exists(&e) => {
                return match gcp.get_ssl_certificate(resource).await? {
                    Some(existing) => {
                        ours_with_hash(&cert.name, &existing, sha).map(|_| (true, ours))
                    }
                    None => Err(e.into()),
                };
            }
            Err(e) if e.is_retryable() && !matches!(e, GcpError::Timeout { .. }) => {
                tracing::warn!(certificate = %cert.name, resource, attempt, error = %e, "sslCertificates.insert failed inside its operation; retrying");
                attempt = next_attempt(attempt, opts.attempts, e, || {
                    format!("uploading {resource}")
                })?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Every certificate whose name has the shape of `cert_name`'s (ours or
/// look-alikes: the caller checks [`naming::is_ours`]).
async fn list_ours(
    gcp: &Gcp,
    cert_name: &str,
) -> Result<Vec<crate::gcp::compute::SslCertificate>, GcpError> {
    gcp.list_ssl_certificates(Some(&format!("name eq {cert_name}-.*")))
        .await
}

/// After attempt `attempt` (from 0) of `attempts` failed with the transient
/// error `e`: the next attempt's number, or, when none is left, the error
/// giving up, which carries `e` (Google's code, reason and message).
fn next_attempt(
    attempt: u32,
    attempts: u32,
    e: GcpError,
    what: impl FnOnce() -> String,
) -> Result<u32, LbError> {
    if attempt + 1 < attempts.max(1) {
        Ok(attempt + 1)
    } else {
        Err(LbError::GaveUp {
            what: what(),
            attempts,
            last: Box::new(e),
        })
    }
}

fn ours_with_hash(
    cert_name: &str,
    existing: &crate::gcp::compute::SslCertificate,
    sha: &str,
) -> Result<(), LbError> {
    let hash_ok = existing
        .description
        .as_deref()
        .and_then(naming::parse_description)
        .is_some_and(|(_, h)| h == sha);
    if hash_ok && naming::is_ours(cert_name, &existing.name, existing.description.as_deref()) {
        Ok(())
    } else {
        Err(LbError::NameTaken {
            name: existing.name.clone(),
        })
    }
}

/// Whether `e` is Compute refusing an insert on a full resource quota: 403
/// `quotaExceeded` from the call, `QUOTA_EXCEEDED` inside its operation. (A
/// full *rate* quota is `rateLimitExceeded`, which the client retries.)
fn quota_exceeded(e: &GcpError) -> bool {
    e.is(403, "quotaExceeded") || e.is(403, "QUOTA_EXCEEDED")
}

/// The clear error for an upload refused on a full quota, Google's answer kept.
fn quota_error(gcp: &Gcp, e: GcpError) -> LbError {
    LbError::Quota {
        project: gcp.project.clone(),
        source: Box::new(e),
    }
}

/// What the takeover rules need of the certificate `name` (read once per run).
async fn listed_cached(
    gcp: &Gcp,
    cert_name: &str,
    name: &str,
    url: &str,
    cache: &mut HashMap<String, Listed>,
) -> Result<Listed, GcpError> {
    if let Some(v) = cache.get(name) {
        return Ok(v.clone());
    }
    let listed = match gcp.get_ssl_certificate(name).await? {
        Some(c) => served_from(cert_name, url, c).listed(),
        None => Listed {
            name: name.to_string(),
            exists: false,
            ours: false,
            marked: false,
            sans: Vec::new(),
        },
    };
    cache.insert(name.to_string(), listed.clone());
    Ok(listed)
}

async fn get_proxy(
    gcp: &Gcp,
    cert: &CertificateConfig,
    proxy: &str,
) -> Result<TargetHttpsProxy, LbError> {
    let p = match gcp.get_target_https_proxy(proxy).await {
        Ok(p) => p,
        Err(e) if e.is_not_found() => {
            return Err(LbError::ProxyNotFound {
                proxy: proxy.to_string(),
                certificate: cert.name.clone(),
                project: gcp.project.clone(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(map) = p.certificate_map.as_deref().filter(|m| !m.is_empty()) {
        return Err(LbError::CertificateMap {
            proxy: proxy.to_string(),
            map: map.to_string(),
        });
    }
    Ok(p)
}

/// The proxy's new list: our superseded certificates of this config, and
/// hand-made ones the new certificate fully covers, replaced in place.
async fn rewrite_for(
    gcp: &Gcp,
    cert: &CertificateConfig,
    p: &TargetHttpsProxy,
    new_url: &str,
    cache: &mut HashMap<String, Listed>,
) -> Result<(Rewrite, takeover::ProxyTakeover), LbError> {
    let new_name = name_of(new_url);
    let mut listed = Vec::with_capacity(p.ssl_certificates.len());
    for url in &p.ssl_certificates {
        let n = name_of(url);
        listed.push(if n == new_name {
            Listed {
                name: n.to_string(),
                exists: true,
                ours: true,
                marked: true,
                sans: Vec::new(),
            }
        } else {
            listed_cached(gcp, &cert.name, n, url, cache).await?
        });
    }
    let t = takeover::plan_proxy(&p.name, &normalize_names(&cert.domains), new_name, &listed);
    let gone: HashSet<&str> = t
        .replaced_ours
        .iter()
        .chain(&t.superseded)
        .map(String::as_str)
        .collect();
    let r = proxies::rewrite(&p.name, &p.ssl_certificates, new_url, |n| gone.contains(n))?;
    Ok((r, t))
}

/// What [`swap`] did on one proxy.
struct Swapped {
    changed: bool,
    self_link: String,
}

/// Puts `new_url` on `proxy` in place of our superseded certificate(s).
///
/// The proxy is read right before its update (the one read kept on this path:
/// the new list is computed from what the proxy holds now, not from what it
/// held when the renewal started). `setSslCertificates` carries a fresh
/// requestId per run and attempt: one derived from the list alone made a swap
/// on a proxy deleted and created again (same name, same list) a replay of
/// the first swap, answered with its DONE operation and not applied (issue
/// #20). Setting a list is idempotent, so a swap repeated after a crash needs
/// no replayed id either; and a new id cannot be a replay, so DONE without an
/// error means the list is set (no read-back). Verification (TLS) then checks
/// what is served.
async fn swap(
    gcp: &Gcp,
    cert: &CertificateConfig,
    proxy: &str,
    new_url: &str,
    cache: &mut HashMap<String, Listed>,
    opts: &InstallOptions,
) -> Result<Swapped, LbError> {
    let run: u64 = rand::random();
    let run = format!("{run:016x}");
    let mut attempt = 0;
    loop {
        let p = get_proxy(gcp, cert, proxy).await?;
        let (list, t) = match rewrite_for(gcp, cert, &p, new_url, cache).await? {
            (Rewrite::Unchanged, _) => {
                return Ok(Swapped {
                    changed: false,
                    self_link: p.self_link,
                });
            }
            (Rewrite::Set(list), t) => (list, t),
        };
        let joined = list.join(" ");
        let n = attempt.to_string();
        let rid = request_id(&[proxy, "setSslCertificates", &joined, &run, &n]);
        let op = gcp.set_ssl_certificates(proxy, &list, &rid).await?;
        match gcp.wait_operation(op, opts.operation_timeout).await {
            Ok(_) => {
                // Said from the list set, not assumed (issue #20).
                let names: Vec<String> = list.iter().map(|u| name_of(u).to_string()).collect();
                let placed = takeover::placement(proxy, &names, name_of(new_url), &t.competing);
                if t.competing.is_empty() {
                    tracing::info!(certificate = %cert.name, proxy, new = name_of(new_url), list = %names.join(","), "{placed}");
                } else {
                    tracing::warn!(certificate = %cert.name, proxy, new = name_of(new_url), list = %names.join(","), "{placed}");
                }
                opts.at(&step::swapped(proxy))?;
                return Ok(Swapped {
                    changed: true,
                    self_link: p.self_link,
                });
            }
            Err(e) if e.is_retryable() && !matches!(e, GcpError::Timeout { .. }) => {
                tracing::warn!(certificate = %cert.name, proxy, attempt, error = %e, "setSslCertificates failed inside its operation; retrying");
                attempt = next_attempt(attempt, opts.attempts, e, || {
                    format!("swapping the certificate on {proxy}")
                })?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Clean-up after an upload that listed the entry's certificates: deletes each
/// of `ours` (listed before the upload) except `keep`, without listing them
/// again. One that something still uses is kept: see [`delete_ours`]. This
/// runs after the new certificate is served, off the critical path.
async fn delete_unused(
    gcp: &Gcp,
    cert_name: &str,
    keep: &str,
    ours: Vec<String>,
    opts: &InstallOptions,
) -> Result<Vec<String>, LbError> {
    let mut users = Users::default();
    let mut deleted = Vec::new();
    for name in ours {
        if name == keep {
            continue;
        }
        if delete_ours(gcp, cert_name, &name, &mut users, opts).await? {
            deleted.push(name.clone());
            opts.at(&step::deleted(&name))?;
        }
    }
    Ok(deleted)
}

/// Deletes every certificate of ours for `cert_name`, except `keep`, that
/// nothing uses (a proxy not configured here may still serve one: it is kept,
/// see [`delete_ours`]). Returns the deleted names.
pub async fn cleanup(
    gcp: &Gcp,
    cert_name: &str,
    keep: &str,
    opts: &InstallOptions,
) -> Result<Vec<String>, LbError> {
    let candidates: Vec<String> = list_ours(gcp, cert_name)
        .await?
        .into_iter()
        .filter(|c| naming::is_ours(cert_name, &c.name, c.description.as_deref()))
        .map(|c| c.name)
        .collect();
    delete_unused(gcp, cert_name, keep, candidates, opts).await
}

/// The certificates the project's target HTTPS proxies list, read at most once
/// per clean-up, and only when Compute refuses a delete as "in use".
#[derive(Default)]
struct Users {
    listed: Option<HashMap<String, Vec<String>>>,
}

impl Users {
    /// The proxies of the project that list `name`.
    async fn of(&mut self, gcp: &Gcp, name: &str) -> Result<Vec<String>, LbError> {
        if self.listed.is_none() {
            let mut by: HashMap<String, Vec<String>> = HashMap::new();
            for p in gcp.list_target_https_proxies().await? {
                for u in &p.ssl_certificates {
                    by.entry(name_of(u).to_string())
                        .or_default()
                        .push(p.name.clone());
                }
            }
            self.listed = Some(by);
        }
        Ok(self
            .listed
            .as_ref()
            .and_then(|by| by.get(name).cloned())
            .unwrap_or_default())
    }
}

/// Deletes one superseded certificate of ours; `Ok(false)`: kept, a proxy of
/// the project still serves it.
///
/// Nothing is read first. Compute itself refuses to delete a certificate that
/// any resource uses (400 `resourceInUseByAnotherResource`, synchronously),
/// and that refusal is the guarantee: it covers every proxy of the project
/// (and target SSL proxies), at the moment of the delete, which a list read
/// beforehand did not. Only on that refusal are the proxies listed (once per
/// clean-up), to tell the two causes apart: a proxy (after the swaps, one not
/// configured for this certificate) still serves it (kept, like a certificate
/// someone else uses; a later clean-up tries again), or none does and the
/// refusal is a swap still settling (waited out with back-off, as before).
async fn delete_ours(
    gcp: &Gcp,
    cert_name: &str,
    name: &str,
    users: &mut Users,
    opts: &InstallOptions,
) -> Result<bool, LbError> {
    match delete_once(gcp, name, 0, opts).await {
        Ok(()) => {}
        Err(e) if e.is(400, "resourceInUseByAnotherResource") => {
            let by = users.of(gcp, name).await?;
            if !by.is_empty() {
                tracing::info!(certificate = cert_name, kept = name, served_by = %by.join(","), "superseded certificate kept: Compute refuses to delete it while a proxy serves it");
                return Ok(false);
            }
            delete_retrying(gcp, name, Some(e), opts).await?;
        }
        Err(e) => delete_retrying(gcp, name, Some(e), opts).await?,
    }
    tracing::info!(certificate = cert_name, deleted = %name, "deleted the superseded certificate");
    Ok(true)
}

/// One delete request and its operation; gone already is success.
async fn delete_once(
    gcp: &Gcp,
    name: &str,
    attempt: u32,
    opts: &InstallOptions,
) -> Result<(), GcpError> {
    // A delete is idempotent by itself (404 is done), so its id need not
    // survive a crash; a fixed one would get back the DONE operation of an
    // earlier delete of a certificate uploaded again since, and leave it.
    let run: u64 = rand::random();
    let rid = request_id(&[name, "delete", &attempt.to_string(), &format!("{run:016x}")]);
    let result = match gcp.delete_ssl_certificate(name, &rid).await {
        Ok(op) => gcp
            .wait_operation(op, opts.operation_timeout)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Deletes one certificate, waiting out "in use" and "not ready" (a proxy
/// update still settling) with bounded back-off; gone already is success.
async fn delete(gcp: &Gcp, name: &str, opts: &InstallOptions) -> Result<(), LbError> {
    delete_retrying(gcp, name, None, opts).await
}

/// [`delete`], after a first attempt that failed with `first` when given.
async fn delete_retrying(
    gcp: &Gcp,
    name: &str,
    first: Option<GcpError>,
    opts: &InstallOptions,
) -> Result<(), LbError> {
    let mut delay = opts.cleanup_initial;
    let attempts = opts.cleanup_attempts.max(1);
    let mut attempt = 0;
    let mut failed = first;
    loop {
        if let Some(e) = failed.take() {
            let waits = e.is(400, "resourceInUseByAnotherResource")
                || e.is(400, "resourceNotReady")
                || (e.is_retryable() && !matches!(e, GcpError::Timeout { .. }));
            if !waits {
                return Err(e.into());
            }
            tracing::info!(resource = name, attempt, delay_ms = delay.as_millis() as u64, error = %e, "cannot delete yet; retrying");
            attempt = next_attempt(attempt, attempts, e, || format!("deleting {name}"))?;
            let _step = crate::progress::Step::start(format!(
                "waiting to delete {name}, not free yet (attempt {} of {attempts})",
                attempt + 1
            ));
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
        match delete_once(gcp, name, attempt, opts).await {
            Ok(()) => return Ok(()),
            Err(e) => failed = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> GcpError {
        GcpError::Api(crate::gcp::ApiError {
            code: 503,
            reason: "backendError".into(),
            message: "try again".into(),
            status: "UNAVAILABLE".into(),
            request: "POST https://compute.googleapis.com/x".into(),
            needs: Box::default(),
        })
    }

    #[test]
    fn next_attempt_counts_up_then_gives_up_with_the_last_error() {
        assert_eq!(next_attempt(0, 3, transient(), || "x".into()).ok(), Some(1));
        assert_eq!(next_attempt(1, 3, transient(), || "x".into()).ok(), Some(2));
        match next_attempt(2, 3, transient(), || "uploading c".into()) {
            Err(LbError::GaveUp {
                what,
                attempts,
                last,
            }) => {
                assert_eq!((what.as_str(), attempts), ("uploading c", 3));
                assert!(last.is(503, "backendError"), "{last}");
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
    }

    #[test]
    fn next_attempt_with_zero_attempts_configured_still_made_one() {
        // `attempts = 0` makes one attempt (as `max(1)` always did), and
        // giving up after it names the configured figure.
        assert!(matches!(
            next_attempt(0, 0, transient(), || "x".into()),
            Err(LbError::GaveUp { attempts: 0, .. })
        ));
    }
}
