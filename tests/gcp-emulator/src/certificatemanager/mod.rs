//! Certificate Manager v1: self-managed certificates, certificate maps, map
//! entries and their long-running operations, at the paths of
//! `certificatemanager.v1.json` under the shared `/v1/` prefix (dispatched from
//! [`crate::cloud`] by [`is_path`]). Location `global` only.
//!
//! What is Google's and where it is written down:
//! - every mutation answers a `google.longrunning.Operation` whose metadata is an
//!   `OperationMetadata` (`verb` `create`, `update` or `delete`, `target`,
//!   `apiVersion` `v1`); `response` is the resource (`google.protobuf.Empty` for
//!   deletes). Shapes as recorded against Google by Config Connector's test
//!   fixtures (`k8s-config-connector`, `pkg/test/resourcefixture/testdata/basic/
//!   certificatemanager/`). The operation is done at once without a latency
//!   model, after the model's `certificatemanager` figure with one; its effect is
//!   visible at once, as Compute's are here.
//! - errors: 404 `NOT_FOUND` "Resource '<name>' was not found" with no `details`
//!   (the same recordings); 409 `ALREADY_EXISTS` on an existing id; 400
//!   `INVALID_ARGUMENT` on a bad PEM chain or a key that does not belong to the
//!   leaf (the chain and key checks are Compute's, [`crate::compute::certs`]:
//!   Certificate Manager supports the same key types; its exact wording is not
//!   published, the emulator's words are Compute's); 400 `FAILED_PRECONDITION`
//!   with a `PreconditionFailure` (`RESOURCE_STILL_IN_USE`) on deleting a
//!   certificate a map entry uses, "can't delete certificate that is referenced
//!   by a CertificateMapEntry or other resources", as Google answers Terraform
//!   users; 400 `FAILED_PRECONDITION` on deleting a map that still has entries
//!   ("has nested resources", AIP-135's wording) or that a target proxy uses (our
//!   reading: Google documents no wording for it).
//! - at most four certificates per entry (the `CertificateMapEntry.certificates`
//!   field doc) and a certificate in at most 100 entries ("certificate can't be
//!   used more than 100 times", Certificate Manager troubleshooting page); one
//!   entry per hostname and one PRIMARY entry per map (our reading of "Manage
//!   certificate map entries").
//! - entries name their certificates in project-number form
//!   (`projects/123/locations/global/certificates/c`), as Google stores them.
//! - `privateKey`s are input only: never stored, never returned;
//!   `selfManaged` is rendered `{}`, marking the certificate self-managed.
//! - `certificates.usedBy` lists the entries using a certificate,
//!   `certificateMaps.gclbTargets` the target HTTPS proxies that use the map and
//!   have a forwarding rule (the field doc: "only present on this list if it's
//!   attached to a Forwarding Rule").
//!
//! Lists take `-` for every location (`locations/-/certificates`, as gcloud
//! lists) and every map (`certificateMaps/-/certificateMapEntries`).
//! List filters: `labels.KEY=VALUE` (or `"VALUE"`), `labels.KEY:*` and
//! `name=NAME`, joined by `AND`; `orderBy` `name` or `createTime`, `desc` allowed.
//! Page size: 50 unless `pageSize` says otherwise (AIP-158; the entries' list
//! documents 50), at most 1000.
//!
//! Another location answers 404 "Location L is not found or access is
//! unauthorized." (our reading: Google's wording for locations it does not
//! serve; Certificate Manager does serve regions, the emulator does not).
//!
//! Not modelled: Google-managed certificates (`managed` is refused with a 400
//! naming the emulator), DNS authorizations, issuance and trust configs,
//! regional locations. What a proxy serves is in [`serving`].

mod ops;
mod resources;
pub mod serving;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::Method;
use serde_json::{Map, Value, json};

use crate::cloud::no_such_method;
use crate::error::ApiError;
use crate::state::Shared;

pub use ops::Operation;
pub use resources::State;

/// The one location served.
pub const LOCATION: &str = "global";
/// The prefix of full resource names (`usedBy`, a proxy's `certificateMap`).
pub const FULL_NAME_ROOT: &str = "//certificatemanager.googleapis.com/";
/// The `@type` prefix of this API's messages.
const TYPE_ROOT: &str = "type.googleapis.com/google.cloud.certificatemanager.v1.";
/// Default and largest page.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 1000;

/// Whether `/v1/{rest}` is Certificate Manager's: `projects/P/locations/L/`
/// followed by `certificates`, `certificateMaps` or `operations`.
pub fn is_path(rest: &str) -> bool {
    let segs: Vec<&str> = rest.split('/').collect();
    matches!(
        segs.as_slice(),
        ["projects", _, "locations", _, coll, ..]
            if matches!(*coll, "certificates" | "certificateMaps" | "operations")
    )
}

// ---------------------------------------------------------------- errors

/// 404 as Certificate Manager words it (no `details`).
pub(crate) fn not_found(name: &str) -> ApiError {
    ApiError::new(404, "notFound", format!("Resource '{name}' was not found"))
        .aip193()
        .with_details(Vec::new())
}

/// 409 on an id that is taken.
pub(crate) fn already_exists(name: &str) -> ApiError {
    ApiError::new(
        409,
        "alreadyExists",
        format!("Resource '{name}' already exists"),
    )
    .aip193()
    .with_details(Vec::new())
}

/// 400 `INVALID_ARGUMENT`.
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "invalid", message)
        .aip193()
        .with_details(Vec::new())
}

/// 400 `FAILED_PRECONDITION`, with the details Google gives.
pub(crate) fn failed_precondition(message: impl Into<String>, details: Vec<Value>) -> ApiError {
    ApiError::new(400, "failedPrecondition", message)
        .aip193()
        .with_details(details)
}

/// A `PreconditionFailure` detail with one violation.
pub(crate) fn still_in_use(subject: &str, description: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
        "violations": [{
            "type": "RESOURCE_STILL_IN_USE",
            "subject": subject,
            "description": description,
        }],
    })
}

/// The gRPC code of an error, for `Operation.error.code`.
pub(crate) fn grpc_code(e: &ApiError) -> i32 {
    match e.status_name() {
        "INVALID_ARGUMENT" => 3,
        "DEADLINE_EXCEEDED" => 4,
        "NOT_FOUND" => 5,
        "ALREADY_EXISTS" => 6,
        "PERMISSION_DENIED" => 7,
        "RESOURCE_EXHAUSTED" => 8,
        "FAILED_PRECONDITION" => 9,
        "ABORTED" => 10,
        "UNIMPLEMENTED" => 12,
        "UNAVAILABLE" => 14,
        "UNAUTHENTICATED" => 16,
        _ => 13,
    }
}

// ---------------------------------------------------------------- request plumbing

/// One request, as the dispatcher split it.
pub(crate) struct Req<'a> {
    pub(crate) method: &'a Method,
    pub(crate) q: &'a HashMap<String, String>,
    pub(crate) body: &'a Bytes,
    pub(crate) fail: Option<ApiError>,
    pub(crate) now: SystemTime,
    /// How long the operation a mutation starts takes.
    pub(crate) delay: Duration,
}

impl Req<'_> {
    pub(crate) fn body(&self) -> Result<Map<String, Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(self.body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(invalid(
                "Invalid JSON payload received. Expected an object.",
            )),
        }
    }

    pub(crate) fn query(&self, key: &str) -> Option<&str> {
        self.q
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// `/v1/{rest}` for a path [`is_path`] accepted.
pub fn handle(
    shared: &Shared,
    method: &Method,
    rest: &str,
    q: &HashMap<String, String>,
    fail: Option<ApiError>,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let segs: Vec<&str> = rest.split('/').collect();
    let (project, location, tail) = match segs.as_slice() {
        ["projects", p, "locations", l, tail @ ..] => (*p, *l, tail),
        _ => return Err(no_such_method(&format!("/v1/{rest}"))),
    };
    // Without a latency model a mutation's operation is done at once.
    let delay = shared
        .latency()
        .and_then(|m| m.operation("certificatemanager"))
        .unwrap_or(Duration::ZERO);
    let req = Req {
        method,
        q,
        body,
        fail,
        now: SystemTime::now(),
        delay,
    };
    let unknown = || no_such_method(&format!("/v1/{rest}"));
    let mut world = shared.world();
    let op_seq = world.fresh_id();
    let permission = resources::permission_for(method, tail);
    let parent = format!("projects/{project}/locations/{location}");
    let p = crate::cloud::project_or_denied(&mut world, project, permission, &parent)?;
    // Lists take `-` for every location (gcloud lists that way).
    let every = location == "-" && *method == Method::GET && tail.len() % 2 == 1;
    if location != LOCATION && !every {
        return Err(ApiError::new(
            404,
            "notFound",
            format!("Location {location} is not found or access is unauthorized."),
        )
        .aip193()
        .with_details(Vec::new()));
    }
    resources::dispatch(p, &req, op_seq, tail).unwrap_or_else(|| Err(unknown()))
}

// ---------------------------------------------------------------- lists

/// `pageSize`, `pageToken`, `filter`, `orderBy` applied to `items` (sorted by
/// name), returning the page and the next token.
pub(crate) fn page(
    req: &Req,
    mut items: Vec<Value>,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    if let Some(f) = req.query("filter") {
        let terms = parse_filter(f)?;
        items.retain(|v| terms.iter().all(|t| t.matches(v)));
    }
    if let Some(o) = req.query("orderBy") {
        let (field, desc) = match o.split_whitespace().collect::<Vec<_>>().as_slice() {
            [f] => (*f, false),
            [f, d] if d.eq_ignore_ascii_case("desc") => (*f, true),
            [f, a] if a.eq_ignore_ascii_case("asc") => (*f, false),
            _ => return Err(invalid(format!("Invalid order_by: {o}"))),
        };
        let key = match field {
            "name" => "name",
            "createTime" | "create_time" => "createTime",
            "updateTime" | "update_time" => "updateTime",
            _ => return Err(invalid(format!("Invalid order_by field: {field}"))),
        };
        items.sort_by(|a, b| {
            let (x, y) = (a[key].as_str(), b[key].as_str());
            x.cmp(&y)
                .then_with(|| a["name"].as_str().cmp(&b["name"].as_str()))
        });
        if desc {
            items.reverse();
        }
    }
    let size = match req.query("pageSize") {
        None => DEFAULT_PAGE,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => return Err(invalid("page_size must not be negative")),
            Ok(0) => DEFAULT_PAGE,
            Ok(n) => (n as usize).min(MAX_PAGE),
            Err(_) => return Err(invalid(format!("Invalid page_size: {s}"))),
        },
    };
    let start = match req.query("pageToken") {
        None => 0,
        Some(t) => crate::b64::decode(t)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix("offset:")
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .filter(|n| *n <= items.len())
            .ok_or_else(|| invalid("The page token is invalid."))?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| crate::b64::encode(format!("offset:{end}").as_bytes()));
    Ok((items[start..end].to_vec(), next))
}

/// A list response: `{key: items, nextPageToken?}`.
pub(crate) fn list_response(key: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut v = json!({});
    if !items.is_empty() {
        v[key] = json!(items);
    }
    if let Some(t) = next {
        v["nextPageToken"] = json!(t);
    }
    v
}

/// One term of a list filter.
#[derive(Debug, PartialEq)]
enum Term {
    /// `labels.k=v`
    Label(String, String),
    /// `labels.k:*`
    HasLabel(String),
    /// `name=n` (the full name, or its last segment)
    Name(String),
}

impl Term {
    fn matches(&self, v: &Value) -> bool {
        match self {
            Term::Label(k, want) => v["labels"][k].as_str() == Some(want.as_str()),
            Term::HasLabel(k) => v["labels"].get(k).is_some(),
            Term::Name(n) => v["name"]
                .as_str()
                .is_some_and(|name| name == n || name.rsplit('/').next() == Some(n.as_str())),
        }
    }
}

fn parse_filter(f: &str) -> Result<Vec<Term>, ApiError> {
    let bad = || invalid(format!("Invalid filter: \"{f}\""));
    let unquote = |s: &str| {
        let s = s.trim();
        s.strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(s)
            .to_string()
    };
    let mut out = Vec::new();
    for term in f.split(" AND ") {
        let term = term.trim();
        if term.is_empty() {
            return Err(bad());
        }
        if let Some((k, v)) = term.split_once('=') {
            let k = k.trim();
            let v = unquote(v);
            if let Some(label) = k.strip_prefix("labels.").filter(|l| !l.is_empty()) {
                out.push(Term::Label(label.to_string(), v));
            } else if k == "name" {
                out.push(Term::Name(v));
            } else {
                return Err(bad());
            }
        } else if let Some((k, v)) = term.split_once(':') {
            match (k.trim().strip_prefix("labels."), v.trim()) {
                (Some(l), "*") if !l.is_empty() => out.push(Term::HasLabel(l.to_string())),
                _ => return Err(bad()),
            }
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- names

/// `//certificatemanager.googleapis.com/projects/P/locations/L/certificateMaps/M`
/// -> `(P, L, M)`.
pub fn parse_map_reference(s: &str) -> Option<(&str, &str, &str)> {
    let rest = s.strip_prefix(FULL_NAME_ROOT)?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", p, "locations", l, "certificateMaps", m]
            if !p.is_empty() && !l.is_empty() && !m.is_empty() =>
        {
            Some((p, l, m))
        }
        _ => None,
    }
}

/// Certificate Manager's resource ids: RFC 1035 labels, 1 to 63 characters.
pub(crate) fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_recognised() {
        assert!(is_path("projects/p/locations/global/certificates"));
        assert!(is_path(
            "projects/p/locations/global/certificateMaps/m/certificateMapEntries"
        ));
        assert!(is_path("projects/p/locations/global/operations/op"));
        assert!(!is_path("projects/p/locations/us-central1/services/s"));
        assert!(!is_path("projects/p/services/dns.googleapis.com:enable"));
    }

    #[test]
    fn filters_parse_and_match() {
        let t = parse_filter("labels.owner=gclb-acme AND labels.cert:*").unwrap();
        assert_eq!(
            t,
            [
                Term::Label("owner".into(), "gclb-acme".into()),
                Term::HasLabel("cert".into())
            ]
        );
        let v = json!({"name": "projects/p/locations/global/certificates/c",
                       "labels": {"owner": "gclb-acme", "cert": "x"}});
        assert!(t.iter().all(|t| t.matches(&v)));
        let quoted = parse_filter("labels.owner=\"other\"").unwrap();
        assert!(!quoted[0].matches(&v));
        assert!(parse_filter("name=c").unwrap()[0].matches(&v));
        assert!(parse_filter("description=x").is_err());
        assert!(parse_filter("labels.=x").is_err());
    }

    #[test]
    fn map_references_parse() {
        assert_eq!(
            parse_map_reference(
                "//certificatemanager.googleapis.com/projects/p/locations/global/certificateMaps/m"
            ),
            Some(("p", "global", "m"))
        );
        assert_eq!(
            parse_map_reference("projects/p/locations/global/certificateMaps/m"),
            None
        );
        assert_eq!(
            parse_map_reference(
                "//certificatemanager.googleapis.com/projects/p/locations/global/certificates/m"
            ),
            None
        );
    }

    #[test]
    fn error_bodies_have_googles_shape() {
        let b = not_found("projects/p/locations/global/certificates/c").body();
        assert_eq!(b["error"]["status"], "NOT_FOUND");
        assert!(b["error"].get("details").is_none());
        let e = failed_precondition("x", vec![still_in_use("s", "x")]);
        let b = e.body();
        assert_eq!(b["error"]["status"], "FAILED_PRECONDITION");
        assert_eq!(b["error"]["code"], 400);
        assert_eq!(
            b["error"]["details"][0]["violations"][0]["type"],
            "RESOURCE_STILL_IN_USE"
        );
        assert_eq!(grpc_code(&e), 9);
        assert_eq!(grpc_code(&already_exists("x")), 6);
    }
}
