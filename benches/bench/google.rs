//! `--only google`: gclb-acme under the emulator's `google` latency profile (Google's
//! round trips, operation durations, Cloud DNS change and propagation times), where
//! what matters is the critical path and the number of calls.
//!
//! - one forced renewal (release binary, `--log-format json -v`): wall time, the
//!   phase timeline (from the binary's timestamped log lines and the emulator's
//!   request log, both in Unix milliseconds), Google calls by method, and the
//!   model's lower bound (the waits that cannot overlap) with the ratio;
//! - `--google-certs N` certificates from nothing at the default concurrency:
//!   wall time, calls by method and the peak calls per minute of each quota group
//!   against Google's default quotas.

use std::collections::BTreeMap;
use std::time::SystemTime;

use gcp_emulator::latency::LatencyModel;
use serde_json::{Value, json};

use crate::support::lb::{Lab, NAMES};
use crate::{Args, lab, run_timed, scale_certs, scale_lab, write_config};

/// The `google` profile with the bench's seed. The lab runs two name servers
/// (Google runs four): they get the profile's fastest and slowest lag, so the
/// slowest server, the one the renewal waits for, is the profile's.
fn model(seed: u64) -> LatencyModel {
    let mut m = LatencyModel::profile("google")
        .expect("known profile")
        .expect("a model");
    m.seed = seed;
    let first = *m.dns_lags_ms.first().expect("lags");
    let last = *m.dns_lags_ms.last().expect("lags");
    m.dns_lags_ms = vec![first, last];
    m
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// `(unix ms, message, fields)` of each JSON log line.
fn log_lines(text: &str) -> Vec<(f64, String, Value)> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let ts = v.get("timestamp")?.as_str()?;
            let t = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                .ok()?;
            let fields = v.get("fields").cloned().unwrap_or(v.clone());
            let msg = fields
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Some(((t.unix_timestamp_nanos() / 1_000_000) as f64, msg, fields))
        })
        .collect()
}

fn first_log(lines: &[(f64, String, Value)], f: impl Fn(&str, &Value) -> bool) -> Option<f64> {
    lines.iter().find(|(_, m, v)| f(m, v)).map(|(t, _, _)| *t)
}

fn calls_by_method(log: &[Value]) -> BTreeMap<String, u64> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for r in log {
        *by.entry(r["id"].as_str().unwrap_or("(no id)").to_string())
            .or_default() += 1;
    }
    by
}

/// The waits the model imposes that no client can overlap, in order.
fn lower_bound(m: &LatencyModel) -> (Vec<(String, u64)>, u64) {
    let op = |k: &str| m.operation(k).map_or(0, |d| d.as_millis() as u64);
    let lag = m.dns_lags_ms.iter().copied().max().unwrap_or(0);
    let parts = vec![
        (
            format!(
                "Cloud DNS change done and served by every name server: max(change {} ms, slowest lag {} ms; both count from the change)",
                m.dns_change_ms, lag
            ),
            m.dns_change_ms.max(lag),
        ),
        (
            "CA validation (Pebble with PEBBLE_VA_NOSLEEP: none)".to_string(),
            0,
        ),
        ("finalize (Pebble: issues at once)".to_string(), 0),
        ("sslCertificates.insert operation".to_string(), op("insert")),
        (
            "targetHttpsProxies.setSslCertificates operation".to_string(),
            op("setSslCertificates"),
        ),
        (
            format!(
                "round trips that must be sequential: changes.create, sslCertificates.insert, operations.wait, setSslCertificates, operations.wait (5 x {} ms, jitter excluded)",
                m.call_ms
            ),
            5 * m.call_ms,
        ),
    ];
    let total = parts.iter().map(|(_, v)| v).sum();
    (parts, total)
}

/// One forced renewal of wildcard + apex on one proxy.
async fn one_renewal(a: &Args, m: &LatencyModel) -> Value {
    let lab: Lab = lab().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    let cfg = lab.tmp.path().join("google-one.toml");
    write_config(
        &lab,
        &cfg,
        &[(
            "app".to_string(),
            [NAMES[0].to_string(), NAMES[1].to_string()],
            "p1".to_string(),
        )],
        "[daemon]\nmetrics_listen = \"\"\n",
    );
    let dir = lab.tmp.path().join("google-one");
    std::fs::create_dir_all(&dir).expect("dir");
    lab.cloud.emu.shared().set_latency(Some(m.clone()));
    lab.cloud.clear_requests().await;
    let env = [("GCE_METADATA_HOST", lab.metadata_host())];
    let cfg_s = cfg.to_string_lossy().into_owned();
    let t0 = unix_ms(SystemTime::now());
    let (ok, wall, _, out, err) = tokio::task::block_in_place(|| {
        run_timed(
            &a.bin,
            &env,
            &[
                "--log-format",
                "json",
                "-v",
                "--config",
                &cfg_s,
                "renew",
                "--force",
            ],
            &dir,
        )
    });
    let t_end = t0 + crate::ms(wall);
    std::fs::write(a.out.join("google-renew.log.json"), &err).expect("write log");
    assert!(ok, "renewal under the google profile failed:\n{out}\n{err}");
    lab.cloud.emu.shared().set_latency(None);
    let log = lab.cloud.requests().await;
    std::fs::write(
        a.out.join("google-renew.requests.json"),
        serde_json::to_string_pretty(&log).expect("json"),
    )
    .expect("write requests");

    let lines = log_lines(&err);
    // Queries to the name servers while waiting for propagation (not API calls).
    let dns_queries = lines
        .iter()
        .find(|(_, m, _)| m == "challenge records served by every authoritative name server")
        .and_then(|(_, _, v)| v.get("dns_queries").and_then(Value::as_u64));
    let at = |msg: &str| first_log(&lines, |m, _| m == msg);
    let req_start = |id: &str| {
        log.iter()
            .filter(|r| r["id"] == id)
            .filter_map(|r| r["start_unix_ms"].as_f64())
            .reduce(f64::min)
    };
    let plan = at("plan");
    let presenting = at("presenting DNS-01 records");
    // The present change, accepted (no longer polled to done).
    let change_done = at("Cloud DNS change accepted");
    let served = at("challenge records served by every authoritative name server");
    let ready = at("order ready");
    let issued = at("certificate issued and stored");
    let insert = req_start("compute.sslCertificates.insert");
    let set = req_start("compute.targetHttpsProxies.setSslCertificates");
    // The upload ends with the last operation read answered before the swap starts.
    let upload_end = set.and_then(|set| {
        log.iter()
            .filter(|r| r["id"].as_str().is_some_and(|i| i.contains("Operations.")))
            .filter_map(|r| r["end_unix_ms"].as_f64())
            .filter(|e| *e <= set)
            .reduce(f64::max)
    });
    let placed = first_log(&lines, |_, v| {
        v.get("new").is_some() && v.get("list").is_some()
    });
    let verified = first_log(&lines, |m, _| {
        m == "the load balancer serves the new certificate for every name"
            || m.starts_with("verification skipped")
    });
    let dns_cleanup_start = log
        .iter()
        .filter(|r| r["id"] == "dns.changes.create")
        .filter_map(|r| r["start_unix_ms"].as_f64())
        .nth(1);
    let dns_removed = at("DNS-01 records removed");
    let delete = req_start("compute.sslCertificates.delete");
    let deleted = at("deleted the superseded certificate");
    let rel = |t: Option<f64>| t.map(|t| (t - t0).round());
    let phase = |name: &str, s: Option<f64>, e: Option<f64>| {
        json!({
            "phase": name,
            "start_ms": rel(s),
            "end_ms": rel(e),
            "took_ms": s.zip(e).map(|(s, e)| (e - s).round()),
        })
    };
    let timeline = vec![
        phase(
            "start-up (config, token, ACME account, plan)",
            Some(t0),
            plan,
        ),
        phase("ACME order and authorizations", plan, presenting),
        phase(
            "Cloud DNS change (read, created, accepted)",
            presenting,
            change_done,
        ),
        phase(
            "propagation (every name server serves the TXT)",
            change_done,
            served,
        ),
        phase("CA validation (to order ready)", served, ready),
        phase("finalize and download", ready, issued),
        phase("upload (insert + its operation)", insert, upload_end),
        phase("swap (setSslCertificates + its operation)", set, placed),
        phase(
            "verify (TLS handshake per name, or the skip)",
            placed,
            verified,
        ),
        phase(
            "cleanup: TXT records removed",
            dns_cleanup_start,
            dns_removed,
        ),
        phase("cleanup: superseded certificate deleted", delete, deleted),
        phase("exit", deleted.or(verified), Some(t_end)),
    ];
    let (parts, bound) = lower_bound(m);
    let wall_ms = crate::ms(wall);
    json!({
        "what": "gclb-acme renew --force (the --bin binary) of wildcard + apex on one proxy, emulator under the google latency profile (2 name servers: the profile's fastest and slowest lag)",
        "wall_ms": wall_ms.round(),
        "calls": log.len(),
        "calls_by_method": calls_by_method(&log),
        "compute_reads": log
            .iter()
            .filter_map(|r| r["id"].as_str())
            .filter(|id| id.starts_with("compute.")
                && !id.contains("Operations.")
                && (id.ends_with(".get") || id.ends_with(".list")))
            .count(),
        "dns_changes": log.iter().filter(|r| r["id"] == "dns.changes.create").count(),
        "name_server_queries": dns_queries,
        "timeline": timeline,
        "lower_bound_ms": bound,
        "lower_bound_parts": parts.iter().map(|(k, v)| json!({"wait": k, "ms": v})).collect::<Vec<_>>(),
        "wall_over_bound": ((wall_ms / bound as f64) * 1000.0).round() / 1000.0,
        // The new certificate is served once the swap's operation is done; what
        // follows (verify, deleting the old one) is not on the users' path.
        "served_at_ms": rel(placed),
        "served_over_bound": placed.map(|p| (((p - t0) / bound as f64) * 1000.0).round() / 1000.0),
    })
}

/// Compute's default rate quotas (requests per minute per project) by group,
/// from Google's "Compute Engine rate quotas" page (docs/benchmarks.md cites it).
fn quota_group(id: &str) -> &'static str {
    if id.starts_with("dns.") {
        "Cloud DNS (all methods)"
    } else if id.contains("Operations.") {
        "Compute operation reads (get/wait)"
    } else if id.ends_with(".list") || id.ends_with(".aggregatedList") {
        "Compute list requests"
    } else if id.ends_with(".get") {
        "Compute read requests (*.get)"
    } else if id.starts_with("compute.") {
        "Compute queries (mutations)"
    } else {
        "other"
    }
}

/// The most calls of each quota group in any 60 s window (by arrival time).
fn peak_per_minute(log: &[Value]) -> BTreeMap<String, u64> {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in log {
        let g = quota_group(r["id"].as_str().unwrap_or(""));
        if let Some(t) = r["start_unix_ms"].as_f64() {
            by.entry(g.to_string()).or_default().push(t);
            by.entry("all Google calls".to_string())
                .or_default()
                .push(t);
        }
    }
    by.into_iter()
        .map(|(g, mut ts)| {
            ts.sort_by(f64::total_cmp);
            let mut best = 0;
            let mut lo = 0;
            for hi in 0..ts.len() {
                while ts[hi] - ts[lo] >= 60_000.0 {
                    lo += 1;
                }
                best = best.max(hi - lo + 1);
            }
            (g, best as u64)
        })
        .collect()
}

/// `n` certificates (two names each, each on its own proxy) at the default concurrency.
async fn many(a: &Args, m: &LatencyModel, n: usize) -> Value {
    let lab = scale_lab(n).await; // quotas raised: the rate, not the count, is measured
    let certs = scale_certs(n);
    let cfg = lab.tmp.path().join("google-many.toml");
    // No concurrency given: the default.
    write_config(&lab, &cfg, &certs, "[daemon]\nmetrics_listen = \"\"\n");
    let dir = lab.tmp.path().join("google-many");
    std::fs::create_dir_all(&dir).expect("dir");
    lab.cloud.emu.shared().set_latency(Some(m.clone()));
    lab.cloud.clear_requests().await;
    let env = [("GCE_METADATA_HOST", lab.metadata_host())];
    let cfg_s = cfg.to_string_lossy().into_owned();
    let (ok, wall, t, out, err) = tokio::task::block_in_place(|| {
        run_timed(&a.bin, &env, &["-q", "--config", &cfg_s, "renew"], &dir)
    });
    lab.cloud.emu.shared().set_latency(None);
    let log = lab.cloud.requests().await;
    let ours = lab
        .certificates()
        .await
        .iter()
        .filter(|c| c.as_str() != "placeholder")
        .count();
    if !ok {
        eprintln!(
            "google profile, {n} certificates: exit != 0:\n{}\n{}",
            out.lines().take(20).collect::<Vec<_>>().join("\n"),
            err.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    let (_, bound) = lower_bound(m);
    json!({
        "certificates": n,
        "concurrency": "default (4)",
        "exit_ok": ok,
        "served_certificates_of_ours": ours,
        "wall_s": (wall.as_secs_f64() * 10.0).round() / 10.0,
        "cpu_s": t.user + t.sys,
        "calls": log.len(),
        "calls_per_certificate": (log.len() as f64 / n as f64 * 10.0).round() / 10.0,
        "calls_by_method": calls_by_method(&log),
        "peak_calls_per_minute": peak_per_minute(&log),
        "google_default_quotas_per_minute": {
            "Compute queries (mutations)": 1500,
            "Compute read requests (*.get)": 1500,
        },
        "one_renewal_lower_bound_ms": bound,
        "ideal_wall_s_at_this_concurrency": ((n as f64 / 4.0).ceil() * bound as f64 / 1000.0).round(),
    })
}

/// A Markdown section for results.md.
pub fn markdown(g: &Value) -> String {
    let one = &g["one_renewal"];
    let mut md = format!(
        "\n## Under the `google` latency profile\n\nOne forced renewal: {} ms to exit, new certificate served at {} ms; \
         lower bound {} ms; exit/bound {}, served/bound {}; {} Google calls.\n\n| phase | start ms | end ms | took ms |\n|---|---|---|---|\n",
        one["wall_ms"],
        one["served_at_ms"],
        one["lower_bound_ms"],
        one["wall_over_bound"],
        one["served_over_bound"],
        one["calls"]
    );
    for p in one["timeline"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            p["phase"].as_str().unwrap_or(""),
            p["start_ms"],
            p["end_ms"],
            p["took_ms"]
        ));
    }
    md.push_str("\nLower bound:\n\n");
    for w in one["lower_bound_parts"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "- {} ms: {}\n",
            w["ms"],
            w["wait"].as_str().unwrap_or("")
        ));
    }
    md.push_str(&format!(
        "\nCompute reads (get and list, not operation waits): {}; Cloud DNS changes: {}; queries to the name servers: {}.\n\nCalls by method: {}\n",
        one["compute_reads"], one["dns_changes"], one["name_server_queries"], one["calls_by_method"]
    ));
    let many = &g["many"];
    if !many.is_null() {
        md.push_str(&format!(
            "\n{} certificates, default concurrency: {} s (exit ok: {}, {} served), {} calls ({} per certificate), peak calls per minute by quota group {} (Google's defaults: {}); ideal at this concurrency {} s.\n\nCalls by method: {}\n",
            many["certificates"], many["wall_s"], many["exit_ok"], many["served_certificates_of_ours"],
            many["calls"], many["calls_per_certificate"], many["peak_calls_per_minute"],
            many["google_default_quotas_per_minute"], many["ideal_wall_s_at_this_concurrency"],
            many["calls_by_method"]
        ));
    }
    md
}

pub async fn run(a: &Args) -> Value {
    let m = model(a.seed);
    let one = one_renewal(a, &m).await;
    eprintln!("google profile, one renewal: {one}");
    let many = if a.google_certs > 0 {
        let v = many(a, &m, a.google_certs).await;
        eprintln!("google profile, {} certificates: {v}", a.google_certs);
        v
    } else {
        Value::Null
    };
    json!({
        "model": m,
        "one_renewal": one,
        "many": many,
    })
}
