//! Propagation: ask every authoritative name server directly (no cache, no
//! recursion) until each serves every expected TXT value. A CA validating before
//! that would fail the authorization and cost rate limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};

use super::wire::WireError;

/// A name server to ask, with the name we know it by (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub label: String,
    pub addr: SocketAddr,
}

/// The TXT values one name must carry at the given servers.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// Absolute name with the trailing dot.
    pub name: String,
    pub values: Vec<String>,
    pub servers: Vec<Server>,
}

/// Why waiting failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PropagationError {
    #[error(
        "TXT records not served after {waited:?} by: {}",
        missing.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; ")
    )]
    Timeout {
        waited: Duration,
        missing: Vec<Missing>,
    },
    #[error("no authoritative name server to check {0}")]
    NoServers(String),
}

/// Why one TXT query to one server gave no answer to compare.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("bad name {name}: {reason}")]
    BadName { name: String, reason: String },
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The server answered with an error code (not NXDOMAIN).
    #[error("{0}")]
    Rcode(ResponseCode),
}

/// Why a configured name server has no address to ask.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot resolve name server {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("name server {host} has no address")]
    NoAddress { host: String },
}

/// One server that did not serve a name's values in time.
#[derive(Debug, Clone)]
pub struct Missing {
    pub server: String,
    pub name: String,
    /// What it answered last: values, or the error.
    pub last: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} for {} (last answer: {})",
            self.server, self.name, self.last
        )
    }
}

/// Queries name servers; counts what it sends.
#[derive(Debug, Default)]
pub struct Checker {
    queries: AtomicU64,
}

/// What one check cost.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub queries: u64,
    pub waited: Duration,
}

const FIRST_DELAY: Duration = Duration::from_millis(25);
/// The longest pause between two queries to one server. Propagation to the
/// last server is the longest wait of a renewal, and the CA is asked only once
/// it is over: a server is noticed at most this late. At 2 s it was noticed
/// ~1.5 s late on average; 0.5 s costs 15 queries more per server over
/// a 12 s wait (to the zone's name servers, not API calls: no quota).
const MAX_DELAY: Duration = Duration::from_millis(500);

/// The pauses between queries to one server: quick at first, then every
/// [`MAX_DELAY`].
fn poll_delays() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(FIRST_DELAY), |d| Some((*d * 3 / 2).min(MAX_DELAY)))
}

impl Checker {
    pub fn new() -> Arc<Checker> {
        Arc::new(Checker::default())
    }

    /// DNS queries sent so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Waits until every server of every expectation serves all its values, polling
    /// each (name, server) pair on its own: quickly at first, then backing off.
    pub async fn wait(
        self: &Arc<Self>,
        expectations: &[Expectation],
        timeout: Duration,
    ) -> Result<Report, PropagationError> {
        let started = Instant::now();
        let before = self.queries();
        let deadline = started + timeout;
        let mut tasks = tokio::task::JoinSet::new();
        for e in expectations {
            if e.servers.is_empty() {
                return Err(PropagationError::NoServers(e.name.clone()));
            }
            for s in &e.servers {
                let me = Arc::clone(self);
                let (name, values, server) = (e.name.clone(), e.values.clone(), s.clone());
                tasks.spawn(async move { me.wait_one(&name, &values, &server, deadline).await });
            }
        }
        let total = tasks.len();
        let what = |served: usize| {
            format!(
                "waiting for {} TXT record(s) on the authoritative servers ({served}/{total} in place)",
                expectations.len()
            )
        };
        let step = crate::progress::Step::start(what(0));
        let mut missing = Vec::new();
        let mut served = 0;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(())) => {
                    served += 1;
                    step.set(what(served));
                }
                Ok(Err(m)) => missing.push(m),
                Err(e) => missing.push(Missing {
                    server: "?".into(),
                    name: "?".into(),
                    last: format!("check task failed: {e}"),
                }),
            }
        }
        if !missing.is_empty() {
            missing.sort_by(|a, b| (&a.name, &a.server).cmp(&(&b.name, &b.server)));
            return Err(PropagationError::Timeout {
                waited: started.elapsed(),
                missing,
            });
        }
        Ok(Report {
            queries: self.queries() - before,
            waited: started.elapsed(),
        })
    }

    async fn wait_one(
        &self,
        name: &str,
        values: &[String],
        server: &Server,
        deadline: Instant,
    ) -> Result<(), Missing> {
        let mut delays = poll_delays();
        let mut last;
        loop {
            match self.txt(name, server.addr).await {
                Ok(served) => {
                    if values.iter().all(|v| served.contains(v)) {
                        tracing::debug!(name, server = %server.label, "TXT value served");
                        return Ok(());
                    }
                    last = if served.is_empty() {
                        "no TXT values".to_string()
                    } else {
                        format!("{} other value(s)", served.len())
                    };
                }
                Err(e) => last = e.to_string(),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Missing {
                    server: format!("{} ({})", server.label, server.addr),
                    name: name.to_string(),
                    last,
                });
            }
            let delay = delays.next().unwrap_or(MAX_DELAY);
            tokio::time::sleep(delay.min(deadline - now)).await;
        }
    }

    /// The TXT values `server` serves for `name` (empty for NXDOMAIN/NODATA).
    pub async fn txt(&self, name: &str, server: SocketAddr) -> Result<Vec<String>, QueryError> {
        let qname = Name::from_ascii(name).map_err(|e| QueryError::BadName {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        let answer = super::wire::query(name, RecordType::TXT, server, false).await;
        // Count what was sent, answered or not.
        self.queries
            .fetch_add(answer.as_ref().map_or(1, |a| a.queries), Ordering::Relaxed);
        let resp = answer?.message;
        match resp.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            rc => return Err(QueryError::Rcode(rc)),
        }
        Ok(resp
            .answers
            .iter()
            .filter(|r| r.name == qname)
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }
}

/// Resolves `host:port` (or `host` with port 53) to name-server addresses.
pub(crate) async fn resolve_servers(spec: &str) -> Result<Vec<Server>, ServerError> {
    let spec = spec.trim_end_matches('.');
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(vec![Server {
            label: spec.to_string(),
            addr,
        }]);
    }
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => {
            (h.trim_end_matches('.'), p.parse::<u16>().unwrap_or(53))
        }
        _ => (spec, 53),
    };
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ServerError::Resolve {
            host: host.to_string(),
            source,
        })?;
    let servers: Vec<Server> = addrs
        .map(|addr| Server {
            label: host.to_string(),
            addr,
        })
        .collect();
    if servers.is_empty() {
        return Err(ServerError::NoAddress {
            host: host.to_string(),
        });
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_quickly_then_at_most_every_half_second() {
        let ms: Vec<u128> = poll_delays().take(12).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [25, 37, 56, 84, 126, 189, 284, 427, 500, 500, 500, 500]);
        // Over the google profile's slowest lag (12 s): the queries to one server.
        let mut t = Duration::ZERO;
        let mut queries = 1;
        for d in poll_delays() {
            if t >= Duration::from_secs(12) {
                break;
            }
            t += d;
            queries += 1;
        }
        // 16 with the former 2 s cap.
        assert_eq!(queries, 31, "one query at once, then one after each pause");
    }
}
