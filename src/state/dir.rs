//! The directory backend of [`Store`]: today's state directory, file for file.
//!
//! Content goes through [`StateDir`] unchanged (temporary file created 0600,
//! fsync, rename, fsync of the directory; directories 0700), so a directory
//! written through the store is byte for byte what gclb-acme always wrote.
//! What the store adds is the conditional write: a version is the SHA-256 of
//! the content (see [`Version`]), and every write or delete compares and
//! replaces under an exclusive `flock` on `.store.lock` in the directory, so
//! conditional writers in several processes (or threads) on one machine are
//! linearized. The lock is held for one compare-and-rename, never across an
//! `.await`, and the kernel drops it if the process dies.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::Digest;

use super::store::{Expect, Store, StoreError, Stored, Version};
use super::{FILE_MODE, StateDir, StateError, check_name};

/// The lock file conditional writes serialise on (hidden: never listed).
const LOCK_FILE: &str = ".store.lock";
/// Per-certificate `flock` files of [`StateDir::try_lock_certificate`]: not state.
const LOCKS_DIR: &str = "locks";

/// A state directory seen through [`Store`].
#[derive(Clone, Debug)]
pub struct DirStore {
    dir: StateDir,
}

impl DirStore {
    /// The store over an opened directory.
    pub fn new(dir: StateDir) -> DirStore {
        DirStore { dir }
    }

    /// Opens (creating, 0700) the directory; see [`StateDir::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<DirStore, StateError> {
        StateDir::open(path).map(DirStore::new)
    }

    /// The directory underneath.
    pub fn dir(&self) -> &StateDir {
        &self.dir
    }

    /// The version of some content.
    pub fn version_of(data: &[u8]) -> Version {
        let hex: String = sha2::Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Version(format!("sha256:{hex}"))
    }

    /// Holds the directory's store lock until the file is dropped.
    fn lock(&self) -> Result<File, StateError> {
        let path = self.dir.path().join(LOCK_FILE);
        let err = |source| StateError::Lock {
            path: path.clone(),
            source,
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(err)?;
        f.lock().map_err(err)?;
        Ok(f)
    }

    fn conflict(&self, name: &str) -> StoreError {
        StoreError::Conflict {
            location: self.location(),
            name: name.to_string(),
        }
    }

    fn holds(current: Option<&[u8]>, expect: &Expect) -> bool {
        match (expect, current) {
            (Expect::Any, _) => true,
            (Expect::Absent, c) => c.is_none(),
            (Expect::Version(v), Some(c)) => DirStore::version_of(c) == *v,
            (Expect::Version(_), None) => false,
        }
    }

    fn walk(&self, rel: &str, out: &mut Vec<String>) -> Result<(), StateError> {
        let path = if rel.is_empty() {
            self.dir.path().to_path_buf()
        } else {
            self.dir.path().join(rel)
        };
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| StateError::Read {
                path: path.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || (rel.is_empty() && name == LOCKS_DIR) {
                continue;
            }
            let full = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type().map_err(|source| StateError::Read {
                path: path.clone(),
                source,
            })?;
            if kind.is_dir() {
                self.walk(&full, out)?;
            } else if kind.is_file() {
                out.push(full);
            }
        }
        Ok(())
    }
}

impl Store for DirStore {
    fn location(&self) -> String {
        self.dir.path().display().to_string()
    }

    async fn read(&self, name: &str) -> Result<Option<Stored>, StoreError> {
        Ok(self.dir.read(name)?.map(|data| Stored {
            version: DirStore::version_of(&data),
            data,
        }))
    }

    async fn write(&self, name: &str, data: &[u8], expect: Expect) -> Result<Version, StoreError> {
        check_name(name)?;
        let _lock = self.lock()?;
        let current = self.dir.read(name)?;
        if !DirStore::holds(current.as_deref(), &expect) {
            return Err(self.conflict(name));
        }
        self.dir.write(name, data)?;
        Ok(DirStore::version_of(data))
    }

    async fn delete(&self, name: &str, expect: Expect) -> Result<bool, StoreError> {
        check_name(name)?;
        let _lock = self.lock()?;
        let Some(current) = self.dir.read(name)? else {
            return Ok(false);
        };
        if !DirStore::holds(Some(&current), &expect) {
            return Err(self.conflict(name));
        }
        Ok(self.dir.remove(name)?)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Walk only the directory the prefix names, then filter by the rest.
        let start = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        if !start.is_empty() {
            check_name(start)?;
        }
        let mut out = Vec::new();
        self.walk(start, &mut out)?;
        out.retain(|n| n.starts_with(prefix));
        out.sort();
        Ok(out)
    }
}
