//! A target HTTPS proxy's `certificateMap` (a Certificate Manager map): the
//! reference checked on insert, patch and `setCertificateMap`, and its removal.
//!
//! The reference must be the full name Compute documents
//! (`//certificatemanager.googleapis.com/projects/P/locations/L/certificateMaps/M`,
//! the `certificateMap` field doc) of a map that exists in the project; a
//! malformed one is Compute's 400 `invalid` "The URL is malformed.", a missing
//! map its 404 `notFound` naming the reference (our reading: Compute answers
//! missing references of its own resources that way; for maps Google documents
//! no wording). Detaching the map from a proxy with no `sslCertificates` is
//! refused with the message of Certificate Manager's troubleshooting page,
//! "There must be at least one certificate configured for a target proxy." (the
//! `badRequest` reason is our reading). A proxy may hold both: the map is what
//! it serves ([`crate::certificatemanager::serving`]).

use serde_json::{Map, Value, json};

use super::*;
use crate::certificatemanager::{LOCATION, parse_map_reference};
use crate::error::{ApiError, ApiResult};

/// Checks a `certificateMap` reference and returns it as stored: the full name.
/// The API URL of the map (`https://certificatemanager.googleapis.com/v1/projects/...`,
/// or on the host the request was addressed to) is accepted too: gcloud's
/// `target-https-proxies update --certificate-map` sends that form.
pub(super) fn certificate_map(ctx: &Ctx, field: &str, value: &Value) -> ApiResult<String> {
    let s = value.as_str().unwrap_or_default();
    let api_url = ["https://certificatemanager.googleapis.com/v1/"]
        .into_iter()
        .filter_map(|root| s.strip_prefix(root))
        .chain(ctx.host.as_deref().and_then(|h| {
            s.strip_prefix("http://")
                .or_else(|| s.strip_prefix("https://"))
                .and_then(|r| r.strip_prefix(h))
                .and_then(|r| r.strip_prefix("/v1/"))
        }))
        .next();
    let full = match api_url {
        Some(rest) => format!("{}{rest}", crate::certificatemanager::FULL_NAME_ROOT),
        None => s.to_string(),
    };
    let Some((project, location, map)) = parse_map_reference(&full) else {
        return Err(invalid_field(field, s, "The URL is malformed."));
    };
    let ours = project == ctx.project || project == ctx.number.to_string();
    if !ours || location != LOCATION || !ctx.cert_maps.contains(map) {
        return Err(ApiError::not_found(s));
    }
    Ok(full)
}

/// On insert and patch: checks `certificateMap` in place (an empty one is
/// none); whether the proxy has a map.
pub(super) fn proxy_certificate_map(ctx: &Ctx, obj: &mut Map<String, Value>) -> ApiResult<bool> {
    match obj.get("certificateMap").cloned() {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s.is_empty() => {
            obj.remove("certificateMap");
            Ok(false)
        }
        Some(v) => {
            let m = certificate_map(ctx, "resource.certificateMap", &v)?;
            obj.insert("certificateMap".into(), json!(m));
            Ok(true)
        }
    }
}

/// `setCertificateMap`: attaches the map, or with none detaches it.
pub(super) fn set_certificate_map(
    ctx: &Ctx,
    proxy: &mut Map<String, Value>,
    body: &Map<String, Value>,
) -> ApiResult<()> {
    match body
        .get("certificateMap")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        Some(m) => {
            let m = certificate_map(ctx, "certificateMap", m)?;
            proxy.insert("certificateMap".into(), json!(m));
        }
        None => {
            let has_certs = proxy
                .get("sslCertificates")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !has_certs {
                return Err(ApiError::bad_request(
                    "There must be at least one certificate configured for a target proxy.",
                ));
            }
            proxy.remove("certificateMap");
        }
    }
    Ok(())
}
