//! [`State`]: the one handle every caller reads and writes state through,
//! whatever the backend ([`Backend`]: a directory or a `gs://` bucket).
//!
//! - Plain reads and writes (`read`, `write`, `read_json`, `write_json`,
//!   `remove`, `list`) are the last-writer-wins operations the callers always
//!   used. On a directory they are exactly [`StateDir`]'s (same files, modes
//!   0600/0700, atomic rename); on a bucket, whole-object writes.
//! - The per-certificate lock ([`State::try_lock_certificate`]) is a local
//!   `flock` on a directory, and a lease ([`super::lease`]) on a bucket, kept
//!   renewed in the background while held. [`CertificateLock::check`] says
//!   whether it is still held: callers check it before every step that
//!   changes something, and stop at once when it is lost.
//!
//! Errors are [`StateError`]s, naming the file or object, never the content.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::lease::{self, Acquired, Guard, Leases, Params};
use super::store::{Backend, Expect, Store, StoreError};
use super::{DirStore, StateDir, StateError, check_name};

/// Where state lives, with the operations every caller uses.
#[derive(Clone, Debug)]
pub struct State {
    backend: Backend,
    /// Set for a bucket: the leases that are its per-certificate locks.
    leases: Option<Leases<Backend>>,
}

impl From<StateDir> for State {
    fn from(dir: StateDir) -> State {
        State {
            backend: Backend::Dir(DirStore::new(dir)),
            leases: None,
        }
    }
}

impl State {
    /// The state at `location` (a directory, created 0700 if missing, or
    /// `gs://bucket[/prefix]`, reached through `gcp`), with these lease
    /// parameters for a bucket.
    pub fn open(
        location: &str,
        gcp: Option<&crate::gcp::Gcp>,
        params: Params,
    ) -> Result<State, StoreError> {
        if location.starts_with("gs://") {
            let Some(gcp) = gcp else {
                return Err(StoreError::BadLocation {
                    location: location.to_string(),
                    reason: "a bucket needs Google Cloud credentials, not available here".into(),
                });
            };
            let backend = Backend::open(location, gcp)?;
            Ok(State::with_leases(backend, lease::holder_id(), params))
        } else if location.contains("://") {
            Err(StoreError::BadLocation {
                location: location.to_string(),
                reason: "expected a directory path or gs://BUCKET[/PREFIX]".into(),
            })
        } else {
            Ok(StateDir::open(location)?.into())
        }
    }

    /// The state `[state]` names (a bucket is reached through `gcp`).
    pub fn from_config(
        config: &crate::config::StateConfig,
        gcp: Option<&crate::gcp::Gcp>,
    ) -> Result<State, StoreError> {
        State::open(&config.location(), gcp, config.lease_params())
    }

    /// A state over `backend` whose certificate locks are leases held as
    /// `holder` (a bucket, or a directory in tests of the lease path).
    pub fn with_leases(backend: Backend, holder: String, params: Params) -> State {
        State {
            leases: Some(Leases::new(backend.clone(), holder, params)),
            backend,
        }
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The directory, when the state is a directory.
    pub fn as_dir(&self) -> Option<&StateDir> {
        match &self.backend {
            Backend::Dir(d) => Some(d.dir()),
            Backend::Gcs(_) => None,
        }
    }

    /// Whether certificate locks are leases (several daemons may share this state).
    pub fn shared(&self) -> bool {
        self.leases.is_some()
    }

    /// The lease driver, when locks are leases.
    pub fn leases(&self) -> Option<&Leases<Backend>> {
        self.leases.as_ref()
    }

    /// Where the state lives, for messages.
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// How a file or object is named in messages: a path, or `gs://bucket/prefix/name`.
    pub fn describe(&self, name: &str) -> PathBuf {
        match &self.backend {
            Backend::Dir(d) => d.dir().path().join(name),
            Backend::Gcs(_) => {
                PathBuf::from(format!("{}/{name}", self.location().trim_end_matches('/')))
            }
        }
    }

    fn err(&self, e: StoreError) -> StateError {
        e.into()
    }

    /// The content of `name`, or `None` when it does not exist.
    pub async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        match &self.backend {
            Backend::Dir(d) => d.dir().read(name),
            Backend::Gcs(g) => g
                .read(name)
                .await
                .map(|s| s.map(|s| s.data))
                .map_err(|e| self.err(e)),
        }
    }

    /// Replaces `name` with `data` (atomically; 0600 in a directory).
    pub async fn write(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        match &self.backend {
            Backend::Dir(d) => d.dir().write(name, data),
            Backend::Gcs(g) => g
                .write(name, data, Expect::Any)
                .await
                .map(|_| ())
                .map_err(|e| self.err(e)),
        }
    }

    /// Removes `name`; `Ok(false)` when it did not exist.
    pub async fn remove(&self, name: &str) -> Result<bool, StateError> {
        match &self.backend {
            Backend::Dir(d) => d.dir().remove(name),
            Backend::Gcs(g) => g.delete(name, Expect::Any).await.map_err(|e| self.err(e)),
        }
    }

    /// File names (not paths) directly inside `dir` (`""` for the top), sorted.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, StateError> {
        match &self.backend {
            Backend::Dir(d) => d.dir().list(dir),
            Backend::Gcs(g) => {
                if !dir.is_empty() {
                    check_name(dir)?;
                }
                let prefix = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                let mut names: Vec<String> = g
                    .list(&prefix)
                    .await
                    .map_err(|e| self.err(e))?
                    .into_iter()
                    .filter_map(|n| {
                        let rest = n.strip_prefix(&prefix)?;
                        (!rest.contains('/') && !rest.is_empty()).then(|| rest.to_string())
                    })
                    .collect();
                names.sort();
                Ok(names)
            }
        }
    }

    /// Serialises `value` as pretty JSON and writes it atomically.
    pub async fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let data = serde_json::to_vec_pretty(value).map_err(|e| StateError::Decode {
            path: self.describe(name),
            // serde_json's serialisation errors name the failing type, never the data.
            message: format!("cannot serialise: {e}"),
        })?;
        self.write(name, &data).await
    }

    /// Writes `value` as `name` only if `name` does not exist yet in a shared
    /// (bucket) state: `Ok(false)` when another writer stored it first. In a
    /// directory (one machine, one writer under the certificate lock or at
    /// start) it is [`State::write_json`], exactly as before: `Ok(true)`.
    pub async fn create_json<T: Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<bool, StateError> {
        let Backend::Gcs(g) = &self.backend else {
            return self.write_json(name, value).await.map(|()| true);
        };
        let data = serde_json::to_vec_pretty(value).map_err(|e| StateError::Decode {
            path: self.describe(name),
            message: format!("cannot serialise: {e}"),
        })?;
        match g.write(name, &data, Expect::Absent).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads and decodes a JSON file; `None` when it does not exist.
    pub async fn read_json<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        let Some(data) = self.read(name).await? else {
            return Ok(None);
        };
        super::decode_json(&data, || self.describe(name)).map(Some)
    }

    /// Takes the lock of `certificate` if it is free. When someone else holds
    /// it: `Ok(Err(busy))`, saying who and (for a lease) until when.
    pub async fn try_lock_certificate(
        &self,
        certificate: &str,
    ) -> Result<Result<CertificateLock, Busy>, StateError> {
        let Some(leases) = &self.leases else {
            let Some(dir) = self.as_dir() else {
                // Unreachable: a bucket always has leases.
                return Err(self.err(StoreError::BadLocation {
                    location: self.location(),
                    reason: "no lock available for this state".into(),
                }));
            };
            return Ok(match dir.try_lock_certificate(certificate)? {
                Ok(lock) => Ok(CertificateLock::new(Lock::Flock { _held: lock })),
                Err(pid) => Err(Busy {
                    holder: pid.map(|p| format!("pid {p}")),
                    until_unix_ms: None,
                }),
            });
        };
        check_name(certificate)?;
        match leases.acquire(certificate, lease::now_unix_ms()).await {
            Ok(Acquired::Held { lease, took_over }) => {
                if let Some(from) = took_over {
                    tracing::info!(certificate, from = %from, "took over the expired lease of another daemon");
                }
                Ok(Ok(CertificateLock::new(Lock::Lease(Box::new(
                    leases.keep(lease),
                )))))
            }
            Ok(Acquired::Busy {
                holder,
                until_unix_ms,
            }) => Ok(Err(Busy {
                holder: Some(format!("daemon {holder}")),
                until_unix_ms: Some(until_unix_ms),
            })),
            // Others kept writing the lease: someone else is at it.
            Err(lease::LeaseError::Contended { .. }) => Ok(Err(Busy {
                holder: None,
                until_unix_ms: None,
            })),
            Err(lease::LeaseError::Store(e)) => Err(self.err(e)),
            Err(e @ lease::LeaseError::Lost { .. }) => Err(StateError::LeaseLost {
                certificate: certificate.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// Who holds a certificate's lock, when it is not free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Busy {
    /// `pid N` (a directory lock) or `daemon HOST/PID/ID` (a lease), when known.
    pub holder: Option<String>,
    /// When the lease expires (plus the margin), for a lease.
    pub until_unix_ms: Option<u64>,
}

/// The exclusive right to work on one certificate: a `flock` or a lease kept
/// renewed while held. Dropping it releases the `flock`, and releases a lease
/// in the background (a task on the current runtime; without one, or if the
/// process ends first, the lease simply expires); [`CertificateLock::release`]
/// releases it and waits for the answer.
#[derive(Debug)]
pub struct CertificateLock(Option<Lock>);

#[derive(Debug)]
enum Lock {
    /// Held until dropped (the kernel releases it with the file).
    Flock {
        _held: super::DirLock,
    },
    Lease(Box<Guard<Backend>>),
}

impl CertificateLock {
    fn new(lock: Lock) -> CertificateLock {
        CertificateLock(Some(lock))
    }

    /// `Err` once the lock is no longer mine (a lease lost or expired): stop
    /// touching the certificate. A `flock` is held until dropped.
    pub fn check(&self, certificate: &str) -> Result<(), StateError> {
        match &self.0 {
            Some(Lock::Flock { .. }) => Ok(()),
            Some(Lock::Lease(g)) if g.is_held() => Ok(()),
            _ => Err(StateError::LeaseLost {
                certificate: certificate.to_string(),
                message: "the lease expired or another daemon took it over".into(),
            }),
        }
    }

    /// Whether this lock is a lease.
    pub fn is_lease(&self) -> bool {
        matches!(self.0, Some(Lock::Lease(_)))
    }

    /// Resolves when the lock is lost (never for a `flock`).
    pub async fn lost(&mut self) {
        match &mut self.0 {
            Some(Lock::Lease(g)) => g.lost().await,
            Some(Lock::Flock { .. }) => std::future::pending().await,
            None => {}
        }
    }

    /// Gives the lock up: a lease is deleted if still mine (a failure leaves
    /// it to expire, and is only logged).
    pub async fn release(mut self, certificate: &str) {
        if let Some(Lock::Lease(g)) = self.0.take()
            && let Err(e) = g.release().await
        {
            tracing::warn!(certificate, error = %e, "cannot release the lease: it will expire by itself");
        }
    }
}

impl Drop for CertificateLock {
    fn drop(&mut self) {
        // Dropped on an error path (or a step cut short): give a lease back
        // rather than make the other daemons wait for its expiry.
        if let Some(Lock::Lease(g)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = g.release().await {
                    tracing::debug!(error = %e, "cannot release the lease: it will expire by itself");
                }
            });
        }
    }
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> StateError {
        match e {
            StoreError::State(s) => s,
            other => StateError::Store(Box::new(other)),
        }
    }
}
