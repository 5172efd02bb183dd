//! GCP errors: Google's `code`, `reason` and `message` kept verbatim, plus what we
//! were doing, and a classification the retry logic and the operator can act on.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// An error from a Google API (HTTP error envelope, or an error inside a finished
/// operation), or from reaching it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GcpError {
    /// Google answered with an error.
    #[error("{}", .0)]
    Api(ApiError),
    /// We could not reach Google, or the connection broke.
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
        /// Whether the request may have been received (timeouts after sending).
        maybe_sent: bool,
    },
    /// Google answered something that is not what the API documents.
    #[error("{method} {url}: unexpected response (HTTP {status}): {message}")]
    Decode {
        method: String,
        url: String,
        status: u16,
        message: String,
    },
    /// No credentials could be obtained.
    #[error("cannot get Google credentials: {0}")]
    Credentials(String),
    /// An operation did not finish in time.
    #[error("{what}: still not done after {waited:?}")]
    Timeout { what: String, waited: Duration },
}

/// An error in Google's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (or the operation's `httpErrorStatusCode`).
    pub code: u16,
    /// `errors[0].reason` (v1 APIs), or the ErrorInfo `reason`, or the
    /// operation error `code` (e.g. `QUOTA_EXCEEDED`).
    pub reason: String,
    /// Google's message, verbatim.
    pub message: String,
    /// The canonical status (`ALREADY_EXISTS`, `PERMISSION_DENIED`...), when given.
    pub status: String,
    /// What we were doing: `POST https://.../sslCertificates`.
    pub request: String,
    /// The IAM permissions the request needed, when Google's 403 does not name
    /// the missing one (Cloud DNS answers a bare "Forbidden"); see
    /// [`GcpError::needing`]. (A boxed slice: errors travel in `Result`s, kept small.)
    pub needs: Box<[String]>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} {}", self.request, self.code, self.reason)?;
        if !self.status.is_empty() && self.status != self.reason {
            write!(f, " ({})", self.status)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = self.hint() {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl ApiError {
    /// Parses Google's error envelope (both the v1 `errors[]` and the AIP-193
    /// `details[]` shapes). Returns `None` when the body is not an envelope.
    pub fn from_body(code: u16, body: &[u8], request: String) -> Option<ApiError> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let e = v.get("error")?;
        // OAuth-style errors: {"error": "invalid_grant", "error_description": "..."}
        if let Some(s) = e.as_str() {
            return Some(ApiError {
                code,
                reason: s.to_string(),
                message: v
                    .get("error_description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                status: String::new(),
                request,
                needs: Box::default(),
            });
        }
        let message = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let status = e
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let reason = e
            .get("errors")
            .and_then(|x| x.get(0))
            .and_then(|x| x.get("reason"))
            .and_then(Value::as_str)
            .or_else(|| {
                e.get("details")?
                    .as_array()?
                    .iter()
                    .find(|d| {
                        d.get("@type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| t.ends_with("google.rpc.ErrorInfo"))
                    })?
                    .get("reason")?
                    .as_str()
            })
            .map(str::to_string)
            .unwrap_or_else(|| status.clone());
        let code = e
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(code);
        Some(ApiError {
            code,
            reason,
            message,
            status,
            request,
            needs: Box::default(),
        })
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            (self.code, self.reason.as_str()),
            (429, _)
                | (
                    403,
                    "rateLimitExceeded" | "userRateLimitExceeded" | "RATE_LIMIT_EXCEEDED"
                )
                | (400, "resourceNotReady")
                | (500..=599, _)
        )
    }

    /// 403 for a missing permission (not a rate limit, not a disabled API).
    pub fn is_permission_denied(&self) -> bool {
        self.code == 403
            && matches!(
                self.reason.as_str(),
                "forbidden"
                    | "insufficientPermissions"
                    | "PERMISSION_DENIED"
                    | "IAM_PERMISSION_DENIED"
            )
    }

    /// A fix the operator can apply, for the errors users meet.
    pub fn hint(&self) -> Option<String> {
        match (self.code, self.reason.as_str()) {
            (403, "accessNotConfigured" | "SERVICE_DISABLED") => {
                let api = api_name_in(&self.message);
                Some(match api {
                    Some(a) => format!("enable the API: gcloud services enable {a}"),
                    None => "enable the API named above: gcloud services enable <api>.googleapis.com".to_string(),
                })
            }
            (401, _) => Some(
                "the credentials were refused: check GOOGLE_APPLICATION_CREDENTIALS, or the VM's service account and its access scopes (it needs cloud-platform)".to_string(),
            ),
            _ if self.is_permission_denied() => {
                let mut h = "grant the missing permission to the service account (docs/iam.md lists the exact permissions and a custom role)".to_string();
                // Cloud DNS's 403 names no permission: say what the call needed.
                if !self.needs.is_empty() && !self.needs.iter().any(|n| self.message.contains(n.as_str())) {
                    h.push_str(&format!(
                        "; this call needs {} (Google's answer does not say which one is missing)",
                        self.needs.join(", ")
                    ));
                }
                Some(h)
            }
            (403, "quotaExceeded" | "QUOTA_EXCEEDED") => Some(
                "a resource quota is exhausted: delete unused resources or request more quota (gcloud compute project-info describe shows usage)".to_string(),
            ),
            _ => None,
        }
    }
}

/// The first `<name>.googleapis.com` in a message.
fn api_name_in(message: &str) -> Option<String> {
    let at = message.find(".googleapis.com")?;
    // Just after the last character that cannot be part of the name (which may be
    // longer than one byte: Google's messages are translated).
    let start = message[..at]
        .char_indices()
        .rfind(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    (start < at).then(|| format!("{}.googleapis.com", &message[start..at]))
}

impl GcpError {
    /// The API error, if Google answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            GcpError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// Records the IAM permissions the request needed on a permission-denied
    /// error, so its hint can name them where Google's message does not (Cloud
    /// DNS). Any other error is returned unchanged.
    pub fn needing<S: Into<String>>(self, perms: impl IntoIterator<Item = S>) -> GcpError {
        match self {
            GcpError::Api(mut e) if e.is_permission_denied() => {
                e.needs = perms.into_iter().map(Into::into).collect::<Vec<_>>().into();
                GcpError::Api(e)
            }
            other => other,
        }
    }

    /// HTTP code of an API error.
    pub fn code(&self) -> Option<u16> {
        self.api().map(|e| e.code)
    }

    /// Google's reason of an API error.
    pub fn reason(&self) -> Option<&str> {
        self.api().map(|e| e.reason.as_str())
    }

    /// Whether this is Google's `code` with this `reason`.
    pub fn is(&self, code: u16, reason: &str) -> bool {
        self.api()
            .is_some_and(|e| e.code == code && e.reason == reason)
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            GcpError::Api(e) => e.is_retryable(),
            GcpError::Transport { .. } => true,
            GcpError::Decode { status, .. } => *status >= 500 || *status == 200,
            GcpError::Credentials(_) => true,
            GcpError::Timeout { .. } => true,
        }
    }

    /// A short label for metrics and logs: the reason, or the kind of failure.
    pub fn label(&self) -> String {
        match self {
            GcpError::Api(e) => e.reason.clone(),
            GcpError::Transport { .. } => "transport".into(),
            GcpError::Decode { .. } => "decode".into(),
            GcpError::Credentials(_) => "credentials".into(),
            GcpError::Timeout { .. } => "timeout".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_envelope() {
        let body = br#"{"error":{"code":409,"message":"The resource 'projects/p/global/sslCertificates/c' already exists","errors":[{"message":"x","domain":"global","reason":"alreadyExists"}]}}"#;
        let e = ApiError::from_body(409, body, "POST u".into()).unwrap();
        assert_eq!(e.code, 409);
        assert_eq!(e.reason, "alreadyExists");
        assert!(e.message.contains("already exists"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn parses_aip193_envelope() {
        let body = br#"{"error":{"code":403,"message":"Permission 'run.services.get' denied","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"run.googleapis.com"}]}}"#;
        let e = ApiError::from_body(403, body, "GET u".into()).unwrap();
        assert_eq!(e.reason, "IAM_PERMISSION_DENIED");
        assert_eq!(e.status, "PERMISSION_DENIED");
        assert!(e.is_permission_denied());
        assert!(e.to_string().contains("hint: grant the missing permission"));
    }

    #[test]
    fn a_bare_forbidden_names_what_the_call_needed() {
        let body = br#"{"error":{"code":403,"message":"Forbidden","errors":[{"message":"Forbidden","domain":"global","reason":"forbidden"}]}}"#;
        let e = GcpError::Api(ApiError::from_body(403, body, "POST u".into()).unwrap())
            .needing(["dns.changes.create", "dns.resourceRecordSets.create"]);
        let text = e.to_string();
        assert!(text.contains("grant the missing permission"), "{text}");
        assert!(
            text.contains("this call needs dns.changes.create, dns.resourceRecordSets.create"),
            "{text}"
        );
        // Google's own message names it: no second list.
        let body = br#"{"error":{"code":403,"message":"Required 'compute.sslCertificates.create' permission for 'projects/p/global/sslCertificates/x'","errors":[{"message":"x","domain":"global","reason":"forbidden"}]}}"#;
        let e = GcpError::Api(ApiError::from_body(403, body, "POST u".into()).unwrap())
            .needing(["compute.sslCertificates.create"]);
        assert!(!e.to_string().contains("this call needs"));
        // Other errors are left alone.
        let body = br#"{"error":{"code":404,"message":"gone","status":"NOT_FOUND"}}"#;
        let e = GcpError::Api(ApiError::from_body(404, body, "GET u".into()).unwrap())
            .needing(["dns.changes.get"]);
        assert!(e.api().unwrap().needs.is_empty());
    }

    #[test]
    fn status_only_envelope_uses_status_as_reason() {
        let body = br#"{"error":{"code":404,"message":"gone","status":"NOT_FOUND"}}"#;
        let e = ApiError::from_body(404, body, "GET u".into()).unwrap();
        assert_eq!(e.reason, "NOT_FOUND");
    }

    #[test]
    fn api_name_after_a_multibyte_character() {
        // Found by fuzzing (gcp_json): the byte after a non-ASCII character was taken
        // as the start of the API name, slicing inside the character (a panic in
        // hint(), so in Display, so wherever the error was logged).
        let body = "{\"error\":{\"code\":403,\"message\":\"Cloud \u{171}ames.googleapis.com/overview?project= then retry.\",\"errors\":[{\"reason\":\"accessNotConfigured\"}],\"status\":\"PERMISSION_DENIED\"}}";
        let e = ApiError::from_body(403, body.as_bytes(), "GET u".into()).unwrap();
        assert_eq!(
            e.hint().unwrap(),
            "enable the API: gcloud services enable ames.googleapis.com"
        );
        assert_eq!(
            api_name_in("über-dns.googleapis.com").as_deref(),
            Some("ber-dns.googleapis.com")
        );
        assert_eq!(api_name_in("é.googleapis.com"), None);
    }

    #[test]
    fn not_an_envelope() {
        assert!(ApiError::from_body(502, b"<html>bad gateway</html>", "GET u".into()).is_none());
        assert!(ApiError::from_body(500, br#"{"error":{"code":5"#, "GET u".into()).is_none());
        assert!(ApiError::from_body(500, br#"[]"#, "GET u".into()).is_none());
    }

    #[test]
    fn retry_classification() {
        let mk = |code, reason: &str| ApiError {
            code,
            reason: reason.into(),
            message: String::new(),
            status: String::new(),
            request: String::new(),
            needs: Box::default(),
        };
        assert!(mk(503, "backendError").is_retryable());
        assert!(mk(429, "rateLimitExceeded").is_retryable());
        assert!(mk(403, "rateLimitExceeded").is_retryable());
        assert!(mk(400, "resourceNotReady").is_retryable());
        assert!(!mk(403, "forbidden").is_retryable());
        assert!(!mk(403, "quotaExceeded").is_retryable());
        assert!(!mk(412, "conditionNotMet").is_retryable());
    }

    #[test]
    fn access_not_configured_names_the_enable_command() {
        let e = ApiError {
            code: 403,
            reason: "accessNotConfigured".into(),
            message: "Cloud DNS API has not been used in project 123 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/dns.googleapis.com/overview?project=123 then retry.".into(),
            status: "PERMISSION_DENIED".into(),
            request: "GET u".into(),
            needs: Box::default(),
        };
        assert_eq!(
            e.hint().unwrap(),
            "enable the API: gcloud services enable dns.googleapis.com"
        );
    }
}
