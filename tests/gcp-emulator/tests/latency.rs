//! The latency model (`--latency-profile`, `POST /emulator/latency`): each knob
//! takes effect. Assertions are on what the APIs report (operation status
//! sequences and their timestamps, the request log, the name servers' answers in
//! order), never on how long the test took.

use std::net::SocketAddr;
use std::time::Duration;

use gcp_emulator::latency::LatencyModel;
use gcp_emulator::{Config, Emulator};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::{Value, json};

const P: &str = "demo-project";

async fn call(emu: &Emulator, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut r = c.request(
        method.parse().unwrap(),
        format!("{}{}", emu.base_url(), path),
    );
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

async fn latency(emu: &Emulator, body: Value) -> Value {
    let (s, v) = call(emu, "POST", "emulator/latency", Some(body)).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Milliseconds between two of Compute's RFC 3339 timestamps.
fn millis_between(a: &str, b: &str) -> i64 {
    let f = &time::format_description::well_known::Rfc3339;
    let a = time::OffsetDateTime::parse(a, f).unwrap();
    let b = time::OffsetDateTime::parse(b, f).unwrap();
    (b - a).whole_milliseconds() as i64
}

/// Reads the operation until DONE (long-polls with `wait`), returning every
/// status seen, first the one the mutation itself returned.
async fn statuses(emu: &Emulator, op: &Value) -> (Vec<String>, Value) {
    let link = op["selfLink"].as_str().unwrap();
    let path = format!("compute/v1/{}", link.split("/compute/v1/").nth(1).unwrap());
    let mut seen = vec![op["status"].as_str().unwrap().to_string()];
    let mut last = op.clone();
    for _ in 0..50 {
        if last["status"] == "DONE" {
            return (seen, last);
        }
        let (s, v) = call(emu, "GET", &path, None).await;
        assert_eq!(s, 200, "{v}");
        seen.push(v["status"].as_str().unwrap().to_string());
        if v["status"] != "DONE" {
            let (s, w) = call(emu, "POST", &format!("{path}/wait"), None).await;
            assert_eq!(s, 200, "{w}");
            seen.push(w["status"].as_str().unwrap().to_string());
            last = w;
        } else {
            last = v;
        }
    }
    panic!("operation never finished: {op}");
}

fn assert_status_order(seen: &[String]) {
    let rank = |s: &str| match s {
        "PENDING" => 0,
        "RUNNING" => 1,
        "DONE" => 2,
        other => panic!("unknown status {other}"),
    };
    assert_eq!(
        seen.first().map(String::as_str),
        Some("PENDING"),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("DONE"), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "statuses go backwards: {seen:?}"
    );
}

#[tokio::test]
async fn operation_duration_per_kind() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let m = latency(
        &emu,
        json!({"operation_ms": {"insert": 1200, "default": 700}}),
    )
    .await;
    assert_eq!(m["profile"], "custom");

    let (s, op) = call(
        &emu,
        "POST",
        &format!("compute/v1/projects/{P}/global/addresses"),
        Some(json!({"name": "ip-1"})),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(op["operationType"], "insert");
    let (seen, done) = statuses(&emu, &op).await;
    assert_status_order(&seen);
    let took = millis_between(
        done["insertTime"].as_str().unwrap(),
        done["endTime"].as_str().unwrap(),
    );
    assert!(
        (1199..=1201).contains(&took),
        "insert took {took} ms: {done}"
    );

    // `delete` is not named: the model's `default`.
    let (s, op) = call(
        &emu,
        "DELETE",
        &format!("compute/v1/projects/{P}/global/addresses/ip-1"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{op}");
    let (seen, done) = statuses(&emu, &op).await;
    assert_status_order(&seen);
    let took = millis_between(
        done["insertTime"].as_str().unwrap(),
        done["endTime"].as_str().unwrap(),
    );
    assert!((699..=701).contains(&took), "delete took {took} ms: {done}");

    // Off again: the configured 30 ms.
    let (s, v) = call(
        &emu,
        "POST",
        "emulator/latency",
        Some(json!({"profile": "none"})),
    )
    .await;
    assert_eq!((s, v), (200, Value::Null));
    let (_, op) = call(
        &emu,
        "POST",
        &format!("compute/v1/projects/{P}/global/addresses"),
        Some(json!({"name": "ip-2"})),
    )
    .await;
    let (_, done) = statuses(&emu, &op).await;
    let took = millis_between(
        done["insertTime"].as_str().unwrap(),
        done["endTime"].as_str().unwrap(),
    );
    assert!((29..=31).contains(&took), "insert took {took} ms: {done}");
}

#[tokio::test]
async fn per_call_latency_is_seeded_and_logged() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let path = format!("compute/v1/projects/{P}/global/addresses");
    let mut runs = Vec::new();
    for seed in [5, 5, 6] {
        latency(
            &emu,
            json!({"call_ms": 20, "call_jitter_ms": 30, "seed": seed}),
        )
        .await;
        call(&emu, "DELETE", "emulator/requests", None).await;
        for _ in 0..12 {
            let (s, v) = call(&emu, "GET", &path, None).await;
            assert_eq!(s, 200, "{v}");
        }
        let (_, log) = call(&emu, "GET", "emulator/requests", None).await;
        let ms: Vec<u64> = log
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["latency_ms"].as_u64().unwrap())
            .collect();
        assert_eq!(ms.len(), 12, "{log}");
        assert!(ms.iter().all(|m| (20..=50).contains(m)), "{ms:?}");
        runs.push(ms);
    }
    // Same seed, same sequence; the jitter is not constant; another seed differs.
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].iter().min() < runs[0].iter().max(), "{:?}", runs[0]);
    assert_ne!(runs[0], runs[2]);
    // What the sequence is: the model's own draw, in request order.
    let model = LatencyModel {
        call_ms: 20,
        call_jitter_ms: 30,
        seed: 5,
        ..Default::default()
    };
    let want: Vec<u64> = (0..12)
        .map(|n| model.call_latency(n).as_millis() as u64)
        .collect();
    assert_eq!(runs[0], want);

    // Without a model nothing is added.
    latency(&emu, json!({"profile": "none"})).await;
    call(&emu, "DELETE", "emulator/requests", None).await;
    call(&emu, "GET", &path, None).await;
    let (_, log) = call(&emu, "GET", "emulator/requests", None).await;
    assert_eq!(log[0]["latency_ms"], 0, "{log}");
}

#[tokio::test]
async fn cloud_run_operations_take_the_run_duration() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let run = format!("v2/projects/{P}/locations/us-central1/services");
    // Ten minutes: no test run lasts that long, so the operation cannot be done.
    latency(&emu, json!({"operation_ms": {"run": 600000}})).await;
    let (s, op) = call(
        &emu,
        "POST",
        &format!("{run}?serviceId=slow"),
        Some(json!({"template": {"containers": [{"image": "gcr.io/x/app"}]}})),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    let slow = op["name"].as_str().unwrap().to_string();
    let (s, w) = call(
        &emu,
        "POST",
        &format!("v2/{slow}:wait"),
        Some(json!({"timeout": "1s"})),
    )
    .await;
    assert_eq!(s, 200, "{w}");
    assert_ne!(w["done"], true, "{w}");

    latency(&emu, json!({"operation_ms": {"run": 0}})).await;
    let (s, op) = call(
        &emu,
        "POST",
        &format!("{run}?serviceId=fast"),
        Some(json!({"template": {"containers": [{"image": "gcr.io/x/app"}]}})),
    )
    .await;
    assert_eq!(s, 200, "{op}");
    let name = op["name"].as_str().unwrap();
    let (_, w) = call(
        &emu,
        "POST",
        &format!("v2/{name}:wait"),
        Some(json!({"timeout": "60s"})),
    )
    .await;
    assert_eq!(w["done"], true, "{w}");
    // The first is still running: its duration was fixed when it started.
    let (s, g) = call(&emu, "GET", &format!("v2/{slow}"), None).await;
    assert_eq!(s, 200, "{g}");
    assert_ne!(g["done"], true, "{g}");
}

async fn udp_txt(addr: SocketAddr, name: &str) -> Vec<String> {
    let mut m = Message::query();
    m.add_query(Query::query(
        Name::from_ascii(name).unwrap(),
        RecordType::TXT,
    ));
    let bytes = m.to_vec().unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("UDP answer in time")
        .unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    r.answers
        .iter()
        .filter(|a| a.record_type() == RecordType::TXT)
        .map(|a| format!("{a}"))
        .collect()
}

#[tokio::test]
async fn dns_change_duration_and_per_server_lag() {
    let emu = Emulator::start(Config {
        dns_servers: 3,
        ..Config::default()
    })
    .await
    .unwrap();
    // Three servers, two lags given: the third takes the last one.
    latency(
        &emu,
        json!({"dns_change_ms": 1500, "dns_lags_ms": [0, 3000]}),
    )
    .await;
    let (_, lags) = call(&emu, "POST", "emulator/dns/lag", Some(json!({}))).await;
    assert_eq!(lags["lags_ms"], json!([0, 3000, 3000]));

    let dns = format!("dns/v1/projects/{P}/managedZones");
    let (s, z) = call(
        &emu,
        "POST",
        &dns,
        Some(json!({"name": "z", "dnsName": "example.test.", "description": ""})),
    )
    .await;
    assert_eq!(s, 200, "{z}");
    let (s, ch) = call(
        &emu,
        "POST",
        &format!("{dns}/z/changes"),
        Some(
            json!({"additions": [{"name": "_acme-challenge.example.test.", "type": "TXT",
                                    "ttl": 60, "rrdatas": ["\"token\""]}]}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{ch}");
    let id = ch["id"].as_str().unwrap();

    // Poll the change and the three servers together until all agree.
    let addrs = emu.dns_addrs();
    let mut change_seen = vec![ch["status"].as_str().unwrap().to_string()];
    let mut answers: Vec<Vec<bool>> = vec![Vec::new(); addrs.len()];
    for _ in 0..400 {
        let (_, c) = call(&emu, "GET", &format!("{dns}/z/changes/{id}"), None).await;
        change_seen.push(c["status"].as_str().unwrap().to_string());
        for (i, a) in addrs.iter().enumerate() {
            let txt = udp_txt(*a, "_acme-challenge.example.test.").await;
            answers[i].push(!txt.is_empty());
        }
        if answers.iter().all(|a| a.last() == Some(&true))
            && change_seen.last().map(String::as_str) == Some("done")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The change: pending, then done, never back.
    assert_eq!(change_seen[0], "pending", "{change_seen:?}");
    assert_eq!(change_seen.last().unwrap(), "done", "{change_seen:?}");
    let first_done = change_seen.iter().position(|s| s == "done").unwrap();
    assert!(change_seen[first_done..].iter().all(|s| s == "done"));
    // Each server: absent, then present, never back.
    let first: Vec<usize> = answers
        .iter()
        .map(|a| {
            let f = a.iter().position(|x| *x).expect("every server sees it");
            assert!(a[f..].iter().all(|x| *x), "{a:?}");
            f
        })
        .collect();
    // The lag-free server answers first; the lagging ones only later.
    assert!(first[0] < first[1] && first[0] < first[2], "{first:?}");
    assert!(!answers[1][0] && !answers[2][0], "{answers:?}");
}

#[tokio::test]
async fn profiles_from_config_and_admin_and_bad_input() {
    let google = LatencyModel::profile("google").unwrap().unwrap();
    let emu = Emulator::start(Config {
        dns_servers: 4,
        latency: Some(LatencyModel {
            seed: 9,
            ..google.clone()
        }),
        ..Config::default()
    })
    .await
    .unwrap();
    let (_, m) = call(&emu, "GET", "emulator/latency", None).await;
    assert_eq!(m["profile"], "google");
    assert_eq!(m["seed"], 9);
    let (_, lags) = call(&emu, "POST", "emulator/dns/lag", Some(json!({}))).await;
    assert_eq!(lags["lags_ms"], json!(google.dns_lags_ms));

    // A figure overrides the model in force, keeping the rest.
    let m = latency(&emu, json!({"call_ms": 1})).await;
    assert_eq!(m["call_ms"], 1);
    assert_eq!(m["profile"], "google");
    assert_eq!(m["dns_change_ms"], google.dns_change_ms);

    let (s, v) = call(
        &emu,
        "POST",
        "emulator/latency",
        Some(json!({"profile": "aws"})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v.as_str().unwrap().contains("unknown latency profile"),
        "{v}"
    );
    let (s, v) = call(
        &emu,
        "POST",
        "emulator/latency",
        Some(json!({"dns_change_ms": 10_000_000})),
    )
    .await;
    assert_eq!(s, 400);
    assert!(v.as_str().unwrap().contains("dns_change_ms"), "{v}");
    let (s, _) = call(&emu, "POST", "emulator/latency", Some(json!({"bogus": 1}))).await;
    assert_eq!(s, 422);
    // Refused input changed nothing.
    let (_, m) = call(&emu, "GET", "emulator/latency", None).await;
    assert_eq!(m["call_ms"], 1);
}

#[tokio::test]
async fn iap_writes_are_held_and_reads_are_not() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let res = "v1/projects/demo-project/iap_web/compute/services/bs-app";
    latency(&emu, json!({"operation_ms": {"iap": 250}})).await;
    call(&emu, "DELETE", "emulator/requests", None).await;
    let (s, p) = call(
        &emu,
        "POST",
        &format!("{res}:getIamPolicy"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let (s, p) = call(
        &emu,
        "POST",
        &format!("{res}:setIamPolicy"),
        Some(json!({"policy": {"etag": p["etag"], "bindings": [
            {"role": "roles/iap.httpsResourceAccessor", "members": ["user:a@example.com"]}]}})),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    let (_, log) = call(&emu, "GET", "emulator/requests", None).await;
    let held: Vec<(String, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_string(),
                r["latency_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        held,
        vec![
            ("iap.getIamPolicy".to_string(), 0),
            ("iap.setIamPolicy".to_string(), 250)
        ]
    );
}

#[tokio::test]
async fn command_line_flags_set_the_profile_and_seed() {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_gcp-emulator");
    let bad = std::process::Command::new(bin)
        .args(["--latency-profile", "aws"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("unknown latency profile \"aws\""), "{err}");

    let mut child = std::process::Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--dns-listen",
            "127.0.0.1:0",
            "--dns-servers",
            "4",
            "--latency-profile",
            "google",
            "--seed",
            "3",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let http = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let got: Value = reqwest::get(format!("http://{http}/emulator/latency"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lags: Value = reqwest::Client::new()
        .post(format!("http://{http}/emulator/dns/lag"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let want = LatencyModel {
        seed: 3,
        ..LatencyModel::profile("google").unwrap().unwrap()
    };
    assert_eq!(got, serde_json::to_value(&want).unwrap());
    assert_eq!(lags["lags_ms"], json!(want.dns_lags_ms));
}
