//! Certificate Manager's long-running operations: created by every mutation,
//! done after their delay (derived from timestamps whenever read), served by
//! `operations.get`, `list` and `delete`.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::{TYPE_ROOT, grpc_code};
use crate::error::ApiError;
use crate::state::rfc3339_utc;

/// One operation.
#[derive(Clone, Debug)]
pub struct Operation {
    /// `projects/P/locations/global/operations/operation-...`
    pub name: String,
    /// `create`, `update` or `delete`.
    pub verb: &'static str,
    /// The resource acted on.
    pub target: String,
    pub created: SystemTime,
    pub delay: Duration,
    /// The resource (with its `@type`), or the failure an injected fault asked for.
    pub outcome: Result<Value, ApiError>,
}

impl Operation {
    /// A new operation's name: Compute-like, `operation-<ms>-<hex>-<hex>-<hex>`.
    pub fn name_for(parent: &str, seq: u64, now: SystemTime) -> String {
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let h = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &seq.to_be_bytes());
        let hex: String = h.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{parent}/operations/operation-{millis}-{}-{}-{}",
            &hex[..13],
            &hex[14..22],
            &hex[22..30]
        )
    }

    pub fn is_done(&self, now: SystemTime) -> bool {
        now.duration_since(self.created).unwrap_or_default() >= self.delay
    }

    /// The operation as read at `now`.
    pub fn to_json(&self, now: SystemTime) -> Value {
        let done = self.is_done(now);
        let mut metadata = json!({
            "@type": format!("{TYPE_ROOT}OperationMetadata"),
            "createTime": rfc3339_utc(self.created),
            "target": self.target,
            "verb": self.verb,
            "apiVersion": "v1",
        });
        let mut v = json!({ "name": self.name });
        if done {
            metadata["endTime"] = json!(rfc3339_utc(self.created + self.delay));
            v["done"] = json!(true);
            match &self.outcome {
                Ok(r) => v["response"] = r.clone(),
                Err(e) => {
                    v["error"] = json!({ "code": grpc_code(e), "message": e.message });
                }
            }
        }
        v["metadata"] = metadata;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_after_the_delay_with_response_or_error() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut op = Operation {
            name: Operation::name_for("projects/p/locations/global", 7, t0),
            verb: "create",
            target: "projects/p/locations/global/certificateMaps/m".into(),
            created: t0,
            delay: Duration::from_secs(2),
            outcome: Ok(json!({"@type": "x", "name": "m"})),
        };
        assert!(
            op.name
                .starts_with("projects/p/locations/global/operations/operation-1800000000000-")
        );
        let v = op.to_json(t0 + Duration::from_secs(1));
        assert!(v.get("done").is_none() && v.get("response").is_none());
        assert_eq!(v["metadata"]["verb"], "create");
        assert!(v["metadata"].get("endTime").is_none());
        let v = op.to_json(t0 + Duration::from_secs(2));
        assert_eq!(v["done"], true);
        assert_eq!(v["response"]["name"], "m");
        op.outcome = Err(ApiError::new(503, "backendError", "down").aip193());
        let v = op.to_json(t0 + Duration::from_secs(3));
        assert_eq!(v["error"]["code"], 14);
        assert!(v.get("response").is_none());
    }
}
