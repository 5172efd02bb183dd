//! urlMaps: validation of host rules, path matchers and redirects.

use crate::error::{ApiError, ApiResult};
use serde_json::{Map, Value};

use super::*;

pub(super) fn build_url_map(
    state: &State,
    ctx: &Ctx,
    mut obj: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let backend = [Coll::BackendServices];
    resolve_field(
        state,
        ctx,
        &mut obj,
        "defaultService",
        "resource.defaultService",
        &backend,
    )?;
    let present = |o: &Map<String, Value>, k: &str| o.get(k).is_some_and(|v| !v.is_null());
    let defaults = ["defaultService", "defaultUrlRedirect", "defaultRouteAction"]
        .into_iter()
        .filter(|k| present(&obj, k))
        .count();
    if defaults > 1 {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': only one of defaultService, defaultUrlRedirect or defaultRouteAction may be set.",
        ));
    }
    if defaults == 0 {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': one of defaultService, defaultUrlRedirect or defaultRouteAction must be set.",
        ));
    }
    if let Some(redirect) = obj.get("defaultUrlRedirect") {
        check_redirect(redirect, "resource.defaultUrlRedirect")?;
    }

    let mut matcher_names = Vec::new();
    if let Some(Value::Array(pms)) = obj.get("pathMatchers").cloned() {
        let mut new_pms = Vec::new();
        for (i, pm) in pms.into_iter().enumerate() {
            let Value::Object(mut pm) = pm else {
                return Err(invalid_field(
                    &format!("resource.pathMatchers[{i}]"),
                    pm,
                    "Must be an object.",
                ));
            };
            let field = format!("resource.pathMatchers[{i}]");
            let name = match pm.get("name").and_then(Value::as_str) {
                Some(n) if valid_name(n) => n.to_string(),
                Some(n) => {
                    return Err(invalid_field(
                        &format!("{field}.name"),
                        n,
                        &format!("Must be a match of regex '{NAME_REGEX}'"),
                    ));
                }
                None => return Err(required_field(&format!("{field}.name"))),
            };
            if matcher_names.contains(&name) {
                return Err(invalid_field(
                    &format!("{field}.name"),
                    &name,
                    "Duplicate path matcher name.",
                ));
            }
            matcher_names.push(name);
            resolve_field(
                state,
                ctx,
                &mut pm,
                "defaultService",
                &format!("{field}.defaultService"),
                &backend,
            )?;
            if let Some(r) = pm.get("defaultUrlRedirect") {
                check_redirect(r, &format!("{field}.defaultUrlRedirect"))?;
            }
            for (rk, sk) in [("pathRules", "service"), ("routeRules", "service")] {
                if let Some(Value::Array(rules)) = pm.get(rk).cloned() {
                    let mut out_rules = Vec::new();
                    for (j, rule) in rules.into_iter().enumerate() {
                        let Value::Object(mut rule) = rule else {
                            return Err(invalid_field(
                                &format!("{field}.{rk}[{j}]"),
                                rule,
                                "Must be an object.",
                            ));
                        };
                        if rk == "pathRules"
                            && rule
                                .get("paths")
                                .and_then(Value::as_array)
                                .is_none_or(Vec::is_empty)
                        {
                            return Err(required_field(&format!("{field}.{rk}[{j}].paths")));
                        }
                        resolve_field(
                            state,
                            ctx,
                            &mut rule,
                            sk,
                            &format!("{field}.{rk}[{j}].{sk}"),
                            &backend,
                        )?;
                        out_rules.push(Value::Object(rule));
                    }
                    pm.insert(rk.into(), Value::Array(out_rules));
                }
            }
            new_pms.push(Value::Object(pm));
        }
        obj.insert("pathMatchers".into(), Value::Array(new_pms));
    }
    if let Some(Value::Array(hrs)) = obj.get("hostRules") {
        for (i, hr) in hrs.iter().enumerate() {
            let field = format!("resource.hostRules[{i}]");
            if hr["hosts"].as_array().is_none_or(Vec::is_empty) {
                return Err(required_field(&format!("{field}.hosts")));
            }
            match hr["pathMatcher"].as_str() {
                None => return Err(required_field(&format!("{field}.pathMatcher"))),
                Some(m) if !matcher_names.iter().any(|n| n == m) => {
                    return Err(invalid_field(
                        &format!("{field}.pathMatcher"),
                        m,
                        "The path matcher does not exist in this URL map.",
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(obj)
}

pub(super) fn check_redirect(r: &Value, field: &str) -> ApiResult<()> {
    let Some(o) = r.as_object() else {
        return Err(invalid_field(field, r, "Must be an object."));
    };
    let does_something = o.get("httpsRedirect").and_then(Value::as_bool) == Some(true)
        || ["hostRedirect", "pathRedirect", "prefixRedirect"]
            .iter()
            .any(|k| {
                o.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            });
    if !does_something {
        return Err(invalid_field(
            field,
            r,
            "At least one of httpsRedirect, hostRedirect, pathRedirect or prefixRedirect must be set.",
        ));
    }
    if let Some(code) = o.get("redirectResponseCode") {
        let ok = [
            "FOUND",
            "MOVED_PERMANENTLY_DEFAULT",
            "PERMANENT_REDIRECT",
            "SEE_OTHER",
            "TEMPORARY_REDIRECT",
        ];
        if !code.as_str().is_some_and(|c| ok.contains(&c)) {
            return Err(invalid_field(
                &format!("{field}.redirectResponseCode"),
                code,
                &format!("Must be one of [{}].", ok.join(", ")),
            ));
        }
    }
    Ok(())
}
