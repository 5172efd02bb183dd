//! Google's discovery documents, compiled in: they name every method the emulator
//! serves (for the request log and fault rules) and give the request schemas that
//! bodies are validated against, so an unknown field or a wrong type fails with
//! Google's 400 `invalid`, as it does at Google.

use std::collections::HashMap;

use axum::http::Method;
use serde_json::Value;

use crate::error::ApiError;

const DOCS: &[(&str, &str)] = &[
    (
        "/compute/v1/",
        include_str!("../discovery/compute.v1.lb-subset.json"),
    ),
    ("/", include_str!("../discovery/dns.v1.json")),
    ("/", include_str!("../discovery/iap.v1.json")),
    ("/", include_str!("../discovery/run.v2.json")),
    // Before Cloud Run v1: both have `v1/projects/*/locations/*/operations/*`
    // (Google tells them apart by host); the emulator serves Certificate
    // Manager's there and no Cloud Run v1 operations, and an equal match goes to
    // the document listed first.
    ("/", include_str!("../discovery/certificatemanager.v1.json")),
    // The Cloud Run v1 and Resource Manager v1 subsets gcloud uses. Their
    // method ids repeat v2's and v3's; bodies are checked by the method found.
    ("/", include_str!("../discovery/run.v1.json")),
    (
        "/",
        include_str!("../discovery/cloudresourcemanager.v1.json"),
    ),
    ("/", include_str!("../discovery/serviceusage.v1beta1.json")),
    // Service Usage v1: what gcloud speaks (`services enable`, `describe`).
    // Its `v1/{+name}` matches IAP's too; the flat paths tell them apart.
    ("/", include_str!("../discovery/serviceusage.v1.json")),
    (
        "/",
        include_str!("../discovery/cloudresourcemanager.v3.json"),
    ),
    // Cloud Storage JSON API; its media paths (`/upload/storage/v1/...`,
    // `/download/storage/v1/...`) are absolute and resolve to the same methods.
    ("/storage/v1/", include_str!("../discovery/storage.v1.json")),
];

/// One segment of a path template.
#[derive(Debug, Clone)]
enum Seg {
    Literal(String),
    /// `{x}` with an optional literal prefix/suffix inside the segment (`{id}:wait`).
    Param {
        prefix: String,
        suffix: String,
    },
    /// `{+x}`: one or more segments, with an optional literal suffix.
    Rest {
        suffix: String,
    },
}

#[derive(Debug, Clone)]
struct MethodDef {
    id: String,
    http: Method,
    templates: Vec<Vec<Seg>>,
    request: Option<(usize, String)>,
}

/// A method of the loaded documents, as [`Discovery::resolve_method`] found it.
#[derive(Clone, Copy, Debug)]
pub struct MethodRef(usize);

/// The loaded documents.
pub struct Discovery {
    methods: Vec<MethodDef>,
    /// Per document: schema name -> schema.
    schemas: Vec<HashMap<String, Value>>,
    by_id: HashMap<String, usize>,
}

impl Discovery {
    /// Parses the compiled-in documents.
    pub fn load() -> Result<Discovery, String> {
        let mut methods = Vec::new();
        let mut schemas = Vec::new();
        for (doc_index, (prefix, text)) in DOCS.iter().enumerate() {
            let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let s: HashMap<String, Value> = doc
                .get("schemas")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            schemas.push(s);
            collect(&doc, prefix, doc_index, &mut methods);
        }
        let by_id = methods
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Ok(Discovery {
            methods,
            schemas,
            by_id,
        })
    }

    /// The discovery method id serving this request, e.g. `compute.sslCertificates.insert`.
    pub fn resolve(&self, method: &Method, path: &str) -> Option<String> {
        self.resolve_method(method, path)
            .map(|m| self.methods[m.0].id.clone())
    }

    /// The method serving this request. Ids are not unique across versions of
    /// one API (Cloud Run v1 and v2 both have `run.projects.locations.services.get`),
    /// so request bodies are checked against the method found by path.
    pub fn resolve_method(&self, method: &Method, path: &str) -> Option<MethodRef> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // Prefer the method whose template has the most literal segments, so
        // `.../global/operations/{op}/wait` beats a generic `{+name}` match.
        let mut best: Option<(usize, usize)> = None;
        for (i, m) in self.methods.iter().enumerate() {
            if m.http != *method {
                continue;
            }
            for t in &m.templates {
                if matches(t, &segs) {
                    let score = t
                        .iter()
                        .map(|s| match s {
                            Seg::Literal(_) => 3,
                            Seg::Param { prefix, suffix } => {
                                1 + usize::from(!prefix.is_empty() || !suffix.is_empty())
                            }
                            Seg::Rest { suffix } => usize::from(!suffix.is_empty()),
                        })
                        .sum::<usize>();
                    if best.is_none_or(|(b, _)| score > b) {
                        best = Some((score, i));
                    }
                }
            }
        }
        best.map(|(_, i)| MethodRef(i))
    }

    /// The id of a resolved method.
    pub fn id_of(&self, m: MethodRef) -> &str {
        &self.methods[m.0].id
    }

    /// Whether `id` is a method of the compiled-in documents.
    pub fn knows(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Whether the method takes a request body.
    pub fn has_request_body(&self, m: MethodRef) -> bool {
        self.methods[m.0].request.is_some()
    }

    /// Checks a request body against the method's request schema: it must be a
    /// JSON object whose fields the schema knows, with the right types.
    pub fn validate_request(&self, m: MethodRef, body: &[u8]) -> Result<(), ApiError> {
        let Some((doc, schema)) = &self.methods[m.0].request else {
            return Ok(());
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            // Google accepts an empty body for methods whose request has no
            // required fields (`operations.wait`, `getIamPolicy`); handlers check
            // required fields themselves.
            return Ok(());
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::invalid(format!(
                "Invalid JSON payload received. {}",
                json_error_words(&e)
            ))
        })?;
        let root = Value::Object(
            [("$ref".to_string(), Value::String(schema.clone()))]
                .into_iter()
                .collect(),
        );
        self.check(*doc, &root, &value, "")
    }

    fn check(&self, doc: usize, schema: &Value, value: &Value, at: &str) -> Result<(), ApiError> {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let Some(s) = self.schemas[doc].get(r) else {
                return Ok(());
            };
            return self.check(doc, s, value, at);
        }
        if value.is_null() {
            return Ok(());
        }
        let ty = schema.get("type").and_then(Value::as_str).unwrap_or("any");
        let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
        let bad = |what: &str| {
            Err(ApiError::invalid(format!(
                "Invalid value at '{}' ({}), {}",
                display_path(at),
                what,
                value
            )))
        };
        match ty {
            "string" => match value {
                Value::String(_) => Ok(()),
                // Enums also as their numbers (Google's GAPIC clients send
                // `enum-encoding=int` bodies).
                Value::Number(n)
                    if n.as_u64().is_some_and(|i| {
                        schema
                            .get("enum")
                            .and_then(Value::as_array)
                            .is_some_and(|e| (i as usize) < e.len())
                    }) =>
                {
                    Ok(())
                }
                // int64-like strings are also accepted as JSON numbers.
                Value::Number(_) if matches!(format, "int64" | "uint64") => Ok(()),
                _ => bad("TYPE_STRING"),
            },
            "integer" => match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
                Value::String(s) if s.parse::<i64>().is_ok() => Ok(()),
                _ => bad("TYPE_INT32"),
            },
            "number" => match value {
                Value::Number(_) => Ok(()),
                Value::String(s) if s.parse::<f64>().is_ok() => Ok(()),
                _ => bad("TYPE_DOUBLE"),
            },
            "boolean" => match value {
                Value::Bool(_) => Ok(()),
                _ => bad("TYPE_BOOL"),
            },
            "array" => {
                let Value::Array(items) = value else {
                    return bad("list");
                };
                let item_schema = schema.get("items").cloned().unwrap_or(Value::Null);
                for (i, v) in items.iter().enumerate() {
                    self.check(doc, &item_schema, v, &format!("{at}[{i}]"))?;
                }
                Ok(())
            }
            "object" => {
                let Value::Object(map) = value else {
                    return bad("TYPE_MESSAGE");
                };
                let props = schema.get("properties").and_then(Value::as_object);
                let extra = schema.get("additionalProperties");
                for (k, v) in map {
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    if let Some(p) = props.and_then(|p| p.get(k)) {
                        self.check(doc, p, v, &path)?;
                    } else if let Some(extra) = extra {
                        self.check(doc, extra, v, &path)?;
                    } else if schema.get("properties").is_none() && extra.is_none() {
                        // A free-form object (`type: object` with no properties).
                        continue;
                    } else {
                        let location = if at.is_empty() {
                            String::new()
                        } else {
                            format!(" at '{}'", display_path(at))
                        };
                        return Err(ApiError::invalid(format!(
                            "Invalid JSON payload received. Unknown name \"{k}\"{location}: Cannot find field."
                        )));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn display_path(at: &str) -> &str {
    if at.is_empty() { "(root)" } else { at }
}

fn json_error_words(e: &serde_json::Error) -> String {
    format!(
        "Unexpected token at line {} column {}.",
        e.line(),
        e.column()
    )
}

fn collect(node: &Value, prefix: &str, doc: usize, out: &mut Vec<MethodDef>) {
    if let Some(methods) = node.get("methods").and_then(Value::as_object) {
        for m in methods.values() {
            let (Some(id), Some(http)) = (
                m.get("id").and_then(Value::as_str),
                m.get("httpMethod").and_then(Value::as_str),
            ) else {
                continue;
            };
            let Ok(http) = http.parse::<Method>() else {
                continue;
            };
            let mut templates = Vec::new();
            for key in ["flatPath", "path"] {
                if let Some(p) = m.get(key).and_then(Value::as_str) {
                    templates.push(parse_template(&format!("{prefix}{p}")));
                }
            }
            // Media uploads have their own absolute path (Cloud Storage's
            // `/upload/storage/v1/b/{bucket}/o`), and media downloads go to the
            // download service's `/download` + the method's path.
            if let Some(p) = m
                .pointer("/mediaUpload/protocols/simple/path")
                .and_then(Value::as_str)
            {
                templates.push(parse_template(p));
            }
            if m.get("useMediaDownloadService").and_then(Value::as_bool) == Some(true)
                && let Some(p) = m.get("path").and_then(Value::as_str)
            {
                templates.push(parse_template(&format!("/download{prefix}{p}")));
            }
            let request = m
                .get("request")
                .and_then(|r| r.get("$ref"))
                .and_then(Value::as_str)
                .map(|r| (doc, r.to_string()));
            out.push(MethodDef {
                id: id.to_string(),
                http,
                templates,
                request,
            });
        }
    }
    if let Some(resources) = node.get("resources").and_then(Value::as_object) {
        for r in resources.values() {
            collect(r, prefix, doc, out);
        }
    }
}

fn parse_template(t: &str) -> Vec<Seg> {
    t.trim_start_matches('/')
        .split('/')
        .map(|seg| {
            let Some(open) = seg.find('{') else {
                return Seg::Literal(seg.to_string());
            };
            let Some(close) = seg[open..].find('}').map(|c| c + open) else {
                return Seg::Literal(seg.to_string());
            };
            let prefix = seg[..open].to_string();
            let suffix = seg[close + 1..].to_string();
            if seg[open + 1..].starts_with('+') {
                Seg::Rest { suffix }
            } else {
                Seg::Param { prefix, suffix }
            }
        })
        .collect()
}

fn matches(t: &[Seg], segs: &[&str]) -> bool {
    match (t.first(), segs.first()) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Seg::Literal(l)), Some(s)) => l == s && matches(&t[1..], &segs[1..]),
        (Some(Seg::Param { prefix, suffix }), Some(s)) => {
            s.len() > prefix.len() + suffix.len()
                && s.starts_with(prefix.as_str())
                && s.ends_with(suffix.as_str())
                && !s[prefix.len()..s.len() - suffix.len()].contains(':')
                && matches(&t[1..], &segs[1..])
        }
        (Some(Seg::Rest { suffix }), Some(_)) => {
            // Consume one or more segments; the last consumed one must end with suffix.
            (1..=segs.len()).any(|n| {
                let last = segs[n - 1];
                last.ends_with(suffix.as_str())
                    && last.len() > suffix.len()
                    && (suffix.is_empty() || !last[..last.len() - suffix.len()].contains(':'))
                    && matches(&t[1..], &segs[n..])
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Discovery {
        Discovery::load().unwrap()
    }

    #[test]
    fn resolves_compute_dns_run_iap_paths() {
        let d = d();
        let cases = [
            (
                Method::POST,
                "/compute/v1/projects/p/global/sslCertificates",
                "compute.sslCertificates.insert",
            ),
            (
                Method::POST,
                "/compute/v1/projects/p/targetHttpsProxies/x/setSslCertificates",
                "compute.targetHttpsProxies.setSslCertificates",
            ),
            (
                Method::POST,
                "/compute/v1/projects/p/global/operations/op-1/wait",
                "compute.globalOperations.wait",
            ),
            (
                Method::GET,
                "/compute/v1/projects/p",
                "compute.projects.get",
            ),
            (
                Method::POST,
                "/dns/v1/projects/p/managedZones/z/changes",
                "dns.changes.create",
            ),
            (
                Method::GET,
                "/v2/projects/p/locations/r/services/s",
                "run.projects.locations.services.get",
            ),
            (
                Method::GET,
                "/v2/projects/p/locations/r/services/s:getIamPolicy",
                "run.projects.locations.services.getIamPolicy",
            ),
            (
                Method::POST,
                "/v1/projects/p/iap_web/compute/services/bs:getIamPolicy",
                "iap.getIamPolicy",
            ),
            (
                Method::POST,
                "/v1beta1/projects/p/services/iap.googleapis.com:generateServiceIdentity",
                "serviceusage.services.generateServiceIdentity",
            ),
            (
                Method::GET,
                "/v3/projects/p",
                "cloudresourcemanager.projects.get",
            ),
            // Service Usage v1 (gcloud services ...) shares `/v1/{+name}` with
            // IAP; its flat path's literal `services` decides.
            (
                Method::GET,
                "/v1/projects/p/services/iap.googleapis.com",
                "serviceusage.services.get",
            ),
            (
                Method::POST,
                "/v1/projects/p/services/iap.googleapis.com:enable",
                "serviceusage.services.enable",
            ),
            (
                Method::POST,
                "/v1/projects/p/services/iap.googleapis.com:disable",
                "serviceusage.services.disable",
            ),
        ];
        for (m, p, want) in cases {
            assert_eq!(d.resolve(&m, p).as_deref(), Some(want), "{m} {p}");
        }
        assert_eq!(d.resolve(&Method::GET, "/nothing/here"), None);
    }

    fn ins(d: &Discovery) -> MethodRef {
        d.resolve_method(
            &Method::POST,
            "/compute/v1/projects/p/global/sslCertificates",
        )
        .unwrap()
    }

    /// Cloud Run v1 and v2 share method ids; each body is checked against its
    /// own version's schema, found by path.
    #[test]
    fn same_ids_in_two_versions_keep_their_own_schemas() {
        let d = d();
        let v2 = d
            .resolve_method(&Method::POST, "/v2/projects/p/locations/r/services")
            .unwrap();
        let v1 = d
            .resolve_method(&Method::POST, "/v1/projects/p/locations/r/services")
            .unwrap();
        assert_eq!(d.id_of(v1), d.id_of(v2));
        let v2_body = br#"{"ingress":"INGRESS_TRAFFIC_ALL","template":{"containers":[]}}"#;
        let v1_body = br#"{"apiVersion":"serving.knative.dev/v1","metadata":{"name":"s"}}"#;
        d.validate_request(v2, v2_body).unwrap();
        d.validate_request(v1, v1_body).unwrap();
        assert!(d.validate_request(v1, v2_body).is_err());
        assert!(d.validate_request(v2, v1_body).is_err());
    }

    #[test]
    fn unknown_field_is_invalid() {
        let d = d();
        let e = d
            .validate_request(ins(&d), br#"{"name":"a","bogus":1}"#)
            .unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (400, "invalid"));
        assert!(
            e.message.contains("Unknown name \"bogus\""),
            "{}",
            e.message
        );
        let e = d
            .validate_request(ins(&d), br#"{"selfManaged":{"certificat":"x"}}"#)
            .unwrap_err();
        assert!(e.message.contains("at 'selfManaged'"), "{}", e.message);
    }

    #[test]
    fn wrong_type_and_bad_json_are_invalid() {
        let d = d();
        let e = d.validate_request(ins(&d), br#"{"name":5}"#).unwrap_err();
        assert_eq!(e.reason, "invalid");
        let e = d.validate_request(ins(&d), br#"{"name":"#).unwrap_err();
        assert_eq!(e.reason, "invalid");
        d.validate_request(
            ins(&d),
            br#"{"name":"a","type":"SELF_MANAGED","selfManaged":{"certificate":"c","privateKey":"k"}}"#,
        )
        .unwrap();
    }
}
