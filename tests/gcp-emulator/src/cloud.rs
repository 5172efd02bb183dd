//! IAP v1, Cloud Run Admin v2 (and the v1 subset gcloud uses), Service Usage
//! v1beta1, Resource Manager v3 (and v1's `projects.get`), plus
//! the per-project switches these APIs share: which APIs are disabled (403
//! `accessNotConfigured` / `SERVICE_DISABLED`) and which service agents exist.
//! Which IAM permissions the caller holds is [`crate::authz`]'s business; the
//! `testIamPermissions` methods here answer from it.
//!
//! Admin routes (not part of any Google API):
//! - `POST /emulator/apis` `{"api": "dns.googleapis.com", "enabled": false, "project"?: "p"}`
//!   disables (or re-enables) an API; `GET /emulator/apis` lists the disabled ones.

mod iam;
mod run;
pub mod run_v1;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::FailOperation;
use crate::error::{ApiError, Style};
use crate::state::{Shared, World, rfc3339_utc};

pub use iam::Policy;

/// Unpadded base64url (JWT segments), shared with the metadata server.
pub fn iam_base64url(bytes: &[u8]) -> String {
    iam::base64(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// Per-project state of these APIs.
#[derive(Default)]
pub struct State {
    /// IAP policies keyed by `compute/services/{name}` (or `compute-{region}/...`).
    iap_policies: BTreeMap<String, Policy>,
    /// Numeric backend-service id -> name, so IAP resources named by id resolve to
    /// the same policy. Filled by [`State::alias_backend_service`].
    backend_ids: BTreeMap<String, String>,
    /// Cloud Run services and their operations.
    run: run::RunState,
    /// Service agents created by `generateServiceIdentity` (their emails).
    agents: BTreeSet<String>,
    /// APIs turned off (`dns.googleapis.com`, ...).
    disabled_apis: BTreeSet<String>,
}

impl State {
    /// Records that backend service `name` has numeric id `id`, so IAP requests that
    /// name the service by id reach the same policy. Meant for the Compute module to
    /// call on backend-service insert; IAP itself never depends on Compute state.
    pub fn alias_backend_service(&mut self, id: &str, name: &str) {
        self.backend_ids.insert(id.to_string(), name.to_string());
    }

    /// Whether a service agent (e.g. `service-N@gcp-sa-iap.iam.gserviceaccount.com`) exists.
    pub fn agent_exists(&self, email: &str) -> bool {
        self.agents.contains(email)
    }

    /// Whether the API (`dns.googleapis.com`) is disabled.
    pub fn api_disabled(&self, api: &str) -> bool {
        self.disabled_apis.contains(api)
    }
}

/// The API (service name and title) an emulator path belongs to.
pub fn api_for_path(path: &str) -> Option<(&'static str, &'static str)> {
    let p = path.trim_start_matches('/');
    if p.starts_with("compute/") {
        Some(("compute.googleapis.com", "Compute Engine API"))
    } else if p.starts_with("dns/") {
        Some(("dns.googleapis.com", "Cloud DNS API"))
    } else if p.starts_with("v1beta1/") {
        Some(("serviceusage.googleapis.com", "Service Usage API"))
    } else if p.starts_with("apis/") || (p.starts_with("v1/") && p.contains("/locations/")) {
        // Cloud Run v1 (Knative paths, and `projects/p/locations/...`).
        Some(("run.googleapis.com", "Cloud Run Admin API"))
    } else if p.starts_with("v3/") || is_crm_v1(p) {
        Some((
            "cloudresourcemanager.googleapis.com",
            "Cloud Resource Manager API",
        ))
    } else if p.starts_with("v1/") && p.contains("/services/") && !p.contains("/iap_web/") {
        // Service Usage v1 shares the `/v1/` prefix with IAP.
        Some(("serviceusage.googleapis.com", "Service Usage API"))
    } else if p.starts_with("v1/") {
        Some(("iap.googleapis.com", "Cloud Identity-Aware Proxy API"))
    } else if p.starts_with("v2/") {
        Some(("run.googleapis.com", "Cloud Run Admin API"))
    } else if p.starts_with("v3/") {
        Some((
            "cloudresourcemanager.googleapis.com",
            "Cloud Resource Manager API",
        ))
    } else {
        None
    }
}

/// `v1/projects/{p}` (Resource Manager v1's `projects.get`).
fn is_crm_v1(p: &str) -> bool {
    p.strip_prefix("v1/projects/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/') && !rest.contains(':'))
}

/// The project a path names (`.../projects/{p}/...`, or Cloud Run v1's
/// `.../namespaces/{p}/...`), if any.
pub(crate) fn project_in_path(path: &str) -> Option<&str> {
    let mut segs = path.split('/');
    while let Some(s) = segs.next() {
        if s == "projects" || (s == "namespaces" && path.starts_with("/apis/")) {
            // `projects/p:testIamPermissions` names project `p`.
            return segs.next().map(|p| p.split(':').next().unwrap_or(p));
        }
    }
    None
}

/// Called by the admin middleware for every API request: Google's 403 when the API
/// the path belongs to is disabled in the project the path names (or the default
/// project). The v1-style APIs answer `accessNotConfigured`; the AIP-193 ones
/// answer `SERVICE_DISABLED` in an ErrorInfo, as Google does.
pub fn check_api_enabled(shared: &Shared, path: &str) -> Option<ApiError> {
    let (api, title) = api_for_path(path)?;
    let project = project_in_path(path).unwrap_or(&shared.config.project);
    let mut world = shared.world();
    let p = world.project(project).ok()?;
    if !p.cloud.api_disabled(api) {
        return None;
    }
    let n = p.number;
    let url = format!("https://console.developers.google.com/apis/api/{api}/overview?project={n}");
    let message = format!(
        "{title} has not been used in project {n} before or it is disabled. Enable it by visiting {url} then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
    );
    Some(match crate::admin::style_for(path) {
        Style::V1 => ApiError::new(403, "accessNotConfigured", message).with_domain("usageLimits"),
        Style::Aip193 => ApiError::new(403, "SERVICE_DISABLED", message)
            .aip193()
            .with_metadata(json!({
                "service": api,
                "consumer": format!("projects/{n}"),
                "containerInfo": n.to_string(),
                "serviceTitle": title,
                "activationUrl": url,
            })),
    })
}

/// 403 the way Google answers for a project that does not exist or a permission
/// the caller lacks (the two are deliberately indistinguishable).
pub(crate) fn permission_denied(permission: &str, resource: &str) -> ApiError {
    ApiError::new(
        403,
        "IAM_PERMISSION_DENIED",
        format!("Permission '{permission}' denied on resource '{resource}' (or it may not exist)."),
    )
    .aip193()
    .with_domain("iam.googleapis.com")
    .with_metadata(json!({"permission": permission, "resource": resource}))
}

/// An AIP-193 400 INVALID_ARGUMENT.
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "invalid", message).aip193()
}

/// An AIP-193 404 for a path no method of these APIs serves.
fn no_such_method(path: &str) -> ApiError {
    ApiError::new(
        404,
        "notFound",
        format!("The requested URL {path} was not found on this server."),
    )
    .aip193()
}

/// Parses a JSON request body; an empty body is `{}` (the middleware has already
/// checked it against the discovery schema).
pub(crate) fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))
}

/// Resolves a project (by id or number) or answers Google's 403.
pub(crate) fn project_or_denied<'w>(
    world: &'w mut World,
    project: &str,
    permission: &str,
    resource: &str,
) -> Result<&'w mut crate::state::Project, ApiError> {
    world
        .project(project)
        .map_err(|_| permission_denied(permission, resource))
}

/// Every route of these APIs plus their admin routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1/{*rest}", any(v1))
        .route("/v2/{*rest}", any(run::handle))
        .route("/v1beta1/{*rest}", any(v1beta1))
        .route("/v3/{*rest}", any(v3))
        .route("/apis/{*rest}", any(knative))
        .route("/emulator/apis", post(set_api).get(list_apis))
}

type Q = Query<HashMap<String, String>>;

/// `/v1/`: IAP (`iap_web/...:getIamPolicy|setIamPolicy`) and Service Usage v1
/// (`projects/p/services/s:enable|disable`, `GET projects/p/services/s`).
async fn v1(
    AxState(shared): AxState<Shared>,
    method: Method,
    Path(rest): Path<String>,
    Query(q): Q,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> Response {
    if is_crm_v1(&format!("v1/{rest}")) {
        return respond(crm_v1(&shared, &method, &rest));
    }
    let fail = match run_v1::projects_path(&shared, &method, &rest, &q, fail, &body).await {
        Some(r) => return respond(r),
        None => None,
    };
    let r = if rest.contains("/iap_web/") {
        iap(&shared, &method, &rest, &body)
    } else if rest.contains("/services/") {
        let fail = fail.map(|Extension(FailOperation(e))| e);
        service_usage(&shared, &method, &rest, "v1", fail)
    } else {
        Err(no_such_method(&format!("/v1/{rest}")))
    };
    respond(r)
}

/// Cloud Run v1's Knative paths (`/apis/serving.knative.dev/v1/namespaces/...`),
/// whose region is the prefix of the (regional) host they were sent to.
async fn knative(
    AxState(shared): AxState<Shared>,
    method: Method,
    crate::compute::Addressed { host, .. }: crate::compute::Addressed,
    Path(rest): Path<String>,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> Response {
    respond(run_v1::namespaces_path(&shared, host.as_deref(), &method, &rest, fail, &body).await)
}

/// Resource Manager v1 `GET v1/projects/{p}` (gcloud looks the project number
/// up there, e.g. `gcloud iap`).
fn crm_v1(shared: &Shared, method: &Method, rest: &str) -> Result<Value, ApiError> {
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

fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// IAP `getIamPolicy` / `setIamPolicy` on `projects/{p}/iap_web/{type}/services/{svc}`.
fn iap(shared: &Shared, method: &Method, rest: &str, body: &Bytes) -> Result<Value, ApiError> {
    let (resource, verb) = rest
        .rsplit_once(':')
        .ok_or_else(|| no_such_method(&format!("/v1/{rest}")))?;
    if method != Method::POST {
        return Err(no_such_method(&format!("/v1/{rest}")));
    }
    let segs: Vec<&str> = resource.split('/').collect();
    // projects/{p}/iap_web/{compute|compute-REGION}/services/{svc}
    let ["projects", project, "iap_web", kind, "services", service] = segs.as_slice() else {
        return Err(invalid(format!("Invalid resource name '{resource}'.")));
    };
    if !(*kind == "compute" || kind.starts_with("compute-")) {
        return Err(invalid(format!("Invalid resource type '{kind}'.")));
    }
    let permission = match verb {
        "getIamPolicy" => "iap.webServices.getIamPolicy",
        "setIamPolicy" => "iap.webServices.setIamPolicy",
        "testIamPermissions" => "iap.webServices.testIamPermissions",
        _ => return Err(no_such_method(&format!("/v1/{rest}"))),
    };
    let req = parse_body(body)?;
    let mut world = shared.world();
    let p = project_or_denied(&mut world, project, permission, resource)?;
    let number = p.number;
    let name = p
        .cloud
        .backend_ids
        .get(*service)
        .cloned()
        .unwrap_or_else(|| (*service).to_string());
    let key = format!("{kind}/services/{name}");
    match verb {
        "getIamPolicy" => {
            let requested = req
                .pointer("/options/requestedPolicyVersion")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            iam::check_requested_version(requested)?;
            let policy = p.cloud.iap_policies.entry(key).or_default();
            Ok(policy.to_json())
        }
        "setIamPolicy" => {
            let agents = p.cloud.agents.clone();
            let policy = p.cloud.iap_policies.entry(key).or_default();
            policy.set(&req, iam::Resource::Iap, number, &agents)?;
            Ok(policy.to_json())
        }
        _ => {
            let wanted = iam::permissions_in(&req)?;
            let granted: Vec<Value> = wanted
                .into_iter()
                .filter(|w| w.starts_with("iap.") && p.iam.holds(w))
                .map(Value::from)
                .collect();
            Ok(if granted.is_empty() {
                json!({})
            } else {
                json!({ "permissions": granted })
            })
        }
    }
}

/// The agent email `generateServiceIdentity` creates for an API.
fn agent_email(api: &str, number: u64) -> String {
    let domain = match api {
        "run.googleapis.com" => "serverless-robot-prod".to_string(),
        "compute.googleapis.com" => "compute-system".to_string(),
        other => format!("gcp-sa-{}", other.split('.').next().unwrap_or(other)),
    };
    format!("service-{number}@{domain}.iam.gserviceaccount.com")
}

/// `/v1beta1/`: Service Usage (`generateServiceIdentity`, `enable`, `disable`, `get`).
async fn v1beta1(
    AxState(shared): AxState<Shared>,
    method: Method,
    Path(rest): Path<String>,
    fail: Option<Extension<FailOperation>>,
) -> Response {
    let fail = fail.map(|Extension(FailOperation(e))| e);
    respond(service_usage(&shared, &method, &rest, "v1beta1", fail))
}

/// Service Usage methods. Mutations answer an Operation that is already done; an
/// `operation` fault makes it done with that error instead, changing nothing.
fn service_usage(
    shared: &Shared,
    method: &Method,
    rest: &str,
    version: &str,
    fail: Option<ApiError>,
) -> Result<Value, ApiError> {
    let (resource, verb) = match rest.rsplit_once(':') {
        Some((r, v)) => (r, Some(v)),
        None => (rest, None),
    };
    let segs: Vec<&str> = resource.split('/').collect();
    let ["projects", project, "services", api] = segs.as_slice() else {
        return Err(no_such_method(&format!("/{version}/{rest}")));
    };
    if !api.contains('.') {
        return Err(invalid(format!(
            "Invalid service name '{api}': expected a name like 'iap.googleapis.com'."
        )));
    }
    let mut world = shared.world();
    let op_id = world.fresh_id();
    let permission = match verb {
        Some("enable") => "serviceusage.services.enable",
        Some("disable") => "serviceusage.services.disable",
        Some("generateServiceIdentity") => "serviceusage.services.generateServiceIdentity",
        _ => "serviceusage.services.get",
    };
    let p = project_or_denied(
        &mut world,
        project,
        permission,
        &format!("projects/{project}"),
    )?;
    let number = p.number;
    let op_name = format!("operations/acat.p2-{number}-{op_id:x}");
    if let Some(e) = fail
        && *method == Method::POST
        && verb.is_some()
    {
        return Ok(json!({
            "name": op_name,
            "done": true,
            "error": {"code": run::grpc_code(&e), "message": e.message},
        }));
    }
    let done_op = |response: Value| {
        json!({
            "name": op_name,
            "done": true,
            "response": response,
        })
    };
    match (method.clone(), verb) {
        (Method::POST, Some("generateServiceIdentity")) if version == "v1beta1" => {
            let email = agent_email(api, number);
            p.cloud.agents.insert(email.clone());
            let unique_id = format!(
                "1{:020}",
                number.wrapping_mul(7919) % 100_000_000_000_000_000
            );
            Ok(done_op(json!({
                "@type": "type.googleapis.com/google.api.serviceusage.v1beta1.ServiceIdentity",
                "email": email,
                "uniqueId": unique_id,
            })))
        }
        (Method::POST, Some(v @ ("enable" | "disable"))) => {
            if v == "enable" {
                p.cloud.disabled_apis.remove(*api);
            } else {
                p.cloud.disabled_apis.insert((*api).to_string());
            }
            let svc = service_json(number, api, v == "enable");
            let ty = if v == "enable" {
                "EnableServiceResponse"
            } else {
                "DisableServiceResponse"
            };
            let mut resp = json!({
                "@type": format!("type.googleapis.com/google.api.serviceusage.{version}.{ty}"),
                "service": svc,
            });
            if version == "v1beta1" {
                // v1beta1's enable/disable respond with an Empty.
                resp = json!({"@type": "type.googleapis.com/google.protobuf.Empty"});
            }
            Ok(done_op(resp))
        }
        (Method::GET, None) => Ok(service_json(number, api, !p.cloud.api_disabled(api))),
        _ => Err(no_such_method(&format!("/{version}/{rest}"))),
    }
}

fn service_json(number: u64, api: &str, enabled: bool) -> Value {
    json!({
        "name": format!("projects/{number}/services/{api}"),
        "parent": format!("projects/{number}"),
        "config": {"name": api},
        "state": if enabled { "ENABLED" } else { "DISABLED" },
    })
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSwitch {
    api: String,
    enabled: bool,
    #[serde(default)]
    project: Option<String>,
}

async fn set_api(AxState(shared): AxState<Shared>, Json(b): Json<ApiSwitch>) -> Response {
    let project = b.project.unwrap_or_else(|| shared.config.project.clone());
    let mut world = shared.world();
    let p = match world.project(&project) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if b.enabled {
        p.cloud.disabled_apis.remove(&b.api);
    } else {
        p.cloud.disabled_apis.insert(b.api);
    }
    Json(json!({ "disabled": p.cloud.disabled_apis })).into_response()
}

async fn list_apis(AxState(shared): AxState<Shared>) -> Response {
    let project = shared.config.project.clone();
    let mut world = shared.world();
    match world.project(&project) {
        Ok(p) => Json(json!({ "disabled": p.cloud.disabled_apis })).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_apis() {
        assert_eq!(
            api_for_path("/dns/v1/projects/p/managedZones").map(|a| a.0),
            Some("dns.googleapis.com")
        );
        assert_eq!(
            api_for_path("/v1/projects/p/iap_web/compute/services/b:getIamPolicy").map(|a| a.0),
            Some("iap.googleapis.com")
        );
        assert_eq!(
            api_for_path("/v1/projects/p/services/dns.googleapis.com:enable").map(|a| a.0),
            Some("serviceusage.googleapis.com")
        );
        assert_eq!(api_for_path("/emulator/apis"), None);
        assert_eq!(
            project_in_path("/v3/projects/demo:testIamPermissions"),
            Some("demo")
        );
    }

    #[test]
    fn agent_emails_follow_google_domains() {
        assert_eq!(
            agent_email("iap.googleapis.com", 12),
            "service-12@gcp-sa-iap.iam.gserviceaccount.com"
        );
        assert_eq!(
            agent_email("run.googleapis.com", 12),
            "service-12@serverless-robot-prod.iam.gserviceaccount.com"
        );
    }
}
