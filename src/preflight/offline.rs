//! Checks that need no network: the state directory and the EAB key file. The
//! facts are gathered by thin I/O functions; the verdicts are pure.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::Line;
use crate::config::Config;

/// Why a file could not be created or read where we looked. The OS's reason is
/// kept as text: the facts are plain data, compared and built by hand in tests,
/// which `std::io::Error` (neither `Clone` nor `Eq`) would not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AccessError {
    #[error("{0}")]
    Io(String),
    #[error("not a directory")]
    NotDir,
}

impl From<std::io::Error> for AccessError {
    fn from(e: std::io::Error) -> Self {
        AccessError::Io(e.to_string())
    }
}

impl From<&str> for AccessError {
    fn from(reason: &str) -> Self {
        AccessError::Io(reason.to_string())
    }
}

/// What we know about the state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DirFacts {
    /// It exists (and is a directory).
    Dir {
        mode: u32,
        owner: u32,
        /// Our effective uid, when /proc tells it.
        us: Option<u32>,
        /// Whether a file could be created in it, or why not.
        writable: Result<(), AccessError>,
    },
    /// Something else is at that path.
    NotDir,
    /// It does not exist; `ancestor` is the nearest existing one.
    Missing {
        ancestor: String,
        creatable: Result<(), AccessError>,
    },
    /// It could not be examined.
    Unreadable(String),
}

/// The verdict on the state directory.
pub(crate) fn state_dir_line(dir: &Path, facts: &DirFacts) -> Line {
    let what = format!("state directory {}", dir.display());
    match facts {
        DirFacts::NotDir => Line::fail(
            format!("{what}: exists but is not a directory"),
            "move it away or set state.dir to a directory",
        ),
        DirFacts::Unreadable(e) => Line::fail(
            format!("{what}: cannot be examined: {e}"),
            "check the permissions of its parent directories",
        ),
        DirFacts::Missing {
            ancestor,
            creatable: Ok(()),
        } => Line::ok(format!(
            "{what}: does not exist yet; it will be created (mode 0700) under {ancestor}"
        )),
        DirFacts::Missing {
            ancestor,
            creatable: Err(e),
        } => Line::fail(
            format!("{what}: does not exist and cannot be created under {ancestor}: {e}"),
            format!(
                "create it for the daemon's user: install -d -m 0700 -o <user> {}",
                dir.display()
            ),
        ),
        DirFacts::Dir {
            mode,
            owner,
            us,
            writable,
        } => {
            if let Some(us) = us
                && owner != us
            {
                return Line::fail(
                    format!("{what}: owned by uid {owner}, not by us (uid {us})"),
                    format!(
                        "chown it to the daemon's user: chown {us} {}",
                        dir.display()
                    ),
                );
            }
            if let Err(e) = writable {
                return Line::fail(
                    format!("{what}: not writable: {e}"),
                    format!(
                        "chmod 0700 {} (and check the file system is writable)",
                        dir.display()
                    ),
                );
            }
            if mode & 0o077 != 0 {
                // The daemon narrows it to 0700 when it opens the directory, and
                // its files are 0600, so this is a warning, not a failure.
                return Line::warn(
                    format!(
                        "{what}: mode {:04o} lets others in (the daemon narrows it to 0700 on start)",
                        mode & 0o7777
                    ),
                    format!("chmod 0700 {}", dir.display()),
                );
            }
            Line::ok(format!("{what}: mode 0700, ours, writable"))
        }
    }
}

/// Our effective uid, from /proc (std has no getuid; the daemon targets Linux).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a file can be created in `dir`: create one and remove it (the only
/// honest test: modes, ACLs, read-only mounts and SELinux all play a part).
fn can_create_in(dir: &Path) -> Result<(), AccessError> {
    let probe = dir.join(format!(".gclb-acme-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    Ok(std::fs::remove_file(&probe)?)
}

/// Gathers the facts about the state directory.
pub(crate) fn state_dir_facts(dir: &Path) -> DirFacts {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => DirFacts::Dir {
            mode: m.permissions().mode(),
            owner: m.uid(),
            us: effective_uid(),
            writable: can_create_in(dir),
        },
        Ok(_) => DirFacts::NotDir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut a = dir.parent();
            while let Some(p) = a {
                if p.exists() {
                    break;
                }
                a = p.parent();
            }
            let ancestor = a.unwrap_or(Path::new("/"));
            let creatable = if ancestor.is_dir() {
                can_create_in(ancestor)
            } else {
                Err(AccessError::NotDir)
            };
            DirFacts::Missing {
                ancestor: ancestor.display().to_string(),
                creatable,
            }
        }
        Err(e) => DirFacts::Unreadable(e.to_string()),
    }
}

/// The verdict on the EAB key file: readable, a base64url key, not readable by
/// others.
pub(crate) fn eab_line(file: &Path, content: Result<(String, u32), AccessError>) -> Line {
    use base64::Engine;
    let what = format!("EAB key file {}", file.display());
    let (text, mode) = match content {
        Ok(c) => c,
        Err(e) => {
            return Line::fail(
                format!("{what}: cannot read: {e}"),
                "make it readable by the daemon's user (and by nobody else)",
            );
        }
    };
    let key = text.trim();
    let decoded =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key.trim_end_matches('='));
    match decoded {
        Ok(k) if !k.is_empty() => {}
        Ok(_) => {
            return Line::fail(
                format!("{what}: is empty"),
                "write the HMAC key your CA gave you into it",
            );
        }
        Err(e) => {
            return Line::fail(
                format!("{what}: not a base64url HMAC key ({e})"),
                "write the HMAC key exactly as your CA gave it",
            );
        }
    }
    if mode & 0o004 != 0 {
        return Line::warn(
            format!(
                "{what}: readable by every user (mode {:04o})",
                mode & 0o7777
            ),
            format!("chmod 0600 {}", file.display()),
        );
    }
    Line::ok(format!("{what}: readable, a base64url key"))
}

/// Every offline check after the configuration itself.
pub(crate) fn run(config: &Config) -> Vec<Line> {
    let mut lines = if config.state.is_bucket() {
        // No local directory is used: the bucket is checked online.
        vec![Line::ok(format!(
            "state: {} (a bucket: checked online)",
            config.state.location()
        ))]
    } else {
        vec![state_dir_line(
            &config.state.dir,
            &state_dir_facts(&config.state.dir),
        )]
    };
    if !config.acme.ca_roots.is_empty() {
        // Config::load already parsed every file; say so, with the count.
        lines.push(Line::ok(format!(
            "acme.ca_roots: {} file(s) readable, each holding PEM certificates",
            config.acme.ca_roots.len()
        )));
    }
    if let Some(eab) = &config.acme.eab {
        let f = &eab.hmac_key_file;
        let content = std::fs::read_to_string(f)
            .and_then(|t| Ok((t, std::fs::metadata(f)?.permissions().mode())))
            .map_err(AccessError::from);
        lines.push(eab_line(f, content));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    fn dir(mode: u32, owner: u32, writable: Result<(), AccessError>) -> DirFacts {
        DirFacts::Dir {
            mode,
            owner,
            us: Some(1000),
            writable,
        }
    }

    #[test]
    fn state_dir_verdicts() {
        let p = Path::new("/var/lib/gclb-acme");
        assert_eq!(
            state_dir_line(p, &dir(0o40700, 1000, Ok(()))).status,
            Status::Ok
        );
        let l = state_dir_line(p, &dir(0o40755, 1000, Ok(())));
        assert_eq!(l.status, Status::Warn);
        assert!(l.what.contains("mode 0755"), "{}", l.what);
        let l = state_dir_line(p, &dir(0o40700, 0, Ok(())));
        assert_eq!(l.status, Status::Fail);
        assert!(l.what.contains("owned by uid 0"), "{}", l.what);
        let l = state_dir_line(p, &dir(0o40700, 1000, Err("Read-only file system".into())));
        assert_eq!(l.status, Status::Fail);
        let l = state_dir_line(
            p,
            &DirFacts::Missing {
                ancestor: "/var/lib".into(),
                creatable: Err("Permission denied".into()),
            },
        );
        assert_eq!(l.status, Status::Fail);
        assert!(l.fix.unwrap().contains("install -d -m 0700"));
        let l = state_dir_line(
            p,
            &DirFacts::Missing {
                ancestor: "/var/lib".into(),
                creatable: Ok(()),
            },
        );
        assert_eq!(l.status, Status::Ok);
        assert_eq!(state_dir_line(p, &DirFacts::NotDir).status, Status::Fail);
    }

    #[test]
    fn real_directories() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let l = state_dir_line(tmp.path(), &state_dir_facts(tmp.path()));
        assert_eq!(l.status, Status::Ok, "{}", l.what);
        let missing = tmp.path().join("a/b");
        let l = state_dir_line(&missing, &state_dir_facts(&missing));
        assert_eq!(l.status, Status::Ok, "{}", l.what);
        assert!(!missing.exists(), "check must not create the directory");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "probe left behind"
        );
    }

    #[test]
    fn eab_verdicts() {
        let f = Path::new("/etc/gclb-acme/eab.key");
        assert_eq!(
            eab_line(f, Ok(("c2VjcmV0LWtleQ\n".into(), 0o100600))).status,
            Status::Ok
        );
        let l = eab_line(f, Ok(("c2VjcmV0LWtleQ".into(), 0o100644)));
        assert_eq!(l.status, Status::Warn);
        assert_eq!(l.fix.as_deref(), Some("chmod 0600 /etc/gclb-acme/eab.key"));
        assert_eq!(
            eab_line(f, Ok(("not base64!".into(), 0o100600))).status,
            Status::Fail
        );
        assert_eq!(
            eab_line(f, Ok(("\n".into(), 0o100600))).status,
            Status::Fail
        );
        assert_eq!(
            eab_line(f, Err("Permission denied".into())).status,
            Status::Fail
        );
    }
}
