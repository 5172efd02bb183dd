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
//!
//! This file holds the routes, `projects.get` and the helpers the handlers share;
//! `state.rs` the zones, record sets, changes and versions; `zones.rs`,
//! `changes.rs` and `rrsets.rs` one resource each; `server.rs` the authoritative
//! name servers (UDP and TCP) that serve the public zones.

mod changes;
mod rrsets;
pub mod server;
mod state;
mod zones;

use changes::*;
use rrsets::*;
use state::*;
pub use state::{
    ChangeRecord, Key, RecordMap, RecordSet, Snapshot, State, Zone, ZoneView, visible_zone,
};
use zones::*;

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State as AxState};
use axum::routing::get;
use hickory_proto::rr::Name;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

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
