//! Moving a target HTTPS proxy from its sslCertificates onto a Certificate
//! Manager map and back (`stack::mapmove`, behind `gclb-acme certificate-map
//! attach|detach`) against the gcp-emulator. After every step, dry run or
//! refusal included, each name is asked of the emulator
//! (`GET /emulator/served?proxy=P&sni=HOST`) and must be served by a certificate
//! valid now that names it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use gclb_acme::gcp::Gcp;
use gclb_acme::gcp::certificatemanager::{
    EntryMatch, MapFields, NewCertificate, NewMapEntry, SelfManaged,
};
use gclb_acme::stack::{self as mapmove, MoveError};
use serde_json::json;
use support::gcp::{Cloud, PROJECT};

const PROXY: &str = "p";
const MAP: &str = "m";
const NAMES: [&str; 2] = ["a.example.test", "www.example.test"];
const WAIT: Duration = Duration::from_secs(30);
const LINK: &str = "https://www.googleapis.com/compute/v1/projects/demo-project/global/";

/// A self-signed certificate for `names`, valid from `from_days` to `to_days`
/// around now: (PEM, key PEM).
fn self_signed(names: &[&str], from_days: i64, to_days: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from_days);
    params.not_after = now + time::Duration::days(to_days);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A proxy serving sslCertificate `legacy` (both names) and an empty map.
async fn world() -> (Cloud, Gcp) {
    let cloud = Cloud::start().await;
    let (pem, key) = self_signed(&NAMES, -1, 60);
    let base = format!("compute/v1/projects/{PROJECT}/global");
    for (what, body) in [
        (
            "sslCertificates",
            json!({"name": "legacy", "type": "SELF_MANAGED", "selfManaged": {"certificate": pem, "privateKey": key}}),
        ),
        (
            "urlMaps",
            json!({"name": "um", "defaultUrlRedirect": {"httpsRedirect": true}}),
        ),
        (
            "targetHttpsProxies",
            json!({"name": PROXY, "urlMap": format!("{LINK}urlMaps/um"), "sslCertificates": [format!("{LINK}sslCertificates/legacy")]}),
        ),
    ] {
        let (s, b) = cloud.post(&format!("{base}/{what}"), body).await;
        assert_eq!(s, 200, "{what}: {b}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gcp = cloud.gcp();
    let op = gcp
        .create_certificate_map(MAP, &MapFields::default())
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    (cloud, gcp)
}

/// A Certificate Manager certificate `id` for `names` (valid or expired) and
/// an entry per name in the map pointing at it.
async fn in_map(gcp: &Gcp, id: &str, names: &[&str], expired: bool) {
    let (pem, key) = if expired {
        self_signed(names, -30, -1)
    } else {
        self_signed(names, -1, 60)
    };
    let op = gcp
        .create_certificate(
            id,
            &NewCertificate {
                description: None,
                labels: BTreeMap::new(),
                self_managed: SelfManaged {
                    pem_certificate: pem,
                    pem_private_key: key,
                },
            },
        )
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    for n in names {
        let op = gcp
            .create_certificate_map_entry(
                MAP,
                &entry_id(n),
                &NewMapEntry {
                    matches: EntryMatch::Hostname(n.to_string()),
                    certificates: vec![gcp.certificate_name(id)],
                    description: None,
                    labels: BTreeMap::new(),
                },
            )
            .await
            .unwrap();
        gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    }
}

fn entry_id(n: &str) -> String {
    n.replace('.', "-")
}

async fn drop_entry(gcp: &Gcp, n: &str) {
    let op = gcp
        .delete_certificate_map_entry(MAP, &entry_id(n))
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
}

/// Asserts every name of `names` is served by a valid certificate naming it,
/// from `source`; returns the certificates' ids.
async fn all_served(cloud: &Cloud, names: &[&str], source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let (s, v) = cloud
            .get(&format!("emulator/served?proxy={PROXY}&sni={n}"))
            .await;
        assert_eq!(s, 200, "{n} not served: {v}");
        assert_eq!(v["source"], source, "{n}: {v}");
        let pem = v["pem"].as_str().unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let x = p.parse_x509().unwrap();
        assert!(
            x.validity().is_valid(),
            "{n}: served certificate not valid now"
        );
        let sans: Vec<String> = x
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|g| g.to_string())
            .collect();
        assert!(sans.iter().any(|s| s.contains(n)), "{n}: {sans:?}");
        out.push(
            v["certificate"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    out
}

/// Compute mutations of the proxy so far.
async fn proxy_changes(cloud: &Cloud) -> usize {
    cloud
        .requests()
        .await
        .iter()
        .filter(|r| {
            r["id"]
                .as_str()
                .unwrap_or("")
                .ends_with("setCertificateMap")
        })
        .count()
}

fn refused(r: Result<mapmove::MoveReport, MoveError>) -> Vec<String> {
    match r {
        Err(MoveError::Refused { unserved, .. }) => unserved,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_a_map_and_back_with_every_name_served_at_every_step() {
    let (cloud, gcp) = world().await;
    all_served(&cloud, &NAMES, "sslCertificates").await;

    // The map serves one of the two names: refused, dry run or not.
    in_map(&gcp, "cm-a", &NAMES[..1], false).await;
    for dry in [true, false] {
        let unserved =
            refused(mapmove::attach_certificate_map(&gcp, PROXY, MAP, &[], &[], dry, true).await);
        assert_eq!(unserved.len(), 1, "{unserved:?}");
        assert!(
            unserved[0].starts_with(
                "www.example.test: certificate map m has no entry for www.example.test"
            ),
            "{unserved:?}"
        );
        all_served(&cloud, &NAMES, "sslCertificates").await;
    }
    // A configured name the map lacks is refused too, even if the proxy does
    // not serve it yet.
    in_map(&gcp, "cm-www", &NAMES[1..], false).await;
    let unserved = refused(
        mapmove::attach_certificate_map(
            &gcp,
            PROXY,
            MAP,
            &["api.example.test".into()],
            &[],
            false,
            true,
        )
        .await,
    );
    assert_eq!(unserved.len(), 1, "{unserved:?}");
    assert!(unserved[0].starts_with("api.example.test:"), "{unserved:?}");
    // A dry run that would pass changes nothing and says what it would do.
    let r = mapmove::attach_certificate_map(&gcp, PROXY, MAP, &[], &[], true, true)
        .await
        .unwrap();
    assert!(!r.changed);
    assert!(
        r.lines
            .last()
            .unwrap()
            .starts_with("dry run: would attach certificate map m to target HTTPS proxy p"),
        "{:?}",
        r.lines
    );
    assert_eq!(proxy_changes(&cloud).await, 0);
    all_served(&cloud, &NAMES, "sslCertificates").await;

    // For real: one setCertificateMap, then the map serves both.
    let r = mapmove::attach_certificate_map(&gcp, PROXY, MAP, &[], &[], false, true)
        .await
        .unwrap();
    assert!(r.changed, "{:?}", r.lines);
    assert_eq!(proxy_changes(&cloud).await, 1);
    assert_eq!(
        all_served(&cloud, &NAMES, "certificateMap").await,
        ["cm-a", "cm-www"]
    );
    let (_, px) = cloud
        .get(&format!(
            "compute/v1/projects/{PROJECT}/global/targetHttpsProxies/{PROXY}"
        ))
        .await;
    assert!(
        px["sslCertificates"][0]
            .as_str()
            .unwrap()
            .ends_with("/legacy"),
        "kept: {px}"
    );
    // Again: nothing to do.
    let r = mapmove::attach_certificate_map(&gcp, PROXY, MAP, &[], &[], false, true)
        .await
        .unwrap();
    assert!(!r.changed);
    assert_eq!(proxy_changes(&cloud).await, 1);

    // Back: a name of the map the sslCertificates do not cover is refused.
    in_map(&gcp, "cm-new", &["new.example.test"], false).await;
    for dry in [true, false] {
        let unserved = refused(mapmove::detach_certificate_map(&gcp, PROXY, &[], dry, true).await);
        assert_eq!(unserved.len(), 1, "{unserved:?}");
        assert!(
            unserved[0].starts_with("new.example.test: no certificate of its sslCertificates (legacy) covers new.example.test"),
            "{unserved:?}"
        );
        all_served(
            &cloud,
            &["a.example.test", "www.example.test", "new.example.test"],
            "certificateMap",
        )
        .await;
    }
    drop_entry(&gcp, "new.example.test").await;
    let r = mapmove::detach_certificate_map(&gcp, PROXY, &[], true, true)
        .await
        .unwrap();
    assert!(!r.changed);
    all_served(&cloud, &NAMES, "certificateMap").await;
    let r = mapmove::detach_certificate_map(&gcp, PROXY, &[], false, true)
        .await
        .unwrap();
    assert!(r.changed, "{:?}", r.lines);
    assert_eq!(proxy_changes(&cloud).await, 2);
    assert_eq!(
        all_served(&cloud, &NAMES, "sslCertificates").await,
        ["legacy", "legacy"]
    );
    // The map and its entries are kept.
    assert!(gcp.get_certificate_map(MAP).await.unwrap().is_some());
    assert_eq!(
        gcp.list_certificate_map_entries(MAP, None)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_in_the_map_is_refused() {
    let (cloud, gcp) = world().await;
    in_map(&gcp, "cm-a", &NAMES[..1], false).await;
    in_map(&gcp, "cm-old", &NAMES[1..], true).await;
    let unserved =
        refused(mapmove::attach_certificate_map(&gcp, PROXY, MAP, &[], &[], false, true).await);
    assert_eq!(unserved.len(), 1, "{unserved:?}");
    assert!(
        unserved[0].starts_with("www.example.test: entry www-example-test of certificate map m serves www.example.test with certificate cm-old, which expired at"),
        "{unserved:?}"
    );
    assert_eq!(proxy_changes(&cloud).await, 0);
    all_served(&cloud, &NAMES, "sslCertificates").await;
    // In a dry run, names a configured certificate installs first count as
    // served, and are said to be.
    let r = mapmove::attach_certificate_map(
        &gcp,
        PROXY,
        MAP,
        &[],
        &[("www.example.test".into(), "app".into())],
        true,
        true,
    )
    .await
    .unwrap();
    assert!(
        r.lines.iter().any(
            |l| l.contains("www.example.test: certificate app is installed into the map first")
        ),
        "{:?}",
        r.lines
    );
    // A proxy that does not exist.
    match mapmove::attach_certificate_map(&gcp, "nope", MAP, &[], &[], true, true).await {
        Err(MoveError::ProxyNotFound { proxy, .. }) => assert_eq!(proxy, "nope"),
        other => panic!("{other:?}"),
    }
}

/// The real binary, `gclb-acme certificate-map attach|detach`, with a
/// configured certificate of the map that is not in it yet: the dry run says
/// it would be installed first and changes nothing; the real run issues it into
/// the map (Pebble, DNS-01), then attaches; detaching goes back to the
/// sslCertificates (still valid). The names are asked of the emulator after
/// each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_installs_the_configured_certificate_first_then_moves() {
    use support::lb::Lab;
    let lab = Lab::start().await;
    let names = ["example.test", "*.example.test"];
    let old = lab.upload(&names, 5, 90, None, "legacy").await;
    lab.proxy("p1", &[&old]).await;
    let path = lab.write_cli_config("");
    let text = std::fs::read_to_string(&path).unwrap();
    // The shared configuration points Certificate Manager at the emulator too.
    assert!(text.contains("certificatemanager = "), "{text}");
    let text = text.replace("target_https_proxies = [\"p1\"]", "certificate_map = \"m\"");
    std::fs::write(&path, text).unwrap();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gclb-acme"))
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("GCLB_ACME_CONFIG")
            .env("HOME", home.path())
            .env("GCE_METADATA_HOST", lab.metadata_host())
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("$ gclb-acme {}\n{text}", args.join(" "));
        (out.status.code(), text)
    };
    let served_from = |source: &'static str| {
        let cloud = &lab.cloud;
        async move {
            for n in ["example.test", "www.example.test"] {
                let (s, v) = cloud
                    .get(&format!("emulator/served?proxy=p1&sni={n}"))
                    .await;
                assert_eq!(s, 200, "{n}: {v}");
                assert_eq!(v["source"], source, "{n}: {v}");
            }
        }
    };
    served_from("sslCertificates").await;

    // The map does not exist yet: the dry run says the certificate would be
    // installed first, counts its names, and changes nothing.
    let (code, out) = run(&[
        "certificate-map",
        "attach",
        "--proxy",
        "p1",
        "--map",
        "m",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("certificate app is not served by certificate map m yet"),
        "{out}"
    );
    assert!(out.contains("it would be installed first"), "{out}");
    assert!(
        out.contains("dry run: would attach certificate map m to target HTTPS proxy p1"),
        "{out}"
    );
    assert!(
        lab.cloud
            .gcp()
            .get_certificate_map("m")
            .await
            .unwrap()
            .is_none()
    );
    served_from("sslCertificates").await;

    let (code, out) = run(&["certificate-map", "attach", "--proxy", "p1", "--map", "m"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("installing it first"), "{out}");
    served_from("certificateMap").await;

    let (code, out) = run(&["certificate-map", "detach", "--proxy", "p1", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    served_from("certificateMap").await;
    let (code, out) = run(&["certificate-map", "detach", "--proxy", "p1"]);
    assert_eq!(code, Some(0), "{out}");
    served_from("sslCertificates").await;
    // Nothing to do twice.
    let (code, out) = run(&["certificate-map", "detach", "--proxy", "p1"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("serves no certificate map: nothing to do"),
        "{out}"
    );

    // A map lacking a name the proxy serves: refused, exit 1, nothing changed.
    let gcp = lab.cloud.gcp();
    let op = gcp
        .create_certificate_map("thin", &MapFields::default())
        .await
        .unwrap();
    gcp.wait_certificate_manager(op, WAIT).await.unwrap();
    let (code, out) = run(&[
        "certificate-map",
        "attach",
        "--proxy",
        "p1",
        "--map",
        "thin",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused:"), "{out}");
    assert!(out.contains("NOT SERVED"), "{out}");
    served_from("sslCertificates").await;
}
