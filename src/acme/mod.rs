//! The ACME engine: one account per directory URL, and issuance of one
//! certificate at a time through a batched DNS-01 solver.
//!
//! ```text
//! issue(request, solver)
//!   stored, not yet installed certificate for the same spec?  -> return it
//!   order in flight for the same spec (state dir)?            -> resume it
//!   else newOrder (profile; replaces when the CA has ARI: an order the CA made
//!     without echoing it is used as is, one refused by the CA is placed again
//!     without it), record its URL
//!   present every pending dns-01 record at once -> set_ready on all (an answer
//!     `invalid` fails at once) -> poll to ready, reading the authorizations
//!     while the order is pending (a CA may leave it pending after a failure)
//!   on failure: clean the records up, return the error
//!   clean the records up  ||  finalize with our CSR -> poll to valid -> download
//!     (both finished before anything is persisted)
//!   validate the chain -> drop a served self-signed root (docs/cas.md)
//!   persist key + chain + facts (0600, atomic) -> return
//! ```
//!
//! Transient CA errors (badNonce, 5xx, rate limits with a short Retry-After,
//! connection failures) are retried inside each step with capped exponential
//! back-off; everything else is returned, classified (see [`AcmeError`]).

pub(crate) mod account;
pub(crate) mod error;
pub(crate) mod http;
mod order;
pub(crate) mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{Account, CertificateIdentifier};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use account::account_file;
pub use error::{AcmeError, Problem, SolverError, Subproblem};
pub use http::{AcmeHttp, Endpoint, EndpointStats, HttpStats};
pub use store::{load_pending, normalize_names, save_pending};

use crate::certs::{LeafInfo, SecretPem};
use crate::config::{AcmeConfig, CertificateConfig, KeyType};
use crate::state::State;

/// One DNS-01 TXT value to publish.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChallengeRecord {
    /// The identifier as ordered, e.g. `*.example.com`.
    pub identifier: String,
    /// `_acme-challenge.example.com` (no trailing dot). A wildcard and its apex
    /// share one name: the solver must publish both values in one record set.
    pub record_name: String,
    /// base64url SHA-256 of the key authorization: the TXT value.
    pub value: String,
}

/// Publishes and removes DNS-01 TXT records. Batch-oriented: all records of an
/// order are presented at once, then every validation is requested.
pub trait Dns01Solver: Send + Sync {
    /// Writes every record (grouping them per zone is the solver's business) and
    /// returns only once every authoritative name server serves them all.
    fn present(
        &self,
        records: &[ChallengeRecord],
    ) -> impl Future<Output = Result<(), SolverError>> + Send;
    /// Removes exactly our values; must be safe after a partial `present`.
    /// Returns once the removal is accepted (it need not be served yet): the
    /// issuance persists the certificate right after, and a run resuming from
    /// there never comes back to these values.
    fn cleanup(
        &self,
        records: &[ChallengeRecord],
    ) -> impl Future<Output = Result<(), SolverError>> + Send;
}

/// In-flow retries of transient errors.
#[derive(Clone, Copy, Debug)]
pub struct RetryConfig {
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// First delay; doubles each attempt.
    pub initial: Duration,
    /// Longest delay; a Retry-After beyond it ends the flow with the error, for
    /// the scheduler to wait out.
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 4,
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// The delay before attempt `attempt + 1`, or `None` to give up.
    pub(crate) fn delay(&self, attempt: u32, err: &AcmeError) -> Option<Duration> {
        if attempt >= self.attempts || !err.retry_in_flow() {
            return None;
        }
        if let Some(after) = err.retry_after() {
            return (after <= self.max_delay).then_some(after);
        }
        let exp = self
            .initial
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.max_delay);
        // Up to 25 % jitter so that several certificates do not retry in lockstep.
        let jitter = exp.mul_f64(rand::random::<f64>() * 0.25);
        Some(exp + jitter)
    }
}

/// Runs a step, retrying it while it fails with a transient error.
macro_rules! retrying {
    ($retry:expr, $op:expr, $body:expr) => {{
        let mut attempt = 1u32;
        loop {
            match $body {
                Ok(v) => break Ok(v),
                Err(e) => match $retry.delay(attempt, &e) {
                    Some(d) => {
                        tracing::warn!(
                            operation = $op,
                            attempt,
                            delay_ms = d.as_millis() as u64,
                            error = %e,
                            "transient ACME error, retrying"
                        );
                        tokio::time::sleep(d).await;
                        attempt += 1;
                    }
                    None => break Err(e),
                },
            }
        }
    }};
}
pub(crate) use retrying;

/// How the order is polled while the CA validates and signs.
#[derive(Clone, Copy, Debug)]
pub struct PollConfig {
    /// First wait after requesting validation or finalization.
    pub initial: Duration,
    /// Longest wait between two polls (the wait doubles up to it).
    pub max_delay: Duration,
    /// Give up (retryable [`AcmeError::Timeout`]) after this long.
    pub timeout: Duration,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            initial: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(180),
        }
    }
}

/// Tuning of an [`AcmeClient`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientOptions {
    pub retry: RetryConfig,
    pub poll: PollConfig,
}

/// What to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// `[[certificates]].name`: keys the state files.
    pub certificate: String,
    /// DNS names, wildcards as `*.example.com`.
    pub names: Vec<String>,
    pub key_type: KeyType,
    /// Keep one key across renewals (stored under `keys/`).
    pub reuse_key: bool,
    /// ACME profile, e.g. `tlsserver`.
    pub profile: Option<String>,
    /// ARI: the certificate this one replaces (dropped if the CA refuses it).
    pub replaces: Option<CertificateIdentifier<'static>>,
}

impl IssueRequest {
    /// The request for a configured certificate.
    pub fn new(cert: &CertificateConfig, acme: &AcmeConfig) -> Self {
        IssueRequest {
            certificate: cert.name.clone(),
            names: cert.domains.clone(),
            key_type: cert.key_type,
            reuse_key: cert.reuse_key,
            profile: acme.profile.clone(),
            replaces: None,
        }
    }
}

/// An issued, validated certificate with its key, as persisted in the state
/// directory until the installer calls `store::remove_pending`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// `[[certificates]].name`.
    pub certificate: String,
    /// The requested names, normalised (lower case, sorted, deduplicated).
    pub names: Vec<String>,
    pub key_type: KeyType,
    /// The private key (PKCS#8 PEM); `Debug` redacts it.
    pub key_pem: SecretPem,
    /// Leaf first, then intermediates, as the CA sent it.
    pub chain_pem: String,
    /// Facts about the leaf.
    pub leaf: LeafInfo,
    /// The ACME order it came from.
    pub order_url: String,
    /// The directory URL of the CA that issued it.
    pub directory: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
}

/// A connected ACME account and the state directory it persists into.
pub struct AcmeClient {
    account: Account,
    state: State,
    http: AcmeHttp,
    directory: String,
    account_created: bool,
    options: ClientOptions,
}

impl AcmeClient {
    /// Loads (or creates, once per directory URL) the account, with default tuning.
    pub async fn connect(
        acme: &AcmeConfig,
        state: impl Into<State>,
    ) -> Result<AcmeClient, AcmeError> {
        Self::connect_with(acme, state, ClientOptions::default()).await
    }

    /// [`AcmeClient::connect`] with explicit retry and poll tuning.
    pub async fn connect_with(
        acme: &AcmeConfig,
        state: impl Into<State>,
        options: ClientOptions,
    ) -> Result<AcmeClient, AcmeError> {
        let state = state.into();
        let http = AcmeHttp::new(&acme.directory, &acme.ca_roots)
            .map_err(|e| AcmeError::Config(format!("acme.ca_roots: {e}")))?;
        let loaded =
            http::in_flow(account::load_or_create(acme, &state, &http, &options.retry)).await?;
        Ok(AcmeClient {
            account: loaded.account,
            state,
            http,
            directory: acme.directory.clone(),
            account_created: loaded.created,
            options,
        })
    }

    /// Issues a certificate (or returns the stored, not yet installed one for the
    /// same spec). See the module documentation for the flow.
    pub async fn issue<S: Dns01Solver>(
        &self,
        request: &IssueRequest,
        solver: &S,
    ) -> Result<IssuedCertificate, AcmeError> {
        order::issue(self, request, solver).await
    }

    /// The CA's suggested renewal window (ARI, RFC 9773) for a certificate id
    /// (`LeafInfo::ari_id`), and how long to wait before asking again; `None`
    /// when the CA does not offer ARI.
    pub async fn renewal_info(
        &self,
        ari_id: &str,
    ) -> Result<Option<(crate::schedule::timing::AriWindow, std::time::Duration)>, AcmeError> {
        let Some((aki, serial)) = ari_id.split_once('.') else {
            return Err(AcmeError::Protocol {
                operation: "renewalInfo",
                message: format!("malformed ARI certificate id {ari_id:?}"),
            });
        };
        let id = CertificateIdentifier {
            authority_key_identifier: aki.to_string().into(),
            serial: serial.to_string().into(),
        };
        match self.account.renewal_info(&id).await {
            Ok((info, retry_after)) => Ok(Some((
                crate::schedule::timing::AriWindow {
                    start: info.suggested_window.start,
                    end: info.suggested_window.end,
                },
                retry_after,
            ))),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(AcmeError::from_acme("renewalInfo", e)),
        }
    }

    /// The stored, not yet installed certificate of `certificate`, if any.
    pub async fn pending(&self, certificate: &str) -> Result<Option<IssuedCertificate>, AcmeError> {
        Ok(store::load_pending(&self.state, certificate).await?)
    }

    /// Forgets the stored certificate once it is installed; `false` if there was none.
    pub async fn mark_installed(&self, certificate: &str) -> Result<bool, AcmeError> {
        Ok(store::remove_pending(&self.state, certificate).await?)
    }

    /// Request counters per ACME endpoint (shared; keeps counting).
    pub fn stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }

    /// The account URL.
    pub fn account_id(&self) -> &str {
        self.account.id()
    }

    /// True when [`AcmeClient::connect`] created the account (sent newAccount).
    pub fn account_created(&self) -> bool {
        self.account_created
    }

    /// The directory URL.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// The state (directory or bucket).
    pub fn state(&self) -> &State {
        &self.state
    }
}
