//! Cloud Storage JSON API v1: objects (read with their generation, conditional
//! write and delete, list by prefix) and buckets (get, IAM policy, permission
//! test), for the state store and the leases of issue 17.
//!
//! Preconditions are the point: `ifGenerationMatch=0` writes only if the object
//! does not exist, `ifGenerationMatch=G` only if the live generation is `G`.
//! When one does not hold Google answers 412 `conditionNotMet`; that is not a
//! failure to retry but an answer ("someone else wrote first"), so it comes back
//! as [`StorageError::PreconditionFailed`], never retried.
//!
//! Conditional requests are safe to retry after a transport error (Google's
//! "Retry strategy" page), with one ambiguity every caller must handle: when a
//! first attempt was applied but its answer lost, the retry sees the object it
//! wrote itself and answers 412 (or 404 for a delete). A caller that must tell
//! "I lost" from "my own write" re-reads and compares the content (the leases
//! put a unique write token in every object for that).

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{Api, Call, Gcp, GcpError, Payload, enc};

/// Which generation a write or delete requires (`ifGenerationMatch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// No precondition: last writer wins.
    None,
    /// The object must not exist (`ifGenerationMatch=0`).
    DoesNotExist,
    /// The live generation must be this one.
    GenerationIs(u64),
}

impl Condition {
    fn query(self) -> String {
        match self {
            Condition::None => String::new(),
            Condition::DoesNotExist => "&ifGenerationMatch=0".into(),
            Condition::GenerationIs(g) => format!("&ifGenerationMatch={g}"),
        }
    }
}

/// Why a Cloud Storage write or delete did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// 412: the object's generation is not the one the request required (another
    /// writer went first, or the object appeared or vanished). Not retried.
    #[error(
        "gs://{bucket}/{object}: the generation precondition did not hold (another writer changed the object)"
    )]
    PreconditionFailed { bucket: String, object: String },
    /// Any other failure, with Google's code, reason and message.
    #[error(transparent)]
    Gcp(#[from] GcpError),
}

/// An object's metadata, as `objects.get` and `objects.list` give it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, deserialize_with = "int64")]
    pub generation: u64,
    #[serde(default, deserialize_with = "int64")]
    pub metageneration: u64,
    #[serde(default, deserialize_with = "int64")]
    pub size: u64,
    #[serde(default)]
    pub content_type: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub kms_key_name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// An object's content and the generation it was read at.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectData {
    pub bytes: Vec<u8>,
    pub generation: u64,
    pub metageneration: u64,
}

impl std::fmt::Debug for ObjectData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Objects hold private keys: never print the content.
        f.debug_struct("ObjectData")
            .field("len", &self.bytes.len())
            .field("generation", &self.generation)
            .field("metageneration", &self.metageneration)
            .finish()
    }
}

/// A bucket's settings that `check` looks at.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub iam_configuration: IamConfiguration,
    #[serde(default)]
    pub encryption: Option<Encryption>,
}

impl Bucket {
    /// Uniform bucket-level access: IAM alone decides, no object ACLs.
    pub fn uniform_access(&self) -> bool {
        self.iam_configuration
            .uniform_bucket_level_access
            .as_ref()
            .is_some_and(|u| u.enabled)
    }

    /// Public access prevention enforced on the bucket (not merely inherited).
    pub fn public_access_prevented(&self) -> bool {
        self.iam_configuration.public_access_prevention.as_deref() == Some("enforced")
    }

    /// The default Cloud KMS key (CMEK), when one is set.
    pub fn default_kms_key(&self) -> Option<&str> {
        self.encryption
            .as_ref()
            .and_then(|e| e.default_kms_key_name.as_deref())
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IamConfiguration {
    #[serde(default)]
    pub uniform_bucket_level_access: Option<Enabled>,
    /// `inherited` or `enforced`.
    #[serde(default)]
    pub public_access_prevention: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Enabled {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    #[serde(default)]
    pub default_kms_key_name: Option<String>,
}

/// One binding of a bucket's IAM policy.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Binding {
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
}

impl Binding {
    /// Whether the binding grants to everyone (`allUsers`, `allAuthenticatedUsers`).
    pub fn is_public(&self) -> bool {
        self.members
            .iter()
            .any(|m| m == "allUsers" || m == "allAuthenticatedUsers")
    }
}

#[derive(Deserialize)]
struct Policy {
    #[serde(default)]
    bindings: Vec<Binding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectMeta>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Permissions {
    #[serde(default)]
    permissions: Vec<String>,
}

/// int64 fields come as JSON strings.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom("not an unsigned integer")),
        Value::Null => Ok(0),
        _ => Err(serde::de::Error::custom("expected an int64 string")),
    }
}

fn is_not_found(e: &GcpError) -> bool {
    matches!(e, GcpError::Api(a) if a.code == 404)
}

fn is_precondition(e: &GcpError) -> bool {
    matches!(e, GcpError::Api(a) if a.code == 412)
}

impl Gcp {
    fn object_url(&self, bucket: &str, object: &str) -> String {
        self.url(
            Api::Storage,
            &format!("storage/v1/b/{}/o/{}", enc(bucket), enc(object)),
        )
    }

    /// An object's content and generation (`alt=media`; the generation comes
    /// in `X-Goog-Generation`), or `None` when it does not exist.
    pub async fn get_object(
        &self,
        bucket: &str,
        object: &str,
    ) -> Result<Option<ObjectData>, GcpError> {
        let url = format!("{}?alt=media", self.object_url(bucket, object));
        let reply = match self
            .call_raw(
                Call::new(Api::Storage, "objects.get"),
                Method::GET,
                &url,
                None,
            )
            .await
        {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let header = |name: &str| -> Result<u64, GcpError> {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| GcpError::Decode {
                    method: "GET".into(),
                    url: url.clone(),
                    status: 200,
                    message: format!("the download has no valid {name} header"),
                })
        };
        Ok(Some(ObjectData {
            generation: header("x-goog-generation")?,
            metageneration: header("x-goog-metageneration")?,
            bytes: reply.bytes,
        }))
    }

    /// An object's metadata, or `None` when it does not exist.
    pub async fn get_object_meta(
        &self,
        bucket: &str,
        object: &str,
    ) -> Result<Option<ObjectMeta>, GcpError> {
        let url = self.object_url(bucket, object);
        match self
            .call::<(), ObjectMeta>(
                Call::new(Api::Storage, "objects.get"),
                Method::GET,
                &url,
                None,
            )
            .await
        {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `data` as `object` (a media upload) if `condition` holds; the new
    /// generation is in the answer.
    pub async fn insert_object(
        &self,
        bucket: &str,
        object: &str,
        data: &[u8],
        content_type: &str,
        condition: Condition,
    ) -> Result<ObjectMeta, StorageError> {
        let url = self.url(
            Api::Storage,
            &format!(
                "upload/storage/v1/b/{}/o?uploadType=media&name={}{}",
                enc(bucket),
                enc(object),
                condition.query()
            ),
        );
        // A garbled answer is retried like a lost one: the retry then meets the
        // precondition its first attempt may have spent (see the module docs).
        self.call_payload(
            Call::new(Api::Storage, "objects.insert"),
            Method::POST,
            &url,
            Some(&Payload {
                content_type: content_type.to_string(),
                bytes: data.to_vec(),
            }),
        )
        .await
        .map_err(|e| self.storage_error(e, bucket, object))
    }

    /// Deletes `object` if `condition` holds. `Ok(false)`: it did not exist.
    pub async fn delete_object(
        &self,
        bucket: &str,
        object: &str,
        condition: Condition,
    ) -> Result<bool, StorageError> {
        let mut url = self.object_url(bucket, object);
        let q = condition.query();
        if let Some(q) = q.strip_prefix('&') {
            url = format!("{url}?{q}");
        }
        match self
            .call_raw(
                Call::new(Api::Storage, "objects.delete"),
                Method::DELETE,
                &url,
                None,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(self.storage_error(e, bucket, object)),
        }
    }

    /// Every object whose name starts with `prefix`, in name order (all pages).
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectMeta>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url(
                Api::Storage,
                &format!("storage/v1/b/{}/o?prefix={}", enc(bucket), enc(prefix)),
            );
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", enc(t)));
            }
            let page: ObjectList = self
                .call::<(), _>(
                    Call::new(Api::Storage, "objects.list"),
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

    /// A bucket's settings.
    pub async fn get_bucket(&self, bucket: &str) -> Result<Bucket, GcpError> {
        let url = self.url(Api::Storage, &format!("storage/v1/b/{}", enc(bucket)));
        self.call::<(), _>(
            Call::new(Api::Storage, "buckets.get"),
            Method::GET,
            &url,
            None,
        )
        .await
    }

    /// The bindings of a bucket's IAM policy.
    pub async fn bucket_iam_bindings(&self, bucket: &str) -> Result<Vec<Binding>, GcpError> {
        let url = self.url(Api::Storage, &format!("storage/v1/b/{}/iam", enc(bucket)));
        let p: Policy = self
            .call::<(), _>(
                Call::new(Api::Storage, "buckets.getIamPolicy"),
                Method::GET,
                &url,
                None,
            )
            .await?;
        Ok(p.bindings)
    }

    /// Which of `permissions` the caller holds on the bucket.
    pub async fn test_bucket_permissions(
        &self,
        bucket: &str,
        permissions: &[&str],
    ) -> Result<Vec<String>, GcpError> {
        let q: Vec<String> = permissions
            .iter()
            .map(|p| format!("permissions={}", enc(p)))
            .collect();
        let url = self.url(
            Api::Storage,
            &format!(
                "storage/v1/b/{}/iam/testPermissions?{}",
                enc(bucket),
                q.join("&")
            ),
        );
        let p: Permissions = self
            .call::<(), _>(
                Call::new(Api::Storage, "buckets.testIamPermissions"),
                Method::GET,
                &url,
                None,
            )
            .await?;
        Ok(p.permissions)
    }

    fn storage_error(&self, e: GcpError, bucket: &str, object: &str) -> StorageError {
        if is_precondition(&e) {
            StorageError::PreconditionFailed {
                bucket: bucket.to_string(),
                object: object.to_string(),
            }
        } else {
            StorageError::Gcp(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_metadata_parses_googles_int64_strings() {
        let m: ObjectMeta = serde_json::from_str(
            r#"{"kind":"storage#object","name":"a/b","bucket":"x","generation":"1700000000123456","metageneration":"2","size":"12","metadata":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(
            (m.generation, m.metageneration, m.size),
            (1_700_000_000_123_456, 2, 12)
        );
        assert_eq!(m.metadata["k"], "v");
    }

    #[test]
    fn bucket_settings_read_as_check_needs_them() {
        let b: Bucket = serde_json::from_str(
            r#"{"name":"b","iamConfiguration":{"uniformBucketLevelAccess":{"enabled":true},"publicAccessPrevention":"enforced"},"encryption":{"defaultKmsKeyName":"projects/p/locations/us/keyRings/r/cryptoKeys/k"}}"#,
        )
        .unwrap();
        assert!(b.uniform_access() && b.public_access_prevented());
        assert!(b.default_kms_key().is_some());
        let b: Bucket = serde_json::from_str(r#"{"name":"b"}"#).unwrap();
        assert!(!b.uniform_access() && !b.public_access_prevented());
    }

    #[test]
    fn object_data_never_prints_its_content() {
        let d = ObjectData {
            bytes: b"-----BEGIN PRIVATE KEY-----".to_vec(),
            generation: 1,
            metageneration: 1,
        };
        assert!(!format!("{d:?}").contains("PRIVATE"));
    }
}
