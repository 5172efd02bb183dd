//! `cargo bench --bench bench` / `scripts/bench`: how fast, how big, how frugal
//! gclb-acme is, against real Pebble and the in-process gcp-emulator (the test
//! support code in `tests/support`).
//!
//! - latency: one renewal (wildcard + apex, upload, swap, clean up), cold (the
//!   release binary `renew --force`, credentials from the emulator's metadata
//!   server) and warm (`reconcile::Renewer::renew(force)` in this process, with the
//!   production defaults for polls and retries), with the time spent per phase;
//! - API economy of one renewal (the emulator's request log and the ACME stats);
//! - DNS queries per challenge with a 2 s propagation lag on one name server;
//! - scale: 200 certificates from nothing with the release binary, concurrency 4
//!   and 16, then 16 with 20% of GCP requests failing;
//! - footprint: binary size, the daemon's start-up to READY, idle RSS and CPU.
//!
//! Usage: `bench --bin target/release/gclb-acme --out bench-out [--quick]
//! [--only latency,scale,footprint]`; `--only certmap` measures certificates
//! in a Certificate Manager map (`bench/certmap.rs`); `--only serve` starts a lab with one
//! certificate and prints the command that renews it (for strace, perf,
//! valgrind), then waits ten minutes.
//! Writes `<out>/results.json` and `<out>/results.md`. Bench code: panics on
//! unexpected failures.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gclb_acme::acme::{AcmeClient, EndpointStats};
use gclb_acme::config::Config;
use gclb_acme::gcp::{Auth, Gcp, StatsMap};
use gclb_acme::reconcile::Renewer;
use gclb_acme::state::StateDir;
use serde_json::{Value, json};
use support::gcp::PROJECT;
use support::lb::{Lab, NAMES};
use tracing_subscriber::prelude::*;

/// Emulator delays (the support code's `Cloud::start`): Google's take seconds,
/// these only keep the asynchronous paths honest; the benchmark measures our
/// overhead.
const OPERATION_DELAY_MS: u64 = 20;
const DNS_CHANGE_DELAY_MS: u64 = 20;

struct Args {
    bin: PathBuf,
    out: PathBuf,
    runs: usize,
    certs: usize,
    idle: Duration,
    only: Option<Vec<String>>,
    /// Certificates of the many-certificate run under the `google` latency profile.
    google_certs: usize,
    /// Seed of the latency model's jitter.
    seed: u64,
}

fn args() -> Args {
    let mut a = Args {
        bin: PathBuf::from("target/release/gclb-acme"),
        out: PathBuf::from("bench-out"),
        runs: 20,
        certs: 200,
        idle: Duration::from_secs(60),
        only: None,
        google_certs: 20,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--bin" => a.bin = PathBuf::from(it.next().expect("--bin PATH")),
            "--out" => a.out = PathBuf::from(it.next().expect("--out DIR")),
            "--quick" => {
                a.runs = 5;
                a.certs = 40;
                a.idle = Duration::from_secs(10);
            }
            "--only" => {
                a.only = Some(
                    it.next()
                        .expect("--only a,b")
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            "--google-certs" => {
                a.google_certs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--google-certs N")
            }
            "--seed" => a.seed = it.next().and_then(|n| n.parse().ok()).expect("--seed N"),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    a.bin = std::fs::canonicalize(&a.bin)
        .unwrap_or_else(|e| panic!("{}: {e} (build it: cargo build --release)", a.bin.display()));
    a
}

// ---------------------------------------------------------------------------
// What the renewer logs when the challenge records are served everywhere.

#[derive(Clone, Copy, Debug, Default)]
struct Presented {
    dns_queries: u64,
    waited_ms: u64,
    names: u64,
}

static PRESENTS: Mutex<Vec<Presented>> = Mutex::new(Vec::new());

struct Capture;

#[derive(Default)]
struct Fields {
    p: Presented,
    seen: bool,
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        match f.name() {
            "dns_queries" => {
                self.p.dns_queries = v;
                self.seen = true;
            }
            "waited_ms" => self.p.waited_ms = v,
            "names" => self.p.names = v,
            _ => {}
        }
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        self.record_u64(f, v.max(0) as u64)
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, ev: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut f = Fields::default();
        ev.record(&mut f);
        if f.seen {
            PRESENTS.lock().unwrap().push(f.p);
        }
    }
}

fn take_presents() -> Vec<Presented> {
    std::mem::take(&mut *PRESENTS.lock().unwrap())
}

// ---------------------------------------------------------------------------
// Small helpers.

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> Value {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    json!({
        "n": s.len(),
        "median": median(&s),
        "min": s[0],
        "p10": q(0.1),
        "p90": q(0.9),
        "max": s[s.len() - 1],
        "runs": s,
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// utime + stime of a process (clock ticks -> seconds), from /proc/<pid>/stat.
fn cpu_seconds(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `Vm*` line of /proc/<pid>/status, in kB.
fn vm_kb(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident kB by mapping (`/proc/<pid>/smaps`): the binary, each shared
/// library, `[heap]`, `[stack]`, and `[anon]` for unnamed mappings (thread
/// stacks, malloc arenas). Where the idle RSS goes.
fn rss_by_mapping(pid: &str) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut name = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // address perms offset dev inode [path]
            let path = words.nth(4).unwrap_or("[anon]");
            name = Path::new(path)
                .file_name()
                .filter(|_| path.starts_with('/'))
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.to_string());
        } else if first == "Rss:" {
            let kb: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *out.entry(name.clone()).or_default() += kb;
        }
    }
    out.retain(|_, kb| *kb > 0);
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/usr/bin/time -f` output: user and sys seconds, max RSS kB (the wall clock is ours).
#[derive(Clone, Copy, Debug, Default)]
struct TimeV {
    user: f64,
    sys: f64,
    max_rss_kb: u64,
}

fn parse_time(path: &Path) -> TimeV {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.starts_with("TIMEV "))
        .unwrap_or_else(|| panic!("no TIMEV line in {text}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    TimeV {
        user: f[2].parse().unwrap_or(0.0),
        sys: f[3].parse().unwrap_or(0.0),
        max_rss_kb: f[4].parse().unwrap_or(0),
    }
}

/// Runs the release binary under `/usr/bin/time`; returns (exit ok, wall, time -v, stdout, stderr).
fn run_timed(
    bin: &Path,
    env: &[(&str, String)],
    args: &[&str],
    dir: &Path,
) -> (bool, Duration, TimeV, String, String) {
    let tfile = dir.join("time.out");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("TIMEV %e %U %S %M")
        .arg("-o")
        .arg(&tfile)
        .arg(bin)
        .args(args)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env("HOME", dir)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().expect("spawn /usr/bin/time");
    let wall = started.elapsed();
    (
        out.status.success(),
        wall,
        parse_time(&tfile),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The propagation line of a JSON log.
fn presents_in_log(text: &str) -> Vec<Presented> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let f = v.get("fields").unwrap_or(&v);
            Some(Presented {
                dns_queries: f.get("dns_queries")?.as_u64()?,
                waited_ms: f.get("waited_ms").and_then(Value::as_u64).unwrap_or(0),
                names: f.get("names").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The lab.

async fn lab() -> Lab {
    // Every order does the whole DNS-01 dance (Pebble would otherwise reuse half
    // of the valid authorizations), and no random badNonce (Let's Encrypt does
    // not do that), so counts are deterministic.
    Lab::start_with(|o| o.nonce_reject_percent = 0).await
}

/// A renewer as `gclb-acme renew` builds it (production defaults), but in process.
async fn production_renewer(config: &Config) -> Renewer {
    let acme = AcmeClient::connect(
        &config.acme,
        StateDir::open(&config.state.dir).expect("state"),
    )
    .await
    .expect("acme connect");
    Renewer {
        gcp: Gcp::new(
            config.gcp.endpoints.clone(),
            PROJECT.to_string(),
            Auth::None,
        )
        .expect("gcp"),
        acme: Arc::new(acme),
        config: Arc::new(config.clone()),
        install: Renewer::install_options(config),
    }
}

fn stats_delta(before: &StatsMap, after: &StatsMap) -> BTreeMap<String, (u64, Duration)> {
    let mut out = BTreeMap::new();
    for (k, (n, t)) in after {
        let (n0, t0) = before.get(k).copied().unwrap_or_default();
        if *n > n0 {
            let e = out
                .entry(format!("{}.{}", k.0.as_str(), k.1))
                .or_insert((0u64, Duration::ZERO));
            e.0 += n - n0;
            e.1 += t.saturating_sub(t0);
        }
    }
    out
}

fn acme_delta(
    before: &BTreeMap<gclb_acme::acme::Endpoint, EndpointStats>,
    after: &BTreeMap<gclb_acme::acme::Endpoint, EndpointStats>,
) -> BTreeMap<String, (u64, Duration)> {
    let mut out = BTreeMap::new();
    for (k, s) in after {
        let b = before.get(k).copied().unwrap_or_default();
        if s.requests > b.requests {
            out.insert(
                k.as_str().to_string(),
                (s.requests - b.requests, s.total.saturating_sub(b.total)),
            );
        }
    }
    out
}

/// A TOML configuration for the release binary: `certs` = (name, domains, proxy).
fn write_config(lab: &Lab, path: &Path, certs: &[(String, [String; 2], String)], extra: &str) {
    let e = lab.cloud.endpoints();
    let mut toml = format!(
        r#"[gcp]
project = "{PROJECT}"
[gcp.endpoints]
compute = "{}"
dns = "{}"
iap = "{}"
run = "{}"
serviceusage = "{}"
resourcemanager = "{}"

[acme]
directory = "{}"
accept_terms = true
ca_roots = ["{}"]

[dns]
nameservers = [{}]
propagation_timeout = "60s"

[state]
dir = "{}"

{extra}
"#,
        e.compute,
        e.dns,
        e.iap,
        e.run,
        e.serviceusage,
        e.resourcemanager,
        lab.pebble.directory_url,
        lab.pebble.listener_ca_path.display(),
        lab.cloud
            .nameservers()
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", "),
        lab.state_dir().display(),
    );
    for (name, domains, proxy) in certs {
        toml.push_str(&format!(
            "\n[[certificates]]\nname = \"{name}\"\ndomains = [\"{}\", \"{}\"]\ntarget_https_proxies = [\"{proxy}\"]\n",
            domains[0], domains[1]
        ));
    }
    std::fs::write(path, toml).expect("write config");
}

// ---------------------------------------------------------------------------
// Latency, phases, API economy, propagation with lag.

async fn latency(a: &Args, r: &mut serde_json::Map<String, Value>) {
    let lab = lab().await;
    let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
    lab.proxy("p1", &[&old]).await;
    let config = lab.config(&["p1"]);
    let renewer = production_renewer(&config).await;
    let cert = config.certificates[0].clone();

    // Warm-up: account, connections, zone list.
    renewer.renew(&cert, true).await.expect("warm-up renewal");
    take_presents();

    // API economy of one warm renewal (the first measured one).
    let mut walls = Vec::new();
    let mut acme_per_run = Vec::new();
    let mut challenges_per_run = Vec::new();
    let mut phases: Vec<BTreeMap<&str, f64>> = Vec::new();
    let mut economy = json!(null);
    for i in 0..a.runs {
        lab.cloud.clear_requests().await;
        let g0 = renewer.gcp.stats.snapshot();
        let a0 = renewer.acme.stats().snapshot();
        let started = Instant::now();
        let out = renewer.renew(&cert, true).await.expect("renewal");
        let wall = started.elapsed();
        assert!(out.healthy());
        let g = stats_delta(&g0, &renewer.gcp.stats.snapshot());
        let ac = acme_delta(&a0, &renewer.acme.stats().snapshot());
        let pres = take_presents();
        let propagation: f64 = pres.iter().map(|p| p.waited_ms as f64).sum();
        let sum = |f: &dyn Fn(&str) -> bool| -> f64 {
            g.iter()
                .filter(|(k, _)| f(k))
                .map(|(_, (_, t))| ms(*t))
                .sum()
        };
        let compute_wait = sum(&|k| k.starts_with("compute.") && k.ends_with("operations.wait"));
        let compute_other = sum(&|k| k.starts_with("compute.") && !k.ends_with("operations.wait"));
        let dns_api = sum(&|k| k.starts_with("dns."));
        let acme_http: f64 = ac.values().map(|(_, t)| ms(*t)).sum();
        let wall_ms = ms(wall);
        let mut p = BTreeMap::new();
        p.insert("acme_requests", acme_http);
        p.insert("dns_api", dns_api);
        p.insert("dns_propagation_checks", propagation);
        p.insert("compute_operation_waits", compute_wait);
        p.insert("compute_other_requests", compute_other);
        p.insert(
            "rest (ACME poll sleeps, key/CSR, parsing, scheduling)",
            (wall_ms - acme_http - dns_api - propagation - compute_wait - compute_other).max(0.0),
        );
        phases.push(p);
        walls.push(wall_ms);
        acme_per_run.push(ac.values().map(|(n, _)| *n as f64).sum::<f64>());
        challenges_per_run.push(ac.get("challenge").map(|(n, _)| *n as f64).unwrap_or(0.0));
        if i == 0 {
            economy = economy_of(&lab, &g, &ac, &pres).await;
        }
    }
    let mut phase_median = serde_json::Map::new();
    let total: f64 = median(&walls);
    for k in phases[0].keys() {
        let v: Vec<f64> = phases.iter().map(|p| p[k]).collect();
        let m = median(&v);
        phase_median.insert(
            k.to_string(),
            json!({"median_ms": m, "share": (m / total * 1000.0).round() / 1000.0}),
        );
    }
    r.insert(
        "warm".into(),
        json!({
            "what": "reconcile::Renewer::renew(force=true) in the bench process, production defaults (ACME poll 250 ms, GCP retry 500 ms), one proxy",
            "profile": if cfg!(debug_assertions) { "debug (this bench binary)" } else { "optimized" },
            "wall_ms": spread(&walls),
            "phases_median": phase_median,
            "acme_requests_per_run": spread(&acme_per_run),
            "challenge_requests_per_run": spread(&challenges_per_run),
        }),
    );
    r.insert("economy".into(), economy);

    // Cold: the release binary, a new process per renewal.
    let dir = lab.tmp.path().join("cold");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = lab.write_cli_config("[daemon]\nmetrics_listen = \"\"\n");
    let env = [("GCE_METADATA_HOST", lab.metadata_host())];
    let cfg_s = cfg.to_string_lossy().into_owned();
    let mut walls = Vec::new();
    let mut user = Vec::new();
    let mut rss = Vec::new();
    let mut prop = Vec::new();
    for _ in 0..a.runs {
        let (ok, wall, t, out, err) = run_timed(
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
        );
        assert!(ok, "cold renew failed:\n{out}\n{err}");
        walls.push(ms(wall));
        user.push(((t.user + t.sys) * 1000.0).round());
        rss.push(t.max_rss_kb as f64);
        prop.extend(presents_in_log(&err).iter().map(|p| p.waited_ms as f64));
        // The last run's debug log, to see where the time goes.
        std::fs::write(a.out.join("cold-renew.log.json"), &err).expect("write log");
    }
    r.insert(
        "cold".into(),
        json!({
            "what": "release binary: gclb-acme renew --force (new process: config, ADC token from the metadata server, ACME account lookup, renewal)",
            "wall_ms": spread(&walls),
            "cpu_ms": spread(&user),
            "max_rss_kb": spread(&rss),
            "propagation_ms_median": median(&prop),
        }),
    );

    // Instructions of one cold renewal (valgrind): CPU work without the noise of
    // the shared machine (valgrind's own overhead excluded; the release binary is
    // stripped, so only the total).
    if Path::new("/usr/bin/valgrind").exists() {
        let out = Command::new("/usr/bin/valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(&a.bin)
            .args(["-q", "--config", &cfg_s, "renew", "--force"])
            .env("GCE_METADATA_HOST", lab.metadata_host())
            .env("HOME", &dir)
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .output()
            .expect("valgrind");
        let text = String::from_utf8_lossy(&out.stderr);
        let ir: Option<u64> = text
            .lines()
            .find_map(|l| {
                l.split_once("Collected :")
                    .map(|(_, n)| n.trim().to_string())
            })
            .and_then(|n| n.parse().ok());
        if let Some(cold) = r.get_mut("cold") {
            cold["instructions"] = json!(ir);
            cold["instructions_ok"] = json!(out.status.success());
        }
    }

    // DNS queries per challenge with a 2 s lag on one of the two name servers.
    let mut lagged = Vec::new();
    lab.cloud.lags(&[0, 2000]).await;
    for _ in 0..3 {
        let started = Instant::now();
        renewer.renew(&cert, true).await.expect("renewal with lag");
        let wall = started.elapsed();
        for p in take_presents() {
            lagged.push(json!({
                "dns_queries": p.dns_queries,
                "challenge_names": p.names,
                "servers": 2,
                "waited_ms": p.waited_ms,
                "renewal_ms": ms(wall),
            }));
        }
    }
    lab.cloud.lags(&[0, 0]).await;
    r.insert(
        "propagation_lag".into(),
        json!({
            "what": "one renewal (wildcard + apex = 2 challenges, one TXT name with 2 values) with lags [0 ms, 2000 ms] on the 2 authoritative servers",
            "runs": lagged,
        }),
    );
}

async fn economy_of(
    lab: &Lab,
    g: &BTreeMap<String, (u64, Duration)>,
    ac: &BTreeMap<String, (u64, Duration)>,
    pres: &[Presented],
) -> Value {
    let log = lab.cloud.requests().await;
    let mut by_id: BTreeMap<String, u64> = BTreeMap::new();
    for req in &log {
        let id = req["id"].as_str().unwrap_or("(no id)").to_string();
        *by_id.entry(id).or_default() += 1;
    }
    let count = |f: &dyn Fn(&str) -> bool| -> u64 {
        by_id.iter().filter(|(k, _)| f(k)).map(|(_, n)| n).sum()
    };
    let is_wait = |k: &str| k.ends_with("Operations.wait") || k.ends_with("Operations.get");
    let compute_mut = count(&|k| {
        k.starts_with("compute.") && !(k.ends_with(".get") || k.ends_with(".list") || is_wait(k))
    });
    let compute_reads = count(&|k| {
        k.starts_with("compute.") && (k.ends_with(".get") || k.ends_with(".list")) && !is_wait(k)
    });
    let compute_waits = count(&|k| k.starts_with("compute.") && is_wait(k));
    let dns_changes = count(&|k| k == "dns.changes.create");
    let dns_change_polls = count(&|k| k == "dns.changes.get");
    let dns_reads =
        count(&|k| k.starts_with("dns.") && k != "dns.changes.create" && k != "dns.changes.get");
    let acme_total: u64 = ac.values().map(|(n, _)| n).sum();
    json!({
        "what": "one warm forced renewal of wildcard + apex on one proxy (the emulator's request log; ACME client stats)",
        "dns_changes": dns_changes,
        "dns_change_polls": dns_change_polls,
        "dns_reads": dns_reads,
        "compute_mutations": compute_mut,
        "compute_reads": compute_reads,
        "compute_operation_waits": compute_waits,
        "acme_requests": acme_total,
        "acme_by_endpoint": ac.iter().map(|(k, (n, _))| (k.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "gcp_by_method": by_id,
        "gcp_client_stats": g.iter().map(|(k, (n, t))| (k.clone(), json!({"n": n, "ms": ms(*t)}))).collect::<serde_json::Map<_, _>>(),
        "dns_queries": pres.iter().map(|p| p.dns_queries).sum::<u64>(),
    })
}

#[path = "bench/google.rs"]
mod google;

#[path = "bench/certmap.rs"]
mod certmap;

// ---------------------------------------------------------------------------
// Scale and footprint.

fn raise_quotas(lab: &Lab) {
    let mut world = lab.cloud.emu.shared().world();
    let p = world.project(PROJECT).expect("project");
    for m in ["SSL_CERTIFICATES", "TARGET_HTTPS_PROXIES"] {
        p.compute.quota_limits.insert(m.into(), 10_000.0);
    }
}

fn scale_certs(n: usize) -> Vec<(String, [String; 2], String)> {
    (0..n)
        .map(|i| {
            (
                format!("c{i}"),
                [format!("c{i}.example.test"), format!("*.c{i}.example.test")],
                format!("p{i}"),
            )
        })
        .collect()
}

/// A lab with `n` proxies serving only a foreign placeholder certificate.
async fn scale_lab(n: usize) -> Lab {
    let lab = lab().await;
    raise_quotas(&lab);
    let placeholder = lab
        .upload(&["placeholder.test"], 1, 90, None, "placeholder")
        .await;
    for (_, _, proxy) in scale_certs(n) {
        lab.proxy(&proxy, &[&placeholder]).await;
    }
    lab
}

async fn scale_run(a: &Args, concurrency: usize, faults: f64) -> (Value, Lab, PathBuf) {
    let lab = scale_lab(a.certs).await;
    let certs = scale_certs(a.certs);
    let cfg = lab.tmp.path().join("scale.toml");
    write_config(
        &lab,
        &cfg,
        &certs,
        &format!(
            "[daemon]\nconcurrency = {concurrency}\nmetrics_listen = \"127.0.0.1:{}\"\n",
            support::free_port()
        ),
    );
    if faults > 0.0 {
        lab.cloud
            .fault(json!({"method": "*", "probability": faults}))
            .await;
    }
    lab.cloud.clear_requests().await;
    let dir = lab.tmp.path().join("scale");
    std::fs::create_dir_all(&dir).unwrap();
    let env = [("GCE_METADATA_HOST", lab.metadata_host())];
    let cfg_s = cfg.to_string_lossy().into_owned();
    let me0 = cpu_seconds("self");
    let (ok, wall, t, out, err) = tokio::task::block_in_place(|| {
        run_timed(&a.bin, &env, &["-q", "--config", &cfg_s, "renew"], &dir)
    });
    let me1 = cpu_seconds("self");
    let log = lab.cloud.requests().await;
    let failed_requests = log
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| s >= 500))
        .count();
    lab.cloud
        .http
        .delete(format!("{}emulator/faults", lab.cloud.emu.base_url()))
        .send()
        .await
        .expect("clear faults");
    let ours = lab
        .certificates()
        .await
        .iter()
        .filter(|c| c.as_str() != "placeholder")
        .count();
    if !ok {
        eprintln!(
            "scale run (concurrency {concurrency}, faults {faults}) exit != 0:\n{}\n{}",
            out.lines()
                .filter(|l| !l.starts_with("ok"))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n"),
            err.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    let v = json!({
        "certificates": a.certs,
        "names_per_certificate": 2,
        "concurrency": concurrency,
        "gcp_fault_probability": faults,
        "exit_ok": ok,
        "served_certificates_of_ours": ours,
        "wall_s": wall.as_secs_f64(),
        "user_s": t.user,
        "sys_s": t.sys,
        "cpu_s": t.user + t.sys,
        "peak_rss_kb": t.max_rss_kb,
        "gcp_requests": log.len(),
        "gcp_requests_failed_5xx": failed_requests,
        "emulator_and_harness_cpu_s": me1 - me0,
        "loadavg_after": loadavg(),
    });
    eprintln!("scale: {v}");
    (v, lab, cfg)
}

async fn footprint(a: &Args, lab: &Lab, cfg: &Path) -> Value {
    let notify_path = lab.tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let log_path = lab.tmp.path().join("daemon.log");
    let started = Instant::now();
    let mut child = Command::new(&a.bin)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCLB_ACME_CONFIG")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env("HOME", lab.tmp.path())
        .env("GCE_METADATA_HOST", lab.metadata_host())
        .env("NOTIFY_SOCKET", &notify_path)
        .args(["--log-format", "json", "run", "--config"])
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("daemon");
    let pid = child.id().to_string();
    let mut buf = [0u8; 4096];
    let ready = loop {
        if let Ok(n) = notify.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).contains("READY=1")
        {
            break started.elapsed();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "daemon exited:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no READY");
    };
    // Let the first pass's follow-ups (ARI polls) settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    lab.cloud.clear_requests().await;
    let rss0 = vm_kb(&pid, "VmRSS:");
    let cpu0 = cpu_seconds(&pid);
    tokio::time::sleep(a.idle).await;
    let cpu1 = cpu_seconds(&pid);
    let rss1 = vm_kb(&pid, "VmRSS:");
    let hwm = vm_kb(&pid, "VmHWM:");
    let idle_requests = lab.cloud.requests().await.len();
    let (anon, file) = (vm_kb(&pid, "RssAnon:"), vm_kb(&pid, "RssFile:"));
    // A count, not kB, on a line of the same shape.
    let threads = vm_kb(&pid, "Threads:");
    let by_mapping = rss_by_mapping(&pid);
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.wait();
    let per_min = (cpu1 - cpu0) * 1000.0 * 60.0 / a.idle.as_secs_f64();
    json!({
        "certificates": a.certs,
        "ready_ms": ms(ready),
        "idle_seconds": a.idle.as_secs(),
        "idle_rss_kb_start": rss0,
        "idle_rss_kb_end": rss1,
        "vm_hwm_kb": hwm,
        "idle_rss_anon_kb": anon,
        "idle_rss_file_kb": file,
        "threads": threads,
        "idle_rss_kb_by_mapping": by_mapping,
        "idle_cpu_ms": ((cpu1 - cpu0) * 1000.0).round(),
        "idle_cpu_ms_per_minute": per_min.round(),
        "cpu_tick_ms": 1000.0 / clock_ticks(),
        "gcp_requests_while_idle": idle_requests,
    })
}

// ---------------------------------------------------------------------------

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let mem: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let sh = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "mem_total_kb": mem,
        "loadavg_start": loadavg(),
        "kernel": sh("uname", &["-r"]),
        "date": sh("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "commit": sh("git", &["rev-parse", "--short", "HEAD"]),
        "dirty": !sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty(),
        "rustc": sh("rustc", &["--version"]),
    })
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// The Markdown table: figure, value, target, met?
fn table(r: &Value) -> String {
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let mut row = |fig: &str, val: String, target: &str, met: Option<bool>| {
        rows.push((
            fig.into(),
            val,
            target.into(),
            match met {
                Some(true) => "yes".into(),
                Some(false) => "**no**".into(),
                None => "n/a".into(),
            },
        ))
    };
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    if !get(r, "cold").is_null() {
        let c = get(r, "cold.wall_ms");
        row(
            "renewal, cold process (release), median [min-max] of n",
            format!(
                "{:.0} ms [{:.0}-{:.0}], n={}",
                f(&c["median"]),
                f(&c["min"]),
                f(&c["max"]),
                c["n"]
            ),
            "< 1 s",
            Some(f(&c["median"]) < 1000.0),
        );
        row(
            "renewal, cold process: CPU (user+sys) median",
            format!("{:.0} ms", f(get(r, "cold.cpu_ms.median"))),
            "",
            None,
        );
        if let Some(ir) = get(r, "cold.instructions").as_f64() {
            row(
                "renewal, cold process: instructions (callgrind, one run)",
                format!("{:.0} M", ir / 1e6),
                "",
                None,
            );
        }
        row(
            "renewal, cold process: peak RSS median",
            format!("{:.1} MB", f(get(r, "cold.max_rss_kb.median")) / 1024.0),
            "",
            None,
        );
        let w = get(r, "warm.wall_ms");
        row(
            &format!(
                "renewal, warm in-process ({}), median [min-max]",
                get(r, "warm.profile").as_str().unwrap_or("")
            ),
            format!(
                "{:.0} ms [{:.0}-{:.0}], n={}",
                f(&w["median"]),
                f(&w["min"]),
                f(&w["max"]),
                w["n"]
            ),
            "< 1 s",
            Some(f(&w["median"]) < 1000.0),
        );
        if let Some(p) = get(r, "warm.phases_median").as_object() {
            let s: Vec<String> = p
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k} {:.0} ms ({:.0}%)",
                        f(&v["median_ms"]),
                        f(&v["share"]) * 100.0
                    )
                })
                .collect();
            row(
                "warm renewal: time per phase (medians)",
                s.join("; "),
                "",
                None,
            );
        }
        let e = get(r, "economy");
        row(
            "per renewal: Cloud DNS changes",
            e["dns_changes"].to_string(),
            "<= 2",
            Some(e["dns_changes"].as_u64().unwrap_or(99) <= 2),
        );
        row(
            "per renewal: compute mutations (one proxy)",
            e["compute_mutations"].to_string(),
            "<= 3",
            Some(e["compute_mutations"].as_u64().unwrap_or(99) <= 3),
        );
        row(
            "per renewal: compute reads / operation waits",
            format!("{} / {}", e["compute_reads"], e["compute_operation_waits"]),
            "",
            None,
        );
        row(
            "per renewal: Cloud DNS reads / change polls",
            format!("{} / {}", e["dns_reads"], e["dns_change_polls"]),
            "",
            None,
        );
        let per_run = get(r, "warm.acme_requests_per_run");
        row(
            "per renewal: ACME requests",
            format!(
                "{} in the first ({}); over all warm runs {}-{}, median {}",
                e["acme_requests"],
                e["acme_by_endpoint"],
                per_run["min"],
                per_run["max"],
                per_run["median"]
            ),
            "",
            None,
        );
        if let Some(runs) = get(r, "propagation_lag.runs").as_array() {
            let q: Vec<f64> = runs.iter().map(|x| f(&x["dns_queries"])).collect();
            let w: Vec<f64> = runs.iter().map(|x| f(&x["waited_ms"])).collect();
            row(
                "DNS queries per challenge name (2 servers, one 2 s behind), median",
                format!(
                    "{:.0} queries (2 challenges share 1 name), propagation wait {:.0} ms",
                    median(&q),
                    median(&w)
                ),
                "",
                None,
            );
        }
    }
    if let Some(runs) = get(r, "scale").as_array() {
        for s in runs {
            let label = format!(
                "{} certificates, concurrency {}, GCP faults {:.0}%",
                s["certificates"],
                s["concurrency"],
                f(&s["gcp_fault_probability"]) * 100.0
            );
            row(
                &format!("{label}: total time (release renew)"),
                format!(
                    "{:.1} s ({} served{})",
                    f(&s["wall_s"]),
                    s["served_certificates_of_ours"],
                    if s["exit_ok"] == true {
                        ""
                    } else {
                        ", exit != 0"
                    }
                ),
                "< 30 s",
                Some(f(&s["wall_s"]) < 30.0 && s["exit_ok"] == true),
            );
            row(
                &format!("{label}: peak memory (VmHWM)"),
                format!("{:.1} MB", f(&s["peak_rss_kb"]) / 1024.0),
                "< 64 MB",
                Some(f(&s["peak_rss_kb"]) < 64.0 * 1024.0),
            );
            row(
                &format!("{label}: CPU (user+sys)"),
                format!(
                    "{:.2} s (emulator+harness {:.2} s; {} GCP requests, {} failed)",
                    f(&s["cpu_s"]),
                    f(&s["emulator_and_harness_cpu_s"]),
                    s["gcp_requests"],
                    s["gcp_requests_failed_5xx"]
                ),
                "",
                None,
            );
        }
    }
    let fp = get(r, "footprint");
    if !fp.is_null() {
        // Targets in decimal megabytes (issue #18), the stricter reading.
        row(
            "release binary size",
            format!(
                "{:.2} MB ({} bytes, {:.2} MiB)",
                f(&fp["binary_bytes"]) / 1e6,
                fp["binary_bytes"],
                f(&fp["binary_bytes"]) / 1048576.0
            ),
            "< 12 MB",
            Some(f(&fp["binary_bytes"]) < 12e6),
        );
        if !fp["daemon"].is_null() {
            let d = &fp["daemon"];
            row(
                &format!(
                    "daemon start-up to READY ({} certificates)",
                    d["certificates"]
                ),
                format!("{:.0} ms", f(&d["ready_ms"])),
                "",
                None,
            );
            // /proc reports kB of 1024 bytes; shown in decimal MB like the target.
            let mb = |v: &Value| f(v) * 1024.0 / 1e6;
            row(
                &format!("daemon idle RSS ({} certificates)", d["certificates"]),
                format!(
                    "{:.1} MB (anonymous {:.1} MB, file-backed {:.1} MB; VmHWM {:.1} MB; {} threads)",
                    mb(&d["idle_rss_kb_end"]),
                    mb(&d["idle_rss_anon_kb"]),
                    mb(&d["idle_rss_file_kb"]),
                    mb(&d["vm_hwm_kb"]),
                    d["threads"]
                ),
                "< 14 MB",
                Some(mb(&d["idle_rss_kb_end"]) < 14.0),
            );
            if let Some(m) = d["idle_rss_kb_by_mapping"].as_object() {
                let mut v: Vec<(&String, f64)> = m.iter().map(|(k, kb)| (k, mb(kb))).collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                let top: Vec<String> = v
                    .iter()
                    .take(7)
                    .map(|(k, x)| format!("{k} {x:.2}"))
                    .collect();
                row("daemon idle RSS by mapping (MB)", top.join("; "), "", None);
            }
            row(
                "daemon idle CPU",
                format!(
                    "{:.0} ms/min over {} s (tick {:.0} ms; {} GCP requests)",
                    f(&d["idle_cpu_ms_per_minute"]),
                    d["idle_seconds"],
                    f(&d["cpu_tick_ms"]),
                    d["gcp_requests_while_idle"]
                ),
                "< 50 ms/min",
                Some(f(&d["idle_cpu_ms_per_minute"]) < 50.0),
            );
        }
    }
    let mut md = String::from("| figure | value | target | met? |\n|---|---|---|---|\n");
    for (a, b, c, d) in rows {
        md.push_str(&format!("| {a} | {b} | {c} | {d} |\n"));
    }
    md
}

fn main() {
    let a = args();
    // SAFETY: single-threaded here; Pebble (a child) inherits it.
    unsafe { std::env::set_var("PEBBLE_AUTHZREUSE", "0") };
    tracing_subscriber::registry()
        .with(Capture.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let want = |s: &str| a.only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    let mut r = serde_json::Map::new();
    r.insert("machine".into(), machine());
    r.insert(
        "settings".into(),
        json!({
            "emulator_operation_delay_ms": OPERATION_DELAY_MS,
            "emulator_dns_change_delay_ms": DNS_CHANGE_DELAY_MS,
            "emulator": "in-process (this bench binary), 2 authoritative name servers",
            "pebble": "PEBBLE_VA_NOSLEEP=1 PEBBLE_AUTHZREUSE=0 PEBBLE_WFE_NONCEREJECT=0",
            "bench_profile": if cfg!(debug_assertions) { "debug" } else { "optimized" },
            "gclb_acme_binary": a.bin,
        }),
    );
    std::fs::create_dir_all(&a.out).expect("out dir");
    rt.block_on(async {
        if a.only
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "serve"))
        {
            // A lab to poke at by hand (profiling): one certificate on proxy p1.
            let lab = lab().await;
            let old = lab.upload(&NAMES, 80, 90, Some("app"), "").await;
            lab.proxy("p1", &[&old]).await;
            let cfg = lab.write_cli_config("[daemon]\nmetrics_listen = \"\"\n");
            println!(
                "GCE_METADATA_HOST={} HOME={} {} --config {} renew --force",
                lab.metadata_host(),
                lab.tmp.path().display(),
                a.bin.display(),
                cfg.display()
            );
            tokio::time::sleep(a.idle * 10).await;
            return;
        }
        if want("latency") {
            eprintln!("== latency, API economy, propagation lag");
            latency(&a, &mut r).await;
        }
        // Not in the default set: it takes minutes (Google's operations take seconds).
        if a.only
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "google"))
        {
            eprintln!(
                "== the `google` latency profile: one renewal, then {} certificates",
                a.google_certs
            );
            r.insert("google".into(), google::run(&a).await);
        }
        // Not in the default set either (issue #16): one map-held renewal, then
        // 500 certificates on one map (100 with --quick).
        if a.only
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "certmap"))
        {
            let n = if a.certs < 200 { 100 } else { 500 };
            eprintln!("== certmap: one renewal in a map, then {n} certificates on one map");
            r.insert("certmap".into(), certmap::run(&a, n).await);
        }
        let mut fp = json!({
            "binary_bytes": std::fs::metadata(&a.bin).map(|m| m.len()).unwrap_or(0),
        });
        if want("scale") || want("footprint") {
            let mut runs = Vec::new();
            // 32 with faults: what concurrency buys when the time is back-off.
            let all = [(4, 0.0), (16, 0.0), (16, 0.2), (32, 0.2)];
            let plan: &[(usize, f64)] = if want("scale") { &all } else { &all[1..2] };
            for &(c, faults) in plan {
                eprintln!("== scale: concurrency {c}, faults {faults}");
                let (v, lab, cfg) = scale_run(&a, c, faults).await;
                runs.push(v);
                if c == 16 && faults == 0.0 && want("footprint") {
                    eprintln!("== footprint: daemon with {} certificates", a.certs);
                    fp["daemon"] = footprint(&a, &lab, &cfg).await;
                }
            }
            r.insert("scale".into(), Value::Array(runs));
        }
        r.insert("footprint".into(), fp);
    });
    let r = Value::Object(r);
    let md = format!(
        "# gclb-acme benchmarks\n\n{} ({} cores, {}), load average at start {}; commit {}{}; {}.\n\
         Emulator operation delay {OPERATION_DELAY_MS} ms, DNS change delay {DNS_CHANGE_DELAY_MS} ms; Pebble with PEBBLE_VA_NOSLEEP=1.\n\
         The machine is shared (other jobs ran at the same time): wall-clock figures are noisy, counts are exact.\n\n{}",
        get(&r, "machine.date").as_str().unwrap_or(""),
        get(&r, "machine.nproc"),
        get(&r, "machine.cpu").as_str().unwrap_or(""),
        get(&r, "machine.loadavg_start").as_str().unwrap_or(""),
        get(&r, "machine.commit").as_str().unwrap_or(""),
        if get(&r, "machine.dirty") == true {
            " (dirty)"
        } else {
            ""
        },
        get(&r, "machine.rustc").as_str().unwrap_or(""),
        table(&r)
    );
    std::fs::write(
        a.out.join("results.json"),
        serde_json::to_string_pretty(&r).unwrap(),
    )
    .unwrap();
    let md = match r.get("google") {
        Some(g) => format!("{md}{}", google::markdown(g)),
        None => md,
    };
    let md = match r.get("certmap") {
        Some(c) => format!("{md}{}", certmap::markdown(c)),
        None => md,
    };
    std::fs::write(a.out.join("results.md"), &md).unwrap();
    println!("{md}");
}
