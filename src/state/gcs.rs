//! The Cloud Storage backend of [`Store`]: `gs://bucket/prefix`, one object per
//! name (`prefix/pending/www.json`), versions are generations.
//!
//! Cloud Storage gives what the contract asks: whole-object writes, strongly
//! consistent reads, writes, deletes and listings, and `ifGenerationMatch`
//! preconditions (0: create-only) applied atomically per object. A retried
//! conditional write whose first attempt was applied sees its own object and
//! gets 412: the store re-reads once and reports success when the content is
//! the bytes it wrote (lease objects carry a fresh token per write, so those
//! bytes are never another writer's).

use crate::gcp::Gcp;
use crate::gcp::storage::{Condition, StorageError};

use super::check_name;
use super::store::{Expect, Store, StoreError, Stored, Version};
pub use crate::config::GcsLocation;

/// A bucket and a prefix inside it, with the client that reaches them.
#[derive(Clone, Debug)]
pub struct GcsStore {
    gcp: Gcp,
    bucket: String,
    /// Empty, or ending with `/`.
    prefix: String,
}

impl GcsStore {
    /// The store at `location`, reached through `gcp`.
    pub fn new(gcp: Gcp, location: GcsLocation) -> GcsStore {
        GcsStore {
            gcp,
            bucket: location.bucket,
            prefix: location.prefix,
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn object(&self, name: &str) -> Result<String, StoreError> {
        check_name(name)?;
        Ok(format!("{}{name}", self.prefix))
    }

    fn gcs_error(&self, name: &str, source: crate::gcp::GcpError) -> StoreError {
        StoreError::Gcs {
            location: self.location(),
            name: name.to_string(),
            source: Box::new(source),
        }
    }

    fn conflict(&self, name: &str) -> StoreError {
        StoreError::Conflict {
            location: self.location(),
            name: name.to_string(),
        }
    }

    fn condition(expect: &Expect) -> Result<Condition, ()> {
        match expect {
            Expect::Any => Ok(Condition::None),
            Expect::Absent => Ok(Condition::DoesNotExist),
            Expect::Version(v) => v.0.parse().map(Condition::GenerationIs).map_err(|_| ()),
        }
    }
}

impl Store for GcsStore {
    fn location(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_string()
    }

    async fn read(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        let object = self.object(name)?;
        let got = self
            .gcp
            .get_object(&self.bucket, &object)
            .await
            .map_err(|e| self.gcs_error(name, e))?;
        Ok(got.map(|d| Stored {
            data: d.bytes,
            version: Version(d.generation.to_string()),
        }))
    }

    async fn write(&self, name: &str, data: &[u8], expect: Expect) -> Result<Version, StoreError> {
        let object = self.object(name)?;
        // A version that is not a generation cannot be this object's: it did not hold.
        let condition = GcsStore::condition(&expect).map_err(|()| self.conflict(name))?;
        let content_type = if name.ends_with(".json") {
            "application/json"
        } else {
            "application/octet-stream"
        };
        match self
            .gcp
            .insert_object(&self.bucket, &object, data, content_type, condition)
            .await
        {
            Ok(meta) => Ok(Version(meta.generation.to_string())),
            Err(StorageError::PreconditionFailed { .. }) => {
                // Our own earlier attempt may be what made the precondition fail.
                match self.read(name).await? {
                    Some(now) if now.data == data => Ok(now.version),
                    _ => Err(self.conflict(name)),
                }
            }
            Err(StorageError::Gcp(e)) => Err(self.gcs_error(name, e)),
        }
    }

    async fn delete(&self, name: &str, expect: Expect) -> Result<bool, StoreError> {
        let object = self.object(name)?;
        let condition = match expect {
            // "Delete only if absent" deletes nothing: report whether it existed.
            Expect::Absent => {
                return match self.read(name).await? {
                    None => Ok(false),
                    Some(_) => Err(self.conflict(name)),
                };
            }
            ref e => GcsStore::condition(e).map_err(|()| self.conflict(name))?,
        };
        match self
            .gcp
            .delete_object(&self.bucket, &object, condition)
            .await
        {
            Ok(existed) => Ok(existed),
            Err(StorageError::PreconditionFailed { .. }) => Err(self.conflict(name)),
            Err(StorageError::Gcp(e)) => Err(self.gcs_error(name, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = format!("{}{prefix}", self.prefix);
        let objects = self
            .gcp
            .list_objects(&self.bucket, &full)
            .await
            .map_err(|e| self.gcs_error(prefix, e))?;
        let mut names: Vec<String> = objects
            .into_iter()
            .filter_map(|o| o.name.strip_prefix(&self.prefix).map(str::to_string))
            // Objects someone else put there with names we would refuse are not ours.
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The permissions a daemon needs on the bucket: read, list, create, and
/// delete (a write that replaces an object deletes the old one, and releasing
/// a lease deletes it).
pub const REQUIRED_PERMISSIONS: &[&str] = &[
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
];

/// What `check` reads besides, when it may (the bucket's settings and its IAM
/// policy); not needed by the daemon. docs/iam.md lists them.
pub const CHECK_PERMISSIONS: &[&str] = &["storage.buckets.get", "storage.buckets.getIamPolicy"];

/// What `check` learns about the state bucket. `None`: the caller may not read
/// that setting (`storage.buckets.get`, `storage.buckets.getIamPolicy`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketReport {
    pub bucket: String,
    pub uniform_access: Option<bool>,
    pub public_access_prevented: Option<bool>,
    /// Roles granted to `allUsers` or `allAuthenticatedUsers`.
    pub public_roles: Option<Vec<String>>,
    pub default_kms_key: Option<String>,
    /// Of [`REQUIRED_PERMISSIONS`], those the caller does not hold.
    pub missing_permissions: Vec<String>,
}

impl BucketReport {
    /// What is wrong, one sentence each, worst first; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let b = &self.bucket;
        let mut out = Vec::new();
        if !self.missing_permissions.is_empty() {
            out.push(format!(
                "gs://{b}: the daemon's account lacks {} (grant roles/storage.objectUser on the bucket)",
                self.missing_permissions.join(", ")
            ));
        }
        if let Some(roles) = &self.public_roles
            && !roles.is_empty()
        {
            out.push(format!(
                "gs://{b} is public: {} granted to allUsers or allAuthenticatedUsers; it holds private keys",
                roles.join(", ")
            ));
        }
        if self.uniform_access == Some(false) {
            out.push(format!(
                "gs://{b}: uniform bucket-level access is off, so object ACLs can widen access; turn it on"
            ));
        }
        if self.public_access_prevented == Some(false) {
            out.push(format!(
                "gs://{b}: public access prevention is not enforced; enforce it"
            ));
        }
        out
    }
}

impl GcsStore {
    /// Looks at the bucket as `check` should: exists, uniform access, public
    /// access prevention, no public bindings, the permissions a daemon needs.
    /// Settings the caller may not read are reported unknown, not failed.
    pub async fn inspect(&self) -> Result<BucketReport, StoreError> {
        let gcs = |e| self.gcs_error("", e);
        let held = self
            .gcp
            .test_bucket_permissions(&self.bucket, REQUIRED_PERMISSIONS)
            .await
            .map_err(gcs)?;
        let mut report = BucketReport {
            bucket: self.bucket.clone(),
            missing_permissions: REQUIRED_PERMISSIONS
                .iter()
                .filter(|p| !held.iter().any(|h| h == *p))
                .map(|p| p.to_string())
                .collect(),
            ..BucketReport::default()
        };
        match self.gcp.get_bucket(&self.bucket).await {
            Ok(b) => {
                report.uniform_access = Some(b.uniform_access());
                report.public_access_prevented = Some(b.public_access_prevented());
                report.default_kms_key = b.default_kms_key().map(str::to_string);
            }
            Err(crate::gcp::GcpError::Api(e)) if e.is_permission_denied() => {}
            Err(e) => return Err(gcs(e)),
        }
        match self.gcp.bucket_iam_bindings(&self.bucket).await {
            Ok(bindings) => {
                report.public_roles = Some(
                    bindings
                        .iter()
                        .filter(|b| b.is_public())
                        .map(|b| b.role.clone())
                        .collect(),
                );
            }
            Err(crate::gcp::GcpError::Api(e)) if e.is_permission_denied() => {}
            Err(e) => return Err(gcs(e)),
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_each_problem() {
        let ok = BucketReport {
            bucket: "b".into(),
            uniform_access: Some(true),
            public_access_prevented: Some(true),
            public_roles: Some(vec![]),
            ..BucketReport::default()
        };
        assert!(ok.problems().is_empty());
        // Unknown settings are not problems.
        let unknown = BucketReport {
            bucket: "b".into(),
            ..BucketReport::default()
        };
        assert!(unknown.problems().is_empty());
        let bad = BucketReport {
            bucket: "b".into(),
            uniform_access: Some(false),
            public_access_prevented: Some(false),
            public_roles: Some(vec!["roles/storage.objectViewer".into()]),
            default_kms_key: None,
            missing_permissions: vec!["storage.objects.delete".into()],
        };
        let p = bad.problems();
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].contains("storage.objects.delete"));
        assert!(p[1].contains("public") && p[1].contains("roles/storage.objectViewer"));
    }

    #[test]
    fn locations_parse_and_bad_ones_say_why() {
        let l = GcsLocation::parse("gs://my-bucket/gclb-acme/prod/").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("my-bucket", "gclb-acme/prod/")
        );
        let l = GcsLocation::parse("gs://my-bucket").unwrap();
        assert_eq!(l.prefix, "");
        for bad in [
            "my-bucket",
            "gs://",
            "gs://ab",
            "gs://My-Bucket",
            "gs://-bucket",
            "gs://bucket/../x",
            "gs://bucket/.hidden",
            "s3://bucket",
        ] {
            let e = GcsLocation::parse(bad).unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
