//! The generic resource operations (build, insert, find, delete, modify, render)
//! and sslCertificates' builder; per-resource builders live in their own files.

use crate::error::{ApiError, ApiResult};
use crate::state::rfc3339;
use serde_json::{Map, Value, json};

use super::*;

// ---------------------------------------------------------------- builders

/// Validates a resource body (inputs only) and returns it completed with its
/// defaults and canonical references. `prev` is the stored resource on updates.
pub(super) fn build(
    state: &State,
    ctx: &Ctx,
    coll: Coll,
    mut obj: Map<String, Value>,
    prev: Option<&Value>,
) -> ApiResult<Map<String, Value>> {
    match coll {
        Coll::SslCertificates => build_cert(obj),
        Coll::TargetHttpsProxies => {
            if resolve_field(
                state,
                ctx,
                &mut obj,
                "urlMap",
                "resource.urlMap",
                &[Coll::UrlMaps],
            )?
            .is_none()
            {
                return Err(required_field("resource.urlMap"));
            }
            let has_map = proxy_certificate_map(ctx, &mut obj)?;
            if !has_map || obj.get("sslCertificates").is_some() {
                let certs = cert_list(
                    state,
                    ctx,
                    obj.get("sslCertificates"),
                    "resource.sslCertificates",
                )?;
                obj.insert("sslCertificates".into(), Value::Array(certs));
            }
            enum_field(
                &mut obj,
                "quicOverride",
                &["NONE", "ENABLE", "DISABLE"],
                Some("NONE"),
            )?;
            enum_field(
                &mut obj,
                "tlsEarlyData",
                &["DISABLED", "PERMISSIVE", "STRICT", "UNRESTRICTED"],
                None,
            )?;
            Ok(obj)
        }
        Coll::TargetHttpProxies => {
            if resolve_field(
                state,
                ctx,
                &mut obj,
                "urlMap",
                "resource.urlMap",
                &[Coll::UrlMaps],
            )?
            .is_none()
            {
                return Err(required_field("resource.urlMap"));
            }
            Ok(obj)
        }
        Coll::UrlMaps => build_url_map(state, ctx, obj),
        Coll::BackendServices => build_backend(state, ctx, obj, prev),
        Coll::NetworkEndpointGroups => build_neg(obj),
        Coll::Addresses => build_address(state, obj),
        Coll::ForwardingRules => build_forwarding_rule(state, ctx, obj),
    }
}

pub(super) fn build_cert(obj: Map<String, Value>) -> ApiResult<Map<String, Value>> {
    match obj.get("type").and_then(Value::as_str) {
        None | Some("SELF_MANAGED") | Some("TYPE_UNSPECIFIED") => {}
        Some("MANAGED") => {
            return Err(invalid_field(
                "resource.type",
                "MANAGED",
                "Google-managed certificates are not supported by the emulator.",
            ));
        }
        Some(other) => {
            return Err(invalid_field(
                "resource.type",
                other,
                "Must be one of [MANAGED, SELF_MANAGED].",
            ));
        }
    }
    let sm = obj.get("selfManaged").filter(|v| v.is_object());
    let (cert_field, key_field) = if sm.is_some() {
        (
            "resource.selfManaged.certificate",
            "resource.selfManaged.privateKey",
        )
    } else {
        ("resource.certificate", "resource.privateKey")
    };
    let pick = |k: &str| {
        sm.and_then(|s| s.get(k))
            .or_else(|| obj.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let cert = pick("certificate").ok_or_else(|| required_field(cert_field))?;
    let key = pick("privateKey").ok_or_else(|| required_field(key_field))?;
    let parsed = certs::validate(&cert, &key)?;
    let mut out = Map::new();
    if let Some(d) = obj.get("description") {
        out.insert("description".into(), d.clone());
    }
    out.insert("type".into(), json!("SELF_MANAGED"));
    out.insert("certificate".into(), json!(cert));
    out.insert("selfManaged".into(), json!({ "certificate": cert }));
    out.insert("expireTime".into(), json!(rfc3339(parsed.not_after)));
    out.insert("subjectAlternativeNames".into(), json!(parsed.sans));
    Ok(out)
}

// ---------------------------------------------------------------- operations on resources

pub(super) fn insert(
    state: &mut State,
    ctx: &Ctx,
    coll: Coll,
    mut body: Map<String, Value>,
) -> ApiResult<Target> {
    strip_outputs(coll, &mut body);
    let name = check_name(&body)?;
    let res = ctx.res(coll, &name);
    if state.get(&res).is_some() {
        return Err(ApiError::already_exists(res.path()));
    }
    if let Some(metric) = coll.quota() {
        let limit = state.quota_limit(metric);
        if state.quota_usage(metric) as f64 >= limit {
            return Err(ApiError::new(
                403,
                "quotaExceeded",
                format!("Quota '{metric}' exceeded.  Limit: {limit:.1} globally."),
            ));
        }
    }
    let mut v = build(state, ctx, coll, body, None)?;
    v.insert("kind".into(), json!(coll.kind()));
    v.insert("id".into(), json!(ctx.new_id.to_string()));
    v.insert("creationTimestamp".into(), json!(rfc3339(ctx.now)));
    v.insert("name".into(), json!(name));
    v.insert("selfLink".into(), json!(res.link()));
    if let Some(r) = &ctx.region {
        v.insert(
            "region".into(),
            json!(format!("{LINK_ROOT}projects/{}/regions/{r}", ctx.project)),
        );
    }
    if coll.has_fingerprint() {
        set_fingerprint(&mut v);
    }
    state.put(&res, Value::Object(v));
    Ok(Target {
        link: res.link(),
        id: ctx.new_id,
    })
}

pub(super) fn target_of(v: &Value, res: &Res) -> Target {
    Target {
        link: res.link(),
        id: v["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
    }
}

/// Finds a resource by name or numeric id.
pub(super) fn find(state: &State, ctx: &Ctx, coll: Coll, key: &str) -> ApiResult<(Res, Value)> {
    let res = ctx.res(coll, key);
    if let Some(v) = state.get(&res) {
        return Ok((res, v.clone()));
    }
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        let hit = state
            .resources
            .get(&res.key())
            .and_then(|m| m.iter().find(|(_, v)| v["id"].as_str() == Some(key)));
        if let Some((name, v)) = hit {
            return Ok((ctx.res(coll, name), v.clone()));
        }
    }
    Err(ApiError::not_found(res.path()))
}

pub(super) fn delete(state: &mut State, ctx: &Ctx, coll: Coll, key: &str) -> ApiResult<Target> {
    let (res, v) = find(state, ctx, coll, key)?;
    if let Some(user) = state.users_of(&res.link()).first() {
        return Err(ApiError::in_use(coll.noun(), &res.path(), path_of(user)));
    }
    state.remove(&res);
    Ok(target_of(&v, &res))
}

/// PATCH (merge) or PUT (replace) with fingerprint.
pub(super) fn modify(
    state: &mut State,
    ctx: &Ctx,
    coll: Coll,
    key: &str,
    mut body: Map<String, Value>,
    merge: bool,
) -> ApiResult<Target> {
    let (res, prev) = find(state, ctx, coll, key)?;
    match body.get("fingerprint").and_then(Value::as_str) {
        None => return Err(required_field("resource.fingerprint")),
        // A bytes field: gcloud echoes it URL-safe encoded.
        Some(f) if !crate::b64::same_bytes(f, prev["fingerprint"].as_str().unwrap_or("")) => {
            return Err(ApiError::condition_not_met("Invalid fingerprint."));
        }
        Some(_) => {}
    }
    if let Some(n) = body.get("name").and_then(Value::as_str)
        && n != res.name
    {
        return Err(invalid_field(
            "resource.name",
            n,
            "The name of a resource cannot be changed.",
        ));
    }
    strip_outputs(coll, &mut body);
    let mut base = prev.clone();
    if let Value::Object(m) = &mut base {
        strip_outputs(coll, m);
    }
    let next = if merge {
        merge_patch(&mut base, &Value::Object(body));
        base
    } else {
        Value::Object(body)
    };
    let Value::Object(mut next) = next else {
        return Err(ApiError::invalid("Invalid value for field 'resource'."));
    };
    next.insert("name".into(), json!(res.name));
    let mut v = build(state, ctx, coll, next, Some(&prev))?;
    for k in ["kind", "id", "creationTimestamp", "selfLink", "region"] {
        if let Some(x) = prev.get(k) {
            v.insert(k.into(), x.clone());
        }
    }
    set_fingerprint(&mut v);
    state.put(&res, Value::Object(v));
    Ok(target_of(&prev, &res))
}

pub(super) fn set_on_proxy(
    state: &mut State,
    ctx: &Ctx,
    coll: Coll,
    key: &str,
    verb: &str,
    body: &Map<String, Value>,
) -> ApiResult<Target> {
    let (res, prev) = find(state, ctx, coll, key)?;
    let mut v = prev.as_object().cloned().unwrap_or_default();
    match verb {
        "setSslCertificates" if coll == Coll::TargetHttpsProxies => {
            let certs = cert_list(state, ctx, body.get("sslCertificates"), "sslCertificates")?;
            v.insert("sslCertificates".into(), Value::Array(certs));
        }
        "setCertificateMap" if coll == Coll::TargetHttpsProxies => {
            set_certificate_map(ctx, &mut v, body)?;
        }
        "setUrlMap" => {
            let Some(m) = body.get("urlMap").filter(|m| !m.is_null()) else {
                return Err(required_field("urlMap"));
            };
            let r = resolve(state, ctx, "urlMap", m, &[Coll::UrlMaps], false)?;
            v.insert("urlMap".into(), json!(r.link()));
        }
        _ => return Err(unknown_method(verb)),
    }
    set_fingerprint(&mut v);
    state.put(&res, Value::Object(v));
    Ok(target_of(&prev, &res))
}

/// The resource as the API returns it: private keys dropped, computed fields filled.
pub(super) fn render(state: &State, coll: Coll, v: &Value) -> Value {
    let mut out = v.clone();
    if let Value::Object(m) = &mut out {
        m.retain(|k, _| !k.starts_with("__"));
        let link = m
            .get("selfLink")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match coll {
            Coll::Addresses => {
                let users = state.users_of(&link);
                m.insert(
                    "status".into(),
                    json!(if users.is_empty() {
                        "RESERVED"
                    } else {
                        "IN_USE"
                    }),
                );
                if users.is_empty() {
                    m.remove("users");
                } else {
                    m.insert("users".into(), json!(users));
                }
            }
            Coll::BackendServices => {
                let users: Vec<Value> = state
                    .users_of(&link)
                    .into_iter()
                    .map(|u| json!({ "reference": u }))
                    .collect();
                if users.is_empty() {
                    m.remove("usedBy");
                } else {
                    m.insert("usedBy".into(), Value::Array(users));
                }
            }
            _ => {}
        }
    }
    out
}
