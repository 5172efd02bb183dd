//! Two processes never work on one certificate at once: `gclb-acme renew`
//! started while another holder has the certificate's lock in the state
//! directory waits (and says for whom), then renews once the lock is free.

mod support;

use std::time::{Duration, Instant};

use gclb_acme::state::StateDir;
use support::fleet::{self, Fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_waits_for_the_holder_of_the_certificate_lock() {
    let f = Fleet::start(1, Duration::from_secs(3600)).await;
    let config = f.write_config("verify_after_swap = false", "");
    let home = tempfile::tempdir().expect("tmp");
    let state = StateDir::open(f.lab.state_dir()).expect("state dir");
    let held = state
        .try_lock_certificate(&fleet::cert(0))
        .expect("lock file")
        .expect("free at first");

    let log = f.lab.tmp.path().join("renew.log");
    let mut child = fleet::command(
        &f.lab,
        home.path(),
        &log,
        &["renew", "--config", config.to_str().expect("utf-8")],
    )
    .spawn()
    .expect("run gclb-acme");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();

    // It says it waits, for us.
    let started = Instant::now();
    let waiting = format!("(pid {})", std::process::id());
    while !read().contains("another gclb-acme process is working on this certificate")
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = read();
    assert!(
        text.contains("another gclb-acme process is working on this certificate"),
        "{text}"
    );
    // Still waiting a while later, and nothing was issued or uploaded meanwhile.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(child.try_wait().expect("wait").is_none(), "{}", read());
    assert!(
        read().contains(&format!("process {waiting} working on it")),
        "the still-waiting line names the holder:\n{}",
        read()
    );
    assert!(f.issued().is_empty(), "issued while the lock was held");

    drop(held);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    let text = read();
    assert!(status.success(), "{text}");
    assert_eq!(f.issued().len(), 1, "{text}");
    f.assert_converged().await;
}
