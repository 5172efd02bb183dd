//! Buckets and objects, per project. Bucket names are global at Google; the
//! emulator finds a bucket's project by looking through every project
//! ([`find_bucket`]).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::state::World;

/// One project's Cloud Storage state.
#[derive(Default)]
pub struct State {
    pub buckets: BTreeMap<String, Bucket>,
    /// The last generation handed out in this project: generations are
    /// microsecond timestamps at Google, and ours never repeat nor go backwards
    /// even when two writes land in the same microsecond.
    last_generation: u64,
}

impl State {
    /// A fresh object generation: the current time in microseconds, strictly
    /// above every earlier one.
    pub fn next_generation(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        self.last_generation = now.max(self.last_generation + 1);
        self.last_generation
    }
}

/// A bucket and its live objects (no versioning: one generation per name).
#[derive(Clone, Debug)]
pub struct Bucket {
    pub name: String,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub metageneration: u64,
    pub location: String,
    pub storage_class: String,
    /// `iamConfiguration.uniformBucketLevelAccess.enabled`.
    pub uniform_access: bool,
    /// `iamConfiguration.publicAccessPrevention`: `inherited` or `enforced`.
    pub public_access_prevention: String,
    /// `encryption.defaultKmsKeyName` (CMEK), when set.
    pub default_kms_key: Option<String>,
    pub labels: Option<Value>,
    /// The bucket's IAM policy bindings (`setIamPolicy`), and how often it was set.
    pub bindings: Vec<Value>,
    pub policy_revision: u64,
    pub objects: BTreeMap<String, Object>,
}

/// One live object.
#[derive(Clone, Debug)]
pub struct Object {
    pub name: String,
    pub data: Vec<u8>,
    pub generation: u64,
    pub metageneration: u64,
    pub content_type: String,
    /// User metadata (`metadata`).
    pub metadata: BTreeMap<String, String>,
    pub created: SystemTime,
    pub updated: SystemTime,
    /// The MD5 the uploader declared (the emulator has no MD5 to check it with).
    pub md5_hash: Option<String>,
    /// The CMEK the object is encrypted with (the bucket's default at write time).
    pub kms_key_name: Option<String>,
}

/// The project holding bucket `name`, if any.
pub fn find_bucket(world: &World, name: &str) -> Option<String> {
    world
        .projects
        .values()
        .find(|p| p.storage.buckets.contains_key(name))
        .map(|p| p.id.clone())
}
