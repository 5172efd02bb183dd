//! ACME Renewal Information (RFC 9773) and `replaces`, against an in-process fake
//! CA (Pebble 2.4 has neither).

mod support;

use std::time::Duration;

use gclb_acme::acme::{AcmeClient, IssueRequest};
use gclb_acme::config::{AcmeConfig, KeyType};
use gclb_acme::state::StateDir;
use support::fake_acme::FakeAcme;
use time::OffsetDateTime;

fn config(fake: &FakeAcme) -> AcmeConfig {
    AcmeConfig {
        directory: fake.directory_url(),
        contact: vec![],
        accept_terms: true,
        ca_roots: vec![],
        eab: None,
        profile: None,
    }
}

#[tokio::test]
async fn fetches_the_window_and_honours_retry_after() {
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::days(20);
    let end = start + time::Duration::days(2);
    let fake = FakeAcme::start(Some((start, end)), 21600).await;
    let dir = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect(&config(&fake), StateDir::open(dir.path()).unwrap())
        .await
        .unwrap();
    let (w, retry) = client
        .renewal_info("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((w.start, w.end), (start, end));
    assert!(
        retry > Duration::from_secs(21500) && retry <= Duration::from_secs(21600),
        "{retry:?}"
    );
    assert_eq!(
        fake.state.lock().unwrap().ari_requests,
        ["aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"]
    );
}

#[tokio::test]
async fn a_ca_without_ari_means_none_and_a_bad_id_is_an_error() {
    let fake = FakeAcme::start(None, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect(&config(&fake), StateDir::open(dir.path()).unwrap())
        .await
        .unwrap();
    // The directory advertises ARI but has no window for this id: an error the
    // daemon treats as "use the lifetime fallback".
    assert!(client.renewal_info("abc.def").await.is_err());
    assert!(client.renewal_info("no-dot").await.is_err());
}

#[tokio::test]
async fn a_ca_that_rejects_replaces_gets_one_retry_without_it() {
    let fake = FakeAcme::start(None, 60).await;
    let dir = tempfile::tempdir().unwrap();
    let client = AcmeClient::connect(&config(&fake), StateDir::open(dir.path()).unwrap())
        .await
        .unwrap();
    let req = IssueRequest {
        certificate: "app".into(),
        names: vec!["app.example.test".into()],
        key_type: KeyType::EcdsaP256,
        reuse_key: false,
        profile: None,
        replaces: Some(instant_acme::CertificateIdentifier {
            authority_key_identifier: "aYhba4dGQEHhs3uEe6CuLN4ByNQ".into(),
            serial: "AIdlQyE".into(),
        }),
    };
    struct NoDns;
    impl gclb_acme::acme::Dns01Solver for NoDns {
        async fn present(
            &self,
            _: &[gclb_acme::acme::ChallengeRecord],
        ) -> Result<(), gclb_acme::acme::SolverError> {
            Ok(())
        }
        async fn cleanup(
            &self,
            _: &[gclb_acme::acme::ChallengeRecord],
        ) -> Result<(), gclb_acme::acme::SolverError> {
            Ok(())
        }
    }
    let err = client.issue(&req, &NoDns).await.unwrap_err();
    assert!(
        err.to_string().contains("unauthorized") || err.to_string().contains("issues nothing"),
        "{err}"
    );
    let orders = fake.state.lock().unwrap().orders.clone();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert!(orders[0].get("replaces").is_some());
    assert!(orders[1].get("replaces").is_none());
}
