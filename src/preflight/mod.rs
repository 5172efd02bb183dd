//! `gclb-acme check`: the preflight. One line per check (`ok`, `warn`, `skip`,
//! `FAIL`), each failure with its fix, so a new installation's problems show up
//! before the first renewal trips over them: the state directory, credentials and
//! whose they are, the project, enabled APIs, IAM permissions, each domain's zone,
//! its delegation at the registrar, CAA, stale challenge CNAMEs, and the proxies.
//!
//! Decisions are pure functions (tested on their own); the I/O around them is
//! thin. Independent online checks run concurrently.

pub(crate) mod caa;
pub mod credentials;
pub(crate) mod delegation;
pub(crate) mod offline;
pub(crate) mod online;
pub mod permissions;
pub(crate) mod resolver;
pub mod takeover;

use std::fmt;

use crate::config::Config;
pub use credentials::{Credentials, Detection, Source};

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub status: Status,
    /// What was checked and what was found.
    pub what: String,
    /// How to fix it (failures and warnings).
    pub fix: Option<String>,
}

impl Line {
    pub fn ok(what: impl Into<String>) -> Line {
        Line {
            status: Status::Ok,
            what: what.into(),
            fix: None,
        }
    }
    pub fn skip(what: impl Into<String>) -> Line {
        Line {
            status: Status::Skip,
            what: what.into(),
            fix: None,
        }
    }
    pub fn warn(what: impl Into<String>, fix: impl Into<String>) -> Line {
        Line {
            status: Status::Warn,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(what: impl Into<String>, fix: impl Into<String>) -> Line {
        Line {
            status: Status::Fail,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}", self.status.as_str(), self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// Every line, in a fixed order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    /// Whether any check failed (`check` then exits 1).
    pub fn failed(&self) -> bool {
        self.lines.iter().any(|l| l.status == Status::Fail)
    }

    /// The lines with this status.
    pub fn with(&self, status: Status) -> Vec<&Line> {
        self.lines.iter().filter(|l| l.status == status).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

/// The first line: the configuration itself (it loaded, so it is valid; one
/// without certificates is valid too, but a daemon with nothing to do is a mistake).
pub fn config_line(config: &Config, path: &std::path::Path) -> Line {
    if config.certificates.is_empty() {
        return Line::fail(
            format!(
                "configuration {}: no [[certificates]] entry: there is nothing to renew",
                path.display()
            ),
            "add a [[certificates]] entry with name, domains and target_https_proxies (config/example.toml shows one)",
        );
    }
    let domains: usize = config.certificates.iter().map(|c| c.domains.len()).sum();
    Line::ok(format!(
        "configuration {}: {} certificate(s), {} name(s), CA {}",
        path.display(),
        config.certificates.len(),
        domains,
        config.acme.directory
    ))
}

/// Runs every check: offline ones always, online ones with the credentials found.
pub async fn run(config: &Config, path: &std::path::Path, credentials: Detection) -> Report {
    let mut lines = vec![config_line(config, path)];
    lines.extend(offline::run(config));
    match credentials {
        Detection::None(why) => lines.push(Line::skip(format!(
            "credentials: none found ({why}); only the offline checks ran"
        ))),
        Detection::Found(c) => lines.extend(online::run(config, c).await),
    }
    Report { lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_without_certificates_fails_the_check() {
        let path = std::path::Path::new("/etc/gclb-acme/config.toml");
        let empty = Config::from_toml("", "config.toml", None).unwrap();
        let line = config_line(&empty, path);
        assert_eq!(line.status, Status::Fail);
        assert!(line.what.contains("no [[certificates]] entry"), "{line}");
        let one = Config::from_toml(
            "[acme]\naccept_terms = true\n[[certificates]]\nname = \"app\"\ndomains = [\"app.example.com\"]\ntarget_https_proxies = [\"p\"]\n",
            "config.toml",
            None,
        )
        .unwrap();
        let line = config_line(&one, path);
        assert_eq!(line.status, Status::Ok);
        assert!(line.what.contains("1 certificate(s), 1 name(s)"), "{line}");
    }

    #[test]
    fn lines_print_status_what_and_fix() {
        assert_eq!(Line::ok("a").to_string(), "ok    a");
        assert_eq!(
            Line::fail("API x: disabled", "gcloud services enable x").to_string(),
            "FAIL  API x: disabled; fix: gcloud services enable x"
        );
        let r = Report {
            lines: vec![Line::ok("a"), Line::warn("b", "c")],
        };
        assert!(!r.failed());
        assert_eq!(r.to_string(), "ok    a\nwarn  b; fix: c\n");
    }
}
