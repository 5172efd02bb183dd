//! Objects: `insert` (media and multipart uploads), `get` (metadata or
//! `alt=media`), `list`, `delete`, `patch`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::buckets::with_bucket;
use super::{
    Access, Object, Params, StorageError, StorageResult, check_preconditions, crc32c_b64,
    encode_segment, etag, json_body, time,
};
use crate::authz::Need;
use crate::state::Shared;

/// Google's limit on object names, in bytes of UTF-8.
const MAX_NAME: usize = 1024;

/// Google's object-name rules.
fn check_name(name: &str) -> Result<(), StorageError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME
        || name == "."
        || name == ".."
        || name.contains(['\r', '\n'])
        || name.starts_with(".well-known/acme-challenge/");
    if bad {
        Err(StorageError::invalid(
            "The specified object name is not valid.",
        ))
    } else {
        Ok(())
    }
}

/// The object resource as `objects.get` answers it.
pub(crate) fn to_json(bucket: &str, o: &Object, base: &str) -> Value {
    let enc = encode_segment(&o.name);
    let mut v = json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{}/{}", o.name, o.generation),
        "selfLink": format!("{base}storage/v1/b/{bucket}/o/{enc}"),
        "mediaLink": format!("{base}download/storage/v1/b/{bucket}/o/{enc}?generation={}&alt=media", o.generation),
        "name": o.name,
        "bucket": bucket,
        "generation": o.generation.to_string(),
        "metageneration": o.metageneration.to_string(),
        "contentType": o.content_type,
        "storageClass": "STANDARD",
        "size": o.data.len().to_string(),
        "crc32c": crc32c_b64(&o.data),
        "etag": etag(o.generation, o.metageneration),
        "timeCreated": time(o.created),
        "updated": time(o.updated),
        "timeStorageClassUpdated": time(o.created),
        "timeFinalized": time(o.created),
    });
    if !o.metadata.is_empty() {
        v["metadata"] = json!(o.metadata);
    }
    if let Some(m) = &o.md5_hash {
        v["md5Hash"] = json!(m);
    }
    if let Some(k) = &o.kms_key_name {
        v["kmsKeyName"] = json!(k);
    }
    v
}

/// User metadata from an Object resource (`metadata`: string values).
fn metadata_of(v: &Value) -> Result<BTreeMap<String, String>, StorageError> {
    let mut out = BTreeMap::new();
    if let Some(m) = v.get("metadata").and_then(Value::as_object) {
        for (k, val) in m {
            match val {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                Value::Null => {}
                _ => {
                    return Err(StorageError::invalid(format!(
                        "Invalid value at 'metadata[{k}]': expected a string"
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// `(metadata, media, media content type)` of a `multipart/related` body.
fn parse_multipart(
    content_type: &str,
    body: &[u8],
) -> Result<(Value, Vec<u8>, Option<String>), StorageError> {
    let bad = |why: &str| StorageError::invalid(format!("Invalid multipart request: {why}"));
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("no boundary in Content-Type"))?;
    let delim = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut at = find(body, &delim, 0).ok_or_else(|| bad("no opening boundary"))? + delim.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            break;
        }
        // Skip the line break after the boundary.
        at += if body.get(at..at + 2) == Some(b"\r\n") {
            2
        } else {
            1
        };
        let head_end = find(body, b"\r\n\r\n", at).ok_or_else(|| bad("part without headers"))?;
        let headers = String::from_utf8_lossy(&body[at..head_end]).into_owned();
        let data_start = head_end + 4;
        let mut close = delim.clone();
        close.splice(0..0, *b"\r\n");
        let data_end = find(body, &close, data_start).ok_or_else(|| bad("unterminated part"))?;
        let part_type = headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        parts.push((part_type, body[data_start..data_end].to_vec()));
        at = data_end + close.len();
    }
    if parts.len() != 2 {
        return Err(bad("expected a metadata part and a media part"));
    }
    let media = parts.pop().map(|(t, d)| (d, t));
    let meta = parts.pop().map(|(_, d)| d).unwrap_or_default();
    let (media, media_type) = media.unwrap_or_default();
    let meta = json_body(&meta)?;
    Ok((meta, media, Some(media_type).filter(|t| !t.is_empty())))
}

/// `POST /upload/storage/v1/b/{bucket}/o?uploadType=media|multipart`.
pub(super) fn insert(
    shared: &Shared,
    bucket: &str,
    q: &Params,
    headers: &HeaderMap,
    body: &[u8],
    base: &str,
) -> StorageResult {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (meta, data, media_type) = match q.get("uploadType") {
        Some("media") => (json!({}), body.to_vec(), Some(content_type)),
        Some("multipart") => {
            let (meta, data, t) = parse_multipart(&content_type, body)?;
            // The metadata part is an Object resource, checked like any request body.
            if let Some(m) = shared
                .discovery
                .resolve_method(&Method::POST, &format!("/storage/v1/b/{bucket}/o"))
                && let Err(e) = shared
                    .discovery
                    .validate_request(m, meta.to_string().as_bytes())
            {
                return Err(StorageError::invalid(e.message));
            }
            (meta, data, t)
        }
        Some(other) => {
            return Err(StorageError::invalid(format!(
                "uploadType={other} is not served by the emulator (media and multipart are)"
            )));
        }
        None => {
            return Err(StorageError::invalid(
                "Upload requests must include an uploadType URL parameter and a URL path beginning with /upload/",
            ));
        }
    };
    let name = meta["name"]
        .as_str()
        .or_else(|| q.get("name"))
        .map(str::to_string)
        .ok_or_else(|| StorageError::new(400, "required", "Required"))?;
    check_name(&name)?;
    if let Some(declared) = meta["crc32c"].as_str() {
        let actual = crc32c_b64(&data);
        if declared != actual {
            return Err(StorageError::invalid(format!(
                "Provided CRC32C \"{declared}\" doesn't match calculated CRC32C \"{actual}\"."
            )));
        }
    }
    let content_type = meta["contentType"]
        .as_str()
        .map(str::to_string)
        .or(media_type)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let metadata = metadata_of(&meta)?;
    with_bucket(shared, bucket, |p, bucket| {
        let generation = p.storage.next_generation();
        let b = p
            .storage
            .buckets
            .get_mut(bucket)
            .ok_or_else(StorageError::no_bucket)?;
        let live = b
            .objects
            .get(&name)
            .map(|o| (o.generation, o.metageneration));
        check_preconditions(q, live, Access::Write)?;
        if live.is_some() {
            // Replacing an object deletes the old one: Google checks that too.
            let need = Need::new(
                "storage.objects.delete",
                format!("projects/_/buckets/{bucket}/objects/{name}"),
            );
            let ok = p.iam.holds(&need.permission);
            p.iam.record(Some("storage.objects.insert"), &need, ok);
            if !ok {
                let e = crate::authz::denied_error("/storage/v1/", &need);
                return Err(StorageError::new(e.code, &e.reason, e.message));
            }
        }
        let now = SystemTime::now();
        let o = Object {
            name: name.clone(),
            data,
            generation,
            metageneration: 1,
            content_type,
            metadata,
            created: now,
            updated: now,
            md5_hash: meta["md5Hash"].as_str().map(str::to_string),
            kms_key_name: b.default_kms_key.clone(),
        };
        let out = to_json(bucket, &o, base);
        b.objects.insert(name, o);
        Ok(Json(out).into_response())
    })
}

/// The live object, honouring a `generation` parameter (no versioning: any other
/// generation does not exist), or 404.
fn live<'a>(
    objects: &'a BTreeMap<String, Object>,
    bucket: &str,
    name: &str,
    q: &Params,
) -> Result<&'a Object, StorageError> {
    let o = objects
        .get(name)
        .ok_or_else(|| StorageError::no_object(bucket, name))?;
    match q.int("generation")? {
        Some(g) if g != o.generation => Err(StorageError::no_object(bucket, name)),
        _ => Ok(o),
    }
}

/// `GET .../b/{bucket}/o/{object}`: metadata, or the content (`alt=media`, or
/// the download service).
pub(super) fn get(
    shared: &Shared,
    bucket: &str,
    name: &str,
    q: &Params,
    media: bool,
    base: &str,
) -> StorageResult {
    with_bucket(shared, bucket, |p, bucket| {
        let b = &p.storage.buckets[bucket];
        let o = live(&b.objects, bucket, name, q)?;
        check_preconditions(q, Some((o.generation, o.metageneration)), Access::Read)?;
        if !media {
            return Ok(Json(to_json(bucket, o, base)).into_response());
        }
        let mut resp = (StatusCode::OK, o.data.clone()).into_response();
        let h = resp.headers_mut();
        let mut set = |k: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        };
        set("content-type", o.content_type.clone());
        set("x-goog-generation", o.generation.to_string());
        set("x-goog-metageneration", o.metageneration.to_string());
        set("x-goog-stored-content-length", o.data.len().to_string());
        set("x-goog-stored-content-encoding", "identity".to_string());
        set("x-goog-hash", format!("crc32c={}", crc32c_b64(&o.data)));
        set(
            "etag",
            format!("\"{}\"", etag(o.generation, o.metageneration)),
        );
        Ok(resp)
    })
}

/// `DELETE /storage/v1/b/{bucket}/o/{object}`: 204 with no body.
pub(super) fn delete(shared: &Shared, bucket: &str, name: &str, q: &Params) -> StorageResult {
    with_bucket(shared, bucket, |p, bucket| {
        let b = p
            .storage
            .buckets
            .get_mut(bucket)
            .ok_or_else(StorageError::no_bucket)?;
        let o = live(&b.objects, bucket, name, q)?;
        check_preconditions(q, Some((o.generation, o.metageneration)), Access::Write)?;
        b.objects.remove(name);
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

/// `PATCH /storage/v1/b/{bucket}/o/{object}`: `metadata` (merged; a null value
/// removes a key) and `contentType`; bumps the metageneration only.
pub(super) fn patch(
    shared: &Shared,
    bucket: &str,
    name: &str,
    q: &Params,
    body: &[u8],
    base: &str,
) -> StorageResult {
    let req = json_body(body)?;
    let set = metadata_of(&req)?;
    let removed: Vec<String> = req["metadata"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    with_bucket(shared, bucket, |p, bucket| {
        let b = p
            .storage
            .buckets
            .get_mut(bucket)
            .ok_or_else(StorageError::no_bucket)?;
        let o = live(&b.objects, bucket, name, q)?;
        check_preconditions(q, Some((o.generation, o.metageneration)), Access::Write)?;
        let mut o = o.clone();
        o.metadata.extend(set);
        for k in &removed {
            o.metadata.remove(k);
        }
        if let Some(t) = req["contentType"].as_str() {
            o.content_type = t.to_string();
        }
        o.metageneration += 1;
        o.updated = SystemTime::now();
        let out = to_json(bucket, &o, base);
        b.objects.insert(name.to_string(), o);
        Ok(Json(out).into_response())
    })
}

/// `GET /storage/v1/b/{bucket}/o`: names in lexicographic order after
/// `startOffset` and before `endOffset`, under `prefix`; with a `delimiter`,
/// the names below it fold into `prefixes`. `maxResults` (default and cap 1000)
/// counts items and prefixes together; `pageToken` is opaque (the last name the
/// previous page covered).
pub(super) fn list(shared: &Shared, bucket: &str, q: &Params, base: &str) -> StorageResult {
    let prefix = q.get("prefix").unwrap_or("");
    let delimiter = q.get("delimiter").filter(|d| !d.is_empty());
    let max = q.int("maxResults")?.unwrap_or(1000).clamp(1, 1000) as usize;
    let after = match q.get("pageToken") {
        Some(t) => Some(
            crate::b64::decode(t)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| StorageError::invalid("Invalid page token."))?,
        ),
        None => None,
    };
    let start = q.get("startOffset");
    let end = q.get("endOffset").filter(|e| !e.is_empty());
    with_bucket(shared, bucket, |p, bucket| {
        let b = &p.storage.buckets[bucket];
        let mut names = b
            .objects
            .keys()
            .filter(|n| n.starts_with(prefix))
            .filter(|n| after.as_deref().is_none_or(|a| n.as_str() > a))
            .filter(|n| start.is_none_or(|s| n.as_str() >= s))
            .filter(|n| end.is_none_or(|e| n.as_str() < e))
            .peekable();
        let mut items = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        while items.len() + prefixes.len() < max {
            let Some(n) = names.next() else { break };
            let folded = delimiter.and_then(|d| {
                n[prefix.len()..]
                    .find(d)
                    .map(|i| n[..prefix.len() + i + d.len()].to_string())
            });
            cursor = Some(n.clone());
            match folded {
                Some(pre) => {
                    // Every name under this prefix is covered by it.
                    while let Some(next) = names.peek() {
                        if !next.starts_with(&pre) {
                            break;
                        }
                        cursor = names.next().cloned();
                    }
                    prefixes.push(pre);
                }
                None => items.push(to_json(bucket, &b.objects[n], base)),
            }
        }
        let mut out = json!({"kind": "storage#objects"});
        if names.peek().is_some()
            && let Some(c) = cursor
        {
            out["nextPageToken"] = json!(crate::b64::encode(c.as_bytes()));
        }
        if !items.is_empty() {
            out["items"] = json!(items);
        }
        if !prefixes.is_empty() {
            out["prefixes"] = json!(prefixes);
        }
        Ok(Json(out).into_response())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_as_googles_clients_send_them() {
        let body = b"--===============7330845974216740156==\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{\"name\": \"a/b.json\", \"contentType\": \"text/plain\"}\r\n--===============7330845974216740156==\r\ncontent-type: text/plain\r\n\r\nhello\r\n--x\r\n--===============7330845974216740156==--";
        let (meta, data, t) = parse_multipart(
            "multipart/related; boundary=\"===============7330845974216740156==\"",
            body,
        )
        .unwrap();
        assert_eq!(meta["name"], "a/b.json");
        assert_eq!(data, b"hello\r\n--x");
        assert_eq!(t.as_deref(), Some("text/plain"));
        assert!(parse_multipart("multipart/related", body).is_err());
        assert!(parse_multipart("multipart/related; boundary=zz", body).is_err());
    }

    #[test]
    fn object_names_follow_googles_rules() {
        assert!(check_name("state/app.json").is_ok());
        for bad in ["", ".", "..", "a\nb", ".well-known/acme-challenge/x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&"x".repeat(1025)).is_err());
    }
}
