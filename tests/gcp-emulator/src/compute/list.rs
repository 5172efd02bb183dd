//! `list` and `aggregatedList`: filter, order, page, group by scope; and `get`.

use crate::error::ApiResult;
use crate::state::Shared;
use axum::Json;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{Method, Uri};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::*;

/// A list response: filter, order, page.
pub(super) fn list_response(
    kind: &str,
    path: &str,
    mut items: Vec<Value>,
    q: &Params,
) -> ApiResult<Json<Value>> {
    if let Some(f) = q.get("filter").filter(|f| !f.trim().is_empty()) {
        let filter = Filter::parse(f)?;
        items.retain(|i| filter.matches(i));
    }
    match q.get("orderBy").map(|s| s.trim()) {
        None | Some("") | Some("name") => {
            items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        }
        Some("creationTimestamp desc") => {
            items.sort_by(|a, b| {
                let key = |v: &Value| {
                    (
                        v["creationTimestamp"].as_str().map(str::to_string),
                        v["id"].as_str().and_then(|s| s.parse::<u64>().ok()),
                    )
                };
                key(b).cmp(&key(a))
            });
        }
        Some(o) => {
            return Err(invalid_field(
                "orderBy",
                o,
                "Only 'name' and 'creationTimestamp desc' are supported.",
            ));
        }
    }
    let max = match q.get("maxResults") {
        None => MAX_RESULTS,
        Some(m) => match m.parse::<usize>() {
            Ok(0) => MAX_RESULTS,
            Ok(n) if n <= MAX_RESULTS => n,
            _ => {
                return Err(invalid_field(
                    "maxResults",
                    m,
                    "Must be less than or equal to 500.",
                ));
            }
        },
    };
    let start = match q.get("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .strip_prefix("emu-page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| invalid_field("pageToken", t, "Invalid page token."))?,
    };
    let end = (start + max).min(items.len());
    let page: Vec<Value> = items[start..end].to_vec();
    let mut out = json!({
        "kind": kind,
        "id": path,
        "selfLink": format!("{LINK_ROOT}{path}"),
    });
    if !page.is_empty() {
        out["items"] = Value::Array(page);
    }
    if end < items.len() {
        out["nextPageToken"] = json!(format!("emu-page-{end}"));
    }
    Ok(Json(out))
}

pub(super) fn list_resources(
    shared: &Shared,
    project: &str,
    region: Option<&str>,
    coll: Coll,
    q: &Params,
) -> ApiResult<Json<Value>> {
    let (path, items) = read(shared, project, region, |st, ctx| {
        let key = format!("{}/{}", ctx.scope(), coll.path());
        let items: Vec<Value> = st
            .resources
            .get(&key)
            .map(|m| m.values().map(|v| render(st, coll, v)).collect())
            .unwrap_or_default();
        Ok((format!("projects/{}/{key}", ctx.project), items))
    })?;
    let list_kind = format!("{}List", coll.kind());
    list_response(&list_kind, &path, items, q)
}

/// `aggregatedList`'s kind, as the discovery document's default names it.
pub(super) fn aggregated_kind(coll: Coll) -> &'static str {
    match coll {
        Coll::UrlMaps => "compute#urlMapsAggregatedList",
        Coll::SslCertificates => "compute#sslCertificateAggregatedList",
        Coll::TargetHttpsProxies => "compute#targetHttpsProxyAggregatedList",
        Coll::TargetHttpProxies => "compute#targetHttpProxyAggregatedList",
        Coll::BackendServices => "compute#backendServiceAggregatedList",
        Coll::Addresses => "compute#addressAggregatedList",
        Coll::ForwardingRules => "compute#forwardingRuleAggregatedList",
        Coll::NetworkEndpointGroups => "compute#networkEndpointGroupAggregatedList",
    }
}

/// `GET projects/P/aggregated/{coll}`: every scope's resources (global and each
/// region), filtered and paged as one list, then grouped by scope into
/// `items: {"global": {coll: [...]}, "regions/R": {coll: [...]}}`.
pub(super) fn aggregated_list(
    shared: &Shared,
    project: &str,
    coll: Coll,
    q: &Params,
) -> ApiResult<Json<Value>> {
    let (path, items) = read(shared, project, None, |st, ctx| {
        let suffix = format!("/{}", coll.path());
        let mut items = Vec::new();
        for (key, m) in &st.resources {
            let Some(scope) = key.strip_suffix(&suffix) else {
                continue;
            };
            for v in m.values() {
                let mut r = render(st, coll, v);
                // Remembered for grouping below, removed before rendering.
                r["__scope"] = json!(scope);
                items.push(r);
            }
        }
        Ok((
            format!("projects/{}/aggregated/{}", ctx.project, coll.path()),
            items,
        ))
    })?;
    aggregate(aggregated_kind(coll), coll.path(), &path, items, q)
}

/// Filters and pages `items` (each carrying its scope in `__scope`) as one list,
/// then groups the page by scope under `field`.
pub(super) fn aggregate(
    kind: &str,
    field: &str,
    path: &str,
    items: Vec<Value>,
    q: &Params,
) -> ApiResult<Json<Value>> {
    let Json(mut page) = list_response(kind, path, items, q)?;
    let mut scoped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    if let Some(Value::Array(list)) = page.get_mut("items").map(Value::take) {
        for mut v in list {
            let scope = v
                .as_object_mut()
                .and_then(|o| o.remove("__scope"))
                .and_then(|s| s.as_str().map(str::to_string))
                .unwrap_or_else(|| "global".into());
            scoped.entry(scope).or_default().push(v);
        }
    }
    let mut grouped = Map::new();
    for (scope, list) in scoped {
        grouped.insert(scope, json!({ field: list }));
    }
    if grouped.is_empty() {
        // Google names every scope it looked in; an empty page still says so.
        grouped.insert(
            "global".into(),
            json!({"warning": {
                "code": "NO_RESULTS_ON_PAGE",
                "message": "There are no results for scope 'global' on this page.",
                "data": [{"key": "scope", "value": "global"}],
            }}),
        );
    }
    page["items"] = Value::Object(grouped);
    Ok(Json(page))
}

/// `projects/{project}/aggregated/{coll}`.
pub(super) async fn aggregated(
    AxState(shared): AxState<Shared>,
    Path((project, coll)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    Query(q): Query<Params>,
) -> ApiResult<Json<Value>> {
    if coll == "operations" && method == Method::GET {
        return aggregated_ops(&shared, &project, &q);
    }
    match Coll::from_path(&coll) {
        Some(c) if method == Method::GET => aggregated_list(&shared, &project, c, &q),
        _ => Err(unknown_method(uri.path())),
    }
}

pub(super) fn get_resource(
    shared: &Shared,
    project: &str,
    region: Option<&str>,
    coll: Coll,
    name: &str,
) -> ApiResult<Json<Value>> {
    read(shared, project, region, |st, ctx| {
        let (_, v) = find(st, ctx, coll, name)?;
        Ok(Json(render(st, coll, &v)))
    })
}
