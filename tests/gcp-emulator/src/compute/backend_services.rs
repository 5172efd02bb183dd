//! backendServices: protocols, backends and IAP settings.

use crate::error::{ApiError, ApiResult};
use serde_json::{Map, Value, json};

use super::*;

pub(super) const SCHEMES: [&str; 6] = [
    "EXTERNAL",
    "EXTERNAL_MANAGED",
    "EXTERNAL_PASSTHROUGH",
    "INTERNAL",
    "INTERNAL_MANAGED",
    "INTERNAL_SELF_MANAGED",
];

pub(super) fn build_backend(
    state: &State,
    ctx: &Ctx,
    mut obj: Map<String, Value>,
    prev: Option<&Value>,
) -> ApiResult<Map<String, Value>> {
    enum_field(&mut obj, "loadBalancingScheme", &SCHEMES, Some("EXTERNAL"))?;
    enum_field(
        &mut obj,
        "protocol",
        &[
            "GRPC",
            "H2C",
            "HTTP",
            "HTTP2",
            "HTTPS",
            "SSL",
            "TCP",
            "UDP",
            "UNSPECIFIED",
        ],
        Some("HTTP"),
    )?;
    let mut serverless = false;
    if let Some(backends) = obj.get("backends").cloned() {
        let Value::Array(list) = backends else {
            return Err(invalid_field(
                "resource.backends",
                backends,
                "Must be a list.",
            ));
        };
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (i, b) in list.into_iter().enumerate() {
            let field = format!("resource.backends[{i}]");
            let Value::Object(mut b) = b else {
                return Err(invalid_field(&field, b, "Must be an object."));
            };
            let Some(group) = b.get("group").filter(|g| !g.is_null()) else {
                return Err(required_field(&format!("{field}.group")));
            };
            let r = resolve(
                state,
                ctx,
                &format!("{field}.group"),
                group,
                &[Coll::NetworkEndpointGroups],
                true,
            )?;
            if seen.contains(&r.link()) {
                return Err(invalid_field(
                    &format!("{field}.group"),
                    r.link(),
                    "Duplicate backend group.",
                ));
            }
            seen.push(r.link());
            if state
                .get(&r)
                .and_then(|n| n["networkEndpointType"].as_str())
                == Some("SERVERLESS")
            {
                serverless = true;
            }
            b.insert("group".into(), json!(r.link()));
            enum_field(
                &mut b,
                "balancingMode",
                &[
                    "CONNECTION",
                    "CUSTOM_METRICS",
                    "IN_FLIGHT",
                    "RATE",
                    "UTILIZATION",
                ],
                Some("UTILIZATION"),
            )
            .map_err(|e| {
                ApiError::invalid(
                    e.message
                        .replace("resource.balancingMode", &format!("{field}.balancingMode")),
                )
            })?;
            default_field(&mut b, "capacityScaler", json!(1));
            out.push(Value::Object(b));
        }
        obj.insert("backends".into(), Value::Array(out));
    }
    if serverless
        && obj
            .get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|h| !h.is_empty())
    {
        return Err(invalid_field(
            "resource.healthChecks",
            obj["healthChecks"].clone(),
            "A backend service with serverless network endpoint group backends cannot have a health check.",
        ));
    }
    if let Some(Value::Object(iap)) = obj.get_mut("iap") {
        // The secret is write-only: keep only its SHA-256, as Compute does.
        match iap.remove("oauth2ClientSecret") {
            Some(Value::String(secret)) => {
                iap.insert(
                    "oauth2ClientSecretSha256".into(),
                    json!(hex(&sha256(secret.as_bytes()))),
                );
            }
            _ => {
                if !iap.contains_key("oauth2ClientSecretSha256")
                    && let Some(old) =
                        prev.and_then(|p| p["iap"]["oauth2ClientSecretSha256"].as_str())
                {
                    iap.insert("oauth2ClientSecretSha256".into(), json!(old));
                }
            }
        }
        default_field(iap, "enabled", json!(false));
    }
    default_field(&mut obj, "timeoutSec", json!(30));
    default_field(&mut obj, "port", json!(80));
    default_field(&mut obj, "portName", json!("http"));
    default_field(&mut obj, "sessionAffinity", json!("NONE"));
    default_field(&mut obj, "affinityCookieTtlSec", json!(0));
    default_field(
        &mut obj,
        "connectionDraining",
        json!({"drainingTimeoutSec": 0}),
    );
    Ok(obj)
}
