//! The issuance flow (see the module documentation of [`crate::acme`]).

mod authz;

use std::time::{Duration, Instant};

use instant_acme::{Identifier, NewOrder, Order, OrderStatus};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::acme::http::{self, Endpoint};
use crate::acme::store::{self, OrderRecord, normalize_names};
use crate::acme::{
    AcmeClient, AcmeError, ChallengeRecord, Dns01Solver, IssueRequest, IssuedCertificate, Problem,
    retrying,
};
use crate::certs::{self, SecretPem};
use authz::{
    AuthzVerdict, authorization_verdict, collect_challenges, failed_authorization, plain_problem,
    set_ready, validated_records,
};

pub(crate) async fn issue<S: Dns01Solver>(
    client: &AcmeClient,
    req: &IssueRequest,
    solver: &S,
) -> Result<IssuedCertificate, AcmeError> {
    let span = tracing::info_span!(
        "acme_issue",
        certificate = %req.certificate,
        names = ?req.names,
        key_type = %req.key_type,
        order_url = tracing::field::Empty,
    );
    http::in_flow(Flow { client, req }.run(solver).instrument(span)).await
}

struct Flow<'a> {
    client: &'a AcmeClient,
    req: &'a IssueRequest,
}

impl Flow<'_> {
    async fn run<S: Dns01Solver>(&self, solver: &S) -> Result<IssuedCertificate, AcmeError> {
        let started = Instant::now();
        let names = normalize_names(&self.req.names);
        if names.is_empty() {
            return Err(AcmeError::Config(format!(
                "certificate {}: no names to issue for",
                self.req.certificate
            )));
        }
        let state = &self.client.state;
        let now = OffsetDateTime::now_utc();

        // A crash after issuance but before installation: hand back what we have.
        if let Some(p) = store::load_pending(state, &self.req.certificate).await? {
            if self.pending_usable(&p, &names, now) {
                tracing::info!(
                    serial = %p.leaf.serial_hex,
                    not_after = %p.leaf.not_after,
                    "returning the stored, not yet installed certificate: no new order"
                );
                return Ok(p);
            }
            tracing::info!(
                serial = %p.leaf.serial_hex,
                "stored certificate does not match the request or is too old: ordering anew"
            );
        }

        let (mut order, key_pem, resumed) = self.open_order(&names).await?;
        tracing::Span::current().record("order_url", order.url());
        let key = key_pem.key_pair()?;

        // The TXT values to remove once the order is ready: removed while the CA
        // signs (below), not before it, so the removal is off the critical path.
        let to_clean = match order.state().status {
            OrderStatus::Pending => self.authorize(&mut order, solver, resumed).await?,
            OrderStatus::Invalid => return Err(self.order_failure(&mut order).await),
            // A resumed order whose validation already passed: the run that
            // was stopped may not have removed its TXT values. Remove them.
            OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid if resumed => {
                validated_records(&mut order).await
            }
            OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => Vec::new(),
        };

        // The removal runs beside finalize and download and is joined before
        // the certificate is persisted: until then the order record stays in
        // the state directory, so a crash anywhere here resumes the order and
        // removes the values again (above). Once persisted, the next run
        // installs without touching ACME, so the removal must have been
        // accepted by then (the provider returns once it is; see dns::DnsProvider).
        let (_, chain) = tokio::join!(
            self.cleanup(solver, &to_clean),
            self.sign(&mut order, &key, &names)
        );
        let chain = chain?;

        // Validated as the CA sent it (a root included), uploaded without a root.
        let checked = certs::validate_chain(&chain, &names, &key, OffsetDateTime::now_utc())
            .and_then(|leaf| Ok((leaf, certs::serving_chain(&chain)?)));
        let (leaf, serving) = match checked {
            Ok(v) => v,
            Err(e) => {
                // Resuming this order would fetch the same bad certificate forever.
                store::remove_order(state, &self.req.certificate).await?;
                tracing::error!(error = %e, "the CA's certificate failed validation; not stored");
                return Err(e.into());
            }
        };
        if let Some(root) = &serving.dropped_root {
            tracing::info!(root = %root, certificates = serving.count, "the CA's chain ends in its root: uploading the chain without it");
        }
        let issued = IssuedCertificate {
            certificate: self.req.certificate.clone(),
            names,
            key_type: self.req.key_type,
            key_pem,
            chain_pem: serving.pem,
            leaf,
            order_url: order.url().to_string(),
            directory: self.client.directory.clone(),
            issued_at: OffsetDateTime::now_utc(),
        };
        // Persist before anything else: at most one issuance per renewal, even across crashes.
        store::save_pending(state, &issued).await?;
        store::remove_order(state, &self.req.certificate).await?;
        tracing::info!(
            serial = %issued.leaf.serial_hex,
            not_after = %issued.leaf.not_after,
            issuer = issued.leaf.issuer_cn.as_deref().unwrap_or(""),
            sha256 = %issued.leaf.sha256_hex,
            took_ms = started.elapsed().as_millis() as u64,
            "certificate issued and stored"
        );
        Ok(issued)
    }

    /// Finalizes a ready order (once), waits for it to be valid, downloads the chain.
    async fn sign(
        &self,
        order: &mut Order,
        key: &rcgen::KeyPair,
        names: &[String],
    ) -> Result<String, AcmeError> {
        let issuing = crate::progress::Step::start(format!(
            "{}: waiting for the CA to issue the certificate",
            self.req.certificate
        ));
        if order.state().status == OrderStatus::Ready {
            self.finalize(order, key, names).await?;
        }
        let status = self
            .wait_for(order, |s| s == OrderStatus::Valid, "certificate")
            .await?;
        if status != OrderStatus::Valid {
            return Err(self.order_failure(order).await);
        }
        drop(issuing);
        http::hint(Endpoint::Certificate);
        retrying!(self.client.options.retry, "certificate", {
            order
                .certificate()
                .await
                .map_err(|e| AcmeError::from_acme("certificate", e))
        })?
        .ok_or_else(|| AcmeError::Protocol {
            operation: "certificate",
            message: "order is valid but no certificate was returned".into(),
        })
    }

    /// Same names, key type and CA, and at least half of its lifetime left.
    fn pending_usable(&self, p: &IssuedCertificate, names: &[String], now: OffsetDateTime) -> bool {
        let lifetime = p.leaf.not_after - p.leaf.not_before;
        p.names == names
            && p.key_type == self.req.key_type
            && p.directory == self.client.directory
            && now >= p.leaf.not_before
            && p.leaf.not_after - now >= lifetime / 2
    }

    /// Resumes the recorded order for the same spec (`true`), or creates (and
    /// records) one.
    async fn open_order(&self, names: &[String]) -> Result<(Order, SecretPem, bool), AcmeError> {
        let state = &self.client.state;
        let retry = &self.client.options.retry;
        let account = &self.client.account;
        if let Some(rec) = store::load_order(state, &self.req.certificate).await? {
            if rec.names == names
                && rec.key_type == self.req.key_type
                && rec.account_id == account.id()
            {
                http::hint(Endpoint::Order);
                let fetched = retrying!(retry, "order", {
                    account
                        .order(rec.order_url.clone())
                        .await
                        .map_err(|e| AcmeError::from_acme("order", e))
                });
                match fetched {
                    Ok(mut order) => {
                        let status = order.state().status;
                        if status != OrderStatus::Invalid {
                            tracing::info!(order_url = %rec.order_url, ?status, "resuming the recorded order");
                            return Ok((order, rec.key_pem, true));
                        }
                        tracing::info!(order_url = %rec.order_url, "recorded order is invalid: starting a new one");
                    }
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        tracing::info!(order_url = %rec.order_url, error = %e, "recorded order is gone: starting a new one");
                    }
                }
            }
            store::remove_order(state, &self.req.certificate).await?;
        }

        // The key exists before the order so that the order record can hold it.
        let key_pem = if self.req.reuse_key {
            store::reuse_key(state, &self.req.certificate, self.req.key_type).await?
        } else {
            SecretPem::new(certs::generate_key(self.req.key_type)?.serialize_pem())
        };
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let order = self.place_order(&identifiers).await?;
        store::save_order(
            state,
            &self.req.certificate,
            &OrderRecord {
                order_url: order.url().to_string(),
                account_id: account.id().to_string(),
                names: names.to_vec(),
                key_type: self.req.key_type,
                key_pem: key_pem.clone(),
                created_at: OffsetDateTime::now_utc(),
            },
        )
        .await?;
        tracing::info!(order_url = %order.url(), "order created and recorded");
        Ok((order, key_pem, false))
    }

    /// newOrder, with `replaces` when we have it and the CA has ARI.
    ///
    /// A CA that creates the order but does not echo `replaces` (RFC 9773 says
    /// it must) makes instant-acme refuse the answer after the order exists at
    /// the CA: we resume that order instead of placing a second one, which would
    /// leave the first pending and count twice against the CA's order limits.
    async fn place_order(&self, identifiers: &[Identifier]) -> Result<Order, AcmeError> {
        let retry = &self.client.options.retry;
        let account = &self.client.account;
        let plain = || {
            let mut o = NewOrder::new(identifiers);
            if let Some(p) = &self.req.profile {
                o = o.profile(p);
            }
            o
        };
        let replaces = match &self.req.replaces {
            Some(r) if self.client.http.has_ari() => Some(r.clone()),
            Some(_) => {
                tracing::debug!(
                    "the CA's directory has no renewalInfo (no ARI): ordering without `replaces`"
                );
                None
            }
            None => None,
        };
        http::hint(Endpoint::NewOrder);
        let Some(replaces) = replaces else {
            return retrying!(retry, "new_order", {
                account
                    .new_order(&plain())
                    .await
                    .map_err(|e| AcmeError::from_acme("new_order", e))
            });
        };
        let _ = http::take_created_order();
        let with = plain().replaces(replaces);
        let e = match retrying!(retry, "new_order", {
            account
                .new_order(&with)
                .await
                .map_err(|e| AcmeError::from_acme("new_order", e))
        }) {
            Ok(order) => {
                tracing::info!("the CA accepted `replaces` (ARI renewal)");
                return Ok(order);
            }
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => e,
        };
        if let Some(url) = http::take_created_order() {
            // The CA made the order; only our library refused its answer.
            http::hint(Endpoint::Order);
            let mut order = retrying!(retry, "order", {
                account
                    .order(url.clone())
                    .await
                    .map_err(|e| AcmeError::from_acme("order", e))
            })?;
            if order.state().replaces.is_none() {
                tracing::warn!(
                    order_url = %url,
                    "the CA created the order but did not echo `replaces`: continuing with that order \
                     (no second order); the CA may not count it as an ARI replacement"
                );
            } else {
                tracing::warn!(order_url = %url, error = %e, "the CA created the order but its answer was refused: continuing with that order");
            }
            return Ok(order);
        }
        if matches!(e, AcmeError::Ca { .. }) {
            tracing::warn!(error = %e, "the CA refused `replaces` and created no order: ordering without it");
        } else {
            tracing::warn!(error = %e, "newOrder with `replaces` failed before the CA created an order: ordering without it");
        }
        http::hint(Endpoint::NewOrder);
        retrying!(retry, "new_order", {
            account
                .new_order(&plain())
                .await
                .map_err(|e| AcmeError::from_acme("new_order", e))
        })
    }

    /// Presents every pending dns-01 challenge at once, requests every validation
    /// and waits for the order to be ready. On success returns the values to
    /// remove (the caller removes them while the CA signs); on failure removes
    /// them before returning.
    async fn authorize<S: Dns01Solver>(
        &self,
        order: &mut Order,
        solver: &S,
        resumed: bool,
    ) -> Result<Vec<ChallengeRecord>, AcmeError> {
        let retry = &self.client.options.retry;
        let records = retrying!(retry, "authorization", collect_challenges(order).await)?;
        if records.is_empty() {
            tracing::info!("every authorization is already valid");
        } else {
            tracing::info!(
                identifiers = ?records.iter().map(|(r, _)| r.identifier.as_str()).collect::<Vec<_>>(),
                "presenting DNS-01 records"
            );
        }
        let plain: Vec<ChallengeRecord> = records.iter().map(|(r, _)| r.clone()).collect();
        let outcome = self.validate(order, solver, &records, &plain).await;
        // A resumed order: also the values of authorizations that were already
        // valid, which the run that was stopped may not have removed.
        let mut all = plain;
        if resumed {
            for r in validated_records(order).await {
                if !all
                    .iter()
                    .any(|a| a.record_name == r.record_name && a.value == r.value)
                {
                    all.push(r);
                }
            }
        }
        match outcome {
            Ok(()) => Ok(all),
            Err(e) => {
                self.cleanup(solver, &all).await;
                Err(e)
            }
        }
    }

    /// Removes our DNS-01 values (best effort: a failure is logged).
    async fn cleanup<S: Dns01Solver>(&self, solver: &S, records: &[ChallengeRecord]) {
        if records.is_empty() {
            return;
        }
        match solver.cleanup(records).await {
            Ok(()) => tracing::info!(records = records.len(), "DNS-01 records removed"),
            Err(e) => {
                tracing::warn!(error = %e, "DNS-01 cleanup failed: records may remain")
            }
        }
    }

    async fn validate<S: Dns01Solver>(
        &self,
        order: &mut Order,
        solver: &S,
        records: &[(ChallengeRecord, bool)],
        plain: &[ChallengeRecord],
    ) -> Result<(), AcmeError> {
        let retry = &self.client.options.retry;
        if !plain.is_empty() {
            solver.present(plain).await?;
            tracing::info!(
                records = plain.len(),
                "DNS-01 records served by every authoritative server"
            );
            // Request every validation before waiting for any: the CA validates them in parallel.
            for (record, needs_ready) in records {
                if !needs_ready {
                    continue;
                }
                let ready = retrying!(
                    retry,
                    "challenge",
                    set_ready(order, &record.identifier).await
                );
                let answer = match ready {
                    Ok(answer) => answer,
                    Err(e) => {
                        // A CA that validates at once answers set_ready with the challenge's
                        // error: report it as the authorization failure it is.
                        if !e.is_retryable()
                            && let Some(failure) = failed_authorization(order, true).await
                        {
                            self.forget_order().await;
                            // The answer's problem when the authorization gave none.
                            return Err(match (failure, e.problem()) {
                                (
                                    AcmeError::Authorization {
                                        identifier,
                                        problem,
                                    },
                                    Some(p),
                                ) if problem.r#type.is_none() => AcmeError::Authorization {
                                    identifier,
                                    problem: p.clone(),
                                },
                                (f, _) => f,
                            });
                        }
                        return Err(e);
                    }
                };
                // A CA may decide in its answer (`invalid`, with or without an
                // error) and leave the order `pending`: polling the order alone
                // would then wait for the timeout.
                // instant-acme turns an answer carrying an error into Err above;
                // this one is `invalid` without a reason.
                if answer.is_some_and(|a| a.status == "invalid") {
                    let failure = match failed_authorization(order, true).await {
                        Some(f) => f,
                        None => {
                            let problem = plain_problem(
                                "the CA answered the challenge request with status invalid, \
                                 without a problem document",
                            );
                            tracing::error!(identifier = %record.identifier, problem = %problem, "challenge failed");
                            AcmeError::Authorization {
                                identifier: record.identifier.clone(),
                                problem,
                            }
                        }
                    };
                    self.forget_order().await;
                    return Err(failure);
                }
                tracing::info!(identifier = %record.identifier, key_authorization_digest = %record.value, "validation requested");
            }
        }
        let _step = crate::progress::Step::start(format!(
            "{}: waiting for the CA to validate {} name(s)",
            self.req.certificate,
            records.len()
        ));
        let status = self
            .wait_for(
                order,
                |s| {
                    matches!(
                        s,
                        OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid
                    )
                },
                "authorization",
            )
            .await?;
        if status == OrderStatus::Invalid {
            return Err(self.order_failure(order).await);
        }
        tracing::info!("order ready");
        Ok(())
    }

    async fn finalize(
        &self,
        order: &mut Order,
        key: &rcgen::KeyPair,
        names: &[String],
    ) -> Result<(), AcmeError> {
        let csr = certs::csr_der(key, names)?;
        let retry = &self.client.options.retry;
        let mut attempt = 1;
        loop {
            http::hint(Endpoint::Finalize);
            let e = match order.finalize_csr(&csr).await {
                Ok(()) => break,
                Err(e) => AcmeError::from_acme("finalize", e),
            };
            let Some(delay) = retry.delay(attempt, &e) else {
                return Err(e);
            };
            tracing::warn!(attempt, error = %e, "finalize failed, checking the order");
            tokio::time::sleep(delay).await;
            // The request may have gone through before the error: do not finalize twice.
            http::hint(Endpoint::Order);
            let status = retrying!(retry, "order", {
                order
                    .refresh()
                    .await
                    .map(|s| s.status)
                    .map_err(|e| AcmeError::from_acme("order", e))
            })?;
            if status == OrderStatus::Invalid {
                // The CA gave up on the order after refusing to finalize it: its
                // finalize answer is the reason when the order carries none.
                self.forget_order().await;
                let problem = order
                    .state()
                    .error
                    .clone()
                    .map(Problem::from)
                    .or_else(|| e.problem().cloned())
                    .unwrap_or_else(|| plain_problem(&e.to_string()));
                tracing::error!(problem = %problem, "the order became invalid after finalize failed");
                return Err(AcmeError::OrderInvalid {
                    order_url: order.url().to_string(),
                    problem,
                });
            }
            if status != OrderStatus::Ready {
                break;
            }
            attempt += 1;
        }
        tracing::info!("order finalized");
        Ok(())
    }

    /// Polls the order (capped exponential back-off) until `done` or invalid.
    /// While the order is `pending`, also reads its authorizations after each
    /// poll: a CA may mark an authorization invalid and leave the order
    /// pending (RFC 8555 7.1.6 says the order turns invalid), and an order left
    /// pending with every authorization valid is stuck, not slow.
    async fn wait_for(
        &self,
        order: &mut Order,
        done: impl Fn(OrderStatus) -> bool,
        operation: &'static str,
    ) -> Result<OrderStatus, AcmeError> {
        let mut poll = self.client.options.poll;
        if order.state().status == OrderStatus::Pending {
            // A verdict during validation is worth seeing within seconds.
            poll.max_delay = poll.max_delay.min(VALIDATION_MAX_POLL);
        }
        let retry = &self.client.options.retry;
        let deadline = Instant::now() + poll.timeout;
        let mut waits = poll_waits(poll);
        let mut status = order.state().status;
        let mut stuck_polls = 0;
        while !(done(status) || status == OrderStatus::Invalid) {
            if status == OrderStatus::Pending {
                match authorization_verdict(order, false).await {
                    AuthzVerdict::Failed(e) => {
                        tracing::error!(order_url = %order.url(), "the CA left the order pending after an authorization failed");
                        self.forget_order().await;
                        return Err(e);
                    }
                    AuthzVerdict::AllValid => stuck_polls += 1,
                    AuthzVerdict::Waiting => stuck_polls = 0,
                }
                if stuck_polls >= STUCK_POLLS {
                    // Kept on record: a later run resumes it if the CA catches up.
                    return Err(AcmeError::Protocol {
                        operation,
                        message: format!(
                            "the CA keeps order {} pending although every authorization is \
                             valid ({STUCK_POLLS} polls; RFC 8555 7.1.6: it should be ready)",
                            order.url()
                        ),
                    });
                }
            }
            let delay = waits.next().unwrap_or(poll.max_delay);
            if Instant::now() + delay > deadline {
                return Err(AcmeError::Timeout { operation });
            }
            tokio::time::sleep(delay).await;
            http::hint(Endpoint::Order);
            status = retrying!(retry, "order", {
                order
                    .refresh()
                    .await
                    .map(|s| s.status)
                    .map_err(|e| AcmeError::from_acme("order", e))
            })?;
            tracing::debug!(?status, "order polled");
        }
        Ok(status)
    }

    /// The most specific reason an order went invalid: the failed authorization's
    /// challenge error (the CA's problem, verbatim), else the order's own error.
    async fn order_failure(&self, order: &mut Order) -> AcmeError {
        self.forget_order().await;
        if let Some(failure) = failed_authorization(order, true).await {
            return failure;
        }
        let problem = order
            .state()
            .error
            .clone()
            .map(Problem::from)
            .unwrap_or_else(|| plain_problem("the order is invalid"));
        tracing::error!(problem = %problem, "order invalid");
        AcmeError::OrderInvalid {
            order_url: order.url().to_string(),
            problem,
        }
    }

    /// An invalid order cannot be resumed: drop its record.
    async fn forget_order(&self) {
        if let Err(e) = store::remove_order(&self.client.state, &self.req.certificate).await {
            tracing::warn!(error = %e, "cannot forget the invalid order");
        }
    }
}

/// Longest wait between polls while the CA validates: bounds the time from its
/// verdict to our report (slow issuance after that keeps the configured cap).
const VALIDATION_MAX_POLL: Duration = Duration::from_secs(3);

/// Consecutive polls finding the order pending with every authorization valid
/// before we call it stuck (a few seconds with the default poll schedule).
const STUCK_POLLS: u32 = 5;

/// The waits between order polls: an early look after a fifth of `initial`
/// (a CA that validates or signs at once, like Pebble or a quiet Let's Encrypt,
/// answers it, which saves most of `initial` twice per issuance), then the rest
/// of `initial` and the capped doubling, so every later poll happens when it
/// would have without the early look (one request more against a slow CA).
fn poll_waits(poll: super::PollConfig) -> impl Iterator<Item = Duration> {
    let early = poll.initial / 5;
    let doubling = std::iter::successors(Some(poll.initial.saturating_mul(2)), move |d| {
        Some(d.saturating_mul(2).min(poll.max_delay))
    })
    .map(move |d| d.min(poll.max_delay));
    [early, poll.initial - early].into_iter().chain(doubling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_look_then_the_same_schedule_as_before() {
        let poll = super::super::PollConfig {
            initial: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(180),
        };
        let ms: Vec<u128> = poll_waits(poll).take(8).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [50, 200, 500, 1000, 2000, 4000, 5000, 5000]);
        // Polls at 50, 250, 750, 1750 ms...: the old 250, 750, 1750 plus one early.
        let tiny = super::super::PollConfig {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_millis(150),
            ..poll
        };
        let ms: Vec<u128> = poll_waits(tiny).take(4).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [20, 80, 150, 150]);
    }
}
