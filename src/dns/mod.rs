//! DNS-01 through Cloud DNS: find the zone of each challenge name (following a
//! CNAME delegation into another managed zone), write all TXT values of one zone
//! in one atomic change that keeps other writers' values, and wait until every
//! authoritative name server serves them.

pub mod propagation;
pub mod txt;
pub mod wire;
pub mod zone;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rand::RngExt;
use tokio::sync::{Mutex, OnceCell};

use crate::config::DnsConfig;
use crate::gcp::dns::{Change, ManagedZone};
use crate::gcp::{Gcp, GcpError};
use propagation::{Checker, Expectation, PropagationError, Server};
use txt::Edit;
pub use zone::ZoneError;

/// One TXT value to publish.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxtRecord {
    /// Without the trailing dot: `_acme-challenge.example.com`.
    pub name: String,
    pub value: String,
}

/// Where a challenge name's TXT values are written.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub zone: ManagedZone,
    /// Absolute, with the trailing dot; differs from the challenge name when a
    /// CNAME delegates it.
    pub name: String,
}

/// Why DNS-01 work failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error("{what}: {source}")]
    Gcp {
        what: String,
        #[source]
        source: GcpError,
    },
    #[error("{name} is a CNAME to {target}, which {why}")]
    Cname {
        name: String,
        target: String,
        why: String,
    },
    #[error(
        "zone {zone}: the TXT records kept changing under us ({attempts} attempts); another client is writing the same names"
    )]
    Contended { zone: String, attempts: u32 },
    #[error(transparent)]
    Propagation(#[from] PropagationError),
    #[error("cannot find the name servers to check: {0}")]
    Servers(String),
}

impl DnsError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DnsError::Gcp { source, .. } => source.is_retryable(),
            DnsError::Contended { .. } | DnsError::Propagation(_) | DnsError::Servers(_) => true,
            DnsError::Zone(_) | DnsError::Cname { .. } => false,
        }
    }

    /// The GCP error underneath, if any.
    pub fn gcp(&self) -> Option<&GcpError> {
        match self {
            DnsError::Gcp { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn gcp(what: impl Into<String>) -> impl FnOnce(GcpError) -> DnsError {
    let what = what.into();
    move |source| DnsError::Gcp { what, source }
}

/// What presenting cost, for logs and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct PresentReport {
    pub changes: u32,
    pub dns_queries: u64,
    pub propagation: Duration,
}

const MAX_CNAME_HOPS: usize = 8;
const MAX_CHANGE_ATTEMPTS: u32 = 8;

/// The Cloud DNS solver for one certificate's names.
pub struct CloudDns {
    gcp: Gcp,
    ttl: u32,
    propagation_timeout: Duration,
    nameservers: Vec<String>,
    zone_override: Option<String>,
    zones: OnceCell<Vec<ManagedZone>>,
    targets: Mutex<HashMap<String, Target>>,
    checker: Arc<Checker>,
    change_timeout: Duration,
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else {
        format!("{}.", name.to_ascii_lowercase())
    }
}

impl CloudDns {
    /// `zone`: the configured managed zone (skips discovery), if any.
    pub fn new(gcp: Gcp, config: &DnsConfig, zone: Option<String>) -> CloudDns {
        CloudDns {
            gcp,
            ttl: config.ttl,
            propagation_timeout: config.propagation_timeout.get(),
            nameservers: config.nameservers.clone(),
            zone_override: zone,
            zones: OnceCell::new(),
            targets: Mutex::new(HashMap::new()),
            checker: Checker::new(),
            change_timeout: Duration::from_secs(120),
        }
    }

    /// The propagation checker (its query count feeds metrics and benchmarks).
    pub fn checker(&self) -> &Arc<Checker> {
        &self.checker
    }

    async fn all_zones(&self) -> Result<&Vec<ManagedZone>, DnsError> {
        self.zones
            .get_or_try_init(|| async {
                self.gcp.list_zones(None).await.map_err(gcp(format!(
                    "listing the Cloud DNS zones of project {}",
                    self.gcp.project
                )))
            })
            .await
    }

    async fn zone_for(&self, fqdn: &str, allow_override: bool) -> Result<ManagedZone, DnsError> {
        if allow_override && let Some(z) = &self.zone_override {
            let zone = self
                .gcp
                .get_zone(z)
                .await
                .map_err(gcp(format!("reading the configured zone {z}")))?;
            zone::check_explicit(&zone, fqdn)?;
            return Ok(zone);
        }
        let zones = self.all_zones().await?;
        Ok(zone::select(zones, fqdn, &self.gcp.project)?.clone())
    }

    /// The zone and name where `record_name`'s TXT values go, following CNAMEs.
    pub async fn target(&self, record_name: &str) -> Result<Target, DnsError> {
        let start = fqdn(record_name);
        if let Some(t) = self.targets.lock().await.get(&start) {
            return Ok(t.clone());
        }
        let mut name = start.clone();
        let mut zone = self.zone_for(&name, true).await?;
        let mut seen = vec![name.clone()];
        for _ in 0..MAX_CNAME_HOPS {
            let cnames = self
                .gcp
                .list_rrsets(&zone.name, &name, "CNAME")
                .await
                .map_err(gcp(format!("reading {name} CNAME in zone {}", zone.name)))?;
            let Some(target) = cnames
                .first()
                .and_then(|c| c.rrdatas.first())
                .map(|t| fqdn(t))
            else {
                let t = Target { zone, name };
                self.targets.lock().await.insert(start, t.clone());
                return Ok(t);
            };
            if seen.contains(&target) {
                return Err(DnsError::Cname {
                    name,
                    target,
                    why: "loops back to an earlier name".into(),
                });
            }
            tracing::debug!(from = %name, to = %target, "following CNAME delegation of the challenge");
            zone = self
                .zone_for(&target, false)
                .await
                .map_err(|e| DnsError::Cname {
                    name: name.clone(),
                    target: target.clone(),
                    why: format!("no writable zone holds: {e}"),
                })?;
            seen.push(target.clone());
            name = target;
        }
        Err(DnsError::Cname {
            name: start,
            target: name,
            why: format!("is more than {MAX_CNAME_HOPS} CNAMEs away"),
        })
    }

    /// Writes every value and waits until every authoritative server serves them.
    pub async fn present(&self, records: &[TxtRecord]) -> Result<PresentReport, DnsError> {
        let by_zone = self.group(records, true).await?;
        let mut report = PresentReport::default();
        // Zones are independent: write them concurrently.
        let results = join_all(
            by_zone
                .values()
                .map(|(zone, edits)| self.apply(zone, edits)),
        )
        .await;
        for r in results {
            if r? {
                report.changes += 1;
            }
        }
        let mut expectations = Vec::new();
        for (zone, edits) in by_zone.values() {
            let servers = self.servers(zone).await?;
            for e in edits {
                expectations.push(Expectation {
                    name: e.name.clone(),
                    values: e.add.clone(),
                    servers: servers.clone(),
                });
            }
        }
        let r = self
            .checker
            .wait(&expectations, self.propagation_timeout)
            .await?;
        report.dns_queries = r.queries;
        report.propagation = r.waited;
        tracing::info!(
            names = expectations.len(),
            changes = report.changes,
            dns_queries = r.queries,
            waited_ms = r.waited.as_millis() as u64,
            "challenge records served by every authoritative name server"
        );
        Ok(report)
    }

    /// Removes exactly our values (other values at the same names stay).
    pub async fn cleanup(&self, records: &[TxtRecord]) -> Result<u32, DnsError> {
        let by_zone = self.group(records, false).await?;
        let results = join_all(
            by_zone
                .values()
                .map(|(zone, edits)| self.apply(zone, edits)),
        )
        .await;
        let mut changes = 0;
        for r in results {
            if r? {
                changes += 1;
            }
        }
        Ok(changes)
    }

    async fn group(
        &self,
        records: &[TxtRecord],
        add: bool,
    ) -> Result<BTreeMap<String, (ManagedZone, Vec<Edit>)>, DnsError> {
        let mut by_zone: BTreeMap<String, (ManagedZone, Vec<Edit>)> = BTreeMap::new();
        for r in records {
            let t = self.target(&r.name).await?;
            let entry = by_zone
                .entry(t.zone.name.clone())
                .or_insert_with(|| (t.zone.clone(), Vec::new()));
            let edit = match entry.1.iter_mut().find(|e| e.name == t.name) {
                Some(e) => e,
                None => {
                    entry.1.push(Edit {
                        name: t.name.clone(),
                        ..Default::default()
                    });
                    let last = entry.1.len() - 1;
                    &mut entry.1[last]
                }
            };
            let list = if add { &mut edit.add } else { &mut edit.remove };
            if !list.contains(&r.value) {
                list.push(r.value.clone());
            }
        }
        Ok(by_zone)
    }

    /// One atomic change for all edits of a zone; on 409/412/404 (another writer
    /// got there first) re-read and try again. Returns whether a change was made.
    async fn apply(&self, zone: &ManagedZone, edits: &[Edit]) -> Result<bool, DnsError> {
        for attempt in 1..=MAX_CHANGE_ATTEMPTS {
            let mut change = Change::default();
            let currents = join_all(
                edits
                    .iter()
                    .map(|e| self.gcp.list_rrsets(&zone.name, &e.name, "TXT")),
            )
            .await;
            for (e, current) in edits.iter().zip(currents) {
                let current = current
                    .map_err(gcp(format!("reading {} TXT in zone {}", e.name, zone.name)))?;
                txt::plan_edit(&mut change, current.first(), e, self.ttl);
            }
            if change.additions.is_empty() && change.deletions.is_empty() {
                return Ok(false);
            }
            match self.gcp.create_change(&zone.name, &change).await {
                Ok(c) => {
                    let done = self
                        .gcp
                        .wait_change(&zone.name, c, self.change_timeout)
                        .await
                        .map_err(gcp(format!("waiting for the change in zone {}", zone.name)))?;
                    tracing::debug!(zone = %zone.name, change = ?done.id, additions = change.additions.len(), deletions = change.deletions.len(), "Cloud DNS change done");
                    return Ok(true);
                }
                Err(e)
                    if e.is(409, "alreadyExists")
                        || e.is(412, "conditionNotMet")
                        || e.is(404, "notFound")
                        || e.is_retryable() =>
                {
                    // Someone changed the set between our read and our write (or
                    // the write's fate is unknown): read again and rebuild.
                    let delay = Duration::from_millis(
                        rand::rng().random_range(10..=50) * u64::from(attempt),
                    );
                    tracing::debug!(zone = %zone.name, attempt, error = %e, "TXT set changed under us; re-reading");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(gcp(format!("writing TXT records in zone {}", zone.name))(e)),
            }
        }
        Err(DnsError::Contended {
            zone: zone.name.clone(),
            attempts: MAX_CHANGE_ATTEMPTS,
        })
    }

    async fn servers(&self, zone: &ManagedZone) -> Result<Vec<Server>, DnsError> {
        let specs: Vec<String> = if self.nameservers.is_empty() {
            zone.name_servers.clone()
        } else {
            self.nameservers.clone()
        };
        if specs.is_empty() {
            return Err(DnsError::Servers(format!(
                "zone {} lists no name servers; set dns.nameservers",
                zone.name
            )));
        }
        let mut out = Vec::new();
        for s in specs {
            out.extend(
                propagation::resolve_servers(&s)
                    .await
                    .map_err(DnsError::Servers)?,
            );
        }
        Ok(out)
    }
}

fn to_txt(records: &[crate::acme::ChallengeRecord]) -> Vec<TxtRecord> {
    records
        .iter()
        .map(|r| TxtRecord {
            name: r.record_name.clone(),
            value: r.value.clone(),
        })
        .collect()
}

fn solver_error(e: DnsError) -> crate::acme::SolverError {
    if e.is_retryable() {
        crate::acme::SolverError::transient(e.to_string())
    } else {
        crate::acme::SolverError::permanent(e.to_string())
    }
}

impl crate::acme::Dns01Solver for CloudDns {
    async fn present(
        &self,
        records: &[crate::acme::ChallengeRecord],
    ) -> Result<(), crate::acme::SolverError> {
        CloudDns::present(self, &to_txt(records))
            .await
            .map(|_| ())
            .map_err(solver_error)
    }

    async fn cleanup(
        &self,
        records: &[crate::acme::ChallengeRecord],
    ) -> Result<(), crate::acme::SolverError> {
        CloudDns::cleanup(self, &to_txt(records))
            .await
            .map(|_| ())
            .map_err(solver_error)
    }
}
