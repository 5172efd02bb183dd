//! What the order's authorizations and their dns-01 challenges say, and the
//! one request that changes a challenge (`set_ready`).

use instant_acme::{AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, Order};

use crate::acme::http::{self, ChallengeAnswer, Endpoint};
use crate::acme::{AcmeError, ChallengeRecord, Problem};

/// What the order's authorizations say while the order is still pending.
pub(super) enum AuthzVerdict {
    /// One failed: the CA's verdict, verbatim.
    Failed(AcmeError),
    /// Every one is valid (the order should be `ready`).
    AllValid,
    /// Still being validated (or could not be read).
    Waiting,
}

/// A failed authorization: invalid, or its dns-01 challenge is (a CA may leave
/// the authorization pending after a failed challenge).
pub(super) fn authz_failed(a: &instant_acme::AuthorizationState) -> bool {
    a.status == AuthorizationStatus::Invalid
        || a.challenges
            .iter()
            .any(|c| c.r#type == ChallengeType::Dns01 && c.status == ChallengeStatus::Invalid)
}

/// Reads every authorization of the order once. `refresh`: re-read those already
/// fetched (right after an order refresh none are, and each is fetched fresh).
pub(super) async fn authorization_verdict(order: &mut Order, refresh: bool) -> AuthzVerdict {
    http::hint(Endpoint::Authorization);
    let mut all_valid = true;
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let Ok(mut authz) = next else {
            all_valid = false;
            continue;
        };
        if refresh && !authz_failed(&authz) && authz.refresh().await.is_err() {
            all_valid = false;
            continue;
        }
        if !authz_failed(&authz) {
            all_valid &= authz.status == AuthorizationStatus::Valid;
            continue;
        }
        let identifier = authz.identifier().to_string();
        let problem = authz
            .challenges
            .iter()
            .find_map(|c| c.error.clone())
            .map(Problem::from)
            .unwrap_or_else(|| {
                let challenge = authz
                    .challenges
                    .iter()
                    .find(|c| c.r#type == ChallengeType::Dns01)
                    .map(|c| format!("{:?}", c.status).to_lowercase())
                    .unwrap_or_else(|| "absent".into());
                plain_problem(&format!(
                    "the CA marked the authorization {} (its dns-01 challenge {challenge}) \
                     and gave no reason: no problem document in either",
                    format!("{:?}", authz.status).to_lowercase()
                ))
            });
        tracing::error!(identifier = %identifier, problem = %problem, "authorization failed");
        return AuthzVerdict::Failed(AcmeError::Authorization {
            identifier,
            problem,
        });
    }
    if all_valid {
        AuthzVerdict::AllValid
    } else {
        AuthzVerdict::Waiting
    }
}

/// The first failed authorization of the order, as an error carrying its
/// challenge's problem document verbatim.
pub(super) async fn failed_authorization(order: &mut Order, refresh: bool) -> Option<AcmeError> {
    match authorization_verdict(order, refresh).await {
        AuthzVerdict::Failed(e) => Some(e),
        AuthzVerdict::AllValid | AuthzVerdict::Waiting => None,
    }
}

pub(super) fn plain_problem(detail: &str) -> Problem {
    Problem {
        r#type: None,
        detail: Some(detail.into()),
        status: None,
        subproblems: Vec::new(),
    }
}

/// The dns-01 records of every authorization still pending, with whether the
/// challenge still needs `set_ready` (a resumed order may have asked already).
pub(super) async fn collect_challenges(
    order: &mut Order,
) -> Result<Vec<(ChallengeRecord, bool)>, AcmeError> {
    http::hint(Endpoint::Authorization);
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let mut authz = next.map_err(|e| AcmeError::from_acme("authorization", e))?;
        let identifier = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::Authorization {
                    identifier,
                    problem: plain_problem(&format!("the authorization is {other:?}")),
                });
            }
        }
        let base = match authz.identifier().identifier {
            Identifier::Dns(d) => d.clone(),
            other => {
                return Err(AcmeError::Protocol {
                    operation: "authorization",
                    message: format!("unexpected identifier {other:?}"),
                });
            }
        };
        let Some(challenge) = authz.challenge(ChallengeType::Dns01) else {
            return Err(AcmeError::Protocol {
                operation: "authorization",
                message: format!("the CA offers no dns-01 challenge for {identifier}"),
            });
        };
        let needs_ready = challenge.status == ChallengeStatus::Pending;
        out.push((
            ChallengeRecord {
                identifier,
                record_name: format!("_acme-challenge.{}", base.trim_end_matches('.')),
                value: challenge.key_authorization().dns_value(),
            },
            needs_ready,
        ));
    }
    Ok(out)
}

/// The dns-01 records of the order's authorizations that are already valid:
/// values an earlier run may have written and not removed (best effort: an
/// authorization that cannot be read is skipped).
pub(super) async fn validated_records(order: &mut Order) -> Vec<ChallengeRecord> {
    http::hint(Endpoint::Authorization);
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let Ok(mut authz) = next else { continue };
        if authz.status != AuthorizationStatus::Valid {
            continue;
        }
        let identifier = authz.identifier().to_string();
        let Identifier::Dns(base) = authz.identifier().identifier.clone() else {
            continue;
        };
        let Some(challenge) = authz.challenge(ChallengeType::Dns01) else {
            continue;
        };
        out.push(ChallengeRecord {
            identifier,
            record_name: format!("_acme-challenge.{}", base.trim_end_matches('.')),
            value: challenge.key_authorization().dns_value(),
        });
    }
    out
}

/// Requests validation of the dns-01 challenge of `identifier`; returns the
/// challenge object the CA answered with, when it was one.
pub(super) async fn set_ready(
    order: &mut Order,
    identifier: &str,
) -> Result<Option<ChallengeAnswer>, AcmeError> {
    http::hint(Endpoint::Challenge);
    let mut authzs = order.authorizations();
    while let Some(next) = authzs.next().await {
        let mut authz = next.map_err(|e| AcmeError::from_acme("authorization", e))?;
        if authz.identifier().to_string() != identifier {
            continue;
        }
        let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) else {
            break;
        };
        http::hint(Endpoint::Challenge);
        let _ = http::take_challenge_answer();
        return challenge
            .set_ready()
            .await
            .map(|()| http::take_challenge_answer())
            .map_err(|e| AcmeError::from_acme("challenge", e));
    }
    Err(AcmeError::Protocol {
        operation: "challenge",
        message: format!("no dns-01 challenge for {identifier} in the order"),
    })
}
