//! Cloud Resource Manager v3 (`projects.get`, `projects.testIamPermissions` under
//! `/v3/`) and v1's `projects.get` (`GET /v1/projects/{p}`, which gcloud uses to
//! look a project number up; dispatched from the shared `/v1/` prefix).

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::Method;
use axum::response::Response;
use axum::routing::any;
use serde_json::{Value, json};

use crate::cloud::{Q, no_such_method, parse_body, project_or_denied, respond};
use crate::error::ApiError;
use crate::iam_policy as iam;
use crate::state::{Shared, rfc3339_utc};

/// The `/v3/` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new().route("/v3/{*rest}", any(v3))
}

/// `v1/projects/{p}` (Resource Manager v1's `projects.get`).
pub(crate) fn is_crm_v1(p: &str) -> bool {
    p.strip_prefix("v1/projects/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/') && !rest.contains(':'))
}

/// Resource Manager v1 `GET v1/projects/{p}` (gcloud looks the project number
/// up there, e.g. `gcloud iap`).
pub(crate) fn v1_get(shared: &Shared, method: &Method, rest: &str) -> Result<Value, ApiError> {
    let project = rest.strip_prefix("projects/").unwrap_or(rest);
    if method != Method::GET {
        return Err(no_such_method(&format!("/v1/{rest}")));
    }
    let mut world = shared.world();
    let full = format!("projects/{project}");
    let p = project_or_denied(&mut world, project, "resourcemanager.projects.get", &full)?;
    let created =
        rfc3339_utc(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
    Ok(json!({
        "projectNumber": p.number.to_string(),
        "projectId": p.id,
        "lifecycleState": "ACTIVE",
        "name": p.id,
        "createTime": created,
        "parent": {"type": "organization", "id": "100000000001"},
    }))
}

/// `/v3/`: Resource Manager `projects.get` and `projects.testIamPermissions`.
async fn v3(
    AxState(shared): AxState<Shared>,
    method: Method,
    Path(rest): Path<String>,
    _q: Q,
    body: Bytes,
) -> Response {
    respond(crm(&shared, &method, &rest, &body))
}

fn crm(shared: &Shared, method: &Method, rest: &str, body: &Bytes) -> Result<Value, ApiError> {
    let (resource, verb) = match rest.rsplit_once(':') {
        Some((r, v)) => (r, Some(v)),
        None => (rest, None),
    };
    let segs: Vec<&str> = resource.split('/').collect();
    let ["projects", project] = segs.as_slice() else {
        return Err(no_such_method(&format!("/v3/{rest}")));
    };
    let full = format!("//cloudresourcemanager.googleapis.com/projects/{project}");
    match (method.clone(), verb) {
        (Method::GET, None) => {
            let mut world = shared.world();
            let p = project_or_denied(&mut world, project, "resourcemanager.projects.get", &full)?;
            Ok(json!({
                "name": format!("projects/{}", p.number),
                "parent": "organizations/100000000001",
                "projectId": p.id,
                "state": "ACTIVE",
                "displayName": p.id,
                "createTime": rfc3339_utc(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
                "updateTime": rfc3339_utc(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
                "etag": format!("W/\"{:x}\"", p.number),
            }))
        }
        (Method::POST, Some("testIamPermissions")) => {
            let req = parse_body(body)?;
            let wanted = iam::permissions_in(&req)?;
            let mut world = shared.world();
            let p = project_or_denied(&mut world, project, "resourcemanager.projects.get", &full)?;
            let granted: Vec<Value> = wanted
                .into_iter()
                .filter(|w| p.iam.holds(w))
                .map(Value::from)
                .collect();
            // proto3 JSON omits an empty repeated field.
            Ok(if granted.is_empty() {
                json!({})
            } else {
                json!({ "permissions": granted })
            })
        }
        _ => Err(no_such_method(&format!("/v3/{rest}"))),
    }
}
