//! Compute Engine v1: SSL certificates, target HTTPS proxies, project quotas.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::operation::Operation;
use super::{Api, Call, Gcp, GcpError, enc};

/// A global `sslCertificates` resource, as read back (never with the key).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SslCertificate {
    pub name: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub self_link: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "type")]
    pub cert_type: Option<String>,
    /// The PEM chain.
    #[serde(default)]
    pub certificate: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub expire_time: Option<String>,
    #[serde(default)]
    pub subject_alternative_names: Vec<String>,
    #[serde(default)]
    pub creation_timestamp: Option<String>,
}

/// The body of an `sslCertificates.insert`. `Debug` never shows the key.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSslCertificate {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub cert_type: &'static str,
    pub self_managed: SelfManaged,
}

/// `selfManaged`: the chain and the private key, both PEM.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfManaged {
    pub certificate: String,
    pub private_key: String,
}

impl std::fmt::Debug for NewSslCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSslCertificate")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("private_key", &"[censored]")
            .finish()
    }
}

/// A global target HTTPS proxy. Unmodelled fields are kept.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetHttpsProxy {
    pub name: String,
    #[serde(default)]
    pub self_link: String,
    #[serde(default)]
    pub url_map: Option<String>,
    /// Full URLs, in order; the first is served when no SNI name matches.
    #[serde(default)]
    pub ssl_certificates: Vec<String>,
    #[serde(default)]
    pub certificate_map: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct List<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// The last path segment of a resource URL: its name.
pub fn name_of(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

impl Gcp {
    fn global(&self, collection: &str) -> String {
        self.url(
            Api::Compute,
            &format!("projects/{}/global/{collection}", self.project),
        )
    }

    /// The canonical URL of a global resource, as Compute writes references.
    pub fn global_link(&self, collection: &str, name: &str) -> String {
        format!(
            "https://www.googleapis.com/compute/v1/projects/{}/global/{collection}/{name}",
            self.project
        )
    }

    async fn list_all<T: for<'de> Deserialize<'de>>(
        &self,
        op: &'static str,
        base: String,
    ) -> Result<Vec<T>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let sep = if base.contains('?') { '&' } else { '?' };
            let mut url = format!("{base}{sep}maxResults=500");
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", enc(t)));
            }
            let page: List<T> = self
                .call::<(), _>(Call::new(Api::Compute, op), Method::GET, &url, None)
                .await?;
            out.extend(page.items);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// One certificate, `None` when it does not exist.
    pub async fn get_ssl_certificate(
        &self,
        name: &str,
    ) -> Result<Option<SslCertificate>, GcpError> {
        let url = format!("{}/{}", self.global("sslCertificates"), enc(name));
        match self
            .call::<(), SslCertificate>(
                Call::new(Api::Compute, "sslCertificates.get"),
                Method::GET,
                &url,
                None,
            )
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Certificates, optionally filtered (`name eq app-.*`).
    pub async fn list_ssl_certificates(
        &self,
        filter: Option<&str>,
    ) -> Result<Vec<SslCertificate>, GcpError> {
        let mut base = self.global("sslCertificates");
        if let Some(f) = filter {
            base.push_str(&format!("?filter={}", enc(f)));
        }
        self.list_all("sslCertificates.list", base).await
    }

    /// Starts an insert; wait for the operation.
    pub async fn insert_ssl_certificate(
        &self,
        cert: &NewSslCertificate,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let url = self.with_request_id(
            intent,
            &Method::POST,
            &self.global("sslCertificates"),
            Some(cert),
        );
        self.call(
            Call::new(Api::Compute, "sslCertificates.insert"),
            Method::POST,
            &url,
            Some(cert),
        )
        .await
    }

    /// Starts a delete; wait for the operation.
    pub async fn delete_ssl_certificate(
        &self,
        name: &str,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let url = self.with_request_id::<()>(
            intent,
            &Method::DELETE,
            &format!("{}/{}", self.global("sslCertificates"), enc(name)),
            None,
        );
        self.call::<(), _>(
            Call::new(Api::Compute, "sslCertificates.delete"),
            Method::DELETE,
            &url,
            None,
        )
        .await
    }

    /// One target HTTPS proxy.
    pub async fn get_target_https_proxy(&self, name: &str) -> Result<TargetHttpsProxy, GcpError> {
        let url = format!("{}/{}", self.global("targetHttpsProxies"), enc(name));
        self.call::<(), _>(
            Call::new(Api::Compute, "targetHttpsProxies.get"),
            Method::GET,
            &url,
            None,
        )
        .await
    }

    /// Every target HTTPS proxy of the project.
    pub async fn list_target_https_proxies(&self) -> Result<Vec<TargetHttpsProxy>, GcpError> {
        self.list_all("targetHttpsProxies.list", self.global("targetHttpsProxies"))
            .await
    }

    /// Replaces the proxy's certificate list (full URLs, in order). Note the path:
    /// `setSslCertificates` has no `/global/` segment.
    pub async fn set_ssl_certificates(
        &self,
        proxy: &str,
        certificates: &[String],
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let body = serde_json::json!({ "sslCertificates": certificates });
        let url = self.with_request_id(
            intent,
            &Method::POST,
            &self.url(
                Api::Compute,
                &format!(
                    "projects/{}/targetHttpsProxies/{}/setSslCertificates",
                    self.project,
                    enc(proxy)
                ),
            ),
            Some(&body),
        );
        self.call(
            Call::new(Api::Compute, "targetHttpsProxies.setSslCertificates"),
            Method::POST,
            &url,
            Some(&body),
        )
        .await
    }
}

/// Certificate Manager on a target HTTPS proxy.
impl Gcp {
    /// Attaches a certificate map to the proxy (`map`: its full name,
    /// [`Gcp::certificate_map_reference`]), or with `None` detaches it; while a
    /// map is attached it is what the proxy serves, whatever its
    /// `sslCertificates`. Note the path: unlike `setSslCertificates`, this one
    /// has the `/global/` segment.
    pub async fn set_certificate_map(
        &self,
        proxy: &str,
        map: Option<&str>,
        intent: &str,
    ) -> Result<Operation, GcpError> {
        let body = match map {
            Some(m) => serde_json::json!({ "certificateMap": m }),
            None => serde_json::json!({}),
        };
        let url = self.with_request_id(
            intent,
            &Method::POST,
            &format!(
                "{}/{}/setCertificateMap",
                self.global("targetHttpsProxies"),
                enc(proxy)
            ),
            Some(&body),
        );
        self.call(
            Call::new(Api::Compute, "targetHttpsProxies.setCertificateMap"),
            Method::POST,
            &url,
            Some(&body),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_certificate_debug_hides_the_key() {
        let c = NewSslCertificate {
            name: "app-0123".into(),
            description: "x".into(),
            cert_type: "SELF_MANAGED",
            self_managed: SelfManaged {
                certificate: "CERT".into(),
                private_key: "-----BEGIN PRIVATE KEY-----SECRET".into(),
            },
        };
        let d = format!("{c:?}");
        assert!(!d.contains("SECRET"), "{d}");
        let body = serde_json::to_value(&c).unwrap();
        assert_eq!(body["type"], "SELF_MANAGED");
        assert_eq!(
            body["selfManaged"]["privateKey"],
            "-----BEGIN PRIVATE KEY-----SECRET"
        );
    }

    #[test]
    fn proxy_keeps_unknown_fields() {
        let p: TargetHttpsProxy = serde_json::from_str(
            r#"{"name":"p","sslCertificates":["https://www.googleapis.com/compute/v1/projects/x/global/sslCertificates/a"],"quicOverride":"NONE"}"#,
        )
        .unwrap();
        assert_eq!(name_of(&p.ssl_certificates[0]), "a");
        assert_eq!(p.other["quicOverride"], "NONE");
    }
}
