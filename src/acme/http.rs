//! instant-acme's `HttpClient` over reqwest, with additive TLS roots and
//! per-endpoint request statistics.
//!
//! Roots are the system's (read once per process, [`crate::trust`]) plus the
//! PEM files of `acme.ca_roots`; certificate checks are never turned off.
//! Each request is counted under the ACME endpoint it hits: directory-listed
//! endpoints are recognised by URL, the others (orders, authorizations,
//! challenges, finalize, certificate) by a hint the issuance flow sets in a
//! task-local before each call.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use serde::Serialize;

/// Per-request timeout: a stuck CA must not stall the daemon.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The ACME endpoint a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Directory,
    NewNonce,
    NewAccount,
    NewOrder,
    /// Fetching or polling an order (POST-as-GET).
    Order,
    Authorization,
    Challenge,
    Finalize,
    Certificate,
    RenewalInfo,
    RevokeCert,
    KeyChange,
    /// Account updates and anything unrecognised.
    Other,
}

impl Endpoint {
    /// Stable snake_case name (for metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Directory => "directory",
            Endpoint::NewNonce => "new_nonce",
            Endpoint::NewAccount => "new_account",
            Endpoint::NewOrder => "new_order",
            Endpoint::Order => "order",
            Endpoint::Authorization => "authorization",
            Endpoint::Challenge => "challenge",
            Endpoint::Finalize => "finalize",
            Endpoint::Certificate => "certificate",
            Endpoint::RenewalInfo => "renewal_info",
            Endpoint::RevokeCert => "revoke_cert",
            Endpoint::KeyChange => "key_change",
            Endpoint::Other => "other",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed to get a response, or got a status >= 400.
    pub errors: u64,
    /// Responses with status 429 (rate limited).
    pub rate_limited: u64,
    /// Sum of request durations (until the whole body was read).
    pub total: Duration,
    /// Longest single request.
    pub max: Duration,
}

/// Request statistics, shared by every clone of an [`AcmeHttp`].
#[derive(Debug, Default)]
pub struct HttpStats {
    inner: Mutex<BTreeMap<Endpoint, EndpointStats>>,
}

impl HttpStats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> BTreeMap<Endpoint, EndpointStats> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Requests sent to one endpoint so far.
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.snapshot()
            .get(&endpoint)
            .map(|s| s.requests)
            .unwrap_or(0)
    }

    /// Requests to one endpoint that got a success status (badNonce retries and
    /// other failures excluded): e.g. how many accounts or orders were created.
    pub fn successes(&self, endpoint: Endpoint) -> u64 {
        self.snapshot()
            .get(&endpoint)
            .map(|s| s.requests - s.errors)
            .unwrap_or(0)
    }

    /// Requests sent in total.
    pub fn total_requests(&self) -> u64 {
        self.snapshot().values().map(|s| s.requests).sum()
    }

    fn record(&self, endpoint: Endpoint, took: Duration, status: Option<u16>) {
        if let Ok(mut m) = self.inner.lock() {
            let s = m.entry(endpoint).or_default();
            s.requests += 1;
            if status.is_none_or(|c| c >= 400) {
                s.errors += 1;
            }
            if status == Some(429) {
                s.rate_limited += 1;
            }
            s.total += took;
            s.max = s.max.max(took);
        }
    }
}

/// A transport failure (no HTTP response): connection refused, TLS, timeout.
/// Travels inside `instant_acme::Error::Other` so the flow can classify it.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: {message}")]
pub(crate) struct TransportError {
    /// The endpoint that was being called.
    pub endpoint: Endpoint,
    /// reqwest's description, with its source chain.
    pub message: String,
}

/// Per-issuance context, read by requests made while it is in scope.
pub(crate) struct FlowContext {
    hint: Cell<Endpoint>,
    retry_after: Cell<Option<SystemTime>>,
    /// The Location of the last order the CA created in this flow: an order the
    /// library refused after the CA made it (e.g. `replaces` not echoed) is
    /// still an order at the CA, and resuming it beats placing a second one.
    created_order: RefCell<Option<String>>,
    /// The last challenge object the CA answered with: instant-acme looks only
    /// at its error, and a CA may say `invalid` there without one.
    challenge_answer: RefCell<Option<ChallengeAnswer>>,
}

/// A challenge object as the CA returned it (its status only).
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct ChallengeAnswer {
    pub status: String,
}

tokio::task_local! {
    static FLOW: FlowContext;
}

/// Runs `fut` with a fresh flow context (endpoint hints, Retry-After capture).
pub(crate) async fn in_flow<F: Future>(fut: F) -> F::Output {
    FLOW.scope(
        FlowContext {
            hint: Cell::new(Endpoint::Other),
            retry_after: Cell::new(None),
            created_order: RefCell::new(None),
            challenge_answer: RefCell::new(None),
        },
        fut,
    )
    .await
}

/// Tells the HTTP client which endpoint the next non-directory requests go to.
pub(crate) fn hint(endpoint: Endpoint) {
    let _ = FLOW.try_with(|c| c.hint.set(endpoint));
}

/// The Retry-After of the last 429/503 response in this flow, taken.
pub(crate) fn take_retry_after() -> Option<SystemTime> {
    FLOW.try_with(|c| c.retry_after.take()).ok().flatten()
}

/// The URL of the last order the CA created in this flow, taken.
pub(crate) fn take_created_order() -> Option<String> {
    FLOW.try_with(|c| c.created_order.take()).ok().flatten()
}

/// The last challenge object the CA answered with in this flow, taken.
pub(crate) fn take_challenge_answer() -> Option<ChallengeAnswer> {
    FLOW.try_with(|c| c.challenge_answer.take()).ok().flatten()
}

fn current_hint() -> Endpoint {
    FLOW.try_with(|c| c.hint.get()).unwrap_or(Endpoint::Other)
}

fn note_retry_after(at: SystemTime) {
    let _ = FLOW.try_with(|c| c.retry_after.set(Some(at)));
}

/// Directory URLs, learnt from the directory response.
#[derive(Debug, Default)]
struct KnownUrls {
    new_nonce: Option<String>,
    new_account: Option<String>,
    new_order: Option<String>,
    renewal_info: Option<String>,
    revoke_cert: Option<String>,
    key_change: Option<String>,
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// A `ca_roots` file is unreadable or holds no usable certificate.
    #[error("{path}: {message}")]
    Roots { path: String, message: String },
    /// reqwest refused the configuration.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The HTTP client instant-acme talks through. Cheap to clone; clones share stats.
#[derive(Clone)]
pub struct AcmeHttp {
    client: reqwest::Client,
    directory_url: Arc<str>,
    urls: Arc<RwLock<KnownUrls>>,
    stats: Arc<HttpStats>,
}

impl fmt::Debug for AcmeHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeHttp")
            .field("directory_url", &self.directory_url)
            .finish_non_exhaustive()
    }
}

impl AcmeHttp {
    /// A client for this directory trusting the system roots plus `extra_roots`
    /// (PEM files, each holding one or more certificates).
    pub fn new(
        directory_url: &str,
        extra_roots: &[impl AsRef<Path>],
    ) -> Result<AcmeHttp, HttpSetupError> {
        let mut certs = Vec::new();
        for path in extra_roots {
            let path = path.as_ref();
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|e| HttpSetupError::Roots {
                path: shown.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let found =
                crate::trust::pem_certificates(&pem).map_err(|message| HttpSetupError::Roots {
                    path: shown.clone(),
                    message,
                })?;
            certs.extend(found);
        }
        let tls = crate::trust::client_config(&certs)
            .map_err(|e| HttpSetupError::Client(e.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("gclb-acme/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpSetupError::Client(error_chain(&e)))?;
        Ok(AcmeHttp {
            client,
            directory_url: directory_url.into(),
            urls: Arc::default(),
            stats: Arc::default(),
        })
    }

    /// Whether the CA's directory lists `renewalInfo` (ARI), once it was fetched.
    pub fn has_ari(&self) -> bool {
        self.urls.read().is_ok_and(|u| u.renewal_info.is_some())
    }

    /// The shared request statistics.
    pub fn stats(&self) -> Arc<HttpStats> {
        self.stats.clone()
    }

    fn classify(&self, method: &http::Method, url: &str) -> Endpoint {
        if method == http::Method::GET && url == &*self.directory_url {
            return Endpoint::Directory;
        }
        if let Ok(u) = self.urls.read() {
            let is = |known: &Option<String>| known.as_deref() == Some(url);
            if is(&u.new_nonce) {
                return Endpoint::NewNonce;
            }
            if is(&u.new_account) {
                return Endpoint::NewAccount;
            }
            if is(&u.new_order) {
                return Endpoint::NewOrder;
            }
            if is(&u.revoke_cert) {
                return Endpoint::RevokeCert;
            }
            if is(&u.key_change) {
                return Endpoint::KeyChange;
            }
            if u.renewal_info
                .as_deref()
                .is_some_and(|ri| url.starts_with(ri))
            {
                return Endpoint::RenewalInfo;
            }
        }
        current_hint()
    }

    fn learn_directory(&self, body: &[u8]) {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Dir {
            new_nonce: Option<String>,
            new_account: Option<String>,
            new_order: Option<String>,
            renewal_info: Option<String>,
            revoke_cert: Option<String>,
            key_change: Option<String>,
        }
        if let (Ok(d), Ok(mut u)) = (serde_json::from_slice::<Dir>(body), self.urls.write()) {
            *u = KnownUrls {
                new_nonce: d.new_nonce,
                new_account: d.new_account,
                new_order: d.new_order,
                renewal_info: d.renewal_info,
                revoke_cert: d.revoke_cert,
                key_change: d.key_change,
            };
        }
    }

    async fn send(
        self,
        req: http::Request<BodyWrapper<Bytes>>,
        endpoint: Endpoint,
    ) -> Result<BytesResponse, instant_acme::Error> {
        let (parts, body) = req.into_parts();
        let url = parts.uri.to_string();
        // infallible: the body is in memory (its error type is Infallible).
        let body = match http_body_util::BodyExt::collect(body).await {
            Ok(b) => b.to_bytes(),
            Err(never) => match never {},
        };
        let started = Instant::now();
        let transport = |e: reqwest::Error| {
            instant_acme::Error::Other(Box::new(TransportError {
                endpoint,
                message: error_chain(&e),
            }))
        };
        let result = async {
            let rsp = self
                .client
                .request(parts.method.clone(), &url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = rsp.status();
            let version = rsp.version();
            let headers = rsp.headers().clone();
            let bytes = rsp.bytes().await?;
            Ok::<_, reqwest::Error>((status, version, headers, bytes))
        }
        .await;
        let took = started.elapsed();
        let (status, version, headers, mut bytes) = match result {
            Ok(r) => r,
            Err(e) => {
                self.stats.record(endpoint, took, None);
                tracing::debug!(endpoint = %endpoint, took_ms = took.as_millis() as u64, error = %error_chain(&e), "ACME request failed");
                return Err(transport(e));
            }
        };
        self.stats.record(endpoint, took, Some(status.as_u16()));
        tracing::debug!(endpoint = %endpoint, status = status.as_u16(), took_ms = took.as_millis() as u64, "ACME request");

        if endpoint == Endpoint::Directory && status.is_success() {
            self.learn_directory(&bytes);
        }
        if endpoint == Endpoint::NewOrder
            && status.as_u16() == 201
            && let Some(location) = headers.get(http::header::LOCATION)
            && let Ok(location) = location.to_str()
        {
            let _ = FLOW.try_with(|c| c.created_order.replace(Some(location.to_string())));
        }
        if endpoint == Endpoint::Challenge
            && status.is_success()
            && let Ok(answer) = serde_json::from_slice::<ChallengeAnswer>(&bytes)
        {
            let _ = FLOW.try_with(|c| c.challenge_answer.replace(Some(answer)));
        }
        if (status.as_u16() == 429 || status.as_u16() == 503)
            && let Some(at) = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
        {
            note_retry_after(at);
        }
        // instant-acme parses every error body as a problem document; a proxy's HTML
        // 502 would surface as a JSON error and hide the status. Give it a problem.
        if status.as_u16() >= 400 && serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
            let problem = serde_json::json!({
                "type": NON_PROBLEM_TYPE,
                "status": status.as_u16(),
                "detail": format!("HTTP {} from {} with a non-problem body of {} bytes",
                    status.as_u16(), endpoint, bytes.len()),
            });
            bytes = Bytes::from(problem.to_string());
        }

        let mut builder = http::Response::builder().status(status).version(version);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let response = builder
            .body(())
            .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
        let (parts, ()) = response.into_parts();
        Ok(BytesResponse {
            parts,
            body: Box::new(bytes),
        })
    }
}

/// Problem type we give to error responses that carried no problem document.
pub(crate) const NON_PROBLEM_TYPE: &str = "urn:gclb-acme:error:httpStatus";

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        // Classified now, synchronously, while the flow's task-local is reachable.
        let endpoint = self.classify(req.method(), &req.uri().to_string());
        Box::pin(self.clone().send(req, endpoint))
    }
}

/// Retry-After: delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(SystemTime::now() + Duration::from_secs(secs));
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let dt = time::PrimitiveDateTime::parse(v, &fmt).ok()?;
    Some(dt.assume_utc().into())
}

/// An error with its sources, `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::now();
        let t = parse_retry_after("120").unwrap();
        let d = t.duration_since(now).unwrap();
        assert!(d >= Duration::from_secs(119) && d <= Duration::from_secs(121));
        let t = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1445412480
        );
        assert!(parse_retry_after("soon").is_none());
    }

    #[test]
    fn missing_roots_file_is_named() {
        let e = AcmeHttp::new("https://x/dir", &["/nonexistent/roots.pem"]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/roots.pem"), "{e}");
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), "not pem").unwrap();
        let e = AcmeHttp::new("https://x/dir", &[tmp.path()]).unwrap_err();
        assert!(
            e.to_string().contains("no BEGIN CERTIFICATE") || e.to_string().contains("PEM"),
            "{e}"
        );
    }

    #[test]
    fn a_challenge_answer_yields_its_status() {
        // acme2certifier's answer to a failed challenge: invalid, no error.
        let a: ChallengeAnswer = serde_json::from_str(
            r#"{"type":"dns-01","status":"invalid","token":"t","url":"https://x/chall/1"}"#,
        )
        .unwrap();
        assert_eq!(a.status, "invalid");
        assert!(serde_json::from_str::<ChallengeAnswer>(r#"{"type":"dns-01"}"#).is_err());
    }

    #[test]
    fn stats_count() {
        let s = HttpStats::default();
        s.record(Endpoint::NewOrder, Duration::from_millis(5), Some(201));
        s.record(Endpoint::NewOrder, Duration::from_millis(7), Some(429));
        s.record(Endpoint::Order, Duration::from_millis(1), None);
        let snap = s.snapshot();
        let o = snap[&Endpoint::NewOrder];
        assert_eq!((o.requests, o.errors, o.rate_limited), (2, 1, 1));
        assert_eq!(o.max, Duration::from_millis(7));
        assert_eq!(s.total_requests(), 3);
        assert_eq!(s.requests(Endpoint::Order), 1);
    }
}
