//! `--only certmap` (issue #16): certificates held in a Certificate Manager
//! map. One renewal (warm, in process, production defaults): wall time,
//! Certificate Manager mutations and reads per renewal. Then N certificates
//! (default 500) on one map, all due, renewed by the release binary's `renew`
//! at the default concurrency: wall time, CPU, peak memory, calls.
//!
//! The N certificates are seeded through the API as gclb-acme would have left
//! them (our id, labels and description; two entries each), self-signed and 80
//! days into 90, so the timed run is a renewal of each: one order, one patch.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gclb_acme::gcp::certificatemanager::{
    EntryMatch, MapFields, NewCertificate, NewMapEntry, SelfManaged,
};
use gclb_acme::lb::naming;
use serde_json::{Value, json};

use crate::support::gcp::PROJECT;
use crate::support::lb::self_signed;
use crate::{Args, cpu_seconds, lab, median, production_renewer, run_timed};

const MAP: &str = "sites";
const WAIT: Duration = Duration::from_secs(60);

/// Certificate Manager calls in a request log: (mutations that succeeded,
/// reads whatever their answer: a 404 is a read too).
fn cm_calls(log: &[Value]) -> (usize, usize) {
    let cm: Vec<&Value> = log
        .iter()
        .filter(|r| {
            r["id"]
                .as_str()
                .is_some_and(|i| i.starts_with("certificatemanager."))
        })
        .collect();
    let reads = cm.iter().filter(|r| r["method"] == "GET").count();
    let mutations = cm
        .iter()
        .filter(|r| r["method"] != "GET")
        .filter(|r| r["status"].as_u64().is_some_and(|s| s < 300))
        .count();
    (mutations, reads)
}

/// The TOML for the release binary: `names[i]` in map [`MAP`] as `c<i>`.
fn write_config(lab: &crate::support::lb::Lab, path: &Path, n: usize) {
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
certificatemanager = "{}"

[acme]
directory = "{}"
accept_terms = true
ca_roots = ["{}"]

[dns]
nameservers = [{}]
propagation_timeout = "60s"

[state]
dir = "{}"

[daemon]
metrics_listen = ""
"#,
        e.compute,
        e.dns,
        e.iap,
        e.run,
        e.serviceusage,
        e.resourcemanager,
        e.certificatemanager,
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
    for i in 0..n {
        toml.push_str(&format!(
            "\n[[certificates]]\nname = \"c{i}\"\ndomains = [\"c{i}.example.test\", \"*.c{i}.example.test\"]\ncertificate_map = \"{MAP}\"\n"
        ));
    }
    std::fs::write(path, toml).expect("write config");
}

/// Seeds map [`MAP`] with `n` certificates of ours, due, and their entries.
async fn seed(lab: &crate::support::lb::Lab, n: usize) {
    let gcp = lab.cloud.gcp();
    let op = gcp
        .create_certificate_map(
            MAP,
            &MapFields {
                description: None,
                labels: Some(naming::cm_labels("c0")),
            },
        )
        .await
        .expect("map");
    gcp.wait_certificate_manager(op, WAIT).await.expect("map");
    futures_util::stream::iter(0..n)
        .map(|i| {
            let gcp = gcp.clone();
            async move {
                let name = format!("c{i}");
                let names = [format!("c{i}.example.test"), format!("*.c{i}.example.test")];
                let issued = self_signed(&[&names[0], &names[1]], 80, 90);
                let id = naming::cm_certificate_id(&name);
                let op = gcp
                    .create_certificate(
                        &id,
                        &NewCertificate {
                            description: Some(naming::certificate_description(
                                &name,
                                &issued.leaf.sha256_hex,
                            )),
                            labels: naming::cm_labels(&name),
                            self_managed: SelfManaged {
                                pem_certificate: issued.chain_pem.clone(),
                                pem_private_key: issued.key_pem.expose().to_string(),
                            },
                        },
                    )
                    .await
                    .expect("certificate");
                gcp.wait_certificate_manager(op, WAIT)
                    .await
                    .expect("certificate");
                for host in names {
                    let op = gcp
                        .create_certificate_map_entry(
                            MAP,
                            &naming::map_entry_id(&host),
                            &NewMapEntry {
                                matches: EntryMatch::Hostname(host.clone()),
                                certificates: vec![gcp.certificate_name(&id)],
                                description: None,
                                labels: naming::cm_labels(&name),
                            },
                        )
                        .await
                        .expect("entry");
                    gcp.wait_certificate_manager(op, WAIT).await.expect("entry");
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// One map-held renewal, warm, `runs` times.
async fn one(a: &Args) -> Value {
    let lab = lab().await;
    let mut config = lab.config(&[]);
    config.certificates[0].certificate_map = Some(MAP.into());
    let renewer = production_renewer(&config).await;
    let cert = config.certificates[0].clone();
    let started = Instant::now();
    renewer.renew(&cert, false).await.expect("first issuance");
    let first_ms = started.elapsed().as_secs_f64() * 1000.0;
    let first = cm_calls(&lab.cloud.requests().await);
    let runs = a.runs.min(10);
    let mut walls = Vec::new();
    let mut mutations = Vec::new();
    let mut reads = Vec::new();
    for _ in 0..runs {
        lab.cloud.clear_requests().await;
        let t = Instant::now();
        renewer.renew(&cert, true).await.expect("renewal");
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
        let (m, r) = cm_calls(&lab.cloud.requests().await);
        mutations.push(m);
        reads.push(r);
    }
    let v = json!({
        "runs": runs,
        "first_issuance_ms": first_ms,
        "first_issuance_cm_mutations": first.0,
        "first_issuance_cm_reads": first.1,
        "renewal_wall_ms_median": median(&walls),
        "renewal_wall_ms": walls,
        "cm_mutations_per_renewal": mutations,
        "cm_reads_per_renewal": reads,
    });
    eprintln!("certmap one: {v}");
    v
}

/// `n` certificates on one map, all due, renewed by the release binary.
async fn many(a: &Args, n: usize) -> Value {
    let lab = lab().await;
    let t = Instant::now();
    seed(&lab, n).await;
    let seed_s = t.elapsed().as_secs_f64();
    let cfg = lab.tmp.path().join("certmap.toml");
    write_config(&lab, &cfg, n);
    lab.cloud.clear_requests().await;
    let dir = lab.tmp.path().join("certmap");
    std::fs::create_dir_all(&dir).unwrap();
    let env = [("GCE_METADATA_HOST", lab.metadata_host())];
    let cfg_s = cfg.to_string_lossy().into_owned();
    let me0 = cpu_seconds("self");
    let (ok, wall, tv, out, err) = tokio::task::block_in_place(|| {
        run_timed(&a.bin, &env, &["-q", "--config", &cfg_s, "renew"], &dir)
    });
    let me1 = cpu_seconds("self");
    let log = lab.cloud.requests().await;
    let (mutations, reads) = cm_calls(&log);
    let patches = log
        .iter()
        .filter(|r| r["id"] == "certificatemanager.projects.locations.certificates.patch")
        .filter(|r| r["status"].as_u64().is_some_and(|s| s < 300))
        .count();
    // Every name served by a renewed certificate: the seeded leaves were
    // self-signed, so a CA-issued leaf behind each entry is the proof.
    let gcp = lab.cloud.gcp();
    let renewed = gcp
        .list_certificates(None)
        .await
        .expect("list")
        .iter()
        .filter(|c| {
            c.pem_certificate
                .as_deref()
                .and_then(|p| gclb_acme::certs::split_chain(p).ok())
                .and_then(|d| gclb_acme::certs::leaf_info(&d[0]).ok())
                .is_some_and(|l| l.issuer_cn.as_deref().is_some_and(|i| i.contains("Pebble")))
        })
        .count();
    let entries = gcp
        .list_certificate_map_entries(MAP, None)
        .await
        .expect("entries")
        .len();
    if !ok {
        eprintln!(
            "certmap many: exit != 0:\n{}\n{}",
            out.lines()
                .filter(|l| !l.starts_with("ok"))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n"),
            err.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    let v = json!({
        "certificates": n,
        "names_per_certificate": 2,
        "concurrency": "default (4)",
        "seed_s": seed_s,
        "exit_ok": ok,
        "renewed_certificates": renewed,
        "entries": entries,
        "wall_s": wall.as_secs_f64(),
        "user_s": tv.user,
        "sys_s": tv.sys,
        "peak_rss_kb": tv.max_rss_kb,
        "gcp_requests": log.len(),
        "cm_mutations": mutations,
        "cm_patches": patches,
        "cm_reads": reads,
        "emulator_and_harness_cpu_s": me1 - me0,
    });
    eprintln!("certmap many: {v}");
    v
}

/// `n` first issuances into one new map (nothing seeded), by the release binary.
async fn many_first(a: &Args, n: usize) -> Value {
    let lab = lab().await;
    let cfg = lab.tmp.path().join("certmap-first.toml");
    write_config(&lab, &cfg, n);
    lab.cloud.clear_requests().await;
    let dir = lab.tmp.path().join("certmap-first");
    std::fs::create_dir_all(&dir).unwrap();
    let env = [("GCE_METADATA_HOST", lab.metadata_host())];
    let cfg_s = cfg.to_string_lossy().into_owned();
    let (ok, wall, tv, _, err) = tokio::task::block_in_place(|| {
        run_timed(&a.bin, &env, &["-q", "--config", &cfg_s, "renew"], &dir)
    });
    let log = lab.cloud.requests().await;
    let (mutations, reads) = cm_calls(&log);
    let lists = log
        .iter()
        .filter(|r| r["id"] == "certificatemanager.projects.locations.certificateMaps.certificateMapEntries.list")
        .count();
    let entries = lab
        .cloud
        .gcp()
        .list_certificate_map_entries(MAP, None)
        .await
        .map(|e| e.len())
        .unwrap_or(0);
    if !ok {
        eprintln!(
            "certmap first: exit != 0:\n{}",
            err.lines().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    let v = json!({
        "certificates": n,
        "exit_ok": ok,
        "entries": entries,
        "wall_s": wall.as_secs_f64(),
        "cpu_s": tv.user + tv.sys,
        "peak_rss_kb": tv.max_rss_kb,
        "cm_mutations": mutations,
        "cm_reads": reads,
        "entry_lists": lists,
    });
    eprintln!("certmap first: {v}");
    v
}

pub(crate) async fn run(a: &Args, n: usize) -> Value {
    json!({
        "one": one(a).await,
        "many": many(a, n).await,
        "first": many_first(a, n).await,
    })
}

pub(crate) fn markdown(v: &Value) -> String {
    let one = &v["one"];
    let many = &v["many"];
    let mut md = String::from(
        "\n## Certificate Manager map (issue #16, `--only certmap`)\n\n| figure | value | target | met? |\n|---|---|---|---|\n",
    );
    let list = |x: &Value| {
        x.as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    md.push_str(&format!(
        "| one renewal in a map (warm, in process): wall time, median of {} | {:.0} ms |  | n/a |\n",
        one["runs"], one["renewal_wall_ms_median"].as_f64().unwrap_or(0.0)
    ));
    md.push_str(&format!(
        "| Certificate Manager mutations per renewal | {} | 1 | {} |\n",
        list(&one["cm_mutations_per_renewal"]),
        if one["cm_mutations_per_renewal"]
            .as_array()
            .is_some_and(|a| a.iter().all(|m| m == 1))
        {
            "yes"
        } else {
            "**no**"
        }
    ));
    md.push_str(&format!(
        "| Certificate Manager reads per renewal | {} |  | n/a |\n",
        list(&one["cm_reads_per_renewal"])
    ));
    md.push_str(&format!(
        "| first issuance into a new map: mutations / reads / wall | {} / {} / {:.0} ms |  | n/a |\n",
        one["first_issuance_cm_mutations"],
        one["first_issuance_cm_reads"],
        one["first_issuance_ms"].as_f64().unwrap_or(0.0)
    ));
    let wall = many["wall_s"].as_f64().unwrap_or(f64::MAX);
    md.push_str(&format!(
        "| {} certificates on one map, all due, default concurrency: total time (release renew) | {:.1} s ({} renewed, {} entries) | < 60 s | {} |\n",
        many["certificates"],
        wall,
        many["renewed_certificates"],
        many["entries"],
        if wall < 60.0 && many["exit_ok"] == true { "yes" } else { "**no**" }
    ));
    md.push_str(&format!(
        "| the same: Certificate Manager mutations (patches) / reads; all GCP requests | {} ({}) / {}; {} |  | n/a |\n",
        many["cm_mutations"], many["cm_patches"], many["cm_reads"], many["gcp_requests"]
    ));
    let first = &v["first"];
    md.push_str(&format!(
        "| {} first issuances into one new map (release renew): total time; mutations / reads (entry lists) | {:.1} s ({} entries, exit ok {}); {} / {} ({}) |  | n/a |\n",
        first["certificates"],
        first["wall_s"].as_f64().unwrap_or(0.0),
        first["entries"],
        first["exit_ok"],
        first["cm_mutations"],
        first["cm_reads"],
        first["entry_lists"]
    ));
    md.push_str(&format!(
        "| the same: CPU (user+sys), peak memory (VmHWM) | {:.2} s, {:.1} MB (emulator+harness {:.2} s) |  | n/a |\n",
        many["user_s"].as_f64().unwrap_or(0.0) + many["sys_s"].as_f64().unwrap_or(0.0),
        many["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1000.0,
        many["emulator_and_harness_cpu_s"].as_f64().unwrap_or(0.0)
    ));
    md
}
