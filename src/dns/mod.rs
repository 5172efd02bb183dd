//! DNS-01: publish the challenge TXT values through a DNS provider, wait until
//! every authoritative name server serves them, remove them afterwards.
//!
//! The seam is [`DnsProvider`] (write and remove TXT values, name the servers to
//! poll); [`Solver`] adds what every provider shares (the propagation check,
//! the ACME [`Dns01Solver`](crate::acme::Dns01Solver) glue); [`from_config`] is
//! the one place that chooses the provider. Provider-neutral: `propagation` and
//! `wire` (DNS queries), `txt` (quoting and the merge that keeps other writers'
//! values), `zone` (longest public suffix). Cloud DNS, the first provider, is
//! `cloud_dns`, the only module here that knows Cloud DNS's wire types.

pub mod cloud_dns;
pub(crate) mod propagation;
pub mod txt;
pub(crate) mod wire;
pub mod zone;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{DnsConfig, DnsProviderKind};
use crate::gcp::{Gcp, GcpError};
pub use cloud_dns::{CloudDnsProvider, Target};
pub use propagation::Checker;
use propagation::{Expectation, PropagationError, Server};
pub use zone::ZoneError;

/// One TXT value to publish.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxtRecord {
    /// Without the trailing dot: `_acme-challenge.example.com`.
    pub name: String,
    pub value: String,
}

/// Where a provider writes one challenge name's values, and who answers for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The name written, absolute with the trailing dot; differs from the
    /// challenge name when a CNAME delegates it.
    pub name: String,
    /// The provider's zone holding it, for messages.
    pub zone: String,
    /// The zone's authoritative name servers: `host`, `host:port` or `ip:port`.
    /// May be empty when the provider cannot know them (`dns.nameservers` then
    /// has to name them).
    pub servers: Vec<String>,
}

/// A DNS provider: where challenge TXT values are written.
///
/// # Contract
///
/// What every implementation guarantees; the solver, the daemon and the tests
/// rely on it (the tests in `tests/dns_solver.rs` hold Cloud DNS to it).
///
/// * **Batches.** [`present`](Self::present) and [`cleanup`](Self::cleanup) get
///   all records of one order at once; the provider groups them as its API
///   allows (Cloud DNS: one change per zone). A batch need not be atomic across
///   zones, but each name's record set is replaced in one write.
/// * **Idempotence.** Presenting values already served, or cleaning up values
///   already gone, succeeds and writes nothing (returns 0 changes). The same
///   value twice in one batch is one value.
/// * **Concurrent writers.** Other writers may change the same record set at
///   any time: another certificate of this daemon, another instance, another
///   ACME client, a person. A write is conditional on the set as read (Cloud
///   DNS: the change deletes exactly that set, or fails with 412/409); on a
///   conflict the provider reads again and recomputes, a bounded number of
///   times, then fails with the retryable [`DnsError::Contended`]. It never
///   overwrites a set blindly. Calls on one instance may run concurrently
///   (`&self`); caches are behind locks.
/// * **What cleanup may remove.** Exactly the given values at the given names,
///   nothing else: other writers' values stay, with their quoting and the set's
///   TTL; a set left empty is deleted; other record types (the CNAME that
///   delegates a challenge name) are never touched.
/// * **Crashes and retries.** The records themselves are the only state: no
///   local bookkeeping is needed for correctness. After a crash the caller
///   simply calls `present` again with the same values (idempotent), or
///   `cleanup` on a fresh instance with the values of the crashed attempt;
///   cleanup must work after a partial or interrupted `present` and without
///   any `present` in this process. A write whose fate is unknown (timeout, 5xx)
///   is handled like a conflict: read again, then decide.
/// * **Completion.** Both return once the provider has accepted the write,
///   durably: it will be applied without anything more from us, even if this
///   process dies now (Cloud DNS: the change is created; an accepted change is
///   part of the zone, whose state is "the sum effect of applying all Change
///   elements in sequence", and its later `done` says only that the update was
///   sent to the servers). Not once it is served: the [`Solver`] polls the
///   servers [`placement`](Self::placement) names. A write that is refused, or
///   whose fate is unknown, is not accepted.
/// * **Placement.** `placement` resolves a name exactly as `present` did
///   (same CNAME delegation, same zone), without writing.
/// * **Errors.** [`DnsError::is_retryable`] tells the daemon whether trying
///   later may help; a permanent error says what to change (zone, delegation,
///   permission), and an API error keeps the provider's code and message.
pub trait DnsProvider: Send + Sync {
    /// The backend's name, for logs.
    fn name(&self) -> &'static str;

    /// Makes every value present at its name (keeping other values there);
    /// returns how many writes were made.
    fn present(&self, records: &[TxtRecord]) -> impl Future<Output = Result<u32, DnsError>> + Send;

    /// Removes exactly these values (keeping other values there); returns how
    /// many writes were made.
    fn cleanup(&self, records: &[TxtRecord]) -> impl Future<Output = Result<u32, DnsError>> + Send;

    /// Where `record_name`'s values go and which servers answer for it.
    fn placement(
        &self,
        record_name: &str,
    ) -> impl Future<Output = Result<Placement, DnsError>> + Send;
}

/// The providers a configuration can choose; dispatches to the one chosen.
pub enum Provider {
    CloudDns(CloudDnsProvider),
}

impl DnsProvider for Provider {
    fn name(&self) -> &'static str {
        match self {
            Provider::CloudDns(p) => p.name(),
        }
    }

    async fn present(&self, records: &[TxtRecord]) -> Result<u32, DnsError> {
        match self {
            Provider::CloudDns(p) => p.present(records).await,
        }
    }

    async fn cleanup(&self, records: &[TxtRecord]) -> Result<u32, DnsError> {
        match self {
            Provider::CloudDns(p) => p.cleanup(records).await,
        }
    }

    async fn placement(&self, record_name: &str) -> Result<Placement, DnsError> {
        match self {
            Provider::CloudDns(p) => p.placement(record_name).await,
        }
    }
}

/// The solver for one certificate's names, with the provider the configuration
/// chooses. The one place that chooses: a second provider adds a variant to
/// [`Provider`] and an arm here (keyed on a `[dns]` setting).
/// `zone`: the certificate's configured zone (skips discovery), if any.
pub fn from_config(gcp: Gcp, config: &DnsConfig, zone: Option<String>) -> Solver<Provider> {
    let provider = match config.provider {
        DnsProviderKind::CloudDns => Provider::CloudDns(CloudDnsProvider::new(gcp, config, zone)),
    };
    Solver::with_provider(provider, config)
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
    #[error("cannot find the name servers to check: {0}")]
    ServerAddress(#[from] propagation::ServerError),
}

impl DnsError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DnsError::Gcp { source, .. } => source.is_retryable(),
            DnsError::Contended { .. }
            | DnsError::Propagation(_)
            | DnsError::Servers(_)
            | DnsError::ServerAddress(_) => true,
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

/// What presenting cost, for logs and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct PresentReport {
    pub changes: u32,
    pub dns_queries: u64,
    pub propagation: Duration,
}

pub(crate) fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else {
        format!("{}.", name.to_ascii_lowercase())
    }
}

/// DNS-01 over any provider: write through it, then wait until every
/// authoritative server it names (or `dns.nameservers`) serves every value.
pub struct Solver<P> {
    provider: P,
    propagation_timeout: Duration,
    nameservers: Vec<String>,
    checker: Arc<Checker>,
}

/// The Cloud DNS solver, named for callers that want Cloud DNS itself (tests).
pub type CloudDns = Solver<CloudDnsProvider>;

impl Solver<CloudDnsProvider> {
    /// `zone`: the configured managed zone (skips discovery), if any.
    pub fn new(gcp: Gcp, config: &DnsConfig, zone: Option<String>) -> CloudDns {
        Solver::with_provider(CloudDnsProvider::new(gcp, config, zone), config)
    }

    /// The zone and name where `record_name`'s TXT values go, following CNAMEs.
    pub async fn target(&self, record_name: &str) -> Result<Target, DnsError> {
        self.provider.target(record_name).await
    }
}

impl<P: DnsProvider> Solver<P> {
    pub fn with_provider(provider: P, config: &DnsConfig) -> Solver<P> {
        Solver {
            provider,
            propagation_timeout: config.propagation_timeout.get(),
            nameservers: config.nameservers.clone(),
            checker: Checker::new(),
        }
    }

    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// The propagation checker (its query count feeds metrics and benchmarks).
    pub fn checker(&self) -> &Arc<Checker> {
        &self.checker
    }

    /// Writes every value and waits until every authoritative server serves them.
    pub async fn present(&self, records: &[TxtRecord]) -> Result<PresentReport, DnsError> {
        let changes = self.provider.present(records).await?;
        let expectations = self.expectations(records).await?;
        let r = self
            .checker
            .wait(&expectations, self.propagation_timeout)
            .await?;
        let report = PresentReport {
            changes,
            dns_queries: r.queries,
            propagation: r.waited,
        };
        tracing::info!(
            provider = self.provider.name(),
            names = expectations.len(),
            changes,
            dns_queries = r.queries,
            waited_ms = r.waited.as_millis() as u64,
            "challenge records served by every authoritative name server"
        );
        Ok(report)
    }

    /// Removes exactly our values (other values at the same names stay).
    pub async fn cleanup(&self, records: &[TxtRecord]) -> Result<u32, DnsError> {
        self.provider.cleanup(records).await
    }

    /// One expectation per written name: all its values, at its servers.
    async fn expectations(&self, records: &[TxtRecord]) -> Result<Vec<Expectation>, DnsError> {
        let mut out: Vec<Expectation> = Vec::new();
        let mut servers_of_zone: HashMap<String, Vec<Server>> = HashMap::new();
        for r in records {
            let p = self.provider.placement(&r.name).await?;
            if let Some(e) = out.iter_mut().find(|e| e.name == p.name) {
                if !e.values.contains(&r.value) {
                    e.values.push(r.value.clone());
                }
                continue;
            }
            let servers = match servers_of_zone.get(&p.zone) {
                Some(s) => s.clone(),
                None => {
                    let s = self.servers(&p).await?;
                    servers_of_zone.insert(p.zone.clone(), s.clone());
                    s
                }
            };
            out.push(Expectation {
                name: p.name,
                values: vec![r.value.clone()],
                servers,
            });
        }
        Ok(out)
    }

    async fn servers(&self, p: &Placement) -> Result<Vec<Server>, DnsError> {
        let specs = if self.nameservers.is_empty() {
            &p.servers
        } else {
            &self.nameservers
        };
        if specs.is_empty() {
            return Err(DnsError::Servers(format!(
                "zone {} lists no name servers; set dns.nameservers",
                p.zone
            )));
        }
        let mut out = Vec::new();
        for s in specs {
            out.extend(propagation::resolve_servers(s).await?);
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

impl<P: DnsProvider> crate::acme::Dns01Solver for Solver<P> {
    async fn present(
        &self,
        records: &[crate::acme::ChallengeRecord],
    ) -> Result<(), crate::acme::SolverError> {
        Solver::present(self, &to_txt(records))
            .await
            .map(|_| ())
            .map_err(solver_error)
    }

    async fn cleanup(
        &self,
        records: &[crate::acme::ChallengeRecord],
    ) -> Result<(), crate::acme::SolverError> {
        Solver::cleanup(self, &to_txt(records))
            .await
            .map(|_| ())
            .map_err(solver_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider with fixed placements: what the solver does with them must not
    /// depend on Cloud DNS.
    struct Fixed(Vec<(&'static str, Placement)>);

    impl DnsProvider for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        async fn present(&self, _: &[TxtRecord]) -> Result<u32, DnsError> {
            Ok(0)
        }
        async fn cleanup(&self, _: &[TxtRecord]) -> Result<u32, DnsError> {
            Ok(0)
        }
        async fn placement(&self, record_name: &str) -> Result<Placement, DnsError> {
            self.0
                .iter()
                .find(|(n, _)| *n == record_name)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| DnsError::Servers(format!("no placement for {record_name}")))
        }
    }

    fn placement(name: &str, zone: &str, servers: &[&str]) -> Placement {
        Placement {
            name: name.into(),
            zone: zone.into(),
            servers: servers.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn rec(name: &str, value: &str) -> TxtRecord {
        TxtRecord {
            name: name.into(),
            value: value.into(),
        }
    }

    #[tokio::test]
    async fn one_expectation_per_written_name_with_all_its_values_at_its_zones_servers() {
        // Apex and wildcard share a name; a second name is delegated by CNAME to
        // the same target; a third lives in another zone.
        let target = placement("t.delegated.test.", "z1", &["127.0.0.1:1053"]);
        let solver = Solver::with_provider(
            Fixed(vec![
                ("_acme-challenge.a.test", target.clone()),
                ("_acme-challenge.b.test", target),
                (
                    "_acme-challenge.c.test",
                    placement("_acme-challenge.c.test.", "z2", &["127.0.0.2:53"]),
                ),
            ]),
            &DnsConfig::default(),
        );
        let records = [
            rec("_acme-challenge.a.test", "apex"),
            rec("_acme-challenge.a.test", "wildcard"),
            rec("_acme-challenge.b.test", "b"),
            rec("_acme-challenge.b.test", "b"),
            rec("_acme-challenge.c.test", "c"),
        ];
        let e = solver.expectations(&records).await.unwrap();
        let got: Vec<(&str, Vec<&str>, Vec<String>)> = e
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.values.iter().map(String::as_str).collect(),
                    e.servers.iter().map(|s| s.addr.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "t.delegated.test.",
                    vec!["apex", "wildcard", "b"],
                    vec!["127.0.0.1:1053".to_string()]
                ),
                (
                    "_acme-challenge.c.test.",
                    vec!["c"],
                    vec!["127.0.0.2:53".to_string()]
                ),
            ]
        );
    }

    #[tokio::test]
    async fn configured_name_servers_replace_the_providers_and_none_at_all_is_an_error() {
        let provider = || Fixed(vec![("n", placement("n.", "bare", &[]))]);
        let err = Solver::with_provider(provider(), &DnsConfig::default())
            .expectations(&[rec("n", "v")])
            .await
            .unwrap_err();
        assert!(matches!(err, DnsError::Servers(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot find the name servers to check: zone bare lists no name servers; set dns.nameservers"
        );
        let config = DnsConfig {
            nameservers: vec!["127.0.0.9:5300".into()],
            ..DnsConfig::default()
        };
        let e = Solver::with_provider(provider(), &config)
            .expectations(&[rec("n", "v")])
            .await
            .unwrap();
        assert_eq!(e[0].servers[0].addr.to_string(), "127.0.0.9:5300");
    }

    #[tokio::test]
    async fn a_placement_error_stops_before_any_server_is_polled() {
        let solver = Solver::with_provider(Fixed(vec![]), &DnsConfig::default());
        let err = solver.present(&[rec("missing", "v")]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot find the name servers to check: no placement for missing"
        );
        assert_eq!(solver.checker().queries(), 0);
    }
}
