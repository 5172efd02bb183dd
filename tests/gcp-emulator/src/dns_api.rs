//! Cloud DNS v1: managed zones, record sets and changes.
//!
//! Semantics follow Google's service (and its own `LocalDnsHelper` fake):
//! - a change is atomic: deletions are checked and applied first (404 when the set is
//!   absent, 412 `conditionNotMet` unless name, type, ttl and every rrdata match),
//!   then additions (409 `alreadyExists` when the (name, type) still exists);
//! - a change reads `pending` until `dns_change_delay` has passed since it was made,
//!   then `done` (derived from timestamps, no background task);
//! - the records are applied at once, and every version of a zone is kept with the
//!   instant it was made, so each simulated name server can serve the zone as it was
//!   `lag` ago (see [`visible_zone`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Map, Value, json};

use crate::admin::FailOperation;
use crate::error::{ApiError, ApiResult};
use crate::state::{Shared, World, rfc3339_utc};

/// Record types Cloud DNS accepts.
const SUPPORTED_TYPES: &[&str] = &[
    "A", "AAAA", "ALIAS", "CAA", "CNAME", "DNSKEY", "DS", "HTTPS", "IPSECKEY", "MX", "NAPTR", "NS",
    "PTR", "SOA", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT",
];

/// Record types whose rrdatas are checked (and later served) through hickory's
/// zone-file parser; the others are stored as given.
const PARSED_TYPES: &[&str] = &[
    "A", "AAAA", "CAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT",
];

/// Google's per-project limits, as `projects.get` reports them.
const RRSET_ADDITIONS_PER_CHANGE: usize = 1000;
const RRSET_DELETIONS_PER_CHANGE: usize = 1000;

/// Client-given ManagedZone fields kept and echoed back as given.
const EXTRA_ZONE_FIELDS: &[&str] = &[
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
const HISTORY_SLACK: Duration = Duration::from_secs(60);

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
    fn matches_exactly(&self, other: &RecordSet) -> bool {
        let mut a = self.rrdatas.clone();
        let mut b = other.rrdatas.clone();
        a.sort();
        b.sort();
        self.key() == other.key()
            && self.ttl == other.ttl
            && a == b
            && self.routing_policy == other.routing_policy
    }

    fn label(&self) -> String {
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
    fn to_json(&self, delay: Duration) -> Value {
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
    fn commit(
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
    fn prune_history(&mut self, now: Instant, max_lag: Duration) {
        let Some(horizon) = now.checked_sub(max_lag * 2 + HISTORY_SLACK) else {
            return;
        };
        let older = self.history.iter().filter(|s| s.at <= horizon).count();
        if older > 1 {
            self.history.drain(..older - 1);
        }
    }

    fn contains_name(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let apex = self.dns_name.to_ascii_lowercase();
        name == apex || name.ends_with(&format!(".{apex}"))
    }

    fn apex_key(&self, rtype: &str) -> Key {
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

/// The `/dns/v1/` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/dns/v1/projects/{project}", get(get_project))
        .route(
            "/dns/v1/projects/{project}/managedZones",
            get(list_zones).post(create_zone),
        )
        .route(
            "/dns/v1/projects/{project}/managedZones/{zone}",
            get(get_zone)
                .delete(delete_zone)
                .patch(patch_zone)
                .put(update_zone),
        )
        .route(
            "/dns/v1/projects/{project}/managedZones/{zone}/operations",
            get(list_operations),
        )
        .route(
            "/dns/v1/projects/{project}/managedZones/{zone}/operations/{operation}",
            get(get_operation),
        )
        .route(
            "/dns/v1/projects/{project}/managedZones/{zone}/changes",
            get(list_changes).post(create_change),
        )
        .route(
            "/dns/v1/projects/{project}/managedZones/{zone}/changes/{change}",
            get(get_change),
        )
        .route(
            "/dns/v1/projects/{project}/managedZones/{zone}/rrsets",
            get(list_rrsets).post(create_rrset),
        )
        .route(
            "/dns/v1/projects/{project}/managedZones/{zone}/rrsets/{name}/{rtype}",
            get(get_rrset).patch(patch_rrset).delete(delete_rrset),
        )
}

type Params = Query<HashMap<String, String>>;

fn zone_not_found(zone: &str) -> ApiError {
    ApiError::new(
        404,
        "notFound",
        format!("The 'parameters.managedZone' resource named '{zone}' does not exist."),
    )
}

/// Finds a zone by name or numeric id.
fn zone_mut<'a>(state: &'a mut State, zone: &str) -> ApiResult<&'a mut Zone> {
    let key = if state.zones.contains_key(zone) {
        Some(zone.to_string())
    } else {
        state
            .zones
            .values()
            .find(|z| z.id.to_string() == zone)
            .map(|z| z.name.clone())
    };
    key.and_then(|k| state.zones.get_mut(&k))
        .ok_or_else(|| zone_not_found(zone))
}

fn max_lag(shared: &Shared) -> Duration {
    shared
        .admin
        .dns_lags()
        .into_iter()
        .max()
        .unwrap_or_default()
}

async fn get_project(
    AxState(shared): AxState<Shared>,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut world = shared.world();
    let p = world.project(&project)?;
    Ok(Json(json!({
        "kind": "dns#project",
        "id": p.id,
        "number": p.number.to_string(),
        "quota": {
            "kind": "dns#quota",
            "managedZones": 10000,
            "rrsetsPerManagedZone": 10000,
            "rrsetAdditionsPerChange": RRSET_ADDITIONS_PER_CHANGE,
            "rrsetDeletionsPerChange": RRSET_DELETIONS_PER_CHANGE,
            "totalRrdataSizePerChange": 100000,
            "resourceRecordsPerRrset": 100,
            "dnsKeysPerManagedZone": 4,
            "networksPerManagedZone": 50,
            "policies": 100,
            "networksPerPolicy": 50,
            "targetNameServersPerManagedZone": 50,
            "targetNameServersPerPolicy": 50,
            "managedZonesPerNetwork": 10000,
            "peeringZonesPerTargetNetwork": 100,
            "responsePolicies": 100,
            "responsePolicyRulesPerResponsePolicy": 10000,
            "gkeClustersPerManagedZone": 100,
            "gkeClustersPerPolicy": 1000,
            "gkeClustersPerResponsePolicy": 100,
            "managedZonesPerGkeCluster": 10000,
            "networksPerResponsePolicy": 50,
            "itemsPerRoutingPolicy": 100,
            "nameserversPerDelegation": 10,
            "internetHealthChecksPerManagedZone": 100,
            "outboundEndpointsPerManagedZone": 4,
            "outboundEndpointsPerPolicy": 4,
            "whitelistedKeySpecs": [],
        },
    })))
}

fn required(field: &str) -> ApiError {
    ApiError::required(format!(
        "The '{field}' parameter is required but was missing."
    ))
}

fn invalid_value(field: &str, value: &str) -> ApiError {
    ApiError::invalid(format!("Invalid value for '{field}': '{value}'"))
}

fn is_zone_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A fully qualified domain name as Cloud DNS accepts it.
fn is_fqdn(s: &str) -> bool {
    s.ends_with('.') && s.len() > 1 && !s.contains("..") && Name::from_ascii(s).is_ok()
}

fn str_field<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

async fn create_zone(
    AxState(shared): AxState<Shared>,
    Path(project): Path<String>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let name = str_field(&body, "name").ok_or_else(|| required("entity.managedZone.name"))?;
    let dns_name =
        str_field(&body, "dnsName").ok_or_else(|| required("entity.managedZone.dnsName"))?;
    let description = str_field(&body, "description")
        .ok_or_else(|| required("entity.managedZone.description"))?;
    if !is_zone_name(name) {
        return Err(invalid_value("entity.managedZone.name", name));
    }
    if !is_fqdn(dns_name) {
        return Err(invalid_value("entity.managedZone.dnsName", dns_name));
    }
    let visibility = str_field(&body, "visibility").unwrap_or("public");
    if visibility != "public" && visibility != "private" {
        return Err(invalid_value("entity.managedZone.visibility", visibility));
    }
    let servers = shared.config.dns_servers.max(1);

    let mut world = shared.world();
    let id = world.fresh_id();
    let p = world.project(&project)?;
    if p.dns.zones.contains_key(name) {
        return Err(ApiError::new(
            409,
            "alreadyExists",
            format!("The resource 'entity.managedZone' named '{name}' already exists"),
        ));
    }
    // Google spreads zones over name-server sets a..e; keep that shape.
    let set = char::from(b'a' + (id % 5) as u8);
    let name_servers: Vec<String> = if visibility == "private" {
        vec!["ns-gcp-private.googledomains.com.".to_string()]
    } else {
        (1..=servers)
            .map(|i| format!("ns-cloud-{set}{i}.googledomains.com."))
            .collect()
    };
    let mut extra = Map::new();
    for field in EXTRA_ZONE_FIELDS {
        if let Some(v) = body.get(field) {
            extra.insert(field.to_string(), v.clone());
        }
    }
    if visibility == "private" && !extra.contains_key("privateVisibilityConfig") {
        extra.insert(
            "privateVisibilityConfig".to_string(),
            json!({"kind": "dns#managedZonePrivateVisibilityConfig", "networks": []}),
        );
    }

    // The apex SOA and NS record sets Google creates with every zone (change 0).
    let soa = RecordSet {
        name: dns_name.to_string(),
        rtype: "SOA".to_string(),
        ttl: 21600,
        // infallible: there is at least one name server (`servers >= 1`, or the private one).
        rrdatas: vec![format!(
            "{} cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300",
            name_servers[0]
        )],
        signature_rrdatas: Vec::new(),
        routing_policy: None,
    };
    let ns = RecordSet {
        name: dns_name.to_string(),
        rtype: "NS".to_string(),
        ttl: 21600,
        rrdatas: name_servers.clone(),
        signature_rrdatas: Vec::new(),
        routing_policy: None,
    };
    let mut records = RecordMap::new();
    records.insert(ns.key(), ns.clone());
    records.insert(soa.key(), soa.clone());
    let now = Instant::now();
    let created = SystemTime::now();
    let zone = Zone {
        name: name.to_string(),
        id,
        dns_name: dns_name.to_string(),
        description: description.to_string(),
        visibility: visibility.to_string(),
        name_servers,
        created,
        history: vec![Snapshot {
            at: now,
            records: Arc::new(records.clone()),
        }],
        records,
        changes: vec![ChangeRecord {
            id: 0,
            start_time: created,
            started: now,
            additions: vec![ns, soa],
            deletions: Vec::new(),
            done_at_once: true,
        }],
        operations: Vec::new(),
        extra,
    };
    let out = zone.to_json();
    p.dns.zones.insert(name.to_string(), zone);
    Ok(Json(out))
}

async fn get_zone(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let mut world = shared.world();
    let p = world.project(&project)?;
    Ok(Json(zone_mut(&mut p.dns, &zone)?.to_json()))
}

/// `managedZones.patch` (merge) and `update` (replace): both finish at once and
/// return a done `dns#operation` carrying the old and new zone.
fn modify_zone(
    shared: &Shared,
    project: &str,
    zone: &str,
    body: &Value,
    replace: bool,
) -> ApiResult<Value> {
    let mut world = shared.world();
    let p = world.project(project)?;
    let z = zone_mut(&mut p.dns, zone)?;
    // name, dnsName and visibility cannot change.
    for (field, now) in [
        ("name", z.name.clone()),
        ("dnsName", z.dns_name.clone()),
        ("visibility", z.visibility.clone()),
    ] {
        if let Some(v) = str_field(body, field)
            && v != now
        {
            return Err(invalid_value(&format!("entity.managedZone.{field}"), v));
        }
    }
    let old = z.to_json();
    if let Some(d) = str_field(body, "description") {
        z.description = d.to_string();
    } else if replace {
        return Err(required("entity.managedZone.description"));
    }
    for field in EXTRA_ZONE_FIELDS {
        match body.get(*field) {
            Some(v) => {
                z.extra.insert(field.to_string(), v.clone());
            }
            // nameServerSet is fixed at creation.
            None if replace && *field != "nameServerSet" => {
                z.extra.remove(*field);
            }
            None => {}
        }
    }
    let op = json!({
        "kind": "dns#operation",
        "id": (z.operations.len() + 1).to_string(),
        "startTime": rfc3339_utc(SystemTime::now()),
        "status": "done",
        "type": "UPDATE",
        "user": "cloud-dns-system",
        "zoneContext": {"oldValue": old, "newValue": z.to_json()},
    });
    z.operations.push(op.clone());
    Ok(op)
}

async fn patch_zone(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    modify_zone(&shared, &project, &zone, &body, false).map(Json)
}

async fn update_zone(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    modify_zone(&shared, &project, &zone, &body, true).map(Json)
}

async fn get_operation(
    AxState(shared): AxState<Shared>,
    Path((project, zone, operation)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    z.operations
        .iter()
        .find(|o| o["id"] == json!(operation))
        .map(|o| Json(o.clone()))
        .ok_or_else(|| {
            ApiError::new(
                404,
                "notFound",
                format!("The 'parameters.operation' resource named '{operation}' does not exist."),
            )
        })
}

async fn list_operations(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    let (offset, max) = paging(&q)?;
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    let (items, next) = page(z.operations.clone(), offset, max);
    Ok(Json(list_body(
        "dns#managedZoneOperationsListResponse",
        "operations",
        items,
        next,
    )))
}

/// `maxResults` and `pageToken` (an offset, opaque to clients).
fn paging(q: &HashMap<String, String>) -> ApiResult<(usize, Option<usize>)> {
    let offset = match q.get("pageToken") {
        None => 0,
        Some(t) if t.is_empty() => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| invalid_value("parameters.pageToken", t))?,
    };
    let max = match q.get("maxResults") {
        None => None,
        Some(m) => match m.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => return Err(invalid_value("parameters.maxResults", m)),
            Err(_) => {
                return Err(ApiError::invalid(format!("Invalid integer value: '{m}'.")));
            }
        },
    };
    Ok((offset, max))
}

/// One page of `items` and the token for the next one.
fn page(items: Vec<Value>, offset: usize, max: Option<usize>) -> (Vec<Value>, Option<String>) {
    let total = items.len();
    let end = max.map_or(total, |m| offset.saturating_add(m).min(total));
    let out: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(end.saturating_sub(offset))
        .collect();
    let next = (end < total).then(|| end.to_string());
    (out, next)
}

fn list_body(kind: &str, field: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut v = json!({ "kind": kind, field: items });
    if let Some(t) = next {
        v["nextPageToken"] = json!(t);
    }
    v
}

async fn list_zones(
    AxState(shared): AxState<Shared>,
    Path(project): Path<String>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    let (offset, max) = paging(&q)?;
    let dns_name = q.get("dnsName");
    if let Some(d) = dns_name
        && !d.ends_with('.')
    {
        return Err(invalid_value("parameters.dnsName", d));
    }
    let mut world = shared.world();
    let p = world.project(&project)?;
    // `dnsName` is an exact match, not a suffix search.
    let items: Vec<Value> = p
        .dns
        .zones
        .values()
        .filter(|z| dns_name.is_none_or(|d| z.dns_name.eq_ignore_ascii_case(d)))
        .map(Zone::to_json)
        .collect();
    let (items, next) = page(items, offset, max);
    Ok(Json(list_body(
        "dns#managedZonesListResponse",
        "managedZones",
        items,
        next,
    )))
}

async fn delete_zone(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    fail: Option<Extension<FailOperation>>,
) -> ApiResult<Response> {
    if let Some(Extension(FailOperation(e))) = fail {
        return Err(e);
    }
    let keep = max_lag(&shared) * 2 + HISTORY_SLACK;
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    let apex = z.dns_name.to_ascii_lowercase();
    let busy = z
        .records
        .values()
        .any(|r| !(r.name.eq_ignore_ascii_case(&apex) && (r.rtype == "SOA" || r.rtype == "NS")));
    if busy {
        return Err(ApiError::new(
            400,
            "containerNotEmpty",
            format!(
                "The resource 'entity.managedZone' named '{}' cannot be deleted because it is not empty",
                z.name
            ),
        ));
    }
    let name = z.name.clone();
    let now = Instant::now();
    p.dns.retired.retain(|(gone, _)| *gone + keep > now);
    if let Some(z) = p.dns.zones.remove(&name) {
        p.dns.retired.push((now, z));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Parses a `ResourceRecordSet` from a request body; `field` names it in errors
/// (`entity.change.additions[0]`).
fn parse_rrset(v: &Value, field: &str) -> ApiResult<RecordSet> {
    let name = str_field(v, "name").ok_or_else(|| required(&format!("{field}.name")))?;
    let rtype = str_field(v, "type").ok_or_else(|| required(&format!("{field}.type")))?;
    let ttl = match v.get("ttl") {
        None | Some(Value::Null) => return Err(required(&format!("{field}.ttl"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| invalid_value(&format!("{field}.ttl"), &n.to_string()))?,
        Some(Value::String(s)) => s
            .parse::<i64>()
            .map_err(|_| invalid_value(&format!("{field}.ttl"), s))?,
        Some(other) => return Err(invalid_value(&format!("{field}.ttl"), &other.to_string())),
    };
    let strings = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(RecordSet {
        name: name.to_string(),
        rtype: rtype.to_string(),
        ttl,
        rrdatas: strings("rrdatas"),
        signature_rrdatas: strings("signatureRrdatas"),
        routing_policy: v.get("routingPolicy").cloned(),
    })
}

/// Checks one record set against the zone (name inside it, known type, sane ttl,
/// well-formed rrdatas).
fn check_rrset(r: &RecordSet, zone: &Zone, field: &str) -> ApiResult<()> {
    if !is_fqdn(&r.name) || !zone.contains_name(&r.name) {
        return Err(invalid_value(&format!("{field}.name"), &r.name));
    }
    if !SUPPORTED_TYPES.contains(&r.rtype.as_str()) {
        return Err(invalid_value(&format!("{field}.type"), &r.rtype));
    }
    if !(0..=i64::from(i32::MAX)).contains(&r.ttl) {
        return Err(invalid_value(&format!("{field}.ttl"), &r.ttl.to_string()));
    }
    if r.rrdatas.is_empty() && r.routing_policy.is_none() {
        return Err(invalid_value(&format!("{field}.rrdata"), "<empty>"));
    }
    if PARSED_TYPES.contains(&r.rtype.as_str()) {
        let rt = RecordType::from_str(&r.rtype)
            .map_err(|_| invalid_value(&format!("{field}.type"), &r.rtype))?;
        for (i, d) in r.rrdatas.iter().enumerate() {
            let ok = match RData::try_from_str(rt, d) {
                // Names inside rrdatas must be fully qualified: there is no origin.
                Ok(RData::CNAME(ref n)) => n.0.is_fqdn(),
                Ok(RData::NS(ref n)) => n.0.is_fqdn(),
                Ok(RData::PTR(ref n)) => n.0.is_fqdn(),
                Ok(_) => true,
                Err(_) => false,
            };
            if !ok {
                return Err(invalid_value(&format!("{field}.rrdata[{i}]"), d));
            }
        }
    }
    if r.rtype == "CNAME" && r.rrdatas.len() > 1 {
        return Err(invalid_value(&format!("{field}.rrdata[1]"), &r.rrdatas[1]));
    }
    let at_apex = r.name.eq_ignore_ascii_case(&zone.dns_name);
    if r.rtype == "SOA" && !at_apex {
        return Err(invalid_zone_apex(field, "SOA"));
    }
    if r.rtype == "CNAME" && at_apex {
        return Err(invalid_value(&format!("{field}.type"), &r.rtype));
    }
    Ok(())
}

fn invalid_zone_apex(field: &str, rtype: &str) -> ApiError {
    ApiError::new(
        400,
        "invalidZoneApex",
        format!(
            "The resource record set '{field}' is invalid because a zone must contain exactly one resource record set of type '{rtype}' at the apex."
        ),
    )
}

/// Checks that the zone, after a change, still has its apex SOA and NS and no name
/// with both a CNAME and other data. `blame` names the record set at fault.
fn check_zone_shape(
    zone: &Zone,
    records: &RecordMap,
    blame: &dyn Fn(&str, &str) -> String,
) -> ApiResult<()> {
    for rtype in ["SOA", "NS"] {
        if !records.contains_key(&zone.apex_key(rtype)) {
            return Err(invalid_zone_apex(&blame(&zone.dns_name, rtype), rtype));
        }
    }
    let mut names: HashMap<&str, (bool, bool)> = HashMap::new();
    for (name, rtype) in records.keys() {
        let e = names.entry(name.as_str()).or_default();
        if rtype == "CNAME" {
            e.0 = true;
        } else {
            e.1 = true;
        }
    }
    if let Some((name, _)) = names.iter().find(|(_, (c, o))| *c && *o) {
        let field = blame(name, "CNAME");
        return Err(ApiError::new(
            400,
            "cnameResourceRecordSetConflict",
            format!(
                "The resource record set '{field}' is invalid because the DNS name '{name}' may have either one CNAME resource record set or resource record sets of other types, but not both."
            ),
        ));
    }
    Ok(())
}

async fn create_change(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    fail: Option<Extension<FailOperation>>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    let lag = max_lag(&shared);
    let delay = shared.settings().dns_change_delay;
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    // Cloud DNS has no asynchronous failure: an injected operation fault fails the
    // call itself, before anything changes.
    if let Some(Extension(FailOperation(e))) = fail {
        return Err(e);
    }

    let list = |key: &str| -> ApiResult<Vec<RecordSet>> {
        body.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .enumerate()
                    .map(|(i, v)| parse_rrset(v, &format!("entity.change.{key}[{i}]")))
                    .collect()
            })
            .unwrap_or_else(|| Ok(Vec::new()))
    };
    let additions = list("additions")?;
    let deletions = list("deletions")?;
    if additions.is_empty() && deletions.is_empty() {
        return Err(required("entity.change"));
    }
    if additions.len() > RRSET_ADDITIONS_PER_CHANGE {
        return Err(ApiError::new(
            403,
            "quotaExceeded",
            format!(
                "Quota exceeded for quota metric 'rrsetAdditionsPerChange' (limit {RRSET_ADDITIONS_PER_CHANGE})."
            ),
        ));
    }
    if deletions.len() > RRSET_DELETIONS_PER_CHANGE {
        return Err(ApiError::new(
            403,
            "quotaExceeded",
            format!(
                "Quota exceeded for quota metric 'rrsetDeletionsPerChange' (limit {RRSET_DELETIONS_PER_CHANGE})."
            ),
        ));
    }
    for (kind, sets) in [("additions", &additions), ("deletions", &deletions)] {
        let mut seen = HashSet::new();
        for (i, r) in sets.iter().enumerate() {
            let field = format!("entity.change.{kind}[{i}]");
            check_rrset(r, z, &field)?;
            if !seen.insert(r.key()) {
                return Err(ApiError::invalid(format!(
                    "Invalid value for '{field}': '{}' is listed more than once",
                    r.label()
                )));
            }
        }
    }

    // Deletions first, on a working copy: nothing changes unless all of it applies.
    let mut records = z.records.clone();
    for (i, d) in deletions.iter().enumerate() {
        match records.get(&d.key()) {
            None => {
                return Err(ApiError::new(
                    404,
                    "notFound",
                    format!(
                        "The 'entity.change.deletions[{i}]' resource named '{}' does not exist.",
                        d.label()
                    ),
                ));
            }
            Some(cur) if !cur.matches_exactly(d) => {
                return Err(ApiError::condition_not_met(format!(
                    "Precondition not met for 'entity.change.deletions[{i}]'"
                )));
            }
            Some(_) => {
                records.remove(&d.key());
            }
        }
    }
    for (i, a) in additions.iter().enumerate() {
        if records.contains_key(&a.key()) {
            return Err(ApiError::new(
                409,
                "alreadyExists",
                format!(
                    "The resource 'entity.change.additions[{i}]' named '{}' already exists",
                    a.label()
                ),
            ));
        }
        records.insert(a.key(), a.clone());
    }
    let blame = |name: &str, rtype: &str| -> String {
        let hit = |sets: &[RecordSet], kind: &str| {
            sets.iter()
                .position(|r| {
                    r.name.eq_ignore_ascii_case(name) && (r.rtype == rtype || rtype == "CNAME")
                })
                .map(|i| format!("entity.change.{kind}[{i}]"))
        };
        hit(&additions, "additions")
            .or_else(|| hit(&deletions, "deletions"))
            .unwrap_or_else(|| "entity.change".to_string())
    };
    check_zone_shape(z, &records, &blame)?;

    let change = z.commit(records, additions.clone(), deletions.clone(), lag);
    Ok(Json(change.to_json(delay)))
}

async fn get_change(
    AxState(shared): AxState<Shared>,
    Path((project, zone, change)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let delay = shared.settings().dns_change_delay;
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    z.changes
        .iter()
        .find(|c| c.id.to_string() == change)
        .map(|c| Json(c.to_json(delay)))
        .ok_or_else(|| {
            ApiError::new(
                404,
                "notFound",
                format!("The 'parameters.changeId' resource named '{change}' does not exist."),
            )
        })
}

async fn list_changes(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    let (offset, max) = paging(&q)?;
    if let Some(s) = q.get("sortBy")
        && !s.eq_ignore_ascii_case("changeSequence")
    {
        return Err(ApiError::invalid(format!(
            "Invalid string value: '{s}'. Allowed values: [changesequence]"
        )));
    }
    let descending = match q.get("sortOrder").map(String::as_str) {
        None | Some("ascending") => false,
        Some("descending") => true,
        Some(other) => return Err(invalid_value("parameters.sortOrder", other)),
    };
    let delay = shared.settings().dns_change_delay;
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    let mut items: Vec<Value> = z.changes.iter().map(|c| c.to_json(delay)).collect();
    if descending {
        items.reverse();
    }
    let (items, next) = page(items, offset, max);
    Ok(Json(list_body(
        "dns#changesListResponse",
        "changes",
        items,
        next,
    )))
}

/// `name` / `type` filters, or the AIP-160 `filter` (`name="x." AND type="TXT"`,
/// `name=has_suffix("x.")`).
struct RrsetFilter {
    name: Option<String>,
    suffix: Option<String>,
    rtype: Option<String>,
}

fn parse_filter(q: &HashMap<String, String>) -> ApiResult<RrsetFilter> {
    let name = q.get("name").filter(|s| !s.is_empty());
    let rtype = q.get("type").filter(|s| !s.is_empty());
    if let Some(f) = q.get("filter").filter(|s| !s.is_empty()) {
        if name.is_some() || rtype.is_some() {
            return Err(ApiError::invalid(
                "The 'name' and 'type' parameters must be omitted when 'filter' is used.",
            ));
        }
        let bad = || invalid_value("parameters.filter", f);
        let mut out = RrsetFilter {
            name: None,
            suffix: None,
            rtype: None,
        };
        for term in f.split(" AND ") {
            let (k, v) = term.split_once('=').ok_or_else(bad)?;
            let unquote = |s: &str| -> Option<String> {
                let s = s.trim();
                s.strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .map(str::to_string)
            };
            let v = v.trim();
            match k.trim() {
                "name" => {
                    if let Some(inner) = v
                        .strip_prefix("has_suffix(")
                        .and_then(|s| s.strip_suffix(')'))
                    {
                        out.suffix = Some(unquote(inner).ok_or_else(bad)?);
                    } else {
                        out.name = Some(unquote(v).ok_or_else(bad)?);
                    }
                }
                "type" => out.rtype = Some(unquote(v).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        if out.name.is_none() && out.suffix.is_none() {
            return Err(bad());
        }
        return Ok(out);
    }
    if let Some(t) = rtype {
        if name.is_none() {
            return Err(ApiError::invalid(
                "Invalid value for 'parameters.name': '' (name must be specified if type is specified)",
            ));
        }
        if !SUPPORTED_TYPES.contains(&t.as_str()) {
            return Err(invalid_value("parameters.type", t));
        }
    }
    if let Some(n) = name
        && !n.ends_with('.')
    {
        return Err(invalid_value("parameters.name", n));
    }
    Ok(RrsetFilter {
        name: name.cloned(),
        suffix: None,
        rtype: rtype.cloned(),
    })
}

async fn list_rrsets(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult<Json<Value>> {
    let (offset, max) = paging(&q)?;
    let filter = parse_filter(&q)?;
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    let items: Vec<Value> = z
        .records
        .values()
        .filter(|r| {
            filter
                .name
                .as_ref()
                .is_none_or(|n| r.name.eq_ignore_ascii_case(n))
                && filter.suffix.as_ref().is_none_or(|s| {
                    r.name
                        .to_ascii_lowercase()
                        .ends_with(&s.to_ascii_lowercase())
                })
                && filter.rtype.as_ref().is_none_or(|t| &r.rtype == t)
        })
        .map(RecordSet::to_json)
        .collect();
    let (items, next) = page(items, offset, max);
    Ok(Json(list_body(
        "dns#resourceRecordSetsListResponse",
        "rrsets",
        items,
        next,
    )))
}

fn rrset_not_found(name: &str, rtype: &str) -> ApiError {
    ApiError::new(
        404,
        "notFound",
        format!("The 'parameters.name' resource named '{name} ({rtype})' does not exist."),
    )
}

async fn get_rrset(
    AxState(shared): AxState<Shared>,
    Path((project, zone, name, rtype)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    z.records
        .get(&(name.to_ascii_lowercase(), rtype.clone()))
        .map(|r| Json(r.to_json()))
        .ok_or_else(|| rrset_not_found(&name, &rtype))
}

async fn create_rrset(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    fail: Option<Extension<FailOperation>>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    if let Some(Extension(FailOperation(e))) = fail {
        return Err(e);
    }
    let lag = max_lag(&shared);
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    let r = parse_rrset(&body, "entity.rrset")?;
    check_rrset(&r, z, "entity.rrset")?;
    if z.records.contains_key(&r.key()) {
        return Err(ApiError::new(
            409,
            "alreadyExists",
            format!(
                "The resource 'entity.rrset' named '{}' already exists",
                r.label()
            ),
        ));
    }
    let mut records = z.records.clone();
    records.insert(r.key(), r.clone());
    check_zone_shape(z, &records, &|_, _| "entity.rrset".to_string())?;
    z.commit(records, vec![r.clone()], Vec::new(), lag);
    Ok(Json(r.to_json()))
}

async fn patch_rrset(
    AxState(shared): AxState<Shared>,
    Path((project, zone, name, rtype)): Path<(String, String, String, String)>,
    fail: Option<Extension<FailOperation>>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    if let Some(Extension(FailOperation(e))) = fail {
        return Err(e);
    }
    let lag = max_lag(&shared);
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    let key = (name.to_ascii_lowercase(), rtype.clone());
    let Some(old) = z.records.get(&key).cloned() else {
        return Err(rrset_not_found(&name, &rtype));
    };
    // PATCH replaces what the body gives (last writer wins, no precondition).
    let mut new = old.clone();
    if let Some(n) = str_field(&body, "name")
        && !n.eq_ignore_ascii_case(&old.name)
    {
        return Err(invalid_value("entity.rrset.name", n));
    }
    if let Some(t) = str_field(&body, "type")
        && t != old.rtype
    {
        return Err(invalid_value("entity.rrset.type", t));
    }
    if body.get("ttl").is_some() {
        let mut b = body.clone();
        b["name"] = json!(old.name);
        b["type"] = json!(old.rtype);
        new.ttl = parse_rrset(&b, "entity.rrset")?.ttl;
    }
    if let Some(a) = body.get("rrdatas").and_then(Value::as_array) {
        new.rrdatas = a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    if let Some(a) = body.get("signatureRrdatas").and_then(Value::as_array) {
        new.signature_rrdatas = a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    if let Some(rp) = body.get("routingPolicy") {
        new.routing_policy = Some(rp.clone());
    }
    check_rrset(&new, z, "entity.rrset")?;
    let mut records = z.records.clone();
    records.insert(key, new.clone());
    z.commit(records, vec![new.clone()], vec![old], lag);
    Ok(Json(new.to_json()))
}

async fn delete_rrset(
    AxState(shared): AxState<Shared>,
    Path((project, zone, name, rtype)): Path<(String, String, String, String)>,
    fail: Option<Extension<FailOperation>>,
) -> ApiResult<Json<Value>> {
    if let Some(Extension(FailOperation(e))) = fail {
        return Err(e);
    }
    let lag = max_lag(&shared);
    let mut world = shared.world();
    let p = world.project(&project)?;
    let z = zone_mut(&mut p.dns, &zone)?;
    let key = (name.to_ascii_lowercase(), rtype.clone());
    let Some(old) = z.records.get(&key).cloned() else {
        return Err(rrset_not_found(&name, &rtype));
    };
    let mut records = z.records.clone();
    records.remove(&key);
    check_zone_shape(z, &records, &|_, _| "entity.rrset".to_string())?;
    z.commit(records, Vec::new(), vec![old], lag);
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, rtype: &str, ttl: i64, data: &[&str]) -> RecordSet {
        RecordSet {
            name: name.into(),
            rtype: rtype.into(),
            ttl,
            rrdatas: data.iter().map(|s| s.to_string()).collect(),
            signature_rrdatas: Vec::new(),
            routing_policy: None,
        }
    }

    #[test]
    fn exact_match_ignores_rrdata_order_and_name_case_only() {
        let a = rs("x.example.com.", "TXT", 60, &["\"a\"", "\"b\""]);
        assert!(a.matches_exactly(&rs("X.example.com.", "TXT", 60, &["\"b\"", "\"a\""])));
        assert!(!a.matches_exactly(&rs("x.example.com.", "TXT", 300, &["\"a\"", "\"b\""])));
        assert!(!a.matches_exactly(&rs("x.example.com.", "TXT", 60, &["\"a\""])));
        assert!(!a.matches_exactly(&rs("x.example.com.", "TXT", 60, &["a", "b"])));
    }

    #[test]
    fn zone_names_follow_googles_grammar() {
        assert!(is_zone_name("example-com"));
        assert!(is_zone_name("a1"));
        assert!(!is_zone_name("1a"));
        assert!(!is_zone_name("a-"));
        assert!(!is_zone_name("Example"));
        assert!(!is_zone_name(&"a".repeat(64)));
        assert!(is_fqdn("example.com."));
        assert!(!is_fqdn("example.com"));
        assert!(!is_fqdn("a..b."));
    }

    #[test]
    fn paging_slices_and_hands_out_tokens() {
        let items: Vec<Value> = (0..5).map(Value::from).collect();
        let (p, next) = page(items.clone(), 0, Some(2));
        assert_eq!(p, vec![json!(0), json!(1)]);
        assert_eq!(next.as_deref(), Some("2"));
        let (p, next) = page(items, 4, Some(2));
        assert_eq!(p, vec![json!(4)]);
        assert_eq!(next, None);
    }
}
