//! Service Usage v1beta1: `generateServiceIdentity`, which creates a Google
//! service agent (e.g. IAP's `service-N@gcp-sa-iap.iam.gserviceaccount.com`) so
//! roles can be granted to it. It is idempotent: an existing agent is returned.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use super::operation::LongRunning;
use super::{Api, Call, Gcp, GcpError};

#[derive(Deserialize)]
struct ServiceIdentity {
    #[serde(default)]
    email: String,
}

impl Gcp {
    /// Creates (or finds) the service agent of `api` (`iap.googleapis.com`) and
    /// returns its email.
    pub async fn generate_service_identity(&self, api: &str) -> Result<String, GcpError> {
        let url = self.url(
            Api::ServiceUsage,
            &format!(
                "projects/{}/services/{api}:generateServiceIdentity",
                self.project
            ),
        );
        let op: LongRunning = self
            .call::<(), _>(
                Call::new(Api::ServiceUsage, "services.generateServiceIdentity"),
                Method::POST,
                &url,
                None,
            )
            .await?;
        let op = self
            .wait_long_running(Api::ServiceUsage, op, Duration::from_secs(300))
            .await?;
        let email = op
            .response
            .and_then(|r| serde_json::from_value::<ServiceIdentity>(r).ok())
            .map(|s| s.email)
            .unwrap_or_default();
        if email.is_empty() {
            return Err(GcpError::Decode {
                method: "POST".into(),
                url,
                status: 200,
                message: "the operation finished without a service identity email".into(),
            });
        }
        Ok(email)
    }
}
