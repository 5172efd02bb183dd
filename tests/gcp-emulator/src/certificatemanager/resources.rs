//! The resources: certificates, certificate maps and their entries, and the
//! operations that report their mutations. Each mutation validates first and
//! changes the state only when it succeeds and no operation fault is injected.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use serde_json::{Map, Value, json};

use super::ops::Operation;
use super::{
    FULL_NAME_ROOT, LOCATION, Req, TYPE_ROOT, already_exists, failed_precondition, invalid,
    list_response, not_found, page, parse_map_reference, still_in_use, valid_id,
};
use crate::error::ApiError;
use crate::state::{Project, rfc3339_utc};

/// Certificates per entry (`CertificateMapEntry.certificates`: "up to four").
const MAX_CERTS_PER_ENTRY: usize = 4;
/// Entries one certificate may serve (Certificate Manager troubleshooting).
const MAX_USES: usize = 100;
const SCOPES: &[&str] = &["DEFAULT", "EDGE_CACHE", "ALL_REGIONS", "CLIENT_AUTH"];
const MATCHERS: &[&str] = &["MATCHER_UNSPECIFIED", "PRIMARY"];

/// One project's Certificate Manager state (location `global`), resources kept
/// as the JSON the API returns minus the computed `usedBy` / `gclbTargets`.
#[derive(Default, Clone)]
pub struct State {
    /// Certificate id -> certificate.
    pub certificates: BTreeMap<String, Value>,
    /// Map id -> map.
    pub maps: BTreeMap<String, Value>,
    /// Map id -> entry id -> entry.
    pub entries: BTreeMap<String, BTreeMap<String, Value>>,
    /// Full operation name -> operation.
    pub operations: BTreeMap<String, Operation>,
}

impl State {
    /// The ids of the maps that exist (for Compute's `certificateMap` checks).
    pub fn map_ids(&self) -> BTreeSet<String> {
        self.maps.keys().cloned().collect()
    }

    /// The entries (map id, entry id, entry) using certificate `id`.
    fn users_of(&self, number: u64, id: &str) -> Vec<(String, String)> {
        let want = format!("projects/{number}/locations/{LOCATION}/certificates/{id}");
        let mut out = Vec::new();
        for (m, entries) in &self.entries {
            for (e, v) in entries {
                let uses = v["certificates"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c.as_str() == Some(want.as_str())));
                if uses {
                    out.push((m.clone(), e.clone()));
                }
            }
        }
        out
    }
}

/// The permission a request needs, for the 403 of a project that does not exist.
pub(super) fn permission_for(method: &Method, tail: &[&str]) -> &'static str {
    let verb = match *method {
        Method::GET if tail.len() % 2 == 1 => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PATCH => "update",
        Method::DELETE => "delete",
        _ => "get",
    };
    let kind = match tail {
        ["certificates", ..] => "certs",
        ["certificateMaps", _, "certificateMapEntries", ..] => "certmapentries",
        ["certificateMaps", ..] => "certmaps",
        _ => "operations",
    };
    match (kind, verb) {
        ("certs", "list") => "certificatemanager.certs.list",
        ("certs", "get") => "certificatemanager.certs.get",
        ("certs", "create") => "certificatemanager.certs.create",
        ("certs", "update") => "certificatemanager.certs.update",
        ("certs", _) => "certificatemanager.certs.delete",
        ("certmaps", "list") => "certificatemanager.certmaps.list",
        ("certmaps", "get") => "certificatemanager.certmaps.get",
        ("certmaps", "create") => "certificatemanager.certmaps.create",
        ("certmaps", "update") => "certificatemanager.certmaps.update",
        ("certmaps", _) => "certificatemanager.certmaps.delete",
        ("certmapentries", "list") => "certificatemanager.certmapentries.list",
        ("certmapentries", "get") => "certificatemanager.certmapentries.get",
        ("certmapentries", "create") => "certificatemanager.certmapentries.create",
        ("certmapentries", "update") => "certificatemanager.certmapentries.update",
        ("certmapentries", _) => "certificatemanager.certmapentries.delete",
        (_, "list") => "certificatemanager.operations.list",
        (_, "delete") => "certificatemanager.operations.delete",
        _ => "certificatemanager.operations.get",
    }
}

/// Routes one request; `None` when no method of the API serves it.
pub(super) fn dispatch(
    p: &mut Project,
    req: &Req,
    seq: u64,
    tail: &[&str],
) -> Option<Result<Value, ApiError>> {
    let m = req.method.clone();
    Some(match (m, tail) {
        (Method::GET, ["certificates"]) => list_certificates(p, req),
        (Method::POST, ["certificates"]) => create_certificate(p, req, seq),
        (Method::GET, ["certificates", id]) => get_certificate(p, id),
        (Method::PATCH, ["certificates", id]) => patch_certificate(p, req, seq, id),
        (Method::DELETE, ["certificates", id]) => delete_certificate(p, req, seq, id),
        (Method::GET, ["certificateMaps"]) => list_maps(p, req),
        (Method::POST, ["certificateMaps"]) => create_map(p, req, seq),
        (Method::GET, ["certificateMaps", id]) => get_map(p, id),
        (Method::PATCH, ["certificateMaps", id]) => patch_map(p, req, seq, id),
        (Method::DELETE, ["certificateMaps", id]) => delete_map(p, req, seq, id),
        (Method::GET, ["certificateMaps", m, "certificateMapEntries"]) => list_entries(p, req, m),
        (Method::POST, ["certificateMaps", m, "certificateMapEntries"]) => {
            create_entry(p, req, seq, m)
        }
        (Method::GET, ["certificateMaps", m, "certificateMapEntries", e]) => get_entry(p, m, e),
        (Method::PATCH, ["certificateMaps", m, "certificateMapEntries", e]) => {
            patch_entry(p, req, seq, m, e)
        }
        (Method::DELETE, ["certificateMaps", m, "certificateMapEntries", e]) => {
            delete_entry(p, req, seq, m, e)
        }
        (Method::GET, ["operations"]) => list_operations(p, req),
        (Method::GET, ["operations", o]) => get_operation(p, req, o),
        (Method::DELETE, ["operations", o]) => delete_operation(p, o),
        _ => return None,
    })
}

// ---------------------------------------------------------------- names and fields

fn parent(p: &Project) -> String {
    format!("projects/{}/locations/{LOCATION}", p.id)
}

fn cert_name(p: &Project, id: &str) -> String {
    format!("{}/certificates/{id}", parent(p))
}

fn map_name(p: &Project, id: &str) -> String {
    format!("{}/certificateMaps/{id}", parent(p))
}

fn entry_name(p: &Project, map: &str, id: &str) -> String {
    format!(
        "{}/certificateMaps/{map}/certificateMapEntries/{id}",
        parent(p)
    )
}

/// The id of a create, checked.
fn new_id(req: &Req, param: &str, snake: &str) -> Result<String, ApiError> {
    let id = req
        .query(param)
        .ok_or_else(|| invalid(format!("{snake} must be set.")))?;
    if !valid_id(id) {
        return Err(invalid(format!(
            "Invalid {snake} '{id}': it must be 1 to 63 characters, lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen."
        )));
    }
    Ok(id.to_string())
}

/// `labels`: at most 64, keys and values as Google's label rules say.
fn check_labels(v: &Value) -> Result<Map<String, Value>, ApiError> {
    let Some(m) = v.as_object() else {
        return Err(invalid("labels must be a map of strings."));
    };
    if m.len() > 64 {
        return Err(invalid("A resource may have at most 64 labels."));
    }
    let ok = |s: &str, key: bool| {
        s.len() <= 63
            && (!key || s.as_bytes().first().is_some_and(u8::is_ascii_lowercase))
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
    };
    for (k, val) in m {
        let Some(s) = val.as_str() else {
            return Err(invalid(format!("Label '{k}' must have a string value.")));
        };
        if !ok(k, true) || !ok(s, false) {
            return Err(invalid(format!(
                "Invalid label '{k}': '{s}'. Keys start with a lowercase letter; keys and values have at most 63 lowercase letters, digits, '_' or '-'."
            )));
        }
    }
    Ok(m.clone())
}

/// Copies `description` and `labels` from a body into a stored resource.
fn set_common(
    out: &mut Map<String, Value>,
    body: &Map<String, Value>,
    field: &str,
) -> Result<(), ApiError> {
    match (field, body.get(field)) {
        (_, None | Some(Value::Null)) => {
            out.remove(field);
        }
        ("labels", Some(v)) => {
            let l = check_labels(v)?;
            if l.is_empty() {
                out.remove("labels");
            } else {
                out.insert("labels".into(), Value::Object(l));
            }
        }
        (_, Some(v)) => match v.as_str() {
            Some("") => {
                out.remove(field);
            }
            Some(_) => {
                out.insert(field.into(), v.clone());
            }
            None => return Err(invalid(format!("{field} must be a string."))),
        },
    }
    Ok(())
}

/// An enum given by name or (GAPIC `enum-encoding=int`) by number.
fn enum_value(v: &Value, allowed: &[&str], field: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(s.clone()),
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| allowed.get(i as usize))
            .map(|s| (*s).to_string())
            .ok_or_else(|| invalid(format!("Invalid value for {field}: {n}"))),
        other => Err(invalid(format!(
            "Invalid value for {field}: {other}. Must be one of [{}].",
            allowed.join(", ")
        ))),
    }
}

/// `updateMask` as camelCase paths (clients send either case).
fn update_mask(req: &Req) -> Result<Vec<String>, ApiError> {
    let Some(mask) = req.query("updateMask") else {
        return Err(invalid("update_mask must be set."));
    };
    Ok(mask
        .split(',')
        .map(|p| {
            let mut out = String::new();
            let mut up = false;
            for c in p.trim().chars() {
                if c == '_' {
                    up = true;
                } else if up {
                    out.push(c.to_ascii_uppercase());
                    up = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .filter(|p| !p.is_empty())
        .collect())
}

fn bad_path(path: &str) -> ApiError {
    invalid(format!(
        "update_mask path \"{path}\" is not valid for this resource (immutable, output only or unknown)."
    ))
}

/// Starts an operation whose outcome is `response` (or the injected fault) and
/// returns it as first read.
fn start(
    st: &mut State,
    p_id: &str,
    req: &Req,
    seq: u64,
    verb: &'static str,
    target: String,
    response: Value,
) -> Value {
    let parent = format!("projects/{p_id}/locations/{LOCATION}");
    let op = Operation {
        name: Operation::name_for(&parent, seq, req.now),
        verb,
        target,
        created: req.now,
        delay: req.delay,
        outcome: match &req.fail {
            Some(e) => Err(e.clone()),
            None => Ok(response),
        },
    };
    let v = op.to_json(req.now);
    st.operations.insert(op.name.clone(), op);
    v
}

fn typed(kind: &str, mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("@type".into(), json!(format!("{TYPE_ROOT}{kind}")));
    }
    v
}

fn empty() -> Value {
    json!({"@type": "type.googleapis.com/google.protobuf.Empty"})
}

// ---------------------------------------------------------------- certificates

fn render_certificate(p: &Project, id: &str, v: &Value) -> Value {
    let mut out = v.clone();
    let st = &p.cloud.certificatemanager;
    let used: Vec<Value> = st
        .users_of(p.number, id)
        .into_iter()
        .map(|(m, e)| json!({ "name": format!("{FULL_NAME_ROOT}{}", entry_name(p, &m, &e)) }))
        .collect();
    if !used.is_empty() {
        out["usedBy"] = json!(used);
    }
    out
}

fn get_certificate(p: &Project, id: &str) -> Result<Value, ApiError> {
    let v = p
        .cloud
        .certificatemanager
        .certificates
        .get(id)
        .ok_or_else(|| not_found(&cert_name(p, id)))?;
    Ok(render_certificate(p, id, v))
}

fn list_certificates(p: &Project, req: &Req) -> Result<Value, ApiError> {
    let items: Vec<Value> = p
        .cloud
        .certificatemanager
        .certificates
        .iter()
        .map(|(id, v)| render_certificate(p, id, v))
        .collect();
    let (items, next) = page(req, items)?;
    Ok(list_response("certificates", items, next))
}

/// Checks a `selfManaged` body and returns the chain with what it reports.
fn self_managed(
    body: &Map<String, Value>,
) -> Result<(String, crate::compute::certs::Parsed), ApiError> {
    let sm = body.get("selfManaged").and_then(Value::as_object);
    let field = |k: &str| {
        sm.and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let cert = field("pemCertificate")
        .ok_or_else(|| invalid("self_managed.pem_certificate must be set."))?;
    let key = field("pemPrivateKey")
        .ok_or_else(|| invalid("self_managed.pem_private_key must be set."))?;
    let parsed = crate::compute::certs::validate(&cert, &key).map_err(|e| invalid(e.message))?;
    Ok((cert, parsed))
}

fn set_pem(out: &mut Map<String, Value>, cert: String, parsed: &crate::compute::certs::Parsed) {
    out.insert("pemCertificate".into(), json!(cert));
    out.insert("sanDnsnames".into(), json!(parsed.sans));
    out.insert("expireTime".into(), json!(rfc3339_utc(parsed.not_after)));
}

fn create_certificate(p: &mut Project, req: &Req, seq: u64) -> Result<Value, ApiError> {
    let id = new_id(req, "certificateId", "certificate_id")?;
    let name = cert_name(p, &id);
    if p.cloud.certificatemanager.certificates.contains_key(&id) {
        return Err(already_exists(&name));
    }
    let body = req.body()?;
    if body.get("managed").is_some_and(|m| !m.is_null()) {
        return Err(invalid(
            "Google-managed certificates are not supported by the emulator.",
        ));
    }
    if body.get("managedIdentity").is_some_and(|m| !m.is_null()) {
        return Err(invalid(
            "Managed identity certificates are not supported by the emulator.",
        ));
    }
    let (cert, parsed) = self_managed(&body)?;
    let scope = match body.get("scope") {
        None | Some(Value::Null) => "DEFAULT".to_string(),
        Some(v) => enum_value(v, SCOPES, "scope")?,
    };
    let now = rfc3339_utc(req.now);
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    set_common(&mut out, &body, "description")?;
    set_common(&mut out, &body, "labels")?;
    out.insert("createTime".into(), json!(now));
    out.insert("updateTime".into(), json!(now));
    set_pem(&mut out, cert, &parsed);
    out.insert("scope".into(), json!(scope));
    out.insert("selfManaged".into(), json!({}));
    let v = Value::Object(out);
    if req.fail.is_none() {
        p.cloud
            .certificatemanager
            .certificates
            .insert(id.clone(), v.clone());
    }
    let response = typed("Certificate", render_certificate(p, &id, &v));
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "create",
        name,
        response,
    ))
}

fn patch_certificate(p: &mut Project, req: &Req, seq: u64, id: &str) -> Result<Value, ApiError> {
    let name = cert_name(p, id);
    let prev = p
        .cloud
        .certificatemanager
        .certificates
        .get(id)
        .cloned()
        .ok_or_else(|| not_found(&name))?;
    let mask = update_mask(req)?;
    let body = req.body()?;
    let Value::Object(mut out) = prev else {
        return Err(not_found(&name));
    };
    let mut pem = false;
    for path in &mask {
        match path.as_str() {
            "description" | "labels" => set_common(&mut out, &body, path)?,
            "selfManaged" | "selfManaged.pemCertificate" | "selfManaged.pemPrivateKey" => {
                pem = true
            }
            other => return Err(bad_path(other)),
        }
    }
    if pem {
        let (cert, parsed) = self_managed(&body)?;
        set_pem(&mut out, cert, &parsed);
    }
    out.insert("updateTime".into(), json!(rfc3339_utc(req.now)));
    let v = Value::Object(out);
    if req.fail.is_none() {
        p.cloud
            .certificatemanager
            .certificates
            .insert(id.to_string(), v.clone());
    }
    let response = typed("Certificate", render_certificate(p, id, &v));
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "update",
        name,
        response,
    ))
}

fn delete_certificate(p: &mut Project, req: &Req, seq: u64, id: &str) -> Result<Value, ApiError> {
    let name = cert_name(p, id);
    if !p.cloud.certificatemanager.certificates.contains_key(id) {
        return Err(not_found(&name));
    }
    if !p.cloud.certificatemanager.users_of(p.number, id).is_empty() {
        // Google's answer, as Terraform users report it (subject in number form).
        let msg = "can't delete certificate that is referenced by a CertificateMapEntry or other resources";
        let subject = format!(
            "projects/{}/locations/{LOCATION}/certificates/{id}",
            p.number
        );
        return Err(failed_precondition(msg, vec![still_in_use(&subject, msg)]));
    }
    if req.fail.is_none() {
        p.cloud.certificatemanager.certificates.remove(id);
    }
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "delete",
        name,
        empty(),
    ))
}

// ---------------------------------------------------------------- maps

/// Target HTTPS proxies whose `certificateMap` is map `id` of this project.
fn proxies_using(p: &Project, id: &str) -> Vec<String> {
    let number = p.number.to_string();
    p.compute
        .resources
        .get("global/targetHttpsProxies")
        .map(|proxies| {
            proxies
                .iter()
                .filter(|(_, v)| {
                    v["certificateMap"]
                        .as_str()
                        .and_then(parse_map_reference)
                        .is_some_and(|(proj, loc, m)| {
                            (proj == p.id || proj == number) && loc == LOCATION && m == id
                        })
                })
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn render_map(p: &Project, id: &str, v: &Value) -> Value {
    let mut out = v.clone();
    let rules = p.compute.resources.get("global/forwardingRules");
    let targets: Vec<Value> = proxies_using(p, id)
        .into_iter()
        .filter_map(|proxy| {
            let link_tail = format!("/global/targetHttpsProxies/{proxy}");
            let ips: Vec<Value> = rules?
                .values()
                .filter(|r| r["target"].as_str().is_some_and(|t| t.ends_with(&link_tail)))
                .map(|r| {
                    let port = r["portRange"]
                        .as_str()
                        .and_then(|s| s.split('-').next())
                        .and_then(|s| s.parse::<u32>().ok())
                        .unwrap_or(443);
                    json!({ "ipAddress": r["IPAddress"], "ports": [port] })
                })
                .collect();
            (!ips.is_empty()).then(|| {
                json!({
                    "targetHttpsProxy": format!("//compute.googleapis.com/projects/{}/global/targetHttpsProxies/{proxy}", p.id),
                    "ipConfigs": ips,
                })
            })
        })
        .collect();
    if !targets.is_empty() {
        out["gclbTargets"] = json!(targets);
    }
    out
}

fn get_map(p: &Project, id: &str) -> Result<Value, ApiError> {
    let v = p
        .cloud
        .certificatemanager
        .maps
        .get(id)
        .ok_or_else(|| not_found(&map_name(p, id)))?;
    Ok(render_map(p, id, v))
}

fn list_maps(p: &Project, req: &Req) -> Result<Value, ApiError> {
    let items: Vec<Value> = p
        .cloud
        .certificatemanager
        .maps
        .iter()
        .map(|(id, v)| render_map(p, id, v))
        .collect();
    let (items, next) = page(req, items)?;
    Ok(list_response("certificateMaps", items, next))
}

fn create_map(p: &mut Project, req: &Req, seq: u64) -> Result<Value, ApiError> {
    let id = new_id(req, "certificateMapId", "certificate_map_id")?;
    let name = map_name(p, &id);
    if p.cloud.certificatemanager.maps.contains_key(&id) {
        return Err(already_exists(&name));
    }
    let body = req.body()?;
    let now = rfc3339_utc(req.now);
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    set_common(&mut out, &body, "description")?;
    set_common(&mut out, &body, "labels")?;
    out.insert("createTime".into(), json!(now));
    out.insert("updateTime".into(), json!(now));
    let v = Value::Object(out);
    if req.fail.is_none() {
        p.cloud
            .certificatemanager
            .maps
            .insert(id.clone(), v.clone());
    }
    let response = typed("CertificateMap", render_map(p, &id, &v));
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "create",
        name,
        response,
    ))
}

fn patch_map(p: &mut Project, req: &Req, seq: u64, id: &str) -> Result<Value, ApiError> {
    let name = map_name(p, id);
    let Some(Value::Object(mut out)) = p.cloud.certificatemanager.maps.get(id).cloned() else {
        return Err(not_found(&name));
    };
    let mask = update_mask(req)?;
    let body = req.body()?;
    for path in &mask {
        match path.as_str() {
            "description" | "labels" => set_common(&mut out, &body, path)?,
            other => return Err(bad_path(other)),
        }
    }
    out.insert("updateTime".into(), json!(rfc3339_utc(req.now)));
    let v = Value::Object(out);
    if req.fail.is_none() {
        p.cloud
            .certificatemanager
            .maps
            .insert(id.to_string(), v.clone());
    }
    let response = typed("CertificateMap", render_map(p, id, &v));
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "update",
        name,
        response,
    ))
}

fn delete_map(p: &mut Project, req: &Req, seq: u64, id: &str) -> Result<Value, ApiError> {
    let name = map_name(p, id);
    if !p.cloud.certificatemanager.maps.contains_key(id) {
        return Err(not_found(&name));
    }
    if p.cloud
        .certificatemanager
        .entries
        .get(id)
        .is_some_and(|e| !e.is_empty())
    {
        // AIP-135's answer for a parent with children and no `force`.
        return Err(failed_precondition(
            format!(
                "Resource '{name}' has nested resources. If the API supports cascading delete, set 'force' to true to delete it and its nested resources."
            ),
            Vec::new(),
        ));
    }
    if let Some(proxy) = proxies_using(p, id).first() {
        // Our reading: Google refuses, wording by analogy with certificates.
        let msg = "can't delete certificate map that is referenced by a TargetHttpsProxy or other resources";
        let subject = format!("projects/{}/global/targetHttpsProxies/{proxy}", p.id);
        return Err(failed_precondition(msg, vec![still_in_use(&subject, msg)]));
    }
    if req.fail.is_none() {
        p.cloud.certificatemanager.maps.remove(id);
        p.cloud.certificatemanager.entries.remove(id);
    }
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "delete",
        name,
        empty(),
    ))
}

// ---------------------------------------------------------------- map entries

fn find_map<'a>(p: &'a Project, map: &str) -> Result<&'a Value, ApiError> {
    p.cloud
        .certificatemanager
        .maps
        .get(map)
        .ok_or_else(|| not_found(&map_name(p, map)))
}

fn get_entry(p: &Project, map: &str, id: &str) -> Result<Value, ApiError> {
    find_map(p, map)?;
    p.cloud
        .certificatemanager
        .entries
        .get(map)
        .and_then(|e| e.get(id))
        .cloned()
        .ok_or_else(|| not_found(&entry_name(p, map, id)))
}

fn list_entries(p: &Project, req: &Req, map: &str) -> Result<Value, ApiError> {
    let entries = &p.cloud.certificatemanager.entries;
    let items: Vec<Value> = if map == "-" {
        entries.values().flat_map(|e| e.values().cloned()).collect()
    } else {
        find_map(p, map)?;
        entries
            .get(map)
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default()
    };
    let (items, next) = page(req, items)?;
    Ok(list_response("certificateMapEntries", items, next))
}

/// `*.example.com` or `www.example.com`: lowercase LDH labels, a wildcard only
/// as the whole first label.
fn valid_hostname(h: &str) -> bool {
    let rest = h.strip_prefix("*.").unwrap_or(h);
    rest.len() <= 253
        && rest.contains('.')
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
}

/// An entry's `certificates`: at most four existing certificates of this
/// project, returned in project-number form.
fn entry_certificates(
    p: &Project,
    v: Option<&Value>,
    entry: (&str, &str),
) -> Result<Vec<Value>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(invalid("certificates must be a list of certificate names.")),
    };
    if list.len() > MAX_CERTS_PER_ENTRY {
        return Err(invalid(format!(
            "A certificate map entry may have at most {MAX_CERTS_PER_ENTRY} certificates, got {}.",
            list.len()
        )));
    }
    let number = p.number.to_string();
    let mut out = Vec::new();
    for c in &list {
        let s = c.as_str().unwrap_or_default();
        let segs: Vec<&str> = s.split('/').collect();
        let id = match segs.as_slice() {
            ["projects", proj, "locations", LOCATION, "certificates", id]
                if *proj == p.id || *proj == number =>
            {
                *id
            }
            _ => {
                return Err(invalid(format!(
                    "Invalid certificate name '{s}': expected projects/{}/locations/{LOCATION}/certificates/NAME.",
                    p.id
                )));
            }
        };
        if !p.cloud.certificatemanager.certificates.contains_key(id) {
            return Err(not_found(&cert_name(p, id)));
        }
        let others = p
            .cloud
            .certificatemanager
            .users_of(p.number, id)
            .into_iter()
            .filter(|(m, e)| (m.as_str(), e.as_str()) != entry)
            .count();
        if others >= MAX_USES {
            return Err(invalid("certificate can't be used more than 100 times"));
        }
        let canonical = json!(format!(
            "projects/{number}/locations/{LOCATION}/certificates/{id}"
        ));
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

fn create_entry(p: &mut Project, req: &Req, seq: u64, map: &str) -> Result<Value, ApiError> {
    find_map(p, map)?;
    let id = new_id(req, "certificateMapEntryId", "certificate_map_entry_id")?;
    let name = entry_name(p, map, &id);
    let siblings = p.cloud.certificatemanager.entries.get(map);
    if siblings.is_some_and(|e| e.contains_key(&id)) {
        return Err(already_exists(&name));
    }
    let body = req.body()?;
    let hostname = match body.get("hostname") {
        None | Some(Value::Null) => None,
        Some(Value::String(h)) if h.is_empty() => None,
        Some(Value::String(h)) => Some(h.clone()),
        Some(v) => return Err(invalid(format!("Invalid hostname: {v}"))),
    };
    let matcher = match body.get("matcher") {
        None | Some(Value::Null) => None,
        Some(v) => Some(enum_value(v, MATCHERS, "matcher")?).filter(|m| m != "MATCHER_UNSPECIFIED"),
    };
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    match (&hostname, &matcher) {
        (Some(h), None) => {
            if !valid_hostname(h) {
                return Err(invalid(format!(
                    "Invalid hostname '{h}': expected a lowercase DNS name (e.g. www.example.com) or a wildcard (*.example.com)."
                )));
            }
            let taken = siblings.and_then(|e| {
                e.iter()
                    .find(|(_, v)| v["hostname"].as_str() == Some(h.as_str()))
            });
            if let Some((other, _)) = taken {
                return Err(invalid(format!(
                    "Hostname '{h}' is already used by certificate map entry '{}'.",
                    entry_name(p, map, other)
                )));
            }
            out.insert("hostname".into(), json!(h));
        }
        (None, Some(m)) => {
            let taken = siblings.and_then(|e| {
                e.iter()
                    .find(|(_, v)| v["matcher"].as_str() == Some(m.as_str()))
            });
            if let Some((other, _)) = taken {
                return Err(invalid(format!(
                    "Certificate map '{}' already has a {m} entry: '{}'.",
                    map_name(p, map),
                    entry_name(p, map, other)
                )));
            }
            out.insert("matcher".into(), json!(m));
        }
        _ => {
            return Err(invalid(
                "Exactly one of hostname and matcher must be set on a certificate map entry.",
            ));
        }
    }
    let certs = entry_certificates(p, body.get("certificates"), (map, &id))?;
    set_common(&mut out, &body, "description")?;
    set_common(&mut out, &body, "labels")?;
    if !certs.is_empty() {
        out.insert("certificates".into(), json!(certs));
    }
    let now = rfc3339_utc(req.now);
    out.insert("createTime".into(), json!(now));
    out.insert("updateTime".into(), json!(now));
    // Self-managed certificates serve at once.
    out.insert("state".into(), json!("ACTIVE"));
    let v = Value::Object(out);
    if req.fail.is_none() {
        p.cloud
            .certificatemanager
            .entries
            .entry(map.to_string())
            .or_default()
            .insert(id.clone(), v.clone());
    }
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "create",
        name,
        typed("CertificateMapEntry", v),
    ))
}

fn patch_entry(
    p: &mut Project,
    req: &Req,
    seq: u64,
    map: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let Value::Object(mut out) = get_entry(p, map, id)? else {
        return Err(not_found(&entry_name(p, map, id)));
    };
    let name = entry_name(p, map, id);
    let mask = update_mask(req)?;
    let body = req.body()?;
    for path in &mask {
        match path.as_str() {
            "description" | "labels" => set_common(&mut out, &body, path)?,
            "certificates" => {
                let certs = entry_certificates(p, body.get("certificates"), (map, id))?;
                if certs.is_empty() {
                    out.remove("certificates");
                } else {
                    out.insert("certificates".into(), json!(certs));
                }
            }
            other => return Err(bad_path(other)),
        }
    }
    out.insert("updateTime".into(), json!(rfc3339_utc(req.now)));
    let v = Value::Object(out);
    if req.fail.is_none() {
        p.cloud
            .certificatemanager
            .entries
            .entry(map.to_string())
            .or_default()
            .insert(id.to_string(), v.clone());
    }
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "update",
        name,
        typed("CertificateMapEntry", v),
    ))
}

fn delete_entry(
    p: &mut Project,
    req: &Req,
    seq: u64,
    map: &str,
    id: &str,
) -> Result<Value, ApiError> {
    get_entry(p, map, id)?;
    let name = entry_name(p, map, id);
    if req.fail.is_none()
        && let Some(e) = p.cloud.certificatemanager.entries.get_mut(map)
    {
        e.remove(id);
    }
    let p_id = p.id.clone();
    Ok(start(
        &mut p.cloud.certificatemanager,
        &p_id,
        req,
        seq,
        "delete",
        name,
        empty(),
    ))
}

// ---------------------------------------------------------------- operations

fn get_operation(p: &Project, req: &Req, op: &str) -> Result<Value, ApiError> {
    let name = format!("{}/operations/{op}", parent(p));
    p.cloud
        .certificatemanager
        .operations
        .get(&name)
        .map(|o| o.to_json(req.now))
        .ok_or_else(|| not_found(&name))
}

fn list_operations(p: &Project, req: &Req) -> Result<Value, ApiError> {
    let items: Vec<Value> = p
        .cloud
        .certificatemanager
        .operations
        .values()
        .map(|o| o.to_json(req.now))
        .collect();
    let (items, next) = page(req, items)?;
    Ok(list_response("operations", items, next))
}

fn delete_operation(p: &mut Project, op: &str) -> Result<Value, ApiError> {
    let name = format!("{}/operations/{op}", parent(p));
    match p.cloud.certificatemanager.operations.remove(&name) {
        Some(_) => Ok(json!({})),
        None => Err(not_found(&name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_and_labels() {
        assert!(valid_hostname("www.example.com"));
        assert!(valid_hostname("*.example.com"));
        assert!(!valid_hostname("*.*.example.com"));
        assert!(!valid_hostname("WWW.example.com"));
        assert!(!valid_hostname("localhost"));
        assert!(!valid_hostname("a..b"));
        assert!(check_labels(&json!({"owner": "gclb-acme", "x_1": ""})).is_ok());
        assert!(check_labels(&json!({"Owner": "x"})).is_err());
        assert!(check_labels(&json!({"owner": "Has Space"})).is_err());
        assert!(check_labels(&json!({"owner": 1})).is_err());
    }

    #[test]
    fn enums_by_name_or_number() {
        assert_eq!(
            enum_value(&json!("PRIMARY"), MATCHERS, "m").unwrap(),
            "PRIMARY"
        );
        assert_eq!(enum_value(&json!(1), MATCHERS, "m").unwrap(), "PRIMARY");
        assert!(enum_value(&json!(2), MATCHERS, "m").is_err());
        assert!(enum_value(&json!("SECONDARY"), MATCHERS, "m").is_err());
    }

    #[test]
    fn permissions_by_method_and_path() {
        assert_eq!(
            permission_for(&Method::GET, &["certificates"]),
            "certificatemanager.certs.list"
        );
        assert_eq!(
            permission_for(
                &Method::PATCH,
                &["certificateMaps", "m", "certificateMapEntries", "e"]
            ),
            "certificatemanager.certmapentries.update"
        );
        assert_eq!(
            permission_for(&Method::DELETE, &["certificateMaps", "m"]),
            "certificatemanager.certmaps.delete"
        );
        assert_eq!(
            permission_for(&Method::GET, &["operations", "o"]),
            "certificatemanager.operations.get"
        );
    }
}
