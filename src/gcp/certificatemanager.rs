//! Certificate Manager v1 (location `global`): self-managed certificates,
//! certificate maps and their entries. Every mutation returns a
//! `google.longrunning` operation; [`Gcp::wait_certificate_manager`] waits for
//! it and turns an error inside it into `Err` (Google's gRPC status kept).
//!
//! The API takes no `requestId`, so a mutation is made idempotent by its
//! resource id instead: a create repeated after a lost answer (the client
//! retries transient failures) ends in 409 `ALREADY_EXISTS` for the resource
//! the first attempt made, and a delete repeated in 404 `NOT_FOUND`. Callers
//! read the resource back and compare ([`is_already_exists`],
//! [`GcpError::is_not_found`]). A patch is idempotent by itself.
//!
//! Names: resources are addressed by id here (the project and location are the
//! client's); entries refer to certificates by full name
//! ([`Gcp::certificate_name`]), and Google returns those names with the
//! project's number; a target HTTPS proxy refers to a map by its full resource
//! name ([`Gcp::certificate_map_reference`]).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::operation::LongRunning;
use super::{Api, Call, Gcp, GcpError, enc};

/// The one location used: maps for global external Application Load Balancers
/// live there.
pub const LOCATION: &str = "global";

/// How long a Certificate Manager operation may take before we give up.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

/// A certificate, as read back (never with its key).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// `projects/P/locations/global/certificates/ID`.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The PEM chain, leaf first.
    #[serde(default)]
    pub pem_certificate: Option<String>,
    #[serde(default)]
    pub san_dnsnames: Vec<String>,
    /// RFC 3339.
    #[serde(default)]
    pub expire_time: Option<String>,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub update_time: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    /// Present (empty: its fields are input only) on a self-managed certificate.
    #[serde(default)]
    pub self_managed: Option<Value>,
    /// Present on a Google-managed certificate.
    #[serde(default)]
    pub managed: Option<Value>,
    /// The map entries using it.
    #[serde(default)]
    pub used_by: Vec<UsedBy>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Certificate {
    /// The last segment of the name.
    pub fn id(&self) -> &str {
        id_of(&self.name)
    }
}

/// One user of a certificate (`//certificatemanager.googleapis.com/...` name).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct UsedBy {
    #[serde(default)]
    pub name: String,
}

/// `selfManaged`: the chain and its private key, both PEM. `Debug` never shows
/// the key.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfManaged {
    pub pem_certificate: String,
    pub pem_private_key: String,
}

impl std::fmt::Debug for SelfManaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfManaged")
            .field(
                "pem_certificate",
                &format!("{} bytes", self.pem_certificate.len()),
            )
            .field("pem_private_key", &"[censored]")
            .finish()
    }
}

/// The body of `certificates.create`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCertificate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub self_managed: SelfManaged,
}

/// A `certificates.patch`: the fields given are replaced, the others kept
/// (the update mask is built from what is set).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// A new chain and key: the certificate is replaced in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_managed: Option<SelfManaged>,
}

impl CertificatePatch {
    fn mask(&self) -> String {
        mask(&[
            ("description", self.description.is_some()),
            ("labels", self.labels.is_some()),
            ("selfManaged", self.self_managed.is_some()),
        ])
    }
}

/// A certificate map.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateMap {
    /// `projects/P/locations/global/certificateMaps/ID`.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The target proxies serving it (those with a forwarding rule).
    #[serde(default)]
    pub gclb_targets: Vec<GclbTarget>,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub update_time: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl CertificateMap {
    /// The last segment of the name.
    pub fn id(&self) -> &str {
        id_of(&self.name)
    }
}

/// One target proxy serving a map.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GclbTarget {
    /// `//compute.googleapis.com/projects/P/global/targetHttpsProxies/NAME`.
    #[serde(default)]
    pub target_https_proxy: Option<String>,
    #[serde(default)]
    pub target_ssl_proxy: Option<String>,
    #[serde(default)]
    pub ip_configs: Vec<IpConfig>,
}

/// An address and ports a map is served on.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IpConfig {
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub ports: Vec<u32>,
}

/// The body of `certificateMaps.create` (and of a map patch, mask from what is set).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

impl MapFields {
    fn mask(&self) -> String {
        mask(&[
            ("description", self.description.is_some()),
            ("labels", self.labels.is_some()),
        ])
    }
}

/// A certificate map entry.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateMapEntry {
    /// `projects/P/locations/global/certificateMaps/M/certificateMapEntries/ID`.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The SNI name it serves (`www.example.com`, `*.example.com`)...
    #[serde(default)]
    pub hostname: Option<String>,
    /// ...or `PRIMARY`: what is served when no hostname matches.
    #[serde(default)]
    pub matcher: Option<String>,
    /// Full certificate names (Google writes the project as its number).
    #[serde(default)]
    pub certificates: Vec<String>,
    /// `ACTIVE` or `PENDING`.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub create_time: Option<String>,
    #[serde(default)]
    pub update_time: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl CertificateMapEntry {
    /// The last segment of the name.
    pub fn id(&self) -> &str {
        id_of(&self.name)
    }

    /// The ids of its certificates (whatever form of the project they name).
    pub fn certificate_ids(&self) -> Vec<&str> {
        self.certificates.iter().map(|c| id_of(c)).collect()
    }

    /// Whether it is the map's PRIMARY entry.
    pub fn is_primary(&self) -> bool {
        self.matcher.as_deref() == Some("PRIMARY")
    }
}

/// What an entry matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryMatch {
    /// An SNI name (or `*.example.com`).
    Hostname(String),
    /// The map's default.
    Primary,
}

/// The body of `certificateMapEntries.create`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMapEntry {
    pub matches: EntryMatch,
    /// Full certificate names ([`Gcp::certificate_name`]); at most four.
    pub certificates: Vec<String>,
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl Serialize for NewMapEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            hostname: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            matcher: Option<&'static str>,
            certificates: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            labels: &'a BTreeMap<String, String>,
        }
        let (hostname, matcher) = match &self.matches {
            EntryMatch::Hostname(h) => (Some(h.as_str()), None),
            EntryMatch::Primary => (None, Some("PRIMARY")),
        };
        Wire {
            hostname,
            matcher,
            certificates: &self.certificates,
            description: self.description.as_deref(),
            labels: &self.labels,
        }
        .serialize(s)
    }
}

/// A map entry patch (mask from what is set); hostname and matcher cannot change.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

impl EntryPatch {
    fn mask(&self) -> String {
        mask(&[
            ("certificates", self.certificates.is_some()),
            ("description", self.description.is_some()),
            ("labels", self.labels.is_some()),
        ])
    }
}

fn mask(fields: &[(&str, bool)]) -> String {
    fields
        .iter()
        .filter(|(_, set)| *set)
        .map(|(f, _)| *f)
        .collect::<Vec<_>>()
        .join(",")
}

fn id_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Whether Google refused a create because the id is taken (409
/// `ALREADY_EXISTS`): after a retried create, possibly our own first attempt.
pub fn is_already_exists(e: &GcpError) -> bool {
    e.api().is_some_and(|a| {
        a.code == 409 && (a.status == "ALREADY_EXISTS" || a.reason == "ALREADY_EXISTS")
    })
}

/// Whether Google refused a delete because the resource is still used
/// (400 `FAILED_PRECONDITION`: a certificate an entry serves, a map with
/// entries or on a proxy).
pub fn is_in_use(e: &GcpError) -> bool {
    e.api().is_some_and(|a| {
        a.code == 400 && (a.status == "FAILED_PRECONDITION" || a.reason == "FAILED_PRECONDITION")
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(
        default = "Vec::new",
        alias = "certificates",
        alias = "certificateMaps"
    )]
    #[serde(alias = "certificateMapEntries")]
    items: Vec<T>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl Gcp {
    /// `projects/P/locations/global/certificates/ID`: how entries name a certificate.
    pub fn certificate_name(&self, id: &str) -> String {
        format!(
            "projects/{}/locations/{LOCATION}/certificates/{id}",
            self.project
        )
    }

    /// `//certificatemanager.googleapis.com/projects/P/locations/global/certificateMaps/M`:
    /// how a target HTTPS proxy names a map.
    pub fn certificate_map_reference(&self, map: &str) -> String {
        format!(
            "//certificatemanager.googleapis.com/projects/{}/locations/{LOCATION}/certificateMaps/{map}",
            self.project
        )
    }

    fn cm_url(&self, path: &str) -> String {
        self.url(
            Api::CertificateManager,
            &format!("projects/{}/locations/{LOCATION}/{path}", self.project),
        )
    }

    async fn cm_get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
    ) -> Result<Option<T>, GcpError> {
        let url = self.cm_url(path);
        match self
            .call::<(), T>(
                Call::new(Api::CertificateManager, op),
                Method::GET,
                &url,
                None,
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, following page tokens (`filter` as the API takes it,
    /// e.g. `labels.managed-by=gclb-acme`).
    async fn cm_list<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        filter: Option<&str>,
    ) -> Result<Vec<T>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}?pageSize=1000", self.cm_url(path));
            if let Some(f) = filter {
                url.push_str(&format!("&filter={}", enc(f)));
            }
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", enc(t)));
            }
            let page: Page<T> = self
                .call::<(), _>(
                    Call::new(Api::CertificateManager, op),
                    Method::GET,
                    &url,
                    None,
                )
                .await?;
            out.extend(page.items);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    async fn cm_mutate<B: Serialize + ?Sized>(
        &self,
        op: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<LongRunning, GcpError> {
        let url = self.cm_url(path_and_query);
        self.call(Call::new(Api::CertificateManager, op), method, &url, body)
            .await
    }

    // ------------------------------------------------------------ certificates

    /// One certificate, `None` when it does not exist.
    pub async fn get_certificate(&self, id: &str) -> Result<Option<Certificate>, GcpError> {
        self.cm_get("certificates.get", &format!("certificates/{}", enc(id)))
            .await
    }

    /// Every certificate, optionally filtered.
    pub async fn list_certificates(
        &self,
        filter: Option<&str>,
    ) -> Result<Vec<Certificate>, GcpError> {
        self.cm_list("certificates.list", "certificates", filter)
            .await
    }

    /// Starts a create; wait with [`Gcp::wait_certificate_manager`].
    pub async fn create_certificate(
        &self,
        id: &str,
        cert: &NewCertificate,
    ) -> Result<LongRunning, GcpError> {
        self.cm_mutate(
            "certificates.create",
            Method::POST,
            &format!("certificates?certificateId={}", enc(id)),
            Some(cert),
        )
        .await
    }

    /// Starts a patch of the fields `patch` sets (a new chain and key replace
    /// the certificate in place).
    pub async fn patch_certificate(
        &self,
        id: &str,
        patch: &CertificatePatch,
    ) -> Result<LongRunning, GcpError> {
        self.cm_mutate(
            "certificates.patch",
            Method::PATCH,
            &format!("certificates/{}?updateMask={}", enc(id), enc(&patch.mask())),
            Some(patch),
        )
        .await
    }

    /// Starts a delete (refused while an entry uses it: [`is_in_use`]).
    pub async fn delete_certificate(&self, id: &str) -> Result<LongRunning, GcpError> {
        self.cm_mutate::<()>(
            "certificates.delete",
            Method::DELETE,
            &format!("certificates/{}", enc(id)),
            None,
        )
        .await
    }

    // ------------------------------------------------------------ maps

    /// One map, `None` when it does not exist.
    pub async fn get_certificate_map(&self, id: &str) -> Result<Option<CertificateMap>, GcpError> {
        self.cm_get(
            "certificateMaps.get",
            &format!("certificateMaps/{}", enc(id)),
        )
        .await
    }

    /// Every map, optionally filtered.
    pub async fn list_certificate_maps(
        &self,
        filter: Option<&str>,
    ) -> Result<Vec<CertificateMap>, GcpError> {
        self.cm_list("certificateMaps.list", "certificateMaps", filter)
            .await
    }

    /// Starts a map create.
    pub async fn create_certificate_map(
        &self,
        id: &str,
        map: &MapFields,
    ) -> Result<LongRunning, GcpError> {
        self.cm_mutate(
            "certificateMaps.create",
            Method::POST,
            &format!("certificateMaps?certificateMapId={}", enc(id)),
            Some(map),
        )
        .await
    }

    /// Starts a patch of the map's description and labels (those set).
    pub async fn patch_certificate_map(
        &self,
        id: &str,
        patch: &MapFields,
    ) -> Result<LongRunning, GcpError> {
        self.cm_mutate(
            "certificateMaps.patch",
            Method::PATCH,
            &format!(
                "certificateMaps/{}?updateMask={}",
                enc(id),
                enc(&patch.mask())
            ),
            Some(patch),
        )
        .await
    }

    /// Starts a map delete (refused while it has entries or a proxy uses it).
    pub async fn delete_certificate_map(&self, id: &str) -> Result<LongRunning, GcpError> {
        self.cm_mutate::<()>(
            "certificateMaps.delete",
            Method::DELETE,
            &format!("certificateMaps/{}", enc(id)),
            None,
        )
        .await
    }

    // ------------------------------------------------------------ map entries

    fn entry_path(map: &str, id: &str) -> String {
        format!(
            "certificateMaps/{}/certificateMapEntries/{}",
            enc(map),
            enc(id)
        )
    }

    /// One entry of a map, `None` when it (or the map) does not exist.
    pub async fn get_certificate_map_entry(
        &self,
        map: &str,
        id: &str,
    ) -> Result<Option<CertificateMapEntry>, GcpError> {
        self.cm_get("certificateMapEntries.get", &Self::entry_path(map, id))
            .await
    }

    /// Every entry of a map, optionally filtered.
    pub async fn list_certificate_map_entries(
        &self,
        map: &str,
        filter: Option<&str>,
    ) -> Result<Vec<CertificateMapEntry>, GcpError> {
        self.cm_list(
            "certificateMapEntries.list",
            &format!("certificateMaps/{}/certificateMapEntries", enc(map)),
            filter,
        )
        .await
    }

    /// Starts an entry create.
    pub async fn create_certificate_map_entry(
        &self,
        map: &str,
        id: &str,
        entry: &NewMapEntry,
    ) -> Result<LongRunning, GcpError> {
        self.cm_mutate(
            "certificateMapEntries.create",
            Method::POST,
            &format!(
                "certificateMaps/{}/certificateMapEntries?certificateMapEntryId={}",
                enc(map),
                enc(id)
            ),
            Some(entry),
        )
        .await
    }

    /// Starts an entry patch (its certificates, description, labels: those set).
    pub async fn patch_certificate_map_entry(
        &self,
        map: &str,
        id: &str,
        patch: &EntryPatch,
    ) -> Result<LongRunning, GcpError> {
        self.cm_mutate(
            "certificateMapEntries.patch",
            Method::PATCH,
            &format!(
                "{}?updateMask={}",
                Self::entry_path(map, id),
                enc(&patch.mask())
            ),
            Some(patch),
        )
        .await
    }

    /// Starts an entry delete.
    pub async fn delete_certificate_map_entry(
        &self,
        map: &str,
        id: &str,
    ) -> Result<LongRunning, GcpError> {
        self.cm_mutate::<()>(
            "certificateMapEntries.delete",
            Method::DELETE,
            &Self::entry_path(map, id),
            None,
        )
        .await
    }

    // ------------------------------------------------------------ operations

    /// Waits until a Certificate Manager operation is done (polling
    /// `operations.get`); an error inside it is `Err` with Google's status.
    pub async fn wait_certificate_manager(
        &self,
        op: LongRunning,
        timeout: Duration,
    ) -> Result<LongRunning, GcpError> {
        self.wait_long_running(Api::CertificateManager, op, timeout)
            .await
    }

    /// Waits for an operation and decodes the resource it returns.
    pub async fn certificate_manager_result<T: DeserializeOwned>(
        &self,
        op: LongRunning,
        timeout: Duration,
    ) -> Result<T, GcpError> {
        let done = self.wait_certificate_manager(op, timeout).await?;
        let name = done.name.clone();
        let response = done.response.unwrap_or(Value::Null);
        serde_json::from_value(response).map_err(|e| GcpError::Decode {
            method: "GET".into(),
            url: name,
            status: 200,
            message: format!("the operation's response is not the resource: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_sent_but_never_shown() {
        let c = NewCertificate {
            description: None,
            labels: BTreeMap::from([("managed-by".into(), "gclb-acme".into())]),
            self_managed: SelfManaged {
                pem_certificate: "CERT".into(),
                pem_private_key: "-----BEGIN PRIVATE KEY-----SECRET".into(),
            },
        };
        let d = format!("{c:?}");
        assert!(!d.contains("SECRET"), "{d}");
        let body = serde_json::to_value(&c).unwrap();
        assert_eq!(
            body["selfManaged"]["pemPrivateKey"],
            "-----BEGIN PRIVATE KEY-----SECRET"
        );
        assert!(body.get("description").is_none());
        assert_eq!(body["labels"]["managed-by"], "gclb-acme");
        let p = CertificatePatch {
            self_managed: Some(c.self_managed.clone()),
            ..Default::default()
        };
        assert!(!format!("{p:?}").contains("SECRET"));
    }

    #[test]
    fn masks_follow_what_is_set() {
        let p = CertificatePatch {
            labels: Some(BTreeMap::new()),
            self_managed: Some(SelfManaged {
                pem_certificate: String::new(),
                pem_private_key: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(p.mask(), "labels,selfManaged");
        assert_eq!(
            EntryPatch {
                certificates: Some(vec![]),
                ..Default::default()
            }
            .mask(),
            "certificates"
        );
        assert_eq!(MapFields::default().mask(), "");
    }

    #[test]
    fn entries_serialize_hostname_or_primary() {
        let e = NewMapEntry {
            matches: EntryMatch::Primary,
            certificates: vec!["projects/p/locations/global/certificates/c".into()],
            description: None,
            labels: BTreeMap::new(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["matcher"], "PRIMARY");
        assert!(v.get("hostname").is_none());
        let e = NewMapEntry {
            matches: EntryMatch::Hostname("a.example.com".into()),
            ..e
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["hostname"], "a.example.com");
        assert!(v.get("matcher").is_none());
    }

    #[test]
    fn reads_keep_googles_fields() {
        let e: CertificateMapEntry = serde_json::from_str(
            r#"{"name":"projects/p/locations/global/certificateMaps/m/certificateMapEntries/e",
                "matcher":"PRIMARY","certificates":["projects/123/locations/global/certificates/c"],
                "state":"ACTIVE","futureField":1}"#,
        )
        .unwrap();
        assert_eq!(e.id(), "e");
        assert!(e.is_primary());
        assert_eq!(e.certificate_ids(), ["c"]);
        assert_eq!(e.other["futureField"], 1);
        let p: Page<Certificate> =
            serde_json::from_str(r#"{"certificates":[{"name":"projects/p/locations/global/certificates/x"}],"nextPageToken":"t"}"#)
                .unwrap();
        assert_eq!(p.items[0].id(), "x");
        assert_eq!(p.next_page_token.as_deref(), Some("t"));
    }
}
