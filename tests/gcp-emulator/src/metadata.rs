//! The GCE metadata server, as the Google auth libraries use it: the default
//! service account's token (also with `?scopes=`), email, identity token and
//! recursive listing; project id and number; zone; universe domain.
//!
//! Like GCE it answers only requests carrying `Metadata-Flavor: Google` and no
//! `X-Forwarded-For` (403 with a text body otherwise), and every response carries
//! `Metadata-Flavor: Google`. `GET /` answers too, since libraries ping the root
//! to detect that they run on Google Cloud.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::cloud::iam_base64url;
use crate::state::Shared;

/// The token handed out when `Config::required_token` is unset.
pub const DEFAULT_TOKEN: &str = "ya29.emulator-access-token";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const ZONE: &str = "us-central1-a";

/// The `/computeMetadata/v1/` routes and the root ping.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/", get(root))
        .route("/computeMetadata/v1", get(root))
        .route("/computeMetadata/v1/", get(root))
        .route("/computeMetadata/v1/{*rest}", get(entry))
}

/// Headers every metadata answer carries.
fn with_flavor(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("metadata-flavor", HeaderValue::from_static("Google"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static("Metadata Server for VM"),
    );
    r
}

/// GCE's refusal of requests that may not come from the VM itself.
fn gate(headers: &HeaderMap, path: &str) -> Option<Response> {
    let flavor = headers
        .get("metadata-flavor")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Google");
    let forwarded = headers.contains_key("x-forwarded-for");
    if flavor && !forwarded {
        return None;
    }
    let why = if forwarded {
        "Request had an X-Forwarded-For header and was rejected."
    } else {
        "Missing Metadata-Flavor:Google header."
    };
    let body = format!(
        "<!DOCTYPE html>\n<html lang=en>\n<title>Error 403 (Forbidden)!!1</title>\n<p><b>403.</b> <ins>That's an error.</ins>\n<p>Your client does not have permission to get URL <code>{path}</code> from this server. {why} <ins>That's all we know.</ins>\n"
    );
    Some(with_flavor(
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
            body,
        )
            .into_response(),
    ))
}

fn text(s: impl Into<String>) -> Response {
    with_flavor(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/text")],
            s.into(),
        )
            .into_response(),
    )
}

fn json_resp(v: Value) -> Response {
    with_flavor(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
    )
}

fn not_found(path: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=en>\n<title>Error 404 (Not Found)!!1</title>\n<p><b>404.</b> <ins>That's an error.</ins>\n<p>The requested URL <code>{path}</code> was not found on this server. <ins>That's all we know.</ins>\n"
    );
    with_flavor(
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
            body,
        )
            .into_response(),
    )
}

async fn root(req: Request) -> Response {
    let path = req.uri().path().to_string();
    if let Some(r) = gate(req.headers(), &path) {
        return r;
    }
    if path == "/" {
        text("computeMetadata/\n")
    } else {
        text("instance/\nproject/\n")
    }
}

/// What the server knows about the emulated VM.
struct Facts {
    project: String,
    number: u64,
    email: String,
    token: String,
}

impl Facts {
    fn of(shared: &Shared) -> Facts {
        let number = shared.config.project_number;
        Facts {
            project: shared.config.project.clone(),
            number,
            email: format!("{number}-compute@developer.gserviceaccount.com"),
            token: shared
                .config
                .required_token
                .clone()
                .unwrap_or_else(|| DEFAULT_TOKEN.to_string()),
        }
    }

    fn account(&self) -> Value {
        json!({"aliases": ["default"], "email": self.email, "scopes": [SCOPE]})
    }
}

async fn entry(
    State(shared): State<Shared>,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/computeMetadata/v1/{rest}");
    if let Some(r) = gate(&headers, &path) {
        return r;
    }
    let f = Facts::of(&shared);
    let recursive = q.get("recursive").is_some_and(|v| v == "true");
    let alt_json = q.get("alt").is_some_and(|v| v == "json");
    // A trailing slash names a directory; `recursive=true` lists it as JSON.
    let trimmed = rest.trim_end_matches('/');
    let mut parts: Vec<&str> = trimmed.split('/').collect();
    // `service-accounts/<email>/...` is the same account as `default`.
    if parts.len() >= 3
        && parts[0] == "instance"
        && parts[1] == "service-accounts"
        && parts[2] == f.email
    {
        parts[2] = "default";
    }
    let leaf = |s: String| {
        if alt_json {
            json_resp(Value::String(s))
        } else {
            text(s)
        }
    };
    match parts.as_slice() {
        ["project", "project-id"] => leaf(f.project.clone()),
        ["project", "numeric-project-id"] => leaf(f.number.to_string()),
        ["project"] if recursive => {
            json_resp(json!({"projectId": f.project, "numericProjectId": f.number}))
        }
        ["project"] => text("numeric-project-id\nproject-id\n"),
        ["instance", "zone"] => leaf(format!("projects/{}/zones/{ZONE}", f.number)),
        ["instance", "id"] => leaf("4520031799277581759".to_string()),
        ["instance", "hostname"] => leaf(format!("emulator.{ZONE}.c.{}.internal", f.project)),
        ["instance", "service-accounts"] if recursive => {
            json_resp(json!({ "default": f.account(), f.email.clone(): f.account() }))
        }
        ["instance", "service-accounts"] => text(format!("default/\n{}/\n", f.email)),
        ["instance", "service-accounts", "default"] if recursive => json_resp(f.account()),
        ["instance", "service-accounts", "default"] => {
            text("aliases\nemail\nidentity\nscopes\ntoken\n")
        }
        ["instance", "service-accounts", "default", "email"] => leaf(f.email.clone()),
        ["instance", "service-accounts", "default", "aliases"] => leaf("default\n".to_string()),
        ["instance", "service-accounts", "default", "scopes"] => leaf(format!("{SCOPE}\n")),
        ["instance", "service-accounts", "default", "token"] => json_resp(json!({
            "access_token": f.token,
            "expires_in": 3599,
            "token_type": "Bearer",
        })),
        ["instance", "service-accounts", "default", "identity"] => match q.get("audience") {
            Some(aud) if !aud.is_empty() => leaf(id_token(&f, aud)),
            _ => with_flavor(
                (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "non-empty audience parameter required\n",
                )
                    .into_response(),
            ),
        },
        ["instance"] => text("hostname\nid\nservice-accounts/\nzone\n"),
        ["universe", "universe-domain"] => leaf("googleapis.com".to_string()),
        _ => not_found(&path),
    }
}

/// An unsigned, JWT-shaped identity token (tests only look at its claims).
fn id_token(f: &Facts, audience: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "emulator"});
    let claims = json!({
        "aud": audience,
        "azp": f.email,
        "email": f.email,
        "email_verified": true,
        "exp": now + 3600,
        "iat": now,
        "iss": "https://accounts.google.com",
        "sub": "100000000000000000001",
    });
    format!(
        "{}.{}.{}",
        iam_base64url(header.to_string().as_bytes()),
        iam_base64url(claims.to_string().as_bytes()),
        iam_base64url(b"emulator-signature")
    )
}
