//! resourceRecordSets: the AIP-160 filter, list, get and the direct create/patch/delete.

use crate::admin::FailOperation;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;
use axum::extract::{Path, Query, State as AxState};
use axum::{Extension, Json};
use serde_json::{Value, json};
use std::collections::HashMap;

use super::*;

/// `name` / `type` filters, or the AIP-160 `filter` (`name="x." AND type="TXT"`,
/// `name=has_suffix("x.")`).
pub(super) struct RrsetFilter {
    pub(super) name: Option<String>,
    pub(super) suffix: Option<String>,
    pub(super) rtype: Option<String>,
}

pub(super) fn parse_filter(q: &HashMap<String, String>) -> ApiResult<RrsetFilter> {
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

pub(super) async fn list_rrsets(
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

pub(super) fn rrset_not_found(name: &str, rtype: &str) -> ApiError {
    ApiError::new(
        404,
        "notFound",
        format!("The 'parameters.name' resource named '{name} ({rtype})' does not exist."),
    )
}

pub(super) async fn get_rrset(
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

pub(super) async fn create_rrset(
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

pub(super) async fn patch_rrset(
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

pub(super) async fn delete_rrset(
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
