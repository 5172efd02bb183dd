//! Leases: which daemon may work on a certificate, when several share one
//! [`Store`] (issue 17). One lease object per certificate,
//! `leases/<certificate>.json`, holding the holder's id, a token fresh with
//! every write, and the expiry.
//!
//! Deciding is pure ([`decide`]: the clock, the lease as read, its version, who
//! I am and what I want, in; a [`LeaseStep`] out); [`Leases`] does the I/O, one
//! conditional write per step:
//!
//! - **acquire**: absent → create it (`Expect::Absent`); held by someone else
//!   and expired by more than the skew margin → take it over, naming the
//!   version read (`Expect::Version`); held and live → back off until its
//!   expiry plus the margin; already mine → renew it.
//! - **renew**: a write naming the version I last wrote; any conflict means the
//!   lease moved (taken over, released, deleted): I lost it and stop touching
//!   the certificate at once.
//! - **release**: a delete naming my version; never deletes another's lease.
//!
//! Clocks: the expiry is written in the writer's clock. A holder trusts its
//! lease only until `expires - skew` ([`holds`]); another daemon takes it over
//! only from `expires + skew`. So two daemons whose clocks are each within
//! `skew` of true time never both believe they hold it (the property test
//! below checks exactly that).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::store::{Expect, Store, StoreError, Version};

/// What the lease object holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeaseRecord {
    /// Who holds it: unique per running daemon ([`holder_id`]).
    pub holder: String,
    /// Fresh with every write, so no two writes have the same content (and so
    /// the same directory version), and a retried write is recognisable.
    pub token: String,
    /// Until when (Unix ms, the writer's clock) the holder may act, less the skew.
    pub expires_unix_ms: u64,
    /// When this holder first took it (Unix ms): kept across renewals.
    pub acquired_unix_ms: u64,
}

/// The lease object as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    Absent,
    Held {
        record: &'a LeaseRecord,
        version: &'a Version,
    },
    /// An object that does not decode (written by something else, or damaged):
    /// treated as expired, so it can be taken over by its version.
    Unreadable {
        version: &'a Version,
    },
}

/// What the caller wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want<'a> {
    Acquire,
    /// Extend the lease I hold, last written at this version.
    Renew {
        held: &'a Version,
    },
    /// Give up the lease I hold at this version.
    Release {
        held: &'a Version,
    },
}

pub use crate::config::{LeaseParams as Params, LeaseParamsError as ParamsError};

/// Why the lease is no longer mine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// The object is gone (released by someone, or deleted by hand).
    Gone,
    /// Its version moved: another daemon took it over (named when readable).
    Moved { holder: Option<String> },
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStep {
    /// Write `record` only if no lease exists (`Expect::Absent`).
    Create(LeaseRecord),
    /// Write `record` over my own lease at `over`.
    Renew { record: LeaseRecord, over: Version },
    /// Write `record` over an expired (or unreadable) lease at `over`.
    TakeOver {
        record: LeaseRecord,
        over: Version,
        from: Option<String>,
    },
    /// Delete my lease at `over`.
    Release { over: Version },
    /// Someone else holds it: try again from `until_unix_ms`.
    Wait { holder: String, until_unix_ms: u64 },
    /// I do not hold it any more: stop touching the certificate now.
    Lost(LostReason),
    /// Nothing to do (releasing a lease I do not hold).
    Nothing,
}

/// The pure step: given the clock, the lease as read (and its version), who I
/// am, the parameters, a fresh token and what I want, what to write.
pub fn decide(
    now_ms: u64,
    seen: Seen<'_>,
    me: &str,
    params: Params,
    token: &str,
    want: Want<'_>,
) -> LeaseStep {
    let fresh = |acquired: u64| LeaseRecord {
        holder: me.to_string(),
        token: token.to_string(),
        expires_unix_ms: now_ms.saturating_add(params.duration_ms),
        acquired_unix_ms: acquired,
    };
    match (want, seen) {
        (Want::Acquire, Seen::Absent) => LeaseStep::Create(fresh(now_ms)),
        (Want::Acquire, Seen::Held { record, version }) if record.holder == me => {
            LeaseStep::Renew {
                record: fresh(record.acquired_unix_ms),
                over: version.clone(),
            }
        }
        (Want::Acquire, Seen::Held { record, version }) => {
            let free_at = record.expires_unix_ms.saturating_add(params.skew_ms);
            if now_ms >= free_at {
                LeaseStep::TakeOver {
                    record: fresh(now_ms),
                    over: version.clone(),
                    from: Some(record.holder.clone()),
                }
            } else {
                LeaseStep::Wait {
                    holder: record.holder.clone(),
                    until_unix_ms: free_at,
                }
            }
        }
        (Want::Acquire, Seen::Unreadable { version }) => LeaseStep::TakeOver {
            record: fresh(now_ms),
            over: version.clone(),
            from: None,
        },
        (Want::Renew { .. }, Seen::Absent) => LeaseStep::Lost(LostReason::Gone),
        (Want::Renew { held }, Seen::Held { record, version })
            if version == held && record.holder == me =>
        {
            LeaseStep::Renew {
                record: fresh(record.acquired_unix_ms),
                over: version.clone(),
            }
        }
        (Want::Renew { .. }, Seen::Held { record, .. }) => LeaseStep::Lost(LostReason::Moved {
            holder: Some(record.holder.clone()),
        }),
        (Want::Renew { .. }, Seen::Unreadable { .. }) => {
            LeaseStep::Lost(LostReason::Moved { holder: None })
        }
        (Want::Release { held }, Seen::Held { version, .. }) if version == held => {
            LeaseStep::Release {
                over: version.clone(),
            }
        }
        (Want::Release { .. }, _) => LeaseStep::Nothing,
    }
}

/// Whether the holder of `record` may still act at `now_ms` (its own clock):
/// until the expiry less the skew margin.
pub fn holds(now_ms: u64, record: &LeaseRecord, params: Params) -> bool {
    now_ms < record.expires_unix_ms.saturating_sub(params.skew_ms)
}

/// When the holder should renew: two thirds into the lease, which leaves a
/// third of it (more than the skew margin) for the write and its retries.
pub fn renew_at(record: &LeaseRecord, params: Params) -> u64 {
    record
        .expires_unix_ms
        .saturating_sub(params.duration_ms / 3)
}

/// A holder id unique per running daemon: host name, process id and 48 random
/// bits (a restarted daemon is a new holder; its old leases expire).
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    format!(
        "{host}/{}/{:012x}",
        std::process::id(),
        rand::random::<u64>() & 0xffff_ffff_ffff
    )
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a lease step failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease is not mine any more: stop touching the certificate.
    #[error("lease {name}: lost ({reason:?})")]
    Lost { name: String, reason: LostReason },
    /// Writers kept changing the lease between my read and my write.
    #[error("lease {name}: still contended after {rounds} rounds")]
    Contended { name: String, rounds: u32 },
    /// The store failed (the lease is in an unknown state: treat as not held).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A lease I hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub name: String,
    pub record: LeaseRecord,
    pub version: Version,
}

/// The outcome of an acquisition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Mine; `took_over` names the previous holder of an expired lease (none
    /// for a new lease, my own, or an unreadable object).
    Held {
        lease: Held,
        took_over: Option<String>,
    },
    /// Someone else's until `until_unix_ms` (plus the margin).
    Busy { holder: String, until_unix_ms: u64 },
}

/// How many read-decide-write rounds an acquisition makes before giving up.
const ROUNDS: u32 = 4;

/// The lease driver over a store: one holder, one set of parameters.
#[derive(Clone, Debug)]
pub struct Leases<S> {
    store: S,
    holder: String,
    params: Params,
}

impl<S: Store> Leases<S> {
    pub fn new(store: S, holder: String, params: Params) -> Leases<S> {
        Leases {
            store,
            holder,
            params,
        }
    }

    /// This driver's holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn params(&self) -> Params {
        self.params
    }

    /// The lease object of a certificate.
    pub fn object_name(certificate: &str) -> String {
        format!("leases/{certificate}.json")
    }

    fn token() -> String {
        format!("{:016x}", rand::random::<u64>())
    }

    async fn seen(&self, name: &str) -> Result<(Option<LeaseRecord>, Option<Version>), LeaseError> {
        Ok(match self.store.read(name).await? {
            None => (None, None),
            Some(s) => (serde_json::from_slice(&s.data).ok(), Some(s.version)),
        })
    }

    /// Takes the lease of `certificate` if it is free, expired, or already mine.
    pub async fn acquire(&self, certificate: &str, now_ms: u64) -> Result<Acquired, LeaseError> {
        let name = Self::object_name(certificate);
        for _ in 0..ROUNDS {
            let (record, version) = self.seen(&name).await?;
            let seen = match (&record, &version) {
                (_, None) => Seen::Absent,
                (Some(record), Some(version)) => Seen::Held { record, version },
                (None, Some(version)) => Seen::Unreadable { version },
            };
            let (record, expect, took_over) = match decide(
                now_ms,
                seen,
                &self.holder,
                self.params,
                &Self::token(),
                Want::Acquire,
            ) {
                LeaseStep::Create(r) => (r, Expect::Absent, None),
                LeaseStep::Renew { record, over } => (record, Expect::Version(over), None),
                LeaseStep::TakeOver { record, over, from } => (record, Expect::Version(over), from),
                LeaseStep::Wait {
                    holder,
                    until_unix_ms,
                } => {
                    return Ok(Acquired::Busy {
                        holder,
                        until_unix_ms,
                    });
                }
                // Not reachable for Acquire; treated as busy with no holder.
                LeaseStep::Lost(_) | LeaseStep::Release { .. } | LeaseStep::Nothing => {
                    return Err(LeaseError::Contended { name, rounds: 0 });
                }
            };
            match self.write(&name, &record, expect).await {
                Ok(version) => {
                    return Ok(Acquired::Held {
                        lease: Held {
                            name,
                            record,
                            version,
                        },
                        took_over,
                    });
                }
                // Someone else wrote between my read and my write: look again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LeaseError::Contended {
            name,
            rounds: ROUNDS,
        })
    }

    /// Extends a lease I hold: one conditional write on the version I last
    /// wrote. A conflict means it moved: [`LeaseError::Lost`], and `held` must
    /// not be used again.
    pub async fn renew(&self, held: &mut Held, now_ms: u64) -> Result<(), LeaseError> {
        let decision = decide(
            now_ms,
            Seen::Held {
                record: &held.record,
                version: &held.version,
            },
            &self.holder,
            self.params,
            &Self::token(),
            Want::Renew {
                held: &held.version,
            },
        );
        let LeaseStep::Renew { record, over } = decision else {
            return Err(LeaseError::Lost {
                name: held.name.clone(),
                reason: LostReason::Moved { holder: None },
            });
        };
        match self.write(&held.name, &record, Expect::Version(over)).await {
            Ok(version) => {
                held.record = record;
                held.version = version;
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => {
                // Who has it now, for the message; the decision is the same.
                let (now, version) = self.seen(&held.name).await.unwrap_or((None, None));
                let reason = match (now, version) {
                    (_, None) => LostReason::Gone,
                    (r, Some(_)) => LostReason::Moved {
                        holder: r.map(|r| r.holder),
                    },
                };
                Err(LeaseError::Lost {
                    name: held.name.clone(),
                    reason,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives a lease up. `Ok(false)`: it was not mine any more (nothing deleted).
    pub async fn release(&self, held: Held) -> Result<bool, LeaseError> {
        match self
            .store
            .delete(&held.name, Expect::Version(held.version))
            .await
        {
            Ok(deleted) => Ok(deleted),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn write(
        &self,
        name: &str,
        record: &LeaseRecord,
        expect: Expect,
    ) -> Result<Version, StoreError> {
        // Serialising our own plain struct cannot fail.
        let data = serde_json::to_vec_pretty(record).unwrap_or_default();
        self.store.write(name, &data, expect).await
    }
}

/// A lease kept alive by a background task until released or lost.
///
/// The task renews at [`renew_at`]; a failed renewal that is not a loss (the
/// store unreachable) is retried with a short back-off for as long as the
/// lease still [`holds`], then counts as lost. Whoever works under the lease
/// checks [`Guard::is_held`] before each step (or selects on
/// [`Guard::lost`]) and stops at once when it turns false.
pub struct Guard<S> {
    leases: Leases<S>,
    state: std::sync::Arc<std::sync::Mutex<Held>>,
    lost: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl<S> std::fmt::Debug for Guard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("lost", &*self.lost.borrow())
            .finish()
    }
}

impl<S: Store + Clone + 'static> Leases<S> {
    /// Keeps `held` renewed in the background (wall clock) until the guard is
    /// released or the lease is lost.
    pub fn keep(&self, held: Held) -> Guard<S> {
        let state = std::sync::Arc::new(std::sync::Mutex::new(held));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let leases = self.clone();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut current = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let now = now_unix_ms();
                let at = renew_at(&current.record, leases.params);
                if at > now {
                    tokio::time::sleep(std::time::Duration::from_millis(at - now)).await;
                }
                match leases.renew(&mut current, now_unix_ms()).await {
                    Ok(()) => {
                        *shared.lock().unwrap_or_else(|p| p.into_inner()) = current;
                    }
                    Err(LeaseError::Store(e))
                        if holds(now_unix_ms(), &current.record, leases.params) =>
                    {
                        tracing::warn!(lease = %current.name, error = %e, "lease renewal failed; retrying while the lease still holds");
                        tokio::time::sleep(std::time::Duration::from_millis(
                            (leases.params.skew_ms / 4).clamp(10, 1_000),
                        ))
                        .await;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %current.name, error = %e, "lease lost: stopping work under it");
                        let _ = tx.send(true);
                        return;
                    }
                }
            }
        });
        Guard {
            leases: self.clone(),
            state,
            lost: rx,
            task,
        }
    }
}

impl<S: Store> Guard<S> {
    /// Whether the lease is still mine right now: not lost, and my own clock
    /// within its validity.
    pub fn is_held(&self) -> bool {
        let record = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record
            .clone();
        !*self.lost.borrow() && holds(now_unix_ms(), &record, self.leases.params)
    }

    /// The lease as last written.
    pub fn held(&self) -> Held {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves when the lease is lost (never, while it is kept).
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|l| *l).await;
    }

    /// Stops renewing and deletes the lease if it is still mine. (A renewal cut
    /// off half-way may have landed: then the delete names a stale version,
    /// deletes nothing, and the lease simply expires.)
    pub async fn release(mut self) -> Result<bool, LeaseError> {
        self.task.abort();
        // Wait for the task to stop, so no renewal lands after the release.
        let _ = (&mut self.task).await;
        let held = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if *self.lost.borrow() {
            return Ok(false);
        }
        self.leases.release(held).await
    }
}

impl<S> Drop for Guard<S> {
    fn drop(&mut self) {
        // Not released: stop renewing; the lease expires by itself.
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ME: &str = "me";
    const OTHER: &str = "other";
    const P: Params = Params {
        duration_ms: 30_000,
        skew_ms: 2_000,
    };

    fn v(s: &str) -> Version {
        Version(s.to_string())
    }

    fn rec(holder: &str, expires: u64) -> LeaseRecord {
        LeaseRecord {
            holder: holder.into(),
            token: "t0".into(),
            expires_unix_ms: expires,
            acquired_unix_ms: 1_000,
        }
    }

    fn mine(now: u64, acquired: u64) -> LeaseRecord {
        LeaseRecord {
            holder: ME.into(),
            token: "t1".into(),
            expires_unix_ms: now + P.duration_ms,
            acquired_unix_ms: acquired,
        }
    }

    fn d(now: u64, seen: Seen<'_>, want: Want<'_>) -> LeaseStep {
        decide(now, seen, ME, P, "t1", want)
    }

    #[test]
    fn params_keep_a_window_larger_than_the_margins() {
        assert!(Params::new(30_000, 2_000).is_ok());
        assert!(Params::new(30_000, 10_000).is_err());
        assert!(Params::new(0, 0).is_err());
        let e = Params::new(6_000, 3_000).unwrap_err().to_string();
        assert!(e.contains("6000 ms") && e.contains("3000 ms"), "{e}");
    }

    #[test]
    fn acquire_every_case() {
        let now = 100_000;
        let g = v("7");
        // Absent: create.
        assert_eq!(
            d(now, Seen::Absent, Want::Acquire),
            LeaseStep::Create(mine(now, now))
        );
        // Mine already (same holder id): renew it, keeping when it was taken.
        let r = rec(ME, now - 1);
        assert_eq!(
            d(
                now,
                Seen::Held {
                    record: &r,
                    version: &g
                },
                Want::Acquire
            ),
            LeaseStep::Renew {
                record: mine(now, 1_000),
                over: g.clone()
            }
        );
        // Another's, live: wait until its expiry plus the margin.
        let r = rec(OTHER, now + 5_000);
        assert_eq!(
            d(
                now,
                Seen::Held {
                    record: &r,
                    version: &g
                },
                Want::Acquire
            ),
            LeaseStep::Wait {
                holder: OTHER.into(),
                until_unix_ms: now + 5_000 + P.skew_ms
            }
        );
        // Another's, expired but within the margin: still wait.
        let r = rec(OTHER, now - P.skew_ms + 1);
        assert_eq!(
            d(
                now,
                Seen::Held {
                    record: &r,
                    version: &g
                },
                Want::Acquire
            ),
            LeaseStep::Wait {
                holder: OTHER.into(),
                until_unix_ms: now + 1
            }
        );
        // Another's, expired by exactly the margin or more: take it over by version.
        for expired in [now - P.skew_ms, now - P.skew_ms - 1, 0] {
            let r = rec(OTHER, expired);
            assert_eq!(
                d(
                    now,
                    Seen::Held {
                        record: &r,
                        version: &g
                    },
                    Want::Acquire
                ),
                LeaseStep::TakeOver {
                    record: mine(now, now),
                    over: g.clone(),
                    from: Some(OTHER.into())
                },
                "expired at {expired}"
            );
        }
        // Unreadable: taken over by its version.
        assert_eq!(
            d(now, Seen::Unreadable { version: &g }, Want::Acquire),
            LeaseStep::TakeOver {
                record: mine(now, now),
                over: g.clone(),
                from: None
            }
        );
    }

    #[test]
    fn renew_every_case() {
        let now = 100_000;
        let held = v("7");
        let moved = v("8");
        let r = rec(ME, now + 10_000);
        // Same version, mine: renew (also when my own clock says it has expired:
        // the conditional write is what decides, and it fails if anyone took it).
        for expires in [now + 10_000, now - 1, 0] {
            let r = rec(ME, expires);
            assert_eq!(
                d(
                    now,
                    Seen::Held {
                        record: &r,
                        version: &held
                    },
                    Want::Renew { held: &held }
                ),
                LeaseStep::Renew {
                    record: mine(now, 1_000),
                    over: held.clone()
                }
            );
        }
        // Gone.
        assert_eq!(
            d(now, Seen::Absent, Want::Renew { held: &held }),
            LeaseStep::Lost(LostReason::Gone)
        );
        // Version moved: lost, even if the record still names me (a write of
        // mine I no longer track, or a stale copy).
        assert_eq!(
            d(
                now,
                Seen::Held {
                    record: &r,
                    version: &moved
                },
                Want::Renew { held: &held }
            ),
            LeaseStep::Lost(LostReason::Moved {
                holder: Some(ME.into())
            })
        );
        let o = rec(OTHER, now + 10_000);
        assert_eq!(
            d(
                now,
                Seen::Held {
                    record: &o,
                    version: &moved
                },
                Want::Renew { held: &held }
            ),
            LeaseStep::Lost(LostReason::Moved {
                holder: Some(OTHER.into())
            })
        );
        // Same version but another holder (cannot happen with real versions):
        // lost, never overwritten.
        assert_eq!(
            d(
                now,
                Seen::Held {
                    record: &o,
                    version: &held
                },
                Want::Renew { held: &held }
            ),
            LeaseStep::Lost(LostReason::Moved {
                holder: Some(OTHER.into())
            })
        );
        assert_eq!(
            d(
                now,
                Seen::Unreadable { version: &held },
                Want::Renew { held: &held }
            ),
            LeaseStep::Lost(LostReason::Moved { holder: None })
        );
    }

    #[test]
    fn release_only_my_own_version() {
        let held = v("7");
        let r = rec(ME, 5);
        assert_eq!(
            d(
                1,
                Seen::Held {
                    record: &r,
                    version: &held
                },
                Want::Release { held: &held }
            ),
            LeaseStep::Release { over: held.clone() }
        );
        let other = v("8");
        let o = rec(OTHER, 5);
        assert_eq!(
            d(
                1,
                Seen::Held {
                    record: &o,
                    version: &other
                },
                Want::Release { held: &held }
            ),
            LeaseStep::Nothing
        );
        assert_eq!(
            d(1, Seen::Absent, Want::Release { held: &held }),
            LeaseStep::Nothing
        );
        assert_eq!(
            d(
                1,
                Seen::Unreadable { version: &other },
                Want::Release { held: &held }
            ),
            LeaseStep::Nothing
        );
    }

    #[test]
    fn a_holder_trusts_its_lease_until_expiry_less_the_margin_and_renews_before() {
        let r = mine(0, 0);
        assert!(holds(0, &r, P));
        assert!(holds(P.duration_ms - P.skew_ms - 1, &r, P));
        assert!(!holds(P.duration_ms - P.skew_ms, &r, P));
        let at = renew_at(&r, P);
        assert!(
            holds(at, &r, P),
            "renewal is due while the lease still holds"
        );
        assert_eq!(at, 20_000);
    }

    #[test]
    fn holder_ids_differ_per_call() {
        let a = holder_id();
        assert_ne!(a, holder_id());
        assert!(a.contains(&format!("/{}/", std::process::id())), "{a}");
    }

    proptest! {
        /// Two daemons whose clocks are each within `skew` of true time never
        /// both believe they hold the lease: while the writer trusts it, the
        /// other never decides to take it over.
        #[test]
        fn never_two_holders_within_the_skew(
            duration in 3_000u64..600_000,
            skew_frac in 1u64..33,
            written_at in 0u64..1_000_000_000,
            around_expiry in 0u64..=4_000,
            off_a in 0u64..=2_000,
            off_b in 0u64..=2_000,
        ) {
            let skew = duration * skew_frac / 100;
            // The interesting moments: within two margins either side of expiry.
            let elapsed = duration + around_expiry * skew / 1_000 - 2 * skew;
            let params = Params::new(duration, skew).unwrap();
            // Clock offsets in [-skew, +skew], scaled from the drawn permille.
            let offset = |o: u64| (o * 2 * skew / 2_000) as i64 - skew as i64;
            let (oa, ob) = (offset(off_a), offset(off_b));
            let true_write = written_at + skew + 10;
            let a_write = (true_write as i64 + oa) as u64;
            let lease = decide(a_write, Seen::Absent, "a", params, "t", Want::Acquire);
            let LeaseStep::Create(record) = lease else { panic!("{lease:?}") };
            let t = true_write + elapsed;
            let a_now = (t as i64 + oa) as u64;
            let b_now = (t as i64 + ob) as u64;
            let version = Version("1".into());
            let b = decide(b_now, Seen::Held { record: &record, version: &version }, "b", params, "u", Want::Acquire);
            let b_takes = matches!(b, LeaseStep::TakeOver { .. });
            prop_assert!(!(holds(a_now, &record, params) && b_takes),
                "a holds at {a_now} and b takes over at {b_now} (expiry {})", record.expires_unix_ms);
        }

        /// Whatever is read, acquire never overwrites a live lease of another
        /// holder, and every write it decides names what it read.
        #[test]
        fn acquire_names_what_it_read(now in 0u64..10_000_000, expires in 0u64..10_000_000, other in any::<bool>()) {
            let holder = if other { OTHER } else { ME };
            let r = rec(holder, expires);
            let g = v("42");
            match d(now, Seen::Held { record: &r, version: &g }, Want::Acquire) {
                LeaseStep::Renew { over, .. } => prop_assert!(!other && over == g),
                LeaseStep::TakeOver { over, .. } => {
                    prop_assert!(other && over == g && now >= expires + P.skew_ms)
                }
                LeaseStep::Wait { until_unix_ms, .. } => {
                    prop_assert!(other && now < until_unix_ms)
                }
                x => prop_assert!(false, "{x:?}"),
            }
        }
    }
}
