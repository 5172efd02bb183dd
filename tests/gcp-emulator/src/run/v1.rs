//! Cloud Run Admin v1 (the Knative-style API gcloud speaks): the subset
//! `gcloud run services describe|list|update|delete|add-iam-policy-binding` use,
//! as a second view of the same services the v2 API keeps.
//!
//! - `v1/projects/{p}/locations/{r}/services[/{s}]` (`r` may be `-` in a list),
//!   and `.../services/{s}:getIamPolicy|setIamPolicy|testIamPermissions`;
//! - `apis/serving.knative.dev/v1/namespaces/{p}/services[/{s}]`, which Google
//!   serves on regional hosts only (`{region}-run.googleapis.com`): the region
//!   is the prefix of the host the request was addressed to.
//!
//! A v1 write is translated to the v2 request with the same effect (a whole
//! replacement: v1 has no update mask) and goes through the v2 code, so both
//! views agree and the service reconciles over `operation_delay` (v1 shows
//! `Ready: Unknown` until then, as Google's does).

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::admin::FailOperation;
use crate::cloud::{invalid, parse_body};
use crate::error::ApiError;
use crate::run::{self, with_run};

/// The annotation that carries v2's `ingress`.
const INGRESS_ANNOTATION: &str = "run.googleapis.com/ingress";
const LOCATION_LABEL: &str = "cloud.googleapis.com/location";
/// v2 `ingress` <-> v1 annotation value.
const INGRESS: [(&str, &str); 4] = [
    ("INGRESS_TRAFFIC_ALL", "all"),
    ("INGRESS_TRAFFIC_INTERNAL_ONLY", "internal"),
    (
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
        "internal-and-cloud-load-balancing",
    ),
    ("INGRESS_TRAFFIC_NONE", "none"),
];
/// What v1 replaces: every v2 field a v1 object carries.
const REPLACED: [&str; 7] = [
    "ingress",
    "labels",
    "annotations",
    "client",
    "clientVersion",
    "template",
    "traffic",
];

/// The region of a regional endpoint's host: `europe-west1-run.googleapis.com`
/// (or the emulator reached as `europe-west1-127.0.0.1:8080`) -> `europe-west1`.
pub fn region_of_host(host: &str) -> Option<&str> {
    let mut parts = host.splitn(3, '-');
    let (a, b, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = !rest.is_empty()
        && !a.is_empty()
        && a.bytes().all(|c| c.is_ascii_lowercase())
        && b.ends_with(|c: char| c.is_ascii_digit())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok.then(|| &host[..a.len() + 1 + b.len()])
}

fn unknown(path: &str) -> ApiError {
    ApiError::new(
        404,
        "notFound",
        format!("The requested URL {path} was not found on this server."),
    )
    .aip193()
}

/// The last segment of a v2 resource name.
fn leaf(name: &Value) -> Value {
    name.as_str()
        .and_then(|n| n.rsplit('/').next())
        .map_or(Value::Null, Value::from)
}

fn int(v: &Value) -> Value {
    v.as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .map_or(Value::Null, Value::from)
}

/// A v2 service (as the v2 API renders it) in v1's Knative shape.
pub fn to_v1(v2: &Value, region: &str, number: u64) -> Value {
    let id = leaf(&v2["name"]);
    let id = id.as_str().unwrap_or("");
    let mut labels = v2["labels"].as_object().cloned().unwrap_or_default();
    labels.insert(LOCATION_LABEL.into(), json!(region));
    let mut annotations = v2["annotations"].as_object().cloned().unwrap_or_default();
    let ingress = v2["ingress"].as_str().unwrap_or("INGRESS_TRAFFIC_ALL");
    if let Some((_, a)) = INGRESS.iter().find(|(v, _)| *v == ingress) {
        annotations.insert(INGRESS_ANNOTATION.into(), json!(a));
        annotations.insert("run.googleapis.com/ingress-status".into(), json!(a));
    }
    for (k, f) in [
        ("serving.knative.dev/creator", "creator"),
        ("serving.knative.dev/lastModifier", "lastModifier"),
        ("run.googleapis.com/client-name", "client"),
        ("run.googleapis.com/client-version", "clientVersion"),
    ] {
        if let Some(x) = v2[f].as_str() {
            annotations.insert(k.into(), json!(x));
        }
    }
    let t = &v2["template"];
    let mut tmeta = Map::new();
    for k in ["labels", "annotations"] {
        if let Some(m) = t[k].as_object().filter(|m| !m.is_empty()) {
            tmeta.insert(k.into(), Value::Object(m.clone()));
        }
    }
    let mut tspec = Map::new();
    tspec.insert(
        "containers".into(),
        t["containers"]
            .as_array()
            .cloned()
            .map_or(json!([]), Value::Array),
    );
    if let Some(sa) = t["serviceAccount"].as_str() {
        tspec.insert("serviceAccountName".into(), json!(sa));
    }
    if let Some(n) = t["timeout"]
        .as_str()
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse::<f64>().ok())
    {
        tspec.insert("timeoutSeconds".into(), json!(n as i64));
    }
    if let Some(c) = t["maxInstanceRequestConcurrency"].as_i64() {
        tspec.insert("containerConcurrency".into(), json!(c));
    }
    let traffic: Vec<Value> = v2["traffic"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let mut o = Map::new();
                    if let Some(p) = x["percent"].as_i64() {
                        o.insert("percent".into(), json!(p));
                    }
                    if x["type"] == "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST" {
                        o.insert("latestRevision".into(), json!(true));
                    }
                    if let Some(r) = x["revision"].as_str() {
                        o.insert("revisionName".into(), json!(r));
                    }
                    if let Some(tag) = x["tag"].as_str() {
                        o.insert("tag".into(), json!(tag));
                    }
                    Value::Object(o)
                })
                .collect()
        })
        .unwrap_or_default();
    let settled = v2["reconciling"] != json!(true);
    let status_word = if settled { "True" } else { "Unknown" };
    let when = v2["updateTime"].clone();
    let conditions: Vec<Value> = ["Ready", "ConfigurationsReady", "RoutesReady"]
        .iter()
        .map(|c| json!({"type": c, "status": status_word, "lastTransitionTime": when}))
        .collect();
    let ready = leaf(&v2["latestReadyRevision"]);
    let mut status = json!({
        "conditions": conditions,
        "latestCreatedRevisionName": leaf(&v2["latestCreatedRevision"]),
        "latestReadyRevisionName": ready,
        "traffic": [{"revisionName": ready, "percent": 100, "latestRevision": true}],
        "url": v2["uri"],
        "address": {"url": v2["uri"]},
    });
    let observed = int(&v2["observedGeneration"]);
    if !observed.is_null() {
        status["observedGeneration"] = observed;
    }
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": id,
            "namespace": number.to_string(),
            "selfLink": format!("/apis/serving.knative.dev/v1/namespaces/{number}/services/{id}"),
            "uid": v2["uid"],
            "resourceVersion": v2["etag"].as_str().map(|e| e.trim_matches('"')),
            "generation": int(&v2["generation"]),
            "creationTimestamp": v2["createTime"],
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "template": {"metadata": tmeta, "spec": tspec},
            "traffic": traffic,
        },
        "status": status,
    })
}

/// Annotations Cloud Run owns (v2 refuses them from users).
fn is_system_annotation(k: &str) -> bool {
    [
        "run.googleapis.com/",
        "serving.knative.dev/",
        "autoscaling.knative.dev/",
        "client.knative.dev/",
    ]
    .iter()
    .any(|p| k.starts_with(p))
}

/// A v1 object as the v2 request with the same effect.
fn to_v2(v1: &Value) -> Result<Value, ApiError> {
    let meta = &v1["metadata"];
    let mut out = Map::new();
    let mut annotations = Map::new();
    if let Some(a) = meta["annotations"].as_object() {
        for (k, v) in a {
            match k.as_str() {
                INGRESS_ANNOTATION => {
                    let want = v.as_str().unwrap_or("");
                    let Some((v2, _)) = INGRESS.iter().find(|(_, a)| *a == want) else {
                        return Err(invalid(format!(
                            "Invalid value for annotation '{INGRESS_ANNOTATION}': '{want}'. Must be one of: all, internal, internal-and-cloud-load-balancing, none."
                        )));
                    };
                    out.insert("ingress".into(), json!(v2));
                }
                "run.googleapis.com/client-name" => {
                    out.insert("client".into(), v.clone());
                }
                "run.googleapis.com/client-version" => {
                    out.insert("clientVersion".into(), v.clone());
                }
                // System annotations (output only, or not modelled).
                k if is_system_annotation(k) => {}
                _ => {
                    annotations.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if !annotations.is_empty() {
        out.insert("annotations".into(), Value::Object(annotations));
    }
    if let Some(l) = meta["labels"].as_object() {
        let labels: Map<String, Value> = l
            .iter()
            .filter(|(k, _)| k.as_str() != LOCATION_LABEL)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !labels.is_empty() {
            out.insert("labels".into(), Value::Object(labels));
        }
    }
    let ts = &v1["spec"]["template"]["spec"];
    let mut template = Map::new();
    let tm = &v1["spec"]["template"]["metadata"];
    if let Some(l) = tm["labels"].as_object().filter(|m| !m.is_empty()) {
        template.insert("labels".into(), Value::Object(l.clone()));
    }
    // User annotations only; the system ones (autoscaling, client) are not modelled.
    let user: Map<String, Value> = tm["annotations"]
        .as_object()
        .map(|a| {
            a.iter()
                .filter(|(k, _)| !is_system_annotation(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if !user.is_empty() {
        template.insert("annotations".into(), Value::Object(user));
    }
    if let Some(c) = ts["containers"].as_array() {
        template.insert("containers".into(), Value::Array(c.clone()));
    }
    if let Some(sa) = ts["serviceAccountName"].as_str() {
        template.insert("serviceAccount".into(), json!(sa));
    }
    if let Some(n) = ts["timeoutSeconds"].as_i64() {
        template.insert("timeout".into(), json!(format!("{n}s")));
    }
    if let Some(n) = ts["containerConcurrency"].as_i64() {
        template.insert("maxInstanceRequestConcurrency".into(), json!(n));
    }
    out.insert("template".into(), Value::Object(template));
    if let Some(t) = v1["spec"]["traffic"].as_array() {
        let traffic: Vec<Value> = t
            .iter()
            .map(|x| {
                let mut o = Map::new();
                if x["latestRevision"] == json!(true) {
                    o.insert(
                        "type".into(),
                        json!("TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"),
                    );
                } else if let Some(r) = x["revisionName"].as_str() {
                    o.insert(
                        "type".into(),
                        json!("TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"),
                    );
                    o.insert("revision".into(), json!(r));
                }
                if let Some(p) = x["percent"].as_i64() {
                    o.insert("percent".into(), json!(p));
                }
                if let Some(tag) = x["tag"].as_str() {
                    o.insert("tag".into(), json!(tag));
                }
                Value::Object(o)
            })
            .collect();
        out.insert("traffic".into(), Value::Array(traffic));
    }
    Ok(Value::Object(out))
}

/// Reads one service as v1 sees it.
fn get_v1(
    shared: &crate::state::Shared,
    project: &str,
    region: &str,
    id: &str,
) -> Result<Value, ApiError> {
    let parent = format!("projects/{project}/locations/{region}");
    with_run(shared, project, "run.services.get", &parent, |st, p| {
        let full = format!("{parent}/services/{id}");
        st.services
            .get(&(region.to_string(), id.to_string()))
            .map(|s| to_v1(&run::public(&s.json), region, p.number))
            .ok_or_else(|| run::not_found(&full))
    })
}

/// Every service of `region` (`None`: every region), in v1's shape.
fn list_v1(
    shared: &crate::state::Shared,
    project: &str,
    region: Option<&str>,
) -> Result<Value, ApiError> {
    let parent = format!("projects/{project}/locations/{}", region.unwrap_or("-"));
    with_run(shared, project, "run.services.list", &parent, |st, p| {
        let items: Vec<Value> = st
            .services
            .iter()
            .filter(|((r, _), _)| region.is_none_or(|want| want == r))
            .map(|((r, _), s)| to_v1(&run::public(&s.json), r, p.number))
            .collect();
        Ok(json!({
            "apiVersion": "serving.knative.dev/v1",
            "kind": "ServiceList",
            "metadata": {},
            "items": items,
        }))
    })
}

/// One v1 request on `projects/{p}/locations/{r}/services...` or (with `region`
/// from the host) `namespaces/{p}/services...`.
async fn services(
    shared: &crate::state::Shared,
    method: &Method,
    project: &str,
    region: &str,
    id: Option<&str>,
    fail: Option<ApiError>,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let v2_path = |id: &str| format!("projects/{project}/locations/{region}/services/{id}");
    match (method.clone(), id) {
        (Method::GET, None) => list_v1(shared, project, (region != "-").then_some(region)),
        (Method::GET, Some(id)) => get_v1(shared, project, region, id),
        (Method::POST, None) => {
            let req = parse_body(body)?;
            let Some(id) = req["metadata"]["name"].as_str().map(str::to_string) else {
                return Err(invalid("metadata.name: a service needs a name."));
            };
            let v2 = to_v2(&req)?;
            let q: HashMap<String, String> = [("serviceId".to_string(), id.clone())].into();
            let bytes = Bytes::from(v2.to_string());
            let path = format!("projects/{project}/locations/{region}/services");
            run::dispatch(shared, &Method::POST, &path, &q, fail, &bytes).await?;
            get_v1(shared, project, region, &id)
        }
        (Method::PUT, Some(id)) => {
            let req = parse_body(body)?;
            if let Some(n) = req["metadata"]["name"].as_str()
                && n != id
            {
                return Err(invalid(format!(
                    "metadata.name '{n}' does not match the service in the URL, '{id}'."
                )));
            }
            let v2 = to_v2(&req)?;
            let q: HashMap<String, String> =
                [("updateMask".to_string(), REPLACED.join(","))].into();
            let bytes = Bytes::from(v2.to_string());
            run::dispatch(shared, &Method::PATCH, &v2_path(id), &q, fail, &bytes).await?;
            get_v1(shared, project, region, id)
        }
        (Method::DELETE, Some(id)) => {
            let before = get_v1(shared, project, region, id)?;
            let q = HashMap::new();
            run::dispatch(shared, &Method::DELETE, &v2_path(id), &q, fail, body).await?;
            Ok(json!({
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Success",
                "details": {
                    "name": id,
                    "group": "serving.knative.dev",
                    "kind": "services",
                    "uid": before["metadata"]["uid"],
                },
            }))
        }
        _ => Err(unknown(&format!(
            "/v1/projects/{project}/locations/{region}/services{}",
            id.map(|i| format!("/{i}")).unwrap_or_default()
        ))),
    }
}

/// `/v1/projects/{p}/locations/{r}/services...` (the v1 paths that are Cloud
/// Run's); `None` when the path is not Cloud Run's.
pub async fn projects_path(
    shared: &crate::state::Shared,
    method: &Method,
    rest: &str,
    q: &HashMap<String, String>,
    fail: Option<Extension<FailOperation>>,
    body: &Bytes,
) -> Option<Result<Value, ApiError>> {
    let segs: Vec<&str> = rest.split('/').collect();
    let (project, region, item) = match segs.as_slice() {
        ["projects", p, "locations", r, "services"] => (*p, *r, None),
        ["projects", p, "locations", r, "services", s] => (*p, *r, Some(*s)),
        _ => return None,
    };
    let fail = fail.map(|Extension(FailOperation(e))| e);
    Some(match item.map(|s| s.split_once(':')) {
        // The IAM methods are v2's, at the same names.
        Some(Some(_)) => run::dispatch(shared, method, rest, q, fail, body).await,
        _ => services(shared, method, project, region, item, fail, body).await,
    })
}

/// `/apis/serving.knative.dev/v1/namespaces/{p}/services[/{s}]` on a regional host.
pub async fn namespaces_path(
    shared: &crate::state::Shared,
    host: Option<&str>,
    method: &Method,
    rest: &str,
    fail: Option<Extension<FailOperation>>,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let path = format!("/apis/{rest}");
    let segs: Vec<&str> = rest.split('/').collect();
    let (project, item) = match segs.as_slice() {
        ["serving.knative.dev", "v1", "namespaces", p, "services"] => (*p, None),
        ["serving.knative.dev", "v1", "namespaces", p, "services", s] => (*p, Some(*s)),
        _ => return Err(unknown(&path)),
    };
    let Some(region) = host.and_then(region_of_host) else {
        return Err(invalid(format!(
            "{path} is served on regional endpoints only ({{REGION}}-run.googleapis.com)."
        )));
    };
    let fail = fail.map(|Extension(FailOperation(e))| e);
    services(shared, method, project, region, item, fail, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_come_from_regional_hosts() {
        assert_eq!(
            region_of_host("europe-west1-run.googleapis.com"),
            Some("europe-west1")
        );
        assert_eq!(
            region_of_host("us-central1-127.0.0.1:8080"),
            Some("us-central1")
        );
        assert_eq!(
            region_of_host("northamerica-northeast2-localhost"),
            Some("northamerica-northeast2")
        );
        assert_eq!(region_of_host("run.googleapis.com"), None);
        assert_eq!(region_of_host("127.0.0.1:8080"), None);
        assert_eq!(region_of_host("europe-west1"), None);
    }

    #[test]
    fn ingress_round_trips_through_the_annotation() {
        for (v2, v1) in INGRESS {
            let svc = json!({"name": "projects/p/locations/r/services/s", "ingress": v2,
                             "template": {"containers": [{"image": "i"}]}});
            let out = to_v1(&svc, "r", 1);
            assert_eq!(out["metadata"]["annotations"][INGRESS_ANNOTATION], v1);
            assert_eq!(to_v2(&out).unwrap()["ingress"], v2);
        }
        let bad = json!({"metadata": {"annotations": {INGRESS_ANNOTATION: "everyone"}}});
        assert!(to_v2(&bad).is_err());
    }
}
