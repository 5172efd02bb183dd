//! Compute Operations: their lifecycle derived from timestamps, their error
//! codes, and the `operations` routes (get, wait, list, delete, aggregatedList).

use crate::error::{ApiError, ApiResult};
use crate::state::{Shared, rfc3339};
use axum::Json;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

use super::*;

/// A Compute Operation.
#[derive(Clone, Debug)]
pub struct Operation {
    /// `operation-...`
    pub name: String,
    /// Numeric id.
    pub id: u64,
    /// `insert`, `delete`, `patch`, `update`, `setSslCertificates`, ...
    pub op_type: String,
    /// The resource acted on.
    pub target_link: String,
    /// Its numeric id.
    pub target_id: u64,
    /// For regional operations.
    pub region: Option<String>,
    /// The project id.
    pub project: String,
    /// When it was requested.
    pub insert_time: SystemTime,
    /// How long it takes to reach DONE.
    pub delay: Duration,
    /// Set when the operation ends in failure.
    pub error: Option<ApiError>,
    /// The `requestId` it was created with.
    pub request_id: Option<String>,
}

impl Operation {
    /// PENDING for the first quarter of the delay, RUNNING until it has passed, DONE after.
    pub fn status_at(&self, now: SystemTime) -> &'static str {
        let elapsed = now.duration_since(self.insert_time).unwrap_or_default();
        if elapsed >= self.delay {
            "DONE"
        } else if elapsed >= self.delay / 4 {
            "RUNNING"
        } else {
            "PENDING"
        }
    }

    /// When it reaches DONE.
    pub fn done_at(&self) -> SystemTime {
        self.insert_time + self.delay
    }

    pub(super) fn self_link(&self) -> String {
        match &self.region {
            Some(r) => format!(
                "{LINK_ROOT}projects/{}/regions/{r}/operations/{}",
                self.project, self.name
            ),
            None => format!(
                "{LINK_ROOT}projects/{}/global/operations/{}",
                self.project, self.name
            ),
        }
    }

    /// The Operation resource as read at `now`.
    pub fn to_json(&self, now: SystemTime) -> Value {
        let status = self.status_at(now);
        let mut v = json!({
            "kind": "compute#operation",
            "id": self.id.to_string(),
            "name": self.name,
            "operationType": self.op_type,
            "status": status,
            "targetLink": self.target_link,
            "targetId": self.target_id.to_string(),
            "selfLink": self.self_link(),
            "progress": match status { "PENDING" => 0, "RUNNING" => 50, _ => 100 },
            "insertTime": rfc3339(self.insert_time),
            "user": OPERATION_USER,
        });
        if status != "PENDING" {
            v["startTime"] = json!(rfc3339(self.insert_time + self.delay / 4));
        }
        if let Some(r) = &self.region {
            v["region"] = json!(format!("{LINK_ROOT}projects/{}/regions/{r}", self.project));
        }
        if let Some(id) = &self.request_id {
            v["clientOperationId"] = json!(id);
        }
        if status == "DONE" {
            v["endTime"] = json!(rfc3339(self.done_at()));
            if let Some(e) = &self.error {
                v["error"] = json!({"errors": [{
                    "code": operation_error_code(&e.reason),
                    "message": e.message,
                }]});
                v["httpErrorStatusCode"] = json!(e.code);
                v["httpErrorMessage"] = json!(http_phrase(e.code));
            }
        }
        v
    }
}

/// The `error.errors[].code` Compute uses for a v1 reason.
pub(super) fn operation_error_code(reason: &str) -> String {
    match reason {
        "quotaExceeded" => "QUOTA_EXCEEDED".into(),
        "rateLimitExceeded" => "RESOURCE_OPERATION_RATE_EXCEEDED".into(),
        "alreadyExists" => "RESOURCE_ALREADY_EXISTS".into(),
        "notFound" => "RESOURCE_NOT_FOUND".into(),
        "backendError" | "internalError" => "INTERNAL_ERROR".into(),
        r if r.chars().all(|c| c.is_ascii_uppercase() || c == '_') => r.into(),
        r => {
            // camelCase -> UPPER_SNAKE, e.g. resourceNotReady -> RESOURCE_NOT_READY.
            let mut out = String::new();
            for c in r.chars() {
                if c.is_ascii_uppercase() && !out.is_empty() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

pub(super) fn http_phrase(code: u16) -> String {
    axum::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("ERROR")
        .to_ascii_uppercase()
}

/// `globalOperations.aggregatedList` (`gcloud compute operations list`): global
/// and regional operations, grouped by scope.
pub(super) fn aggregated_ops(shared: &Shared, project: &str, q: &Params) -> ApiResult<Json<Value>> {
    let (path, items) = read(shared, project, None, |st, ctx| {
        let now = SystemTime::now();
        let items: Vec<Value> = st
            .operations
            .values()
            .map(|op| {
                let mut v = op.to_json(now);
                let scope = match &op.region {
                    Some(r) => format!("regions/{r}"),
                    None => "global".into(),
                };
                v["__scope"] = json!(scope);
                v
            })
            .collect();
        Ok((
            format!("projects/{}/aggregated/operations", ctx.project),
            items,
        ))
    })?;
    aggregate(
        "compute#operationAggregatedList",
        "operations",
        &path,
        items,
        q,
    )
}

pub(super) fn find_op(st: &State, ctx: &Ctx, name: &str) -> ApiResult<Operation> {
    st.operations
        .get(name)
        .filter(|op| op.region == ctx.region)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "projects/{}/{}/operations/{name}",
                ctx.project,
                ctx.scope()
            ))
        })
}

pub(super) async fn wait_op(
    shared: &Shared,
    project: &str,
    region: Option<&str>,
    name: &str,
) -> ApiResult<Json<Value>> {
    // Under a latency model, hold the wait as Google does (up to 2 min there; 30 s
    // here covers every operation of the profiles and stays under clients'
    // per-call timeouts), so a wait costs one call, not one per 2 s.
    let limit = if shared.latency().is_some() {
        MODEL_WAIT_LIMIT
    } else {
        WAIT_LIMIT
    };
    let deadline = SystemTime::now() + limit;
    loop {
        let op = read(shared, project, region, |st, ctx| find_op(st, ctx, name))?;
        let now = SystemTime::now();
        if op.status_at(now) == "DONE" || now >= deadline {
            return Ok(Json(op.to_json(now)));
        }
        let until = op.done_at().min(deadline);
        let nap = until
            .duration_since(now)
            .unwrap_or_default()
            .max(Duration::from_millis(1));
        tokio::time::sleep(nap).await;
    }
}

pub(super) fn list_ops(
    shared: &Shared,
    project: &str,
    region: Option<&str>,
    q: &Params,
) -> ApiResult<Json<Value>> {
    let (path, items) = read(shared, project, region, |st, ctx| {
        let now = SystemTime::now();
        let items: Vec<Value> = st
            .operations
            .values()
            .filter(|op| op.region == ctx.region)
            .map(|op| op.to_json(now))
            .collect();
        Ok((
            format!("projects/{}/{}/operations", ctx.project, ctx.scope()),
            items,
        ))
    })?;
    list_response("compute#operationList", &path, items, q)
}

pub(super) fn delete_op(
    shared: &Shared,
    project: &str,
    region: Option<&str>,
    name: &str,
) -> ApiResult<Json<Value>> {
    let mut world = shared.world();
    let p = world.project(project)?;
    let hit = p
        .compute
        .operations
        .get(name)
        .is_some_and(|op| op.region.as_deref() == region);
    if !hit {
        let scope = region.map_or("global".to_string(), |r| format!("regions/{r}"));
        return Err(ApiError::not_found(format!(
            "projects/{}/{scope}/operations/{name}",
            p.id
        )));
    }
    p.compute.operations.remove(name);
    p.compute.request_ids.retain(|_, v| v != name);
    Ok(Json(json!({})))
}
