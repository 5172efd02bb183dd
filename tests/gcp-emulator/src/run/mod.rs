//! Cloud Run Admin v2: services (create, get, list, patch with `updateMask`,
//! delete, IAM) and the google.longrunning Operations their mutations return.
//!
//! A mutation changes the service at once and marks it `reconciling`; its
//! Operation becomes done after `operation_delay`, when the service settles
//! (ready, `observedGeneration == generation`). Operations settle lazily, on the
//! next request that looks at them. An `operation` fault ends the Operation with
//! its error and changes nothing.
//!
//! The v1 subset gcloud uses (Knative paths under `/apis/`, and
//! `/v1/projects/{p}/locations/...` dispatched from the shared `/v1/` prefix in
//! [`crate::cloud`]) is in `v1.rs`, on the same state.

pub mod v1;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::Method;
use axum::response::Response;
use axum::routing::any;
use rand::RngExt;
use serde_json::{Value, json};

use crate::admin::FailOperation;
use crate::cloud::{invalid, parse_body, permission_denied, respond};
use crate::error::ApiError;
use crate::iam_policy::{self as iam, Policy};
use crate::state::{Project, Shared, rfc3339_utc};

const SERVICE_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Service";
const INGRESS: [&str; 5] = [
    "INGRESS_TRAFFIC_UNSPECIFIED",
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    "INGRESS_TRAFFIC_NONE",
];
/// Fields a client may set (and name in `updateMask`).
const MUTABLE: [&str; 15] = [
    "description",
    "labels",
    "annotations",
    "client",
    "clientVersion",
    "ingress",
    "launchStage",
    "binaryAuthorization",
    "template",
    "traffic",
    "scaling",
    "invokerIamDisabled",
    "iapEnabled",
    "customAudiences",
    "defaultUriDisabled",
];
/// The longest a `:wait` holds the request (Google's is best effort too).
const MAX_WAIT: Duration = Duration::from_secs(2);

/// Cloud Run state of one project.
#[derive(Default)]
pub struct RunState {
    /// Keyed by (region, service id).
    pub(super) services: BTreeMap<(String, String), RunService>,
    /// Keyed by the operation's full name.
    operations: BTreeMap<String, RunOp>,
}

pub(super) struct RunService {
    pub(super) json: Value,
    pub(super) iam: Policy,
}

struct RunOp {
    name: String,
    key: (String, String),
    done_at: Instant,
    done: bool,
    error: Option<ApiError>,
    /// The service as the mutation left it (metadata; the response once done).
    snapshot: Value,
    /// Deletions answer with the deleted service, which no longer exists to read.
    deletion: bool,
}

impl RunState {
    /// Finishes every operation whose time has come.
    fn settle(&mut self, now: Instant) {
        for op in self.operations.values_mut() {
            if op.done || now < op.done_at {
                continue;
            }
            op.done = true;
            if op.error.is_some() || op.deletion {
                continue;
            }
            if let Some(svc) = self.services.get_mut(&op.key) {
                let generation = svc.json["generation"].clone();
                let t = rfc3339_utc(SystemTime::now());
                svc.json["reconciling"] = json!(false);
                svc.json["observedGeneration"] = generation;
                svc.json["latestReadyRevision"] = svc.json["latestCreatedRevision"].clone();
                svc.json["terminalCondition"] = ready_condition(&t);
                svc.json["conditions"] = json!([
                    {"type": "RoutesReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": t},
                    {"type": "ConfigurationsReady", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": t},
                ]);
                op.snapshot = svc.json.clone();
            }
        }
    }
}

fn ready_condition(t: &str) -> Value {
    json!({"type": "Ready", "state": "CONDITION_SUCCEEDED", "lastTransitionTime": t})
}

pub(super) fn reconciling_condition(t: &str) -> Value {
    json!({"type": "Ready", "state": "CONDITION_RECONCILING", "lastTransitionTime": t})
}

/// The gRPC code an LRO `error` carries for an HTTP error.
pub(super) fn grpc_code(e: &ApiError) -> u16 {
    match e.status_name() {
        "CANCELLED" => 1,
        "INVALID_ARGUMENT" => 3,
        "DEADLINE_EXCEEDED" => 4,
        "NOT_FOUND" => 5,
        "ALREADY_EXISTS" => 6,
        "PERMISSION_DENIED" => 7,
        "RESOURCE_EXHAUSTED" => 8,
        "FAILED_PRECONDITION" => 9,
        "ABORTED" => 10,
        "UNIMPLEMENTED" => 12,
        "UNAVAILABLE" => 14,
        "UNAUTHENTICATED" => 16,
        _ => 13,
    }
}

fn op_json(op: &RunOp) -> Value {
    let mut meta = op.snapshot.clone();
    meta["@type"] = json!(SERVICE_TYPE);
    let mut v = json!({ "name": op.name, "metadata": meta });
    if op.done {
        v["done"] = json!(true);
        match &op.error {
            Some(e) => {
                v["error"] = json!({
                    "code": grpc_code(e),
                    "message": e.message,
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": e.reason,
                        "domain": e.domain,
                    }],
                });
            }
            None => v["response"] = meta,
        }
    }
    v
}

pub(super) fn not_found(name: &str) -> ApiError {
    ApiError::new(404, "notFound", format!("Resource '{name}' was not found")).aip193()
}

fn uuid() -> String {
    let mut r = rand::rng();
    let a: u32 = r.random();
    let b: u16 = r.random();
    let c: u16 = r.random::<u16>() & 0x0fff | 0x4000;
    let d: u16 = r.random::<u16>() & 0x3fff | 0x8000;
    let e: u64 = r.random::<u64>() & 0xffff_ffff_ffff;
    format!("{a:08x}-{b:04x}-{c:04x}-{d:04x}-{e:012x}")
}

/// `us-central1` -> `uc`, as in `svc-abc123-uc.a.run.app`.
fn region_code(region: &str) -> String {
    region
        .split('-')
        .filter_map(|w| w.chars().find(|c| c.is_ascii_alphabetic()))
        .collect()
}

/// Cloud Run v2 `serviceId`: begins with a letter, lowercase letters, digits and
/// hyphens, no trailing hyphen, fewer than 50 characters.
pub(super) fn check_service_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() < 50
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "service_id '{id}' is invalid: must use only lowercase alphanumeric characters and dashes, cannot begin or end with a dash, and cannot be longer than 49 characters."
        )))
    }
}

pub(super) fn check_fields(body: &Value) -> Result<(), ApiError> {
    if let Some(ingress) = body.get("ingress") {
        let ok = ingress.as_str().is_some_and(|i| INGRESS.contains(&i));
        if !ok {
            return Err(invalid(format!(
                "Invalid value at 'service.ingress' (type.googleapis.com/google.cloud.run.v2.IngressTraffic), {ingress}"
            )));
        }
    }
    Ok(())
}

/// The fresh service a create makes.
pub(super) fn new_service(
    project: &Project,
    region: &str,
    id: &str,
    body: &Value,
    now: &str,
) -> Value {
    let name = format!("projects/{}/locations/{region}/services/{id}", project.id);
    let hash: u64 = rand::rng().random::<u64>() % 36u64.pow(10);
    let mut svc = json!({
        "name": name,
        "uid": uuid(),
        "generation": "1",
        "createTime": now,
        "updateTime": now,
        "creator": format!("{}-compute@developer.gserviceaccount.com", project.number),
        "lastModifier": format!("{}-compute@developer.gserviceaccount.com", project.number),
        "ingress": "INGRESS_TRAFFIC_ALL",
        "launchStage": "GA",
        "template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]},
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "uri": format!("https://{id}-{}-{}.a.run.app", base36(hash), region_code(region)),
        "urls": [
            format!("https://{id}-{}.{region}.run.app", project.number),
            format!("https://{id}-{}-{}.a.run.app", base36(hash), region_code(region)),
        ],
        "latestCreatedRevision": format!("{name}/revisions/{id}-00001-abc"),
        "latestReadyRevision": format!("{name}/revisions/{id}-00001-abc"),
        "trafficStatuses": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
    });
    apply(&mut svc, body, &MUTABLE, false);
    svc
}

fn base36(mut n: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    for _ in 0..10 {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Copies the masked fields from `body`; with `reset`, a masked field absent from
/// the body goes back to its default (Google's field-mask semantics).
pub(super) fn apply(svc: &mut Value, body: &Value, mask: &[&str], reset: bool) {
    for f in mask {
        match body.get(*f) {
            Some(v) if !v.is_null() => {
                let v = if *f == "ingress" && v == "INGRESS_TRAFFIC_UNSPECIFIED" {
                    json!("INGRESS_TRAFFIC_ALL")
                } else {
                    v.clone()
                };
                svc[*f] = v;
            }
            _ if reset => {
                if let Some(o) = svc.as_object_mut() {
                    o.remove(*f);
                }
                if *f == "ingress" {
                    svc["ingress"] = json!("INGRESS_TRAFFIC_ALL");
                }
            }
            _ => {}
        }
    }
}

/// A changed template makes a new revision (`{id}-00002-xyz`), created now and
/// ready once the service settles.
fn new_revision(svc: &mut Value) {
    let created = svc["latestCreatedRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let Some((parent, last)) = created.rsplit_once("/revisions/") else {
        return;
    };
    // `{id}-{NNNNN}-{suffix}`: the number is the second-to-last part.
    let mut parts = last.rsplitn(3, '-');
    let (_, n, id) = (parts.next(), parts.next(), parts.next());
    let (Some(n), Some(id)) = (n.and_then(|n| n.parse::<u32>().ok()), id) else {
        return;
    };
    let suffix: String = {
        let mut r = rand::rng();
        (0..3)
            .map(|_| char::from(b'a' + r.random_range(0..26u8)))
            .collect()
    };
    svc["latestCreatedRevision"] = json!(format!("{parent}/revisions/{id}-{:05}-{suffix}", n + 1));
}

/// Marks a mutated service as reconciling at its next generation.
pub(super) fn bump(svc: &mut Value, now: &str) {
    let g: u64 = svc["generation"]
        .as_str()
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    svc["generation"] = json!((g + 1).to_string());
    svc["updateTime"] = json!(now);
    svc["reconciling"] = json!(true);
    svc["terminalCondition"] = reconciling_condition(now);
    refresh_etag(svc);
}

pub(super) fn refresh_etag(svc: &mut Value) {
    let g = svc["generation"].as_str().unwrap_or("0").to_string();
    let uid = svc["uid"].as_str().unwrap_or("").to_string();
    svc["etag"] = json!(format!(
        "\"{}\"",
        iam::base64(format!("{uid}/{g}").as_bytes())
    ));
}

pub(super) fn public(svc: &Value) -> Value {
    let mut v = svc.clone();
    if v.get("reconciling").is_none() {
        v["reconciling"] = json!(false);
    }
    v
}

/// What the request path names.
enum Target<'a> {
    Services,
    Service(&'a str, Option<&'a str>),
    Operations,
    Operation(&'a str, Option<&'a str>),
}

/// The `/v2/` and `/apis/` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/v2/{*rest}", any(handle))
        .route("/apis/{*rest}", any(knative))
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
    respond(v1::namespaces_path(&shared, host.as_deref(), &method, &rest, fail, &body).await)
}

/// `/v2/{*rest}`.
pub async fn handle(
    AxState(shared): AxState<Shared>,
    method: Method,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    fail: Option<Extension<FailOperation>>,
    body: Bytes,
) -> Response {
    let fail = fail.map(|Extension(FailOperation(e))| e);
    let r = dispatch(&shared, &method, &rest, &q, fail, &body).await;
    respond(r)
}

pub(super) async fn dispatch(
    shared: &Shared,
    method: &Method,
    rest: &str,
    q: &HashMap<String, String>,
    fail: Option<ApiError>,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let unknown = || {
        ApiError::new(
            404,
            "notFound",
            format!("The requested URL /v2/{rest} was not found on this server."),
        )
        .aip193()
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let (project, region, target) = match segs.as_slice() {
        ["projects", p, "locations", r, "services"] => (*p, *r, Target::Services),
        ["projects", p, "locations", r, "services", s] => {
            let (id, verb) = match s.split_once(':') {
                Some((i, v)) => (i, Some(v)),
                None => (*s, None),
            };
            (*p, *r, Target::Service(id, verb))
        }
        ["projects", p, "locations", r, "operations"] => (*p, *r, Target::Operations),
        ["projects", p, "locations", r, "operations", o] => {
            let (id, verb) = match o.split_once(':') {
                Some((i, v)) => (i, Some(v)),
                None => (*o, None),
            };
            (*p, *r, Target::Operation(id, verb))
        }
        _ => return Err(unknown()),
    };
    let parent = format!("projects/{project}/locations/{region}");
    match (method.clone(), target) {
        (Method::POST, Target::Operation(id, Some("wait"))) => {
            let req = parse_body(body)?;
            let timeout = req
                .get("timeout")
                .and_then(Value::as_str)
                .map(parse_duration)
                .transpose()?
                .unwrap_or(MAX_WAIT)
                .min(MAX_WAIT);
            wait(
                shared,
                project,
                &format!("{parent}/operations/{id}"),
                timeout,
            )
            .await
        }
        (Method::GET, Target::Operation(id, None)) => {
            with_run(shared, project, "run.operations.get", &parent, |st, _| {
                let name = op_name(st, project, region, id);
                st.operations
                    .get(&name)
                    .map(op_json)
                    .ok_or_else(|| not_found(&name))
            })
        }
        (Method::DELETE, Target::Operation(id, None)) => with_run(
            shared,
            project,
            "run.operations.delete",
            &parent,
            |st, _| {
                let name = op_name(st, project, region, id);
                st.operations
                    .remove(&name)
                    .map(|_| json!({}))
                    .ok_or_else(|| not_found(&name))
            },
        ),
        (Method::GET, Target::Operations) => {
            with_run(shared, project, "run.operations.list", &parent, |st, _| {
                let ops: Vec<Value> = st
                    .operations
                    .values()
                    .filter(|o| o.key.0 == region)
                    .map(op_json)
                    .collect();
                Ok(if ops.is_empty() {
                    json!({})
                } else {
                    json!({ "operations": ops })
                })
            })
        }
        (Method::GET, Target::Services) => {
            with_run(shared, project, "run.services.list", &parent, |st, _| {
                let list: Vec<Value> = st
                    .services
                    .iter()
                    .filter(|((r, _), _)| r == region)
                    .map(|(_, s)| public(&s.json))
                    .collect();
                Ok(if list.is_empty() {
                    json!({})
                } else {
                    json!({ "services": list })
                })
            })
        }
        (Method::POST, Target::Services) => {
            let id = q.get("serviceId").map(String::as_str).unwrap_or("");
            if id.is_empty() {
                return Err(invalid("service_id must be specified."));
            }
            check_service_id(id)?;
            let req = parse_body(body)?;
            check_fields(&req)?;
            if req
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            {
                return Err(invalid(
                    "service.name must be empty: the name is given by parent and service_id.",
                ));
            }
            let delay = shared.operation_delay("run");
            with_run(shared, project, "run.services.create", &parent, |st, p| {
                let key = (region.to_string(), id.to_string());
                let full = format!("{parent}/services/{id}");
                if st.services.contains_key(&key) {
                    return Err(ApiError::new(
                        409,
                        "alreadyExists",
                        format!("Resource '{full}' already exists."),
                    )
                    .aip193());
                }
                let now = rfc3339_utc(SystemTime::now());
                let mut svc = new_service(p, region, id, &req, &now);
                svc["reconciling"] = json!(true);
                svc["terminalCondition"] = reconciling_condition(&now);
                refresh_etag(&mut svc);
                let snapshot = svc.clone();
                if fail.is_none() {
                    st.services.insert(
                        key.clone(),
                        RunService {
                            json: svc,
                            iam: Policy::default(),
                        },
                    );
                }
                Ok(start_op(st, &parent, key, snapshot, fail, delay, false))
            })
        }
        (Method::GET, Target::Service(id, None)) => {
            with_run(shared, project, "run.services.get", &parent, |st, _| {
                let full = format!("{parent}/services/{id}");
                st.services
                    .get(&(region.to_string(), id.to_string()))
                    .map(|s| public(&s.json))
                    .ok_or_else(|| not_found(&full))
            })
        }
        (Method::PATCH, Target::Service(id, None)) => {
            let req = parse_body(body)?;
            check_fields(&req)?;
            let full = format!("{parent}/services/{id}");
            if let Some(n) = req.get("name").and_then(Value::as_str)
                && !n.is_empty()
                && n != full
            {
                return Err(invalid(format!(
                    "service.name '{n}' does not match the resource in the URL, '{full}'."
                )));
            }
            let mask: Vec<String> = match q.get("updateMask") {
                Some(m) if !m.trim().is_empty() => {
                    m.split(',').map(|f| f.trim().to_string()).collect()
                }
                _ => MUTABLE.iter().map(|f| f.to_string()).collect(),
            };
            for f in &mask {
                if !MUTABLE.contains(&f.as_str()) {
                    return Err(invalid(format!(
                        "Invalid field mask path '{f}': the field does not exist or is not mutable."
                    )));
                }
            }
            let allow_missing = q.get("allowMissing").is_some_and(|v| v == "true");
            let delay = shared.operation_delay("run");
            with_run(shared, project, "run.services.update", &parent, |st, p| {
                let key = (region.to_string(), id.to_string());
                let now = rfc3339_utc(SystemTime::now());
                let Some(existing) = st.services.get(&key) else {
                    if !allow_missing {
                        return Err(not_found(&full));
                    }
                    check_service_id(id)?;
                    let mut svc = new_service(p, region, id, &req, &now);
                    svc["reconciling"] = json!(true);
                    svc["terminalCondition"] = reconciling_condition(&now);
                    refresh_etag(&mut svc);
                    let snapshot = svc.clone();
                    if fail.is_none() {
                        st.services.insert(
                            key.clone(),
                            RunService {
                                json: svc,
                                iam: Policy::default(),
                            },
                        );
                    }
                    return Ok(start_op(st, &parent, key, snapshot, fail, delay, false));
                };
                if let Some(etag) = req.get("etag").and_then(Value::as_str)
                    && !etag.is_empty()
                    && Some(etag) != existing.json["etag"].as_str()
                {
                    return Err(etag_mismatch(&full));
                }
                let mut svc = existing.json.clone();
                let mask: Vec<&str> = mask.iter().map(String::as_str).collect();
                apply(&mut svc, &req, &mask, true);
                if svc["template"] != existing.json["template"] {
                    new_revision(&mut svc);
                }
                bump(&mut svc, &now);
                let snapshot = svc.clone();
                if fail.is_none()
                    && let Some(s) = st.services.get_mut(&key)
                {
                    s.json = svc;
                }
                Ok(start_op(st, &parent, key, snapshot, fail, delay, false))
            })
        }
        (Method::DELETE, Target::Service(id, None)) => {
            let etag = q.get("etag").cloned();
            let delay = shared.operation_delay("run");
            with_run(shared, project, "run.services.delete", &parent, |st, _| {
                let key = (region.to_string(), id.to_string());
                let full = format!("{parent}/services/{id}");
                let Some(existing) = st.services.get(&key) else {
                    return Err(not_found(&full));
                };
                if let Some(e) = &etag
                    && !e.is_empty()
                    && Some(e.as_str()) != existing.json["etag"].as_str()
                {
                    return Err(etag_mismatch(&full));
                }
                let mut snapshot = existing.json.clone();
                snapshot["deleteTime"] = json!(rfc3339_utc(SystemTime::now()));
                snapshot["reconciling"] = json!(true);
                if fail.is_none() {
                    st.services.remove(&key);
                }
                Ok(start_op(st, &parent, key, snapshot, fail, delay, true))
            })
        }
        (Method::GET, Target::Service(id, Some("getIamPolicy"))) => {
            let requested = q
                .get("options.requestedPolicyVersion")
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        invalid(format!(
                            "Invalid value '{v}' for options.requestedPolicyVersion."
                        ))
                    })
                })
                .transpose()?
                .unwrap_or(0);
            iam::check_requested_version(requested)?;
            with_run(
                shared,
                project,
                "run.services.getIamPolicy",
                &parent,
                |st, _| {
                    let full = format!("{parent}/services/{id}");
                    st.services
                        .get(&(region.to_string(), id.to_string()))
                        .map(|s| s.iam.to_json())
                        .ok_or_else(|| not_found(&full))
                },
            )
        }
        (Method::POST, Target::Service(id, Some("setIamPolicy"))) => {
            let req = parse_body(body)?;
            with_run(
                shared,
                project,
                "run.services.setIamPolicy",
                &parent,
                |st, p| {
                    let full = format!("{parent}/services/{id}");
                    let agents = p.cloud.services.agents.clone();
                    let number = p.number;
                    let svc = st
                        .services
                        .get_mut(&(region.to_string(), id.to_string()))
                        .ok_or_else(|| not_found(&full))?;
                    svc.iam.set(&req, iam::Resource::Run, number, &agents)?;
                    Ok(svc.iam.to_json())
                },
            )
        }
        (Method::POST, Target::Service(id, Some("testIamPermissions"))) => {
            let req = parse_body(body)?;
            let wanted = iam::permissions_in(&req)?;
            with_run(shared, project, "run.services.get", &parent, |st, p| {
                let full = format!("{parent}/services/{id}");
                if !st
                    .services
                    .contains_key(&(region.to_string(), id.to_string()))
                {
                    return Err(not_found(&full));
                }
                let granted: Vec<Value> = wanted
                    .iter()
                    .filter(|w| w.starts_with("run.") && p.iam.holds(w))
                    .map(|w| Value::from(w.as_str()))
                    .collect();
                Ok(if granted.is_empty() {
                    json!({})
                } else {
                    json!({ "permissions": granted })
                })
            })
        }
        _ => Err(unknown()),
    }
}

pub(super) fn etag_mismatch(full: &str) -> ApiError {
    ApiError::new(
        409,
        "aborted",
        format!("The etag of resource '{full}' does not match the provided etag."),
    )
    .aip193()
}

/// Operation names use the project as the request named it; look up both forms.
fn op_name(st: &RunState, project: &str, region: &str, id: &str) -> String {
    let direct = format!("projects/{project}/locations/{region}/operations/{id}");
    if st.operations.contains_key(&direct) {
        return direct;
    }
    st.operations
        .keys()
        .find(|k| k.ends_with(&format!("/locations/{region}/operations/{id}")))
        .cloned()
        .unwrap_or(direct)
}

pub(super) fn start_op(
    st: &mut RunState,
    parent: &str,
    key: (String, String),
    snapshot: Value,
    error: Option<ApiError>,
    delay: Duration,
    deletion: bool,
) -> Value {
    let name = format!("{parent}/operations/{}", uuid());
    let op = RunOp {
        name: name.clone(),
        key,
        done_at: Instant::now() + delay,
        done: false,
        error,
        snapshot,
        deletion,
    };
    let v = op_json(&op);
    st.operations.insert(name, op);
    v
}

/// Runs `f` on the project's Run state (settled first) and a read-only view of
/// the project, under the world lock; an unknown project is Google's 403 for
/// `permission` (the admin middleware has checked the permission itself).
pub(super) fn with_run<T>(
    shared: &Shared,
    project: &str,
    permission: &str,
    resource: &str,
    f: impl FnOnce(&mut RunState, &Project) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut world = shared.world();
    let p = world
        .project(project)
        .map_err(|_| permission_denied(permission, resource))?;
    // Take the Run state out so `f` can also read the project.
    let mut st = std::mem::take(&mut p.cloud.run);
    st.settle(Instant::now());
    let r = f(&mut st, p);
    p.cloud.run = st;
    r
}

/// `POST .../operations/{id}:wait`: holds the request until the operation is done
/// or the (bounded) timeout passes, then returns the operation as it stands.
async fn wait(
    shared: &Shared,
    project: &str,
    name: &str,
    timeout: Duration,
) -> Result<Value, ApiError> {
    let deadline = Instant::now() + timeout;
    let region = name.split('/').nth(3).unwrap_or("").to_string();
    let id = name.rsplit('/').next().unwrap_or("").to_string();
    loop {
        let (v, done_at) = with_run(shared, project, "run.operations.get", name, |st, _| {
            let full = op_name(st, project, &region, &id);
            st.operations
                .get(&full)
                .map(|o| (op_json(o), if o.done { None } else { Some(o.done_at) }))
                .ok_or_else(|| not_found(&full))
        })?;
        let now = Instant::now();
        match done_at {
            None => return Ok(v),
            Some(_) if now >= deadline => return Ok(v),
            Some(at) => {
                let until = at.min(deadline);
                tokio::time::sleep(until.saturating_duration_since(now) + Duration::from_millis(1))
                    .await;
            }
        }
    }
}

/// `"60s"`, `"1.5s"` (google-duration).
fn parse_duration(s: &str) -> Result<Duration, ApiError> {
    s.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            invalid(format!(
                "Invalid value at 'timeout' (type.googleapis.com/google.protobuf.Duration), \"{s}\""
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ids_follow_run_rules() {
        assert!(check_service_id("hello").is_ok());
        assert!(check_service_id("hello-2").is_ok());
        assert!(check_service_id("2hello").is_err());
        assert!(check_service_id("hello-").is_err());
        assert!(check_service_id("Hello").is_err());
        assert!(check_service_id(&"a".repeat(49)).is_ok());
        assert!(check_service_id(&"a".repeat(50)).is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("60").is_err());
    }

    #[test]
    fn region_codes() {
        assert_eq!(region_code("us-central1"), "uc");
        assert_eq!(region_code("europe-west1"), "ew");
    }
}
