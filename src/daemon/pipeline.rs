//! The daemon's [`Worker`] over the real pipeline: observe through the
//! certificate target ([`lb::CertificateTarget`]),
//! renew with `reconcile::Renewer`, ARI through the ACME account.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Assessment, DaemonError, Failure, Renewed, Worker, WorkerFactory};
use crate::acme::{AcmeClient, AcmeError};
use crate::config::{CertificateConfig, Config};
use crate::gcp::Gcp;
use crate::lb::{self, CertificateTarget, LbError};
use crate::metrics::Metrics;
use crate::reconcile::{self, Reason, decide};
use crate::schedule::timing::{AriWindow, Validity};
use crate::state::State;

/// The pipeline, as the daemon drives it.
#[derive(Clone)]
pub struct Pipeline {
    inner: reconcile::Renewer,
    /// Per certificate, until when what this pipeline last saw served is
    /// valid ([`reconcile::served_until`]): a renewal the daemon's schedule
    /// forces is not forced once another process renewed it meanwhile.
    seen: Arc<std::sync::Mutex<HashMap<String, Option<OffsetDateTime>>>>,
}

impl Pipeline {
    pub fn new(inner: reconcile::Renewer) -> Pipeline {
        Pipeline {
            inner,
            seen: Arc::default(),
        }
    }

    fn saw(&self, certificate: &str, until: Option<OffsetDateTime>) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(certificate.to_string(), until);
    }

    fn last_seen(&self, certificate: &str) -> Option<Option<OffsetDateTime>> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(certificate)
            .copied()
    }
}

/// Classifies a pipeline failure for back-off, alerts and metrics.
pub(crate) fn classify(e: &reconcile::RenewError) -> Failure {
    let (reason, retryable, retry_after) = match e {
        reconcile::RenewError::Lb(l) => match l {
            // quotaExceeded of another call (the upload's own is LbError::Quota).
            LbError::Gcp(g) => {
                let label = g.label();
                let quota = matches!(label.as_str(), "quotaExceeded" | "QUOTA_EXCEEDED");
                (format!("gcp:{label}"), g.is_retryable() || quota, None)
            }
            LbError::GaveUp { last, .. } => (format!("gcp:{}", last.label()), true, None),
            LbError::ProxyNotFound { .. } => ("proxy_not_found".into(), false, None),
            LbError::CertificateMap { .. } | LbError::MapNotOnProxy { .. } => {
                ("certificate_map".into(), false, None)
            }
            LbError::MapNotConfigured { .. } => ("config".into(), false, None),
            LbError::NotOurs { .. } | LbError::EntryTaken { .. } => {
                ("name_taken".into(), false, None)
            }
            LbError::Rewrite(_) => ("proxy_full".into(), false, None),
            // Retried on the ladder: renewals in flight hold two certificates
            // each for a moment, so the daemon itself can fill the quota; and
            // only the upload is repeated (the issued certificate waits in
            // pending/), nothing at the CA.
            LbError::Quota { .. } => ("quota".into(), true, None),
            LbError::NameTaken { .. } => ("name_taken".into(), false, None),
            LbError::Certificate(_) => ("certificate".into(), false, None),
            LbError::Aborted(_) => ("aborted".into(), true, None),
        },
        reconcile::RenewError::Acme(a) => {
            let reason = match a {
                AcmeError::Solver(_) => "dns".to_string(),
                _ => a
                    .problem()
                    .and_then(|p| p.short_type().map(|t| format!("acme:{t}")))
                    .unwrap_or_else(|| "acme".to_string()),
            };
            (reason, a.is_retryable(), a.retry_after())
        }
        reconcile::RenewError::State(crate::state::StateError::LeaseLost { .. }) => {
            ("lease_lost".into(), true, None)
        }
        reconcile::RenewError::State(_) => ("state".into(), true, None),
        reconcile::RenewError::UnknownCertificate(_) => ("config".into(), false, None),
        reconcile::RenewError::Locked { .. } => ("locked".into(), true, None),
    };
    Failure {
        message: e.to_string(),
        reason,
        retryable,
        retry_after,
    }
}

impl Pipeline {
    async fn look(&self, cert: &CertificateConfig) -> Result<Assessment, Failure> {
        let gcp_err = |e: LbError| classify(&reconcile::RenewError::Lb(e));
        let obs = lb::choose(&self.inner.gcp, cert)
            .observe(cert)
            .await
            .map_err(gcp_err)?;
        self.saw(&cert.name, reconcile::served_until(&obs));
        let pending = self
            .inner
            .acme
            .pending(&cert.name)
            .await
            .map_err(|e| classify(&reconcile::RenewError::Acme(e)))?;
        let plan = decide(
            cert,
            &obs,
            pending.as_ref(),
            OffsetDateTime::now_utc(),
            false,
        );
        // The earliest-expiring certificate currently served for these names.
        let leaf = obs
            .proxies
            .iter()
            .filter_map(|p| p.current(&obs.names).first().and_then(|c| c.leaf.clone()))
            .min_by_key(|l| l.not_after);
        // Timing is the daemon's business (it knows ARI); anything else is not.
        let needs_action = plan.action != reconcile::Verdict::Nothing
            && plan
                .reasons
                .iter()
                .any(|r| !matches!(r, Reason::Due { .. }));
        let summary = if plan.reasons.is_empty() {
            "served everywhere".to_string()
        } else {
            plan.reasons
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        Ok(Assessment {
            validity: leaf.as_ref().map(|l| Validity {
                not_before: l.not_before,
                not_after: l.not_after,
            }),
            needs_action,
            ari_id: plan.replaces.as_ref().and_then(|l| l.ari_id.clone()),
            summary,
        })
    }
}

impl Worker for Pipeline {
    async fn observe(&self, cert: &CertificateConfig) -> Result<Assessment, Failure> {
        self.look(cert).await
    }

    async fn renew(&self, cert: &CertificateConfig, force: bool) -> Result<Assessment, Failure> {
        match self.renew_until_served(cert, force).await? {
            Renewed::Done(obs) => Ok(obs),
            Renewed::Served(rest) => rest.await,
        }
    }

    async fn renew_until_served(
        &self,
        cert: &CertificateConfig,
        force: bool,
    ) -> Result<Renewed, Failure> {
        match self
            .inner
            .renew_until_served_unless_changed(cert, force, self.last_seen(&cert.name))
            .await
            .map_err(|e| classify(&e))?
        {
            reconcile::Progress::Done(outcome) => {
                self.after(cert, *outcome).await.map(Renewed::Done)
            }
            reconcile::Progress::Served(finish) => {
                let me = self.clone();
                let cert = cert.clone();
                Ok(Renewed::Served(Box::pin(async move {
                    let outcome = finish.run().await.map_err(|e| classify(&e))?;
                    me.after(&cert, outcome).await
                })))
            }
        }
    }

    async fn renewal_info(&self, ari_id: &str) -> Result<Option<(AriWindow, Duration)>, Failure> {
        self.inner
            .acme
            .renewal_info(ari_id)
            .await
            .map_err(|e| classify(&reconcile::RenewError::Acme(e)))
    }
}

impl Pipeline {
    /// What is served after a renewal, and whether it is healthy.
    async fn after(
        &self,
        cert: &CertificateConfig,
        outcome: reconcile::Outcome,
    ) -> Result<Assessment, Failure> {
        let mut obs = self.look(cert).await?;
        if let reconcile::Done::Installed { serial, issued, .. } = &outcome.done {
            obs.summary = format!(
                "{} certificate {serial} in {} ms",
                if *issued {
                    "issued and installed"
                } else {
                    "installed"
                },
                outcome.took.as_millis()
            );
        }
        if !outcome.healthy() {
            return Err(Failure {
                message: format!(
                    "certificate {} was installed but the load balancer was not seen serving it",
                    cert.name
                ),
                reason: "verify".into(),
                retryable: true,
                retry_after: None,
            });
        }
        Ok(obs)
    }
}

/// Builds the pipeline from a configuration and feeds the metrics its clients'
/// request counters.
pub struct Factory {
    pub metrics: Arc<Metrics>,
    /// Overrides the client built from `[gcp]` (tests).
    pub gcp: Option<Gcp>,
}

impl WorkerFactory for Factory {
    type R = Pipeline;

    async fn build(&self, config: &Config) -> Result<Pipeline, DaemonError> {
        let gcp = match &self.gcp {
            Some(g) => g.clone(),
            None => Gcp::from_config(&config.gcp).await?,
        };
        let state = open_state(config, Some(&gcp))?;
        let acme = AcmeClient::connect(&config.acme, state)
            .await
            .map_err(|e| DaemonError::Acme {
                directory: config.acme.directory.clone(),
                source: Box::new(e),
            })?;
        self.metrics.set_gcp(Arc::clone(&gcp.stats));
        self.metrics.set_acme(acme.stats());
        Ok(Pipeline::new(reconcile::Renewer {
            install: reconcile::Renewer::install_options(config),
            gcp,
            acme: Arc::new(acme),
            config: Arc::new(config.clone()),
        }))
    }

    async fn state(&self, config: &Config) -> Result<State, DaemonError> {
        if !config.state.is_bucket() {
            return open_state(config, None);
        }
        let gcp = match &self.gcp {
            Some(g) => g.clone(),
            None => Gcp::from_config(&config.gcp).await?,
        };
        open_state(config, Some(&gcp))
    }
}

/// The configured state: a directory, or a bucket reached through `gcp`.
pub(crate) fn open_state(config: &Config, gcp: Option<&Gcp>) -> Result<State, DaemonError> {
    crate::state::State::from_config(&config.state, gcp).map_err(|e| DaemonError::State {
        dir: config.state.location().into(),
        source: e.into(),
    })
}
