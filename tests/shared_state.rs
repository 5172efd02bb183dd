//! Issue 17's proof: state in a Cloud Storage bucket, shared by several
//! daemons, with a lease per certificate.
//!
//! - Three `gclb-acme run` daemons (the real binary) against one emulator and
//!   Pebble issuing short-lived certificates: every renewal is done exactly
//!   once (every certificate Pebble issued was served, or waits in `pending/`;
//!   none issued twice for one renewal), and every proxy always serves a
//!   certificate valid at that moment. Then the same with SIGKILL of a random
//!   daemon every few seconds (restarted at once) and ~20% GCP faults,
//!   including 412s on lease writes: the same assertions, and every lease a
//!   killed daemon held is taken over within the lease time.
//! - `gclb-acme renew` as a scheduled job with bucket state: nothing written
//!   to local disk, JSON logs, exit codes.
//! - `gclb-acme state move`: a directory to a bucket and back, losing nothing.
//!
//! `GCLB_ACME_SHARED=long` (scripts/soak-shared) runs the full proof: 30
//! certificates of 45 s, several minutes per phase, 30+ kills. The default is
//! shorter but the same test.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngExt;
use serde_json::{Value, json};
use support::fleet::{self, Daemon, Fleet};
use support::gcp::{Cloud, PROJECT};
use time::OffsetDateTime;

const BUCKET: &str = "gclb-acme-shared";

/// The run's size: certificates, their validity, the calm phase, the kill
/// phase, the time between kills, the lease duration and skew.
struct Plan {
    certificates: usize,
    validity: Duration,
    calm: Duration,
    chaos: Duration,
    kill_every: Duration,
    lease: Duration,
    skew: Duration,
    /// `daemon.concurrency`: a daemon waiting for another's lease holds a
    /// slot meanwhile, so 30 certificates renewed every 20 s need more.
    concurrency: usize,
}

fn plan() -> Plan {
    match std::env::var("GCLB_ACME_SHARED").as_deref() {
        Ok("long") => Plan {
            certificates: 30,
            validity: Duration::from_secs(45),
            calm: Duration::from_secs(180),
            chaos: Duration::from_secs(200),
            kill_every: Duration::from_secs(5),
            lease: Duration::from_secs(6),
            skew: Duration::from_secs(1),
            concurrency: 12,
        },
        _ => Plan {
            certificates: 6,
            validity: Duration::from_secs(45),
            calm: Duration::from_secs(60),
            chaos: Duration::from_secs(60),
            kill_every: Duration::from_secs(4),
            lease: Duration::from_secs(6),
            skew: Duration::from_secs(1),
            concurrency: 4,
        },
    }
}

async fn create_bucket(cloud: &Cloud) {
    let (s, b) = cloud
        .post(
            &format!("storage/v1/b?project={PROJECT}"),
            json!({
                "name": BUCKET,
                "iamConfiguration": {
                    "uniformBucketLevelAccess": {"enabled": true},
                    "publicAccessPrevention": "enforced"
                }
            }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

fn state_toml(prefix: &str, lease: Duration, skew: Duration) -> String {
    format!(
        "location = \"gs://{BUCKET}/{prefix}\"\nlease_duration = \"{}ms\"\nlease_clock_skew = \"{}ms\"",
        lease.as_millis(),
        skew.as_millis()
    )
}

/// The bucket's objects under `prefix`, name -> content, read from the
/// emulator's memory (no API call, so no injected fault).
fn objects(cloud: &Cloud, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let world = cloud.emu.shared().world();
    world
        .projects
        .get(PROJECT)
        .and_then(|p| p.storage.buckets.get(BUCKET))
        .map(|b| {
            b.objects
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .map(|(n, o)| (n.clone(), o.data.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// One change of a lease seen by polling every 50 ms: when (Unix ms), the
/// certificate and the new holder (`None` once released).
#[derive(Clone, Debug)]
struct LeaseEvent {
    at_ms: u64,
    cert: String,
    holder: Option<String>,
}

type LeaseEvents = Arc<Mutex<Vec<LeaseEvent>>>;

fn unix_ms() -> u64 {
    gclb_acme::state::lease::now_unix_ms()
}

fn watch_leases(
    shared: gcp_emulator::Shared,
    prefix: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (LeaseEvents, std::thread::JoinHandle<()>) {
    let events: LeaseEvents = Arc::default();
    let out = Arc::clone(&events);
    let handle = std::thread::spawn(move || {
        let mut last: BTreeMap<String, (String, u64)> = BTreeMap::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let now: BTreeMap<String, (String, u64)> = {
                let world = shared.world();
                world
                    .projects
                    .get(PROJECT)
                    .and_then(|p| p.storage.buckets.get(BUCKET))
                    .map(|b| {
                        b.objects
                            .iter()
                            .filter(|(n, _)| n.starts_with(&format!("{prefix}/leases/")))
                            .filter_map(|(n, o)| {
                                let cert = n.rsplit('/').next()?.strip_suffix(".json")?.to_string();
                                let v: Value = serde_json::from_slice(&o.data).ok()?;
                                Some((
                                    cert,
                                    (
                                        v["holder"].as_str()?.to_string(),
                                        v["expires_unix_ms"].as_u64()?,
                                    ),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let at_ms = unix_ms();
            let mut ev = out.lock().unwrap();
            for (c, (h, e)) in &now {
                if last.get(c) != Some(&(h.clone(), *e)) {
                    ev.push(LeaseEvent {
                        at_ms,
                        cert: c.clone(),
                        holder: Some(h.clone()),
                    });
                }
            }
            for c in last.keys() {
                if !now.contains_key(c) {
                    ev.push(LeaseEvent {
                        at_ms,
                        cert: c.clone(),
                        holder: None,
                    });
                }
            }
            drop(ev);
            last = now;
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (events, handle)
}

/// A lease a killed daemon held, and what became of it.
#[derive(Debug)]
struct Takeover {
    cert: String,
    /// From the kill to another daemon holding it (`None`: nobody needed it
    /// before the run ended).
    after_kill: Option<Duration>,
    /// From the moment the lease was free (its expiry plus the skew margin) to
    /// the takeover; negative would mean taken while still live.
    after_free_ms: Option<i64>,
    /// Another daemon was waiting for this very lease when its holder was
    /// killed, and was not killed itself until the lease was free again.
    awaited: bool,
}

/// The leases `pid` holds now, certificate -> expiry (Unix ms), read from the
/// emulator's memory. Called right after the kill: the process is gone, so
/// this is exactly what it left behind (a lease it released just before is
/// not there).
fn held_by(cloud: &Cloud, prefix: &str, pid: u32) -> Vec<(String, u64)> {
    let tag = format!("/{pid}/");
    objects(cloud, &format!("{prefix}/leases/"))
        .into_iter()
        .filter_map(|(n, data)| {
            let cert = n.rsplit('/').next()?.strip_suffix(".json")?.to_string();
            let v: Value = serde_json::from_slice(&data).ok()?;
            v["holder"]
                .as_str()?
                .contains(&tag)
                .then(|| Some((cert, v["expires_unix_ms"].as_u64()?)))?
        })
        .collect()
}

/// A kill: the daemon slot, the pid, when (Unix ms), and the leases it left.
struct Kill {
    slot: usize,
    pid: u32,
    at_ms: u64,
    held: Vec<(String, u64)>,
}

/// For each lease a killed daemon left: when another daemon held it, and
/// whether one was waiting for it (from the daemons' "waiting for it" lines).
fn takeovers(
    events: &[LeaseEvent],
    kills: &[Kill],
    skew: Duration,
    waits: &[Wait],
) -> Vec<Takeover> {
    let mut out = Vec::new();
    for k in kills {
        let tag = format!("/{}/", k.pid);
        for (cert, expires) in &k.held {
            let next = events
                .iter()
                .filter(|e| e.at_ms > k.at_ms && &e.cert == cert)
                .find(|e| e.holder.as_ref().is_some_and(|h| !h.contains(&tag)));
            let free = expires + skew.as_millis() as u64;
            let awaited = waits.iter().any(|w| {
                &w.cert == cert
                    && w.holder.contains(&tag)
                    && w.at_ms <= k.at_ms
                    && !kills
                        .iter()
                        .any(|o| o.slot == w.slot && o.at_ms >= w.at_ms && o.at_ms <= free)
            });
            out.push(Takeover {
                cert: cert.clone(),
                after_kill: next.map(|e| Duration::from_millis(e.at_ms.saturating_sub(k.at_ms))),
                after_free_ms: next.map(|e| e.at_ms as i64 - free as i64),
                awaited,
            });
        }
    }
    out
}

/// A "waiting for it" line: which daemon slot waited, for which
/// certificate, for which holder, from when (Unix ms).
struct Wait {
    slot: usize,
    cert: String,
    holder: String,
    at_ms: u64,
}

fn waits(slot: usize, text: &str) -> Vec<Wait> {
    fleet::json_lines(text)
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("another gclb-acme process is working"))
        })
        .filter_map(|l| {
            let t = OffsetDateTime::parse(
                l["timestamp"].as_str()?,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?;
            Some(Wait {
                slot,
                cert: l["certificate"].as_str()?.to_string(),
                holder: l["holder"].as_str()?.to_string(),
                at_ms: (t.unix_timestamp_nanos() / 1_000_000) as u64,
            })
        })
        .collect()
}

/// What the proxies served, as polled: every certificate of ours seen per
/// proxy, each served certificate's validity, and every moment a proxy served
/// nothing valid.
#[derive(Default)]
struct Served {
    seen: BTreeMap<String, BTreeSet<String>>,
    validity: BTreeMap<String, (OffsetDateTime, OffsetDateTime)>,
    checks: u64,
    invalid: Vec<String>,
}

async fn cert_validity(cloud: &Cloud, name: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let (s, b) = cloud
        .get(&format!(
            "compute/v1/projects/{PROJECT}/global/sslCertificates/{name}"
        ))
        .await;
    if s != 200 {
        return None;
    }
    let chain = gclb_acme::certs::split_chain(b["certificate"].as_str()?).ok()?;
    let leaf = gclb_acme::certs::leaf_info(chain.first()?).ok()?;
    Some((leaf.not_before, leaf.not_after))
}

impl Served {
    async fn poll(&mut self, f: &Fleet, seeded: &BTreeSet<String>) {
        for (proxy, names) in f.served().await {
            for n in &names {
                if !self.validity.contains_key(n)
                    && let Some(v) = cert_validity(&f.lab.cloud, n).await
                {
                    self.validity.insert(n.clone(), v);
                }
            }
            let now = OffsetDateTime::now_utc();
            let known: Vec<_> = names.iter().filter_map(|n| self.validity.get(n)).collect();
            if known.len() == names.len() {
                self.checks += 1;
                if !known.iter().any(|(nb, na)| *nb <= now && now < *na) {
                    self.invalid.push(format!("{proxy} at {now}: {names:?}"));
                }
            }
            self.seen
                .entry(proxy)
                .or_default()
                .extend(names.into_iter().filter(|n| !seeded.contains(n)));
        }
    }

    /// Per proxy, the shortest time between the start of validity of two
    /// consecutive certificates of ours it served: a renewal done twice (two
    /// daemons one after the other) shows as two certificates seconds apart.
    fn closest_renewals(&self) -> Vec<(String, Duration)> {
        let mut out = Vec::new();
        for (proxy, names) in &self.seen {
            let mut starts: Vec<OffsetDateTime> = names
                .iter()
                .filter_map(|n| self.validity.get(n).map(|v| v.0))
                .collect();
            starts.sort();
            if let Some(min) = starts.windows(2).map(|w| w[1] - w[0]).min() {
                out.push((proxy.clone(), min.unsigned_abs()));
            }
        }
        out
    }

    fn total(&self) -> usize {
        self.seen.values().map(BTreeSet::len).sum()
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// GCP calls logged by the emulator, by API: (storage, lease objects, other).
fn call_counts(cloud: &Cloud) -> (usize, usize, usize) {
    let log = cloud.emu.shared().admin.requests();
    let storage: Vec<_> = log
        .iter()
        .filter(|r| r.id.as_deref().is_some_and(|i| i.starts_with("storage.")))
        .collect();
    let leases = storage
        .iter()
        .filter(|r| r.path.contains("leases") || r.query.contains("leases"))
        .count();
    (storage.len(), leases, log.len() - storage.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_a_bucket_renew_once_and_survive_kills_and_faults() {
    let plan = plan();
    let started = Instant::now();
    let f = Fleet::start(plan.certificates, plan.validity).await;
    let lab = &f.lab;
    create_bucket(&lab.cloud).await;
    // A renewal holds two certificates for a moment: the emulator's default
    // SSL_CERTIFICATES quota (30, Google's default for a new project) is too
    // small for 30 certificates renewed at once, as a real project of that
    // size would have asked for more.
    {
        let mut world = lab.cloud.emu.shared().world();
        let p = world.project(PROJECT).expect("project");
        p.compute.quota_limits.insert(
            "SSL_CERTIFICATES".into(),
            (plan.certificates * 2 + 10) as f64,
        );
    }
    let prefix = "fleet";
    let config = f.write_config_state(
        &state_toml(prefix, plan.lease, plan.skew),
        &format!(
            "metrics_listen = \"\"\nconcurrency = {}\nretry_initial = \"1s\"\nretry_max = \"4s\"",
            plan.concurrency
        ),
        "",
    );
    let seeded: BTreeSet<String> = lab.certificates().await.into_iter().collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (events, watcher) = watch_leases(
        lab.cloud.emu.shared().clone(),
        prefix.to_string(),
        Arc::clone(&stop),
    );

    let homes: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let logs: Vec<_> = (0..3)
        .map(|i| lab.tmp.path().join(format!("daemon{i}.log")))
        .collect();
    let log = |i: usize| std::fs::read_to_string(&logs[i]).unwrap_or_default();
    let all_logs = || (0..3).map(log).collect::<Vec<_>>().join("\n");
    let mut daemons: Vec<Daemon> = (0..3)
        .map(|i| fleet::spawn_daemon(lab, homes[i].path(), &config, &logs[i]))
        .collect();
    // The bucket is the only state: no daemon may use the lab's directory.
    let mut served = Served::default();

    // Calm: three daemons, no faults.
    let calm_until = Instant::now() + plan.calm;
    while Instant::now() < calm_until {
        served.poll(&f, &seeded).await;
        for (i, d) in daemons.iter_mut().enumerate() {
            assert!(
                d.try_wait().unwrap().is_none(),
                "daemon {i} exited:\n{}",
                tail(&log(i))
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let calm_issued = f.issued().len();
    let calm_served = served.total();
    assert!(
        served.invalid.is_empty(),
        "a proxy served nothing valid: {:?}",
        served.invalid
    );
    let (calm_storage, calm_lease_calls, calm_other) = call_counts(&lab.cloud);

    // Chaos: ~20% GCP faults, 412 on a fifth of lease writes, a random daemon
    // SIGKILLed (and restarted) every few seconds.
    for rule in fleet::random_faults(20.0) {
        lab.cloud.fault(rule).await;
    }
    lab.cloud
        .fault(json!({
            "method": "storage.objects.insert",
            "query_contains": "leases",
            "probability": 0.2,
            "status": 412,
            "reason": "conditionNotMet"
        }))
        .await;
    let mut kills: Vec<Kill> = Vec::new();
    let chaos_until = Instant::now() + plan.chaos;
    let mut next_kill = Instant::now() + plan.kill_every;
    while Instant::now() < chaos_until {
        served.poll(&f, &seeded).await;
        if Instant::now() >= next_kill {
            let i = rand::rng().random_range(0..3);
            let pid = daemons[i].id();
            daemons[i].kill().unwrap(); // SIGKILL
            daemons[i].wait().unwrap();
            kills.push(Kill {
                slot: i,
                pid,
                at_ms: unix_ms(),
                held: held_by(&lab.cloud, prefix, pid),
            });
            daemons[i] = fleet::spawn_daemon(lab, homes[i].path(), &config, &logs[i]);
            next_kill = Instant::now() + plan.kill_every;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    fleet::clear_faults(lab).await;

    // Settle without faults for a lease time and a renewal, then stop all.
    let settle_until = Instant::now() + plan.lease + plan.validity / 2;
    while Instant::now() < settle_until {
        served.poll(&f, &seeded).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (i, d) in daemons.iter_mut().enumerate() {
        let status = fleet::stop(d, Duration::from_secs(60)).await;
        assert!(
            status.success(),
            "daemon {i}: exit {status}\n{}",
            tail(&log(i))
        );
    }
    served.poll(&f, &seeded).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    if let Ok(dir) = std::env::var("GCLB_ACME_TEST_LOGS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, l) in logs.iter().enumerate() {
            let _ = std::fs::copy(l, dir.join(format!("daemon{i}.log")));
        }
        let _ = std::fs::copy(&lab.pebble.log_path, dir.join("pebble.log"));
    }

    // Exactly once: every certificate Pebble issued (one per finalized order)
    // was served, or still waits in pending/ after the stop.
    let issued = f.issued();
    let pending = objects(&lab.cloud, &format!("{prefix}/pending/"));
    let total = served.total();
    let (storage, lease_calls, other) = call_counts(&lab.cloud);
    let events = events.lock().unwrap().clone();
    let text = all_logs();
    let all_waits: Vec<Wait> = (0..3).flat_map(|i| waits(i, &log(i))).collect();
    let took = takeovers(&events, &kills, plan.skew, &all_waits);
    let measured: Vec<Duration> = took.iter().filter_map(|t| t.after_kill).collect();
    let max_takeover = measured.iter().max().copied().unwrap_or_default();
    let mean_takeover = if measured.is_empty() {
        Duration::ZERO
    } else {
        measured.iter().sum::<Duration>() / measured.len() as u32
    };
    let awaited: Vec<i64> = took
        .iter()
        .filter(|t| t.awaited)
        .filter_map(|t| t.after_free_ms)
        .collect();
    let awaited_max = awaited.iter().max().copied().unwrap_or_default();
    let closest = served.closest_renewals();
    let closest_min = closest.iter().map(|(_, d)| *d).min().unwrap_or_default();
    println!(
        "shared: {} certificates of {:?}, 3 daemons, lease {:?} (skew {:?}); calm {:?}: {} issued, {} served; \
         chaos {:?}: {} SIGKILLs, 20% GCP faults + 412 on 20% of lease writes; total {} issued by Pebble, \
         {} served, {} pending at the end, closest two renewals of one certificate {:.1?} apart; {} served-validity checks, {} without a valid certificate; \
         {} leases held by killed daemons, {} taken over (max {:.1?}, mean {:.1?} after the kill), {} not needed again; \
         of those another daemon waited for, {} taken over at most {} ms after the lease was free (expiry + skew); \
         calm phase: {:.1} storage calls per renewal ({:.1} on leases), {:.1} other GCP calls per renewal; \
         whole run: {storage} storage calls ({lease_calls} on leases), {other} other; wall time {:.0?}",
        plan.certificates,
        plan.validity,
        plan.lease,
        plan.skew,
        plan.calm,
        calm_issued,
        calm_served,
        plan.chaos,
        kills.len(),
        issued.len(),
        total,
        pending.len(),
        closest_min,
        served.checks,
        served.invalid.len(),
        took.len(),
        measured.len(),
        max_takeover,
        mean_takeover,
        took.len() - measured.len(),
        awaited.len(),
        awaited_max,
        calm_storage as f64 / calm_served.max(1) as f64,
        calm_lease_calls as f64 / calm_served.max(1) as f64,
        calm_other as f64 / calm_served.max(1) as f64,
        started.elapsed()
    );
    assert!(
        served.invalid.is_empty(),
        "a proxy served nothing valid: {:?}",
        served.invalid
    );
    assert!(
        calm_served >= plan.certificates * 2,
        "renewals happened in the calm phase: {calm_served}"
    );
    assert!(
        total > calm_served,
        "renewals happened during the chaos: {total} vs {calm_served}"
    );
    assert!(
        pending.len() <= plan.certificates,
        "at most one pending per certificate"
    );
    assert_eq!(
        issued.len(),
        total + pending.len(),
        "every issued certificate was served or is pending, none issued twice for one renewal: \
         issued {issued:?}, served {:?}, pending {:?}",
        served.seen,
        pending.keys().collect::<Vec<_>>()
    );
    // Exactly once, in time: two certificates of one proxy never start less
    // than a quarter of the lifetime apart (renewals come at half of it).
    assert!(
        closest.iter().all(|(_, d)| *d >= plan.validity / 4),
        "a renewal was done twice: {closest:?}"
    );
    assert!(!closest.is_empty());
    let min_kills = (plan.chaos.as_secs() / plan.kill_every.as_secs()).saturating_sub(2) as usize;
    assert!(kills.len() >= min_kills, "{} kills", kills.len());
    // Never taken over while the killed holder's lease was live; and a
    // daemon waiting for it got it soon after: it polls a busy lease every
    // second, but under the injected faults each read may be retried with
    // back-off, and a failed attempt costs a renewal back-off (retry_max,
    // 4 s) and a new observation: bounded by twice the lease plus 10 s
    // (measured: 12 s at most for a 6 s lease on the loaded build machine,
    // 14.6 s in the long run).
    assert!(
        took.iter()
            .filter_map(|t| t.after_free_ms)
            .all(|ms| ms >= 0),
        "a lease was taken over before its expiry plus the skew margin: {took:?}"
    );
    let late_ms = (plan.lease * 2 + Duration::from_secs(10)).as_millis() as i64;
    let late: Vec<(&str, i64)> = took
        .iter()
        .filter(|t| t.awaited)
        .filter_map(|t| Some((t.cert.as_str(), t.after_free_ms?)))
        .filter(|(_, ms)| *ms > late_ms)
        .collect();
    assert!(
        late.is_empty(),
        "a waiting daemon took over a killed holder's lease late: {late:?} of {took:?}"
    );
    assert!(
        !measured.is_empty(),
        "some killed holder's certificate was taken over: {took:?}"
    );
    assert!(!text.contains("panicked"), "{}", tail(&text));
    assert!(
        !lab.state_dir().exists(),
        "a daemon wrote the local state directory"
    );
}

/// A configuration for `renew` as a job: the bucket, no directory.
fn job_config(f: &Fleet, location: &str) -> std::path::PathBuf {
    f.write_config_state(
        &format!("location = \"{location}\""),
        "metrics_listen = \"\"\nverify_after_swap = false",
        "",
    )
}

fn is_empty_dir(p: &std::path::Path) -> bool {
    std::fs::read_dir(p).unwrap().next().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_as_a_scheduled_job_with_bucket_state_writes_nothing_locally() {
    let f = Fleet::start(2, Duration::from_secs(3600)).await;
    let lab = &f.lab;
    create_bucket(&lab.cloud).await;
    let config = job_config(&f, &format!("gs://{BUCKET}/job"));
    let (home, cwd, tmp) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let out = lab.tmp.path().join("job.out");
    let err = lab.tmp.path().join("job.err");
    let run = |out: &std::path::Path, err: &std::path::Path, config: &std::path::Path| {
        let mut cmd = fleet::command(
            lab,
            home.path(),
            &lab.tmp.path().join("unused.log"),
            &[
                "--log-format",
                "json",
                "renew",
                "--config",
                config.to_str().unwrap(),
            ],
        );
        cmd.current_dir(cwd.path())
            .env("TMPDIR", tmp.path())
            .stdout(std::fs::File::create(out).unwrap())
            .stderr(std::fs::File::create(err).unwrap())
            .stdin(Stdio::null());
        cmd.status().unwrap()
    };

    let status = run(&out, &err, &config);
    let (stdout, stderr) = (
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    );
    assert!(status.success(), "exit {status}\n{stdout}\n{stderr}");
    assert_eq!(f.issued().len(), 2, "{stdout}");
    // Logs are JSON, one object a line.
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{l}");
    }
    // Nothing on local disk: not the state directory, not HOME, the working
    // directory or TMPDIR.
    assert!(!lab.state_dir().exists());
    for d in [home.path(), cwd.path(), tmp.path()] {
        assert!(is_empty_dir(d), "{} was written", d.display());
    }
    // The bucket holds the account; nothing is pending, no lease is left.
    let objs = objects(&lab.cloud, "job/");
    assert!(
        objs.keys().any(|n| n.starts_with("job/accounts/")),
        "{:?}",
        objs.keys()
    );
    assert!(
        !objs
            .keys()
            .any(|n| n.starts_with("job/pending/") || n.starts_with("job/leases/")),
        "{:?}",
        objs.keys()
    );
    f.assert_converged().await;

    // The next scheduled run: nothing due, exit 0, nothing issued, the same account.
    let status = run(&out, &err, &config);
    let stdout = std::fs::read_to_string(&out).unwrap();
    assert!(status.success(), "{stdout}");
    assert_eq!(f.issued().len(), 2);
    assert!(stdout.contains("nothing due"), "{stdout}");
    let after = objects(&lab.cloud, "job/accounts/");
    assert_eq!(after.len(), 1, "one account, reused: {:?}", after.keys());

    // A missing bucket: exit 1, the error names it.
    let missing = job_config(&f, "gs://no-such-bucket-here/job");
    let status = run(&out, &err, &missing);
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-bucket-here"), "{stderr}");
    for d in [home.path(), cwd.path(), tmp.path()] {
        assert!(is_empty_dir(d), "{} was written", d.display());
    }
}

fn tree(root: &std::path::Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut BTreeMap<String, (Vec<u8>, u32)>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            // `.store.lock`, the conditional writes' flock: not state.
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                out.insert(rel, (std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_move_round_trips_a_directory_through_a_bucket_losing_nothing() {
    let f = Fleet::start(1, Duration::from_secs(3600)).await;
    let lab = &f.lab;
    create_bucket(&lab.cloud).await;
    // A state directory as a daemon leaves it, with a lock file (not state).
    let src = lab.state_dir();
    let dir = gclb_acme::state::StateDir::open(&src).unwrap();
    let files = [
        ("accounts/0123456789abcdef.json", "{\"account\": 1}"),
        ("pending/c00.json", "{\"key\": \"SECRET-KEY\"}"),
        ("orders/c00.json", "{\"order\": 2}"),
        ("keys/c00.json", "{\"key\": 3}"),
        ("daemon/c00.json", "{\"failures\": 0}"),
    ];
    for (n, c) in files {
        dir.write(n, c.as_bytes()).unwrap();
    }
    let _lock = dir.try_lock_certificate("c00").unwrap().unwrap();
    let config = f.write_config("metrics_listen = \"\"", "");
    let home = tempfile::tempdir().unwrap();
    let log = lab.tmp.path().join("move.log");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let run = |args: &[&str]| {
        std::fs::write(&log, "").unwrap();
        let mut all = vec!["state", "move", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        fleet::command(lab, home.path(), &log, &all)
            .status()
            .unwrap()
    };
    let to = format!("gs://{BUCKET}/moved");

    // Dry run: says what it would copy, writes nothing.
    assert!(run(&["--to", &to, "--dry-run"]).success(), "{}", text());
    assert_eq!(
        text().matches("would copy").count(),
        files.len() + 1,
        "{}",
        text()
    );
    assert!(objects(&lab.cloud, "moved/").is_empty());

    // Directory -> bucket: every file, byte for byte; the lock file is not state.
    assert!(run(&["--to", &to]).success(), "{}", text());
    let bucket = objects(&lab.cloud, "moved/");
    let expected: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(n, c)| (format!("moved/{n}"), c.as_bytes().to_vec()))
        .collect();
    assert_eq!(bucket, expected);
    assert!(!text().contains("SECRET-KEY"), "{}", text());
    // Again: all identical, nothing written.
    assert!(run(&["--to", &to]).success(), "{}", text());
    assert!(
        text().contains(&format!("0 copied, {} already there", files.len())),
        "{}",
        text()
    );

    // Bucket -> another directory: the same bytes, 0600 files in 0700 directories.
    let back = lab.tmp.path().join("back");
    assert!(
        run(&["--from", &to, "--to", back.to_str().unwrap()]).success(),
        "{}",
        text()
    );
    let got = tree(&back);
    let want: BTreeMap<String, (Vec<u8>, u32)> = files
        .iter()
        .map(|(n, c)| (n.to_string(), (c.as_bytes().to_vec(), 0o600)))
        .collect();
    assert_eq!(got, want);
    for sub in ["accounts", "pending", "orders", "keys", "daemon"] {
        let mode = std::fs::metadata(back.join(sub))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{sub}");
    }
    // The source is unchanged.
    let src_tree = tree(&src);
    for (n, c) in files {
        assert_eq!(src_tree[n].0, c.as_bytes());
    }

    // A destination that differs is never overwritten: exit 1, named.
    std::fs::write(back.join("daemon/c00.json"), "{\"failures\": 9}").unwrap();
    let status = run(&["--from", &to, "--to", back.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{}", text());
    assert!(
        text().contains("CONFLICT") && text().contains("daemon/c00.json"),
        "{}",
        text()
    );
    assert_eq!(
        std::fs::read_to_string(back.join("daemon/c00.json")).unwrap(),
        "{\"failures\": 9}"
    );
}
