//! ACME errors, classified: transient (retry, maybe after a given time) or
//! permanent (a human or a config change is needed).

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::acme::http::{NON_PROBLEM_TYPE, TransportError};
use crate::certs::CertError;
use crate::state::StateError;

/// The CA's problem document (RFC 8555 §6.7), verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// e.g. `urn:ietf:params:acme:error:unauthorized`.
    pub r#type: Option<String>,
    /// The CA's explanation.
    pub detail: Option<String>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Per-identifier problems.
    pub subproblems: Vec<Subproblem>,
}

/// One per-identifier problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subproblem {
    /// The identifier, e.g. `www.example.com`.
    pub identifier: Option<String>,
    /// Problem type.
    pub r#type: Option<String>,
    /// The CA's explanation.
    pub detail: Option<String>,
}

impl Problem {
    /// The part after `urn:ietf:params:acme:error:` (or the whole type).
    pub fn short_type(&self) -> Option<&str> {
        let t = self.r#type.as_deref()?;
        Some(t.strip_prefix("urn:ietf:params:acme:error:").unwrap_or(t))
    }

    fn is_transient(&self) -> bool {
        match self.short_type() {
            Some("badNonce" | "rateLimited" | "serverInternal") => true,
            Some(t) if t == NON_PROBLEM_TYPE => self.status.is_none_or(|s| s >= 500 || s == 429),
            _ => self.status.is_some_and(|s| s >= 500 || s == 429),
        }
    }
}

impl From<instant_acme::Problem> for Problem {
    fn from(p: instant_acme::Problem) -> Self {
        Problem {
            r#type: p.r#type,
            detail: p.detail,
            status: p.status,
            subproblems: p
                .subproblems
                .into_iter()
                .map(|s| Subproblem {
                    identifier: s
                        .identifier
                        .as_ref()
                        .map(|i| i.authorized(false).to_string()),
                    r#type: s.r#type,
                    detail: s.detail,
                })
                .collect(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.r#type.as_deref().unwrap_or("(no problem type)"))?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        for s in &self.subproblems {
            write!(
                f,
                "; {}: {}: {}",
                s.identifier.as_deref().unwrap_or("?"),
                s.r#type.as_deref().unwrap_or("?"),
                s.detail.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

/// Why an ACME operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA answered with a problem document.
    #[error("ACME {operation}: the CA answered {problem}")]
    Ca {
        operation: &'static str,
        problem: Problem,
        /// From the response's Retry-After (rate limits, maintenance).
        retry_after: Option<SystemTime>,
    },
    /// An authorization went invalid: the CA's verdict on our challenge response.
    #[error("authorization for {identifier} failed: {problem}")]
    Authorization {
        identifier: String,
        problem: Problem,
    },
    /// The order went invalid without a more specific authorization problem.
    #[error("order {order_url} became invalid: {problem}")]
    OrderInvalid { order_url: String, problem: Problem },
    /// No HTTP response at all (connection, TLS, timeout).
    #[error("ACME {operation}: cannot reach the CA: {message}")]
    Transport {
        operation: &'static str,
        message: String,
    },
    /// The CA did not reach the expected state in time.
    #[error("ACME {operation}: timed out waiting for the CA")]
    Timeout { operation: &'static str },
    /// The CA's answer made no sense to us (bad JSON, missing fields, unsupported).
    #[error("ACME {operation}: {message}")]
    Protocol {
        operation: &'static str,
        message: String,
    },
    /// The DNS-01 solver failed.
    #[error("DNS-01: {0}")]
    Solver(#[from] SolverError),
    /// The issued certificate failed validation (nothing was stored or returned).
    #[error("the CA's certificate was rejected: {0}")]
    Certificate(#[from] CertError),
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Unusable configuration (EAB key file, roots, terms).
    #[error("{0}")]
    Config(String),
}

impl AcmeError {
    /// Converts an instant-acme error raised during `operation`, picking up the
    /// Retry-After the flow's HTTP client saw.
    pub(crate) fn from_acme(operation: &'static str, e: instant_acme::Error) -> Self {
        use instant_acme::Error as E;
        match e {
            E::Api(p) => AcmeError::Ca {
                operation,
                problem: p.into(),
                retry_after: crate::acme::http::take_retry_after(),
            },
            E::Timeout(_) => AcmeError::Timeout { operation },
            E::Other(inner) => match inner.downcast::<TransportError>() {
                Ok(t) => AcmeError::Transport {
                    operation,
                    message: t.to_string(),
                },
                Err(other) => AcmeError::Protocol {
                    operation,
                    message: crate::acme::http::error_chain(&*other),
                },
            },
            E::Http(e) => AcmeError::Protocol {
                operation,
                message: e.to_string(),
            },
            other => AcmeError::Protocol {
                operation,
                message: crate::acme::http::error_chain(&other),
            },
        }
    }

    /// Whether trying again later can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            AcmeError::Ca { problem, .. } => problem.is_transient(),
            AcmeError::Transport { .. } | AcmeError::Timeout { .. } => true,
            AcmeError::Solver(s) => s.retryable,
            AcmeError::Authorization { .. }
            | AcmeError::OrderInvalid { .. }
            | AcmeError::Protocol { .. }
            | AcmeError::Certificate(_)
            | AcmeError::State(_)
            | AcmeError::Config(_) => false,
        }
    }

    /// How long the CA asked us to wait (from now), when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AcmeError::Ca {
                retry_after: Some(at),
                ..
            } => Some(
                at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            ),
            _ => None,
        }
    }

    /// The CA's problem document, if the CA gave one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            AcmeError::Ca { problem, .. }
            | AcmeError::Authorization { problem, .. }
            | AcmeError::OrderInvalid { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Whether the flow itself should retry this now (transient and quick):
    /// timeouts already waited long, so they go back to the scheduler.
    pub(crate) fn retry_in_flow(&self) -> bool {
        self.is_retryable() && !matches!(self, AcmeError::Timeout { .. })
    }
}

/// A DNS-01 solver failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SolverError {
    /// What went wrong (must not contain secrets).
    pub message: String,
    /// Whether a later attempt can succeed unchanged (API 5xx, propagation timeout)
    /// or not (permission denied, no zone for the name).
    pub retryable: bool,
}

impl SolverError {
    /// A failure that may go away on its own.
    pub fn transient(message: impl Into<String>) -> Self {
        SolverError {
            message: message.into(),
            retryable: true,
        }
    }
    /// A failure that needs a human.
    pub fn permanent(message: impl Into<String>) -> Self {
        SolverError {
            message: message.into(),
            retryable: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(t: &str, status: u16) -> AcmeError {
        AcmeError::Ca {
            operation: "new_order",
            problem: Problem {
                r#type: Some(t.into()),
                detail: Some("d".into()),
                status: Some(status),
                subproblems: vec![],
            },
            retry_after: None,
        }
    }

    #[test]
    fn classification() {
        let p = "urn:ietf:params:acme:error:";
        for t in ["badNonce", "rateLimited", "serverInternal"] {
            assert!(ca(&format!("{p}{t}"), 400).is_retryable(), "{t}");
        }
        for t in [
            "unauthorized",
            "rejectedIdentifier",
            "caa",
            "dns",
            "malformed",
            "badCSR",
            "accountDoesNotExist",
        ] {
            assert!(!ca(&format!("{p}{t}"), 403).is_retryable(), "{t}");
        }
        assert!(ca("about:blank", 503).is_retryable());
        assert!(ca(NON_PROBLEM_TYPE, 502).is_retryable());
        assert!(!ca(NON_PROBLEM_TYPE, 404).is_retryable());
        assert!(
            AcmeError::Transport {
                operation: "x",
                message: "refused".into()
            }
            .is_retryable()
        );
        let t = AcmeError::Timeout { operation: "x" };
        assert!(t.is_retryable() && !t.retry_in_flow());
        assert!(AcmeError::Solver(SolverError::transient("x")).is_retryable());
        assert!(!AcmeError::Solver(SolverError::permanent("x")).is_retryable());
    }

    #[test]
    fn retry_after_is_relative() {
        let e = AcmeError::Ca {
            operation: "new_order",
            problem: Problem {
                r#type: Some("urn:ietf:params:acme:error:rateLimited".into()),
                detail: None,
                status: Some(429),
                subproblems: vec![],
            },
            retry_after: Some(SystemTime::now() + Duration::from_secs(3600)),
        };
        let d = e.retry_after().unwrap();
        assert!(d > Duration::from_secs(3590) && d <= Duration::from_secs(3600));
        assert!(e.is_retryable());
    }
}
