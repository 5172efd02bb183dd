//! Google's error envelopes.
//!
//! Compute and Cloud DNS answer in the v1 "googleapis" style, with an `errors[]`
//! list carrying `reason` and `domain`; Cloud Run, IAP, Resource Manager and Service
//! Usage answer in the AIP-193 style, with `status` and `details[]` (an ErrorInfo).
//! Both carry `code`, `message` and `status`, so clients keyed on either work.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Which envelope the API answering the request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Compute Engine, Cloud DNS: `errors: [{message, domain, reason}]`.
    V1,
    /// Cloud Run v2, IAP v1, Resource Manager v3, Service Usage: `details: [ErrorInfo]`.
    Aip193,
}

/// An error as Google returns it.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub domain: String,
    pub style: Style,
    /// Extra ErrorInfo metadata (AIP-193 style only).
    pub metadata: Option<Value>,
    /// `details[]` as the API gives them, instead of the one ErrorInfo (AIP-193
    /// style only; empty: no `details` at all, as Certificate Manager's 404s).
    /// (Boxed: errors travel in `Result`s, kept small.)
    pub details: Option<Box<Vec<Value>>>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            domain: "global".to_string(),
            style: Style::V1,
            metadata: None,
            details: None,
        }
    }

    pub fn aip193(mut self) -> Self {
        self.style = Style::Aip193;
        self.domain = "googleapis.com".to_string();
        self
    }

    pub fn with_domain(mut self, domain: &str) -> Self {
        self.domain = domain.to_string();
        self
    }

    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// AIP-193 `details[]` exactly as given (see [`ApiError::details`]).
    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// 400 `invalid` (v1) with the message Google uses for a bad field value.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid", message)
    }

    /// 400 `badRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "badRequest", message)
    }

    /// 400 `required`.
    pub fn required(message: impl Into<String>) -> Self {
        Self::new(400, "required", message)
    }

    /// 404 `notFound` naming the resource path, as Compute words it.
    pub fn not_found(resource: impl AsRef<str>) -> Self {
        Self::new(
            404,
            "notFound",
            format!("The resource '{}' was not found", resource.as_ref()),
        )
    }

    /// 409 `alreadyExists` naming the resource path.
    pub fn already_exists(resource: impl AsRef<str>) -> Self {
        Self::new(
            409,
            "alreadyExists",
            format!("The resource '{}' already exists", resource.as_ref()),
        )
    }

    /// 412 `conditionNotMet`.
    pub fn condition_not_met(message: impl Into<String>) -> Self {
        Self::new(412, "conditionNotMet", message)
    }

    /// 400 `resourceInUseByAnotherResource`.
    pub fn in_use(kind: &str, resource: &str, user: &str) -> Self {
        Self::new(
            400,
            "resourceInUseByAnotherResource",
            format!("The {kind} resource '{resource}' is already being used by '{user}'"),
        )
    }

    /// 401 as every Google API answers a request without valid credentials.
    pub fn unauthenticated() -> Self {
        Self::new(
            401,
            "authError",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
    }

    /// The canonical gRPC status name Google puts in `status` for an HTTP code.
    pub fn status_name(&self) -> &'static str {
        match (self.code, self.reason.as_str()) {
            (400, "failedPrecondition") => "FAILED_PRECONDITION",
            (400, _) => "INVALID_ARGUMENT",
            (401, _) => "UNAUTHENTICATED",
            (403, "rateLimitExceeded") | (403, "quotaExceeded") => "RESOURCE_EXHAUSTED",
            (403, _) => "PERMISSION_DENIED",
            (404, _) => "NOT_FOUND",
            (409, "aborted") | (409, "ABORTED") => "ABORTED",
            (409, _) => "ALREADY_EXISTS",
            (412, _) => "FAILED_PRECONDITION",
            (429, _) => "RESOURCE_EXHAUSTED",
            (499, _) => "CANCELLED",
            (501, _) => "UNIMPLEMENTED",
            (503, _) => "UNAVAILABLE",
            (504, _) => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        }
    }

    /// The JSON body Google sends.
    pub fn body(&self) -> Value {
        match self.style {
            Style::V1 => json!({
                "error": {
                    "code": self.code,
                    "message": self.message,
                    "errors": [{
                        "message": self.message,
                        "domain": self.domain,
                        "reason": self.reason,
                    }],
                    "status": self.status_name(),
                }
            }),
            Style::Aip193 if self.details.is_some() => {
                let mut error = json!({
                    "code": self.code,
                    "message": self.message,
                    "status": self.status_name(),
                });
                if let Some(d) = self.details.as_ref().filter(|d| !d.is_empty()) {
                    error["details"] = json!(d);
                }
                json!({ "error": error })
            }
            Style::Aip193 => {
                let mut info = json!({
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.reason,
                    "domain": self.domain,
                });
                if let Some(m) = &self.metadata {
                    info["metadata"] = m.clone();
                }
                json!({
                    "error": {
                        "code": self.code,
                        "message": self.message,
                        "status": self.status_name(),
                        "details": [info],
                    }
                })
            }
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        resp
    }
}

/// What every handler returns.
pub type ApiResult<T = Value> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_envelope_has_errors_and_status() {
        let e = ApiError::already_exists("projects/p/global/sslCertificates/c");
        let b = e.body();
        assert_eq!(b["error"]["code"], 409);
        assert_eq!(b["error"]["errors"][0]["reason"], "alreadyExists");
        assert_eq!(b["error"]["errors"][0]["domain"], "global");
        assert_eq!(b["error"]["status"], "ALREADY_EXISTS");
    }

    #[test]
    fn aip193_envelope_has_details() {
        let e = ApiError::new(404, "notFound", "Resource 'x' was not found").aip193();
        let b = e.body();
        assert_eq!(b["error"]["status"], "NOT_FOUND");
        assert!(b["error"].get("errors").is_none());
        assert_eq!(
            b["error"]["details"][0]["@type"],
            "type.googleapis.com/google.rpc.ErrorInfo"
        );
    }
}
