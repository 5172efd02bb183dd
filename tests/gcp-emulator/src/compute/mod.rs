//! Compute Engine v1: the load-balancer resources and their Operations.
//!
//! Served under `/compute/v1/` at the paths of `compute.v1.lb-subset.json`:
//! sslCertificates, targetHttpsProxies, targetHttpProxies, urlMaps,
//! backendServices, global addresses and forwarding rules, regional network
//! endpoint groups, global and regional operations, and `projects.get`.
//!
//! Resources are kept as the JSON the API returns (plus private `__` keys that are
//! never rendered). Every mutation runs against a copy of the project's state and
//! is committed only when it succeeds, so a rejected request or an injected
//! operation failure changes nothing. The effect is visible at once; the returned
//! Operation goes PENDING -> RUNNING -> DONE over the configured delay, derived
//! from timestamps whenever it is read.
//!
//! This file holds the routes and the request plumbing (`mutate`, `read`, the
//! collection/item dispatch); `state.rs` the per-project state and identities;
//! `resources.rs` the generic insert/find/modify/render; one file per resource
//! kind for its builder (`url_maps.rs`, `backend_services.rs`, `negs.rs`,
//! `addresses.rs`, `forwarding_rules.rs`; sslCertificates in `resources.rs` and
//! `certs.rs`); `operations.rs`, `list.rs`, `validate.rs` and `filter.rs`.

mod addresses;
mod backend_services;
mod certificate_map;
pub(crate) mod certs;
mod filter;
mod forwarding_rules;
mod list;
mod negs;
mod operations;
mod resources;
mod state;
mod url_maps;
mod validate;

use addresses::*;
use backend_services::*;
use certificate_map::*;
use forwarding_rules::*;
use list::*;
use negs::*;
pub use operations::Operation;
use operations::*;
use resources::*;
use state::*;
pub use state::{Coll, QUOTA_METRICS, State, default_quota_limit};
use url_maps::*;
use validate::*;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State as AxState};
use axum::http::{Method, Uri};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};

use crate::admin::FailOperation;
use crate::error::{ApiError, ApiResult};
use crate::state::Shared;

pub use filter::Filter;

/// Compute returns references on the legacy host; clients use them verbatim.
pub const LINK_ROOT: &str = "https://www.googleapis.com/compute/v1/";
/// Classic (Compute Engine) certificates a target HTTPS proxy may hold.
pub const MAX_CERTS_PER_PROXY: usize = 15;
/// How long `operations.wait` blocks at most in the emulator.
pub const WAIT_LIMIT: Duration = Duration::from_secs(2);
/// How long `wait` holds under a latency model.
pub const MODEL_WAIT_LIMIT: Duration = Duration::from_secs(30);
/// Who the emulator says requested each operation.
pub const OPERATION_USER: &str = "emulator@demo-project.iam.gserviceaccount.com";
/// Google's fingerprint of an empty label set.
const EMPTY_LABEL_FINGERPRINT: &str = "42WmSpB8rSM=";
const NAME_REGEX: &str = "[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?";
const MAX_RESULTS: usize = 500;

// ---------------------------------------------------------------- HTTP layer

fn unknown_method(what: &str) -> ApiError {
    ApiError::new(
        404,
        "notFound",
        format!("The requested URL {what} was not found on this server."),
    )
}

fn parse_body(body: &Bytes) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::invalid(
            "Invalid JSON payload received. Expected an object.",
        )),
    }
}

type Params = HashMap<String, String>;

/// Runs `f` on a copy of the project's Compute state, commits it on success (and
/// when no operation fault is injected), and returns the Operation.
#[allow(clippy::too_many_arguments)]
fn mutate(
    shared: &Shared,
    host: Option<&str>,
    project: &str,
    region: Option<&str>,
    q: &Params,
    fail: Option<Extension<FailOperation>>,
    op_type: &str,
    f: impl FnOnce(&mut State, &Ctx) -> ApiResult<Target>,
) -> ApiResult<Json<Value>> {
    let request_id = match q.get("requestId").filter(|r| !r.is_empty()) {
        Some(r) => {
            check_request_id(r)?;
            Some(r.to_ascii_lowercase())
        }
        None => None,
    };
    let delay = shared.operation_delay(op_type);
    let now = SystemTime::now();
    let mut world = shared.world();
    let op_id = world.fresh_id();
    let new_id = world.fresh_id();
    let p = world.project(project)?;
    check_region(&p.id, region)?;
    if let Some(rid) = &request_id
        && let Some(op) = p
            .compute
            .request_ids
            .get(rid)
            .and_then(|name| p.compute.operations.get(name))
    {
        return Ok(Json(op.to_json(now)));
    }
    let ctx = Ctx {
        project: p.id.clone(),
        number: p.number,
        now,
        new_id,
        region: region.map(str::to_string),
        host: host.map(str::to_string),
        cert_maps: p.cloud.certificatemanager.map_ids(),
    };
    // Operations are not part of the transaction; keep them out of the copy.
    let ops = std::mem::take(&mut p.compute.operations);
    let mut draft = p.compute.clone();
    p.compute.operations = ops;
    let target = f(&mut draft, &ctx)?;
    let error = fail.map(|Extension(FailOperation(e))| e);
    if error.is_none() {
        draft.operations = std::mem::take(&mut p.compute.operations);
        p.compute = draft;
    }
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let h = sha256(&op_id.to_be_bytes());
    let name = format!(
        "operation-{millis}-{}-{}-{}",
        &hex(&h[..7])[..13],
        hex(&h[7..11]),
        hex(&h[11..15])
    );
    let op = Operation {
        name: name.clone(),
        id: op_id,
        op_type: op_type.to_string(),
        target_link: target.link,
        target_id: target.id,
        region: ctx.region.clone(),
        project: ctx.project.clone(),
        insert_time: now,
        delay,
        error,
        request_id: request_id.clone(),
    };
    let json = op.to_json(now);
    p.compute.operations.insert(name.clone(), op);
    if let Some(rid) = request_id {
        p.compute.request_ids.insert(rid, name);
    }
    Ok(Json(json))
}

fn read<T>(
    shared: &Shared,
    project: &str,
    region: Option<&str>,
    f: impl FnOnce(&State, &Ctx) -> ApiResult<T>,
) -> ApiResult<T> {
    let mut world = shared.world();
    let p = world.project(project)?;
    check_region(&p.id, region)?;
    let ctx = Ctx {
        project: p.id.clone(),
        number: p.number,
        now: SystemTime::now(),
        new_id: 0,
        region: region.map(str::to_string),
        host: None,
        cert_maps: p.cloud.certificatemanager.map_ids(),
    };
    f(&p.compute, &ctx)
}

async fn project_get(
    AxState(shared): AxState<Shared>,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut world = shared.world();
    let p = world.project(&project)?;
    let quotas: Vec<Value> = QUOTA_METRICS
        .iter()
        .map(|m| {
            json!({
                "metric": m,
                "limit": p.compute.quota_limit(m),
                "usage": p.compute.quota_usage(m) as f64,
            })
        })
        .collect();
    Ok(Json(json!({
        "kind": "compute#project",
        "id": p.number.to_string(),
        "name": p.id,
        "creationTimestamp": "2024-01-01T00:00:00.000-07:00",
        "selfLink": format!("{LINK_ROOT}projects/{}", p.id),
        "quotas": quotas,
        "defaultNetworkTier": "PREMIUM",
        "defaultServiceAccount": format!("{}-compute@developer.gserviceaccount.com", p.number),
        "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
        "vmDnsSetting": "ZONAL_ONLY",
        "commonInstanceMetadata": {"kind": "compute#metadata", "fingerprint": "Vzb5ZMtbFf4="},
    })))
}

/// The request's URI and the `host[:port]` it was addressed to: the authority of
/// an absolute-form URI (a request through a proxy), else the `Host` header.
pub(crate) struct Addressed {
    pub(crate) uri: Uri,
    pub(crate) host: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Addressed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                parts
                    .headers
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
        Ok(Addressed {
            uri: parts.uri.clone(),
            host,
        })
    }
}

/// One request to a collection or item route, as the handlers extracted it.
struct Call {
    shared: Shared,
    host: Option<String>,
    project: String,
    region: Option<String>,
    method: Method,
    uri: Uri,
    q: Params,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
}

/// `/projects/{project}/global/{coll}` and `/regions/{region}/{coll}`.
fn on_collection(call: Call, coll: &str) -> ApiResult<Json<Value>> {
    let Call {
        shared,
        host,
        project,
        region,
        method,
        uri,
        q,
        fail,
        body,
    } = call;
    let region = region.as_deref();
    let host = host.as_deref();
    if coll == "operations" && method == Method::GET {
        return list_ops(&shared, &project, region, &q);
    }
    let Some(c) = Coll::from_path(coll).filter(|c| c.regional() == region.is_some()) else {
        return Err(unknown_method(uri.path()));
    };
    match method {
        Method::GET => list_resources(&shared, &project, region, c, &q),
        Method::POST => {
            let body = parse_body(&body)?;
            mutate(
                &shared,
                host,
                &project,
                region,
                &q,
                fail,
                "insert",
                |st, ctx| insert(st, ctx, c, body),
            )
        }
        _ => Err(unknown_method(uri.path())),
    }
}

/// `/projects/{project}/global/{coll}/{name}` and the regional form.
fn on_item(call: Call, coll: &str, name: &str) -> ApiResult<Json<Value>> {
    let Call {
        shared,
        host,
        project,
        region,
        method,
        uri,
        q,
        fail,
        body,
    } = call;
    let region = region.as_deref();
    let host = host.as_deref();
    if coll == "operations" {
        return match method {
            Method::GET => read(&shared, &project, region, |st, ctx| {
                find_op(st, ctx, name).map(|op| Json(op.to_json(SystemTime::now())))
            }),
            Method::DELETE => delete_op(&shared, &project, region, name),
            _ => Err(unknown_method(uri.path())),
        };
    }
    let Some(c) = Coll::from_path(coll).filter(|c| c.regional() == region.is_some()) else {
        return Err(unknown_method(uri.path()));
    };
    let patchable = matches!(
        c,
        Coll::UrlMaps | Coll::BackendServices | Coll::TargetHttpsProxies | Coll::TargetHttpProxies
    );
    let updatable = matches!(c, Coll::UrlMaps | Coll::BackendServices);
    match method {
        Method::GET => get_resource(&shared, &project, region, c, name),
        Method::DELETE => mutate(
            &shared,
            host,
            &project,
            region,
            &q,
            fail,
            "delete",
            |st, ctx| delete(st, ctx, c, name),
        ),
        Method::PATCH if patchable => {
            let body = parse_body(&body)?;
            mutate(
                &shared,
                host,
                &project,
                region,
                &q,
                fail,
                "patch",
                |st, ctx| modify(st, ctx, c, name, body, true),
            )
        }
        Method::PUT if updatable => {
            let body = parse_body(&body)?;
            mutate(
                &shared,
                host,
                &project,
                region,
                &q,
                fail,
                "update",
                |st, ctx| modify(st, ctx, c, name, body, false),
            )
        }
        _ => Err(unknown_method(uri.path())),
    }
}

async fn global_collection(
    AxState(shared): AxState<Shared>,
    Path((project, coll)): Path<(String, String)>,
    method: Method,
    Addressed { uri, host }: Addressed,
    Query(q): Query<Params>,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let call = Call {
        shared,
        host,
        project,
        region: None,
        method,
        uri,
        q,
        fail,
        body,
    };
    on_collection(call, &coll)
}

async fn regional_collection(
    AxState(shared): AxState<Shared>,
    Path((project, region, coll)): Path<(String, String, String)>,
    method: Method,
    Addressed { uri, host }: Addressed,
    Query(q): Query<Params>,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let call = Call {
        shared,
        host,
        project,
        region: Some(region),
        method,
        uri,
        q,
        fail,
        body,
    };
    on_collection(call, &coll)
}

async fn global_item(
    AxState(shared): AxState<Shared>,
    Path((project, coll, name)): Path<(String, String, String)>,
    method: Method,
    Addressed { uri, host }: Addressed,
    Query(q): Query<Params>,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let call = Call {
        shared,
        host,
        project,
        region: None,
        method,
        uri,
        q,
        fail,
        body,
    };
    on_item(call, &coll, &name)
}

async fn regional_item(
    AxState(shared): AxState<Shared>,
    Path((project, region, coll, name)): Path<(String, String, String, String)>,
    method: Method,
    Addressed { uri, host }: Addressed,
    Query(q): Query<Params>,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let call = Call {
        shared,
        host,
        project,
        region: Some(region),
        method,
        uri,
        q,
        fail,
        body,
    };
    on_item(call, &coll, &name)
}

/// `.../global/operations/{op}/wait` and
/// `.../global/targetHttpsProxies/{name}/setCertificateMap` (which, unlike
/// `setSslCertificates`, has the `/global/` segment).
#[allow(clippy::too_many_arguments)]
async fn global_verb(
    AxState(shared): AxState<Shared>,
    Path((project, coll, name, verb)): Path<(String, String, String, String)>,
    method: Method,
    Addressed { uri, host }: Addressed,
    Query(q): Query<Params>,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    if coll == "operations" && verb == "wait" && method == Method::POST {
        return wait_op(&shared, &project, None, &name).await;
    }
    if coll == "targetHttpsProxies" && verb == "setCertificateMap" && method == Method::POST {
        let body = parse_body(&body)?;
        let c = Coll::TargetHttpsProxies;
        return mutate(
            &shared,
            host.as_deref(),
            &project,
            None,
            &q,
            fail,
            &verb,
            |st, ctx| set_on_proxy(st, ctx, c, &name, &verb, &body),
        );
    }
    Err(unknown_method(uri.path()))
}

/// `.../regions/{region}/operations/{op}/wait`.
async fn regional_verb(
    AxState(shared): AxState<Shared>,
    Path((project, region, coll, name, verb)): Path<(String, String, String, String, String)>,
    method: Method,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    if coll == "operations" && verb == "wait" && method == Method::POST {
        return wait_op(&shared, &project, Some(&region), &name).await;
    }
    Err(unknown_method(uri.path()))
}

/// `projects/{p}/targetHttpsProxies/{name}/setSslCertificates|setUrlMap` and
/// `projects/{p}/targetHttpProxies/{name}/setUrlMap` (no `/global/` segment).
async fn proxy_verb(
    AxState(shared): AxState<Shared>,
    Path((project, coll, name, verb)): Path<(String, String, String, String)>,
    method: Method,
    Addressed { uri, host }: Addressed,
    Query(q): Query<Params>,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let host = host.as_deref();
    let c = match coll.as_str() {
        "targetHttpsProxies" => Coll::TargetHttpsProxies,
        "targetHttpProxies" => Coll::TargetHttpProxies,
        _ => return Err(unknown_method(uri.path())),
    };
    let known = match c {
        Coll::TargetHttpsProxies => matches!(verb.as_str(), "setSslCertificates" | "setUrlMap"),
        _ => verb == "setUrlMap",
    };
    if method != Method::POST || !known {
        return Err(unknown_method(uri.path()));
    }
    let body = parse_body(&body)?;
    mutate(&shared, host, &project, None, &q, fail, &verb, |st, ctx| {
        set_on_proxy(st, ctx, c, &name, &verb, &body)
    })
}

/// The `/compute/v1/` routes.
pub fn router() -> axum::Router<Shared> {
    const P: &str = "/compute/v1/projects/{project}";
    axum::Router::new()
        .route(P, get(project_get))
        .route(&format!("{P}/global/{{coll}}"), any(global_collection))
        .route(&format!("{P}/aggregated/{{coll}}"), any(aggregated))
        .route(&format!("{P}/global/{{coll}}/{{name}}"), any(global_item))
        .route(
            &format!("{P}/global/{{coll}}/{{name}}/{{verb}}"),
            any(global_verb),
        )
        .route(
            &format!("{P}/regions/{{region}}/{{coll}}"),
            any(regional_collection),
        )
        .route(
            &format!("{P}/regions/{{region}}/{{coll}}/{{name}}"),
            any(regional_item),
        )
        .route(
            &format!("{P}/regions/{{region}}/{{coll}}/{{name}}/{{verb}}"),
            any(regional_verb),
        )
        .route(&format!("{P}/{{coll}}/{{name}}/{{verb}}"), any(proxy_verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_regions_request_ids() {
        assert!(valid_name("a"));
        assert!(valid_name("site-20261128-ab12"));
        assert!(!valid_name("A"));
        assert!(!valid_name("a-"));
        assert!(!valid_name("1a"));
        assert!(!valid_name(&"a".repeat(64)));
        assert!(valid_region("us-central1"));
        assert!(valid_region("northamerica-northeast2"));
        assert!(!valid_region("us-central"));
        assert!(!valid_region("global"));
        assert!(check_request_id("123e4567-e89b-42d3-a456-426614174000").is_ok());
        assert!(check_request_id("00000000-0000-0000-0000-000000000000").is_err());
        assert!(check_request_id("nope").is_err());
    }

    #[test]
    fn base64_and_merge_patch() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]});
        merge_patch(
            &mut t,
            &json!({"b": {"c": null, "x": 4}, "e": [3], "a": null}),
        );
        assert_eq!(t, json!({"b": {"d": 3, "x": 4}, "e": [3]}));
    }

    #[test]
    fn op_error_codes() {
        assert_eq!(operation_error_code("quotaExceeded"), "QUOTA_EXCEEDED");
        assert_eq!(
            operation_error_code("resourceNotReady"),
            "RESOURCE_NOT_READY"
        );
        assert_eq!(
            operation_error_code("rateLimitExceeded"),
            "RESOURCE_OPERATION_RATE_EXCEEDED"
        );
        assert_eq!(http_phrase(403), "FORBIDDEN");
    }
}
