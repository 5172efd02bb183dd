//! managedZones (create, get, patch, update, list, delete) and managedZoneOperations.

use crate::admin::FailOperation;
use crate::error::{ApiError, ApiResult};
use crate::state::{Shared, rfc3339_utc};
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::*;

pub(super) async fn create_zone(
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

pub(super) async fn get_zone(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let mut world = shared.world();
    let p = world.project(&project)?;
    Ok(Json(zone_mut(&mut p.dns, &zone)?.to_json()))
}

/// `managedZones.patch` (merge) and `update` (replace): both finish at once and
/// return a done `dns#operation` carrying the old and new zone.
pub(super) fn modify_zone(
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

pub(super) async fn patch_zone(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    modify_zone(&shared, &project, &zone, &body, false).map(Json)
}

pub(super) async fn update_zone(
    AxState(shared): AxState<Shared>,
    Path((project, zone)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult<Json<Value>> {
    modify_zone(&shared, &project, &zone, &body, true).map(Json)
}

pub(super) async fn get_operation(
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

pub(super) async fn list_operations(
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

pub(super) async fn list_zones(
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

pub(super) async fn delete_zone(
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
