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

/// A bucket and a prefix inside it, with the client that reaches them.
#[derive(Clone, Debug)]
pub struct GcsStore {
    gcp: Gcp,
    bucket: String,
    /// Empty, or ending with `/`.
    prefix: String,
}

/// `gs://bucket[/prefix]`, split and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsLocation {
    pub bucket: String,
    /// Empty, or ending with `/`.
    pub prefix: String,
}

impl GcsLocation {
    /// Parses `gs://bucket[/prefix[/]]`. The bucket follows Google's naming
    /// rules (3 to 63 of `a-z 0-9 - _ .`, starting and ending with a letter or
    /// digit); the prefix follows the state names' rules.
    pub fn parse(url: &str) -> Result<GcsLocation, StoreError> {
        let bad = |reason: &str| StoreError::BadLocation {
            location: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("gs://")
            .ok_or_else(|| bad("expected gs://BUCKET or gs://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok_bucket {
            return Err(bad(
                "the bucket name must be 3 to 63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && check_name(prefix).is_err() {
            return Err(bad(
                "the prefix must be '/'-separated parts of letters, digits, '.', '_' and '-', none starting with '.'",
            ));
        }
        Ok(GcsLocation {
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(matches!(e, StoreError::BadLocation { .. }), "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
