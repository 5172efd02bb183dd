//! IAM policies as IAP and Cloud Run keep them: `{version, etag, bindings}`, with
//! optimistic concurrency on the etag (409 ABORTED when stale) and Google's member
//! and role validation.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::cloud::invalid;
use crate::error::ApiError;

/// Which resource a policy guards: the roles each accepts differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// An IAP-secured web backend service.
    Iap,
    /// A Cloud Run service.
    Run,
}

impl Resource {
    fn accepts_role(self, role: &str) -> bool {
        if role.starts_with("projects/") || role.starts_with("organizations/") {
            // Custom roles: Google checks their permissions, not their names.
            return role.contains("/roles/");
        }
        let basic = matches!(role, "roles/owner" | "roles/editor" | "roles/viewer");
        match self {
            Resource::Iap => basic || role.starts_with("roles/iap."),
            Resource::Run => basic || role.starts_with("roles/run."),
        }
    }
}

/// One resource's IAM policy.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    bindings: Vec<Value>,
    /// Bumped on every successful set; the etag encodes it.
    revision: u64,
}

impl Policy {
    /// The etag clients must send back to `setIamPolicy`.
    pub fn etag(&self) -> String {
        if self.revision == 0 {
            // What Google returns for a policy that was never set.
            "ACAB".to_string()
        } else {
            base64(&(0x0006_0000_0000_0000u64 | self.revision).to_be_bytes())
        }
    }

    /// The bindings, as set.
    pub fn bindings(&self) -> &[Value] {
        &self.bindings
    }

    /// The Policy JSON. proto3 JSON leaves out the empty bindings and a zero version.
    pub fn to_json(&self) -> Value {
        if self.bindings.is_empty() {
            return json!({ "etag": self.etag() });
        }
        let conditional = self.bindings.iter().any(|b| b.get("condition").is_some());
        json!({
            "version": if conditional { 3 } else { 1 },
            "etag": self.etag(),
            "bindings": self.bindings,
        })
    }

    /// `setIamPolicy`: replaces the whole policy after checking the etag (when the
    /// request carries one), every role and every member.
    pub fn set(
        &mut self,
        request: &Value,
        resource: Resource,
        project_number: u64,
        agents: &BTreeSet<String>,
    ) -> Result<(), ApiError> {
        let Some(policy) = request.get("policy").filter(|p| p.is_object()) else {
            return Err(invalid(
                "Request contains an invalid argument: 'policy' is required.",
            ));
        };
        if let Some(etag) = policy.get("etag").and_then(Value::as_str)
            && !crate::b64::same_bytes(etag, &self.etag())
        {
            return Err(ApiError::new(
                409,
                "aborted",
                format!(
                    "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff. The request's ETag '{etag}' did not match the current policy's ETag '{}'.",
                    self.etag()
                ),
            )
            .aip193());
        }
        let version = policy.get("version").and_then(Value::as_i64).unwrap_or(1);
        check_requested_version(version)?;
        let mut out = Vec::new();
        for binding in policy
            .get("bindings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let role = binding.get("role").and_then(Value::as_str).unwrap_or("");
            if role.is_empty() {
                return Err(invalid("Role must be specified in each binding."));
            }
            if !role.starts_with("roles/") && !role.contains("/roles/") {
                return Err(invalid(format!(
                    "Role ({role}) does not exist in the resource's hierarchy."
                )));
            }
            if !resource.accepts_role(role) {
                return Err(invalid(format!(
                    "Role {role} is not supported for this resource."
                )));
            }
            if binding.get("condition").is_some() && version < 3 {
                return Err(invalid(
                    "Invalid policy: a policy with conditional role bindings must be version 3.",
                ));
            }
            let mut members: Vec<String> = Vec::new();
            for m in binding
                .get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let m = m.as_str().unwrap_or("");
                check_member(m, project_number, agents)?;
                if !members.iter().any(|x| x == m) {
                    members.push(m.to_string());
                }
            }
            if members.is_empty() {
                // Google drops bindings left without members.
                continue;
            }
            let mut b = json!({ "role": role, "members": members });
            if let Some(c) = binding.get("condition") {
                b["condition"] = c.clone();
            }
            out.push(b);
        }
        self.bindings = out;
        self.revision += 1;
        Ok(())
    }
}

/// Google accepts policy versions 0, 1 and 3 only.
pub fn check_requested_version(v: i64) -> Result<(), ApiError> {
    if matches!(v, 0 | 1 | 3) {
        Ok(())
    } else {
        Err(invalid(format!(
            "Invalid requested policy version {v}: valid values are 0, 1 and 3."
        )))
    }
}

/// Member syntax and, for Google-managed service agents of this project, existence.
fn check_member(m: &str, project_number: u64, agents: &BTreeSet<String>) -> Result<(), ApiError> {
    if matches!(m, "allUsers" | "allAuthenticatedUsers") {
        return Ok(());
    }
    let Some((kind, value)) = m.split_once(':') else {
        return Err(invalid(
            "Policy members must be of the form \"<type>:<value>\".",
        ));
    };
    match kind {
        "user" | "group" | "serviceAccount" if value.contains('@') => {}
        "domain" if value.contains('.') => {}
        "principal" | "principalSet" | "deleted" => {}
        "user" | "group" | "serviceAccount" | "domain" => {
            return Err(invalid(format!("Invalid member '{m}': malformed {kind}.")));
        }
        _ => {
            return Err(invalid(format!("Invalid member type '{kind}' in '{m}'.")));
        }
    }
    if kind == "serviceAccount" && is_agent_of(value, project_number) && !agents.contains(value) {
        return Err(invalid(format!("Service account {value} does not exist.")));
    }
    Ok(())
}

/// `service-N@gcp-sa-x.iam.gserviceaccount.com` (and the few older agent domains)
/// for this project's number.
fn is_agent_of(email: &str, number: u64) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    local == format!("service-{number}")
        && domain.ends_with(".iam.gserviceaccount.com")
        && (domain.starts_with("gcp-sa-")
            || domain.starts_with("serverless-robot-prod")
            || domain.starts_with("compute-system"))
}

/// The `permissions` list of a `testIamPermissions` request, checked for syntax.
pub fn permissions_in(request: &Value) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for p in request
        .get("permissions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let p = p.as_str().unwrap_or("");
        // Permissions are `service.resource.verb`.
        if p.split('.').count() < 3 || p.split('.').any(str::is_empty) {
            return Err(invalid(format!("Permission {p} is not valid.")));
        }
        out.push(p.to_string());
    }
    Ok(out)
}

/// Standard base64 with padding (etags), without pulling in a crate for it.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn members_and_roles_are_validated() {
        let agents = BTreeSet::new();
        let mut p = Policy::default();
        let req = |m: &str| json!({"policy": {"bindings": [{"role": "roles/iap.httpsResourceAccessor", "members": [m]}]}});
        assert!(
            p.set(&req("user:a@x.com"), Resource::Iap, 1, &agents)
                .is_ok()
        );
        assert_eq!(
            p.set(&req("a@x.com"), Resource::Iap, 1, &agents)
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            p.set(&req("usr:a@x.com"), Resource::Iap, 1, &agents)
                .unwrap_err()
                .code,
            400
        );
        let e = p
            .set(
                &req("serviceAccount:service-1@gcp-sa-iap.iam.gserviceaccount.com"),
                Resource::Iap,
                1,
                &agents,
            )
            .unwrap_err();
        assert!(e.message.contains("does not exist"), "{}", e.message);
        let run_role = json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": ["user:a@x.com"]}]}});
        assert!(p.set(&run_role, Resource::Iap, 1, &agents).is_err());
        assert!(p.set(&run_role, Resource::Run, 1, &agents).is_ok());
    }

    #[test]
    fn etag_changes_on_every_set() {
        let mut p = Policy::default();
        assert_eq!(p.etag(), "ACAB");
        p.set(&json!({"policy": {}}), Resource::Run, 1, &BTreeSet::new())
            .unwrap();
        let e1 = p.etag();
        p.set(&json!({"policy": {}}), Resource::Run, 1, &BTreeSet::new())
            .unwrap();
        assert_ne!(e1, p.etag());
        assert_ne!(e1, "ACAB");
    }
}
