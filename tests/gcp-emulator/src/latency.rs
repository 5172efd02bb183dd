//! A latency model: how slow Google is, so benchmarks can measure a renewal's
//! critical path and its number of calls rather than our loopback overhead.
//!
//! Off by default (profile `none`): every existing test sees the plain delays of
//! [`crate::Config`]. When set (`--latency-profile NAME`, or `POST /emulator/latency`)
//! it gives:
//! - every API request a round trip of `call_ms` plus a jitter drawn in
//!   `0..=call_jitter_ms` (half before the handler runs, half after, as a network
//!   round trip would);
//! - each Compute operation kind (`operationType`: `insert`, `delete`,
//!   `setSslCertificates`, ...) its own PENDING -> DONE duration, `default` for the
//!   others; `run` for Cloud Run long-running operations; `iap` for IAP policy and
//!   settings writes (synchronous at Google, so an extra wait inside the call);
//!   `certificatemanager` for Certificate Manager operations (done at once
//!   without a model);
//! - a Cloud DNS change duration (`pending` -> `done`);
//! - a propagation lag per authoritative name server, counted from the change.
//!
//! Jitter is deterministic: the `n`-th request draws from a hash of `(seed, n)`, so
//! a run with the same seed and the same request order sees the same latencies.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Every knob of the model, as `GET /emulator/latency` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct LatencyModel {
    /// The profile this started from (`google`, or `custom`).
    #[serde(default)]
    pub profile: String,
    /// Base round trip of every API call.
    #[serde(default)]
    pub call_ms: u64,
    /// Upper bound of the extra, seeded, per-call jitter.
    #[serde(default)]
    pub call_jitter_ms: u64,
    /// Operation duration by kind (Compute `operationType`, `run`, `iap`, `default`).
    #[serde(default)]
    pub operation_ms: BTreeMap<String, u64>,
    /// How long a Cloud DNS change stays `pending`.
    #[serde(default)]
    pub dns_change_ms: u64,
    /// Propagation lag of each name server, counted from the change; a server
    /// beyond the list takes the last value.
    #[serde(default)]
    pub dns_lags_ms: Vec<u64>,
    /// Seed of the jitter.
    #[serde(default)]
    pub seed: u64,
}

/// The names `--latency-profile` accepts.
pub const PROFILES: &[&str] = &["none", "google"];

/// Why a profile or a model was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LatencyError {
    #[error("unknown latency profile {0:?}: expected one of none, google")]
    UnknownProfile(String),
    #[error("latency field {field}: {value} ms is more than the 600000 ms (10 min) allowed")]
    TooLong { field: String, value: u64 },
}

/// Upper bound of any one figure: a typo of a few zeros must not hang a run.
const MAX_MS: u64 = 600_000;

impl LatencyModel {
    /// The named profile; `none` is `Ok(None)`.
    ///
    /// `google`: figures from Google's documentation and public reports, cited
    /// with each figure in docs/benchmarks.md ("Latency model"); where no public
    /// source gives a figure it is our estimate, and the doc says so.
    pub fn profile(name: &str) -> Result<Option<LatencyModel>, LatencyError> {
        match name {
            "none" => Ok(None),
            "google" => Ok(Some(LatencyModel {
                profile: "google".into(),
                call_ms: 60,
                call_jitter_ms: 60,
                operation_ms: BTreeMap::from([
                    ("default".into(), 5_000),
                    ("insert".into(), 10_000),
                    ("setSslCertificates".into(), 12_000),
                    ("delete".into(), 8_000),
                    ("patch".into(), 10_000),
                    ("run".into(), 20_000),
                    ("iap".into(), 2_000),
                    ("certificatemanager".into(), 2_000),
                ]),
                dns_change_ms: 3_000,
                dns_lags_ms: vec![4_000, 6_000, 8_000, 12_000],
                seed: 0,
            })),
            other => Err(LatencyError::UnknownProfile(other.to_string())),
        }
    }

    /// Refuses figures that would stall a run for hours.
    pub fn check(&self) -> Result<(), LatencyError> {
        let mut all: Vec<(String, u64)> = vec![
            ("call_ms".into(), self.call_ms),
            ("call_jitter_ms".into(), self.call_jitter_ms),
            ("dns_change_ms".into(), self.dns_change_ms),
        ];
        all.extend(
            self.operation_ms
                .iter()
                .map(|(k, v)| (format!("operation_ms.{k}"), *v)),
        );
        all.extend(
            self.dns_lags_ms
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("dns_lags_ms[{i}]"), *v)),
        );
        match all.into_iter().find(|(_, v)| *v > MAX_MS) {
            Some((field, value)) => Err(LatencyError::TooLong { field, value }),
            None => Ok(()),
        }
    }

    /// The round trip of the `n`-th request (0-based).
    pub fn call_latency(&self, n: u64) -> Duration {
        let jitter = if self.call_jitter_ms == 0 {
            0
        } else {
            splitmix64(self.seed ^ splitmix64(n)) % (self.call_jitter_ms + 1)
        };
        Duration::from_millis(self.call_ms + jitter)
    }

    /// How long an operation of this kind runs, when the model names it or has a
    /// `default`.
    pub fn operation(&self, kind: &str) -> Option<Duration> {
        self.operation_ms
            .get(kind)
            .or_else(|| self.operation_ms.get("default"))
            .map(|ms| Duration::from_millis(*ms))
    }

    /// The lag of name server `i` of `n`.
    pub fn dns_lag(&self, i: usize) -> Duration {
        let ms = self
            .dns_lags_ms
            .get(i)
            .or(self.dns_lags_ms.last())
            .copied()
            .unwrap_or(0);
        Duration::from_millis(ms)
    }
}

/// A 64-bit mixer (Steele, Lea, Flood 2014): enough spread for jitter, and no
/// state to share between requests.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_seeded_and_bounded() {
        let mut m = LatencyModel::profile("google").unwrap().unwrap();
        let a: Vec<Duration> = (0..200).map(|n| m.call_latency(n)).collect();
        let b: Vec<Duration> = (0..200).map(|n| m.call_latency(n)).collect();
        assert_eq!(a, b);
        assert!(
            a.iter()
                .all(|d| (60..=120).contains(&(d.as_millis() as u64)))
        );
        // Not constant: the jitter spreads over its range.
        assert!(a.iter().min() < a.iter().max());
        m.seed = 7;
        let c: Vec<Duration> = (0..200).map(|n| m.call_latency(n)).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn operation_kinds_fall_back_to_default() {
        let m = LatencyModel::profile("google").unwrap().unwrap();
        assert_eq!(m.operation("insert"), Some(Duration::from_secs(10)));
        assert_eq!(m.operation("setUrlMap"), Some(Duration::from_secs(5)));
        assert_eq!(
            m.operation("certificatemanager"),
            Some(Duration::from_secs(2))
        );
        let bare = LatencyModel::default();
        assert_eq!(bare.operation("insert"), None);
    }

    #[test]
    fn profiles_and_limits() {
        assert_eq!(LatencyModel::profile("none"), Ok(None));
        assert!(matches!(
            LatencyModel::profile("aws"),
            Err(LatencyError::UnknownProfile(_))
        ));
        let m = LatencyModel {
            dns_lags_ms: vec![1, 700_000],
            ..Default::default()
        };
        assert_eq!(
            m.check(),
            Err(LatencyError::TooLong {
                field: "dns_lags_ms[1]".into(),
                value: 700_000
            })
        );
        assert_eq!(m.dns_lag(5), Duration::from_millis(700_000));
    }
}
