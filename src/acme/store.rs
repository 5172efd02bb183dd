//! What the engine keeps in the state directory between runs:
//!
//! - `pending/<certificate>.json`: issued but not yet installed (key + chain);
//!   written before `issue` returns, removed by the installer.
//! - `orders/<certificate>.json`: the order in flight and the key its CSR will
//!   use, so a crash mid-order resumes the same order.
//! - `keys/<certificate>.json`: the kept key when `reuse_key` is set.
//!
//! All of them hold private keys: 0600, atomic (see [`crate::state`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::acme::IssuedCertificate;
use crate::certs::SecretPem;
use crate::config::KeyType;
use crate::state::{State, StateError};

/// Subdirectory of issued, not yet installed certificates.
pub(crate) const PENDING_DIR: &str = "pending";
/// Subdirectory of orders in flight.
pub(crate) const ORDERS_DIR: &str = "orders";
/// Subdirectory of kept keys.
pub(crate) const KEYS_DIR: &str = "keys";

fn pending_file(certificate: &str) -> String {
    format!("{PENDING_DIR}/{certificate}.json")
}
fn order_file(certificate: &str) -> String {
    format!("{ORDERS_DIR}/{certificate}.json")
}
fn key_file(certificate: &str) -> String {
    format!("{KEYS_DIR}/{certificate}.json")
}

/// Lower case, sorted, deduplicated: the canonical form compared everywhere.
pub fn normalize_names(names: &[String]) -> Vec<String> {
    let mut v: Vec<String> = names
        .iter()
        .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The stored, not yet installed certificate of `certificate`.
///
/// A stored certificate that cannot be read, or whose chain does not match its
/// own key and names (a damaged or hand-edited file), would fail every install
/// for ever: it is ignored with a warning (left in place for a look, and
/// overwritten by the next issuance), and the next renewal orders anew.
pub async fn load_pending(
    state: &State,
    certificate: &str,
) -> Result<Option<IssuedCertificate>, StateError> {
    let file = pending_file(certificate);
    let problem = match state.read_json::<IssuedCertificate>(&file).await {
        Ok(None) => return Ok(None),
        Ok(Some(p)) => match pending_problem(&p) {
            None => return Ok(Some(p)),
            Some(problem) => problem,
        },
        Err(StateError::Decode { message, .. }) => message,
        Err(e) => return Err(e),
    };
    tracing::warn!(
        certificate,
        file = %file,
        problem = %problem,
        "the stored, not yet installed certificate is unusable: ignoring it; a new one will be ordered"
    );
    Ok(None)
}

/// Why a stored certificate cannot be installed: its key does not parse, or its
/// chain does not match its key and names.
fn pending_problem(p: &IssuedCertificate) -> Option<String> {
    let key = match p.key_pem.key_pair() {
        Ok(k) => k,
        Err(e) => return Some(e.to_string()),
    };
    // Checked at its own notBefore: expiry is the caller's business.
    crate::certs::validate_chain(&p.chain_pem, &p.names, &key, p.leaf.not_before)
        .err()
        .map(|e| e.to_string())
}

/// Stores an issued certificate (0600, atomic).
pub async fn save_pending(state: &State, cert: &IssuedCertificate) -> Result<(), StateError> {
    state
        .write_json(&pending_file(&cert.certificate), cert)
        .await
}

/// Forgets the stored certificate (the installer calls this once it is served).
pub(crate) async fn remove_pending(state: &State, certificate: &str) -> Result<bool, StateError> {
    state.remove(&pending_file(certificate)).await
}

/// An order in flight.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OrderRecord {
    pub order_url: String,
    pub account_id: String,
    pub names: Vec<String>,
    pub key_type: KeyType,
    /// The key of the CSR this order will be finalized with.
    pub key_pem: SecretPem,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

pub(crate) async fn load_order(
    state: &State,
    certificate: &str,
) -> Result<Option<OrderRecord>, StateError> {
    state.read_json(&order_file(certificate)).await
}

pub(crate) async fn save_order(
    state: &State,
    certificate: &str,
    rec: &OrderRecord,
) -> Result<(), StateError> {
    state.write_json(&order_file(certificate), rec).await
}

pub(crate) async fn remove_order(state: &State, certificate: &str) -> Result<bool, StateError> {
    state.remove(&order_file(certificate)).await
}

#[derive(Serialize, Deserialize)]
struct KeptKey {
    key_type: KeyType,
    key_pem: SecretPem,
}

/// The kept key of `certificate` if it has this type, else a new one (stored).
pub(crate) async fn reuse_key(
    state: &State,
    certificate: &str,
    key_type: KeyType,
) -> Result<SecretPem, crate::acme::AcmeError> {
    if let Some(k) = state.read_json::<KeptKey>(&key_file(certificate)).await?
        && k.key_type == key_type
    {
        return Ok(k.key_pem);
    }
    let key = SecretPem::new(crate::certs::generate_key(key_type)?.serialize_pem());
    state
        .write_json(
            &key_file(certificate),
            &KeptKey {
                key_type,
                key_pem: key.clone(),
            },
        )
        .await?;
    Ok(key)
}
