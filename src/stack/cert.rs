//! The first certificate: the HTTPS proxy needs one at creation. Bootstrap asks a
//! [`CertificateSource`] for it, so it does not depend on the ACME engine.

use std::future::Future;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Desired, StackError};
use crate::gcp::Gcp;
use crate::gcp::compute::SslCertificate;
use crate::lb::naming;

/// Provides the certificate the HTTPS proxy is created with.
pub trait CertificateSource: Send + Sync {
    /// A valid sslCertificate of ours serving `names`: reuse one that exists, or
    /// issue and upload one. Returns its full URL (selfLink form
    /// `https://www.googleapis.com/compute/v1/projects/P/global/sslCertificates/N`).
    fn ensure(&self, names: &[String]) -> impl Future<Output = Result<String, StackError>> + Send;

    /// With `stack.certificate_map`: makes the certificate map `map` (which
    /// exists) serve a valid certificate of ours for every name: reuse what is
    /// there, or issue and install through the map target (`lb::install`).
    /// A source that cannot refuses, saying so.
    fn ensure_in_map(
        &self,
        names: &[String],
        map: &str,
    ) -> impl Future<Output = Result<(), StackError>> + Send {
        let why = format!(
            "this certificate source cannot install into certificate map {map} (names {})",
            names.join(", ")
        );
        async move { Err(StackError::Certificate(why)) }
    }
}

/// Whether `cert` serves every name and has not expired at `now`.
pub(crate) fn serves(cert: &SslCertificate, names: &[String], now: OffsetDateTime) -> bool {
    let covers = names.iter().all(|n| {
        cert.subject_alternative_names.iter().any(|s| {
            s.eq_ignore_ascii_case(n)
                || s.strip_prefix("*.").is_some_and(|w| {
                    n.split_once('.')
                        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(w))
                })
        })
    });
    let valid = cert
        .expire_time
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .is_some_and(|t| t > now);
    covers && valid
}

/// Finds a valid certificate of ours (named and marked by `lb::naming` for
/// `cert_name`) serving `names`: the one expiring last.
pub async fn find_ours(
    gcp: &Gcp,
    cert_name: &str,
    names: &[String],
) -> Result<Option<SslCertificate>, StackError> {
    let filter = format!("name eq {cert_name}-.*");
    let all = gcp
        .list_ssl_certificates(Some(&filter))
        .await
        .map_err(super::gcp_err("listing our certificates"))?;
    let now = OffsetDateTime::now_utc();
    Ok(all
        .into_iter()
        .filter(|c| naming::is_ours(cert_name, &c.name, c.description.as_deref()))
        .filter(|c| serves(c, names, now))
        .max_by(|a, b| a.expire_time.cmp(&b.expire_time)))
}

/// Why the map `map` does not serve every name validly (`None`: it does).
pub async fn map_unserved(
    gcp: &Gcp,
    map: &str,
    cert_name: &str,
    names: &[String],
) -> Result<Option<String>, StackError> {
    let m = super::certmap::observe(gcp, map, Some(cert_name)).await?;
    let now = OffsetDateTime::now_utc();
    let mut why: Vec<String> = Vec::new();
    for w in names
        .iter()
        .filter_map(|n| super::certmap::map_serves(&m, n, now).err())
    {
        if !why.contains(&w) {
            why.push(w);
        }
    }
    Ok((!why.is_empty()).then(|| why.join("; ")))
}

/// A source that only reuses a certificate of ours already uploaded (by
/// `gclb-acme renew`, or an earlier bootstrap). Until bootstrap is wired to the
/// ACME engine, this is what the command line uses.
pub struct ReuseExisting {
    gcp: Gcp,
    cert_name: String,
}

impl ReuseExisting {
    pub fn new(gcp: Gcp, desired: &Desired) -> ReuseExisting {
        ReuseExisting {
            gcp,
            cert_name: desired.certificate.clone(),
        }
    }
}

impl CertificateSource for ReuseExisting {
    async fn ensure_in_map(&self, names: &[String], map: &str) -> Result<(), StackError> {
        match map_unserved(&self.gcp, map, &self.cert_name, names).await? {
            None => Ok(()),
            Some(why) => Err(StackError::Certificate(format!(
                "certificate map {map} does not serve every name ({why}), and this run does not issue: run `gclb-acme renew --certificate {}` first, then bootstrap again",
                self.cert_name
            ))),
        }
    }

    async fn ensure(&self, names: &[String]) -> Result<String, StackError> {
        match find_ours(&self.gcp, &self.cert_name, names).await? {
            Some(c) => Ok(c.self_link),
            None => Err(StackError::Certificate(format!(
                "no valid certificate of ours (certificate \"{}\") serves {}, and issuing one from bootstrap is not wired to the ACME engine yet: run `gclb-acme renew --certificate {}` first, then bootstrap again",
                self.cert_name,
                names.join(", "),
                self.cert_name
            ))),
        }
    }
}

/// The source the command line uses: reuse a valid certificate of ours, or
/// issue one through the ACME engine and the Cloud DNS solver (DNS-01 needs no
/// load balancer) and upload it. The issued certificate stays pending in the
/// state directory until `renew` or the daemon sees it served and cleans up.
pub struct IssueWithAcme {
    gcp: Gcp,
    config: crate::config::Config,
    cert: crate::config::CertificateConfig,
    /// The stack's HTTPS proxy (it may not exist yet when the map is filled).
    https_proxy: String,
}

impl IssueWithAcme {
    pub fn new(
        gcp: Gcp,
        config: &crate::config::Config,
        desired: &Desired,
    ) -> Result<IssueWithAcme, StackError> {
        let cert = config
            .certificate(&desired.certificate)
            .cloned()
            .ok_or_else(|| {
                StackError::Config(format!(
                    "stack.certificate names \"{}\", which is not a [[certificates]] entry",
                    desired.certificate
                ))
            })?;
        Ok(IssueWithAcme {
            gcp,
            config: config.clone(),
            cert,
            https_proxy: desired.names.https_proxy.clone(),
        })
    }
}

impl CertificateSource for IssueWithAcme {
    /// Reuses what the map serves, or issues and installs through the map
    /// target (`lb::install`: the certificate, the map's entries), then reads
    /// the map again: it must serve every name.
    async fn ensure_in_map(&self, names: &[String], map: &str) -> Result<(), StackError> {
        if map_unserved(&self.gcp, map, &self.cert.name, names)
            .await?
            .is_none()
        {
            return Ok(());
        }
        let fail = |e: &dyn std::fmt::Display| StackError::Certificate(e.to_string());
        let state = crate::state::State::from_config(&self.config.state, Some(&self.gcp))
            .map_err(|e| fail(&e))?;
        let lock = crate::reconcile::lock_certificate(&state, &self.cert.name)
            .await
            .map_err(|e| fail(&e))?;
        if map_unserved(&self.gcp, map, &self.cert.name, names)
            .await?
            .is_none()
        {
            lock.release(&self.cert.name).await;
            return Ok(());
        }
        let acme = crate::acme::AcmeClient::connect(&self.config.acme, state.clone())
            .await
            .map_err(|e| fail(&e))?;
        let request = crate::acme::IssueRequest::new(&self.cert, &self.config.acme);
        let solver =
            crate::dns::from_config(self.gcp.clone(), &self.config.dns, self.cert.zone.clone());
        lock.check(&self.cert.name).map_err(|e| fail(&e))?;
        let issued = acme.issue(&request, &solver).await.map_err(|e| fail(&e))?;
        lock.check(&self.cert.name).map_err(|e| fail(&e))?;
        // The stack's proxy is created with the map after this step: the
        // target must not look for it yet.
        let mut cert = self.cert.clone();
        cert.certificate_map = Some(map.to_string());
        cert.target_https_proxies.retain(|p| p != &self.https_proxy);
        let opts = crate::lb::InstallOptions {
            verify: None,
            ..crate::reconcile::Renewer::install_options(&self.config)
        };
        crate::lb::install(&self.gcp, &cert, &issued, &opts)
            .await
            .map_err(|e| fail(&e))?;
        lock.check(&self.cert.name).map_err(|e| fail(&e))?;
        crate::acme::store::remove_pending(&state, &self.cert.name)
            .await
            .map_err(|e| fail(&e))?;
        lock.release(&self.cert.name).await;
        match map_unserved(&self.gcp, map, &self.cert.name, names).await? {
            None => Ok(()),
            Some(why) => Err(StackError::Certificate(format!(
                "the certificate was installed, but certificate map {map} still does not serve every name: {why}"
            ))),
        }
    }

    async fn ensure(&self, names: &[String]) -> Result<String, StackError> {
        if let Some(c) = find_ours(&self.gcp, &self.cert.name, names).await? {
            return Ok(c.self_link);
        }
        let fail = |e: &dyn std::fmt::Display| StackError::Certificate(e.to_string());
        let state = crate::state::State::from_config(&self.config.state, Some(&self.gcp))
            .map_err(|e| fail(&e))?;
        // The daemon may be renewing this certificate right now: wait for it, then
        // look again (it may have uploaded one).
        let lock = crate::reconcile::lock_certificate(&state, &self.cert.name)
            .await
            .map_err(|e| fail(&e))?;
        if let Some(c) = find_ours(&self.gcp, &self.cert.name, names).await? {
            lock.release(&self.cert.name).await;
            return Ok(c.self_link);
        }
        let acme = crate::acme::AcmeClient::connect(&self.config.acme, state)
            .await
            .map_err(|e| fail(&e))?;
        // `issue` returns a stored, not yet installed certificate for the same
        // names instead of ordering again (a bootstrap re-run after a crash).
        let request = crate::acme::IssueRequest::new(&self.cert, &self.config.acme);
        let solver =
            crate::dns::from_config(self.gcp.clone(), &self.config.dns, self.cert.zone.clone());
        lock.check(&self.cert.name).map_err(|e| fail(&e))?;
        let issued = acme.issue(&request, &solver).await.map_err(|e| fail(&e))?;
        lock.check(&self.cert.name).map_err(|e| fail(&e))?;
        let resource = naming::certificate_resource_name(&self.cert.name, &issued.leaf.sha256_hex);
        let opts = crate::reconcile::Renewer::install_options(&self.config);
        crate::lb::install::upload(&self.gcp, &self.cert, &issued, &resource, &opts)
            .await
            .map_err(|e| fail(&e))?;
        lock.release(&self.cert.name).await;
        Ok(self.gcp.global_link("sslCertificates", &resource))
    }
}

/// Removes the stored, not yet installed certificate of `cert_name` when its
/// sslCertificate is one of `deleted`; returns the state files removed. Holds
/// the certificate's lock, so a daemon renewing it is not pulled from under.
pub(crate) async fn forget_deleted(
    state: &crate::state::State,
    cert_name: &str,
    deleted: &[String],
) -> Result<Vec<String>, StackError> {
    let fail = |e: &dyn std::fmt::Display| StackError::Certificate(e.to_string());
    if deleted.is_empty() {
        return Ok(Vec::new());
    }
    let lock = crate::reconcile::lock_certificate(state, cert_name)
        .await
        .map_err(|e| fail(&e))?;
    let forgotten = forget_locked(state, cert_name, deleted).await;
    lock.release(cert_name).await;
    forgotten
}

async fn forget_locked(
    state: &crate::state::State,
    cert_name: &str,
    deleted: &[String],
) -> Result<Vec<String>, StackError> {
    let fail = |e: &dyn std::fmt::Display| StackError::Certificate(e.to_string());
    let mut forgotten = Vec::new();
    // The renewal bookkeeping (back-off, the ARI window of the served
    // certificate) described what teardown removed.
    if crate::schedule::book::Book::forget(state, cert_name)
        .await
        .map_err(|e| fail(&e))?
    {
        tracing::info!(
            certificate = cert_name,
            "teardown deleted the served certificate: forgot its renewal bookkeeping"
        );
        forgotten.push(format!("daemon/{cert_name}.json"));
    }
    let Some(p) = crate::acme::store::load_pending(state, cert_name)
        .await
        .map_err(|e| fail(&e))?
    else {
        return Ok(forgotten);
    };
    let resource = naming::certificate_resource_name(cert_name, &p.leaf.sha256_hex);
    // In a certificate map the certificate keeps one id whatever it holds.
    if !deleted.contains(&resource) && !deleted.contains(&naming::cm_certificate_id(cert_name)) {
        return Ok(forgotten);
    }
    crate::acme::store::remove_pending(state, cert_name)
        .await
        .map_err(|e| fail(&e))?;
    tracing::info!(
        certificate = cert_name,
        resource,
        "teardown deleted this certificate: forgot its stored copy, so the next bootstrap or renew issues a new one instead of installing it again"
    );
    forgotten.push(format!("pending/{cert_name}.json"));
    Ok(forgotten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_checks_names_and_expiry() {
        let c = SslCertificate {
            name: "app-0123".into(),
            subject_alternative_names: vec!["app.example.com".into(), "*.example.org".into()],
            expire_time: Some("2099-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let now = OffsetDateTime::now_utc();
        assert!(serves(&c, &["app.example.com".into()], now));
        assert!(serves(&c, &["www.example.org".into()], now));
        assert!(!serves(&c, &["a.b.example.org".into()], now));
        assert!(!serves(&c, &["other.example.com".into()], now));
        let expired = SslCertificate {
            expire_time: Some("2001-01-01T00:00:00Z".into()),
            ..c
        };
        assert!(!serves(&expired, &["app.example.com".into()], now));
    }
}
