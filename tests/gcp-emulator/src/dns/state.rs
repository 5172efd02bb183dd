//! Cloud DNS state: zones, their record sets and versions, changes, and the view
//! a lagging name server has of a zone.

use crate::state::{World, rfc3339_utc};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Record types Cloud DNS accepts.
pub(super) const SUPPORTED_TYPES: &[&str] = &[
    "A", "AAAA", "ALIAS", "CAA", "CNAME", "DNSKEY", "DS", "HTTPS", "IPSECKEY", "MX", "NAPTR", "NS",
    "PTR", "SOA", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT",
];

/// Record types whose rrdatas are checked (and later served) through hickory's
/// zone-file parser; the others are stored as given.
pub(super) const PARSED_TYPES: &[&str] = &[
    "A", "AAAA", "CAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT",
];

/// Google's per-project limits, as `projects.get` reports them.
pub(super) const RRSET_ADDITIONS_PER_CHANGE: usize = 1000;
pub(super) const RRSET_DELETIONS_PER_CHANGE: usize = 1000;

/// Client-given ManagedZone fields kept and echoed back as given.
pub(super) const EXTRA_ZONE_FIELDS: &[&str] = &[
    "labels",
    "nameServerSet",
    "dnssecConfig",
    "cloudLoggingConfig",
    "forwardingConfig",
    "peeringConfig",
    "reverseLookupConfig",
    "serviceDirectoryConfig",
    "privateVisibilityConfig",
];

/// Versions of a zone older than this (beyond the largest lag) are dropped.
pub(super) const HISTORY_SLACK: Duration = Duration::from_secs(60);

/// Per-project Cloud DNS state.
#[derive(Default)]
pub struct State {
    /// Managed zones by name.
    pub zones: BTreeMap<String, Zone>,
    /// Deleted zones and when they went: lagging name servers still serve them
    /// until their lag has passed.
    pub retired: Vec<(Instant, Zone)>,
}

/// One resource record set, as the API holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordSet {
    /// Owner name, fully qualified, as the client gave it.
    pub name: String,
    /// Record type, e.g. `TXT`.
    pub rtype: String,
    /// TTL in seconds.
    pub ttl: i64,
    /// Record data in zone-file form (TXT values stay quoted, as given).
    pub rrdatas: Vec<String>,
    /// DNSSEC signatures, kept as given.
    pub signature_rrdatas: Vec<String>,
    /// Routing policy, kept as given (not served).
    pub routing_policy: Option<Value>,
}

impl RecordSet {
    /// The map key: DNS names compare case-insensitively.
    pub fn key(&self) -> Key {
        (self.name.to_ascii_lowercase(), self.rtype.clone())
    }

    /// The `ResourceRecordSet` JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "dns#resourceRecordSet",
            "name": self.name,
            "type": self.rtype,
            "ttl": self.ttl,
            "rrdatas": self.rrdatas,
        });
        if !self.signature_rrdatas.is_empty() {
            v["signatureRrdatas"] = json!(self.signature_rrdatas);
        }
        if let Some(p) = &self.routing_policy {
            v["routingPolicy"] = p.clone();
        }
        v
    }

    /// Exact match for a deletion: name, type, ttl and the same rrdatas (in any order).
    pub(super) fn matches_exactly(&self, other: &RecordSet) -> bool {
        let mut a = self.rrdatas.clone();
        let mut b = other.rrdatas.clone();
        a.sort();
        b.sort();
        self.key() == other.key()
            && self.ttl == other.ttl
            && a == b
            && self.routing_policy == other.routing_policy
    }

    pub(super) fn label(&self) -> String {
        format!("{} ({})", self.name, self.rtype)
    }
}

/// `(lower-cased name, type)`.
pub type Key = (String, String);

/// A zone's record sets.
pub type RecordMap = BTreeMap<Key, RecordSet>;

/// One version of a zone's records and the instant it was applied.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When these records were applied.
    pub at: Instant,
    /// The whole zone at that point.
    pub records: Arc<RecordMap>,
}

/// A Cloud DNS change.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    /// Sequential per zone; the zone's creation is change 0.
    pub id: u64,
    /// Wall-clock start, for `startTime`.
    pub start_time: SystemTime,
    /// Monotonic start, for `pending` -> `done`.
    pub started: Instant,
    /// Record sets added.
    pub additions: Vec<RecordSet>,
    /// Record sets deleted.
    pub deletions: Vec<RecordSet>,
    /// Done from the start (the zone's own creation change).
    pub done_at_once: bool,
}

impl ChangeRecord {
    pub(super) fn to_json(&self, delay: Duration) -> Value {
        let done = self.done_at_once || self.started.elapsed() >= delay;
        let mut v = json!({
            "kind": "dns#change",
            "id": self.id.to_string(),
            "startTime": rfc3339_utc(self.start_time),
            "status": if done { "done" } else { "pending" },
            "isServing": true,
        });
        if !self.additions.is_empty() {
            v["additions"] = Value::Array(self.additions.iter().map(RecordSet::to_json).collect());
        }
        if !self.deletions.is_empty() {
            v["deletions"] = Value::Array(self.deletions.iter().map(RecordSet::to_json).collect());
        }
        v
    }
}

/// A managed zone.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The zone's name (its id in URLs).
    pub name: String,
    /// Numeric id.
    pub id: u64,
    /// `example.com.`
    pub dns_name: String,
    /// Free text.
    pub description: String,
    /// `public` or `private`.
    pub visibility: String,
    /// Name servers (one per simulated server for public zones).
    pub name_servers: Vec<String>,
    /// Wall-clock creation time.
    pub created: SystemTime,
    /// Current records (what the API shows).
    pub records: RecordMap,
    /// Versions of the records, oldest first (what the name servers serve, with lag).
    pub history: Vec<Snapshot>,
    /// Changes, in order.
    pub changes: Vec<ChangeRecord>,
    /// Zone operations (`managedZones.patch` / `update`), as returned.
    pub operations: Vec<Value>,
    /// Other client-given fields echoed back as given (labels, nameServerSet,
    /// privateVisibilityConfig, dnssecConfig, ...).
    pub extra: Map<String, Value>,
}

impl Zone {
    /// The `ManagedZone` JSON.
    pub fn to_json(&self) -> Value {
        let mut v = Value::Object(self.extra.clone());
        v["kind"] = json!("dns#managedZone");
        v["name"] = json!(self.name);
        v["dnsName"] = json!(self.dns_name);
        v["description"] = json!(self.description);
        v["id"] = json!(self.id.to_string());
        v["nameServers"] = json!(self.name_servers);
        v["creationTime"] = json!(rfc3339_utc(self.created));
        v["visibility"] = json!(self.visibility);
        if v.get("cloudLoggingConfig").is_none() {
            v["cloudLoggingConfig"] = json!({
                "kind": "dns#managedZoneCloudLoggingConfig",
                "enableLogging": false,
            });
        }
        v
    }

    /// Applies a validated change: new records, a new version and a change record.
    pub(super) fn commit(
        &mut self,
        records: RecordMap,
        additions: Vec<RecordSet>,
        deletions: Vec<RecordSet>,
        max_lag: Duration,
    ) -> &ChangeRecord {
        let now = Instant::now();
        self.records = records;
        self.history.push(Snapshot {
            at: now,
            records: Arc::new(self.records.clone()),
        });
        self.prune_history(now, max_lag);
        let id = self.changes.last().map_or(0, |c| c.id + 1);
        self.changes.push(ChangeRecord {
            id,
            start_time: SystemTime::now(),
            started: now,
            additions,
            deletions,
            done_at_once: false,
        });
        // infallible: a change was pushed just above.
        let last = self.changes.len() - 1;
        &self.changes[last]
    }

    /// Drops versions no name server can see any more: keep the newest version older
    /// than the horizon and everything after it.
    pub(super) fn prune_history(&mut self, now: Instant, max_lag: Duration) {
        let Some(horizon) = now.checked_sub(max_lag * 2 + HISTORY_SLACK) else {
            return;
        };
        let older = self.history.iter().filter(|s| s.at <= horizon).count();
        if older > 1 {
            self.history.drain(..older - 1);
        }
    }

    pub(super) fn contains_name(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let apex = self.dns_name.to_ascii_lowercase();
        name == apex || name.ends_with(&format!(".{apex}"))
    }

    pub(super) fn apex_key(&self, rtype: &str) -> Key {
        (self.dns_name.to_ascii_lowercase(), rtype.to_string())
    }
}

/// What a name server sees of the zone that answers for a name.
#[derive(Clone, Debug)]
pub struct ZoneView {
    /// The zone apex, lower-cased, e.g. `example.com.`.
    pub apex: String,
    /// The zone's records as they were `lag` ago.
    pub records: Arc<RecordMap>,
}

/// The public zone (longest suffix match) that holds `qname`, as a name server with
/// propagation `lag` sees it at `now`; `None` when no such zone is visible to it.
/// Private zones are never served.
pub fn visible_zone(world: &World, qname: &str, lag: Duration, now: Instant) -> Option<ZoneView> {
    let qname = qname.to_ascii_lowercase();
    let mut best: Option<ZoneView> = None;
    for project in world.projects.values() {
        let live = project.dns.zones.values();
        let retired = project
            .dns
            .retired
            .iter()
            .filter(|(gone, _)| *gone + lag > now)
            .map(|(_, z)| z);
        for zone in live.chain(retired) {
            if zone.visibility != "public" || !zone.contains_name(&qname) {
                continue;
            }
            let apex = zone.dns_name.to_ascii_lowercase();
            if best.as_ref().is_some_and(|b| b.apex.len() >= apex.len()) {
                continue;
            }
            let seen = zone
                .history
                .iter()
                .rev()
                .find(|s| s.at + lag <= now)
                .map(|s| s.records.clone());
            if let Some(records) = seen {
                best = Some(ZoneView { apex, records });
            }
        }
    }
    best
}
