//! The pure rules of `[state]`: where it lives (`gs://bucket[/prefix]` parsed
//! and checked), the names state objects may have, and lease parameters.
//! `crate::state` builds on them; nothing here opens or reaches anything, so
//! the configuration stays below the state and GCP layers.

/// Default lease duration: a renewal step renews it long before (every third).
pub const DEFAULT_LEASE_MS: u64 = 60_000;
/// Default clock-skew margin between daemons.
pub const DEFAULT_SKEW_MS: u64 = 5_000;

/// How long a lease lasts and how much clock skew between daemons it tolerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseParams {
    pub duration_ms: u64,
    pub skew_ms: u64,
}

/// Why lease parameters were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "lease of {duration_ms} ms with a clock-skew margin of {skew_ms} ms: the margin must be less than a third of the duration (a holder trusts its lease for the duration less the margin)"
)]
pub struct LeaseParamsError {
    pub duration_ms: u64,
    pub skew_ms: u64,
}

impl LeaseParams {
    /// Checks that a holder keeps a useful window: `3 * skew < duration`.
    pub fn new(duration_ms: u64, skew_ms: u64) -> Result<LeaseParams, LeaseParamsError> {
        if skew_ms.saturating_mul(3) >= duration_ms {
            return Err(LeaseParamsError {
                duration_ms,
                skew_ms,
            });
        }
        Ok(LeaseParams {
            duration_ms,
            skew_ms,
        })
    }
}

/// Why a relative state name is refused, or `None`: `/`-separated components
/// of `[A-Za-z0-9._-]`, none empty, none starting with a dot (so `..`, hidden
/// and temporary files are out), 1 to 255 characters.
pub fn state_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 255 {
        return Some("expected 1 to 255 characters");
    }
    for part in name.split('/') {
        if part.is_empty() {
            return Some("empty path component (or absolute path)");
        }
        if part.starts_with('.') {
            return Some("components must not start with '.'");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Some("only letters, digits, '.', '_' and '-' are allowed");
        }
    }
    None
}

/// A state location that is neither a directory nor a usable `gs://` URL.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("state location {location:?}: {reason}")]
pub struct BadLocation {
    pub location: String,
    pub reason: String,
}

/// `gs://bucket[/prefix]`, split and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsLocation {
    pub bucket: String,
    /// Empty, or ending with `/`.
    pub prefix: String,
}

impl GcsLocation {
    /// Parses `gs://bucket[/prefix[/]]`. The bucket follows Google's naming
    /// rules (3 to 63 of `a-z 0-9 - _ .`, starting and ending with a letter or
    /// digit); the prefix follows the state names' rules.
    pub fn parse(url: &str) -> Result<GcsLocation, BadLocation> {
        let bad = |reason: &str| BadLocation {
            location: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("gs://")
            .ok_or_else(|| bad("expected gs://BUCKET or gs://BUCKET/PREFIX"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let ok_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok_bucket {
            return Err(bad(
                "the bucket name must be 3 to 63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && state_name_problem(prefix).is_some() {
            return Err(bad(
                "the prefix must be '/'-separated parts of letters, digits, '.', '_' and '-', none starting with '.'",
            ));
        }
        Ok(GcsLocation {
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
}
