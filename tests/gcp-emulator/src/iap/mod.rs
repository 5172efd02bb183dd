//! Identity-Aware Proxy v1: the IAM policy of each backend service's web resource
//! (`projects/{p}/iap_web/{compute|compute-REGION}/services/{svc}`:
//! `getIamPolicy`, `setIamPolicy`, `testIamPermissions`). Served under the shared
//! `/v1/` prefix (see [`crate::cloud`]).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::Method;
use serde_json::{Value, json};

use crate::cloud::{invalid, no_such_method, parse_body, project_or_denied};
use crate::error::ApiError;
use crate::iam_policy::{self as iam, Policy};
use crate::state::Shared;

/// Per-project IAP state.
#[derive(Default)]
pub struct State {
    /// IAP policies keyed by `compute/services/{name}` (or `compute-{region}/...`).
    policies: BTreeMap<String, Policy>,
    /// Numeric backend-service id -> name, so IAP resources named by id resolve to
    /// the same policy. Filled by [`State::alias_backend_service`].
    backend_ids: BTreeMap<String, String>,
}

impl State {
    /// Records that backend service `name` has numeric id `id`.
    pub fn alias_backend_service(&mut self, id: &str, name: &str) {
        self.backend_ids.insert(id.to_string(), name.to_string());
    }
}

/// IAP `getIamPolicy` / `setIamPolicy` on `projects/{p}/iap_web/{type}/services/{svc}`.
pub(crate) fn handle(
    shared: &Shared,
    method: &Method,
    rest: &str,
    body: &Bytes,
) -> Result<Value, ApiError> {
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
        .iap
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
            let policy = p.cloud.iap.policies.entry(key).or_default();
            Ok(policy.to_json())
        }
        "setIamPolicy" => {
            let agents = p.cloud.services.agents.clone();
            let policy = p.cloud.iap.policies.entry(key).or_default();
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
