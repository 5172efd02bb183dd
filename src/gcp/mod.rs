//! Hand-written, typed REST calls to the Google APIs we use, one file per API with
//! its wire types beside it. This file holds the client they share: credentials,
//! the retry policy, request accounting and error decoding.

pub mod certificatemanager;
pub mod compute;
pub mod dns;
pub(crate) mod error;
pub mod iap;
pub mod operation;
pub mod resourcemanager;
pub mod resourcemanager_iam;
pub mod run;
pub mod serviceusage;
pub mod stack_resources;
pub mod storage;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Digest;

pub use error::{ApiError, GcpError};

use crate::config::{Endpoints, GcpConfig};

/// OAuth scope covering every API we call.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Which API a request goes to (endpoint and metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    Compute,
    Dns,
    Iap,
    Run,
    ServiceUsage,
    ResourceManager,
    Storage,
    CertificateManager,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Compute => "compute",
            Api::Dns => "dns",
            Api::Iap => "iap",
            Api::Run => "run",
            Api::ServiceUsage => "serviceusage",
            Api::ResourceManager => "resourcemanager",
            Api::Storage => "storage",
            Api::CertificateManager => "certificatemanager",
        }
    }
}

/// Where access tokens come from.
#[derive(Clone)]
pub enum Auth {
    /// Application Default Credentials (google-cloud-auth: service-account keys,
    /// gcloud user credentials, workload identity federation, impersonation, the
    /// metadata server honouring `GCE_METADATA_HOST`).
    Adc(google_cloud_auth::credentials::AccessTokenCredentials),
    /// A fixed token (tests).
    Static(String),
    /// No `Authorization` header (an emulator that does not check).
    None,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.write_str(match self {
            Auth::Adc(_) => "Auth::Adc",
            Auth::Static(_) => "Auth::Static([censored])",
            Auth::None => "Auth::None",
        })
    }
}

impl Auth {
    /// Builds the ADC chain. Fails only on a malformed credentials file; a missing
    /// metadata server shows up on the first request.
    pub fn adc() -> Result<Auth, GcpError> {
        google_cloud_auth::credentials::Builder::default()
            .with_scopes([SCOPE])
            .build_access_token_credentials()
            .map(Auth::Adc)
            .map_err(|e| GcpError::Credentials(e.to_string()))
    }

    async fn header(&self) -> Result<Option<String>, GcpError> {
        match self {
            Auth::Adc(c) => c
                .access_token()
                .await
                .map(|t| Some(format!("Bearer {}", t.token)))
                .map_err(|e| GcpError::Credentials(e.to_string())),
            Auth::Static(t) => Ok(Some(format!("Bearer {t}"))),
            Auth::None => Ok(None),
        }
    }
}

/// How transient failures are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Compute's rate quotas refill on the minute, so the ladder reaches a minute.
        RetryPolicy {
            max_attempts: 8,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Short delays, for tests against the emulator.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
        }
    }

    /// Delay before attempt `n` (1-based retries): full jitter on a capped doubling.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .initial_delay
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max_delay);
        let ms = exp.as_millis().max(1) as u64;
        Duration::from_millis(ms / 2 + rand::rng().random_range(0..=ms / 2))
    }
}

/// `(api, operation, HTTP code or 0 for transport errors) -> (count, total time)`.
pub type StatsMap = BTreeMap<(Api, &'static str, u16), (u64, Duration)>;

/// Request counts and durations, for metrics and the benchmarks' API economy.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsMap>,
}

impl Stats {
    fn record(&self, api: Api, op: &'static str, code: u16, took: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry((api, op, code)).or_default();
        e.0 += 1;
        e.1 += took;
    }

    /// Every counter.
    pub fn snapshot(&self) -> StatsMap {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests whose operation name satisfies `f`.
    pub fn count(&self, f: impl Fn(Api, &str) -> bool) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((api, op, _), _)| f(*api, op))
            .map(|(_, (n, _))| n)
            .sum()
    }
}

/// How long an idle connection to a Google API stays pooled. A renewal's calls
/// are seconds apart (operation waits), so its connection is reused; a daemon
/// at rest between passes holds none after this.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections kept per host. Against Google (HTTP/2) every call to a host
/// shares one connection, so one is what there is to keep; over HTTP/1 (an
/// emulator, a local proxy) a pass at concurrency 16 left 16 idle connections,
/// 0.58 MB of the daemon's idle memory (docs/footprint.md), where one warm
/// connection per host is enough for a daemon at rest.
pub const POOL_MAX_IDLE_PER_HOST: usize = 1;

/// The shared client.
#[derive(Clone, Debug)]
pub struct Gcp {
    http: reqwest::Client,
    auth: Auth,
    /// The project every call is made in.
    pub project: String,
    endpoints: Endpoints,
    pub retry: RetryPolicy,
    pub stats: Arc<Stats>,
}

/// Options of one request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub api: Api,
    /// Short operation name for metrics and logs, e.g. `sslCertificates.insert`.
    pub op: &'static str,
    /// Whether the request may be repeated after a transient failure. Compute
    /// mutations carry a `requestId` and are; Cloud DNS changes are repeated too,
    /// because their callers re-read and reconcile on 409/412.
    pub retry: bool,
    pub timeout: Duration,
}

impl Call {
    pub(crate) fn new(api: Api, op: &'static str) -> Call {
        Call {
            api,
            op,
            retry: true,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A request body and its content type: JSON for most calls, the object's own
/// bytes for a Cloud Storage media upload.
#[derive(Clone, Debug)]
pub(crate) struct Payload {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Payload {
    fn json<B: Serialize + ?Sized>(body: &B) -> Result<Payload, serde_json::Error> {
        Ok(Payload {
            content_type: "application/json".into(),
            bytes: serde_json::to_vec(body)?,
        })
    }
}

/// A 2xx answer: its headers (Cloud Storage puts an object's generation there)
/// and body.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Gcp {
    /// A client with explicit credentials and project.
    pub fn new(endpoints: Endpoints, project: String, auth: Auth) -> Result<Gcp, GcpError> {
        let cannot = |e: String| GcpError::Transport {
            method: String::new(),
            url: String::new(),
            message: format!("cannot build the HTTP client: {e}"),
            maybe_sent: false,
        };
        let tls = crate::trust::client_config(&[]).map_err(|e| cannot(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("gclb-acme/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build()
            .map_err(|e| cannot(e.to_string()))?;
        Ok(Gcp {
            http,
            auth,
            project,
            endpoints,
            retry: RetryPolicy::default(),
            stats: Arc::new(Stats::default()),
        })
    }

    /// A client from the configuration and Application Default Credentials; the
    /// project comes from `gcp.project`, `GOOGLE_CLOUD_PROJECT`, the credentials
    /// file, or the metadata server, in that order.
    pub async fn from_config(cfg: &GcpConfig) -> Result<Gcp, GcpError> {
        let auth = Auth::adc()?;
        let project = match &cfg.project {
            Some(p) => p.clone(),
            None => discover_project().await?,
        };
        Gcp::new(cfg.endpoints.clone(), project, auth)
    }

    /// The base URL of an API, with a trailing slash.
    pub fn base(&self, api: Api) -> &str {
        let e = &self.endpoints;
        match api {
            Api::Compute => &e.compute,
            Api::Dns => &e.dns,
            Api::Iap => &e.iap,
            Api::Run => &e.run,
            Api::ServiceUsage => &e.serviceusage,
            Api::ResourceManager => &e.resourcemanager,
            Api::Storage => &e.storage,
            Api::CertificateManager => &e.certificatemanager,
        }
    }

    /// `base + path` (path without a leading slash).
    pub fn url(&self, api: Api, path: &str) -> String {
        format!("{}{}", self.base(api), path.trim_start_matches('/'))
    }

    /// Sends a request with retries and decodes the JSON answer.
    pub(crate) async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        call: Call,
        method: Method,
        url: &str,
        body: Option<&B>,
    ) -> Result<T, GcpError> {
        let body = match body {
            Some(b) => Some(Payload::json(b).map_err(|e| GcpError::Decode {
                method: method.to_string(),
                url: url.to_string(),
                status: 0,
                message: format!("cannot encode the request: {e}"),
            })?),
            None => None,
        };
        self.call_payload(call, method, url, body.as_ref()).await
    }

    /// Sends a request with a prepared body (JSON, or the bytes of a Cloud
    /// Storage media upload) and decodes the JSON answer.
    pub(crate) async fn call_payload<T: DeserializeOwned>(
        &self,
        call: Call,
        method: Method,
        url: &str,
        body: Option<&Payload>,
    ) -> Result<T, GcpError> {
        self.call_with(call, method.clone(), url, body, |reply| {
            let bytes = &reply.bytes[..];
            let bytes = if bytes.is_empty() { &b"{}"[..] } else { bytes };
            serde_json::from_slice(bytes).map_err(|e| {
                // A truncated or garbled 2xx body is a transport accident: retry it
                // like one (every retried call is idempotent: request ids, reads).
                // An answer of the wrong shape would come back the same: do not.
                let transient = matches!(
                    e.classify(),
                    serde_json::error::Category::Eof | serde_json::error::Category::Syntax
                );
                let err = GcpError::Decode {
                    method: method.to_string(),
                    url: url.to_string(),
                    status: 200,
                    message: format!(
                        "{} at line {} column {}",
                        classify_json(&e),
                        e.line(),
                        e.column()
                    ),
                };
                Box::new((err, transient))
            })
        })
        .await
    }

    /// Sends a request with any body and returns the raw 2xx answer, under the
    /// same retry loop as [`Gcp::call`] (Cloud Storage media up- and downloads).
    pub(crate) async fn call_raw(
        &self,
        call: Call,
        method: Method,
        url: &str,
        body: Option<&Payload>,
    ) -> Result<Reply, GcpError> {
        self.call_with(call, method, url, body, |reply| Ok(reply.clone()))
            .await
    }

    /// The one retry loop of a call: transient HTTP errors, transport errors and
    /// (through `accept`) garbled 2xx bodies all count against the same
    /// `max_attempts`, so a call never nests one ladder inside another. The first
    /// failure is a WARN at once (an operator tailing the journal sees an outage
    /// start), each further retry an INFO, and the end a summary: success after
    /// N attempts, or giving up.
    async fn call_with<T>(
        &self,
        call: Call,
        method: Method,
        url: &str,
        body: Option<&Payload>,
        // The error, and whether it is a transient accident worth a retry.
        accept: impl Fn(&Reply) -> Result<T, Box<(GcpError, bool)>>,
    ) -> Result<T, GcpError> {
        let first = Instant::now();
        let max = self.retry.max_attempts.max(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self.once(call, &method, url, body).await;
            let code = match &result {
                Ok(_) => 200,
                Err((GcpError::Api(e), _)) => e.code,
                Err((GcpError::Decode { status, .. }, _)) => *status,
                Err(_) => 0,
            };
            self.stats
                .record(call.api, call.op, code, started.elapsed());
            let (err, retryable, retry_after) = match result {
                Ok(b) => match accept(&b) {
                    Ok(v) => {
                        if attempt > 1 {
                            tracing::info!(
                                api = call.api.as_str(),
                                op = call.op,
                                attempts = attempt,
                                elapsed_ms = first.elapsed().as_millis() as u64,
                                "Google API call succeeded after retries"
                            );
                        }
                        return Ok(v);
                    }
                    Err(b) => {
                        let (e, transient) = *b;
                        (e, transient, None)
                    }
                },
                Err((e, retry_after)) => {
                    let r = e.is_retryable() && !matches!(e, GcpError::Credentials(_));
                    (e, r, retry_after)
                }
            };
            if !(call.retry && retryable) {
                return Err(err);
            }
            if attempt >= max {
                tracing::warn!(
                    api = call.api.as_str(),
                    op = call.op,
                    attempts = attempt,
                    elapsed_ms = first.elapsed().as_millis() as u64,
                    error = %err,
                    "Google API call failed; giving up after {attempt} attempts"
                );
                return Err(err);
            }
            let delay = retry_after
                .unwrap_or_else(|| self.retry.delay(attempt - 1))
                .min(self.retry.max_delay.max(Duration::from_millis(1)));
            if attempt == 1 {
                tracing::warn!(
                    api = call.api.as_str(),
                    op = call.op,
                    attempt,
                    max_attempts = max,
                    delay_ms = delay.as_millis() as u64,
                    error = %err,
                    "Google API call failed (attempt 1 of {max}); retrying in {:.1}s, up to {} more time(s) with back-off up to {}s",
                    delay.as_secs_f64(),
                    max - 1,
                    self.retry.max_delay.as_secs()
                );
            } else {
                tracing::info!(
                    api = call.api.as_str(),
                    op = call.op,
                    attempt,
                    max_attempts = max,
                    delay_ms = delay.as_millis() as u64,
                    error = %err,
                    "Google API call failed again (attempt {attempt} of {max}); retrying in {:.1}s",
                    delay.as_secs_f64()
                );
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// `url` with the `requestId` of one intended mutation appended. The id is
    /// derived from `intent` (what the caller means: stable when it repeats the
    /// same step after a crash, different when it means a new change) together
    /// with the method, the URL (API, collection and resource) and the body, so
    /// two different mutations can never share an id, whatever the caller
    /// passes: Compute would take the second for a replay of the first and
    /// answer with the first's operation without doing anything.
    pub(crate) fn with_request_id<B: Serialize + ?Sized>(
        &self,
        intent: &str,
        method: &Method,
        url: &str,
        body: Option<&B>,
    ) -> String {
        // Serializing our own request structs cannot fail; an empty body then
        // still yields an id bound to method and URL.
        let body = body
            .and_then(|b| serde_json::to_vec(b).ok())
            .unwrap_or_default();
        let id = mutation_id(intent, method.as_str(), url, &body);
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}requestId={}", enc(&id))
    }

    async fn once(
        &self,
        call: Call,
        method: &Method,
        url: &str,
        body: Option<&Payload>,
    ) -> Result<Reply, (GcpError, Option<Duration>)> {
        let transport = |message: String, maybe_sent: bool| GcpError::Transport {
            method: method.to_string(),
            url: url.to_string(),
            message,
            maybe_sent,
        };
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(call.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(h) = self.auth.header().await.map_err(|e| (e, None))? {
            req = req.header(reqwest::header::AUTHORIZATION, h);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, b.content_type.as_str())
                .body(b.bytes.clone());
        } else if *method == Method::POST {
            req = req.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let resp = req
            .send()
            .await
            .map_err(|e| (transport(describe_reqwest(&e), e.is_timeout()), None))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| (transport(describe_reqwest(&e), true), None))?;
        if (200..300).contains(&status) {
            return Ok(Reply {
                headers,
                bytes: bytes.to_vec(),
            });
        }
        let request = format!("{method} {url}");
        match ApiError::from_body(status, &bytes, request) {
            Some(api) => Err((GcpError::Api(api), retry_after)),
            None => Err((
                GcpError::Decode {
                    method: method.to_string(),
                    url: url.to_string(),
                    status,
                    message: format!(
                        "the error body is not Google's error envelope ({} bytes)",
                        bytes.len()
                    ),
                },
                retry_after,
            )),
        }
    }
}

fn classify_json(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "the response is truncated",
        serde_json::error::Category::Syntax => "the response is not valid JSON",
        serde_json::error::Category::Data => "the response has unexpected fields or types",
        serde_json::error::Category::Io => "the response could not be read",
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Percent-encodes a path segment or query value (everything but RFC 3986
/// unreserved characters).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A `requestId` (UUID-shaped, version 4 bits set) derived from `parts`, so a step
/// retried after a crash sends the same id and Compute returns the original
/// operation instead of doing the work twice.
pub fn request_id(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `requestId` of one mutation: `intent` bound to the method, the URL
/// without its query (API, project, collection, resource) and the body.
pub fn mutation_id(intent: &str, method: &str, url: &str, body: &[u8]) -> String {
    let path = url.split('?').next().unwrap_or(url);
    let digest: String = sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    request_id(&[intent, method, path, &digest])
}

/// Finds the project without configuration: `GOOGLE_CLOUD_PROJECT`, the
/// `project_id` of `GOOGLE_APPLICATION_CREDENTIALS`, then the metadata server.
pub async fn discover_project() -> Result<String, GcpError> {
    for var in ["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"] {
        if let Ok(p) = std::env::var(var)
            && !p.is_empty()
        {
            return Ok(p);
        }
    }
    if let Ok(f) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
        && let Ok(text) = std::fs::read_to_string(&f)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(p) = v
            .get("project_id")
            .or_else(|| v.get("quota_project_id"))
            .and_then(|p| p.as_str())
    {
        return Ok(p.to_string());
    }
    let host =
        std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| "metadata.google.internal".into());
    let url = format!("http://{host}/computeMetadata/v1/project/project-id");
    let no_project = |why: String| {
        GcpError::Credentials(format!(
            "cannot tell which project to use ({why}): set gcp.project in the configuration or GOOGLE_CLOUD_PROJECT"
        ))
    };
    let tls = crate::trust::client_config(&[]).map_err(|e| no_project(e.to_string()))?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| no_project(e.to_string()))?;
    let resp = client
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| no_project(format!("no metadata server at {host}: {e}")))?;
    if !resp.status().is_success() {
        return Err(no_project(format!(
            "metadata server answered {}",
            resp.status()
        )));
    }
    let p = resp.text().await.map_err(|e| no_project(e.to_string()))?;
    let p = p.trim();
    if p.is_empty() {
        return Err(no_project(
            "the metadata server returned no project id".into(),
        ));
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_stable_uuid_v4_shaped() {
        let a = request_id(&["app", "insert", "abc"]);
        assert_eq!(a, request_id(&["app", "insert", "abc"]));
        assert_ne!(a, request_id(&["app", "insert", "abd"]));
        assert_ne!(request_id(&["ab", "c"]), request_id(&["a", "bc"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn mutation_ids_differ_by_method_collection_resource_and_body() {
        let base = "https://compute.googleapis.com/compute/v1/projects/p/global";
        let https = format!("{base}/targetHttpsProxies/x");
        let http = format!("{base}/targetHttpProxies/x");
        let id = |intent: &str, m: &str, u: &str, b: &[u8]| mutation_id(intent, m, u, b);
        // The walkthrough's case: one name, two collections, one intent.
        assert_ne!(
            id("i", "DELETE", &https, b""),
            id("i", "DELETE", &http, b"")
        );
        assert_ne!(
            id("i", "DELETE", &https, b""),
            id("i", "DELETE", &format!("{base}/targetHttpsProxies/y"), b"")
        );
        assert_ne!(id("i", "POST", &https, b""), id("i", "DELETE", &https, b""));
        assert_ne!(
            id("i", "POST", &https, b"{}"),
            id("i", "POST", &https, b"{1}")
        );
        assert_ne!(id("i", "POST", &https, b""), id("j", "POST", &https, b""));
        // The same mutation repeated (after a crash) keeps its id; the query
        // (where the id itself goes) is not part of it.
        assert_eq!(
            id("i", "POST", &https, b"{}"),
            id("i", "POST", &format!("{https}?requestId=z"), b"{}")
        );
        let g = Gcp::new(Endpoints::default(), "p".into(), Auth::None).unwrap();
        let u = g.with_request_id::<()>("i", &Method::DELETE, &https, None);
        assert!(u.starts_with(&format!("{https}?requestId=")), "{u}");
        let u2 = g.with_request_id::<()>("i", &Method::DELETE, &format!("{https}?a=b"), None);
        assert!(u2.contains("?a=b&requestId="), "{u2}");
    }

    /// Every Compute mutation gets its id from `with_request_id` (each one names
    /// its method twice: for the id and for the request), and no file builds a
    /// `requestId` parameter by hand.
    #[test]
    fn every_compute_mutation_takes_its_id_from_with_request_id() {
        let files = [
            ("compute.rs", include_str!("compute.rs")),
            ("stack_resources.rs", include_str!("stack_resources.rs")),
        ];
        for (name, src) in files {
            let code = src.split("#[cfg(test)]").next().unwrap_or(src);
            let mutating = [
                "Method::POST",
                "Method::DELETE",
                "Method::PATCH",
                "Method::PUT",
            ]
            .iter()
            .map(|m| code.matches(m).count())
            .sum::<usize>();
            let ids = code.matches("self.with_request_id").count();
            assert!(ids > 0, "{name}");
            assert_eq!(mutating, 2 * ids, "{name}: a mutation without a requestId");
        }
        for (name, src) in [
            ("compute.rs", include_str!("compute.rs")),
            ("stack_resources.rs", include_str!("stack_resources.rs")),
            ("dns.rs", include_str!("dns.rs")),
            ("iap.rs", include_str!("iap.rs")),
            ("run.rs", include_str!("run.rs")),
            ("operation.rs", include_str!("operation.rs")),
            ("serviceusage.rs", include_str!("serviceusage.rs")),
            ("resourcemanager.rs", include_str!("resourcemanager.rs")),
            ("storage.rs", include_str!("storage.rs")),
            (
                "certificatemanager.rs",
                include_str!("certificatemanager.rs"),
            ),
        ] {
            assert!(
                !src.contains("requestId="),
                "{name} builds a requestId by hand"
            );
        }
    }

    #[test]
    fn retry_delays_are_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        for retry in 0..12 {
            let d = p.delay(retry);
            let cap =
                (Duration::from_millis(100) * (1 << retry.min(20))).min(Duration::from_secs(2));
            assert!(d <= cap && d >= cap / 2, "retry {retry}: {d:?} vs {cap:?}");
        }
    }
}
