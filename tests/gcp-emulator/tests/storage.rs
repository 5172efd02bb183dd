//! Cloud Storage over HTTP: uploads (media and multipart), downloads, metadata,
//! listing with prefix/delimiter/pages, deletes, the generation preconditions
//! with Google's 412 and 304, 404s, IAM and fault injection.

use gcp_emulator::{Config, Emulator};
use serde_json::{Value, json};

const P: &str = "demo-project";
const PRECONDITION: &str = "At least one of the pre-conditions you specified did not hold.";

struct T {
    emu: Emulator,
    http: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
    fn header(&self, k: &str) -> &str {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl T {
    async fn new() -> T {
        let t = T {
            emu: Emulator::start(Config::default()).await.unwrap(),
            http: reqwest::Client::new(),
        };
        let r = t
            .send(
                "POST",
                &format!("storage/v1/b?project={P}"),
                Some(("application/json", br#"{"name":"bkt","iamConfiguration":{"uniformBucketLevelAccess":{"enabled":true},"publicAccessPrevention":"enforced"}}"#.to_vec())),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json());
        t
    }

    async fn send(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Reply {
        let url = format!("{}{}", self.emu.base_url(), path);
        let mut r = self.http.request(method.parse().unwrap(), url);
        if let Some((t, b)) = body {
            r = r.header("content-type", t).body(b);
        }
        let resp = r.send().await.unwrap();
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            bytes: resp.bytes().await.unwrap().to_vec(),
        }
    }

    /// A media upload of `data` to `name` with extra query parameters.
    async fn put(&self, name: &str, data: &[u8], extra: &str) -> Reply {
        self.send(
            "POST",
            &format!("upload/storage/v1/b/bkt/o?uploadType=media&name={name}{extra}"),
            Some(("text/plain", data.to_vec())),
        )
        .await
    }

    async fn generation(&self, name: &str) -> u64 {
        let r = self
            .send("GET", &format!("storage/v1/b/bkt/o/{name}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.json());
        r.json()["generation"].as_str().unwrap().parse().unwrap()
    }
}

fn assert_412(r: &Reply) {
    assert_eq!(r.status, 412);
    let b = r.json();
    assert_eq!(b["error"]["code"], 412);
    assert_eq!(b["error"]["message"], PRECONDITION);
    assert_eq!(b["error"]["errors"][0]["reason"], "conditionNotMet");
    assert_eq!(b["error"]["errors"][0]["domain"], "global");
    assert_eq!(b["error"]["errors"][0]["locationType"], "header");
    assert!(b["error"].get("status").is_none(), "{b}");
}

#[tokio::test]
async fn upload_download_metadata_and_generations() {
    let t = T::new().await;
    let r = t.put("state%2Fa.json", b"one", "").await;
    assert_eq!(r.status, 200, "{}", r.json());
    let o = r.json();
    assert_eq!(o["name"], "state/a.json");
    assert_eq!(o["bucket"], "bkt");
    assert_eq!(o["size"], "3");
    assert_eq!(o["metageneration"], "1");
    assert_eq!(o["contentType"], "text/plain");
    let g1: u64 = o["generation"].as_str().unwrap().parse().unwrap();

    let r = t
        .send("GET", "storage/v1/b/bkt/o/state%2Fa.json?alt=media", None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes, b"one");
    assert_eq!(r.header("x-goog-generation"), g1.to_string());
    assert_eq!(r.header("x-goog-metageneration"), "1");
    assert_eq!(
        r.header("x-goog-hash"),
        format!("crc32c={}", o["crc32c"].as_str().unwrap())
    );
    // The mediaLink points back at the emulator (download service).
    let link = o["mediaLink"].as_str().unwrap();
    assert!(link.starts_with(&t.emu.base_url()), "{link}");
    let r = t
        .send("GET", link.trim_start_matches(&t.emu.base_url()), None)
        .await;
    assert_eq!((r.status, r.bytes.as_slice()), (200, &b"one"[..]));

    // A second write is a new generation; the old one is gone (no versioning).
    let r = t.put("state%2Fa.json", b"two", "").await;
    let g2: u64 = r.json()["generation"].as_str().unwrap().parse().unwrap();
    assert!(g2 > g1);
    let r = t
        .send(
            "GET",
            &format!("storage/v1/b/bkt/o/state%2Fa.json?generation={g1}"),
            None,
        )
        .await;
    assert_eq!(r.status, 404);

    // A metadata patch bumps the metageneration, not the generation.
    let r = t
        .send(
            "PATCH",
            "storage/v1/b/bkt/o/state%2Fa.json",
            Some((
                "application/json",
                br#"{"metadata":{"holder":"x"}}"#.to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["metageneration"], "2");
    assert_eq!(r.json()["metadata"]["holder"], "x");
    assert_eq!(t.generation("state%2Fa.json").await, g2);
}

#[tokio::test]
async fn multipart_upload_checks_the_declared_crc32c() {
    let t = T::new().await;
    let body = |meta: &str| {
        format!("--b0undary\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--b0undary\r\ncontent-type: application/octet-stream\r\n\r\nhello\r\n--b0undary--").into_bytes()
    };
    let path = "upload/storage/v1/b/bkt/o?uploadType=multipart";
    let ct = "multipart/related; boundary=b0undary";
    // "hello": crc32c 0x9a71bb4c.
    let r = t
        .send(
            "POST",
            path,
            Some((ct, body(r#"{"name":"m","crc32c":"mnG7TA=="}"#))),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["contentType"], "application/octet-stream");
    let r = t
        .send(
            "POST",
            path,
            Some((ct, body(r#"{"name":"m","crc32c":"AAAAAA=="}"#))),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.json());
    // The metadata part is an Object resource: unknown fields are refused.
    let r = t
        .send("POST", path, Some((ct, body(r#"{"name":"m","bogus":1}"#))))
        .await;
    assert_eq!(r.status, 400, "{}", r.json());
    // A JSON-API POST without an upload is refused as Google refuses it.
    let r = t
        .send(
            "POST",
            "storage/v1/b/bkt/o",
            Some(("application/json", b"{}".to_vec())),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn preconditions_answer_412_and_304_as_google_does() {
    let t = T::new().await;
    // Create-only: the first wins, the second is 412.
    assert_eq!(
        t.put("lease", b"a", "&ifGenerationMatch=0").await.status,
        200
    );
    assert_412(&t.put("lease", b"b", "&ifGenerationMatch=0").await);
    let g = t.generation("lease").await;
    // Replace by generation: the matching one wins, a stale one is 412.
    let r = t
        .put("lease", b"c", &format!("&ifGenerationMatch={g}"))
        .await;
    assert_eq!(r.status, 200);
    assert_412(
        &t.put("lease", b"d", &format!("&ifGenerationMatch={g}"))
            .await,
    );
    let g2 = t.generation("lease").await;
    // A non-zero generation of an object that does not exist: 412 on insert.
    assert_412(&t.put("nothing", b"x", "&ifGenerationMatch=5").await);
    // NotMatch on a write is 412, on a read 304 with no body.
    assert_412(
        &t.put("lease", b"e", &format!("&ifGenerationNotMatch={g2}"))
            .await,
    );
    let r = t
        .send(
            "GET",
            &format!("storage/v1/b/bkt/o/lease?ifGenerationNotMatch={g2}"),
            None,
        )
        .await;
    assert_eq!((r.status, r.bytes.len()), (304, 0));
    let r = t
        .send(
            "GET",
            "storage/v1/b/bkt/o/lease?alt=media&ifMetagenerationNotMatch=1",
            None,
        )
        .await;
    assert_eq!(r.status, 304);
    let r = t
        .send(
            "GET",
            "storage/v1/b/bkt/o/lease?alt=media&ifGenerationMatch=1",
            None,
        )
        .await;
    assert_412(&r);
    // Metageneration preconditions on patch.
    let t = &t;
    let patch = |mg: u64| async move {
        t.send(
            "PATCH",
            &format!("storage/v1/b/bkt/o/lease?ifMetagenerationMatch={mg}"),
            Some(("application/json", br#"{"metadata":{"k":"v"}}"#.to_vec())),
        )
        .await
    };
    assert_eq!(patch(1).await.status, 200);
    assert_412(&patch(1).await);
    // Delete by generation: stale is 412, current deletes, then 404.
    let r = t
        .send(
            "DELETE",
            &format!("storage/v1/b/bkt/o/lease?ifGenerationMatch={g}"),
            None,
        )
        .await;
    assert_412(&r);
    let r = t
        .send(
            "DELETE",
            &format!("storage/v1/b/bkt/o/lease?ifGenerationMatch={g2}"),
            None,
        )
        .await;
    assert_eq!((r.status, r.bytes.len()), (204, 0));
    let r = t.send("DELETE", "storage/v1/b/bkt/o/lease", None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn not_found_in_googles_shape() {
    let t = T::new().await;
    let r = t.send("GET", "storage/v1/b/bkt/o/missing", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "No such object: bkt/missing");
    assert_eq!(r.json()["error"]["errors"][0]["reason"], "notFound");
    // 404 comes before any precondition on a read or delete.
    let r = t
        .send(
            "GET",
            "storage/v1/b/bkt/o/missing?ifGenerationMatch=3",
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = t.send("GET", "storage/v1/b/nobucket/o/x", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"]["message"],
        "The specified bucket does not exist."
    );
    let r = t.send("GET", "storage/v1/b/nobucket", None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn list_by_prefix_delimiter_and_pages() {
    let t = T::new().await;
    for n in [
        "a%2F1",
        "a%2F2",
        "a%2Fsub%2F3",
        "a%2Fsub%2F4",
        "b%2F1",
        "top",
    ] {
        assert_eq!(t.put(n, b"x", "").await.status, 200);
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| o["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let r = t.send("GET", "storage/v1/b/bkt/o?prefix=a%2F", None).await;
    assert_eq!(names(&r.json()), ["a/1", "a/2", "a/sub/3", "a/sub/4"]);
    let r = t
        .send("GET", "storage/v1/b/bkt/o?prefix=a%2F&delimiter=%2F", None)
        .await;
    assert_eq!(names(&r.json()), ["a/1", "a/2"]);
    assert_eq!(r.json()["prefixes"], json!(["a/sub/"]));
    let r = t.send("GET", "storage/v1/b/bkt/o?prefix=zzz", None).await;
    assert_eq!(r.status, 200);
    assert!(r.json().get("items").is_none());
    // Pages of two, every name once, in order.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let mut path = "storage/v1/b/bkt/o?maxResults=2".to_string();
        if let Some(tok) = &token {
            path.push_str(&format!("&pageToken={}", urlencode(tok)));
        }
        let v = t.send("GET", &path, None).await.json();
        seen.extend(names(&v));
        token = v["nextPageToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["a/1", "a/2", "a/sub/3", "a/sub/4", "b/1", "top"]);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bucket_settings_policy_and_permissions() {
    let t = T::new().await;
    let b = t.send("GET", "storage/v1/b/bkt", None).await.json();
    assert_eq!(
        b["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"],
        true
    );
    assert_eq!(b["iamConfiguration"]["publicAccessPrevention"], "enforced");
    assert_eq!(b["projectNumber"], "123456789012");
    let pol = t.send("GET", "storage/v1/b/bkt/iam", None).await.json();
    assert_eq!(pol["resourceId"], "projects/_/buckets/bkt");
    // Public members are refused while public access prevention is enforced.
    let public =
        json!({"bindings": [{"role": "roles/storage.objectViewer", "members": ["allUsers"]}]});
    let r = t
        .send(
            "PUT",
            "storage/v1/b/bkt/iam",
            Some(("application/json", public.to_string().into_bytes())),
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.json());
    // A bucket name is taken once.
    let r = t
        .send(
            "POST",
            &format!("storage/v1/b?project={P}"),
            Some(("application/json", br#"{"name":"bkt"}"#.to_vec())),
        )
        .await;
    assert_eq!(r.status, 409);
    // testIamPermissions answers from the caller's permissions.
    let (s, _) = grant(&t, json!({"permissions": ["storage.objects.get"]})).await;
    assert_eq!(s, 204);
    let r = t
        .send("GET", "storage/v1/b/bkt/iam/testPermissions?permissions=storage.objects.get&permissions=storage.objects.create", None)
        .await;
    assert_eq!(r.json()["permissions"], json!(["storage.objects.get"]));
}

async fn grant(t: &T, body: Value) -> (u16, Value) {
    let r = t
        .send(
            "POST",
            "emulator/iam/granted",
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await;
    (r.status, r.json())
}

#[tokio::test]
async fn iam_is_checked_and_an_overwrite_needs_delete() {
    let t = T::new().await;
    assert_eq!(t.put("x", b"1", "").await.status, 200);
    assert_eq!(
        t.send("DELETE", "emulator/iam/checked", None).await.status,
        204
    );
    grant(
        &t,
        json!({"permissions": ["storage.objects.create", "storage.objects.get"]}),
    )
    .await;
    // Creating a new object: create is enough.
    assert_eq!(t.put("y", b"1", "").await.status, 200);
    // Replacing one also needs delete.
    let r = t.put("x", b"2", "").await;
    assert_eq!(r.status, 403, "{}", r.json());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("storage.objects.delete")
    );
    let r = t.send("GET", "storage/v1/b/bkt/o", None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["errors"][0]["reason"], "forbidden");
    let r = t.send("GET", "emulator/iam/checked", None).await.json();
    assert_eq!(
        r,
        json!([
            "storage.objects.create",
            "storage.objects.delete",
            "storage.objects.list"
        ])
    );
}

#[tokio::test]
async fn faults_apply_by_method_id() {
    let t = T::new().await;
    let rule = json!({"method": "storage.objects.insert", "count": 1, "status": 412});
    let r = t
        .send(
            "POST",
            "emulator/faults",
            Some(("application/json", rule.to_string().into_bytes())),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = t.put("f", b"1", "").await;
    assert_eq!(r.status, 412);
    assert_eq!(r.json()["error"]["message"], PRECONDITION);
    assert_eq!(t.put("f", b"1", "").await.status, 200);
    let log = t.send("GET", "emulator/requests", None).await.json();
    let ids: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(
        ids.iter()
            .filter(|i| **i == "storage.objects.insert")
            .count()
            >= 2,
        "{ids:?}"
    );
}

#[tokio::test]
async fn media_paths_resolve_to_their_methods_and_get_the_latency_model() {
    let t = T::new().await;
    let model = json!({"profile": "none", "call_ms": 3, "call_jitter_ms": 0});
    let r = t
        .send(
            "POST",
            "emulator/latency",
            Some(("application/json", model.to_string().into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(
        t.send("DELETE", "emulator/requests", None).await.status,
        204
    );
    assert_eq!(t.put("m", b"1", "").await.status, 200);
    let r = t
        .send("GET", "download/storage/v1/b/bkt/o/m?alt=media", None)
        .await;
    assert_eq!((r.status, r.bytes.as_slice()), (200, &b"1"[..]));
    assert_eq!(
        t.send("GET", "storage/v1/b/bkt/o?prefix=m", None)
            .await
            .status,
        200
    );
    assert_eq!(
        t.send("DELETE", "storage/v1/b/bkt/o/m", None).await.status,
        204
    );
    let log = t.send("GET", "emulator/requests", None).await.json();
    let seen: Vec<(String, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap_or("-").to_string(),
                e["latency_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("storage.objects.insert".to_string(), 3),
            ("storage.objects.get".to_string(), 3),
            ("storage.objects.list".to_string(), 3),
            ("storage.objects.delete".to_string(), 3),
        ]
    );
}

#[tokio::test]
async fn a_disabled_api_answers_403_access_not_configured() {
    let t = T::new().await;
    let off = json!({"api": "storage.googleapis.com", "enabled": false});
    let r = t
        .send(
            "POST",
            "emulator/apis",
            Some(("application/json", off.to_string().into_bytes())),
        )
        .await;
    assert!(r.status < 300, "{}", r.json());
    for path in [
        "storage/v1/b/bkt/o/x",
        "upload/storage/v1/b/bkt/o?uploadType=media&name=x",
    ] {
        let method = if path.starts_with("upload") {
            "POST"
        } else {
            "GET"
        };
        let r = t
            .send(method, path, Some(("text/plain", b"x".to_vec())))
            .await;
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(
            r.json()["error"]["errors"][0]["reason"],
            "accessNotConfigured",
            "{path}"
        );
    }
}
