//! The second [`CertificateTarget`]: a Certificate Manager **certificate map**
//! (issue #16, docs/certificate-manager.md). A `[[certificates]]` entry with
//! `certificate_map` owns one self-managed certificate `gclb-acme-<name>`
//! ([`naming::cm_certificate_id`]), renewed by **patching it in place**, and one
//! map entry per configured domain ([`naming::map_entry_id`]; plus
//! [`naming::PRIMARY_ENTRY_ID`] with `primary = true`), all labelled
//! ([`naming::cm_labels`]).
//!
//! ```text
//! observe   proxies point at the map? || GET our entry per name (list the map only if one is missing)
//!           -> GET each certificate they use, and ours
//! upload    map missing? create || certificate missing? create : leaf differs? PATCH in place
//! attach    each entry not already serving only ours: GET -> create ours / patch ours / take over theirs
//! verify    TLS to the listed proxies' forwarding rules (as for sslCertificates)
//! cleanup   nothing of ours is superseded; adopted hand-made certificates no entry uses -> delete
//! ```
//!
//! # How the trait's contract reads for a map
//!
//! - **Frontends** are the map's entries for the configured names, not proxies:
//!   [`Observation::proxies`] holds one [`ProxyObservation`] per configured
//!   hostname (normalised order), named by the hostname, then one named
//!   `PRIMARY` when `primary = true`. Its `certificate_map` is the map id, its
//!   `self_link` the entry's full name (empty when there is no entry), its
//!   `certificates` those the entry lists. A missing map or entry is "nothing
//!   served" there, not an error: the first issuance creates them. The
//!   configured `target_https_proxies` (optional) must each exist and point at
//!   the map ([`LbError::ProxyNotFound`], [`LbError::MapNotOnProxy`]); they are
//!   what verification connects to.
//! - **Ours** is marked by labels, not by a name derived from the leaf: a
//!   certificate is ours when its id is `gclb-acme-<name>` and its labels are
//!   ours ([`naming::cm_is_ours`]); an entry likewise (its id is ours). The
//!   certificate's description is [`naming::certificate_description`] (the
//!   leaf's hash; patched together with the chain and key), so other
//!   configurations' certificates are recognised as gclb-acme's.
//! - **upload** creates the map when it is missing (labelled for this entry,
//!   the first one to need it), then our certificate when it is missing, else
//!   patches it in place (`updateMask=description,selfManaged`): the id is
//!   stable, so the upload is idempotent by its id and its content. The API
//!   takes no request id: a create answered 409 is read back and compared (ours
//!   with the same leaf: done; ours with another leaf: patched; not ours:
//!   [`LbError::NotOurs`], never overwritten); a patch repeated is the same
//!   patch. A renewal resumed after a crash reads the certificate and finds the
//!   new leaf there: nothing is sent.
//! - **attach** makes every configured name's entry list our certificate.
//!   Entries the observation shows listing exactly our certificate are not
//!   touched; entries it found missing are created without another read (the
//!   create is conditional: 409 is read back, and patched when it points
//!   elsewhere); the others are read right before their change: an
//!   entry of ours pointing elsewhere is patched to ours, and an entry someone
//!   else made for our hostname is **taken over** by the takeover rules
//!   (`lb::takeover`): its certificates our names fully cover are replaced by
//!   ours (reported, kept), those competing or unrelated stay beside ours, its
//!   labels stay theirs; nothing is ever deleted. An entry of another
//!   `[[certificates]]` of gclb-acme is never touched: observe refuses with
//!   [`LbError::EntryTaken`] before anything is issued.
//!   Patching in place never leaves a moment without a certificate: Google
//!   serves the old chain or the new one. Then, when verification is on and
//!   the certificate was just uploaded, the listed proxies are checked over
//!   TLS as `lb::verify` does for sslCertificates (the emulator terminates no
//!   TLS: its `/emulator/served` is the tests' oracle, not the product's).
//! - **left_behind** (for `status`): hand-made Certificate Manager certificates
//!   the configured names fully cover that no entry of the configured map uses
//!   (unused: with the delete command; or used by other maps' entries).
//! - **clean_up** deletes no certificate of ours: patch-in-place supersedes
//!   no certificate. After an issued certificate was installed it lists our
//!   entries by label (one read) and deletes those for names no longer
//!   configured (a domain removed, `primary` turned off): `report.deleted`
//!   holds their ids. Adopted hand-made certificates (`adopt`, exact Certificate
//!   Manager certificate ids) are deleted only when no entry uses them any more
//!   (`usedBy` empty), gclb-acme did not create them and our names cover
//!   theirs; every other hand-made certificate taken off an entry is reported
//!   with the `gcloud` command that deletes it.
//! - **Rollback**: the previous chain and key are not kept; a rollback is a
//!   new issuance. (The design keeps them in the state directory; that is not
//!   built yet.)
//! - **Mutations**: in steady state a renewal is exactly one Certificate
//!   Manager mutation (the patch); its reads are the proxies listed, one GET
//!   per entry and one per certificate those entries use, and clean-up's list
//!   of our entries.
//! - **Concurrency**: each entry is changed by one `[[certificates]]` only
//!   (configuration validation: a hostname belongs to one entry per map), so
//!   entries sharing a map never race; the map is created at most once (409 is
//!   success).

use std::collections::{BTreeMap, HashMap};

use crate::acme::store::normalize_names;
use crate::certs::{self};
use crate::config::CertificateConfig;
use crate::gcp::certificatemanager::{
    Certificate, CertificateMapEntry, CertificatePatch, EntryMatch, EntryPatch, MapFields,
    NewCertificate, NewMapEntry, SelfManaged, is_already_exists, is_in_use,
};
use crate::gcp::{Gcp, GcpError};
use crate::lb::observe::{ProxyObservation, ServedCertificate};
use crate::lb::options::{HandMade, InstallOptions, InstallReport, step};
use crate::lb::takeover::{self, Competitor, Fate, Listed, Overlap};
use crate::lb::target::{CertificateTarget, Upload};
use crate::lb::{LbError, Observation, left_behind, naming, verify};

/// The name of the PRIMARY entry's frontend in an [`Observation`].
pub const PRIMARY: &str = "PRIMARY";

/// The Certificate Manager implementation: a certificate patched in place and
/// its entries in a certificate map.
pub struct CertificateMaps<'a> {
    pub gcp: &'a Gcp,
}

/// One place of the map a `[[certificates]]` entry serves: a hostname's entry
/// or the PRIMARY entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    Host(String),
    Primary,
}

impl Slot {
    fn our_entry_id(&self) -> String {
        match self {
            Slot::Host(h) => naming::map_entry_id(h),
            Slot::Primary => naming::PRIMARY_ENTRY_ID.to_string(),
        }
    }

    fn label(&self) -> &str {
        match self {
            Slot::Host(h) => h,
            Slot::Primary => PRIMARY,
        }
    }

    fn matches(&self, e: &CertificateMapEntry) -> bool {
        match self {
            Slot::Host(h) => e
                .hostname
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(h)),
            Slot::Primary => e.is_primary(),
        }
    }

    fn entry_match(&self) -> EntryMatch {
        match self {
            Slot::Host(h) => EntryMatch::Hostname(h.clone()),
            Slot::Primary => EntryMatch::Primary,
        }
    }
}

fn slots(cert: &CertificateConfig) -> Vec<Slot> {
    let mut v: Vec<Slot> = normalize_names(&cert.domains)
        .into_iter()
        .map(Slot::Host)
        .collect();
    if cert.primary {
        v.push(Slot::Primary);
    }
    v
}

fn map_of(cert: &CertificateConfig) -> Result<&str, LbError> {
    cert.certificate_map
        .as_deref()
        .ok_or_else(|| LbError::MapNotConfigured {
            certificate: cert.name.clone(),
        })
}

fn id_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Whether the certificate `c` is ours for `[[certificates]]` `name`.
fn cert_is_ours(name: &str, c: &Certificate) -> bool {
    c.id() == naming::cm_certificate_id(name) && naming::cm_is_ours(name, &c.labels)
}

/// The refusal when `e`, the map's entry for `slot`, was created by gclb-acme
/// for another `[[certificates]]` entry.
fn taken(
    cert: &CertificateConfig,
    map: &str,
    slot: &Slot,
    e: &CertificateMapEntry,
) -> Option<LbError> {
    if naming::cm_is_ours(&cert.name, &e.labels) || !marked(&e.labels) {
        return None;
    }
    Some(LbError::EntryTaken {
        map: map.to_string(),
        entry: e.id().to_string(),
        hostname: slot.label().to_string(),
        owner: e
            .labels
            .get(naming::LABEL_CERTIFICATE)
            .cloned()
            .unwrap_or_else(|| "(unknown)".into()),
    })
}

/// Whether labels say gclb-acme created the resource (for any entry).
fn marked(labels: &BTreeMap<String, String>) -> bool {
    labels.get(naming::LABEL_MANAGED_BY.0).map(String::as_str) == Some(naming::LABEL_MANAGED_BY.1)
}

/// The leaf of a certificate's `pemCertificate`.
fn leaf_of(c: &Certificate) -> Option<certs::LeafInfo> {
    c.pem_certificate
        .as_deref()
        .and_then(|pem| certs::split_chain(pem).ok())
        .and_then(|ders| ders.first().and_then(|d| certs::leaf_info(d).ok()))
}

/// What the pipeline sees of a Certificate Manager certificate.
pub(crate) fn served(cert_name: &str, url: &str, c: &Certificate) -> ServedCertificate {
    let leaf = leaf_of(c);
    let expire_time = c
        .expire_time
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .or_else(|| leaf.as_ref().map(|l| l.not_after));
    let mut sans: Vec<String> = c
        .san_dnsnames
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if sans.is_empty()
        && let Some(l) = &leaf
    {
        sans = l.dns_names.clone();
    }
    ServedCertificate {
        name: c.id().to_string(),
        url: url.to_string(),
        exists: true,
        ours: cert_is_ours(cert_name, c),
        description: c.description.clone(),
        expire_time,
        sans,
        leaf,
    }
}

fn missing(url: &str) -> ServedCertificate {
    ServedCertificate {
        name: id_of(url).to_string(),
        url: url.to_string(),
        exists: false,
        ours: false,
        description: None,
        expire_time: None,
        sans: Vec::new(),
        leaf: None,
    }
}

/// What the takeover rules need of a Certificate Manager certificate.
fn listed(cert_name: &str, id: &str, c: Option<&Certificate>) -> Listed {
    match c {
        Some(c) => Listed {
            name: id.to_string(),
            exists: true,
            ours: cert_is_ours(cert_name, c),
            marked: marked(&c.labels),
            sans: served(cert_name, "", c).sans,
        },
        None => Listed {
            name: id.to_string(),
            exists: false,
            ours: false,
            marked: false,
            sans: Vec::new(),
        },
    }
}

impl CertificateMaps<'_> {
    /// Checks each configured proxy exists and serves the map; returns their names.
    async fn check_proxies(&self, cert: &CertificateConfig, map: &str) -> Result<(), LbError> {
        let gcp = self.gcp;
        let results = futures_util::future::join_all(
            cert.target_https_proxies
                .iter()
                .map(|proxy| async move { (proxy, gcp.get_target_https_proxy(proxy).await) }),
        )
        .await;
        for (proxy, r) in results {
            let p = match r {
                Ok(p) => p,
                Err(e) if e.is_not_found() => {
                    return Err(LbError::ProxyNotFound {
                        proxy: proxy.clone(),
                        certificate: cert.name.clone(),
                        project: gcp.project.clone(),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            let found = p.certificate_map.filter(|m| !m.is_empty());
            let serves_map = found
                .as_deref()
                .is_some_and(|m| m.contains("/certificateMaps/") && id_of(m) == map);
            if !serves_map {
                return Err(LbError::MapNotOnProxy {
                    proxy: proxy.clone(),
                    map: map.to_string(),
                    certificate: cert.name.clone(),
                    found,
                });
            }
        }
        Ok(())
    }

    /// The entry of each slot (`None`: none, or no map). Our entries are read
    /// by id; the map is listed only when one is missing (someone else's
    /// entry for the hostname, or none).
    async fn read_entries(
        &self,
        map: &str,
        slots: &[Slot],
    ) -> Result<Vec<Option<CertificateMapEntry>>, LbError> {
        let gcp = self.gcp;
        let got =
            futures_util::future::join_all(slots.iter().map(|s| async move {
                gcp.get_certificate_map_entry(map, &s.our_entry_id()).await
            }))
            .await;
        let mut out = Vec::with_capacity(slots.len());
        for (s, r) in slots.iter().zip(got) {
            out.push(r?.filter(|e| s.matches(e)));
        }
        if out.iter().all(Option::is_some) {
            return Ok(out);
        }
        let all = match gcp.list_certificate_map_entries(map, None).await {
            Ok(all) => all,
            Err(e) if e.is_not_found() => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for (s, e) in slots.iter().zip(out.iter_mut()) {
            if e.is_none() {
                *e = all.iter().find(|x| s.matches(x)).cloned();
            }
        }
        Ok(out)
    }

    /// Each certificate id once (`None`: it does not exist).
    async fn read_certificates(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, Option<Certificate>>, LbError> {
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        let gcp = self.gcp;
        let got = futures_util::future::join_all(
            ids.iter()
                .map(|id| async move { gcp.get_certificate(id).await }),
        )
        .await;
        let mut out = HashMap::new();
        for (id, r) in ids.into_iter().zip(got) {
            out.insert(id, r?);
        }
        Ok(out)
    }
}

/// The project's Certificate Manager certificates, listed once per `status` run.
#[derive(Default)]
pub struct Project {
    certificates: tokio::sync::OnceCell<Result<Vec<Certificate>, left_behind::LeftBehindError>>,
}

impl CertificateTarget for CertificateMaps<'_> {
    type Run = Run;
    type Project = Project;

    async fn observe(&self, cert: &CertificateConfig) -> Result<Observation, LbError> {
        let map = map_of(cert)?;
        let slots = slots(cert);
        let (proxies, entries) = tokio::join!(
            self.check_proxies(cert, map),
            self.read_entries(map, &slots)
        );
        proxies?;
        let entries = entries?;
        // Another [[certificates]] entry's entry for one of our names: refused
        // before anything is issued (attach would never touch it, and the
        // name would stay unserved by ours for ever).
        for (s, e) in slots.iter().zip(&entries) {
            if let Some(e) = e
                && let Some(err) = taken(cert, map, s, e)
            {
                return Err(err);
            }
        }
        let our_id = naming::cm_certificate_id(&cert.name);
        let ids = entries
            .iter()
            .flatten()
            .flat_map(|e| e.certificate_ids())
            .map(str::to_string)
            .chain([our_id]);
        let certs = self.read_certificates(ids).await?;
        let proxies = slots
            .iter()
            .zip(&entries)
            .map(|(s, e)| ProxyObservation {
                name: s.label().to_string(),
                self_link: e.as_ref().map(|e| e.name.clone()).unwrap_or_default(),
                certificates: e
                    .iter()
                    .flat_map(|e| &e.certificates)
                    .map(|url| match certs.get(id_of(url)) {
                        Some(Some(c)) => served(&cert.name, url, c),
                        _ => missing(url),
                    })
                    .collect(),
                certificate_map: Some(map.to_string()),
            })
            .collect();
        Ok(Observation {
            certificate: cert.name.clone(),
            names: normalize_names(&cert.domains),
            proxies,
        })
    }

    /// Hand-made Certificate Manager certificates our names fully cover that
    /// no entry of the configured map uses: unused (with the command deleting
    /// them), or used only by entries of other maps.
    async fn left_behind(
        &self,
        cert: &CertificateConfig,
        project: &Project,
    ) -> Result<Vec<left_behind::LeftBehind>, left_behind::LeftBehindError> {
        let Some(map) = cert.certificate_map.as_deref() else {
            return Ok(Vec::new());
        };
        let all = project
            .certificates
            .get_or_init(|| async {
                self.gcp
                    .list_certificates(None)
                    .await
                    .map_err(left_behind::LeftBehindError::new)
            })
            .await
            .as_ref()
            .map_err(Clone::clone)?;
        let names = normalize_names(&cert.domains);
        let mut found = Vec::new();
        for c in all {
            let l = listed(&cert.name, c.id(), Some(c));
            if l.marked || l.ours || takeover::overlap(&names, &l.sans) != Overlap::Covered {
                continue;
            }
            // (map, entry) of each entry using it.
            let users: Vec<(&str, &str)> = c
                .used_by
                .iter()
                .filter_map(|u| {
                    let rest = u.name.split("/certificateMaps/").nth(1)?;
                    let (m, e) = rest.split_once("/certificateMapEntries/")?;
                    Some((m, e))
                })
                .collect();
            if users.iter().any(|(m, _)| *m == map) {
                // Still in the configured map: the reasons say it.
                continue;
            }
            let adopted = cert.adopt.iter().any(|a| a == c.id());
            let served_by: Vec<String> = users.iter().map(|(m, e)| format!("{m}/{e}")).collect();
            let (message, delete_command) = if users.is_empty() {
                let cmd = takeover::certificate_manager_delete_command(&self.gcp.project, c.id());
                (
                    format!(
                        "hand-made Certificate Manager certificate {} (for {}) is used by no map entry{}; delete it with: {cmd}",
                        c.id(),
                        l.sans.join(", "),
                        if adopted {
                            "; it is adopted, so the next renewal deletes it"
                        } else {
                            "; gclb-acme keeps it"
                        }
                    ),
                    Some(cmd),
                )
            } else {
                (
                    format!(
                        "hand-made Certificate Manager certificate {} (for {}) is still used by map entries {}, not in map {map} configured for {}",
                        c.id(),
                        l.sans.join(", "),
                        served_by.join(", "),
                        cert.name
                    ),
                    None,
                )
            };
            found.push(left_behind::LeftBehind {
                name: c.id().to_string(),
                served_by,
                message,
                delete_command,
            });
        }
        Ok(found)
    }

    async fn upload(
        &self,
        cert: &CertificateConfig,
        what: Upload<'_>,
        observed: Option<&Observation>,
        opts: &InstallOptions,
    ) -> Result<Run, LbError> {
        let map = map_of(cert)?.to_string();
        let our_id = naming::cm_certificate_id(&cert.name);
        let mut run = Run {
            map,
            cert_id: our_id.clone(),
            cert_full: self.gcp.certificate_name(&our_id),
            expect: None,
            known: observed.map(|o| {
                o.proxies
                    .iter()
                    .map(|p| {
                        let ids = (!p.self_link.is_empty())
                            .then(|| p.certificates.iter().map(|c| c.name.clone()).collect());
                        (p.name.clone(), ids)
                    })
                    .collect()
            }),
            cache: observed
                .map(|o| {
                    o.proxies
                        .iter()
                        .flat_map(|p| &p.certificates)
                        .map(|c| (c.name.clone(), c.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            superseded: Vec::new(),
            prune: matches!(what, Upload::Issued(_)),
            report: InstallReport {
                resource: our_id.clone(),
                ..InstallReport::default()
            },
        };
        // Without an observation taken under the lock, check the proxies
        // before creating anything (observe refuses the same way).
        if observed.is_none() {
            self.check_proxies(cert, &run.map).await?;
        }
        let Upload::Issued(issued) = what else {
            return Ok(run);
        };
        let map_known = observed.is_some_and(|o| o.proxies.iter().any(|p| !p.self_link.is_empty()));
        if !map_known {
            self.ensure_map(cert, &run.map, opts).await?;
        }
        let existing = match run.cache.get(&our_id) {
            Some(s) if s.exists && s.ours => Some(Existing::Ours(s.leaf.clone())),
            _ => match self.gcp.get_certificate(&our_id).await? {
                None => None,
                Some(c) => Some(Existing::of(&cert.name, &c)?),
            },
        };
        run.report.uploaded = self.put_certificate(cert, issued, existing, opts).await?;
        run.expect = Some((issued.names.clone(), issued.leaf.serial_hex.clone()));
        Ok(run)
    }

    async fn attach(
        &self,
        cert: &CertificateConfig,
        run: &mut Run,
        opts: &InstallOptions,
    ) -> Result<(), LbError> {
        let slots = slots(cert);
        // Slots the observation shows listing exactly our certificate are done.
        let todo: Vec<Slot> = slots
            .iter()
            .filter(|s| {
                run.known
                    .as_ref()
                    .and_then(|k| k.get(s.label()))
                    .and_then(Option::as_ref)
                    .is_none_or(|ids| ids.len() != 1 || ids[0] != run.cert_id)
            })
            .cloned()
            .collect();
        if !todo.is_empty() {
            // An entry the observation (under the lock, moments ago) found
            // missing is created without reading again: the create itself
            // refuses (409) if ours appeared meanwhile, and is then read back.
            // The others are read right before their change.
            let seen_missing = |s: &Slot| {
                run.known
                    .as_ref()
                    .and_then(|k| k.get(s.label()))
                    .is_some_and(Option::is_none)
            };
            let reread: Vec<Slot> = todo.iter().filter(|s| !seen_missing(s)).cloned().collect();
            let mut fresh = self.read_entries(&run.map, &reread).await?.into_iter();
            let entries: Vec<Option<CertificateMapEntry>> = todo
                .iter()
                .map(|s| {
                    if seen_missing(s) {
                        None
                    } else {
                        fresh.next().flatten()
                    }
                })
                .collect();
            let r: &Run = run;
            let results = futures_util::future::join_all(
                todo.iter()
                    .zip(entries)
                    .map(|(s, e)| self.converge(cert, r, s, e, opts)),
            )
            .await;
            let mut first_error = None;
            for (s, res) in todo.iter().zip(results) {
                match res {
                    Ok(done) => run.absorb(s, done),
                    Err(e) => {
                        tracing::warn!(certificate = %cert.name, entry = s.label(), error = %e, "the map entry could not be pointed at our certificate; it keeps what it served");
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        if let (Some(v), Some((names, serial))) = (&opts.verify, &run.expect)
            && !cert.target_https_proxies.is_empty()
        {
            let links: Vec<(String, String)> = cert
                .target_https_proxies
                .iter()
                .map(|p| (p.clone(), String::new()))
                .collect();
            run.report.verify = verify::verify_proxies(self.gcp, &links, names, serial, v).await;
        }
        Ok(())
    }

    async fn clean_up(
        &self,
        cert: &CertificateConfig,
        mut run: Run,
        opts: &InstallOptions,
    ) -> Result<InstallReport, LbError> {
        if run.prune {
            run.report.deleted = self.prune_entries(cert, &run.map, opts).await?;
        }
        let names = normalize_names(&cert.domains);
        for adopted in &cert.adopt {
            let Some(c) = self.gcp.get_certificate(adopted).await? else {
                continue;
            };
            let l = listed(&cert.name, adopted, Some(&c));
            let refusal = if l.marked || l.ours {
                Some(format!(
                    "not deleting adopted certificate {adopted}: gclb-acme created it; remove it from adopt"
                ))
            } else if !c.used_by.is_empty() {
                let by: Vec<&str> = c.used_by.iter().map(|u| id_of(&u.name)).collect();
                Some(format!(
                    "not deleting adopted certificate {adopted}: map entries {} still use it; point them elsewhere first",
                    by.join(", ")
                ))
            } else {
                match takeover::overlap(&names, &l.sans) {
                    Overlap::Covered => None,
                    _ => Some(format!(
                        "not deleting adopted certificate {adopted}: it serves names this certificate does not ({})",
                        l.sans.join(", ")
                    )),
                }
            };
            if let Some(r) = refusal {
                tracing::warn!(certificate = %cert.name, adopted = %adopted, "{r}");
                run.report.adoption_refused.push(r);
                continue;
            }
            self.delete_certificate(adopted, opts).await?;
            tracing::info!(certificate = %cert.name, deleted = %adopted, "deleted the adopted hand-made certificate: no map entry uses it any more");
            run.report.adopted_deleted.push(adopted.clone());
            if let Some(h) = run.superseded.iter_mut().find(|h| &h.name == adopted) {
                h.deleted = true;
            }
            opts.at(&step::deleted(adopted))?;
        }
        for h in run.superseded.iter_mut().filter(|h| !h.deleted) {
            if let Some(c) = self.gcp.get_certificate(&h.name).await? {
                h.still_served_by = c
                    .used_by
                    .iter()
                    .map(|u| id_of(&u.name).to_string())
                    .collect();
            }
            h.delete_command = Some(takeover::certificate_manager_delete_command(
                &self.gcp.project,
                &h.name,
            ));
            tracing::warn!(certificate = %cert.name, hand_made = %h.name, still_used_by = %h.still_served_by.join(","), "hand-made certificate replaced on map {} entries {}; gclb-acme keeps it", run.map, h.taken_off.join(", "));
        }
        run.report.superseded = run.superseded;
        Ok(run.report)
    }
}

/// Our certificate as found before the upload.
enum Existing {
    /// Ours, with its served leaf (if readable).
    Ours(Option<certs::LeafInfo>),
}

impl Existing {
    fn of(cert_name: &str, c: &Certificate) -> Result<Existing, LbError> {
        if cert_is_ours(cert_name, c) {
            Ok(Existing::Ours(leaf_of(c)))
        } else {
            Err(LbError::NotOurs {
                kind: "certificate",
                name: c.id().to_string(),
                certificate: cert_name.to_string(),
            })
        }
    }
}

/// What converging one slot did.
struct SlotDone {
    changed: bool,
    superseded: Vec<String>,
    competing: Vec<Competitor>,
}

/// One installation into a map under way.
pub struct Run {
    map: String,
    cert_id: String,
    /// `projects/P/locations/global/certificates/ID`, as entries name it.
    cert_full: String,
    /// The names and serial TLS must show (a fresh upload only).
    expect: Option<(Vec<String>, String)>,
    /// Per frontend name (hostname or `PRIMARY`), from the observation: the
    /// certificate ids its entry lists (`None`: no entry); `None` without an
    /// observation.
    known: Option<HashMap<String, Option<Vec<String>>>>,
    /// Certificates the observation read, by id.
    cache: HashMap<String, ServedCertificate>,
    superseded: Vec<HandMade>,
    /// An issued certificate was installed: clean-up looks for entries of
    /// ours for names no longer configured.
    prune: bool,
    report: InstallReport,
}

impl Run {
    fn absorb(&mut self, s: &Slot, done: SlotDone) {
        if done.changed {
            self.report.swapped.push(s.our_entry_id());
        }
        for name in done.superseded {
            match self.superseded.iter_mut().find(|h| h.name == name) {
                Some(h) => h.taken_off.push(s.label().to_string()),
                None => self.superseded.push(HandMade {
                    name,
                    taken_off: vec![s.label().to_string()],
                    ..HandMade::default()
                }),
            }
        }
        self.report.competing.extend(done.competing);
    }
}

impl CertificateMaps<'_> {
    /// Creates the map unless it exists (409: it does).
    async fn ensure_map(
        &self,
        cert: &CertificateConfig,
        map: &str,
        opts: &InstallOptions,
    ) -> Result<(), LbError> {
        if self.gcp.get_certificate_map(map).await?.is_some() {
            return Ok(());
        }
        let fields = MapFields {
            description: Some(format!(
                "{} created by gclb-acme for [[certificates]] {}",
                naming::MARKER,
                cert.name
            )),
            labels: Some(naming::cm_labels(&cert.name)),
        };
        let mut attempt = 0;
        loop {
            let r = match self.gcp.create_certificate_map(map, &fields).await {
                Ok(op) => self
                    .gcp
                    .wait_certificate_manager(op, opts.operation_timeout)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => {
                    tracing::info!(certificate = %cert.name, map, "created the certificate map");
                    opts.at(step::CM_MAP_CREATED)?;
                    return Ok(());
                }
                Err(e) if is_already_exists(&e) => return Ok(()),
                Err(e) => {
                    attempt = retry(attempt, opts, e, || {
                        format!("creating certificate map {map}")
                    })?
                }
            }
        }
    }

    /// Creates or patches our certificate so it holds `issued`; returns
    /// whether anything was sent that changed it.
    async fn put_certificate(
        &self,
        cert: &CertificateConfig,
        issued: &crate::acme::IssuedCertificate,
        mut existing: Option<Existing>,
        opts: &InstallOptions,
    ) -> Result<bool, LbError> {
        let id = naming::cm_certificate_id(&cert.name);
        let sha = &issued.leaf.sha256_hex;
        let pair = || SelfManaged {
            pem_certificate: issued.chain_pem.clone(),
            pem_private_key: issued.key_pem.expose().to_string(),
        };
        let description = naming::certificate_description(&cert.name, sha);
        let mut attempt = 0;
        loop {
            let result = match &existing {
                Some(Existing::Ours(Some(leaf))) if &leaf.sha256_hex == sha => {
                    // A resumed run: the certificate holds the new leaf already.
                    return Ok(false);
                }
                Some(Existing::Ours(_)) => {
                    let patch = CertificatePatch {
                        description: Some(description.clone()),
                        labels: None,
                        self_managed: Some(pair()),
                    };
                    match self.gcp.patch_certificate(&id, &patch).await {
                        Ok(op) => {
                            opts.at(step::CM_CERTIFICATE_REQUESTED)?;
                            self.gcp
                                .wait_certificate_manager(op, opts.operation_timeout)
                                .await
                                .map(|_| ())
                        }
                        Err(e) => Err(e),
                    }
                }
                None => {
                    let body = NewCertificate {
                        description: Some(description.clone()),
                        labels: naming::cm_labels(&cert.name),
                        self_managed: pair(),
                    };
                    match self.gcp.create_certificate(&id, &body).await {
                        Ok(op) => {
                            opts.at(step::CM_CERTIFICATE_REQUESTED)?;
                            self.gcp
                                .wait_certificate_manager(op, opts.operation_timeout)
                                .await
                                .map(|_| ())
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(()) => {
                    tracing::info!(certificate = %cert.name, id, serial = %issued.leaf.serial_hex, in_place = existing.is_some(), "Certificate Manager certificate holds the new chain");
                    opts.at(step::CM_CERTIFICATE_DONE)?;
                    return Ok(true);
                }
                // A create from an earlier attempt (or run) got there first, or
                // someone else's certificate has our id: read back, compare.
                Err(e) if is_already_exists(&e) => match self.gcp.get_certificate(&id).await? {
                    Some(c) => existing = Some(Existing::of(&cert.name, &c)?),
                    None => return Err(e.into()),
                },
                // Deleted by hand between our read and the patch: create it.
                Err(e) if e.is_not_found() && existing.is_some() => existing = None,
                Err(e) => {
                    attempt = retry(attempt, opts, e, || format!("uploading certificate {id}"))?
                }
            }
        }
    }

    /// Makes the slot's entry list our certificate; `entry` was read just now.
    async fn converge(
        &self,
        cert: &CertificateConfig,
        run: &Run,
        slot: &Slot,
        mut entry: Option<CertificateMapEntry>,
        opts: &InstallOptions,
    ) -> Result<SlotDone, LbError> {
        let gcp = self.gcp;
        let map = run.map.as_str();
        let our_entry = slot.our_entry_id();
        let mut done = SlotDone {
            changed: false,
            superseded: Vec::new(),
            competing: Vec::new(),
        };
        let mut attempt = 0;
        loop {
            let result = match &entry {
                None => {
                    let body = NewMapEntry {
                        matches: slot.entry_match(),
                        certificates: vec![run.cert_full.clone()],
                        description: Some(format!(
                            "{} created by gclb-acme for [[certificates]] {}",
                            naming::MARKER,
                            cert.name
                        )),
                        labels: naming::cm_labels(&cert.name),
                    };
                    match gcp
                        .create_certificate_map_entry(map, &our_entry, &body)
                        .await
                    {
                        Ok(op) => gcp
                            .wait_certificate_manager(op, opts.operation_timeout)
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
                Some(e) => {
                    let ids = e.certificate_ids();
                    if ids == [run.cert_id.as_str()] {
                        return Ok(done);
                    }
                    let theirs =
                        !(e.id() == our_entry && naming::cm_is_ours(&cert.name, &e.labels));
                    let list = if theirs {
                        // Another [[certificates]] entry's: never touched.
                        if let Some(err) = taken(cert, map, slot, e) {
                            return Err(err);
                        }
                        match self.take_over(cert, run, e).await? {
                            Some((list, superseded, competing)) => {
                                done.superseded = superseded;
                                done.competing = competing;
                                list
                            }
                            None => return Ok(done),
                        }
                    } else {
                        vec![run.cert_full.clone()]
                    };
                    let patch = EntryPatch {
                        certificates: Some(list),
                        ..EntryPatch::default()
                    };
                    match gcp.patch_certificate_map_entry(map, e.id(), &patch).await {
                        Ok(op) => gcp
                            .wait_certificate_manager(op, opts.operation_timeout)
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
            };
            let id = entry
                .as_ref()
                .map(|e| e.id().to_string())
                .unwrap_or_else(|| our_entry.clone());
            match result {
                Ok(()) => {
                    tracing::info!(certificate = %cert.name, map, entry = %id, name = slot.label(), "the map entry lists our certificate");
                    done.changed = true;
                    opts.at(&step::entry(&id))?;
                    return Ok(done);
                }
                Err(e) if is_already_exists(&e) || e.is_not_found() => {
                    // Created by an earlier attempt, or changed meanwhile: read again.
                    let again = self.read_entries(map, std::slice::from_ref(slot)).await?;
                    entry = again.into_iter().next().flatten();
                    attempt = retry(attempt, opts, e, || format!("pointing map entry {id}"))?;
                }
                Err(e) => attempt = retry(attempt, opts, e, || format!("pointing map entry {id}"))?,
            }
        }
    }

    /// The new certificate list of someone else's entry for our hostname, by
    /// the takeover rules; `None` when ours is listed already.
    #[allow(clippy::type_complexity)]
    async fn take_over(
        &self,
        cert: &CertificateConfig,
        run: &Run,
        e: &CertificateMapEntry,
    ) -> Result<Option<(Vec<String>, Vec<String>, Vec<Competitor>)>, LbError> {
        let names = normalize_names(&cert.domains);
        let mut list = vec![run.cert_full.clone()];
        let mut superseded = Vec::new();
        let mut competing = Vec::new();
        for (url, id) in e.certificates.iter().zip(e.certificate_ids()) {
            if id == run.cert_id {
                continue;
            }
            let l = match run.cache.get(id) {
                // Our description marks gclb-acme's certificates of any entry.
                Some(s) if s.exists => s.listed(),
                _ => {
                    let c = self.gcp.get_certificate(id).await?;
                    listed(&cert.name, id, c.as_ref())
                }
            };
            match takeover::fate(&names, &run.cert_id, &l) {
                Fate::Supersede | Fate::ReplaceOurs => superseded.push(id.to_string()),
                Fate::Compete { shared } => {
                    competing.push(Competitor {
                        proxy: format!("map {} entry {}", run.map, e.id()),
                        certificate: id.to_string(),
                        shared,
                    });
                    list.push(url.clone());
                }
                Fate::Keep | Fate::New => list.push(url.clone()),
            }
        }
        if superseded.is_empty() && e.certificate_ids().contains(&run.cert_id.as_str()) {
            return Ok(None);
        }
        tracing::warn!(certificate = %cert.name, map = %run.map, entry = e.id(), superseded = %superseded.join(","), "taking over a hand-made map entry for our hostname: it now lists our certificate");
        Ok(Some((list, superseded, competing)))
    }

    /// Deletes the entries of ours (labels) in `map` whose name is no longer
    /// configured (a domain removed, or `primary` turned off): one list of our
    /// entries by label. Returns their ids.
    async fn prune_entries(
        &self,
        cert: &CertificateConfig,
        map: &str,
        opts: &InstallOptions,
    ) -> Result<Vec<String>, LbError> {
        let slots = slots(cert);
        let filter = format!("labels.{}={}", naming::LABEL_CERTIFICATE, cert.name);
        let ours = match self
            .gcp
            .list_certificate_map_entries(map, Some(&filter))
            .await
        {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut deleted = Vec::new();
        for e in ours {
            if !naming::cm_is_ours(&cert.name, &e.labels) || slots.iter().any(|s| s.matches(&e)) {
                continue;
            }
            let mut attempt = 0;
            loop {
                let r = match self.gcp.delete_certificate_map_entry(map, e.id()).await {
                    Ok(op) => self
                        .gcp
                        .wait_certificate_manager(op, opts.operation_timeout)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => break,
                    Err(err) if err.is_not_found() => break,
                    Err(err) => {
                        attempt = retry(attempt, opts, err, || {
                            format!("deleting map entry {}", e.id())
                        })?
                    }
                }
            }
            tracing::info!(certificate = %cert.name, map, entry = e.id(), hostname = e.hostname.as_deref().unwrap_or("PRIMARY"), "deleted our map entry for a name no longer configured");
            deleted.push(e.id().to_string());
            opts.at(&step::deleted(e.id()))?;
        }
        Ok(deleted)
    }

    /// Deletes a certificate, waiting out "in use" with back-off; gone is done.
    async fn delete_certificate(&self, id: &str, opts: &InstallOptions) -> Result<(), LbError> {
        let mut delay = opts.cleanup_initial;
        let attempts = opts.cleanup_attempts.max(1);
        let mut attempt = 0;
        loop {
            let r = match self.gcp.delete_certificate(id).await {
                Ok(op) => self
                    .gcp
                    .wait_certificate_manager(op, opts.operation_timeout)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e)
                    if is_in_use(&e)
                        || (e.is_retryable() && !matches!(e, GcpError::Timeout { .. })) =>
                {
                    attempt += 1;
                    if attempt >= attempts {
                        return Err(LbError::GaveUp {
                            what: format!("deleting certificate {id}"),
                            attempts,
                            last: Box::new(e),
                        });
                    }
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// After attempt `attempt` failed with `e`: the next attempt when `e` is
/// transient and attempts are left, else the error (Google's words kept).
fn retry(
    attempt: u32,
    opts: &InstallOptions,
    e: GcpError,
    what: impl FnOnce() -> String,
) -> Result<u32, LbError> {
    let transient = e.is_retryable() && !matches!(e, GcpError::Timeout { .. });
    let again = is_already_exists(&e) || e.is_not_found() || transient;
    if !again {
        return Err(e.into());
    }
    if attempt + 1 < opts.attempts.max(1) {
        Ok(attempt + 1)
    } else {
        Err(LbError::GaveUp {
            what: what(),
            attempts: opts.attempts,
            last: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyType;

    fn cert(primary: bool) -> CertificateConfig {
        CertificateConfig {
            name: "app".into(),
            domains: vec!["WWW.example.com".into(), "*.example.com".into()],
            target_https_proxies: Vec::new(),
            key_type: KeyType::EcdsaP256,
            zone: None,
            reuse_key: false,
            adopt: Vec::new(),
            certificate_map: Some("sites".into()),
            primary,
        }
    }

    #[test]
    fn one_slot_per_normalised_name_then_primary() {
        let s = slots(&cert(true));
        assert_eq!(
            s,
            [
                Slot::Host("*.example.com".into()),
                Slot::Host("www.example.com".into()),
                Slot::Primary
            ]
        );
        assert_eq!(s[2].our_entry_id(), naming::PRIMARY_ENTRY_ID);
        assert_eq!(s[1].our_entry_id(), naming::map_entry_id("www.example.com"));
        assert_eq!(slots(&cert(false)).len(), 2);
    }

    #[test]
    fn ours_needs_our_id_and_our_labels() {
        let mut c = Certificate {
            name: "projects/1/locations/global/certificates/gclb-acme-app".into(),
            labels: naming::cm_labels("app"),
            ..Certificate::default()
        };
        assert!(cert_is_ours("app", &c));
        assert!(!cert_is_ours("other", &c));
        c.labels.remove(naming::LABEL_CERTIFICATE);
        assert!(!cert_is_ours("app", &c));
        assert!(marked(&c.labels));
        assert!(matches!(
            Existing::of("app", &c),
            Err(LbError::NotOurs {
                kind: "certificate",
                ..
            })
        ));
    }

    #[test]
    fn an_entry_matches_its_hostname_or_primary() {
        let e = CertificateMapEntry {
            hostname: Some("WWW.example.com".into()),
            ..CertificateMapEntry::default()
        };
        assert!(Slot::Host("www.example.com".into()).matches(&e));
        assert!(!Slot::Primary.matches(&e));
        let p = CertificateMapEntry {
            matcher: Some("PRIMARY".into()),
            ..CertificateMapEntry::default()
        };
        assert!(Slot::Primary.matches(&p));
        assert!(!Slot::Host("www.example.com".into()).matches(&p));
    }

    #[test]
    fn a_transient_error_is_retried_then_given_up_a_refusal_is_not() {
        let err = |code: u16, status: &str| {
            GcpError::Api(crate::gcp::ApiError {
                code,
                reason: status.into(),
                message: "m".into(),
                status: status.into(),
                request: "PATCH x".into(),
                needs: Box::default(),
            })
        };
        let opts = InstallOptions {
            attempts: 2,
            ..InstallOptions::default()
        };
        assert_eq!(
            retry(0, &opts, err(503, "UNAVAILABLE"), || "x".into()).ok(),
            Some(1)
        );
        assert!(matches!(
            retry(1, &opts, err(503, "UNAVAILABLE"), || "x".into()),
            Err(LbError::GaveUp { attempts: 2, .. })
        ));
        assert!(matches!(
            retry(0, &opts, err(400, "INVALID_ARGUMENT"), || "x".into()),
            Err(LbError::Gcp(_))
        ));
    }
}
