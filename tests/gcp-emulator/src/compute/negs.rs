//! Regional network endpoint groups (serverless NEGs).

use crate::error::ApiResult;
use serde_json::{Map, Value, json};

use super::*;

pub(super) fn build_neg(mut obj: Map<String, Value>) -> ApiResult<Map<String, Value>> {
    let ty = enum_field(
        &mut obj,
        "networkEndpointType",
        &[
            "GCE_VM_IP",
            "GCE_VM_IP_DEDICATED_BACKEND",
            "GCE_VM_IP_PORT",
            "GCE_VM_IP_PORTMAP",
            "INTERNET_FQDN_PORT",
            "INTERNET_IP_PORT",
            "NON_GCP_PRIVATE_IP_PORT",
            "PRIVATE_SERVICE_CONNECT",
            "SERVERLESS",
        ],
        Some("GCE_VM_IP_PORT"),
    )?;
    let platforms: Vec<&str> = ["cloudRun", "appEngine", "cloudFunction"]
        .into_iter()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if ty.as_deref() == Some("SERVERLESS") {
        match platforms.as_slice() {
            [] => {
                return Err(invalid_field(
                    "resource.networkEndpointType",
                    "SERVERLESS",
                    "A serverless network endpoint group must set exactly one of cloudRun, appEngine or cloudFunction.",
                ));
            }
            [_] => {}
            _ => {
                return Err(invalid_field(
                    "resource",
                    platforms.join(", "),
                    "Only one of cloudRun, appEngine or cloudFunction may be set.",
                ));
            }
        }
        if let Some(cr) = obj.get("cloudRun") {
            let has = |k: &str| cr[k].as_str().is_some_and(|s| !s.is_empty());
            if !has("service") && !has("urlMask") {
                return Err(required_field("resource.cloudRun.service"));
            }
            if let Some(s) = cr["service"].as_str()
                && !valid_name(s)
            {
                return Err(invalid_field(
                    "resource.cloudRun.service",
                    s,
                    &format!("Must be a match of regex '{NAME_REGEX}'"),
                ));
            }
        }
    } else if let Some(p) = platforms.first() {
        return Err(invalid_field(
            &format!("resource.{p}"),
            obj[*p].clone(),
            "Only valid when networkEndpointType is SERVERLESS.",
        ));
    }
    obj.insert("size".into(), json!(0));
    Ok(obj)
}
