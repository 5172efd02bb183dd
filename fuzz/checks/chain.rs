//! PEM chains and certificates from a CA: `split_chain`, `leaf_info` on each DER, and
//! `validate_chain` with a fixed key. The first byte picks the shape of the rest:
//! even = PEM text, odd = one DER certificate (wrapped in PEM as well, so the
//! validator sees structurally valid PEM around mutated DER).
//!
//! Shared by the fuzz target `fuzz/fuzz_targets/chain.rs` and the seed replay test
//! `tests/fuzz_seeds.rs`, so both check exactly the same properties.

use std::sync::OnceLock;

use base64::Engine;
use gclb_acme::certs;
use rcgen::KeyPair;
use time::OffsetDateTime;

/// A throwaway P-256 key made for the fuzz seeds (the seed leaf certificates hold
/// its public half); it protects nothing.
const KEY_PEM: &str = include_str!("../fuzz_leaf_key.pem");

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::from_pem(KEY_PEM).expect("the fuzz key parses"))
}

fn now() -> OffsetDateTime {
    // 2027-01-01T00:00:00Z: inside the seed certificates' validity.
    OffsetDateTime::from_unix_timestamp(1_798_761_600).expect("valid timestamp")
}

fn check_pem(pem: &str) {
    if let Ok(ders) = certs::split_chain(pem) {
        assert!(!ders.is_empty(), "split_chain returned an empty chain");
        for der in &ders {
            if let Ok(info) = certs::leaf_info(der) {
                let _ = info.certificate_identifier();
                let _ = serde_json::to_string(&info);
            }
        }
        // With the leaf's own names, so validation gets past the name check.
        if let Ok(info) = certs::leaf_info(&ders[0]) {
            let result = certs::validate_chain(pem, &info.dns_names, key(), now());
            if let Ok(valid) = result {
                assert_eq!(valid, info, "validate_chain and leaf_info disagree");
            }
        }
    }
    let _ = certs::validate_chain(pem, &["example.com".to_string()], key(), now());
}

/// Runs every check on one input; panics when a property does not hold.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        check_pem(&String::from_utf8_lossy(rest));
    } else {
        let _ = certs::leaf_info(rest);
        let b64 = base64::engine::general_purpose::STANDARD.encode(rest);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        check_pem(&pem);
    }
}
