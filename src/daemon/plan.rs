//! When the daemon next looks at a certificate: a pure function of what is served,
//! the bookkeeping, the maintenance window and the clock.

use time::OffsetDateTime;

use crate::schedule::book::Book;
use crate::schedule::timing::{self, Reason, Validity};
use crate::schedule::window::Cron;

/// Why a certificate is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Nothing valid of ours is served everywhere (missing, foreign, names or key
    /// type changed, an issued certificate waiting to be installed).
    Needed,
    /// The renewal moment (ARI, lifetime fallback or emergency).
    Renewal(Reason),
    /// Waiting out the back-off after a failure.
    Backoff,
    /// Waiting for the maintenance window to open.
    Window,
    /// Time to ask the CA for its renewal window again.
    AriPoll,
}

/// The next moment to act on a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Due {
    pub at: OffsetDateTime,
    pub why: Why,
    /// Less than 1/20 of the lifetime remains: the window is ignored.
    pub emergency: bool,
}

/// What the daemon knows about a certificate right now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inputs<'a> {
    pub now: OffsetDateTime,
    /// Validity of the certificate served for these names (earliest expiry).
    pub validity: Option<Validity>,
    /// Something is wrong with what is served: act now.
    pub needs_action: bool,
    /// ARI id of the served certificate (the pick is used only if it matches).
    pub ari_id: Option<&'a str>,
    pub book: &'a Book,
    /// 0..=1, stable per certificate: spreads the lifetime fallback.
    pub jitter: f64,
    pub window: Option<&'a Cron>,
}

/// The next moment to act, and why.
pub(crate) fn next_due(i: &Inputs) -> Due {
    let emergency_now = i.validity.is_some_and(|v| timing::is_emergency(&v, i.now));
    let ari_choice = i
        .book
        .ari
        .as_ref()
        .filter(|a| i.ari_id == Some(a.cert_id.as_str()))
        .map(|a| a.chosen);
    let (mut at, mut why, emergency) = match i.validity {
        Some(v) if !i.needs_action => {
            let (t, reason) = timing::renewal_at(&v, ari_choice, i.jitter);
            let emergency = reason == Reason::Emergency || timing::is_emergency(&v, t.max(i.now));
            (
                t.max(i.now),
                Why::Renewal(reason),
                emergency || emergency_now,
            )
        }
        _ => (i.now, Why::Needed, emergency_now),
    };
    // Failures back off, even in an emergency: hammering a broken setup only burns
    // the CA's rate limits (five failed validations per name per hour).
    if let Some(nb) = i.book.not_before
        && nb > at
    {
        at = nb;
        why = Why::Backoff;
    }
    if !emergency
        && let Some(w) = i.window
        && !w.matches(at)
        && let Some(open) = w.next_open(at)
    {
        at = open;
        why = Why::Window;
    }
    // Refresh the CA's window before acting on a stale one.
    if let Some(a) = &i.book.ari
        && i.ari_id == Some(a.cert_id.as_str())
        && a.next_poll < at
        && matches!(why, Why::Renewal(_) | Why::Window)
    {
        return Due {
            at: a.next_poll.max(i.now),
            why: Why::AriPoll,
            emergency,
        };
    }
    Due { at, why, emergency }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::book::AriState;
    use time::macros::datetime;

    fn v90() -> Validity {
        Validity {
            not_before: datetime!(2026-01-01 00:00 UTC),
            not_after: datetime!(2026-04-01 00:00 UTC),
        }
    }

    fn inputs<'a>(now: OffsetDateTime, book: &'a Book) -> Inputs<'a> {
        Inputs {
            now,
            validity: Some(v90()),
            needs_action: false,
            ari_id: Some("id"),
            book,
            jitter: 0.0,
            window: None,
        }
    }

    #[test]
    fn fresh_certificate_waits_for_the_lifetime_point() {
        let b = Book::default();
        let d = next_due(&inputs(datetime!(2026-01-02 00:00 UTC), &b));
        assert_eq!(d.why, Why::Renewal(Reason::Lifetime));
        assert_eq!(d.at, datetime!(2026-03-02 00:00 UTC));
        assert!(!d.emergency);
    }

    #[test]
    fn missing_or_wrong_certificate_is_due_now() {
        let b = Book::default();
        let now = datetime!(2026-01-02 00:00 UTC);
        let mut i = inputs(now, &b);
        i.needs_action = true;
        assert_eq!(
            next_due(&i),
            Due {
                at: now,
                why: Why::Needed,
                emergency: false
            }
        );
        i.validity = None;
        assert_eq!(next_due(&i).at, now);
    }

    #[test]
    fn backoff_postpones() {
        let b = Book {
            not_before: Some(datetime!(2026-03-10 00:00 UTC)),
            failures: 3,
            ..Default::default()
        };
        let d = next_due(&inputs(datetime!(2026-03-05 00:00 UTC), &b));
        assert_eq!(
            (d.at, d.why),
            (datetime!(2026-03-10 00:00 UTC), Why::Backoff)
        );
    }

    #[test]
    fn ari_pick_is_used_only_for_the_served_certificate() {
        let b = Book {
            ari: Some(AriState {
                cert_id: "id".into(),
                start: datetime!(2026-02-10 00:00 UTC),
                end: datetime!(2026-02-12 00:00 UTC),
                chosen: datetime!(2026-02-11 00:00 UTC),
                next_poll: datetime!(2026-03-01 00:00 UTC),
            }),
            ..Default::default()
        };
        let mut i = inputs(datetime!(2026-01-02 00:00 UTC), &b);
        let d = next_due(&i);
        assert_eq!(
            (d.at, d.why),
            (datetime!(2026-02-11 00:00 UTC), Why::Renewal(Reason::Ari))
        );
        i.ari_id = Some("another");
        assert_eq!(next_due(&i).why, Why::Renewal(Reason::Lifetime));
    }

    #[test]
    fn stale_ari_window_is_polled_first() {
        let b = Book {
            ari: Some(AriState {
                cert_id: "id".into(),
                start: datetime!(2026-02-10 00:00 UTC),
                end: datetime!(2026-02-12 00:00 UTC),
                chosen: datetime!(2026-02-11 00:00 UTC),
                next_poll: datetime!(2026-01-05 00:00 UTC),
            }),
            ..Default::default()
        };
        let d = next_due(&inputs(datetime!(2026-01-02 00:00 UTC), &b));
        assert_eq!(
            (d.at, d.why),
            (datetime!(2026-01-05 00:00 UTC), Why::AriPoll)
        );
    }

    #[test]
    fn maintenance_window_defers_but_never_an_emergency() {
        let w = Cron::parse("* 2-3 * * *").unwrap();
        let b = Book::default();
        let mut i = inputs(datetime!(2026-03-02 12:00 UTC), &b);
        i.window = Some(&w);
        let d = next_due(&i);
        assert_eq!(
            (d.at, d.why),
            (datetime!(2026-03-03 02:00 UTC), Why::Window)
        );
        // Two days before expiry of a 90-day certificate: emergency, act now.
        i.now = datetime!(2026-03-30 12:00 UTC);
        let d = next_due(&i);
        assert!(d.emergency);
        assert_eq!(d.at, i.now);
    }

    #[test]
    fn jitter_is_stable_and_in_range() {
        let a = crate::reconcile::decide::jitter("app");
        assert_eq!(a, crate::reconcile::decide::jitter("app"));
        assert!((0.0..=1.0).contains(&a));
        assert_ne!(a, crate::reconcile::decide::jitter("api"));
    }
}
