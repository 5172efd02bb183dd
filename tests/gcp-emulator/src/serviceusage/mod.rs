//! Service Usage v1beta1 (`generateServiceIdentity`, `enable`, `disable`, `get`
//! under `/v1beta1/`) and v1 (`enable`, `disable`, `get`, dispatched from the
//! shared `/v1/` prefix), plus the switches they drive for every API: which APIs
//! are disabled (403 `accessNotConfigured` / `SERVICE_DISABLED`, checked by the
//! admin middleware through [`check_api_enabled`]) and which service agents exist.
//!
//! Admin routes (not part of any Google API):
//! - `POST /emulator/apis` `{"api": "dns.googleapis.com", "enabled": false, "project"?: "p"}`
//!   disables (or re-enables) an API; `GET /emulator/apis` lists the disabled ones.

use std::collections::BTreeSet;

use axum::extract::{Path, State as AxState};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::FailOperation;
use crate::cloud::{invalid, no_such_method, project_in_path, project_or_denied, respond};
use crate::error::{ApiError, Style};
use crate::resourcemanager::is_crm_v1;
use crate::run;
use crate::state::Shared;

/// Per-project Service Usage state.
#[derive(Default)]
pub struct State {
    /// Service agents created by `generateServiceIdentity` (their emails).
    pub(crate) agents: BTreeSet<String>,
    /// APIs turned off (`dns.googleapis.com`, ...).
    disabled_apis: BTreeSet<String>,
}

impl State {
    /// Whether a service agent (e.g. `service-N@gcp-sa-iap.iam.gserviceaccount.com`) exists.
    pub fn agent_exists(&self, email: &str) -> bool {
        self.agents.contains(email)
    }

    /// Whether the API (`dns.googleapis.com`) is disabled.
    pub fn api_disabled(&self, api: &str) -> bool {
        self.disabled_apis.contains(api)
    }
}

/// The `/v1beta1/` routes and the `/emulator/apis` admin routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v1beta1/{*rest}", any(v1beta1))
        .route("/emulator/apis", post(set_api).get(list_apis))
}

/// The API (service name and title) an emulator path belongs to.
pub fn api_for_path(path: &str) -> Option<(&'static str, &'static str)> {
    let p = path.trim_start_matches('/');
    if p.starts_with("compute/") {
        Some(("compute.googleapis.com", "Compute Engine API"))
    } else if p.starts_with("dns/") {
        Some(("dns.googleapis.com", "Cloud DNS API"))
    } else if crate::storage::is_storage_path(&format!("/{p}")) {
        Some(("storage.googleapis.com", "Cloud Storage JSON API"))
    } else if p.starts_with("v1beta1/") {
        Some(("serviceusage.googleapis.com", "Service Usage API"))
    } else if p
        .strip_prefix("v1/")
        .is_some_and(crate::certificatemanager::is_path)
    {
        Some((
            "certificatemanager.googleapis.com",
            "Certificate Manager API",
        ))
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

/// Called by the admin middleware for every API request: Google's 403 when the API
/// the path belongs to is disabled in the project the path names (or the default
/// project). The v1-style APIs answer `accessNotConfigured`; the AIP-193 ones
/// answer `SERVICE_DISABLED` in an ErrorInfo, as Google does.
pub fn check_api_enabled(shared: &Shared, path: &str) -> Option<ApiError> {
    let (api, title) = api_for_path(path)?;
    let project = if crate::storage::is_storage_path(path) {
        crate::storage::project_of(shared, path).unwrap_or_else(|| shared.config.project.clone())
    } else {
        project_in_path(path)
            .unwrap_or(&shared.config.project)
            .to_string()
    };
    let mut world = shared.world();
    let p = world.project(&project).ok()?;
    if !p.cloud.services.api_disabled(api) {
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
    respond(handle(&shared, &method, &rest, "v1beta1", fail))
}

/// Service Usage methods. Mutations answer an Operation that is already done; an
/// `operation` fault makes it done with that error instead, changing nothing.
pub(crate) fn handle(
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
            p.cloud.services.agents.insert(email.clone());
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
                p.cloud.services.disabled_apis.remove(*api);
            } else {
                p.cloud.services.disabled_apis.insert((*api).to_string());
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
        (Method::GET, None) => Ok(service_json(
            number,
            api,
            !p.cloud.services.api_disabled(api),
        )),
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
        p.cloud.services.disabled_apis.remove(&b.api);
    } else {
        p.cloud.services.disabled_apis.insert(b.api);
    }
    Json(json!({ "disabled": p.cloud.services.disabled_apis })).into_response()
}

async fn list_apis(AxState(shared): AxState<Shared>) -> Response {
    let project = shared.config.project.clone();
    let mut world = shared.world();
    match world.project(&project) {
        Ok(p) => Json(json!({ "disabled": p.cloud.services.disabled_apis })).into_response(),
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
