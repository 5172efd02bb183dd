//! The load-balancer installer alone (no CA): the proxy limit, name collisions,
//! the quota, foreign certificates, look-alikes and "in use" retries, against
//! the gcp-emulator.

mod support;

use gclb_acme::config::{CertificateConfig, KeyType};
use gclb_acme::lb::cleanup;
use gclb_acme::lb::{self, LbError, RewriteError, naming};
use serde_json::json;
use support::gcp::{Cloud, PROJECT};
use support::lb::{NAMES, certificates, fast_install, proxy, self_signed, served, upload, url_map};

async fn cloud() -> Cloud {
    let c = Cloud::start().await;
    url_map(&c).await;
    c
}

fn config(proxies: &[&str]) -> CertificateConfig {
    CertificateConfig {
        name: "app".into(),
        domains: NAMES.iter().map(|s| s.to_string()).collect(),
        target_https_proxies: proxies.iter().map(|s| s.to_string()).collect(),
        key_type: KeyType::EcdsaP256,
        zone: None,
        reuse_key: false,
        adopt: Vec::new(),
        certificate_map: None,
        primary: false,
    }
}

fn no_verify() -> lb::InstallOptions {
    lb::InstallOptions {
        verify: None,
        ..fast_install()
    }
}

#[tokio::test]
async fn a_full_proxy_is_refused_by_name_before_anything_is_uploaded() {
    let c = cloud().await;
    let mut names = Vec::new();
    for i in 0..15 {
        names.push(
            upload(&c, &["other.test"], 1, 90, None, &format!("f{i}"))
                .await
                .0,
        );
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    proxy(&c, "full", &refs).await;
    let before = certificates(&c).await;
    let issued = self_signed(&NAMES, 0, 90);
    let err = lb::install(&c.gcp(), &config(&["full"]), &issued, &no_verify())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LbError::Rewrite(RewriteError::TooMany { proxy, count: 16 }) if proxy == "full"),
        "{err}"
    );
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(certificates(&c).await, before, "nothing uploaded");
    assert_eq!(c.count("compute.sslCertificates.insert", false).await, 15);
}

#[tokio::test]
async fn a_foreign_certificate_with_our_name_is_never_taken_over() {
    let c = cloud().await;
    let issued = self_signed(&NAMES, 0, 90);
    let our_name = naming::certificate_resource_name("app", &issued.leaf.sha256_hex);
    upload(&c, &["other.test"], 1, 90, None, &our_name).await;
    let (unrelated, _) = upload(&c, &["other.test"], 1, 90, None, "unrelated").await;
    proxy(&c, "p1", &[&unrelated]).await;
    c.clear_requests().await;
    let err = lb::install(&c.gcp(), &config(&["p1"]), &issued, &no_verify())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LbError::NameTaken { name } if *name == our_name),
        "{err}"
    );
    let kept = c
        .gcp()
        .get_ssl_certificate(&our_name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.description.as_deref(), Some("uploaded by hand"));
    assert_eq!(c.count("compute.sslCertificates.insert", false).await, 0);
    assert_eq!(served(&c, "p1").await, [unrelated]);
}

/// Issue #18: the quota is not read before the upload (one Compute read less
/// per renewal); Compute refuses the insert on a full quota and creates
/// nothing, and that refusal is the same clear error, Google's words kept.
#[tokio::test]
async fn an_exhausted_quota_refuses_the_upload_and_nothing_is_created() {
    let c = cloud().await;
    let (old, _) = upload(&c, &NAMES, 80, 90, Some("app"), "").await;
    proxy(&c, "p1", &[&old]).await;
    {
        let mut world = c.emu.shared().world();
        let p = world.project(PROJECT).expect("project");
        p.compute
            .quota_limits
            .insert("SSL_CERTIFICATES".into(), 1.0);
    }
    c.clear_requests().await;
    let issued = self_signed(&NAMES, 0, 90);
    let err = lb::install(&c.gcp(), &config(&["p1"]), &issued, &no_verify())
        .await
        .unwrap_err();
    let LbError::Quota { project, source } = &err else {
        panic!("expected LbError::Quota, got {err:?}");
    };
    assert_eq!(project, PROJECT);
    assert!(source.is(403, "quotaExceeded"), "{source}");
    let text = err.to_string();
    assert!(text.contains("SSL_CERTIFICATES quota of project"), "{text}");
    assert!(text.contains("nothing was created"), "{text}");
    // Google's own message, kept.
    assert!(text.contains("Quota 'SSL_CERTIFICATES' exceeded"), "{text}");
    assert_eq!(c.count("compute.sslCertificates.insert", false).await, 1);
    assert_eq!(c.count("compute.sslCertificates.insert", true).await, 0);
    assert_eq!(c.count("compute.projects.get", false).await, 0);
    assert_eq!(certificates(&c).await, std::slice::from_ref(&old));
    assert_eq!(served(&c, "p1").await, [old]);
}

/// Google may also answer a full quota inside the insert's operation
/// (`QUOTA_EXCEEDED`): the same error, nothing created, nothing swapped.
#[tokio::test]
async fn a_quota_refusal_inside_the_operation_is_the_same_error() {
    let c = cloud().await;
    let (old, _) = upload(&c, &NAMES, 80, 90, Some("app"), "").await;
    proxy(&c, "p1", &[&old]).await;
    c.clear_requests().await;
    c.fault(
        json!({"method": "compute.sslCertificates.insert", "count": 1, "kind": "operation",
                   "status": 403, "reason": "quotaExceeded",
                   "message": "Quota 'SSL_CERTIFICATES' exceeded.  Limit: 30.0 globally."}),
    )
    .await;
    let issued = self_signed(&NAMES, 0, 90);
    let err = lb::install(&c.gcp(), &config(&["p1"]), &issued, &no_verify())
        .await
        .unwrap_err();
    let LbError::Quota { source, .. } = &err else {
        panic!("expected LbError::Quota, got {err:?}");
    };
    assert!(source.is(403, "QUOTA_EXCEEDED"), "{source}");
    assert!(err.to_string().contains("Limit: 30.0 globally"), "{err}");
    assert_eq!(c.count("compute.sslCertificates.insert", false).await, 1);
    assert_eq!(certificates(&c).await, std::slice::from_ref(&old));
    assert_eq!(served(&c, "p1").await, [old]);
}

#[tokio::test]
async fn a_foreign_cover_gives_up_its_slot_and_its_resource_is_kept() {
    // Issue #14: appending behind it left two certificates for the names.
    let c = cloud().await;
    let (foreign, _) = upload(&c, &NAMES, 1, 90, None, "bought").await;
    let (other, _) = upload(&c, &["other.test"], 1, 90, None, "other").await;
    proxy(&c, "p1", &[&foreign, &other]).await;
    let issued = self_signed(&NAMES, 0, 90);
    let report = lb::install(&c.gcp(), &config(&["p1"]), &issued, &no_verify())
        .await
        .unwrap();
    assert_eq!(
        served(&c, "p1").await,
        [report.resource.clone(), other.clone()]
    );
    assert!(report.deleted.is_empty());
    assert_eq!(report.superseded.len(), 1);
    assert_eq!(report.superseded[0].name, foreign);
    assert_eq!(certificates(&c).await, {
        let mut v = vec![foreign, other, report.resource];
        v.sort();
        v
    });
}

#[tokio::test]
async fn cleanup_spares_look_alikes_other_configs_and_certificates_in_use() {
    let c = cloud().await;
    let (unused_ours, _) = upload(&c, &NAMES, 80, 90, Some("app"), "").await;
    let (used_ours, _) = upload(&c, &NAMES, 70, 90, Some("app"), "").await;
    let (other_config, _) = upload(&c, &NAMES, 80, 90, Some("app2"), "").await;
    // Our name shape, but a description copied from another certificate.
    let (look_alike, _) = upload(&c, &NAMES, 80, 90, None, "app-000000000000").await;
    proxy(&c, "elsewhere", &[&used_ours]).await;
    let (keep, _) = upload(&c, &NAMES, 0, 90, Some("app"), "").await;
    let deleted = cleanup(&c.gcp(), "app", &keep, &no_verify()).await.unwrap();
    assert_eq!(deleted, std::slice::from_ref(&unused_ours));
    let mut want = vec![used_ours, other_config, look_alike, keep];
    want.sort();
    assert_eq!(certificates(&c).await, want);
}

/// Issue #18: clean-up reads nothing before deleting. Compute refuses to
/// delete a certificate a proxy uses (400 `resourceInUseByAnotherResource`);
/// only then are the proxies listed, and one that a proxy not configured here
/// serves is kept, not waited for. Without a refusal, no list at all.
#[tokio::test]
async fn a_superseded_certificate_another_proxy_serves_is_kept_on_compute_refusal() {
    let c = cloud().await;
    let (old, _) = upload(&c, &NAMES, 80, 90, Some("app"), "").await;
    let (older, _) = upload(&c, &NAMES, 85, 90, Some("app"), "").await;
    proxy(&c, "p1", &[&old]).await;
    proxy(&c, "elsewhere", &[&older]).await;
    c.clear_requests().await;
    let issued = self_signed(&NAMES, 0, 90);
    let report = lb::install(&c.gcp(), &config(&["p1"]), &issued, &no_verify())
        .await
        .unwrap();
    assert_eq!(report.deleted, [old]);
    assert_eq!(
        served(&c, "p1").await,
        std::slice::from_ref(&report.resource)
    );
    assert_eq!(served(&c, "elsewhere").await, std::slice::from_ref(&older));
    let mut want = vec![older.clone(), report.resource.clone()];
    want.sort();
    assert_eq!(certificates(&c).await, want);
    // Both deletes were sent; Compute refused the one in use, once (kept, not
    // retried), and the proxies were listed once, for that refusal.
    assert_eq!(c.count("compute.sslCertificates.delete", false).await, 2);
    assert_eq!(c.count("compute.sslCertificates.delete", true).await, 1);
    assert_eq!(c.count("compute.targetHttpsProxies.list", false).await, 1);

    // The next renewal: its superseded certificate is deleted, and `older`,
    // still served elsewhere, is refused and kept again (one list, for that).
    c.clear_requests().await;
    let issued = self_signed(&NAMES, 0, 90);
    let second = lb::install(&c.gcp(), &config(&["p1"]), &issued, &no_verify())
        .await
        .unwrap();
    assert_eq!(second.deleted, [report.resource]);
    assert_eq!(served(&c, "elsewhere").await, [older]);
    assert_eq!(c.count("compute.targetHttpsProxies.list", false).await, 1);
    assert_eq!(c.count("compute.projects.get", false).await, 0);
}

#[tokio::test]
async fn deletes_refused_as_in_use_are_retried_with_back_off() {
    let c = cloud().await;
    let (old, _) = upload(&c, &NAMES, 80, 90, Some("app"), "").await;
    let (keep, _) = upload(&c, &NAMES, 0, 90, Some("app"), "").await;
    c.fault(json!({"method": "compute.sslCertificates.delete", "count": 2, "kind": "error",
                   "status": 400, "reason": "resourceInUseByAnotherResource",
                   "message": "The ssl_certificate resource is already being used by 'projects/demo-project/global/targetHttpsProxies/x'"}))
        .await;
    let deleted = cleanup(&c.gcp(), "app", &keep, &no_verify()).await.unwrap();
    assert_eq!(deleted, [old]);
    assert_eq!(c.count("compute.sslCertificates.delete", false).await, 3);
    assert_eq!(certificates(&c).await, [keep]);
}

#[tokio::test]
async fn a_missing_proxy_is_named() {
    let c = cloud().await;
    let issued = self_signed(&NAMES, 0, 90);
    let err = lb::install(&c.gcp(), &config(&["nope"]), &issued, &no_verify())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LbError::ProxyNotFound { proxy, .. } if proxy == "nope"),
        "{err}"
    );
    assert!(certificates(&c).await.is_empty());
}
