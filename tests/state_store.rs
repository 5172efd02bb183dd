//! The state seam of issue 17 against the gcp-emulator: the typed Cloud Storage
//! client (412 as its own outcome, never retried), the `Store` contract run
//! identically on the directory and on a bucket, and leases on both (racing
//! holders, expiry and takeover, a 412 on renew meaning "lost").

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use gclb_acme::gcp::storage::{Condition, StorageError};
use gclb_acme::state::lease::{Acquired, LeaseError, Leases, LostReason, Params};
use gclb_acme::state::{
    Backend, DirStore, Expect, GcsLocation, GcsStore, Store, StoreError, Version,
};
use serde_json::json;
use support::gcp::{Cloud, PROJECT};

const BUCKET: &str = "gclb-acme-state";

async fn cloud_with_bucket() -> Cloud {
    let cloud = Cloud::start().await;
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
    cloud
}

fn gcs_store(cloud: &Cloud, prefix: &str) -> GcsStore {
    let loc = GcsLocation::parse(&format!("gs://{BUCKET}/{prefix}")).unwrap();
    GcsStore::new(cloud.gcp(), loc)
}

#[tokio::test]
async fn client_reads_writes_and_deletes_by_generation() {
    let cloud = cloud_with_bucket().await;
    let gcp = cloud.gcp();
    assert!(gcp.get_object(BUCKET, "a/b.json").await.unwrap().is_none());

    let m = gcp
        .insert_object(
            BUCKET,
            "a/b.json",
            b"one",
            "application/json",
            Condition::DoesNotExist,
        )
        .await
        .unwrap();
    assert_eq!(
        (m.name.as_str(), m.size, m.metageneration),
        ("a/b.json", 3, 1)
    );
    let again = gcp
        .insert_object(
            BUCKET,
            "a/b.json",
            b"two",
            "application/json",
            Condition::DoesNotExist,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&again, StorageError::PreconditionFailed { bucket, object } if bucket == BUCKET && object == "a/b.json"),
        "{again}"
    );

    let got = gcp.get_object(BUCKET, "a/b.json").await.unwrap().unwrap();
    assert_eq!(
        (got.bytes.as_slice(), got.generation),
        (&b"one"[..], m.generation)
    );

    let m2 = gcp
        .insert_object(
            BUCKET,
            "a/b.json",
            b"two",
            "application/json",
            Condition::GenerationIs(m.generation),
        )
        .await
        .unwrap();
    assert!(m2.generation > m.generation);
    let stale = gcp
        .insert_object(
            BUCKET,
            "a/b.json",
            b"three",
            "application/json",
            Condition::GenerationIs(m.generation),
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, StorageError::PreconditionFailed { .. }));
    let meta = gcp
        .get_object_meta(BUCKET, "a/b.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.generation, m2.generation);

    // List by prefix: names in order, only under the prefix.
    gcp.insert_object(
        BUCKET,
        "a/c",
        b"",
        "application/octet-stream",
        Condition::None,
    )
    .await
    .unwrap();
    gcp.insert_object(
        BUCKET,
        "b/d",
        b"",
        "application/octet-stream",
        Condition::None,
    )
    .await
    .unwrap();
    let names: Vec<String> = gcp
        .list_objects(BUCKET, "a/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["a/b.json", "a/c"]);

    // Delete by generation: stale is a precondition failure, current deletes,
    // then the object is gone.
    let e = gcp
        .delete_object(BUCKET, "a/b.json", Condition::GenerationIs(m.generation))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed { .. }));
    assert!(
        gcp.delete_object(BUCKET, "a/b.json", Condition::GenerationIs(m2.generation))
            .await
            .unwrap()
    );
    assert!(
        !gcp.delete_object(BUCKET, "a/b.json", Condition::None)
            .await
            .unwrap()
    );

    let b = gcp.get_bucket(BUCKET).await.unwrap();
    assert!(b.uniform_access() && b.public_access_prevented());
    assert!(b.default_kms_key().is_none());
    assert!(
        !gcp.bucket_iam_bindings(BUCKET)
            .await
            .unwrap()
            .iter()
            .any(|b| b.is_public())
    );
    let held = gcp
        .test_bucket_permissions(BUCKET, &["storage.objects.get", "storage.objects.create"])
        .await
        .unwrap();
    assert_eq!(held, ["storage.objects.get", "storage.objects.create"]);
    let e = gcp.get_bucket("no-such-bucket").await.unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
}

#[tokio::test]
async fn a_412_is_never_retried_but_a_503_is() {
    let cloud = cloud_with_bucket().await;
    let gcp = cloud.gcp();
    gcp.insert_object(BUCKET, "x", b"1", "text/plain", Condition::DoesNotExist)
        .await
        .unwrap();
    cloud.clear_requests().await;
    let e = gcp
        .insert_object(BUCKET, "x", b"2", "text/plain", Condition::DoesNotExist)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::PreconditionFailed { .. }));
    assert_eq!(cloud.count("storage.objects.insert", false).await, 1);

    cloud
        .fault(json!({"method": "storage.objects.insert", "count": 2, "status": 503}))
        .await;
    cloud.clear_requests().await;
    gcp.insert_object(BUCKET, "y", b"1", "text/plain", Condition::DoesNotExist)
        .await
        .unwrap();
    assert_eq!(cloud.count("storage.objects.insert", false).await, 3);
    assert_eq!(cloud.count("storage.objects.insert", true).await, 1);
}

/// The contract of `Store`, identical for every backend.
async fn contract<S: Store>(s: &S) {
    let loc = s.location();
    assert!(s.read("pending/www.json").await.unwrap().is_none(), "{loc}");

    // Create-only: once.
    let v1 = s
        .write("pending/www.json", b"one", Expect::Absent)
        .await
        .unwrap();
    let e = s
        .write("pending/www.json", b"other", Expect::Absent)
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{loc}: {e}");
    let got = s.read("pending/www.json").await.unwrap().unwrap();
    assert_eq!(
        (got.data.as_slice(), &got.version),
        (&b"one"[..], &v1),
        "{loc}"
    );

    // Replace by version: the current one wins, a stale one conflicts and
    // changes nothing.
    let v2 = s
        .write("pending/www.json", b"two", Expect::Version(v1.clone()))
        .await
        .unwrap();
    assert_ne!(v1, v2, "{loc}");
    let e = s
        .write("pending/www.json", b"three", Expect::Version(v1.clone()))
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{loc}: {e}");
    assert_eq!(
        s.read("pending/www.json").await.unwrap().unwrap().data,
        b"two"
    );
    // A version of an absent object never holds.
    let e = s
        .write("pending/none.json", b"x", Expect::Version(v2.clone()))
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{loc}: {e}");
    // A version from another backend is not a version here.
    let e = s
        .write(
            "pending/www.json",
            b"x",
            Expect::Version(Version::new("junk")),
        )
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{loc}: {e}");

    // Unconditional writes, listing at any depth, in order.
    s.write("accounts/acme.json", b"{}", Expect::Any)
        .await
        .unwrap();
    s.write("daemon/app.json", b"{}", Expect::Any)
        .await
        .unwrap();
    s.write("pending/api.json", b"{}", Expect::Any)
        .await
        .unwrap();
    assert_eq!(
        s.list("pending/").await.unwrap(),
        ["pending/api.json", "pending/www.json"],
        "{loc}"
    );
    assert_eq!(
        s.list("").await.unwrap(),
        [
            "accounts/acme.json",
            "daemon/app.json",
            "pending/api.json",
            "pending/www.json"
        ],
        "{loc}"
    );
    assert_eq!(
        s.list("pending/a").await.unwrap(),
        ["pending/api.json"],
        "{loc}"
    );
    assert!(s.list("nothing/").await.unwrap().is_empty(), "{loc}");

    // Delete by version: stale conflicts, current deletes, absent is false.
    let e = s
        .delete("pending/www.json", Expect::Version(v1.clone()))
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{loc}: {e}");
    let e = s
        .delete("pending/www.json", Expect::Absent)
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{loc}: {e}");
    assert!(
        s.delete("pending/www.json", Expect::Version(v2))
            .await
            .unwrap(),
        "{loc}"
    );
    assert!(
        !s.delete("pending/www.json", Expect::Any).await.unwrap(),
        "{loc}"
    );
    assert!(
        !s.delete("pending/www.json", Expect::Version(v1))
            .await
            .unwrap(),
        "{loc}"
    );

    // Names that could escape or hide are refused before any I/O.
    for bad in ["../x", "/abs", "a//b", ".hidden", "a b"] {
        let e = s.write(bad, b"x", Expect::Any).await.unwrap_err();
        assert!(matches!(e, StoreError::State(_)), "{loc}: {bad:?}: {e}");
        assert!(s.read(bad).await.is_err(), "{loc}: {bad:?}");
    }
}

#[tokio::test]
async fn the_directory_keeps_the_store_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let s = DirStore::open(tmp.path().join("state")).unwrap();
    contract(&s).await;
    // The same through the backend a configuration chooses.
    let s = DirStore::open(tmp.path().join("other")).unwrap();
    contract(&Backend::Dir(s)).await;
}

#[tokio::test]
async fn a_bucket_keeps_the_store_contract() {
    let cloud = cloud_with_bucket().await;
    contract(&Backend::Gcs(Box::new(gcs_store(&cloud, "prod")))).await;
    // Under its prefix only: the same names elsewhere in the bucket are apart.
    let other = gcs_store(&cloud, "staging");
    assert!(other.list("").await.unwrap().is_empty());
    let objects = cloud.gcp().list_objects(BUCKET, "").await.unwrap();
    assert!(
        objects.iter().all(|o| o.name.starts_with("prod/")),
        "{objects:?}"
    );
}

/// What the directory store writes is what the state directory always wrote:
/// the same bytes, 0600, at the same path, readable by `StateDir`.
#[tokio::test]
async fn the_directory_store_writes_todays_files() {
    let tmp = tempfile::tempdir().unwrap();
    let s = DirStore::open(tmp.path()).unwrap();
    let data = b"{\n  \"certificate\": \"www\"\n}";
    let v = s
        .write("pending/www.json", data, Expect::Absent)
        .await
        .unwrap();
    let path = tmp.path().join("pending/www.json");
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(s.dir().read("pending/www.json").unwrap().unwrap(), data);
    assert_eq!(v, DirStore::version_of(data));
    // Files StateDir wrote are read with their version, and lock files are not state.
    s.dir().write("daemon/app.json", b"{}").unwrap();
    let _lock = s.dir().try_lock_certificate("www").unwrap().unwrap();
    assert_eq!(
        s.list("").await.unwrap(),
        ["daemon/app.json", "pending/www.json"]
    );
}

/// Many writers race one create-only write: exactly one wins, on both backends
/// (worker threads, so the directory's writers really run at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conditional_writes_have_exactly_one_winner() {
    let cloud = cloud_with_bucket().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = DirStore::open(tmp.path()).unwrap();
    let gcs = gcs_store(&cloud, "race");
    for round in 0..10 {
        let name = format!("leases/c{round}.json");
        let mut dir_tasks = Vec::new();
        let mut gcs_tasks = Vec::new();
        for w in 0..8 {
            let (d, g, n) = (dir.clone(), gcs.clone(), name.clone());
            let data = format!("writer {w}").into_bytes();
            let data2 = data.clone();
            let n2 = n.clone();
            dir_tasks.push(tokio::spawn(async move {
                d.write(&n, &data, Expect::Absent).await.is_ok()
            }));
            gcs_tasks.push(tokio::spawn(async move {
                g.write(&n2, &data2, Expect::Absent).await.is_ok()
            }));
        }
        for (what, tasks) in [("dir", dir_tasks), ("gcs", gcs_tasks)] {
            let mut wins = 0;
            for t in tasks {
                wins += usize::from(t.await.unwrap());
            }
            assert_eq!(wins, 1, "{what} round {round}");
        }
    }
}

const SECOND: u64 = 1_000;

fn params() -> Params {
    Params::new(30 * SECOND, 2 * SECOND).unwrap()
}

/// Holders racing for each of several leases: exactly one holds each.
async fn race_for_leases<S: Store + Clone + 'static>(store: S) {
    let now = 1_000_000;
    for cert in ["app", "api", "www"] {
        let mut tasks = Vec::new();
        for h in 0..6 {
            let leases = Leases::new(store.clone(), format!("daemon-{h}"), params());
            tasks.push(tokio::spawn(async move { leases.acquire(cert, now).await }));
        }
        let mut holders = BTreeSet::new();
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Acquired::Held { lease, took_over } => {
                    assert_eq!(took_over, None);
                    holders.insert(lease.record.holder);
                }
                Acquired::Busy { until_unix_ms, .. } => {
                    assert_eq!(until_unix_ms, now + 32 * SECOND);
                    busy += 1;
                }
            }
        }
        assert_eq!((holders.len(), busy), (1, 5), "{cert}: {holders:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_holders_racing_for_a_lease_exactly_one_wins() {
    let cloud = cloud_with_bucket().await;
    race_for_leases(gcs_store(&cloud, "leases-race")).await;
    let tmp = tempfile::tempdir().unwrap();
    race_for_leases(DirStore::open(tmp.path()).unwrap()).await;
}

/// Expiry and takeover, then the old holder's renewal is refused ("lost"),
/// and a release never deletes another's lease.
async fn expiry_and_takeover<S: Store + Clone>(store: S) {
    let a = Leases::new(store.clone(), "daemon-a".into(), params());
    let b = Leases::new(store.clone(), "daemon-b".into(), params());
    let t0 = 5_000_000;
    let Acquired::Held {
        lease: mut held_a, ..
    } = a.acquire("app", t0).await.unwrap()
    else {
        panic!("a did not get a free lease")
    };
    // Renewed while live: the lease moves on, still a's.
    a.renew(&mut held_a, t0 + 20 * SECOND).await.unwrap();
    let expiry = held_a.record.expires_unix_ms;
    assert_eq!(expiry, t0 + 50 * SECOND);
    assert_eq!(held_a.record.acquired_unix_ms, t0);
    // b waits while it is live, and through the skew margin after its expiry.
    for at in [t0 + 21 * SECOND, expiry, expiry + 2 * SECOND - 1] {
        match b.acquire("app", at).await.unwrap() {
            Acquired::Busy {
                holder,
                until_unix_ms,
            } => {
                assert_eq!(
                    (holder.as_str(), until_unix_ms),
                    ("daemon-a", expiry + 2 * SECOND)
                );
            }
            other => panic!("b at {at}: {other:?}"),
        }
    }
    // Past the margin b takes it over, naming a.
    let Acquired::Held {
        lease: held_b,
        took_over,
    } = b.acquire("app", expiry + 2 * SECOND).await.unwrap()
    else {
        panic!("b did not take over")
    };
    assert_eq!(took_over.as_deref(), Some("daemon-a"));
    // a's renewal: lost, and the lease is b's.
    let stale = held_a.clone();
    let e = a.renew(&mut held_a, expiry + 3 * SECOND).await.unwrap_err();
    assert!(
        matches!(&e, LeaseError::Lost { reason: LostReason::Moved { holder: Some(h) }, .. } if h == "daemon-b"),
        "{e}"
    );
    assert_eq!(held_a, stale, "a lost lease is left as it was");
    // a's release deletes nothing; b's does.
    assert!(!a.release(held_a).await.unwrap());
    assert!(b.release(held_b).await.unwrap());
    assert!(
        store
            .read(&Leases::<S>::object_name("app"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn leases_expire_and_are_taken_over() {
    let cloud = cloud_with_bucket().await;
    expiry_and_takeover(gcs_store(&cloud, "leases-expiry")).await;
    let tmp = tempfile::tempdir().unwrap();
    expiry_and_takeover(DirStore::open(tmp.path()).unwrap()).await;
}

#[tokio::test]
async fn a_412_on_renew_means_the_lease_is_lost() {
    let cloud = cloud_with_bucket().await;
    let leases = Leases::new(gcs_store(&cloud, "p"), "daemon-a".into(), params());
    let t0 = 9_000_000;
    let Acquired::Held {
        lease: mut held, ..
    } = leases.acquire("app", t0).await.unwrap()
    else {
        panic!("not acquired")
    };
    cloud
        .fault(json!({"method": "storage.objects.insert", "count": 1, "status": 412}))
        .await;
    let e = leases.renew(&mut held, t0 + SECOND).await.unwrap_err();
    assert!(matches!(e, LeaseError::Lost { .. }), "{e}");
}

/// A conditional write whose answer was lost (here: garbled) is retried; the
/// retry meets its own object and still reports success, so a lease create
/// that succeeded is never mistaken for a lost race.
#[tokio::test]
async fn a_retried_create_recognises_its_own_write() {
    let cloud = cloud_with_bucket().await;
    let store = gcs_store(&cloud, "p");
    cloud
        .fault(json!({"method": "storage.objects.insert", "count": 1, "kind": "corrupt"}))
        .await;
    cloud.clear_requests().await;
    let leases = Leases::new(store.clone(), "daemon-a".into(), params());
    let got = leases.acquire("app", 1_000_000).await.unwrap();
    assert!(matches!(got, Acquired::Held { .. }), "{got:?}");
    // First attempt applied (answer garbled), the retry got 412, then one read.
    let log: Vec<(String, u64)> = cloud
        .requests()
        .await
        .iter()
        .filter_map(|r| Some((r["id"].as_str()?.to_string(), r["status"].as_u64()?)))
        .collect();
    let inserts: Vec<u64> = log
        .iter()
        .filter(|(id, _)| id == "storage.objects.insert")
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(inserts, [200, 412], "{log:?}");
}

/// What `check` learns about the state bucket: a well-set bucket has no
/// problem; a public, ACL-mode one and missing permissions are each named.
#[tokio::test]
async fn check_sees_the_buckets_protection_and_missing_permissions() {
    let cloud = cloud_with_bucket().await;
    let store = gcs_store(&cloud, "p");
    let r = store.inspect().await.unwrap();
    assert_eq!(r.uniform_access, Some(true));
    assert_eq!(r.public_access_prevented, Some(true));
    assert_eq!(r.public_roles, Some(vec![]));
    assert!(r.problems().is_empty(), "{:?}", r.problems());

    let (s, b) = cloud
        .post(
            &format!("storage/v1/b?project={PROJECT}"),
            json!({"name": "loose-bucket"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let url = format!("{}storage/v1/b/loose-bucket/iam", cloud.emu.base_url());
    let resp = cloud
        .http
        .put(url)
        .json(
            &json!({"bindings": [{"role": "roles/storage.objectViewer", "members": ["allUsers"]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    cloud
        .grant(Some(&[
            "storage.objects.get",
            "storage.objects.list",
            "storage.objects.create",
            "storage.buckets.get",
            "storage.buckets.getIamPolicy",
        ]))
        .await;
    let loose = GcsStore::new(
        cloud.gcp(),
        GcsLocation::parse("gs://loose-bucket").unwrap(),
    );
    let r = loose.inspect().await.unwrap();
    assert_eq!(r.missing_permissions, ["storage.objects.delete"]);
    assert_eq!(
        r.public_roles,
        Some(vec!["roles/storage.objectViewer".to_string()])
    );
    assert_eq!(r.problems().len(), 4, "{:?}", r.problems());

    // Without the bucket-level read permissions those settings are unknown,
    // not failures.
    cloud.grant(Some(&["storage.objects.get"])).await;
    let r = loose.inspect().await.unwrap();
    assert_eq!((r.uniform_access, r.public_roles.clone()), (None, None));
    assert_eq!(r.missing_permissions.len(), 3);
}

/// The Cloud Storage calls each lease step costs (the figure in
/// docs/high-availability.md): acquire a free lease 2 (read, create), renew 1,
/// release 1, find it busy 1, take over an expired one 2.
#[tokio::test]
async fn lease_steps_cost_one_or_two_calls() {
    let cloud = cloud_with_bucket().await;
    let a = Leases::new(gcs_store(&cloud, "p"), "daemon-a".into(), params());
    let b = Leases::new(gcs_store(&cloud, "p"), "daemon-b".into(), params());
    let calls = || async {
        let n = cloud
            .requests()
            .await
            .iter()
            .filter(|r| {
                r["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("storage."))
            })
            .count();
        cloud.clear_requests().await;
        n
    };
    cloud.clear_requests().await;
    let t0 = 1_000_000;
    let Acquired::Held {
        lease: mut held, ..
    } = a.acquire("app", t0).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(calls().await, 2, "acquire");
    a.renew(&mut held, t0 + 20 * SECOND).await.unwrap();
    assert_eq!(calls().await, 1, "renew");
    assert!(matches!(
        b.acquire("app", t0 + 21 * SECOND).await.unwrap(),
        Acquired::Busy { .. }
    ));
    assert_eq!(calls().await, 1, "busy");
    let Acquired::Held { lease: held_b, .. } = b.acquire("app", t0 + 60 * SECOND).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(calls().await, 2, "take over");
    assert!(b.release(held_b).await.unwrap());
    assert_eq!(calls().await, 1, "release");
}

/// A kept lease is renewed in the background (its version moves on, another
/// holder stays out), and a 412 on a renewal makes the guard report it lost.
/// Outcomes are waited for with a generous deadline; nothing is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_lease_renews_itself_and_reports_its_loss() {
    use gclb_acme::state::lease::now_unix_ms;
    use std::time::Duration;
    let cloud = cloud_with_bucket().await;
    let p = Params::new(3 * SECOND, 300).unwrap();
    let a = Leases::new(gcs_store(&cloud, "p"), "daemon-a".into(), p);
    let b = Leases::new(gcs_store(&cloud, "p"), "daemon-b".into(), p);
    let Acquired::Held { lease, .. } = a.acquire("app", now_unix_ms()).await.unwrap() else {
        panic!()
    };
    let first = lease.version.clone();
    let mut guard = a.keep(lease);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while guard.held().version == first {
        assert!(std::time::Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        b.acquire("app", now_unix_ms()).await.unwrap(),
        Acquired::Busy { .. }
    ));
    cloud
        .fault(json!({"method": "storage.objects.insert", "count": 1, "status": 412}))
        .await;
    tokio::time::timeout(Duration::from_secs(60), guard.lost())
        .await
        .expect("the loss is reported");
    assert!(!guard.is_held());
    // Released after the loss: nothing deleted (it may be someone else's).
    assert!(!guard.release().await.unwrap());
}

#[tokio::test]
async fn a_location_opens_its_backend() {
    let cloud = cloud_with_bucket().await;
    let gcp = cloud.gcp();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let b = Backend::open(dir.to_str().unwrap(), &gcp).unwrap();
    assert!(matches!(b, Backend::Dir(_)));
    assert_eq!(b.location(), dir.display().to_string());
    let b = Backend::open(&format!("gs://{BUCKET}/prod"), &gcp).unwrap();
    assert!(matches!(b, Backend::Gcs(_)));
    assert_eq!(b.location(), format!("gs://{BUCKET}/prod"));
    b.write("x.json", b"{}", Expect::Absent).await.unwrap();
    for bad in ["s3://bucket/x", "gs://Bad_Bucket"] {
        let e = Backend::open(bad, &gcp).unwrap_err();
        assert!(matches!(e, StoreError::BadLocation { .. }), "{bad}: {e}");
    }
}

/// Directory to bucket and back: a dry run writes nothing, a real run copies
/// everything but leases, never overwrites different content, and a second
/// run finds everything identical.
#[tokio::test]
async fn state_moves_between_a_directory_and_a_bucket_losing_nothing() {
    use gclb_acme::state::migrate::copy_all;
    let cloud = cloud_with_bucket().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = DirStore::open(tmp.path().join("a")).unwrap();
    let bucket = gcs_store(&cloud, "moved");
    let files: [(&str, &[u8]); 4] = [
        ("accounts/0123456789abcdef.json", b"{\"account\": 1}"),
        (
            "pending/www.json",
            b"{\"key\": \"-----BEGIN PRIVATE KEY-----\"}",
        ),
        ("daemon/www.json", b"{}"),
        ("keys/www.json", b"{\"k\": 2}"),
    ];
    for (n, d) in files {
        dir.write(n, d, Expect::Any).await.unwrap();
    }
    let leases = Leases::new(dir.clone(), "daemon-a".into(), params());
    assert!(matches!(
        leases.acquire("www", 1).await.unwrap(),
        Acquired::Held { .. }
    ));
    // Something already in the bucket with other content is a conflict.
    bucket
        .write("keys/www.json", b"other", Expect::Any)
        .await
        .unwrap();

    let dry = copy_all(&dir, &bucket, true).await.unwrap();
    assert_eq!(dry.copied.len(), 3);
    assert_eq!(dry.conflicts, ["keys/www.json"]);
    assert_eq!(
        bucket.list("").await.unwrap(),
        ["keys/www.json"],
        "a dry run writes nothing"
    );

    let done = copy_all(&dir, &bucket, false).await.unwrap();
    assert_eq!(done.copied, dry.copied);
    assert!(!done.complete());
    for (n, d) in &files[..3] {
        assert_eq!(bucket.read(n).await.unwrap().unwrap().data, *d, "{n}");
    }
    assert_eq!(
        bucket.read("keys/www.json").await.unwrap().unwrap().data,
        b"other"
    );
    assert!(bucket.read("leases/www.json").await.unwrap().is_none());

    // And back into a fresh directory: the same bytes.
    let back = DirStore::open(tmp.path().join("b")).unwrap();
    let r = copy_all(&bucket, &back, false).await.unwrap();
    assert!(r.complete() && r.copied.len() == 4, "{r:?}");
    let again = copy_all(&bucket, &back, false).await.unwrap();
    assert_eq!((again.copied.len(), again.identical.len()), (0, 4));
    for (n, d) in &files[..3] {
        assert_eq!(
            std::fs::read(tmp.path().join("b").join(n)).unwrap(),
            *d,
            "{n}"
        );
    }
}

/// `state::State`, the handle every caller uses: plain reads, writes and
/// listings behave alike on a directory and a bucket, and the certificate
/// lock is a `flock` on the one and a lease on the other (busy for another
/// holder, named; released on `release` and, in the background, on drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_handle_reads_writes_lists_and_locks_on_both_backends() {
    use gclb_acme::state::{State, StateDir};
    let cloud = cloud_with_bucket().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir: State = StateDir::open(tmp.path().join("s")).unwrap().into();
    let bucket = |holder: &str| {
        State::with_leases(
            Backend::Gcs(Box::new(gcs_store(&cloud, "h"))),
            holder.to_string(),
            params(),
        )
    };
    let (a, b) = (bucket("daemon-a"), bucket("daemon-b"));
    for s in [&dir, &a] {
        assert_eq!(s.read("pending/x.json").await.unwrap(), None);
        s.write_json("pending/x.json", &json!({"k": 1}))
            .await
            .unwrap();
        s.write("pending/y.json", b"{}").await.unwrap();
        s.write("pending/deeper/z.json", b"{}").await.unwrap();
        assert_eq!(
            s.read_json::<serde_json::Value>("pending/x.json")
                .await
                .unwrap(),
            Some(json!({"k": 1}))
        );
        // Names directly inside, like a directory listing.
        assert_eq!(s.list("pending").await.unwrap(), ["x.json", "y.json"]);
        assert!(s.remove("pending/x.json").await.unwrap());
        assert!(!s.remove("pending/x.json").await.unwrap());
        assert!(s.read("../x").await.is_err());
        let e = s.read_json::<Vec<u8>>("pending/y.json").await.unwrap_err();
        assert!(e.to_string().contains("pending/y.json"), "{e}");
    }
    assert!(!dir.shared() && a.shared());
    // Create-only in a bucket (the ACME account: daemons agree on the first);
    // a directory writes as it always did.
    assert!(a.create_json("accounts/x.json", &json!(1)).await.unwrap());
    assert!(!b.create_json("accounts/x.json", &json!(2)).await.unwrap());
    assert_eq!(
        a.read_json::<serde_json::Value>("accounts/x.json")
            .await
            .unwrap(),
        Some(json!(1))
    );
    assert!(dir.create_json("accounts/x.json", &json!(1)).await.unwrap());
    assert!(dir.create_json("accounts/x.json", &json!(2)).await.unwrap());
    assert_eq!(
        dir.read_json::<serde_json::Value>("accounts/x.json")
            .await
            .unwrap(),
        Some(json!(2))
    );
    assert!(
        a.describe("pending/y.json")
            .display()
            .to_string()
            .starts_with("gs://gclb-acme-state/h")
    );

    // The directory: a flock, busy for a second taker, named by pid.
    let held = dir.try_lock_certificate("app").await.unwrap().unwrap();
    assert!(!held.is_lease());
    let busy = dir.try_lock_certificate("app").await.unwrap().unwrap_err();
    assert_eq!(busy.holder, Some(format!("pid {}", std::process::id())));
    held.check("app").unwrap();
    held.release("app").await;
    assert!(dir.try_lock_certificate("app").await.unwrap().is_ok());

    // The bucket: a lease, busy for another holder until its expiry.
    let held = a.try_lock_certificate("app").await.unwrap().unwrap();
    assert!(held.is_lease());
    held.check("app").unwrap();
    let busy = b.try_lock_certificate("app").await.unwrap().unwrap_err();
    assert_eq!(busy.holder.as_deref(), Some("daemon daemon-a"));
    assert!(busy.until_unix_ms.is_some());
    held.release("app").await;
    let held = b.try_lock_certificate("app").await.unwrap().unwrap();
    assert!(a.try_lock_certificate("app").await.unwrap().is_err());
    // Dropped (an error path): released in the background, not left to expire.
    drop(held);
    let started = std::time::Instant::now();
    loop {
        if a.try_lock_certificate("app").await.unwrap().is_ok() {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "a dropped lease was not released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
