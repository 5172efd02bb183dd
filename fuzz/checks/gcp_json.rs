//! Google API responses: error envelopes (`ApiError::from_body`, its Display and
//! classification), Compute operations (`failure()`), long-running operations, and
//! the Cloud DNS / Compute resources we deserialise. Nothing may panic; resources we
//! send back (record sets, changes, proxies) must survive a JSON round trip.
//!
//! Shared by the fuzz target `fuzz/fuzz_targets/gcp_json.rs` and the seed replay test
//! `tests/fuzz_seeds.rs`, so both check exactly the same properties.

use gclb_acme::gcp::compute::{SslCertificate, TargetHttpsProxy};
use gclb_acme::gcp::dns::{Change, ManagedZone, ResourceRecordSet};
use gclb_acme::gcp::operation::{LongRunning, Operation};
use gclb_acme::gcp::{ApiError, GcpError};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(body) {
        let json = serde_json::to_vec(&v).expect("serialises");
        let back: T = serde_json::from_slice(&json).expect("our own JSON parses");
        assert_eq!(v, back, "JSON round trip changed the value");
    }
}

/// Runs every check on one input; panics when a property does not hold.
pub fn run(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let code = u16::from_le_bytes([data[0], data[1]]);
    let body = &data[2..];

    if let Some(e) = ApiError::from_body(code, body, "POST https://example.invalid/x".into()) {
        let _ = e.to_string();
        let _ = (e.is_retryable(), e.is_permission_denied(), e.hint());
        let g = GcpError::Api(e);
        let _ = (
            g.to_string(),
            g.label(),
            g.is_not_found(),
            g.is_retryable(),
            g.code(),
        );
    }
    if let Ok(op) = serde_json::from_slice::<Operation>(body) {
        let _ = op.is_done();
        if let Some(e) = op.failure() {
            let _ = (e.to_string(), e.is_retryable());
        }
    }
    let _ = serde_json::from_slice::<LongRunning>(body);
    let _ = serde_json::from_slice::<SslCertificate>(body);
    if let Ok(z) = serde_json::from_slice::<ManagedZone>(body) {
        let _ = z.is_public();
        let _ = gclb_acme::dns::zone::check_explicit(&z, "_acme-challenge.example.com.");
    }
    round_trip::<ResourceRecordSet>(body);
    round_trip::<Change>(body);
    round_trip::<TargetHttpsProxy>(body);
}
