//! Cloud Storage JSON API v1: the subset gclb-acme keeps its shared state and
//! leases with.
//!
//! Served (method ids of `storage.v1.json`):
//! - buckets: `insert`, `get`, `list`, `getIamPolicy`, `setIamPolicy`,
//!   `testIamPermissions` (`buckets.rs`);
//! - objects: `insert` at `/upload/storage/v1/b/{bucket}/o` with
//!   `uploadType=media` or `multipart` (the discovery document's `mediaUpload`
//!   path), `get` (metadata, or the content with `alt=media`, also at the
//!   download service's `/download/storage/v1/...`), `list` (`prefix`,
//!   `delimiter`, `pageToken`, `maxResults`, `startOffset`, `endOffset`),
//!   `delete`, `patch` (`objects.rs`).
//!
//! Google's semantics kept (documented in "Request preconditions" and "HTTP
//! status and error codes" of the Cloud Storage docs):
//! - every write of an object makes a new `generation` (a microsecond
//!   timestamp, never reused) with `metageneration` 1; a metadata `patch` bumps
//!   the metageneration only;
//! - `ifGenerationMatch` (0: the object must not exist), `ifGenerationNotMatch`,
//!   `ifMetagenerationMatch`, `ifMetagenerationNotMatch` on insert, get, delete
//!   and patch: a failed one answers 412 `conditionNotMet` ("At least one of the
//!   pre-conditions you specified did not hold."), except a failed `NotMatch` on
//!   a read, which answers 304 Not Modified with no body;
//! - a missing bucket or object is 404 `notFound` ("The specified bucket does
//!   not exist.", "No such object: BUCKET/OBJECT"), before any precondition is
//!   looked at, except on insert, where a missing object fails a non-zero
//!   `ifGenerationMatch` with 412;
//! - the error envelope is the JSON API's: `{"error": {"code", "message",
//!   "errors": [{"message", "domain", "reason"[, "locationType", "location"]}]}}`,
//!   without the `status` the other v1 APIs add;
//! - one write per object at a time: the world's lock makes each request atomic,
//!   so two conditional writers of one generation never both win;
//! - downloads carry `X-Goog-Generation`, `X-Goog-Metageneration`,
//!   `X-Goog-Stored-Content-Length` and `X-Goog-Hash: crc32c=...` (no MD5: the
//!   emulator computes CRC32C only, and checks a `crc32c` an uploader declares).
//!
//! IAM (`authz.rs`): each method's permission on `projects/_/buckets/B[/objects/O]`,
//! checked in the project that owns the bucket; an insert that replaces an
//! object also needs `storage.objects.delete`, as at Google. Not modelled:
//! object versioning, ACLs, resumable uploads, retention, soft delete.

mod buckets;
mod objects;
mod state;

pub use state::{Bucket, Object, State, find_bucket};

use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

use crate::state::Shared;

/// The Cloud Storage prefixes: the JSON API, the upload and the download services.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/storage/v1/{*rest}", any(serve))
        .route("/upload/storage/v1/{*rest}", any(serve))
        .route("/download/storage/v1/{*rest}", any(serve))
}

/// Whether a request path belongs to Cloud Storage.
pub fn is_storage_path(path: &str) -> bool {
    [
        "/storage/v1/",
        "/upload/storage/v1/",
        "/download/storage/v1/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// The project IAM is checked in for a Cloud Storage request: the bucket's
/// owner, or the default project for `b` itself (list and insert name theirs in
/// the query, which IAM does not see). `None` for a bucket that does not exist
/// (the handler answers 404).
pub fn project_of(shared: &Shared, path: &str) -> Option<String> {
    let (_, segs) = split_path(path)?;
    match segs.as_slice() {
        [b] if b == "b" => Some(shared.config.project.clone()),
        [b, bucket, ..] if b == "b" => find_bucket(&shared.world(), bucket),
        _ => None,
    }
}

/// Which service a path went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Json,
    Upload,
    Download,
}

/// The service and the percent-decoded segments after `storage/v1/`
/// (`["b", "bucket", "o", "a/b.json"]`: an object name's `%2F` stays in its
/// segment).
fn split_path(path: &str) -> Option<(Service, Vec<String>)> {
    let (service, rest) = if let Some(r) = path.strip_prefix("/storage/v1/") {
        (Service::Json, r)
    } else if let Some(r) = path.strip_prefix("/upload/storage/v1/") {
        (Service::Upload, r)
    } else if let Some(r) = path.strip_prefix("/download/storage/v1/") {
        (Service::Download, r)
    } else {
        return None;
    };
    let segs = rest.split('/').map(percent_decode).collect::<Option<_>>()?;
    Some((service, segs))
}

/// Decodes `%XX` escapes (UTF-8 required); `None` when malformed.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes an object name for a path segment (as Google's links do).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query parameters, in order (some repeat: `permissions`).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// An integer parameter (`ifGenerationMatch`, `maxResults`, ...); 400 when
    /// it is not one.
    pub(crate) fn int(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                StorageError::new(400, "invalid", format!("Invalid value for {key}: {v}"))
            }),
        }
    }
}

/// An error of the JSON API, in its own envelope (no `status` field), or the
/// bodiless 304 of a read whose `NotMatch` precondition failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// `(locationType, location)` when Google names the failing parameter.
    pub location: Option<(&'static str, &'static str)>,
}

/// Google's wording of a failed precondition.
pub const PRECONDITION_MESSAGE: &str =
    "At least one of the pre-conditions you specified did not hold.";

impl StorageError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        StorageError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            location: None,
        }
    }

    /// 412 `conditionNotMet`, located at the header Google names.
    pub fn precondition_failed(header: &'static str) -> Self {
        StorageError {
            location: Some(("header", header)),
            ..Self::new(412, "conditionNotMet", PRECONDITION_MESSAGE)
        }
    }

    pub fn not_modified() -> Self {
        Self::new(304, "notModified", "")
    }

    pub fn no_bucket() -> Self {
        Self::new(404, "notFound", "The specified bucket does not exist.")
    }

    pub fn no_object(bucket: &str, object: &str) -> Self {
        Self::new(
            404,
            "notFound",
            format!("No such object: {bucket}/{object}"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid", message)
    }

    /// The JSON body Google sends.
    pub fn body(&self) -> Value {
        let mut item = json!({
            "message": self.message,
            "domain": "global",
            "reason": self.reason,
        });
        if let Some((kind, at)) = self.location {
            item["locationType"] = json!(kind);
            item["location"] = json!(at);
        }
        json!({"error": {"code": self.code, "message": self.message, "errors": [item]}})
    }
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        if self.code == 304 {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        resp
    }
}

/// What a handler returns.
pub(crate) type StorageResult = Result<Response, StorageError>;

/// Which kind of request a precondition guards: a failed `NotMatch` is a 304
/// on a read and a 412 on a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Checks the four generation preconditions against the live object (or its
/// absence). The `Match` conditions are looked at first: when both kinds fail,
/// Google answers 412, not 304.
pub(crate) fn check_preconditions(
    q: &Params,
    live: Option<(u64, u64)>,
    access: Access,
) -> Result<(), StorageError> {
    let generation = live.map(|(g, _)| g);
    let metageneration = live.map(|(_, m)| m);
    if let Some(want) = q.int("ifGenerationMatch")? {
        // 0: "the object must not exist" (a create-only write).
        let ok = if want == 0 {
            generation.is_none()
        } else {
            generation == Some(want)
        };
        if !ok {
            return Err(StorageError::precondition_failed("If-Match"));
        }
    }
    if let Some(want) = q.int("ifMetagenerationMatch")?
        && metageneration != Some(want)
    {
        return Err(StorageError::precondition_failed("If-Match"));
    }
    let not_match_failed = matches!(
        (q.int("ifGenerationNotMatch")?, generation),
        (Some(w), Some(g)) if w == g
    ) || matches!(
        (q.int("ifMetagenerationNotMatch")?, metageneration),
        (Some(w), Some(m)) if w == m
    );
    if not_match_failed {
        return Err(match access {
            Access::Read => StorageError::not_modified(),
            Access::Write => StorageError::precondition_failed("If-None-Match"),
        });
    }
    Ok(())
}

/// CRC32C (Castagnoli), as Cloud Storage reports it: the big-endian bytes in base64.
pub fn crc32c(data: &[u8]) -> u32 {
    const POLY: u32 = 0x82F6_3B78;
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `base64(crc32c)` as the `crc32c` field and `X-Goog-Hash` carry it.
pub fn crc32c_b64(data: &[u8]) -> String {
    crate::b64::encode(&crc32c(data).to_be_bytes())
}

/// An etag in Google's shape: base64 of a protobuf holding the generation and
/// metageneration (e.g. `CKih16GjycICEAE=`), so it changes with either.
pub(crate) fn etag(generation: u64, metageneration: u64) -> String {
    let mut buf = Vec::new();
    for (field, v) in [(1u8, generation), (2u8, metageneration)] {
        buf.push(field << 3);
        let mut v = v;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                buf.push(byte);
                break;
            }
            buf.push(byte | 0x80);
        }
    }
    crate::b64::encode(&buf)
}

/// RFC 3339 in UTC with milliseconds, as Cloud Storage renders times.
pub(crate) fn time(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// `http://host/`: where the links in our answers point (the emulator itself,
/// so a client following `mediaLink` stays on loopback).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("storage.googleapis.com");
    format!("http://{host}/")
}

/// Every Cloud Storage request: dispatched by service, method and path shape.
async fn serve(
    AxState(shared): AxState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = Params(
        Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map(|Query(v)| v)
            .unwrap_or_default(),
    );
    let Some((service, segs)) = split_path(uri.path()) else {
        return not_served(uri.path()).into_response();
    };
    let base = base_url(&headers);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let result = match (service, &method, segs.as_slice()) {
        (Service::Json, &Method::GET, ["b"]) => buckets::list(&shared, &q, &base),
        (Service::Json, &Method::POST, ["b"]) => buckets::insert(&shared, &q, &body, &base),
        (Service::Json, &Method::GET, ["b", bucket]) => buckets::get(&shared, bucket, &base),
        (Service::Json, &Method::GET, ["b", bucket, "iam"]) => {
            buckets::get_iam_policy(&shared, bucket)
        }
        (Service::Json, &Method::PUT, ["b", bucket, "iam"]) => {
            buckets::set_iam_policy(&shared, bucket, &body)
        }
        (Service::Json, &Method::GET, ["b", bucket, "iam", "testPermissions"]) => {
            buckets::test_iam_permissions(&shared, bucket, &q)
        }
        (Service::Json, &Method::GET, ["b", bucket, "o"]) => {
            objects::list(&shared, bucket, &q, &base)
        }
        (Service::Json, &Method::POST, ["b", _, "o"]) => Err(StorageError::invalid(
            "Upload requests must include an uploadType URL parameter and a URL path beginning with /upload/",
        )),
        (Service::Upload, &Method::POST, ["b", bucket, "o"]) => {
            objects::insert(&shared, bucket, &q, &headers, &body, &base)
        }
        (Service::Json | Service::Download, &Method::GET, ["b", bucket, "o", object]) => {
            let media = service == Service::Download || q.get("alt") == Some("media");
            objects::get(&shared, bucket, object, &q, media, &base)
        }
        (Service::Json, &Method::DELETE, ["b", bucket, "o", object]) => {
            objects::delete(&shared, bucket, object, &q)
        }
        (Service::Json, &Method::PATCH, ["b", bucket, "o", object]) => {
            objects::patch(&shared, bucket, object, &q, &body, &base)
        }
        _ => Err(not_served(uri.path())),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The 404 of a path no method served here matches.
fn not_served(path: &str) -> StorageError {
    StorageError::new(
        404,
        "notFound",
        format!("The requested URL {path} was not found on this server."),
    )
}

/// The body as a JSON object (after the middleware checked it against the
/// discovery schema); an empty body is `{}`.
pub(crate) fn json_body(body: &[u8]) -> Result<Value, StorageError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|_| StorageError::invalid("Invalid JSON payload received."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_rfc_3720_check_value() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        // What `gsutil hash -c` prints for an empty object.
        assert_eq!(crc32c_b64(b""), "AAAAAA==");
    }

    #[test]
    fn paths_keep_encoded_slashes_inside_the_object_segment() {
        let (s, segs) = split_path("/storage/v1/b/bkt/o/a%2Fb%20c.json").unwrap();
        assert_eq!(s, Service::Json);
        assert_eq!(segs, ["b", "bkt", "o", "a/b c.json"]);
        let (s, _) = split_path("/upload/storage/v1/b/bkt/o").unwrap();
        assert_eq!(s, Service::Upload);
        assert!(split_path("/storage/v1/b/bkt/o/%zz").is_none());
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    fn q(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn preconditions_as_google_answers_them() {
        let live = Some((7, 2));
        let pf = |h| Err(StorageError::precondition_failed(h));
        let w = Access::Write;
        let r = Access::Read;
        assert_eq!(check_preconditions(&q(&[]), live, w), Ok(()));
        assert_eq!(
            check_preconditions(&q(&[("ifGenerationMatch", "0")]), None, w),
            Ok(())
        );
        assert_eq!(
            check_preconditions(&q(&[("ifGenerationMatch", "0")]), live, w),
            pf("If-Match")
        );
        assert_eq!(
            check_preconditions(&q(&[("ifGenerationMatch", "7")]), live, w),
            Ok(())
        );
        assert_eq!(
            check_preconditions(&q(&[("ifGenerationMatch", "8")]), live, w),
            pf("If-Match")
        );
        assert_eq!(
            check_preconditions(&q(&[("ifGenerationMatch", "7")]), None, w),
            pf("If-Match")
        );
        assert_eq!(
            check_preconditions(&q(&[("ifMetagenerationMatch", "2")]), live, w),
            Ok(())
        );
        assert_eq!(
            check_preconditions(&q(&[("ifMetagenerationMatch", "1")]), live, w),
            pf("If-Match")
        );
        assert_eq!(
            check_preconditions(&q(&[("ifGenerationNotMatch", "7")]), live, w),
            pf("If-None-Match")
        );
        assert_eq!(
            check_preconditions(&q(&[("ifGenerationNotMatch", "7")]), live, r),
            Err(StorageError::not_modified())
        );
        assert_eq!(
            check_preconditions(&q(&[("ifGenerationNotMatch", "7")]), None, w),
            Ok(())
        );
        assert_eq!(
            check_preconditions(&q(&[("ifMetagenerationNotMatch", "2")]), live, r),
            Err(StorageError::not_modified())
        );
        assert_eq!(
            check_preconditions(&q(&[("ifMetagenerationNotMatch", "3")]), live, r),
            Ok(())
        );
        // Both kinds fail: 412 wins over 304.
        assert_eq!(
            check_preconditions(
                &q(&[("ifGenerationNotMatch", "7"), ("ifGenerationMatch", "8")]),
                live,
                r
            ),
            pf("If-Match")
        );
        let e = check_preconditions(&q(&[("ifGenerationMatch", "x")]), live, w).unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (400, "invalid"));
    }

    #[test]
    fn the_412_body_is_googles() {
        let b = StorageError::precondition_failed("If-Match").body();
        assert_eq!(
            b,
            json!({"error": {"code": 412, "message": PRECONDITION_MESSAGE, "errors": [{
                "message": PRECONDITION_MESSAGE, "domain": "global", "reason": "conditionNotMet",
                "locationType": "header", "location": "If-Match"}]}})
        );
    }

    #[test]
    fn etags_change_with_generation_and_metageneration() {
        assert_eq!(etag(1, 1), "CAEQAQ==");
        assert_ne!(
            etag(1_700_000_000_000_000, 1),
            etag(1_700_000_000_000_000, 2)
        );
    }
}
