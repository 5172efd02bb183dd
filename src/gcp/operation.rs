//! Long-running operations: Compute's `Operation` (PENDING -> RUNNING -> DONE, an
//! error inside a DONE operation is a failure) and `google.longrunning.Operation`
//! (Cloud Run, Service Usage: `done`, `error`, `response`).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Api, ApiError, Call, Gcp, GcpError};

/// A Compute Engine operation.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub operation_type: String,
    #[serde(default)]
    pub target_link: String,
    #[serde(default)]
    pub self_link: String,
    /// URL of the region, for regional operations.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub error: Option<OperationError>,
    #[serde(default)]
    pub http_error_status_code: Option<u16>,
    #[serde(default)]
    pub http_error_message: Option<String>,
}

/// `Operation.error`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct OperationError {
    #[serde(default)]
    pub errors: Vec<OperationErrorItem>,
}

/// One of `Operation.error.errors`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct OperationErrorItem {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl Operation {
    pub fn is_done(&self) -> bool {
        self.status == "DONE"
    }

    /// The failure carried by a DONE operation, as an API error keeping Google's
    /// code (`httpErrorStatusCode`), reason (`errors[0].code`) and message.
    pub fn failure(&self) -> Option<ApiError> {
        let e = self.error.as_ref()?;
        let first = e.errors.first();
        Some(ApiError {
            code: self.http_error_status_code.unwrap_or(400),
            reason: first
                .map(|f| f.code.clone())
                .unwrap_or_else(|| "operationFailed".into()),
            message: first
                .map(|f| f.message.clone())
                .or_else(|| self.http_error_message.clone())
                .unwrap_or_default(),
            status: self.http_error_message.clone().unwrap_or_default(),
            request: format!(
                "operation {} ({} {})",
                self.name, self.operation_type, self.target_link
            ),
            needs: Box::default(),
        })
    }

    fn region_name(&self) -> Option<&str> {
        self.region
            .as_deref()
            .and_then(|r| r.trim_end_matches('/').rsplit('/').next())
    }
}

/// A `google.longrunning.Operation`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LongRunning {
    pub name: String,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub error: Option<Status>,
    #[serde(default)]
    pub response: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// `google.rpc.Status`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Status {
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
}

/// `sslCertificates/web-1` out of a target link, for progress lines.
fn short_target(link: &str) -> &str {
    let mut cut = link.len();
    for _ in 0..2 {
        match link[..cut].rfind('/') {
            Some(i) => cut = i,
            None => return link,
        }
    }
    &link[cut + 1..]
}

/// gRPC code -> HTTP status, for errors inside long-running operations.
fn grpc_to_http(code: i32) -> (u16, &'static str) {
    match code {
        3 => (400, "INVALID_ARGUMENT"),
        5 => (404, "NOT_FOUND"),
        6 => (409, "ALREADY_EXISTS"),
        7 => (403, "PERMISSION_DENIED"),
        8 => (429, "RESOURCE_EXHAUSTED"),
        9 => (400, "FAILED_PRECONDITION"),
        10 => (409, "ABORTED"),
        14 => (503, "UNAVAILABLE"),
        16 => (401, "UNAUTHENTICATED"),
        _ => (500, "INTERNAL"),
    }
}

impl Gcp {
    /// Waits until a Compute operation is DONE (long-polling `wait`), and turns an
    /// error inside it into `Err`. `timeout` bounds the whole wait.
    pub async fn wait_operation(
        &self,
        op: Operation,
        timeout: Duration,
    ) -> Result<Operation, GcpError> {
        let started = Instant::now();
        let mut op = op;
        let _step = (!op.is_done()).then(|| {
            crate::progress::Step::start(format!(
                "waiting for Google: {} {}",
                op.operation_type,
                short_target(&op.target_link)
            ))
        });
        while !op.is_done() {
            if started.elapsed() > timeout {
                return Err(GcpError::Timeout {
                    what: format!("operation {} ({})", op.name, op.operation_type),
                    waited: started.elapsed(),
                });
            }
            // Build the URL from our endpoint: selfLinks name Google's public host,
            // which is wrong for emulators and proxies.
            let path = match op.region_name() {
                Some(r) => format!(
                    "projects/{}/regions/{r}/operations/{}/wait",
                    self.project, op.name
                ),
                None => format!(
                    "projects/{}/global/operations/{}/wait",
                    self.project, op.name
                ),
            };
            let url = self.url(Api::Compute, &path);
            let mut call = Call::new(Api::Compute, "operations.wait");
            // `wait` holds the request open for up to two minutes.
            call.timeout = Duration::from_secs(150);
            op = self
                .call::<(), Operation>(call, Method::POST, &url, None)
                .await?;
        }
        match op.failure() {
            Some(e) => Err(GcpError::Api(e)),
            None => Ok(op),
        }
    }

    /// Waits until a long-running operation is done; `base` is the API whose
    /// `v*/{name}` serves it.
    pub async fn wait_long_running(
        &self,
        api: Api,
        op: LongRunning,
        timeout: Duration,
    ) -> Result<LongRunning, GcpError> {
        let started = Instant::now();
        let mut op = op;
        let mut delay = Duration::from_millis(20);
        let _step = (!op.done).then(|| {
            crate::progress::Step::start(format!(
                "waiting for Google: {} operation {}",
                api.as_str(),
                op.name.rsplit('/').next().unwrap_or_default()
            ))
        });
        while !op.done {
            if started.elapsed() > timeout {
                return Err(GcpError::Timeout {
                    what: format!("operation {}", op.name),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            let url = self.url(api, &op.name);
            op = self
                .call::<(), LongRunning>(Call::new(api, "operations.get"), Method::GET, &url, None)
                .await?;
        }
        if let Some(e) = &op.error {
            let (code, status) = grpc_to_http(e.code);
            return Err(GcpError::Api(ApiError {
                code,
                reason: status.to_string(),
                message: e.message.clone(),
                status: status.to_string(),
                request: format!("operation {}", op.name),
                needs: Box::default(),
            }));
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_operation_with_error_is_a_failure_keeping_google_fields() {
        let op: Operation = serde_json::from_str(
            r#"{"kind":"compute#operation","name":"operation-1","status":"DONE","operationType":"insert",
               "targetLink":"https://www.googleapis.com/compute/v1/projects/p/global/sslCertificates/c",
               "error":{"errors":[{"code":"QUOTA_EXCEEDED","message":"Quota 'SSL_CERTIFICATES' exceeded.  Limit: 30.0 globally."}]},
               "httpErrorStatusCode":403,"httpErrorMessage":"FORBIDDEN"}"#,
        )
        .unwrap();
        let f = op.failure().unwrap();
        assert_eq!(f.code, 403);
        assert_eq!(f.reason, "QUOTA_EXCEEDED");
        assert!(f.message.contains("SSL_CERTIFICATES"));
    }

    #[test]
    fn regional_operations_know_their_region() {
        let op: Operation = serde_json::from_str(
            r#"{"name":"op","status":"RUNNING","region":"https://www.googleapis.com/compute/v1/projects/p/regions/europe-west1"}"#,
        )
        .unwrap();
        assert_eq!(op.region_name(), Some("europe-west1"));
        assert!(op.failure().is_none());
    }

    #[test]
    fn targets_are_shortened_to_collection_and_name() {
        assert_eq!(
            short_target(
                "https://compute.googleapis.com/compute/v1/projects/p/global/sslCertificates/web-1"
            ),
            "sslCertificates/web-1"
        );
        assert_eq!(short_target("a/b"), "a/b");
        assert_eq!(short_target("plain"), "plain");
    }

    #[test]
    fn grpc_codes_map_to_http() {
        assert_eq!(grpc_to_http(7), (403, "PERMISSION_DENIED"));
        assert_eq!(grpc_to_http(5), (404, "NOT_FOUND"));
        assert_eq!(grpc_to_http(99), (500, "INTERNAL"));
    }
}
