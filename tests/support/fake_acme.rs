//! A small in-process ACME server for what Pebble 2.4 lacks: renewal information
//! (RFC 9773) and a CA that rejects `replaces`. It does not check signatures; it
//! speaks just enough of RFC 8555 for an account, ARI and newOrder.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// What the fake answers and what it saw.
#[derive(Default)]
pub struct FakeState {
    pub base: String,
    /// The window served for every certificate id.
    pub window: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Retry-After seconds on renewalInfo answers.
    pub retry_after: u64,
    /// Payloads of every newOrder, decoded.
    pub orders: Vec<Value>,
    /// Certificate ids asked for.
    pub ari_requests: Vec<String>,
}

pub struct FakeAcme {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAcme {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAcme {
    pub async fn start(
        window: Option<(OffsetDateTime, OffsetDateTime)>,
        retry_after: u64,
    ) -> FakeAcme {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FakeState {
            base: format!("http://localhost:{}", addr.port()),
            window,
            retry_after,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/dir", get(directory))
            .route("/nonce", get(nonce).head(nonce))
            .route("/account", post(account))
            .route("/order", post(order))
            .route("/ari/{id}", get(ari))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAcme { addr, state, task }
    }

    pub fn directory_url(&self) -> String {
        format!("http://localhost:{}/dir", self.addr.port())
    }
}

type S = State<Arc<Mutex<FakeState>>>;

fn with_nonce(mut r: Response) -> Response {
    r.headers_mut()
        .insert("Replay-Nonce", HeaderValue::from_static("fake-nonce-AAAA"));
    r
}

async fn directory(State(s): S) -> Response {
    let b = s.lock().unwrap().base.clone();
    axum::Json(json!({
        "newNonce": format!("{b}/nonce"),
        "newAccount": format!("{b}/account"),
        "newOrder": format!("{b}/order"),
        "revokeCert": format!("{b}/revoke"),
        "keyChange": format!("{b}/key-change"),
        "renewalInfo": format!("{b}/ari"),
        "meta": {"termsOfService": format!("{b}/terms")}
    }))
    .into_response()
}

async fn nonce() -> Response {
    with_nonce(StatusCode::OK.into_response())
}

fn payload(body: &Bytes) -> Value {
    let jws: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let p = jws["payload"].as_str().unwrap_or("");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .unwrap_or_default();
    serde_json::from_slice(&raw).unwrap_or(Value::Null)
}

async fn account(State(s): S) -> Response {
    let b = s.lock().unwrap().base.clone();
    let mut r = (
        StatusCode::CREATED,
        axum::Json(json!({"status": "valid", "orders": format!("{b}/orders/1")})),
    )
        .into_response();
    r.headers_mut().insert(
        "Location",
        HeaderValue::from_str(&format!("{b}/acct/1")).unwrap(),
    );
    with_nonce(r)
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let mut r = (status, axum::Json(json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail, "status": status.as_u16()}))).into_response();
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("application/problem+json"),
    );
    with_nonce(r)
}

async fn order(State(s): S, body: Bytes) -> Response {
    let p = payload(&body);
    let replaces = p.get("replaces").is_some();
    s.lock().unwrap().orders.push(p);
    if replaces {
        // Like a CA that does not know the certificate being replaced.
        problem(
            StatusCode::CONFLICT,
            "alreadyReplaced",
            "the certificate has already been replaced",
        )
    } else {
        // End the flow here: the test only needs to see the retry without `replaces`.
        problem(
            StatusCode::FORBIDDEN,
            "unauthorized",
            "this fake CA issues nothing",
        )
    }
}

async fn ari(State(s): S, Path(id): Path<String>, _h: HeaderMap) -> Response {
    let mut st = s.lock().unwrap();
    st.ari_requests.push(id);
    let Some((start, end)) = st.window else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let fmt = &time::format_description::well_known::Rfc3339;
    let mut r = axum::Json(json!({
        "suggestedWindow": {"start": start.format(fmt).unwrap(), "end": end.format(fmt).unwrap()}
    }))
    .into_response();
    r.headers_mut().insert(
        "Retry-After",
        HeaderValue::from_str(&st.retry_after.to_string()).unwrap(),
    );
    r
}
