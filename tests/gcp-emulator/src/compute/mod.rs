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

mod certs;
mod filter;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State as AxState};
use axum::http::{Method, Uri};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};

use crate::admin::FailOperation;
use crate::error::{ApiError, ApiResult};
use crate::state::{Shared, rfc3339};

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

/// The resource collections the emulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coll {
    /// `global/sslCertificates`
    SslCertificates,
    /// `global/targetHttpsProxies`
    TargetHttpsProxies,
    /// `global/targetHttpProxies`
    TargetHttpProxies,
    /// `global/urlMaps`
    UrlMaps,
    /// `global/backendServices`
    BackendServices,
    /// `global/addresses`
    Addresses,
    /// `global/forwardingRules`
    ForwardingRules,
    /// `regions/R/networkEndpointGroups`
    NetworkEndpointGroups,
}

impl Coll {
    const ALL: [Coll; 8] = [
        Coll::SslCertificates,
        Coll::TargetHttpsProxies,
        Coll::TargetHttpProxies,
        Coll::UrlMaps,
        Coll::BackendServices,
        Coll::Addresses,
        Coll::ForwardingRules,
        Coll::NetworkEndpointGroups,
    ];

    /// The path segment.
    pub fn path(self) -> &'static str {
        match self {
            Coll::SslCertificates => "sslCertificates",
            Coll::TargetHttpsProxies => "targetHttpsProxies",
            Coll::TargetHttpProxies => "targetHttpProxies",
            Coll::UrlMaps => "urlMaps",
            Coll::BackendServices => "backendServices",
            Coll::Addresses => "addresses",
            Coll::ForwardingRules => "forwardingRules",
            Coll::NetworkEndpointGroups => "networkEndpointGroups",
        }
    }

    fn from_path(s: &str) -> Option<Coll> {
        Coll::ALL.into_iter().find(|c| c.path() == s)
    }

    fn kind(self) -> &'static str {
        match self {
            Coll::SslCertificates => "compute#sslCertificate",
            Coll::TargetHttpsProxies => "compute#targetHttpsProxy",
            Coll::TargetHttpProxies => "compute#targetHttpProxy",
            Coll::UrlMaps => "compute#urlMap",
            Coll::BackendServices => "compute#backendService",
            Coll::Addresses => "compute#address",
            Coll::ForwardingRules => "compute#forwardingRule",
            Coll::NetworkEndpointGroups => "compute#networkEndpointGroup",
        }
    }

    /// The resource type as Compute names it in `resourceInUseByAnotherResource`.
    fn noun(self) -> &'static str {
        match self {
            Coll::SslCertificates => "ssl_certificate",
            Coll::TargetHttpsProxies => "target_https_proxy",
            Coll::TargetHttpProxies => "target_http_proxy",
            Coll::UrlMaps => "url_map",
            Coll::BackendServices => "backend_service",
            Coll::Addresses => "address",
            Coll::ForwardingRules => "forwarding_rule",
            Coll::NetworkEndpointGroups => "network_endpoint_group",
        }
    }

    fn regional(self) -> bool {
        self == Coll::NetworkEndpointGroups
    }

    /// The project quota metric an insert counts against.
    fn quota(self) -> Option<&'static str> {
        match self {
            Coll::SslCertificates => Some("SSL_CERTIFICATES"),
            Coll::TargetHttpsProxies => Some("TARGET_HTTPS_PROXIES"),
            Coll::TargetHttpProxies => Some("TARGET_HTTP_PROXIES"),
            Coll::UrlMaps => Some("URL_MAPS"),
            Coll::BackendServices => Some("BACKEND_SERVICES"),
            Coll::Addresses => Some("STATIC_ADDRESSES"),
            Coll::ForwardingRules => Some("FORWARDING_RULES"),
            Coll::NetworkEndpointGroups => None,
        }
    }

    fn has_fingerprint(self) -> bool {
        matches!(
            self,
            Coll::TargetHttpsProxies
                | Coll::TargetHttpProxies
                | Coll::UrlMaps
                | Coll::BackendServices
                | Coll::ForwardingRules
        )
    }
}

/// The quota metrics `projects.get` reports.
pub const QUOTA_METRICS: [&str; 7] = [
    "SSL_CERTIFICATES",
    "TARGET_HTTPS_PROXIES",
    "TARGET_HTTP_PROXIES",
    "URL_MAPS",
    "BACKEND_SERVICES",
    "STATIC_ADDRESSES",
    "FORWARDING_RULES",
];

/// The default limit of a quota metric.
pub fn default_quota_limit(metric: &str) -> f64 {
    match metric {
        "SSL_CERTIFICATES" => 30.0,
        _ => 50.0,
    }
}

/// Per-project Compute state.
#[derive(Default, Clone)]
pub struct State {
    /// `"global/sslCertificates"` or `"regions/R/networkEndpointGroups"` -> name ->
    /// the resource as stored (keys starting with `__` are private).
    pub resources: BTreeMap<String, BTreeMap<String, Value>>,
    /// Operations by name.
    pub operations: BTreeMap<String, Operation>,
    /// `requestId` -> operation name, so retried mutations return the original.
    pub request_ids: HashMap<String, String>,
    /// Quota limits that differ from [`default_quota_limit`].
    pub quota_limits: BTreeMap<String, f64>,
}

impl State {
    /// The limit of a quota metric.
    pub fn quota_limit(&self, metric: &str) -> f64 {
        self.quota_limits
            .get(metric)
            .copied()
            .unwrap_or_else(|| default_quota_limit(metric))
    }

    /// How many resources a quota metric counts.
    pub fn quota_usage(&self, metric: &str) -> usize {
        Coll::ALL
            .into_iter()
            .filter(|c| c.quota() == Some(metric))
            .map(|c| self.count(c))
            .sum()
    }

    fn count(&self, coll: Coll) -> usize {
        self.resources
            .iter()
            .filter(|(k, _)| k.rsplit('/').next() == Some(coll.path()))
            .map(|(_, m)| m.len())
            .sum()
    }

    fn get(&self, r: &Res) -> Option<&Value> {
        self.resources.get(&r.key()).and_then(|m| m.get(&r.name))
    }

    fn put(&mut self, r: &Res, v: Value) {
        self.resources
            .entry(r.key())
            .or_default()
            .insert(r.name.clone(), v);
    }

    fn remove(&mut self, r: &Res) {
        if let Some(m) = self.resources.get_mut(&r.key()) {
            m.remove(&r.name);
        }
    }

    /// Every stored resource with its collection.
    fn all(&self) -> impl Iterator<Item = (Coll, &Value)> {
        self.resources.iter().flat_map(|(k, m)| {
            let coll = k.rsplit('/').next().and_then(Coll::from_path);
            m.values().filter_map(move |v| coll.map(|c| (c, v)))
        })
    }

    /// The selfLinks of the resources that reference `link`, sorted.
    fn users_of(&self, link: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .all()
            .filter(|(c, v)| refs_of(*c, v).iter().any(|r| r == link))
            .filter_map(|(_, v)| v["selfLink"].as_str().map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The references a stored resource holds (canonical selfLinks).
fn refs_of(coll: Coll, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |x: &Value| {
        if let Some(s) = x.as_str() {
            out.push(s.to_string());
        }
    };
    let arr = |x: &Value| x.as_array().cloned().unwrap_or_default();
    match coll {
        Coll::TargetHttpsProxies => {
            push(&v["urlMap"]);
            for c in arr(&v["sslCertificates"]) {
                push(&c);
            }
        }
        Coll::TargetHttpProxies => push(&v["urlMap"]),
        Coll::UrlMaps => {
            push(&v["defaultService"]);
            for pm in arr(&v["pathMatchers"]) {
                push(&pm["defaultService"]);
                for pr in arr(&pm["pathRules"]) {
                    push(&pr["service"]);
                }
                for rr in arr(&pm["routeRules"]) {
                    push(&rr["service"]);
                }
            }
        }
        Coll::BackendServices => {
            for b in arr(&v["backends"]) {
                push(&b["group"]);
            }
        }
        Coll::ForwardingRules => {
            push(&v["target"]);
            push(&v["__address"]);
        }
        Coll::SslCertificates | Coll::Addresses | Coll::NetworkEndpointGroups => {}
    }
    out
}

/// A resource's identity.
#[derive(Clone, Debug, PartialEq)]
struct Res {
    project: String,
    /// `global` or `regions/R`.
    scope: String,
    coll: Coll,
    name: String,
}

impl Res {
    fn key(&self) -> String {
        format!("{}/{}", self.scope, self.coll.path())
    }

    /// `projects/P/global/sslCertificates/N`, as Compute's messages name it.
    fn path(&self) -> String {
        format!(
            "projects/{}/{}/{}/{}",
            self.project,
            self.scope,
            self.coll.path(),
            self.name
        )
    }

    fn link(&self) -> String {
        format!("{LINK_ROOT}{}", self.path())
    }
}

/// `https://www.googleapis.com/compute/v1/projects/P/...` -> `projects/P/...`.
fn path_of(link: &str) -> &str {
    link.strip_prefix(LINK_ROOT).unwrap_or(link)
}

/// What a mutation needs to know about its request.
struct Ctx {
    project: String,
    number: u64,
    now: SystemTime,
    new_id: u64,
    region: Option<String>,
    /// `host[:port]` the request was addressed to: Google accepts references on
    /// its own hosts, and gcloud writes them on the endpoint it was pointed at.
    host: Option<String>,
}

impl Ctx {
    fn scope(&self) -> String {
        match &self.region {
            Some(r) => format!("regions/{r}"),
            None => "global".to_string(),
        }
    }

    fn res(&self, coll: Coll, name: &str) -> Res {
        Res {
            project: self.project.clone(),
            scope: self.scope(),
            coll,
            name: name.to_string(),
        }
    }
}

/// The resource an operation acts on.
struct Target {
    link: String,
    id: u64,
}

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

    fn self_link(&self) -> String {
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
fn operation_error_code(reason: &str) -> String {
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

fn http_phrase(code: u16) -> String {
    axum::http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("ERROR")
        .to_ascii_uppercase()
}

// ---------------------------------------------------------------- helpers

fn invalid_field(field: &str, value: impl std::fmt::Display, why: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value for field '{field}': '{value}'. {why}"
    ))
}

fn required_field(field: &str) -> ApiError {
    ApiError::required(format!("Required field '{field}' not specified"))
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn check_name(obj: &Map<String, Value>) -> ApiResult<String> {
    match obj.get("name") {
        None | Some(Value::Null) => Err(required_field("resource.name")),
        Some(Value::String(n)) if valid_name(n) => Ok(n.clone()),
        Some(v) => Err(invalid_field(
            "resource.name",
            v.as_str().unwrap_or(&v.to_string()),
            &format!("Must be a match of regex '{NAME_REGEX}'"),
        )),
    }
}

fn valid_region(r: &str) -> bool {
    // e.g. us-central1, europe-west4, northamerica-northeast2
    let mut parts = r.split('-');
    let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = b.trim_start_matches(|c: char| c.is_ascii_lowercase());
    !a.is_empty()
        && a.chars().all(|c| c.is_ascii_lowercase())
        && digits.len() < b.len()
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// Google's 404 for a region that does not exist.
fn check_region(project: &str, region: Option<&str>) -> ApiResult<()> {
    match region {
        Some(r) if !valid_region(r) => Err(ApiError::not_found(format!(
            "projects/{project}/regions/{r}"
        ))),
        _ => Ok(()),
    }
}

fn check_request_id(id: &str) -> ApiResult<()> {
    let b = id.as_bytes();
    let shape = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    let zero = b.iter().all(|c| *c == b'0' || *c == b'-');
    if !shape || zero {
        return Err(invalid_field(
            "requestId",
            id,
            "The request id must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).",
        ));
    }
    Ok(())
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64(data: &[u8]) -> String {
    crate::b64::encode(data)
}

/// A fresh fingerprint over the resource's content (8 bytes, base64, as Google's).
fn set_fingerprint(v: &mut Map<String, Value>) {
    v.remove("fingerprint");
    let bytes = serde_json::to_vec(&*v).unwrap_or_default();
    let digest = sha256(&bytes);
    v.insert("fingerprint".into(), json!(base64(&digest[..8])));
}

/// RFC 7396 JSON merge patch: objects merge, `null` deletes, anything else
/// (arrays included) replaces wholesale.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Output-only fields clients may echo back; Compute ignores them on write.
fn strip_outputs(coll: Coll, obj: &mut Map<String, Value>) {
    for k in [
        "kind",
        "id",
        "creationTimestamp",
        "selfLink",
        "selfLinkWithId",
        "region",
        "fingerprint",
        "labelFingerprint",
    ] {
        obj.remove(k);
    }
    obj.retain(|k, _| !k.starts_with("__"));
    match coll {
        Coll::SslCertificates => {
            for k in ["expireTime", "subjectAlternativeNames"] {
                obj.remove(k);
            }
        }
        Coll::BackendServices => {
            obj.remove("usedBy");
            if let Some(Value::Object(iap)) = obj.get_mut("iap") {
                iap.remove("oauth2ClientSecretSha256");
            }
        }
        Coll::Addresses => {
            obj.remove("status");
            obj.remove("users");
        }
        Coll::NetworkEndpointGroups => {
            obj.remove("size");
        }
        _ => {}
    }
}

fn enum_field(
    obj: &mut Map<String, Value>,
    key: &str,
    allowed: &[&str],
    default: Option<&str>,
) -> ApiResult<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            if let Some(d) = default {
                obj.insert(key.into(), json!(d));
            }
            Ok(default.map(str::to_string))
        }
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(v) => Err(invalid_field(
            &format!("resource.{key}"),
            v.as_str().unwrap_or(&v.to_string()),
            &format!("Must be one of [{}].", allowed.join(", ")),
        )),
    }
}

fn default_field(obj: &mut Map<String, Value>, key: &str, v: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), v);
    }
}

/// Parses a reference (full URL, `projects/...` path, `global/...` /
/// `regions/R/...` partial path, or a bare name when `full_only` is false) to one
/// of `expected`, canonicalises it and checks the resource exists.
fn resolve(
    state: &State,
    ctx: &Ctx,
    field: &str,
    value: &Value,
    expected: &[Coll],
    full_only: bool,
) -> ApiResult<Res> {
    let Some(s) = value.as_str() else {
        return Err(invalid_field(field, value, "The URL is malformed."));
    };
    let malformed = || invalid_field(field, s, "The URL is malformed.");
    let full = s
        .strip_prefix(LINK_ROOT)
        .or_else(|| s.strip_prefix("https://compute.googleapis.com/compute/v1/"))
        .or_else(|| own_host_path(s, ctx.host.as_deref()));
    if full_only && full.is_none() {
        return Err(invalid_field(
            field,
            s,
            "The URL must be a fully-qualified resource URL.",
        ));
    }
    let rest = full.unwrap_or(s);
    let (project, rest) = match rest.strip_prefix("projects/") {
        Some(r) => r.split_once('/').ok_or_else(malformed)?,
        None if full.is_some() => return Err(malformed()),
        None => (ctx.project.as_str(), rest),
    };
    let project = if project == ctx.number.to_string() {
        ctx.project.clone()
    } else {
        project.to_string()
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let (scope, coll, name) = match segs.as_slice() {
        ["global", c, n] => ("global".to_string(), *c, *n),
        ["regions", r, c, n] => (format!("regions/{r}"), *c, *n),
        [n] if full.is_none() && !s.starts_with("projects/") && expected.len() == 1 => {
            let c = expected[0];
            let scope = if c.regional() {
                ctx.scope()
            } else {
                "global".into()
            };
            (scope, c.path(), *n)
        }
        _ => return Err(malformed()),
    };
    let Some(coll) = Coll::from_path(coll).filter(|c| expected.contains(c)) else {
        return Err(invalid_field(
            field,
            s,
            &format!(
                "Unexpected resource collection '{coll}', expected {}.",
                expected
                    .iter()
                    .map(|c| c.path())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    };
    if name.is_empty() || coll.regional() != scope.starts_with("regions/") {
        return Err(malformed());
    }
    let res = Res {
        project,
        scope,
        coll,
        name: name.to_string(),
    };
    if res.project != ctx.project || state.get(&res).is_none() {
        return Err(ApiError::not_found(res.path()));
    }
    Ok(res)
}

/// `http(s)://HOST/compute/v1/rest` -> `rest` when HOST is the host the request
/// was addressed to (the emulator standing in for Google's hosts).
fn own_host_path<'a>(s: &'a str, host: Option<&str>) -> Option<&'a str> {
    let host = host?;
    let after = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))?;
    after.strip_prefix(host)?.strip_prefix("/compute/v1/")
}

/// Resolves `obj[key]` in place to its canonical link; `Ok(None)` when absent.
fn resolve_field(
    state: &State,
    ctx: &Ctx,
    obj: &mut Map<String, Value>,
    key: &str,
    field: &str,
    expected: &[Coll],
) -> ApiResult<Option<Res>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let r = resolve(state, ctx, field, v, expected, false)?;
            obj.insert(key.into(), json!(r.link()));
            Ok(Some(r))
        }
    }
}

fn cert_list(
    state: &State,
    ctx: &Ctx,
    value: Option<&Value>,
    field: &str,
) -> ApiResult<Vec<Value>> {
    let list = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => return Err(invalid_field(field, v, "Must be a list.")),
    };
    if list.is_empty() {
        return Err(invalid_field(
            field,
            "",
            "At least one SSL certificate must be specified for a target HTTPS proxy.",
        ));
    }
    if list.len() > MAX_CERTS_PER_PROXY {
        return Err(invalid_field(
            field,
            list.len(),
            &format!(
                "Number of SSL certificates exceeds the limit of {MAX_CERTS_PER_PROXY} per target HTTPS proxy."
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            resolve(
                state,
                ctx,
                &format!("{field}[{i}]"),
                c,
                &[Coll::SslCertificates],
                false,
            )
            .map(|r| json!(r.link()))
        })
        .collect()
}

// ---------------------------------------------------------------- builders

/// Validates a resource body (inputs only) and returns it completed with its
/// defaults and canonical references. `prev` is the stored resource on updates.
fn build(
    state: &State,
    ctx: &Ctx,
    coll: Coll,
    mut obj: Map<String, Value>,
    prev: Option<&Value>,
) -> ApiResult<Map<String, Value>> {
    match coll {
        Coll::SslCertificates => build_cert(obj),
        Coll::TargetHttpsProxies => {
            if resolve_field(
                state,
                ctx,
                &mut obj,
                "urlMap",
                "resource.urlMap",
                &[Coll::UrlMaps],
            )?
            .is_none()
            {
                return Err(required_field("resource.urlMap"));
            }
            let has_map = obj.get("certificateMap").is_some_and(|v| !v.is_null());
            if !has_map || obj.get("sslCertificates").is_some() {
                let certs = cert_list(
                    state,
                    ctx,
                    obj.get("sslCertificates"),
                    "resource.sslCertificates",
                )?;
                obj.insert("sslCertificates".into(), Value::Array(certs));
            }
            enum_field(
                &mut obj,
                "quicOverride",
                &["NONE", "ENABLE", "DISABLE"],
                Some("NONE"),
            )?;
            enum_field(
                &mut obj,
                "tlsEarlyData",
                &["DISABLED", "PERMISSIVE", "STRICT", "UNRESTRICTED"],
                None,
            )?;
            Ok(obj)
        }
        Coll::TargetHttpProxies => {
            if resolve_field(
                state,
                ctx,
                &mut obj,
                "urlMap",
                "resource.urlMap",
                &[Coll::UrlMaps],
            )?
            .is_none()
            {
                return Err(required_field("resource.urlMap"));
            }
            Ok(obj)
        }
        Coll::UrlMaps => build_url_map(state, ctx, obj),
        Coll::BackendServices => build_backend(state, ctx, obj, prev),
        Coll::NetworkEndpointGroups => build_neg(obj),
        Coll::Addresses => build_address(state, obj),
        Coll::ForwardingRules => build_forwarding_rule(state, ctx, obj),
    }
}

fn build_cert(obj: Map<String, Value>) -> ApiResult<Map<String, Value>> {
    match obj.get("type").and_then(Value::as_str) {
        None | Some("SELF_MANAGED") | Some("TYPE_UNSPECIFIED") => {}
        Some("MANAGED") => {
            return Err(invalid_field(
                "resource.type",
                "MANAGED",
                "Google-managed certificates are not supported by the emulator.",
            ));
        }
        Some(other) => {
            return Err(invalid_field(
                "resource.type",
                other,
                "Must be one of [MANAGED, SELF_MANAGED].",
            ));
        }
    }
    let sm = obj.get("selfManaged").filter(|v| v.is_object());
    let (cert_field, key_field) = if sm.is_some() {
        (
            "resource.selfManaged.certificate",
            "resource.selfManaged.privateKey",
        )
    } else {
        ("resource.certificate", "resource.privateKey")
    };
    let pick = |k: &str| {
        sm.and_then(|s| s.get(k))
            .or_else(|| obj.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let cert = pick("certificate").ok_or_else(|| required_field(cert_field))?;
    let key = pick("privateKey").ok_or_else(|| required_field(key_field))?;
    let parsed = certs::validate(&cert, &key)?;
    let mut out = Map::new();
    if let Some(d) = obj.get("description") {
        out.insert("description".into(), d.clone());
    }
    out.insert("type".into(), json!("SELF_MANAGED"));
    out.insert("certificate".into(), json!(cert));
    out.insert("selfManaged".into(), json!({ "certificate": cert }));
    out.insert("expireTime".into(), json!(rfc3339(parsed.not_after)));
    out.insert("subjectAlternativeNames".into(), json!(parsed.sans));
    Ok(out)
}

fn build_url_map(
    state: &State,
    ctx: &Ctx,
    mut obj: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let backend = [Coll::BackendServices];
    resolve_field(
        state,
        ctx,
        &mut obj,
        "defaultService",
        "resource.defaultService",
        &backend,
    )?;
    let present = |o: &Map<String, Value>, k: &str| o.get(k).is_some_and(|v| !v.is_null());
    let defaults = ["defaultService", "defaultUrlRedirect", "defaultRouteAction"]
        .into_iter()
        .filter(|k| present(&obj, k))
        .count();
    if defaults > 1 {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': only one of defaultService, defaultUrlRedirect or defaultRouteAction may be set.",
        ));
    }
    if defaults == 0 {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': one of defaultService, defaultUrlRedirect or defaultRouteAction must be set.",
        ));
    }
    if let Some(redirect) = obj.get("defaultUrlRedirect") {
        check_redirect(redirect, "resource.defaultUrlRedirect")?;
    }

    let mut matcher_names = Vec::new();
    if let Some(Value::Array(pms)) = obj.get("pathMatchers").cloned() {
        let mut new_pms = Vec::new();
        for (i, pm) in pms.into_iter().enumerate() {
            let Value::Object(mut pm) = pm else {
                return Err(invalid_field(
                    &format!("resource.pathMatchers[{i}]"),
                    pm,
                    "Must be an object.",
                ));
            };
            let field = format!("resource.pathMatchers[{i}]");
            let name = match pm.get("name").and_then(Value::as_str) {
                Some(n) if valid_name(n) => n.to_string(),
                Some(n) => {
                    return Err(invalid_field(
                        &format!("{field}.name"),
                        n,
                        &format!("Must be a match of regex '{NAME_REGEX}'"),
                    ));
                }
                None => return Err(required_field(&format!("{field}.name"))),
            };
            if matcher_names.contains(&name) {
                return Err(invalid_field(
                    &format!("{field}.name"),
                    &name,
                    "Duplicate path matcher name.",
                ));
            }
            matcher_names.push(name);
            resolve_field(
                state,
                ctx,
                &mut pm,
                "defaultService",
                &format!("{field}.defaultService"),
                &backend,
            )?;
            if let Some(r) = pm.get("defaultUrlRedirect") {
                check_redirect(r, &format!("{field}.defaultUrlRedirect"))?;
            }
            for (rk, sk) in [("pathRules", "service"), ("routeRules", "service")] {
                if let Some(Value::Array(rules)) = pm.get(rk).cloned() {
                    let mut out_rules = Vec::new();
                    for (j, rule) in rules.into_iter().enumerate() {
                        let Value::Object(mut rule) = rule else {
                            return Err(invalid_field(
                                &format!("{field}.{rk}[{j}]"),
                                rule,
                                "Must be an object.",
                            ));
                        };
                        if rk == "pathRules"
                            && rule
                                .get("paths")
                                .and_then(Value::as_array)
                                .is_none_or(Vec::is_empty)
                        {
                            return Err(required_field(&format!("{field}.{rk}[{j}].paths")));
                        }
                        resolve_field(
                            state,
                            ctx,
                            &mut rule,
                            sk,
                            &format!("{field}.{rk}[{j}].{sk}"),
                            &backend,
                        )?;
                        out_rules.push(Value::Object(rule));
                    }
                    pm.insert(rk.into(), Value::Array(out_rules));
                }
            }
            new_pms.push(Value::Object(pm));
        }
        obj.insert("pathMatchers".into(), Value::Array(new_pms));
    }
    if let Some(Value::Array(hrs)) = obj.get("hostRules") {
        for (i, hr) in hrs.iter().enumerate() {
            let field = format!("resource.hostRules[{i}]");
            if hr["hosts"].as_array().is_none_or(Vec::is_empty) {
                return Err(required_field(&format!("{field}.hosts")));
            }
            match hr["pathMatcher"].as_str() {
                None => return Err(required_field(&format!("{field}.pathMatcher"))),
                Some(m) if !matcher_names.iter().any(|n| n == m) => {
                    return Err(invalid_field(
                        &format!("{field}.pathMatcher"),
                        m,
                        "The path matcher does not exist in this URL map.",
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(obj)
}

fn check_redirect(r: &Value, field: &str) -> ApiResult<()> {
    let Some(o) = r.as_object() else {
        return Err(invalid_field(field, r, "Must be an object."));
    };
    let does_something = o.get("httpsRedirect").and_then(Value::as_bool) == Some(true)
        || ["hostRedirect", "pathRedirect", "prefixRedirect"]
            .iter()
            .any(|k| {
                o.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            });
    if !does_something {
        return Err(invalid_field(
            field,
            r,
            "At least one of httpsRedirect, hostRedirect, pathRedirect or prefixRedirect must be set.",
        ));
    }
    if let Some(code) = o.get("redirectResponseCode") {
        let ok = [
            "FOUND",
            "MOVED_PERMANENTLY_DEFAULT",
            "PERMANENT_REDIRECT",
            "SEE_OTHER",
            "TEMPORARY_REDIRECT",
        ];
        if !code.as_str().is_some_and(|c| ok.contains(&c)) {
            return Err(invalid_field(
                &format!("{field}.redirectResponseCode"),
                code,
                &format!("Must be one of [{}].", ok.join(", ")),
            ));
        }
    }
    Ok(())
}

const SCHEMES: [&str; 6] = [
    "EXTERNAL",
    "EXTERNAL_MANAGED",
    "EXTERNAL_PASSTHROUGH",
    "INTERNAL",
    "INTERNAL_MANAGED",
    "INTERNAL_SELF_MANAGED",
];

fn build_backend(
    state: &State,
    ctx: &Ctx,
    mut obj: Map<String, Value>,
    prev: Option<&Value>,
) -> ApiResult<Map<String, Value>> {
    enum_field(&mut obj, "loadBalancingScheme", &SCHEMES, Some("EXTERNAL"))?;
    enum_field(
        &mut obj,
        "protocol",
        &[
            "GRPC",
            "H2C",
            "HTTP",
            "HTTP2",
            "HTTPS",
            "SSL",
            "TCP",
            "UDP",
            "UNSPECIFIED",
        ],
        Some("HTTP"),
    )?;
    let mut serverless = false;
    if let Some(backends) = obj.get("backends").cloned() {
        let Value::Array(list) = backends else {
            return Err(invalid_field(
                "resource.backends",
                backends,
                "Must be a list.",
            ));
        };
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (i, b) in list.into_iter().enumerate() {
            let field = format!("resource.backends[{i}]");
            let Value::Object(mut b) = b else {
                return Err(invalid_field(&field, b, "Must be an object."));
            };
            let Some(group) = b.get("group").filter(|g| !g.is_null()) else {
                return Err(required_field(&format!("{field}.group")));
            };
            let r = resolve(
                state,
                ctx,
                &format!("{field}.group"),
                group,
                &[Coll::NetworkEndpointGroups],
                true,
            )?;
            if seen.contains(&r.link()) {
                return Err(invalid_field(
                    &format!("{field}.group"),
                    r.link(),
                    "Duplicate backend group.",
                ));
            }
            seen.push(r.link());
            if state
                .get(&r)
                .and_then(|n| n["networkEndpointType"].as_str())
                == Some("SERVERLESS")
            {
                serverless = true;
            }
            b.insert("group".into(), json!(r.link()));
            enum_field(
                &mut b,
                "balancingMode",
                &[
                    "CONNECTION",
                    "CUSTOM_METRICS",
                    "IN_FLIGHT",
                    "RATE",
                    "UTILIZATION",
                ],
                Some("UTILIZATION"),
            )
            .map_err(|e| {
                ApiError::invalid(
                    e.message
                        .replace("resource.balancingMode", &format!("{field}.balancingMode")),
                )
            })?;
            default_field(&mut b, "capacityScaler", json!(1));
            out.push(Value::Object(b));
        }
        obj.insert("backends".into(), Value::Array(out));
    }
    if serverless
        && obj
            .get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|h| !h.is_empty())
    {
        return Err(invalid_field(
            "resource.healthChecks",
            obj["healthChecks"].clone(),
            "A backend service with serverless network endpoint group backends cannot have a health check.",
        ));
    }
    if let Some(Value::Object(iap)) = obj.get_mut("iap") {
        // The secret is write-only: keep only its SHA-256, as Compute does.
        match iap.remove("oauth2ClientSecret") {
            Some(Value::String(secret)) => {
                iap.insert(
                    "oauth2ClientSecretSha256".into(),
                    json!(hex(&sha256(secret.as_bytes()))),
                );
            }
            _ => {
                if !iap.contains_key("oauth2ClientSecretSha256")
                    && let Some(old) =
                        prev.and_then(|p| p["iap"]["oauth2ClientSecretSha256"].as_str())
                {
                    iap.insert("oauth2ClientSecretSha256".into(), json!(old));
                }
            }
        }
        default_field(iap, "enabled", json!(false));
    }
    default_field(&mut obj, "timeoutSec", json!(30));
    default_field(&mut obj, "port", json!(80));
    default_field(&mut obj, "portName", json!("http"));
    default_field(&mut obj, "sessionAffinity", json!("NONE"));
    default_field(&mut obj, "affinityCookieTtlSec", json!(0));
    default_field(
        &mut obj,
        "connectionDraining",
        json!({"drainingTimeoutSec": 0}),
    );
    Ok(obj)
}

fn build_neg(mut obj: Map<String, Value>) -> ApiResult<Map<String, Value>> {
    let ty = enum_field(
        &mut obj,
        "networkEndpointType",
        &[
            "GCE_VM_IP",
            "GCE_VM_IP_DEDICATED_BACKEND",
            "GCE_VM_IP_PORT",
            "GCE_VM_IP_PORTMAP",
            "INTERNET_FQDN_PORT",
            "INTERNET_IP_PORT",
            "NON_GCP_PRIVATE_IP_PORT",
            "PRIVATE_SERVICE_CONNECT",
            "SERVERLESS",
        ],
        Some("GCE_VM_IP_PORT"),
    )?;
    let platforms: Vec<&str> = ["cloudRun", "appEngine", "cloudFunction"]
        .into_iter()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if ty.as_deref() == Some("SERVERLESS") {
        match platforms.as_slice() {
            [] => {
                return Err(invalid_field(
                    "resource.networkEndpointType",
                    "SERVERLESS",
                    "A serverless network endpoint group must set exactly one of cloudRun, appEngine or cloudFunction.",
                ));
            }
            [_] => {}
            _ => {
                return Err(invalid_field(
                    "resource",
                    platforms.join(", "),
                    "Only one of cloudRun, appEngine or cloudFunction may be set.",
                ));
            }
        }
        if let Some(cr) = obj.get("cloudRun") {
            let has = |k: &str| cr[k].as_str().is_some_and(|s| !s.is_empty());
            if !has("service") && !has("urlMask") {
                return Err(required_field("resource.cloudRun.service"));
            }
            if let Some(s) = cr["service"].as_str()
                && !valid_name(s)
            {
                return Err(invalid_field(
                    "resource.cloudRun.service",
                    s,
                    &format!("Must be a match of regex '{NAME_REGEX}'"),
                ));
            }
        }
    } else if let Some(p) = platforms.first() {
        return Err(invalid_field(
            &format!("resource.{p}"),
            obj[*p].clone(),
            "Only valid when networkEndpointType is SERVERLESS.",
        ));
    }
    obj.insert("size".into(), json!(0));
    Ok(obj)
}

/// Global load-balancing resources are always on the PREMIUM tier.
fn premium_tier(obj: &mut Map<String, Value>, what: &str) -> ApiResult<()> {
    let tier = enum_field(
        obj,
        "networkTier",
        &[
            "FIXED_STANDARD",
            "PREMIUM",
            "STANDARD",
            "STANDARD_OVERRIDES_FIXED_STANDARD",
        ],
        Some("PREMIUM"),
    )?;
    if tier.as_deref() != Some("PREMIUM") {
        return Err(invalid_field(
            "resource.networkTier",
            tier.unwrap_or_default(),
            &format!("Global {what} must use the PREMIUM network tier."),
        ));
    }
    Ok(())
}

/// A free IP from the documentation ranges (RFC 5737 / RFC 3849) the emulator
/// hands out.
fn allocate_ip(state: &State, v6: bool) -> ApiResult<String> {
    let taken: Vec<String> = state
        .all()
        .filter_map(|(c, v)| match c {
            Coll::Addresses => v["address"].as_str().map(str::to_string),
            Coll::ForwardingRules => v["IPAddress"].as_str().map(str::to_string),
            _ => None,
        })
        .collect();
    // Loopback addresses, not documentation ranges: a client that connects to an
    // allocated address (a post-swap TLS check) must never send traffic off the
    // machine the tests run on.
    let candidates: Box<dyn Iterator<Item = String>> = if v6 {
        Box::new((1..=0xffffu32).map(|n| format!("::ffff:127.1.{}.{}", n / 256, n % 256)))
    } else {
        Box::new(
            (1..=254)
                .map(|n| format!("127.0.113.{n}"))
                .chain((1..=254).map(|n| format!("127.0.114.{n}"))),
        )
    };
    candidates
        .into_iter()
        .find(|ip| !taken.contains(ip))
        .ok_or_else(|| {
            ApiError::new(
                403,
                "quotaExceeded",
                "The emulator's address range is exhausted.",
            )
        })
}

fn build_address(state: &State, mut obj: Map<String, Value>) -> ApiResult<Map<String, Value>> {
    enum_field(
        &mut obj,
        "addressType",
        &["EXTERNAL", "INTERNAL"],
        Some("EXTERNAL"),
    )?;
    let version = enum_field(
        &mut obj,
        "ipVersion",
        &["IPV4", "IPV6", "UNSPECIFIED_VERSION"],
        Some("IPV4"),
    )?;
    let v6 = version.as_deref() == Some("IPV6");
    premium_tier(&mut obj, "addresses")?;
    let ip = match obj.get("address").and_then(Value::as_str) {
        Some(a) => {
            let parsed: IpAddr = a
                .parse()
                .map_err(|_| invalid_field("resource.address", a, "Invalid IP address."))?;
            if parsed.is_ipv6() != v6 {
                return Err(invalid_field(
                    "resource.address",
                    a,
                    "The IP address does not match the requested IP version.",
                ));
            }
            let reserved = state
                .all()
                .any(|(c, v)| c == Coll::Addresses && v["address"].as_str() == Some(a));
            if reserved {
                return Err(invalid_field(
                    "resource.address",
                    a,
                    "The specified IP address is already reserved.",
                ));
            }
            a.to_string()
        }
        None => allocate_ip(state, v6)?,
    };
    obj.insert("address".into(), json!(ip));
    if v6 {
        default_field(&mut obj, "prefixLength", json!(64));
    }
    obj.insert("status".into(), json!("RESERVED"));
    obj.insert("labelFingerprint".into(), json!(EMPTY_LABEL_FINGERPRINT));
    Ok(obj)
}

fn build_forwarding_rule(
    state: &State,
    ctx: &Ctx,
    mut obj: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let scheme = enum_field(&mut obj, "loadBalancingScheme", &SCHEMES, Some("EXTERNAL"))?
        .unwrap_or_default();
    if !matches!(
        scheme.as_str(),
        "EXTERNAL" | "EXTERNAL_MANAGED" | "INTERNAL_SELF_MANAGED"
    ) {
        return Err(invalid_field(
            "resource.loadBalancingScheme",
            &scheme,
            "Global forwarding rules support EXTERNAL, EXTERNAL_MANAGED and INTERNAL_SELF_MANAGED.",
        ));
    }
    let Some(target) = resolve_field(
        state,
        ctx,
        &mut obj,
        "target",
        "resource.target",
        &[Coll::TargetHttpsProxies, Coll::TargetHttpProxies],
    )?
    else {
        return Err(required_field("resource.target"));
    };
    // The backend services behind the proxy's URL map must use the same scheme.
    if let Some(map_link) = state.get(&target).and_then(|p| p["urlMap"].as_str())
        && let Some(map) = state
            .all()
            .find(|(c, v)| *c == Coll::UrlMaps && v["selfLink"].as_str() == Some(map_link))
            .map(|(_, v)| v)
    {
        for bs_link in refs_of(Coll::UrlMaps, map) {
            let bs_scheme = state
                .all()
                .find(|(c, v)| {
                    *c == Coll::BackendServices && v["selfLink"].as_str() == Some(&bs_link)
                })
                .and_then(|(_, v)| v["loadBalancingScheme"].as_str());
            if let Some(s) = bs_scheme
                && s != scheme
            {
                return Err(invalid_field(
                    "resource.loadBalancingScheme",
                    &scheme,
                    &format!(
                        "The load balancing scheme must match that of the backend service '{}' ({s}).",
                        path_of(&bs_link)
                    ),
                ));
            }
        }
    }
    let proto = enum_field(
        &mut obj,
        "IPProtocol",
        &["AH", "ESP", "ICMP", "L3_DEFAULT", "SCTP", "TCP", "UDP"],
        Some("TCP"),
    )?;
    if proto.as_deref() != Some("TCP") {
        return Err(invalid_field(
            "resource.IPProtocol",
            proto.unwrap_or_default(),
            "Forwarding rules to target proxies must use TCP.",
        ));
    }
    premium_tier(&mut obj, "forwarding rules")?;
    enum_field(
        &mut obj,
        "ipVersion",
        &["IPV4", "IPV6", "UNSPECIFIED_VERSION"],
        None,
    )?;

    let default_port = if target.coll == Coll::TargetHttpsProxies {
        443
    } else {
        80
    };
    let port_range = match obj.get("portRange").and_then(Value::as_str) {
        None => format!("{default_port}-{default_port}"),
        Some(p) => {
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) else {
                return Err(invalid_field(
                    "resource.portRange",
                    p,
                    "Invalid port range.",
                ));
            };
            if a == 0 || a != b {
                return Err(invalid_field(
                    "resource.portRange",
                    p,
                    "Forwarding rules to target proxies must use a single port.",
                ));
            }
            format!("{a}-{b}")
        }
    };
    obj.insert("portRange".into(), json!(port_range));

    let (ip, address_link) = match obj.get("IPAddress").filter(|v| !v.is_null()).cloned() {
        None => (allocate_ip(state, false)?, None),
        Some(Value::String(s)) if s.parse::<IpAddr>().is_ok() => {
            let owner = state
                .all()
                .find(|(c, v)| *c == Coll::Addresses && v["address"].as_str() == Some(&s))
                .and_then(|(_, v)| v["selfLink"].as_str().map(str::to_string));
            let Some(owner) = owner else {
                return Err(invalid_field(
                    "resource.IPAddress",
                    &s,
                    "The specified IP address is not reserved in this project.",
                ));
            };
            (s, Some(owner))
        }
        Some(v) => {
            let r = resolve(
                state,
                ctx,
                "resource.IPAddress",
                &v,
                &[Coll::Addresses],
                false,
            )?;
            let ip = state
                .get(&r)
                .and_then(|a| a["address"].as_str())
                .unwrap_or_default()
                .to_string();
            (ip, Some(r.link()))
        }
    };
    let clash = state.all().any(|(c, v)| {
        c == Coll::ForwardingRules
            && v["IPAddress"].as_str() == Some(&ip)
            && v["portRange"].as_str() == Some(&port_range)
    });
    if clash {
        return Err(invalid_field(
            "resource.IPAddress",
            &ip,
            "Specified IP address is in-use and would result in a conflict.",
        ));
    }
    obj.insert("IPAddress".into(), json!(ip));
    if let Some(a) = address_link {
        obj.insert("__address".into(), json!(a));
    }
    obj.insert("labelFingerprint".into(), json!(EMPTY_LABEL_FINGERPRINT));
    Ok(obj)
}

// ---------------------------------------------------------------- operations on resources

fn insert(
    state: &mut State,
    ctx: &Ctx,
    coll: Coll,
    mut body: Map<String, Value>,
) -> ApiResult<Target> {
    strip_outputs(coll, &mut body);
    let name = check_name(&body)?;
    let res = ctx.res(coll, &name);
    if state.get(&res).is_some() {
        return Err(ApiError::already_exists(res.path()));
    }
    if let Some(metric) = coll.quota() {
        let limit = state.quota_limit(metric);
        if state.quota_usage(metric) as f64 >= limit {
            return Err(ApiError::new(
                403,
                "quotaExceeded",
                format!("Quota '{metric}' exceeded.  Limit: {limit:.1} globally."),
            ));
        }
    }
    let mut v = build(state, ctx, coll, body, None)?;
    v.insert("kind".into(), json!(coll.kind()));
    v.insert("id".into(), json!(ctx.new_id.to_string()));
    v.insert("creationTimestamp".into(), json!(rfc3339(ctx.now)));
    v.insert("name".into(), json!(name));
    v.insert("selfLink".into(), json!(res.link()));
    if let Some(r) = &ctx.region {
        v.insert(
            "region".into(),
            json!(format!("{LINK_ROOT}projects/{}/regions/{r}", ctx.project)),
        );
    }
    if coll.has_fingerprint() {
        set_fingerprint(&mut v);
    }
    state.put(&res, Value::Object(v));
    Ok(Target {
        link: res.link(),
        id: ctx.new_id,
    })
}

fn target_of(v: &Value, res: &Res) -> Target {
    Target {
        link: res.link(),
        id: v["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
    }
}

/// Finds a resource by name or numeric id.
fn find(state: &State, ctx: &Ctx, coll: Coll, key: &str) -> ApiResult<(Res, Value)> {
    let res = ctx.res(coll, key);
    if let Some(v) = state.get(&res) {
        return Ok((res, v.clone()));
    }
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        let hit = state
            .resources
            .get(&res.key())
            .and_then(|m| m.iter().find(|(_, v)| v["id"].as_str() == Some(key)));
        if let Some((name, v)) = hit {
            return Ok((ctx.res(coll, name), v.clone()));
        }
    }
    Err(ApiError::not_found(res.path()))
}

fn delete(state: &mut State, ctx: &Ctx, coll: Coll, key: &str) -> ApiResult<Target> {
    let (res, v) = find(state, ctx, coll, key)?;
    if let Some(user) = state.users_of(&res.link()).first() {
        return Err(ApiError::in_use(coll.noun(), &res.path(), path_of(user)));
    }
    state.remove(&res);
    Ok(target_of(&v, &res))
}

/// PATCH (merge) or PUT (replace) with fingerprint.
fn modify(
    state: &mut State,
    ctx: &Ctx,
    coll: Coll,
    key: &str,
    mut body: Map<String, Value>,
    merge: bool,
) -> ApiResult<Target> {
    let (res, prev) = find(state, ctx, coll, key)?;
    match body.get("fingerprint").and_then(Value::as_str) {
        None => return Err(required_field("resource.fingerprint")),
        // A bytes field: gcloud echoes it URL-safe encoded.
        Some(f) if !crate::b64::same_bytes(f, prev["fingerprint"].as_str().unwrap_or("")) => {
            return Err(ApiError::condition_not_met("Invalid fingerprint."));
        }
        Some(_) => {}
    }
    if let Some(n) = body.get("name").and_then(Value::as_str)
        && n != res.name
    {
        return Err(invalid_field(
            "resource.name",
            n,
            "The name of a resource cannot be changed.",
        ));
    }
    strip_outputs(coll, &mut body);
    let mut base = prev.clone();
    if let Value::Object(m) = &mut base {
        strip_outputs(coll, m);
    }
    let next = if merge {
        merge_patch(&mut base, &Value::Object(body));
        base
    } else {
        Value::Object(body)
    };
    let Value::Object(mut next) = next else {
        return Err(ApiError::invalid("Invalid value for field 'resource'."));
    };
    next.insert("name".into(), json!(res.name));
    let mut v = build(state, ctx, coll, next, Some(&prev))?;
    for k in ["kind", "id", "creationTimestamp", "selfLink", "region"] {
        if let Some(x) = prev.get(k) {
            v.insert(k.into(), x.clone());
        }
    }
    set_fingerprint(&mut v);
    state.put(&res, Value::Object(v));
    Ok(target_of(&prev, &res))
}

fn set_on_proxy(
    state: &mut State,
    ctx: &Ctx,
    coll: Coll,
    key: &str,
    verb: &str,
    body: &Map<String, Value>,
) -> ApiResult<Target> {
    let (res, prev) = find(state, ctx, coll, key)?;
    let mut v = prev.as_object().cloned().unwrap_or_default();
    match verb {
        "setSslCertificates" if coll == Coll::TargetHttpsProxies => {
            let certs = cert_list(state, ctx, body.get("sslCertificates"), "sslCertificates")?;
            v.insert("sslCertificates".into(), Value::Array(certs));
        }
        "setUrlMap" => {
            let Some(m) = body.get("urlMap").filter(|m| !m.is_null()) else {
                return Err(required_field("urlMap"));
            };
            let r = resolve(state, ctx, "urlMap", m, &[Coll::UrlMaps], false)?;
            v.insert("urlMap".into(), json!(r.link()));
        }
        _ => return Err(unknown_method(verb)),
    }
    set_fingerprint(&mut v);
    state.put(&res, Value::Object(v));
    Ok(target_of(&prev, &res))
}

/// The resource as the API returns it: private keys dropped, computed fields filled.
fn render(state: &State, coll: Coll, v: &Value) -> Value {
    let mut out = v.clone();
    if let Value::Object(m) = &mut out {
        m.retain(|k, _| !k.starts_with("__"));
        let link = m
            .get("selfLink")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match coll {
            Coll::Addresses => {
                let users = state.users_of(&link);
                m.insert(
                    "status".into(),
                    json!(if users.is_empty() {
                        "RESERVED"
                    } else {
                        "IN_USE"
                    }),
                );
                if users.is_empty() {
                    m.remove("users");
                } else {
                    m.insert("users".into(), json!(users));
                }
            }
            Coll::BackendServices => {
                let users: Vec<Value> = state
                    .users_of(&link)
                    .into_iter()
                    .map(|u| json!({ "reference": u }))
                    .collect();
                if users.is_empty() {
                    m.remove("usedBy");
                } else {
                    m.insert("usedBy".into(), Value::Array(users));
                }
            }
            _ => {}
        }
    }
    out
}

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
    };
    f(&p.compute, &ctx)
}

/// A list response: filter, order, page.
fn list_response(
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

fn list_resources(
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
fn aggregated_kind(coll: Coll) -> &'static str {
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
fn aggregated_list(
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
fn aggregate(
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

/// `globalOperations.aggregatedList` (`gcloud compute operations list`): global
/// and regional operations, grouped by scope.
fn aggregated_ops(shared: &Shared, project: &str, q: &Params) -> ApiResult<Json<Value>> {
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

/// `projects/{project}/aggregated/{coll}`.
async fn aggregated(
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

fn get_resource(
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

fn find_op(st: &State, ctx: &Ctx, name: &str) -> ApiResult<Operation> {
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

async fn wait_op(
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

fn list_ops(
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

fn delete_op(
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

/// `.../global/operations/{op}/wait`.
async fn global_verb(
    AxState(shared): AxState<Shared>,
    Path((project, coll, name, verb)): Path<(String, String, String, String)>,
    method: Method,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    if coll == "operations" && verb == "wait" && method == Method::POST {
        return wait_op(&shared, &project, None, &name).await;
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
