//! Renewal bookkeeping per certificate, kept in the state directory across
//! restarts (`daemon/<certificate>.json`): failures and back-off, the last error,
//! the ARI window and the moment picked in it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::state::{State, StateError};

/// The last failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastError {
    pub message: String,
    /// Short label (metrics `reason`): `acme`, `dns`, `gcp:forbidden`, ...
    pub reason: String,
    pub retryable: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The CA's renewal window for the served certificate, and our pick in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AriState {
    /// The ARI certificate id it was fetched for.
    pub cert_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Uniformly random moment in [start, end], kept while the window is unchanged.
    #[serde(with = "time::serde::rfc3339")]
    pub chosen: OffsetDateTime,
    /// When to ask again (the CA's Retry-After, or six hours).
    #[serde(with = "time::serde::rfc3339")]
    pub next_poll: OffsetDateTime,
}

/// Everything the daemon remembers about one certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// Consecutive failed attempts (reset by a success or a config change).
    pub failures: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    #[serde(default)]
    pub last_error: Option<LastError>,
    /// No attempt before this (back-off), except in an emergency.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// Names, key type and proxies the bookkeeping was made for: a change resets
    /// the back-off ("wait for a config change").
    #[serde(default)]
    pub config_fingerprint: String,
    #[serde(default)]
    pub ari: Option<AriState>,
}

fn file(name: &str) -> String {
    format!("daemon/{name}.json")
}

impl Book {
    /// The stored bookkeeping, or a fresh one. A damaged file is reported and
    /// replaced rather than stopping the daemon: it holds no secret and nothing
    /// that cannot be re-learned.
    pub async fn load(state: &State, name: &str) -> Book {
        match state.read_json::<Book>(&file(name)).await {
            Ok(Some(b)) => b,
            Ok(None) => Book::default(),
            Err(e) => {
                tracing::warn!(certificate = name, error = %e, "renewal bookkeeping unreadable; starting afresh");
                Book::default()
            }
        }
    }

    pub async fn save(&self, state: &State, name: &str) -> Result<(), StateError> {
        state.write_json(&file(name), self).await
    }

    /// Removes the bookkeeping (teardown deleted what it described); whether
    /// there was any.
    pub async fn forget(state: &State, name: &str) -> Result<bool, StateError> {
        state.remove(&file(name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_survives_damage() {
        let dir = tempfile::tempdir().unwrap();
        let state: State = crate::state::StateDir::open(dir.path()).unwrap().into();
        assert_eq!(Book::load(&state, "app").await, Book::default());
        let b = Book {
            failures: 2,
            last_error: Some(LastError {
                message: "x".into(),
                reason: "dns".into(),
                retryable: true,
                at: OffsetDateTime::UNIX_EPOCH,
            }),
            not_before: Some(OffsetDateTime::UNIX_EPOCH),
            ..Default::default()
        };
        b.save(&state, "app").await.unwrap();
        assert_eq!(Book::load(&state, "app").await, b);
        state.write("daemon/app.json", b"{garbage").await.unwrap();
        assert_eq!(Book::load(&state, "app").await, Book::default());
        assert!(Book::forget(&state, "app").await.unwrap());
        assert!(!Book::forget(&state, "app").await.unwrap());
    }
}
