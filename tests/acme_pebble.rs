//! The Pebble support module works: an ACME account is created against a real
//! Pebble, trusting only the listener CA generated for the run.

mod support;

use instant_acme::{Account, NewAccount};
use support::pebble::{Pebble, PebbleOptions};

#[tokio::test]
async fn creates_an_account_against_pebble() {
    // No DNS-01 validation happens here, so any address will do for -dnsserver.
    let pebble = Pebble::start(PebbleOptions::new("127.0.0.1:1".parse().unwrap())).await;
    let (account, credentials) = Account::builder_with_root(&pebble.listener_ca_path)
        .unwrap()
        .create(
            &NewAccount {
                contact: &["mailto:ops@example.com"],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            pebble.directory_url.clone(),
            None,
        )
        .await
        .unwrap();
    assert!(
        account.id().starts_with("https://localhost:"),
        "account URL: {}",
        account.id()
    );
    // The credentials round-trip and restore the same account.
    let json = serde_json::to_string(&credentials).unwrap();
    let restored = Account::builder_with_root(&pebble.listener_ca_path)
        .unwrap()
        .from_credentials(serde_json::from_str(&json).unwrap())
        .await
        .unwrap();
    assert_eq!(restored.id(), account.id());
    assert!(pebble.issuing_root_pem.contains("BEGIN CERTIFICATE"));
}

#[tokio::test]
async fn pebble_tls_is_verified_not_ignored() {
    // Without the generated listener CA, the system roots do not trust Pebble:
    // proof that verification is on.
    let pebble = Pebble::start(PebbleOptions::new("127.0.0.1:1".parse().unwrap())).await;
    let err = reqwest::Client::new()
        .get(&pebble.directory_url)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.is_connect() || err.to_string().contains("certificate"),
        "{err}"
    );
}
