//! What the AIP-193 APIs (IAP, Cloud Run, Service Usage, Resource Manager) share:
//! each project's state of these APIs, Google's common errors, body parsing, and
//! the `/v1/` prefix, which IAP, Cloud Run v1, Service Usage v1 and Resource
//! Manager v1 all use (Google tells them apart by host; the emulator by path).
//! Each API itself lives in its own module: [`crate::iap`], [`crate::run`],
//! [`crate::serviceusage`], [`crate::resourcemanager`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Json};
use serde_json::{Value, json};

use crate::admin::FailOperation;
use crate::error::ApiError;
use crate::state::{Shared, World};
use crate::{iap, resourcemanager, run, serviceusage};

pub use crate::iam_policy::Policy;

/// Unpadded base64url (JWT segments), shared with the metadata server.
pub fn iam_base64url(bytes: &[u8]) -> String {
    crate::iam_policy::base64(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// Per-project state of these APIs, one field per API.
#[derive(Default)]
pub struct State {
    pub iap: iap::State,
    /// Cloud Run services and their operations.
    pub(crate) run: run::RunState,
    pub services: serviceusage::State,
    /// Certificate Manager (location `global`).
    pub certificatemanager: crate::certificatemanager::State,
}

impl State {
    /// Records that backend service `name` has numeric id `id`, so IAP requests that
    /// name the service by id reach the same policy. Meant for the Compute module to
    /// call on backend-service insert; IAP itself never depends on Compute state.
    pub fn alias_backend_service(&mut self, id: &str, name: &str) {
        self.iap.alias_backend_service(id, name);
    }

    /// Whether a service agent (e.g. `service-N@gcp-sa-iap.iam.gserviceaccount.com`) exists.
    pub fn agent_exists(&self, email: &str) -> bool {
        self.services.agent_exists(email)
    }

    /// Whether the API (`dns.googleapis.com`) is disabled.
    pub fn api_disabled(&self, api: &str) -> bool {
        self.services.api_disabled(api)
    }
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
pub(crate) fn no_such_method(path: &str) -> ApiError {
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

/// The shared `/v1/` prefix; each API's own prefixes are in its module's router.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new().route("/v1/{*rest}", any(v1))
}

pub(crate) type Q = Query<HashMap<String, String>>;

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
    if crate::certificatemanager::is_path(&rest) {
        let fail = fail.map(|Extension(FailOperation(e))| e);
        return respond(crate::certificatemanager::handle(
            &shared, &method, &rest, &q, fail, &body,
        ));
    }
    if resourcemanager::is_crm_v1(&format!("v1/{rest}")) {
        return respond(resourcemanager::v1_get(&shared, &method, &rest));
    }
    let fail = match run::v1::projects_path(&shared, &method, &rest, &q, fail, &body).await {
        Some(r) => return respond(r),
        None => None,
    };
    let r = if rest.contains("/iap_web/") {
        iap::handle(&shared, &method, &rest, &body)
    } else if rest.contains("/services/") {
        let fail = fail.map(|Extension(FailOperation(e))| e);
        serviceusage::handle(&shared, &method, &rest, "v1", fail)
    } else {
        Err(no_such_method(&format!("/v1/{rest}")))
    };
    respond(r)
}

pub(crate) fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
