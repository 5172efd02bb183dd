//! The state seam: one interface over where state lives (a directory, or a
//! Cloud Storage bucket), so the ACME account, pending certificates, the
//! bookkeeping and the leases can be shared by several daemons.
//!
//! The contract (the way certmagic's `Storage` states its own) is in
//! [`Store`]'s documentation; every backend keeps it, and
//! `tests/state_store.rs` runs the same cases against each.

use std::future::Future;

use crate::gcp::GcpError;

use super::StateError;

/// The version of one stored object, as read: what a conditional write or
/// delete names. Opaque: compare for equality only, never order.
///
/// - Directory: `sha256:<hex>` of the content. A version therefore names the
///   content, not the moment of a write: writing back the exact bytes another
///   writer replaced makes the old version current again. That is sound for a
///   conditional write, which only means "the content is still what I based my
///   decision on"; a lease puts a fresh token in every write, so two of its
///   writes never share a version.
/// - Cloud Storage: the object's `generation` (decimal), new with every write
///   and never reused within the object's history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub(crate) String);

impl Version {
    /// A version from its text (as [`Version::as_str`] gave it).
    pub fn new(text: impl Into<String>) -> Version {
        Version(text.into())
    }

    /// The version's text (for logs and the lease object).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a write or delete requires of the current object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: the last writer wins.
    Any,
    /// The object must not exist (create-only).
    Absent,
    /// The object must exist at exactly this version.
    Version(Version),
}

/// An object's content and the version it was read at.
#[derive(Clone, PartialEq, Eq)]
pub struct Stored {
    pub data: Vec<u8>,
    pub version: Version,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Several objects hold private keys: never print content.
        f.debug_struct("Stored")
            .field("len", &self.data.len())
            .field("version", &self.version)
            .finish()
    }
}

/// Why a store operation failed. Never carries content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The precondition did not hold: the object exists when `Absent` was
    /// required, or is absent or at another version when `Version` was. An
    /// answer, not an accident: re-read and decide again.
    #[error("{location}/{name}: changed by another writer (the expected version did not hold)")]
    Conflict { location: String, name: String },
    /// A name broke the naming rules, or the directory backend failed (path
    /// named, content never).
    #[error(transparent)]
    State(#[from] StateError),
    /// The Cloud Storage backend failed, with Google's code, reason and message.
    #[error("{location}/{name}: {source}")]
    Gcs {
        location: String,
        name: String,
        /// Boxed: errors travel in `Result`s, kept small.
        source: Box<GcpError>,
    },
    /// A state location that is neither a directory nor a usable `gs://` URL.
    #[error("state location {location:?}: {reason}")]
    BadLocation { location: String, reason: String },
}

impl From<crate::config::BadLocation> for StoreError {
    fn from(e: crate::config::BadLocation) -> StoreError {
        StoreError::BadLocation {
            location: e.location,
            reason: e.reason,
        }
    }
}

impl StoreError {
    /// Whether this is a [`StoreError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// Where state lives. Every backend keeps this contract:
///
/// - **Names** are relative, `/`-separated, each component of
///   `[A-Za-z0-9._-]` and not starting with a dot (`pending/www.json`,
///   `leases/app.json`), at most 255 bytes: the same rules in every backend, so
///   state moves between them unchanged. Anything else is refused before any I/O.
/// - **Atomic objects.** A read returns some complete content that was written,
///   never a torn or partial one; a write replaces the whole object or changes
///   nothing, also when the process dies half-way.
/// - **Conditional writes are linearizable per object.** [`Store::write`] and
///   [`Store::delete`] with [`Expect::Absent`] or [`Expect::Version`] take
///   effect only if the condition holds at the instant they apply; of several
///   writers racing with the same expectation, exactly one succeeds and the
///   others get [`StoreError::Conflict`]. This is what leases are built on.
/// - **Read after write.** Once a write or delete returned, every later read,
///   from this process or another sharing the store, sees it or something
///   newer. (Cloud Storage is strongly consistent for object reads, writes,
///   deletes and listings; the directory is one file system.)
/// - **Listing** returns the names under a prefix as of some moment at or after
///   the call began; it is not a snapshot across objects (no transactions
///   between objects: each object is its own unit of consistency).
/// - **A Conflict means "not written"** as far as content goes: a backend that
///   retries a conditional write after a lost answer and then finds its own
///   bytes in place reports success, not a conflict.
/// - **Secrets at rest.** Files are 0600 in a 0700 directory; bucket objects
///   are protected by the bucket's IAM (see docs/high-availability.md). Errors
///   name objects, never their content.
/// - **No expiry, no locking.** A store holds bytes; mutual exclusion between
///   daemons is the leases' job ([`super::lease`]), built on conditional writes.
pub trait Store: Send + Sync {
    /// Where the state lives, for messages: a directory path or `gs://bucket/prefix`.
    fn location(&self) -> String;

    /// The content of `name` and its version; `None` when it does not exist.
    fn read(&self, name: &str) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;

    /// Replaces `name` with `data` if `expect` holds; the new version.
    fn write(
        &self,
        name: &str,
        data: &[u8],
        expect: Expect,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// Removes `name` if `expect` holds. `Ok(false)` when it did not exist
    /// (whatever `expect` said: an absent object cannot be at another version).
    fn delete(
        &self,
        name: &str,
        expect: Expect,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every name that starts with `prefix` (`""`: all), sorted, at any depth.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// The backends a configuration can choose; dispatches to the one chosen.
#[derive(Clone, Debug)]
pub enum Backend {
    Dir(super::DirStore),
    /// Boxed: the client it holds is much larger than a path.
    Gcs(Box<super::GcsStore>),
}

impl Backend {
    /// The backend a state location names: `gs://bucket[/prefix]` is a bucket
    /// reached through `gcp`, anything else a directory (created 0700 if
    /// missing). The one place that tells them apart.
    pub fn open(location: &str, gcp: &crate::gcp::Gcp) -> Result<Backend, StoreError> {
        if location.starts_with("gs://") {
            let loc = super::GcsLocation::parse(location)?;
            Ok(Backend::Gcs(Box::new(super::GcsStore::new(
                gcp.clone(),
                loc,
            ))))
        } else if location.contains("://") {
            Err(StoreError::BadLocation {
                location: location.to_string(),
                reason: "expected a directory path or gs://BUCKET[/PREFIX]".into(),
            })
        } else {
            Ok(Backend::Dir(super::DirStore::open(location)?))
        }
    }
}

impl Store for Backend {
    fn location(&self) -> String {
        match self {
            Backend::Dir(s) => s.location(),
            Backend::Gcs(s) => s.location(),
        }
    }

    async fn read(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        match self {
            Backend::Dir(s) => s.read(name).await,
            Backend::Gcs(s) => s.read(name).await,
        }
    }

    async fn write(&self, name: &str, data: &[u8], expect: Expect) -> Result<Version, StoreError> {
        match self {
            Backend::Dir(s) => s.write(name, data, expect).await,
            Backend::Gcs(s) => s.write(name, data, expect).await,
        }
    }

    async fn delete(&self, name: &str, expect: Expect) -> Result<bool, StoreError> {
        match self {
            Backend::Dir(s) => s.delete(name, expect).await,
            Backend::Gcs(s) => s.delete(name, expect).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Backend::Dir(s) => s.list(prefix).await,
            Backend::Gcs(s) => s.list(prefix).await,
        }
    }
}
