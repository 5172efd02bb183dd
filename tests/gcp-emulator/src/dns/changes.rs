//! changes: record-set parsing and checks, and the atomic change itself.

use crate::admin::FailOperation;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;
use axum::extract::{Path, Query, State as AxState};
use axum::{Extension, Json};
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use super::*;

/// Parses a `ResourceRecordSet` from a request body; `field` names it in errors
/// (`entity.change.additions[0]`).
pub(super) fn parse_rrset(v: &Value, field: &str) -> ApiResult<RecordSet> {
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
pub(super) fn check_rrset(r: &RecordSet, zone: &Zone, field: &str) -> ApiResult<()> {
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

pub(super) fn invalid_zone_apex(field: &str, rtype: &str) -> ApiError {
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
pub(super) fn check_zone_shape(
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

pub(super) async fn create_change(
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

pub(super) async fn get_change(
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

pub(super) async fn list_changes(
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
