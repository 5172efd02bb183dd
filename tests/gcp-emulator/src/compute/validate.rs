//! Field checks shared by every Compute resource: names, regions, request ids,
//! fingerprints, merge patch, output-only fields, and reference resolution.

use crate::error::{ApiError, ApiResult};
use serde_json::{Map, Value, json};

use super::*;

// ---------------------------------------------------------------- helpers

pub(super) fn invalid_field(field: &str, value: impl std::fmt::Display, why: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value for field '{field}': '{value}'. {why}"
    ))
}

pub(super) fn required_field(field: &str) -> ApiError {
    ApiError::required(format!("Required field '{field}' not specified"))
}

pub(super) fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

pub(super) fn check_name(obj: &Map<String, Value>) -> ApiResult<String> {
    match obj.get("name") {
        None | Some(Value::Null) => Err(required_field("resource.name")),
        Some(Value::String(n)) if valid_name(n) => Ok(n.clone()),
        Some(v) => Err(invalid_field(
            "resource.name",
            v.as_str().unwrap_or(&v.to_string()),
            &format!("Must be a match of regex '{NAME_REGEX}'"),
        )),
    }
}

pub(super) fn valid_region(r: &str) -> bool {
    // e.g. us-central1, europe-west4, northamerica-northeast2
    let mut parts = r.split('-');
    let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = b.trim_start_matches(|c: char| c.is_ascii_lowercase());
    !a.is_empty()
        && a.chars().all(|c| c.is_ascii_lowercase())
        && digits.len() < b.len()
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// Google's 404 for a region that does not exist.
pub(super) fn check_region(project: &str, region: Option<&str>) -> ApiResult<()> {
    match region {
        Some(r) if !valid_region(r) => Err(ApiError::not_found(format!(
            "projects/{project}/regions/{r}"
        ))),
        _ => Ok(()),
    }
}

pub(super) fn check_request_id(id: &str) -> ApiResult<()> {
    let b = id.as_bytes();
    let shape = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    let zero = b.iter().all(|c| *c == b'0' || *c == b'-');
    if !shape || zero {
        return Err(invalid_field(
            "requestId",
            id,
            "The request id must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).",
        ));
    }
    Ok(())
}

pub(super) fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

pub(super) fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn base64(data: &[u8]) -> String {
    crate::b64::encode(data)
}

/// A fresh fingerprint over the resource's content (8 bytes, base64, as Google's).
pub(super) fn set_fingerprint(v: &mut Map<String, Value>) {
    v.remove("fingerprint");
    let bytes = serde_json::to_vec(&*v).unwrap_or_default();
    let digest = sha256(&bytes);
    v.insert("fingerprint".into(), json!(base64(&digest[..8])));
}

/// RFC 7396 JSON merge patch: objects merge, `null` deletes, anything else
/// (arrays included) replaces wholesale.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Output-only fields clients may echo back; Compute ignores them on write.
pub(super) fn strip_outputs(coll: Coll, obj: &mut Map<String, Value>) {
    for k in [
        "kind",
        "id",
        "creationTimestamp",
        "selfLink",
        "selfLinkWithId",
        "region",
        "fingerprint",
        "labelFingerprint",
    ] {
        obj.remove(k);
    }
    obj.retain(|k, _| !k.starts_with("__"));
    match coll {
        Coll::SslCertificates => {
            for k in ["expireTime", "subjectAlternativeNames"] {
                obj.remove(k);
            }
        }
        Coll::BackendServices => {
            obj.remove("usedBy");
            if let Some(Value::Object(iap)) = obj.get_mut("iap") {
                iap.remove("oauth2ClientSecretSha256");
            }
        }
        Coll::Addresses => {
            obj.remove("status");
            obj.remove("users");
        }
        Coll::NetworkEndpointGroups => {
            obj.remove("size");
        }
        _ => {}
    }
}

pub(super) fn enum_field(
    obj: &mut Map<String, Value>,
    key: &str,
    allowed: &[&str],
    default: Option<&str>,
) -> ApiResult<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            if let Some(d) = default {
                obj.insert(key.into(), json!(d));
            }
            Ok(default.map(str::to_string))
        }
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(v) => Err(invalid_field(
            &format!("resource.{key}"),
            v.as_str().unwrap_or(&v.to_string()),
            &format!("Must be one of [{}].", allowed.join(", ")),
        )),
    }
}

pub(super) fn default_field(obj: &mut Map<String, Value>, key: &str, v: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), v);
    }
}

/// Parses a reference (full URL, `projects/...` path, `global/...` /
/// `regions/R/...` partial path, or a bare name when `full_only` is false) to one
/// of `expected`, canonicalises it and checks the resource exists.
pub(super) fn resolve(
    state: &State,
    ctx: &Ctx,
    field: &str,
    value: &Value,
    expected: &[Coll],
    full_only: bool,
) -> ApiResult<Res> {
    let Some(s) = value.as_str() else {
        return Err(invalid_field(field, value, "The URL is malformed."));
    };
    let malformed = || invalid_field(field, s, "The URL is malformed.");
    let full = s
        .strip_prefix(LINK_ROOT)
        .or_else(|| s.strip_prefix("https://compute.googleapis.com/compute/v1/"))
        .or_else(|| own_host_path(s, ctx.host.as_deref()));
    if full_only && full.is_none() {
        return Err(invalid_field(
            field,
            s,
            "The URL must be a fully-qualified resource URL.",
        ));
    }
    let rest = full.unwrap_or(s);
    let (project, rest) = match rest.strip_prefix("projects/") {
        Some(r) => r.split_once('/').ok_or_else(malformed)?,
        None if full.is_some() => return Err(malformed()),
        None => (ctx.project.as_str(), rest),
    };
    let project = if project == ctx.number.to_string() {
        ctx.project.clone()
    } else {
        project.to_string()
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let (scope, coll, name) = match segs.as_slice() {
        ["global", c, n] => ("global".to_string(), *c, *n),
        ["regions", r, c, n] => (format!("regions/{r}"), *c, *n),
        [n] if full.is_none() && !s.starts_with("projects/") && expected.len() == 1 => {
            let c = expected[0];
            let scope = if c.regional() {
                ctx.scope()
            } else {
                "global".into()
            };
            (scope, c.path(), *n)
        }
        _ => return Err(malformed()),
    };
    let Some(coll) = Coll::from_path(coll).filter(|c| expected.contains(c)) else {
        return Err(invalid_field(
            field,
            s,
            &format!(
                "Unexpected resource collection '{coll}', expected {}.",
                expected
                    .iter()
                    .map(|c| c.path())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ));
    };
    if name.is_empty() || coll.regional() != scope.starts_with("regions/") {
        return Err(malformed());
    }
    let res = Res {
        project,
        scope,
        coll,
        name: name.to_string(),
    };
    if res.project != ctx.project || state.get(&res).is_none() {
        return Err(ApiError::not_found(res.path()));
    }
    Ok(res)
}

/// `http(s)://HOST/compute/v1/rest` -> `rest` when HOST is the host the request
/// was addressed to (the emulator standing in for Google's hosts).
pub(super) fn own_host_path<'a>(s: &'a str, host: Option<&str>) -> Option<&'a str> {
    let host = host?;
    let after = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))?;
    after.strip_prefix(host)?.strip_prefix("/compute/v1/")
}

/// Resolves `obj[key]` in place to its canonical link; `Ok(None)` when absent.
pub(super) fn resolve_field(
    state: &State,
    ctx: &Ctx,
    obj: &mut Map<String, Value>,
    key: &str,
    field: &str,
    expected: &[Coll],
) -> ApiResult<Option<Res>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let r = resolve(state, ctx, field, v, expected, false)?;
            obj.insert(key.into(), json!(r.link()));
            Ok(Some(r))
        }
    }
}

pub(super) fn cert_list(
    state: &State,
    ctx: &Ctx,
    value: Option<&Value>,
    field: &str,
) -> ApiResult<Vec<Value>> {
    let list = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => return Err(invalid_field(field, v, "Must be a list.")),
    };
    if list.is_empty() {
        return Err(invalid_field(
            field,
            "",
            "At least one SSL certificate must be specified for a target HTTPS proxy.",
        ));
    }
    if list.len() > MAX_CERTS_PER_PROXY {
        return Err(invalid_field(
            field,
            list.len(),
            &format!(
                "Number of SSL certificates exceeds the limit of {MAX_CERTS_PER_PROXY} per target HTTPS proxy."
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            resolve(
                state,
                ctx,
                &format!("{field}[{i}]"),
                c,
                &[Coll::SslCertificates],
                false,
            )
            .map(|r| json!(r.link()))
        })
        .collect()
}
