//! `/emulator/...`: fault injection and introspection, and the middleware that
//! applies them to every API request.
//!
//! - `GET /emulator/requests` -> `[{"method","path","query","status","id"}]` in
//!   arrival order (`id` is the discovery method id, e.g.
//!   `compute.sslCertificates.insert`, or null); `DELETE` clears it.
//! - `POST /emulator/faults` with a [`FaultRule`] adds a rule; `GET` lists them;
//!   `DELETE` removes all.
//! - `POST /emulator/settings` `{"operation_delay_ms", "dns_change_delay_ms"}`.
//! - `POST /emulator/dns/lag` `{"server": 1, "lag_ms": 2000}` or
//!   `{"lags_ms": [0, 2000]}`: per-name-server propagation lag.
//! - `POST /emulator/latency` `{"profile": "google", "seed": 1, "call_ms", ...}`:
//!   the latency model (see [`crate::latency`]); `{"profile": "none"}` turns it
//!   off; `GET` shows it (null when off).
//!
//! IAM (`/emulator/iam/...`: granted, denied, checked) is in [`crate::authz`]; the
//! middleware here calls its check on every API request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::discovery::MethodRef;
use crate::error::{ApiError, Style};
use crate::state::Shared;

/// Bodies larger than this are refused (Google's own limit is far larger, but no
/// request our clients send comes near it).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One logged request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Discovery method id, when the request matched one.
    pub id: Option<String>,
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
    /// What the latency model added: the round trip, plus the time an IAP write
    /// was held (0 without a model).
    #[serde(default)]
    pub latency_ms: u64,
    /// When the request arrived and when its answer left (Unix epoch, ms), to
    /// line calls up with a client's own timestamped log.
    #[serde(default)]
    pub start_unix_ms: u64,
    #[serde(default)]
    pub end_unix_ms: u64,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a matching rule does.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with the given status and reason instead of serving the request.
    #[default]
    Error,
    /// Serve the request, but the Operation (compute) or long-running operation it
    /// starts ends DONE with this error and changes nothing.
    Operation,
    /// Serve the request, then cut the response body in half (malformed JSON).
    Corrupt,
    /// Serve the request after `delay_ms`.
    Delay,
}

/// A fault rule. A request matches when every given selector matches.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Discovery method id; `compute.*` or `*` match by prefix.
    #[serde(default)]
    pub method: Option<String>,
    /// HTTP verb.
    #[serde(default)]
    pub http_method: Option<String>,
    /// Path prefix, e.g. `/dns/v1/`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Fire for the next `count` matching requests (then the rule is removed).
    #[serde(default)]
    pub count: Option<u32>,
    /// Fire for this fraction of matching requests (0..=1), forever.
    #[serde(default)]
    pub probability: Option<f64>,
    #[serde(default)]
    pub kind: FaultKind,
    /// HTTP status for `error` and `operation` faults (default 503).
    #[serde(default)]
    pub status: Option<u16>,
    /// Google reason (default chosen from the status).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

impl FaultRule {
    fn matches(&self, id: Option<&str>, method: &Method, path: &str) -> bool {
        if let Some(want) = &self.method {
            let Some(id) = id else { return false };
            let ok = if let Some(prefix) = want.strip_suffix('*') {
                id.starts_with(prefix)
            } else {
                id == want
            };
            if !ok {
                return false;
            }
        }
        if let Some(m) = &self.http_method
            && !m.eq_ignore_ascii_case(method.as_str())
        {
            return false;
        }
        if let Some(p) = &self.path_prefix
            && !path.starts_with(p.as_str())
        {
            return false;
        }
        true
    }

    /// The error this rule injects, in the style of the API that was called.
    pub fn error(&self, style: Style) -> ApiError {
        let code = self.status.unwrap_or(503);
        let reason = self.reason.clone().unwrap_or_else(|| {
            match code {
                429 => "rateLimitExceeded",
                403 => "rateLimitExceeded",
                500 => "backendError",
                503 => "backendError",
                412 => "conditionNotMet",
                _ => "backendError",
            }
            .to_string()
        });
        let message = self.message.clone().unwrap_or_else(|| match code {
            429 | 403 => "Rate Limit Exceeded".to_string(),
            412 => crate::storage::PRECONDITION_MESSAGE.to_string(),
            503 => "The service is currently unavailable.".to_string(),
            _ => "Internal error. Please try again.".to_string(),
        });
        let e = ApiError::new(code, &reason, message);
        match style {
            Style::V1 => e,
            Style::Aip193 => e.aip193(),
        }
    }
}

/// Put in a request's extensions when an `operation` fault matched: the handler
/// must start the operation, end it DONE with this error, and change nothing.
#[derive(Clone, Debug)]
pub struct FailOperation(pub ApiError);

/// Admin state.
pub struct Admin {
    started: Instant,
    log: Mutex<Vec<LoggedRequest>>,
    faults: Mutex<Vec<FaultRule>>,
    dns_lags: Mutex<Vec<Duration>>,
}

impl Admin {
    pub fn new(dns_servers: usize) -> Self {
        Admin {
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            dns_lags: Mutex::new(vec![Duration::ZERO; dns_servers.max(1)]),
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn clear_requests(&self) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn add_fault(&self, rule: FaultRule) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rule);
    }

    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Propagation lag of each simulated name server.
    pub fn dns_lags(&self) -> Vec<Duration> {
        self.dns_lags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_dns_lag(&self, server: usize, lag: Duration) {
        let mut lags = self.dns_lags.lock().unwrap_or_else(|p| p.into_inner());
        if server < lags.len() {
            lags[server] = lag;
        }
    }

    /// The first rule that fires for this request (count-limited rules are consumed).
    fn fire(&self, id: Option<&str>, method: &Method, path: &str) -> Option<FaultRule> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let mut fired = None;
        for i in 0..faults.len() {
            if !faults[i].matches(id, method, path) {
                continue;
            }
            if let Some(p) = faults[i].probability {
                if rand::rng().random::<f64>() < p {
                    fired = Some((i, faults[i].clone()));
                    break;
                }
                continue;
            }
            fired = Some((i, faults[i].clone()));
            break;
        }
        let (i, rule) = fired?;
        if let Some(n) = faults[i].count {
            if n <= 1 {
                faults.remove(i);
            } else {
                faults[i].count = Some(n - 1);
            }
        }
        Some(rule)
    }

    fn record(&self, entry: LoggedRequest) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// The error style of the API a path belongs to.
pub fn style_for(path: &str) -> Style {
    if path.starts_with("/compute/")
        || path.starts_with("/dns/")
        || crate::storage::is_storage_path(path)
    {
        Style::V1
    } else {
        Style::Aip193
    }
}

fn is_api_path(path: &str) -> bool {
    // `/` is the metadata server's root ping, not an API.
    !(path == "/" || path.starts_with("/emulator/") || path.starts_with("/computeMetadata"))
}

/// Applies auth, API switches, IAM, faults, request-body validation and logging
/// to every request.
pub async fn middleware(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let api = is_api_path(&path);
    let found = if api {
        shared.discovery.resolve_method(&method, &path)
    } else {
        None
    };
    let id = found.map(|m| shared.discovery.id_of(m).to_string());
    let style = style_for(&path);

    let start_unix_ms = unix_ms();
    // The model's round trip: half on the way in, half on the way out.
    let round_trip = if api {
        shared.next_call_latency()
    } else {
        Duration::ZERO
    };
    if !round_trip.is_zero() {
        tokio::time::sleep(round_trip / 2).await;
    }
    let response = handle(&shared, req, next, api, found, style).await;
    if !round_trip.is_zero() {
        tokio::time::sleep(round_trip - round_trip / 2).await;
    }

    let held = response
        .extensions()
        .get::<Held>()
        .map_or(Duration::ZERO, |h| h.0);
    if api {
        shared.admin.record(LoggedRequest {
            method: method.to_string(),
            path,
            query,
            status: response.status().as_u16(),
            id,
            at_ms: shared.admin.elapsed_ms(),
            latency_ms: (round_trip + held).as_millis() as u64,
            start_unix_ms,
            end_unix_ms: unix_ms(),
        });
    }
    response
}

async fn handle(
    shared: &Shared,
    req: Request,
    next: Next,
    api: bool,
    found: Option<MethodRef>,
    style: Style,
) -> Response {
    let id = found.map(|m| shared.discovery.id_of(m));
    if !api {
        return next.run(req).await;
    }
    if let Some(token) = &shared.config.required_token {
        let want = format!("Bearer {token}");
        let ok = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == want);
        if !ok {
            let e = ApiError::unauthenticated();
            return match style {
                Style::V1 => e,
                Style::Aip193 => e.aip193(),
            }
            .into_response();
        }
    }

    // A disabled API answers 403 before anything else (cloud.rs owns the switch).
    if let Some(e) = crate::serviceusage::check_api_enabled(shared, req.uri().path()) {
        return e.into_response();
    }

    // The body is read up front: what a request needs may depend on it (the
    // resources it refers to, what a DNS change does).
    let (parts, body) = req.into_parts();
    let (bytes, body) = if found.is_some_and(|m| shared.discovery.has_request_body(m)) {
        match to_bytes(body, MAX_BODY).await {
            Ok(b) => (Some(b), Body::empty()),
            Err(_) => {
                return ApiError::new(413, "invalid", "Request body too large").into_response();
            }
        }
    } else {
        (None, body)
    };

    // IAM, as Google checks it before doing anything.
    if let Some(e) = crate::authz::check(shared, id, parts.uri.path(), bytes.as_deref()) {
        return e.into_response();
    }

    let fault = shared.admin.fire(id, &parts.method, parts.uri.path());
    let mut parts = parts;
    if let Some(rule) = &fault {
        match rule.kind {
            FaultKind::Error => return rule.error(style).into_response(),
            FaultKind::Delay => {
                tokio::time::sleep(Duration::from_millis(rule.delay_ms.unwrap_or(1000))).await
            }
            FaultKind::Operation => {
                parts.extensions.insert(FailOperation(rule.error(style)));
            }
            FaultKind::Corrupt => {}
        }
    }

    // Validate the request body against the method's request schema, so unknown
    // fields and wrong types fail as Google fails them (400 `invalid`).
    let req = match (found, bytes) {
        // A media upload's body is the object's bytes, not a JSON resource
        // (the storage module checks a multipart upload's metadata part).
        (Some(_), Some(bytes)) if parts.uri.path().starts_with("/upload/") => {
            Request::from_parts(parts, Body::from(bytes))
        }
        (Some(m), Some(bytes)) => {
            if let Err(e) = shared.discovery.validate_request(m, &bytes) {
                return match style {
                    Style::V1 => e,
                    Style::Aip193 => e.aip193(),
                }
                .into_response();
            }
            Request::from_parts(parts, Body::from(bytes))
        }
        _ => Request::from_parts(parts, body),
    };

    let held = match id {
        Some(id) if is_iap_write(id) => shared
            .latency()
            .and_then(|m| m.operation_ms.get("iap").copied())
            .map_or(Duration::ZERO, Duration::from_millis),
        _ => Duration::ZERO,
    };
    if !held.is_zero() {
        tokio::time::sleep(held).await;
    }

    let mut response = next.run(req).await;
    response.extensions_mut().insert(Held(held));

    // A method served without an IAM table entry would be a hole in every
    // least-privilege proof: fail loudly instead.
    if response.status().is_success()
        && let Some(id) = id
        && crate::authz::permissions_of(id).is_none()
    {
        return ApiError::new(
            500,
            "internalError",
            format!("gcp-emulator bug: method {id} is served but has no entry in the IAM table (src/authz.rs)"),
        )
        .into_response();
    }

    if let Some(rule) = fault
        && rule.kind == FaultKind::Corrupt
    {
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
        let half = bytes.slice(..bytes.len() / 2);
        let mut parts = parts;
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from(half));
    }
    response
}

/// How long a synchronous call was held by the model (IAP writes), so the
/// request log can show it.
#[derive(Clone, Copy)]
struct Held(Duration);

/// IAP methods that change a policy or settings (what the model's `iap` figure
/// delays).
fn is_iap_write(id: &str) -> bool {
    id.starts_with("iap.") && (id.contains(".set") || id.contains(".update"))
}

/// Google's 404 for a path no API serves.
pub async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_string();
    let e = ApiError::new(
        404,
        "notFound",
        format!("The requested URL {path} was not found on this server."),
    );
    match style_for(&path) {
        Style::V1 => e,
        Style::Aip193 => e.aip193(),
    }
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    operation_delay_ms: Option<u64>,
    dns_change_delay_ms: Option<u64>,
}

/// `POST /emulator/latency`: a profile to start from (`none` turns the model
/// off), then any single figure to override.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyBody {
    profile: Option<String>,
    seed: Option<u64>,
    call_ms: Option<u64>,
    call_jitter_ms: Option<u64>,
    operation_ms: Option<std::collections::BTreeMap<String, u64>>,
    dns_change_ms: Option<u64>,
    dns_lags_ms: Option<Vec<u64>>,
}

fn set_latency(s: &Shared, b: LatencyBody) -> Response {
    let base = match &b.profile {
        Some(name) => match crate::latency::LatencyModel::profile(name) {
            Ok(m) => m,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
        None => s.latency(),
    };
    let overrides = b.seed.is_some()
        || b.call_ms.is_some()
        || b.call_jitter_ms.is_some()
        || b.operation_ms.is_some()
        || b.dns_change_ms.is_some()
        || b.dns_lags_ms.is_some();
    let model = match (base, overrides) {
        (None, false) => None,
        (base, _) => {
            let mut m = base.unwrap_or_else(|| crate::latency::LatencyModel {
                profile: "custom".into(),
                ..Default::default()
            });
            if let Some(v) = b.seed {
                m.seed = v;
            }
            if let Some(v) = b.call_ms {
                m.call_ms = v;
            }
            if let Some(v) = b.call_jitter_ms {
                m.call_jitter_ms = v;
            }
            if let Some(v) = b.operation_ms {
                m.operation_ms.extend(v);
            }
            if let Some(v) = b.dns_change_ms {
                m.dns_change_ms = v;
            }
            if let Some(v) = b.dns_lags_ms {
                m.dns_lags_ms = v;
            }
            if let Err(e) = m.check() {
                return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
            }
            Some(m)
        }
    };
    s.set_latency(model);
    Json(s.latency()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LagBody {
    server: Option<usize>,
    lag_ms: Option<u64>,
    lags_ms: Option<Vec<u64>>,
}

/// The `/emulator/` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route(
            "/emulator/requests",
            get(|State(s): State<Shared>| async move { Json(s.admin.requests()) }).delete(
                |State(s): State<Shared>| async move {
                    s.admin.clear_requests();
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/emulator/faults",
            post(
                |State(s): State<Shared>, Json(rule): Json<FaultRule>| async move {
                    s.admin.add_fault(rule);
                    StatusCode::NO_CONTENT
                },
            )
            .get(|State(s): State<Shared>| async move {
                Json(
                    s.admin
                        .faults
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                )
            })
            .delete(|State(s): State<Shared>| async move {
                s.admin.clear_faults();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/emulator/settings",
            post(
                |State(s): State<Shared>, Json(b): Json<SettingsBody>| async move {
                    s.update_settings(|st| {
                        if let Some(ms) = b.operation_delay_ms {
                            st.operation_delay = Duration::from_millis(ms);
                        }
                        if let Some(ms) = b.dns_change_delay_ms {
                            st.dns_change_delay = Duration::from_millis(ms);
                        }
                    });
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/emulator/dns/lag",
            post(|State(s): State<Shared>, Json(b): Json<LagBody>| async move {
                if let Some(all) = b.lags_ms {
                    for (i, ms) in all.into_iter().enumerate() {
                        s.admin.set_dns_lag(i, Duration::from_millis(ms));
                    }
                }
                if let (Some(i), Some(ms)) = (b.server, b.lag_ms) {
                    s.admin.set_dns_lag(i, Duration::from_millis(ms));
                }
                Json(json!({
                    "lags_ms": s.admin.dns_lags().iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>()
                }))
            }),
        )
        .route(
            "/emulator/latency",
            post(|State(s): State<Shared>, Json(b): Json<LatencyBody>| async move {
                set_latency(&s, b)
            })
            .get(|State(s): State<Shared>| async move { Json(s.latency()) }),
        )
        .route(
            "/emulator/health",
            get(|| async { Json(Value::from("ok")) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_matching_by_id_prefix_verb_and_path() {
        let r = FaultRule {
            method: Some("compute.*".into()),
            ..Default::default()
        };
        assert!(r.matches(
            Some("compute.sslCertificates.insert"),
            &Method::POST,
            "/compute/v1/x"
        ));
        assert!(!r.matches(Some("dns.changes.create"), &Method::POST, "/dns/v1/x"));
        assert!(!r.matches(None, &Method::POST, "/compute/v1/x"));
        let r = FaultRule {
            http_method: Some("post".into()),
            path_prefix: Some("/dns/".into()),
            ..Default::default()
        };
        assert!(r.matches(None, &Method::POST, "/dns/v1/projects/p/managedZones"));
        assert!(!r.matches(None, &Method::GET, "/dns/v1/projects/p/managedZones"));
    }

    #[test]
    fn count_limited_rules_are_consumed() {
        let a = Admin::new(1);
        a.add_fault(FaultRule {
            count: Some(2),
            ..Default::default()
        });
        assert!(a.fire(None, &Method::GET, "/x").is_some());
        assert!(a.fire(None, &Method::GET, "/x").is_some());
        assert!(a.fire(None, &Method::GET, "/x").is_none());
    }
}
