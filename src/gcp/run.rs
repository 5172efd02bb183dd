//! Cloud Run Admin v2: the service behind the load balancer (its ingress) and its
//! IAM policy (who may invoke it). Mutations return a `google.longrunning`
//! operation, waited for here.

use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::iap::{Policy, is_concurrent_change};
use super::operation::LongRunning;
use super::{Api, Call, Gcp, GcpError};

/// Ingress that admits only internal traffic and Google's load balancers.
pub const INGRESS_INTERNAL_LOAD_BALANCER: &str = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER";

/// How long a service update may take.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(600);

/// A Cloud Run service, as read.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunService {
    /// `projects/P/locations/R/services/S`.
    pub name: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub ingress: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub reconciling: bool,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl RunService {
    /// The service's labels (empty when it has none).
    pub fn labels(&self) -> Map<String, Value> {
        self.other
            .get("labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<String> {
        self.other
            .get("labels")
            .and_then(|l| l.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceList {
    #[serde(default)]
    services: Vec<RunService>,
    #[serde(default)]
    next_page_token: Option<String>,
}

const MAX_POLICY_ATTEMPTS: u32 = 6;

impl Gcp {
    fn run_service_url(&self, region: &str, service: &str) -> String {
        self.url(
            Api::Run,
            &format!(
                "projects/{}/locations/{region}/services/{service}",
                self.project
            ),
        )
    }

    /// One service, `None` when it does not exist in `region`.
    pub async fn get_run_service(
        &self,
        region: &str,
        service: &str,
    ) -> Result<Option<RunService>, GcpError> {
        let url = self.run_service_url(region, service);
        match self
            .call::<(), RunService>(Call::new(Api::Run, "services.get"), Method::GET, &url, None)
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Services of every region (`locations/-`), to tell where a service lives.
    pub async fn list_run_services_everywhere(&self) -> Result<Vec<RunService>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url(
                Api::Run,
                &format!(
                    "projects/{}/locations/-/services?pageSize=500",
                    self.project
                ),
            );
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={t}"));
            }
            let page: ServiceList = self
                .call::<(), _>(
                    Call::new(Api::Run, "services.list"),
                    Method::GET,
                    &url,
                    None,
                )
                .await?;
            out.extend(page.services);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Sets the service's ingress (`updateMask=ingress`) and waits until the
    /// update is done. With `labels`, the service's labels are replaced by them
    /// in the same update (`updateMask=ingress,labels`), so a note about the
    /// change cannot be lost between two calls.
    pub async fn set_run_ingress(
        &self,
        region: &str,
        service: &str,
        ingress: &str,
        labels: Option<&Map<String, Value>>,
    ) -> Result<RunService, GcpError> {
        let mut body = serde_json::json!({ "ingress": ingress });
        let mask = match labels {
            Some(l) => {
                body["labels"] = Value::Object(l.clone());
                "ingress,labels"
            }
            None => "ingress",
        };
        let url = format!(
            "{}?updateMask={}",
            self.run_service_url(region, service),
            super::enc(mask)
        );
        let op: LongRunning = self
            .call(
                Call::new(Api::Run, "services.patch"),
                Method::PATCH,
                &url,
                Some(&body),
            )
            .await?;
        let op = self.wait_long_running(Api::Run, op, UPDATE_TIMEOUT).await?;
        let svc = op
            .response
            .and_then(|r| serde_json::from_value::<RunService>(r).ok());
        match svc {
            Some(s) => Ok(s),
            None => self
                .get_run_service(region, service)
                .await?
                .ok_or_else(|| GcpError::Decode {
                    method: "PATCH".into(),
                    url,
                    status: 200,
                    message: "the service vanished during the update".into(),
                }),
        }
    }

    /// The service's IAM policy (a GET here, unlike IAP's POST).
    pub async fn get_run_policy(&self, region: &str, service: &str) -> Result<Policy, GcpError> {
        let url = format!(
            "{}:getIamPolicy?options.requestedPolicyVersion=3",
            self.run_service_url(region, service)
        );
        self.call::<(), _>(
            Call::new(Api::Run, "services.getIamPolicy"),
            Method::GET,
            &url,
            None,
        )
        .await
    }

    /// Replaces the service's IAM policy; `policy.etag` must be the one read.
    pub async fn set_run_policy(
        &self,
        region: &str,
        service: &str,
        policy: &Policy,
    ) -> Result<Policy, GcpError> {
        let url = format!("{}:setIamPolicy", self.run_service_url(region, service));
        let body = serde_json::json!({ "policy": policy });
        let mut call = Call::new(Api::Run, "services.setIamPolicy");
        call.retry = false;
        self.call(call, Method::POST, &url, Some(&body)).await
    }

    /// Read-modify-write of the service's IAM policy; repeats on 409 ABORTED.
    pub async fn edit_run_policy(
        &self,
        region: &str,
        service: &str,
        edit: impl Fn(&mut Policy) -> bool,
    ) -> Result<bool, GcpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut p = self.get_run_policy(region, service).await?;
            if !edit(&mut p) {
                return Ok(false);
            }
            if p.bindings.iter().any(|b| b.condition.is_some()) {
                p.version = Some(3);
            }
            match self.set_run_policy(region, service, &p).await {
                Ok(_) => return Ok(true),
                Err(e) if is_concurrent_change(&e) && attempt < MAX_POLICY_ATTEMPTS => {
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keeps_unknown_fields() {
        let s: RunService = serde_json::from_str(
            r#"{"name":"projects/p/locations/r/services/s","ingress":"INGRESS_TRAFFIC_ALL","generation":"3"}"#,
        )
        .unwrap();
        assert_eq!(s.ingress.as_deref(), Some("INGRESS_TRAFFIC_ALL"));
        assert_eq!(s.other["generation"], "3");
    }
}
