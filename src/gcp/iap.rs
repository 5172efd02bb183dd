//! IAP v1: the IAM policy of an IAP-secured backend service (who may pass), and
//! the IAM `Policy` wire type Cloud Run shares.
//!
//! `setIamPolicy` replaces the whole policy, so every change is a
//! read-modify-write carrying the etag; a concurrent writer makes Google answer
//! 409 `ABORTED`, and the whole cycle is repeated.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Api, Call, Gcp, GcpError, enc};

/// An IAM policy: `{version, etag, bindings}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<Binding>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One binding of a policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Binding {
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    /// A conditional binding is never merged with an unconditional one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Policy {
    /// Whether `member` holds `role` unconditionally.
    pub fn has(&self, role: &str, member: &str) -> bool {
        self.bindings.iter().any(|b| {
            b.role == role && b.condition.is_none() && b.members.iter().any(|m| m == member)
        })
    }

    /// Grants `role` to `member` unconditionally; false when it already held it.
    pub fn add(&mut self, role: &str, member: &str) -> bool {
        if self.has(role, member) {
            return false;
        }
        match self
            .bindings
            .iter_mut()
            .find(|b| b.role == role && b.condition.is_none())
        {
            Some(b) => b.members.push(member.to_string()),
            None => self.bindings.push(Binding {
                role: role.to_string(),
                members: vec![member.to_string()],
                ..Binding::default()
            }),
        }
        true
    }

    /// Removes `member` from the unconditional binding of `role` (dropping the
    /// binding when it empties); false when it was not there.
    pub fn remove(&mut self, role: &str, member: &str) -> bool {
        let mut changed = false;
        for b in self
            .bindings
            .iter_mut()
            .filter(|b| b.role == role && b.condition.is_none())
        {
            let before = b.members.len();
            b.members.retain(|m| m != member);
            changed |= b.members.len() != before;
        }
        self.bindings.retain(|b| !b.members.is_empty());
        changed
    }
}

/// How many read-modify-write cycles to try against concurrent writers.
const MAX_POLICY_ATTEMPTS: u32 = 6;

/// Whether an error is a lost etag race (409 ABORTED), to redo the whole cycle.
pub(crate) fn is_concurrent_change(e: &GcpError) -> bool {
    e.code() == Some(409)
        || e.api()
            .is_some_and(|a| a.status == "ABORTED" || a.reason.eq_ignore_ascii_case("aborted"))
}

impl Gcp {
    fn iap_resource(&self, backend_service: &str) -> String {
        self.url(
            Api::Iap,
            &format!(
                "projects/{}/iap_web/compute/services/{}",
                self.project,
                enc(backend_service)
            ),
        )
    }

    /// The IAP policy of a global backend service (POST, version 3 requested so
    /// conditional bindings come back intact).
    pub async fn get_iap_policy(&self, backend_service: &str) -> Result<Policy, GcpError> {
        let url = format!("{}:getIamPolicy", self.iap_resource(backend_service));
        let body = serde_json::json!({"options": {"requestedPolicyVersion": 3}});
        self.call(
            Call::new(Api::Iap, "iap.getIamPolicy"),
            Method::POST,
            &url,
            Some(&body),
        )
        .await
    }

    /// Replaces the IAP policy; `policy.etag` must be the one read.
    pub async fn set_iap_policy(
        &self,
        backend_service: &str,
        policy: &Policy,
    ) -> Result<Policy, GcpError> {
        let url = format!("{}:setIamPolicy", self.iap_resource(backend_service));
        let body = serde_json::json!({ "policy": policy });
        // A blind repeat could overwrite a concurrent change: callers redo the cycle.
        let mut call = Call::new(Api::Iap, "iap.setIamPolicy");
        call.retry = false;
        self.call(call, Method::POST, &url, Some(&body)).await
    }

    /// Read-modify-write of the IAP policy: `edit` returns whether it changed
    /// anything (nothing is written when it did not). Repeats on 409 ABORTED.
    pub async fn edit_iap_policy(
        &self,
        backend_service: &str,
        edit: impl Fn(&mut Policy) -> bool,
    ) -> Result<bool, GcpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut p = self.get_iap_policy(backend_service).await?;
            if !edit(&mut p) {
                return Ok(false);
            }
            // Conditional bindings need version 3 on write.
            if p.bindings.iter().any(|b| b.condition.is_some()) {
                p.version = Some(3);
            }
            match self.set_iap_policy(backend_service, &p).await {
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
    fn add_and_remove_keep_other_bindings() {
        let mut p: Policy = serde_json::from_str(
            r#"{"version":3,"etag":"BwX","bindings":[
                {"role":"roles/iap.httpsResourceAccessor","members":["user:other@x"]},
                {"role":"roles/iap.httpsResourceAccessor","members":["user:a@x"],"condition":{"title":"t","expression":"true"}},
                {"role":"roles/owner","members":["user:o@x"]}]}"#,
        )
        .unwrap();
        let role = "roles/iap.httpsResourceAccessor";
        assert!(!p.has(role, "user:a@x"), "a conditional grant is not ours");
        assert!(p.add(role, "user:a@x"));
        assert!(!p.add(role, "user:a@x"));
        assert_eq!(p.bindings[0].members, ["user:other@x", "user:a@x"]);
        assert!(p.remove(role, "user:a@x"));
        assert!(p.remove(role, "user:other@x"));
        assert!(!p.remove(role, "user:nobody@x"));
        assert_eq!(p.bindings.len(), 2);
        assert!(p.bindings[0].condition.is_some());
        assert_eq!(p.etag.as_deref(), Some("BwX"));
    }
}
