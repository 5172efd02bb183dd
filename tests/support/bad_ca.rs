//! A CA that completes every order at once (authorizations already valid,
//! finalize accepted) and then hands back a bad certificate: garbage, nothing,
//! a truncated PEM, or a valid certificate for other names. Enough of RFC 8555
//! for instant-acme; no signature is checked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What the certificate endpoint answers.
#[derive(Clone, Debug)]
pub enum Chain {
    Garbage,
    Empty,
    Truncated,
    WrongNames,
}

#[derive(Default)]
pub struct BadState {
    pub base: String,
    pub chain: Option<Chain>,
    pub orders: u32,
    pub finalized: u32,
    pub downloads: u32,
}

pub struct BadCa {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<BadState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BadCa {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type S = axum::extract::State<Arc<Mutex<BadState>>>;

impl BadCa {
    pub async fn start(chain: Chain) -> BadCa {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(BadState {
            base: format!("http://localhost:{}", addr.port()),
            chain: Some(chain),
            ..Default::default()
        }));
        let app = Router::new()
            .route("/dir", get(directory))
            .route("/nonce", get(nonce).head(nonce))
            .route("/account", post(account))
            .route("/order", post(new_order))
            .route("/order/1", post(order))
            .route("/finalize/1", post(finalize))
            .route("/cert/1", post(certificate))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        BadCa { addr, state, task }
    }

    pub fn directory_url(&self) -> String {
        format!("http://localhost:{}/dir", self.addr.port())
    }
}

fn with_nonce(mut r: Response) -> Response {
    r.headers_mut().insert(
        "Replay-Nonce",
        HeaderValue::from_static("bad-ca-nonce-AAAA"),
    );
    r
}

fn located(status: StatusCode, body: Value, location: &str) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert("Location", HeaderValue::from_str(location).unwrap());
    with_nonce(r)
}

async fn directory(axum::extract::State(s): S) -> Response {
    let b = s.lock().unwrap().base.clone();
    axum::Json(json!({
        "newNonce": format!("{b}/nonce"),
        "newAccount": format!("{b}/account"),
        "newOrder": format!("{b}/order"),
        "revokeCert": format!("{b}/revoke"),
        "keyChange": format!("{b}/key-change"),
    }))
    .into_response()
}

async fn nonce() -> Response {
    with_nonce(StatusCode::OK.into_response())
}

async fn account(axum::extract::State(s): S) -> Response {
    let b = s.lock().unwrap().base.clone();
    located(
        StatusCode::CREATED,
        json!({"status": "valid", "orders": format!("{b}/orders/1")}),
        &format!("{b}/acct/1"),
    )
}

fn order_body(b: &str, status: &str) -> Value {
    let mut v = json!({
        "status": status,
        "expires": "2099-01-01T00:00:00Z",
        "identifiers": [{"type": "dns", "value": "example.test"}, {"type": "dns", "value": "*.example.test"}],
        "authorizations": [],
        "finalize": format!("{b}/finalize/1"),
    });
    if status == "valid" {
        v["certificate"] = json!(format!("{b}/cert/1"));
    }
    v
}

async fn new_order(axum::extract::State(s): S) -> Response {
    let mut st = s.lock().unwrap();
    st.orders += 1;
    let b = st.base.clone();
    located(
        StatusCode::CREATED,
        order_body(&b, "ready"),
        &format!("{b}/order/1"),
    )
}

async fn order(axum::extract::State(s): S) -> Response {
    let st = s.lock().unwrap();
    let status = if st.finalized > 0 { "valid" } else { "ready" };
    located(
        StatusCode::OK,
        order_body(&st.base, status),
        &format!("{}/order/1", st.base),
    )
}

async fn finalize(axum::extract::State(s): S) -> Response {
    let mut st = s.lock().unwrap();
    st.finalized += 1;
    located(
        StatusCode::OK,
        order_body(&st.base, "valid"),
        &format!("{}/order/1", st.base),
    )
}

async fn certificate(axum::extract::State(s): S) -> Response {
    let mut st = s.lock().unwrap();
    st.downloads += 1;
    let body = match st.chain.clone().unwrap_or(Chain::Garbage) {
        Chain::Garbage => "<html><body>502 Bad Gateway</body></html>".to_string(),
        Chain::Empty => String::new(),
        Chain::Truncated => {
            let pem = other_names_pem();
            pem[..pem.len() / 2].to_string()
        }
        Chain::WrongNames => other_names_pem(),
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("application/pem-certificate-chain"),
    );
    with_nonce(r)
}

/// A well-formed certificate for names nobody asked for.
fn other_names_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["evil.test".to_string()]).unwrap();
    params.self_signed(&key).unwrap().pem()
}
