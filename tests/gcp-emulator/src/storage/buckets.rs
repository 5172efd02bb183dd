//! Buckets: `insert`, `get`, `list` and the bucket's IAM policy
//! (`getIamPolicy`, `setIamPolicy`, `testIamPermissions`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Json;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{Bucket, Params, StorageError, StorageResult, etag, find_bucket, json_body, time};
use crate::state::{Project, Shared};

/// Google's bucket-name rules (the common case: no dots-as-domain names).
fn check_name(name: &str) -> Result<(), StorageError> {
    let ok = (3..=63).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && !name.starts_with("goog");
    if ok {
        Ok(())
    } else {
        Err(StorageError::invalid(format!(
            "Invalid bucket name: '{name}'"
        )))
    }
}

/// The bucket resource as `buckets.get` answers it.
pub(crate) fn to_json(b: &Bucket, project_number: u64, base: &str) -> Value {
    let mut v = json!({
        "kind": "storage#bucket",
        "selfLink": format!("{base}storage/v1/b/{}", b.name),
        "id": b.name,
        "name": b.name,
        "projectNumber": project_number.to_string(),
        "metageneration": b.metageneration.to_string(),
        "location": b.location,
        "locationType": if b.location.contains('-') { "region" } else { "multi-region" },
        "storageClass": b.storage_class,
        "etag": etag(0, b.metageneration),
        "timeCreated": time(b.created),
        "updated": time(b.updated),
        "rpo": "DEFAULT",
        "iamConfiguration": {
            "bucketPolicyOnly": {"enabled": b.uniform_access},
            "uniformBucketLevelAccess": {"enabled": b.uniform_access},
            "publicAccessPrevention": b.public_access_prevention,
        },
    });
    if let Some(k) = &b.default_kms_key {
        v["encryption"] = json!({"defaultKmsKeyName": k});
    }
    if let Some(l) = &b.labels {
        v["labels"] = l.clone();
    }
    v
}

/// `POST /storage/v1/b?project=P`.
pub(super) fn insert(shared: &Shared, q: &Params, body: &[u8], base: &str) -> StorageResult {
    let Some(project) = q.get("project") else {
        return Err(StorageError::new(
            400,
            "required",
            "Required parameter: project",
        ));
    };
    let req = json_body(body)?;
    let Some(name) = req["name"].as_str().map(str::to_string) else {
        return Err(StorageError::new(400, "required", "Required"));
    };
    check_name(&name)?;
    let pap = match req["iamConfiguration"]["publicAccessPrevention"].as_str() {
        None | Some("inherited") | Some("unspecified") => "inherited",
        Some("enforced") => "enforced",
        Some(other) => {
            return Err(StorageError::invalid(format!(
                "Invalid argument: publicAccessPrevention {other}"
            )));
        }
    };
    let uniform = req["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]
        .as_bool()
        .or_else(|| req["iamConfiguration"]["bucketPolicyOnly"]["enabled"].as_bool())
        .unwrap_or(false);
    let now = SystemTime::now();
    let bucket = Bucket {
        name: name.clone(),
        created: now,
        updated: now,
        metageneration: 1,
        location: req["location"]
            .as_str()
            .unwrap_or("US")
            .to_ascii_uppercase(),
        storage_class: req["storageClass"]
            .as_str()
            .unwrap_or("STANDARD")
            .to_string(),
        uniform_access: uniform,
        public_access_prevention: pap.to_string(),
        default_kms_key: req["encryption"]["defaultKmsKeyName"]
            .as_str()
            .map(str::to_string),
        labels: req.get("labels").cloned(),
        bindings: Vec::new(),
        policy_revision: 0,
        objects: BTreeMap::new(),
    };
    let mut world = shared.world();
    if let Some(owner) = find_bucket(&world, &name) {
        let mine = world.project(project).is_ok_and(|p| p.id == owner);
        return Err(StorageError::new(
            409,
            "conflict",
            if mine {
                "Your previous request to create the named bucket succeeded and you already own it."
            } else {
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
            },
        ));
    }
    let p = world
        .project(project)
        .map_err(|_| StorageError::invalid(format!("Unknown project id: {project}")))?;
    let out = to_json(&bucket, p.number, base);
    p.storage.buckets.insert(name, bucket);
    Ok(Json(out).into_response())
}

/// Runs `f` on the bucket and its project, or 404.
pub(crate) fn with_bucket<T>(
    shared: &Shared,
    name: &str,
    f: impl FnOnce(&mut Project, &str) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let mut world = shared.world();
    let owner = find_bucket(&world, name).ok_or_else(StorageError::no_bucket)?;
    let p = world
        .project(&owner)
        .map_err(|_| StorageError::no_bucket())?;
    f(p, name)
}

/// `GET /storage/v1/b/{bucket}`.
pub(super) fn get(shared: &Shared, name: &str, base: &str) -> StorageResult {
    with_bucket(shared, name, |p, name| {
        let number = p.number;
        let b = &p.storage.buckets[name];
        Ok(Json(to_json(b, number, base)).into_response())
    })
}

/// `GET /storage/v1/b?project=P` (one page: the emulator holds few buckets).
pub(super) fn list(shared: &Shared, q: &Params, base: &str) -> StorageResult {
    let Some(project) = q.get("project") else {
        return Err(StorageError::new(
            400,
            "required",
            "Required parameter: project",
        ));
    };
    let prefix = q.get("prefix").unwrap_or("");
    let mut world = shared.world();
    let p = world
        .project(project)
        .map_err(|_| StorageError::invalid(format!("Unknown project id: {project}")))?;
    let items: Vec<Value> = p
        .storage
        .buckets
        .values()
        .filter(|b| b.name.starts_with(prefix))
        .map(|b| to_json(b, p.number, base))
        .collect();
    let mut out = json!({"kind": "storage#buckets"});
    if !items.is_empty() {
        out["items"] = json!(items);
    }
    Ok(Json(out).into_response())
}

/// The policy a new bucket has: the legacy convenience roles for the project's
/// basic-role holders (plus the object ones while ACLs are on).
fn default_bindings(project: &str, uniform: bool) -> Vec<Value> {
    let mut v = vec![
        json!({"role": "roles/storage.legacyBucketOwner", "members": [format!("projectEditor:{project}"), format!("projectOwner:{project}")]}),
        json!({"role": "roles/storage.legacyBucketReader", "members": [format!("projectViewer:{project}")]}),
    ];
    if !uniform {
        v.push(json!({"role": "roles/storage.legacyObjectOwner", "members": [format!("projectEditor:{project}"), format!("projectOwner:{project}")]}));
        v.push(json!({"role": "roles/storage.legacyObjectReader", "members": [format!("projectViewer:{project}")]}));
    }
    v
}

fn policy_json(b: &Bucket, project: &str) -> Value {
    let bindings = if b.policy_revision == 0 {
        default_bindings(project, b.uniform_access)
    } else {
        b.bindings.clone()
    };
    json!({
        "kind": "storage#policy",
        "resourceId": format!("projects/_/buckets/{}", b.name),
        "version": 1,
        "etag": etag(0, b.policy_revision + 1),
        "bindings": bindings,
    })
}

/// `GET /storage/v1/b/{bucket}/iam`.
pub(super) fn get_iam_policy(shared: &Shared, name: &str) -> StorageResult {
    with_bucket(shared, name, |p, name| {
        Ok(Json(policy_json(&p.storage.buckets[name], &p.id)).into_response())
    })
}

/// `PUT /storage/v1/b/{bucket}/iam`: replaces the policy; a stale `etag` is 412,
/// and public members are refused while public access prevention is enforced.
pub(super) fn set_iam_policy(shared: &Shared, name: &str, body: &[u8]) -> StorageResult {
    let req = json_body(body)?;
    with_bucket(shared, name, |p, name| {
        let project = p.id.clone();
        let b = p
            .storage
            .buckets
            .get_mut(name)
            .ok_or_else(StorageError::no_bucket)?;
        if let Some(tag) = req["etag"].as_str()
            && tag != etag(0, b.policy_revision + 1)
        {
            return Err(StorageError::precondition_failed("If-Match"));
        }
        let bindings = req["bindings"].as_array().cloned().unwrap_or_default();
        for binding in &bindings {
            if binding["role"].as_str().is_none_or(str::is_empty) {
                return Err(StorageError::invalid("Role is required."));
            }
            let public = binding["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| matches!(m.as_str(), Some("allUsers" | "allAuthenticatedUsers")));
            if public && b.public_access_prevention == "enforced" {
                // Our wording: Google refuses with 412 and names the setting.
                return Err(StorageError::new(
                    412,
                    "conditionNotMet",
                    "Public access prevention is enforced on this bucket: allUsers and allAuthenticatedUsers cannot be granted a role.",
                ));
            }
        }
        b.bindings = bindings;
        b.policy_revision += 1;
        Ok(Json(policy_json(b, &project)).into_response())
    })
}

/// `GET /storage/v1/b/{bucket}/iam/testPermissions?permissions=...`: the ones
/// the caller holds in the bucket's project.
pub(super) fn test_iam_permissions(shared: &Shared, name: &str, q: &Params) -> StorageResult {
    let asked = q.all("permissions");
    if asked.is_empty() {
        return Err(StorageError::new(
            400,
            "required",
            "Required parameter: permissions",
        ));
    }
    with_bucket(shared, name, |p, _| {
        let held: Vec<&str> = asked.into_iter().filter(|perm| p.iam.holds(perm)).collect();
        let mut out = json!({"kind": "storage#testIamPermissionsResponse"});
        if !held.is_empty() {
            out["permissions"] = json!(held);
        }
        Ok(Json(out).into_response())
    })
}
