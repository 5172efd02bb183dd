//! The state directory: the ACME account, certificates issued but not yet
//! installed, orders in flight and renewal bookkeeping.
//!
//! Everything is written atomically (temporary file in the same directory,
//! created 0600, fsync, rename, fsync of the directory), so a crash leaves either
//! the old or the new content, never a torn file. The directory itself is 0700.
//! Errors name the path, never the content: several files hold private keys.
//!
//! [`Store`] is the seam over where state lives: [`DirStore`] (this directory,
//! unchanged) or [`GcsStore`] (`gs://bucket/prefix`, shared by several daemons),
//! with conditional writes; [`lease`] builds per-certificate leases on it, and
//! [`migrate`] moves state from one store to another. [`State`] is the handle
//! every caller uses: plain reads and writes (on a directory, exactly
//! [`StateDir`]'s) and the per-certificate lock, a `flock` ([`DirLock`]) for a
//! directory and a lease for a bucket ([`CertificateLock`]).

mod dir;
mod gcs;
mod handle;
pub mod lease;
pub mod migrate;
mod store;

pub use crate::config::{DEFAULT_LEASE_MS, DEFAULT_SKEW_MS};
pub use dir::DirStore;
pub use gcs::{BucketReport, CHECK_PERMISSIONS, GcsLocation, GcsStore, REQUIRED_PERMISSIONS};
pub use handle::{Busy, CertificateLock, State};
pub use store::{Backend, Expect, Store, StoreError, Stored, Version};

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Mode of every directory we create.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file we write.
pub const FILE_MODE: u32 = 0o600;

/// Why a state-directory operation failed. Never carries file content.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory could not be created or its mode set.
    #[error("state directory {path}: cannot create it: {source}")]
    Create { path: PathBuf, source: io::Error },
    /// The path exists and is not a directory.
    #[error("state directory {path}: exists and is not a directory")]
    NotADirectory { path: PathBuf },
    /// The directory exists but we cannot write into it.
    #[error("state directory {path}: not writable: {source}")]
    NotWritable { path: PathBuf, source: io::Error },
    /// Writing a file failed (the previous content, if any, is intact).
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// Reading a file failed.
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// Removing a file failed.
    #[error("{path}: cannot remove: {source}")]
    Remove { path: PathBuf, source: io::Error },
    /// A file holds something we cannot decode (the message never quotes content).
    #[error("{path}: unreadable content: {message}")]
    Decode { path: PathBuf, message: String },
    /// Locking a file failed (other than "held by someone else").
    #[error("{path}: cannot lock: {source}")]
    Lock { path: PathBuf, source: io::Error },
    /// A relative name that could escape the directory or is otherwise unusable.
    #[error("invalid state file name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    /// The bucket (or another store) failed, with Google's code, reason and message.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// The certificate's lease is no longer ours: another daemon may be at it.
    #[error("certificate {certificate}: lease lost ({message}); stopped working on it")]
    LeaseLost {
        certificate: String,
        message: String,
    },
}

/// Decodes JSON state; errors name `path()` and never quote the content.
pub(crate) fn decode_json<T: DeserializeOwned>(
    data: &[u8],
    path: impl FnOnce() -> PathBuf,
) -> Result<T, StateError> {
    serde_json::from_slice(data).map_err(|e| StateError::Decode {
        path: path(),
        // Only the position and category: serde_json messages can quote input.
        message: format!(
            "not the expected JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

/// An opened, writable state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates the directory (and parents) if missing, forces its mode to 0700
    /// whatever the umask, and proves it is writable.
    pub fn open(path: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let root = path.as_ref().to_path_buf();
        match fs::metadata(&root) {
            Ok(m) if !m.is_dir() => return Err(StateError::NotADirectory { path: root }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(&root)
                    .map_err(|source| StateError::Create {
                        path: root.clone(),
                        source,
                    })?;
            }
            Err(source) => return Err(StateError::Create { path: root, source }),
        }
        // The umask may have narrowed (or an older install widened) the mode: set it.
        fs::set_permissions(&root, fs::Permissions::from_mode(DIR_MODE)).map_err(|source| {
            StateError::Create {
                path: root.clone(),
                source,
            }
        })?;
        let dir = StateDir { root };
        dir.probe()?;
        Ok(dir)
    }

    fn probe(&self) -> Result<(), StateError> {
        let probe = self.root.join(".write-probe");
        let result = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&probe)
            .and_then(|mut f| f.write_all(b"ok"));
        let _ = fs::remove_file(&probe);
        result.map_err(|source| StateError::NotWritable {
            path: self.root.clone(),
            source,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The absolute path of a relative name like `accounts/x.json` (validated).
    pub fn file_path(&self, name: &str) -> Result<PathBuf, StateError> {
        check_name(name)?;
        Ok(self.root.join(name))
    }

    /// Atomically replaces `name` (e.g. `pending/www.json`) with `data`, mode 0600.
    /// Subdirectories are created 0700.
    pub fn write(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        let path = self.file_path(name)?;
        let err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        // infallible: check_name guarantees a file name under the root.
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        if parent != self.root {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(&parent)
                .map_err(err)?;
            fs::set_permissions(&parent, fs::Permissions::from_mode(DIR_MODE)).map_err(err)?;
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(
            ".{file_name}.tmp-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            // 0600 from creation: the key is never readable by others, not even briefly.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            // The umask can only clear bits, but be explicit anyway.
            f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            File::open(&parent)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(err)
    }

    /// Serialises `value` as pretty JSON and writes it atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let data = serde_json::to_vec_pretty(value).map_err(|e| StateError::Decode {
            path: self.root.join(name),
            // serde_json's serialisation errors name the failing type, never the data.
            message: format!("cannot serialise: {e}"),
        })?;
        self.write(name, &data)
    }

    /// The content of `name`, or `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.file_path(name)?;
        match fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Reads and decodes a JSON file; `None` when it does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let Some(data) = self.read(name)? else {
            return Ok(None);
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| StateError::Decode {
                path: self.root.join(name),
                // Only the position and category: serde_json messages can quote input.
                message: format!(
                    "not the expected JSON ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            })
    }

    /// Removes `name`; `Ok(false)` when it did not exist.
    pub fn remove(&self, name: &str) -> Result<bool, StateError> {
        let path = self.file_path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(parent) = path.parent() {
                    let _ = File::open(parent).and_then(|d| d.sync_all());
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StateError::Remove { path, source }),
        }
    }

    /// File names (not paths) directly inside subdirectory `dir` (`""` for the
    /// root), sorted, without our temporary and hidden files.
    pub fn list(&self, dir: &str) -> Result<Vec<String>, StateError> {
        let path = if dir.is_empty() {
            self.root.clone()
        } else {
            self.file_path(dir)?
        };
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StateError::Read {
                path: path.clone(),
                source,
            })?;
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_file && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The exclusive right to work on one certificate (order, issue, install),
/// across processes: the daemon and a `gclb-acme renew` or `bootstrap` run by hand
/// never act on the same certificate at once. An advisory `flock` on
/// `locks/<certificate>.lock`, released on drop and by the kernel when the process
/// dies, so a crash never leaves a stale lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl StateDir {
    /// Takes the lock of `certificate` if it is free. When another process (or
    /// another handle in this one) holds it: `Ok(Err(pid))`, the holder's pid
    /// when it wrote one.
    pub fn try_lock_certificate(
        &self,
        certificate: &str,
    ) -> Result<Result<DirLock, Option<u32>>, StateError> {
        let name = format!("locks/{certificate}.lock");
        let path = self.file_path(&name)?;
        let err = |source| StateError::Lock {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(parent)
                .map_err(err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the message of whoever waits.
                let _ = file
                    .set_len(0)
                    .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()));
                Ok(Ok(DirLock { _file: file }))
            }
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                Ok(Err(holder))
            }
            Err(fs::TryLockError::Error(source)) => Err(err(source)),
        }
    }
}

/// Relative names: the rule of [`crate::config::state_name_problem`].
pub(crate) fn check_name(name: &str) -> Result<(), StateError> {
    match crate::config::state_name_problem(name) {
        None => Ok(()),
        Some(reason) => Err(StateError::BadName {
            name: name.chars().take(100).collect(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_lock_excludes_a_second_holder_until_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path().join("s")).unwrap();
        let first = dir.try_lock_certificate("app").unwrap().unwrap();
        // Another open file description conflicts, as another process would.
        let held = dir.try_lock_certificate("app").unwrap().unwrap_err();
        assert_eq!(held, Some(std::process::id()));
        // Other certificates are independent.
        let other = dir.try_lock_certificate("api").unwrap();
        assert!(other.is_ok());
        drop(first);
        assert!(dir.try_lock_certificate("app").unwrap().is_ok());
        let mode = fs::metadata(tmp.path().join("s/locks/app.lock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, FILE_MODE);
        assert!(dir.try_lock_certificate("../x").is_err());
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn open_creates_0700_and_writes_0600_even_with_umask_000() {
        // umask is process-wide: this is the only test in this module that touches it.
        let old = unsafe { libc_umask(0) };
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/state");
        let dir = StateDir::open(&root).unwrap();
        dir.write("pending/x.json", b"{}").unwrap();
        dir.write("top", b"1").unwrap();
        unsafe { libc_umask(old) };
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("pending")), 0o700);
        assert_eq!(mode(&root.join("pending/x.json")), 0o600);
        assert_eq!(mode(&root.join("top")), 0o600);
    }

    #[test]
    fn open_tightens_an_existing_permissive_dir() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        StateDir::open(tmp.path()).unwrap();
        assert_eq!(mode(tmp.path()), 0o700);
    }

    #[test]
    fn open_rejects_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs::write(&f, "x").unwrap();
        assert!(matches!(
            StateDir::open(&f),
            Err(StateError::NotADirectory { .. })
        ));
    }

    #[test]
    fn write_read_replace_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        assert_eq!(dir.read("a/b.json").unwrap(), None);
        dir.write("a/b.json", b"one").unwrap();
        dir.write("a/b.json", b"two").unwrap();
        dir.write("a/c.json", b"three").unwrap();
        assert_eq!(dir.read("a/b.json").unwrap().unwrap(), b"two");
        assert_eq!(dir.list("a").unwrap(), vec!["b.json", "c.json"]);
        assert!(dir.list("missing").unwrap().is_empty());
        assert!(dir.remove("a/b.json").unwrap());
        assert!(!dir.remove("a/b.json").unwrap());
        assert_eq!(dir.list("a").unwrap(), vec!["c.json"]);
        // No temporary files left behind.
        let all: Vec<_> = fs::read_dir(tmp.path().join("a")).unwrap().collect();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn json_round_trip_and_decode_errors_do_not_quote_content() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        dir.write_json("v.json", &vec![1, 2, 3]).unwrap();
        assert_eq!(
            dir.read_json::<Vec<u32>>("v.json").unwrap(),
            Some(vec![1, 2, 3])
        );
        dir.write("s.json", b"{\"secret\": \"hunter2-SECRET\"")
            .unwrap();
        let e = dir.read_json::<Vec<u32>>("s.json").unwrap_err().to_string();
        assert!(e.contains("s.json"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        dir.write("t.json", b"\"hunter2-SECRET\"").unwrap();
        let e = dir.read_json::<Vec<u32>>("t.json").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn names_cannot_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        for bad in [
            "../x",
            "/etc/passwd",
            "a//b",
            ".hidden",
            "a/../b",
            "",
            "a b",
            "a/",
        ] {
            assert!(
                matches!(dir.write(bad, b"x"), Err(StateError::BadName { .. })),
                "{bad:?}"
            );
        }
    }

    unsafe extern "C" {
        #[link_name = "umask"]
        fn libc_umask(mask: u32) -> u32;
    }
}
