//! Compute Engine v1: the load-balancer resources `bootstrap` builds around the
//! certificates — serverless NEGs, backend services, URL maps, global addresses,
//! global forwarding rules and target HTTP(S) proxies.
//!
//! Every mutation carries a `requestId` (a retried request returns the original
//! operation) and returns the `Operation` to wait for; reads return `None` for 404.
//! Unmodelled fields are kept (`other`) so what we read can be compared and
//! written back without losing anything.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::compute::TargetHttpsProxy;
use super::operation::Operation;
use super::{Api, Call, Gcp, GcpError, enc};

/// A regional network endpoint group (we create only serverless ones).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkEndpointGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_endpoint_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_run: Option<CloudRunTarget>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `NetworkEndpointGroup.cloudRun`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudRunTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A global backend service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendService {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing_scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iap: Option<BackendIap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One of `BackendService.backends`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Full URL of the instance group or NEG.
    pub group: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `BackendService.iap`. The secret is input-only; Compute returns its SHA-256.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendIap {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_client_secret_sha256: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl std::fmt::Debug for BackendIap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("BackendIap")
            .field("enabled", &self.enabled)
            .field("oauth2_client_id", &self.oauth2_client_id)
            .field(
                "oauth2_client_secret",
                &self.oauth2_client_secret.as_ref().map(|_| "[censored]"),
            )
            .field(
                "oauth2_client_secret_sha256",
                &self.oauth2_client_secret_sha256,
            )
            .finish()
    }
}

/// A global URL map.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UrlMap {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_url_redirect: Option<UrlRedirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `UrlMap.defaultUrlRedirect`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UrlRedirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_response_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_query: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A global address.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The IP, output only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_tier: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A global forwarding rule. `IPAddress` is create-only.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ForwardingRule {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, rename = "IPAddress", skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(
        default,
        rename = "IPProtocol",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing_scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_tier: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A global target HTTP proxy (the port-80 redirect).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetHttpProxy {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_map: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The body of a `targetHttpsProxies.insert`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NewTargetHttpsProxy {
    pub name: String,
    pub description: String,
    pub url_map: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssl_certificates: Vec<String>,
    /// A Certificate Manager map (`//certificatemanager.googleapis.com/...`),
    /// served instead of `sslCertificates`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_map: Option<String>,
}

/// A global collection of the resources above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    BackendServices,
    UrlMaps,
    Addresses,
    ForwardingRules,
    TargetHttpsProxies,
    TargetHttpProxies,
    SslCertificates,
}

impl Collection {
    /// The path segment (`urlMaps`).
    pub fn path(self) -> &'static str {
        match self {
            Collection::BackendServices => "backendServices",
            Collection::UrlMaps => "urlMaps",
            Collection::Addresses => "addresses",
            Collection::ForwardingRules => "forwardingRules",
            Collection::TargetHttpsProxies => "targetHttpsProxies",
            Collection::TargetHttpProxies => "targetHttpProxies",
            Collection::SslCertificates => "sslCertificates",
        }
    }

    fn op(self, verb: &str) -> &'static str {
        // Operation labels are `&'static str`: spell each one out.
        match (self, verb) {
            (Collection::BackendServices, "get") => "backendServices.get",
            (Collection::BackendServices, "insert") => "backendServices.insert",
            (Collection::BackendServices, "patch") => "backendServices.patch",
            (Collection::BackendServices, _) => "backendServices.delete",
            (Collection::UrlMaps, "get") => "urlMaps.get",
            (Collection::UrlMaps, "insert") => "urlMaps.insert",
            (Collection::UrlMaps, "patch") => "urlMaps.patch",
            (Collection::UrlMaps, _) => "urlMaps.delete",
            (Collection::Addresses, "get") => "globalAddresses.get",
            (Collection::Addresses, "insert") => "globalAddresses.insert",
            (Collection::Addresses, _) => "globalAddresses.delete",
            (Collection::ForwardingRules, "get") => "globalForwardingRules.get",
            (Collection::ForwardingRules, "insert") => "globalForwardingRules.insert",
            (Collection::ForwardingRules, _) => "globalForwardingRules.delete",
            (Collection::TargetHttpsProxies, "get") => "targetHttpsProxies.get",
            (Collection::TargetHttpsProxies, "insert") => "targetHttpsProxies.insert",
            (Collection::TargetHttpsProxies, _) => "targetHttpsProxies.delete",
            (Collection::TargetHttpProxies, "get") => "targetHttpProxies.get",
            (Collection::TargetHttpProxies, "insert") => "targetHttpProxies.insert",
            (Collection::TargetHttpProxies, _) => "targetHttpProxies.delete",
            (Collection::SslCertificates, "get") => "sslCertificates.get",
            (Collection::SslCertificates, "insert") => "sslCertificates.insert",
            (Collection::SslCertificates, _) => "sslCertificates.delete",
        }
    }
}

impl Gcp {
    fn lb_global(&self, c: Collection) -> String {
        self.url(
            Api::Compute,
            &format!("projects/{}/global/{}", self.project, c.path()),
        )
    }

    fn lb_negs(&self, region: &str) -> String {
        self.url(
            Api::Compute,
            &format!(
                "projects/{}/regions/{}/networkEndpointGroups",
                self.project,
                enc(region)
            ),
        )
    }

    /// The canonical URL of a regional NEG, as Compute writes references.
    pub fn neg_link(&self, region: &str, name: &str) -> String {
        format!(
            "https://www.googleapis.com/compute/v1/projects/{}/regions/{region}/networkEndpointGroups/{name}",
            self.project
        )
    }

    async fn get_opt<T: DeserializeOwned>(
        &self,
        op: &'static str,
        url: &str,
    ) -> Result<Option<T>, GcpError> {
        match self
            .call::<(), T>(Call::new(Api::Compute, op), Method::GET, url, None)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads a global resource; `None` when it does not exist.
    pub async fn get_global<T: DeserializeOwned>(
        &self,
        c: Collection,
        name: &str,
    ) -> Result<Option<T>, GcpError> {
        let url = format!("{}/{}", self.lb_global(c), enc(name));
        self.get_opt(c.op("get"), &url).await
    }

    /// Starts the insert of a global resource.
    pub async fn insert_global<B: Serialize + ?Sized>(
        &self,
        c: Collection,
        body: &B,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let url = self.with_request_id(intent, &Method::POST, &self.lb_global(c), Some(body));
        self.call(
            Call::new(Api::Compute, c.op("insert")),
            Method::POST,
            &url,
            Some(body),
        )
        .await
    }

    /// Starts the delete of a global resource.
    pub async fn delete_global(
        &self,
        c: Collection,
        name: &str,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let url = self.with_request_id::<()>(
            intent,
            &Method::DELETE,
            &format!("{}/{}", self.lb_global(c), enc(name)),
            None,
        );
        self.call::<(), _>(
            Call::new(Api::Compute, c.op("delete")),
            Method::DELETE,
            &url,
            None,
        )
        .await
    }

    /// JSON-merge-patches a backend service or URL map. `patch` must carry the
    /// `fingerprint` read with the resource (412 `conditionNotMet` when stale).
    pub async fn patch_global(
        &self,
        c: Collection,
        name: &str,
        patch: &Value,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let url = self.with_request_id(
            intent,
            &Method::PATCH,
            &format!("{}/{}", self.lb_global(c), enc(name)),
            Some(patch),
        );
        self.call(
            Call::new(Api::Compute, c.op("patch")),
            Method::PATCH,
            &url,
            Some(patch),
        )
        .await
    }

    /// One backend service.
    pub async fn get_backend_service(
        &self,
        name: &str,
    ) -> Result<Option<BackendService>, GcpError> {
        self.get_global(Collection::BackendServices, name).await
    }

    /// Starts a backend service insert.
    pub async fn insert_backend_service(
        &self,
        b: &BackendService,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        self.insert_global(Collection::BackendServices, b, intent)
            .await
    }

    /// One URL map.
    pub async fn get_url_map(&self, name: &str) -> Result<Option<UrlMap>, GcpError> {
        self.get_global(Collection::UrlMaps, name).await
    }

    /// One global address.
    pub async fn get_global_address(&self, name: &str) -> Result<Option<Address>, GcpError> {
        self.get_global(Collection::Addresses, name).await
    }

    /// One global forwarding rule.
    pub async fn get_global_forwarding_rule(
        &self,
        name: &str,
    ) -> Result<Option<ForwardingRule>, GcpError> {
        self.get_global(Collection::ForwardingRules, name).await
    }

    /// One target HTTPS proxy, `None` when it does not exist.
    pub async fn find_target_https_proxy(
        &self,
        name: &str,
    ) -> Result<Option<TargetHttpsProxy>, GcpError> {
        self.get_global(Collection::TargetHttpsProxies, name).await
    }

    /// One target HTTP proxy.
    pub async fn get_target_http_proxy(
        &self,
        name: &str,
    ) -> Result<Option<TargetHttpProxy>, GcpError> {
        self.get_global(Collection::TargetHttpProxies, name).await
    }

    /// Points a target HTTP(S) proxy at another URL map. Like
    /// `setSslCertificates`, the path has no `/global/` segment.
    pub async fn set_proxy_url_map(
        &self,
        c: Collection,
        proxy: &str,
        url_map: &str,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let (path, op) = match c {
            Collection::TargetHttpsProxies => {
                ("targetHttpsProxies", "targetHttpsProxies.setUrlMap")
            }
            _ => ("targetHttpProxies", "targetHttpProxies.setUrlMap"),
        };
        let body = serde_json::json!({ "urlMap": url_map });
        let url = self.with_request_id(
            intent,
            &Method::POST,
            &self.url(
                Api::Compute,
                &format!("projects/{}/{path}/{}/setUrlMap", self.project, enc(proxy)),
            ),
            Some(&body),
        );
        self.call(Call::new(Api::Compute, op), Method::POST, &url, Some(&body))
            .await
    }

    /// One regional network endpoint group.
    pub async fn get_neg(
        &self,
        region: &str,
        name: &str,
    ) -> Result<Option<NetworkEndpointGroup>, GcpError> {
        let url = format!("{}/{}", self.lb_negs(region), enc(name));
        self.get_opt("regionNetworkEndpointGroups.get", &url).await
    }

    /// Starts a regional NEG insert (a regional operation).
    pub async fn insert_neg(
        &self,
        region: &str,
        neg: &NetworkEndpointGroup,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let url = self.with_request_id(intent, &Method::POST, &self.lb_negs(region), Some(neg));
        self.call(
            Call::new(Api::Compute, "regionNetworkEndpointGroups.insert"),
            Method::POST,
            &url,
            Some(neg),
        )
        .await
    }

    /// Starts a regional NEG delete.
    pub async fn delete_neg(
        &self,
        region: &str,
        name: &str,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let url = self.with_request_id::<()>(
            intent,
            &Method::DELETE,
            &format!("{}/{}", self.lb_negs(region), enc(name)),
            None,
        );
        self.call::<(), _>(
            Call::new(Api::Compute, "regionNetworkEndpointGroups.delete"),
            Method::DELETE,
            &url,
            None,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_rule_wire_names() {
        let fr = ForwardingRule {
            name: "fr".into(),
            ip_address: Some("https://x/addresses/ip".into()),
            ip_protocol: Some("TCP".into()),
            port_range: Some("443".into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&fr).unwrap();
        assert_eq!(v["IPAddress"], "https://x/addresses/ip");
        assert_eq!(v["IPProtocol"], "TCP");
        assert_eq!(v["portRange"], "443");
        assert!(v.get("selfLink").is_none());
    }

    #[test]
    fn backend_keeps_unknown_fields_and_hides_the_secret() {
        let b: BackendService = serde_json::from_str(
            r#"{"name":"b","timeoutSec":30,"iap":{"enabled":true,"oauth2ClientSecretSha256":"ab"},"backends":[{"group":"g","balancingMode":"UTILIZATION"}]}"#,
        )
        .unwrap();
        assert_eq!(b.other["timeoutSec"], 30);
        assert_eq!(b.backends[0].other["balancingMode"], "UTILIZATION");
        let iap = BackendIap {
            enabled: true,
            oauth2_client_secret: Some("SECRET".into()),
            ..Default::default()
        };
        assert!(!format!("{iap:?}").contains("SECRET"));
    }
}
