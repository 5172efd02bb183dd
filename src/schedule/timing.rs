//! When to renew a served certificate. Pure functions of the certificate's
//! validity, the CA's ARI window and the clock, so they are unit-tested exhaustively.
//!
//! - ARI (RFC 9773) first: a uniformly random moment inside the CA's suggested
//!   window, chosen once and kept until the window changes.
//! - Without ARI: when one third of the lifetime remains (one half for certificates
//!   of ten days or less), moved earlier by up to 1/20 of the lifetime of jitter so
//!   many certificates issued together do not renew together.
//! - Emergency: when less than 1/20 of the lifetime remains, renew now whatever ARI
//!   says, and ignore maintenance windows.

use std::time::Duration;

use time::OffsetDateTime;

/// The validity of a served certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    pub fn lifetime(&self) -> time::Duration {
        self.not_after - self.not_before
    }

    /// Share of the lifetime still ahead at `now` (0 when expired, 1 at issuance).
    pub fn remaining_fraction(&self, now: OffsetDateTime) -> f64 {
        let total = self.lifetime().as_seconds_f64();
        if total <= 0.0 {
            return 0.0;
        }
        ((self.not_after - now).as_seconds_f64() / total).clamp(0.0, 1.0)
    }
}

/// A renewal window suggested by the CA (ARI `suggestedWindow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AriWindow {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// Why a certificate is (or will be) renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The moment picked inside the CA's ARI window.
    Ari,
    /// The lifetime ratio fallback.
    Lifetime,
    /// Less than 1/20 of the lifetime remains.
    Emergency,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ari => "ari",
            Reason::Lifetime => "lifetime",
            Reason::Emergency => "emergency",
        }
    }
}

/// Certificates of this lifetime or less renew at half-life rather than a third.
pub(crate) const SHORT_LIVED: time::Duration = time::Duration::days(10);

/// Fraction of the lifetime that must remain at the fallback renewal point.
pub(crate) fn fallback_ratio(v: &Validity) -> f64 {
    if v.lifetime() <= SHORT_LIVED {
        0.5
    } else {
        1.0 / 3.0
    }
}

/// Below this fraction of the lifetime remaining, renewal is an emergency.
pub(crate) const EMERGENCY_FRACTION: f64 = 1.0 / 20.0;

/// The moment at which less than 1/20 of the lifetime remains.
pub(crate) fn emergency_at(v: &Validity) -> OffsetDateTime {
    v.not_after - v.lifetime() * EMERGENCY_FRACTION
}

/// The fallback renewal moment: `fallback_ratio` of the lifetime before expiry,
/// moved earlier by `jitter` (in 0..=1) times 1/20 of the lifetime.
pub(crate) fn fallback_at(v: &Validity, jitter: f64) -> OffsetDateTime {
    let base = v.not_after - v.lifetime() * fallback_ratio(v);
    base - v.lifetime() * (EMERGENCY_FRACTION * jitter.clamp(0.0, 1.0))
}

/// A moment inside the ARI window: `start + u * (end - start)`, `u` in 0..=1.
pub(crate) fn ari_pick(w: &AriWindow, u: f64) -> OffsetDateTime {
    if w.end <= w.start {
        return w.start;
    }
    w.start + (w.end - w.start) * u.clamp(0.0, 1.0)
}

/// When to renew, and why. `ari_choice` is the moment already picked in the
/// current ARI window (see [`ari_pick`]); `jitter` in 0..=1 spreads the fallback.
pub(crate) fn renewal_at(
    v: &Validity,
    ari_choice: Option<OffsetDateTime>,
    jitter: f64,
) -> (OffsetDateTime, Reason) {
    let emergency = emergency_at(v);
    match ari_choice {
        // ARI never postpones past the emergency floor.
        Some(t) if t < emergency => (t, Reason::Ari),
        Some(_) => (emergency, Reason::Emergency),
        None => (fallback_at(v, jitter), Reason::Lifetime),
    }
}

/// Whether `now` is past the emergency floor.
pub(crate) fn is_emergency(v: &Validity, now: OffsetDateTime) -> bool {
    now >= emergency_at(v)
}

/// Capped exponential back-off with jitter: attempt 1 waits about `initial`, each
/// failure doubles it up to `max`; `u` in 0..=1 picks within [0.5, 1] of the step
/// so retries of many certificates spread out.
pub fn backoff(failures: u32, initial: Duration, max: Duration, u: f64) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let step = initial
        .saturating_mul(1u32 << (failures - 1).min(30))
        .min(max);
    step.mul_f64(0.5 + 0.5 * u.clamp(0.0, 1.0))
}

/// The wait after a failure retrying cannot fix (a failed authorization, a
/// refused order, a permission denied): `cap` (24 h by default) while expiry is far,
/// a quarter of the time left when that is shorter, never under an hour (Let's
/// Encrypt allows 5 failed validations per name and hour); a quarter of `cap` once
/// the certificate has expired or when none is served (a site that is down should
/// recover soon after its cause is fixed, yet not burn the CA's "consecutive
/// failures" budget, which pauses a name for good).
pub fn permanent_failure_wait(cap: Duration, left: Option<time::Duration>) -> Duration {
    let floor = Duration::from_secs(3600).min(cap);
    match left {
        Some(l) if l.is_positive() => {
            let quarter = Duration::try_from(l / 4).unwrap_or(cap);
            quarter.clamp(floor, cap)
        }
        _ => (cap / 4).max(floor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn validity(days: i64) -> Validity {
        let nb = datetime!(2026-01-01 00:00 UTC);
        Validity {
            not_before: nb,
            not_after: nb + time::Duration::days(days),
        }
    }

    #[test]
    fn permanent_failures_wait_less_as_expiry_nears() {
        let cap = Duration::from_secs(24 * 3600);
        let h = |n: u64| Duration::from_secs(n * 3600);
        let left = |hours: i64| Some(time::Duration::hours(hours));
        assert_eq!(permanent_failure_wait(cap, left(30 * 24)), h(24));
        assert_eq!(permanent_failure_wait(cap, left(4 * 24)), h(24));
        assert_eq!(permanent_failure_wait(cap, left(2 * 24)), h(12));
        assert_eq!(permanent_failure_wait(cap, left(8)), h(2));
        assert_eq!(permanent_failure_wait(cap, left(2)), h(1), "floor");
        assert_eq!(permanent_failure_wait(cap, left(-5)), h(6), "expired");
        assert_eq!(permanent_failure_wait(cap, None), h(6), "nothing served");
        // A shortened cap (tests) is never exceeded.
        let short = Duration::from_secs(60);
        assert_eq!(permanent_failure_wait(short, left(30 * 24)), short);
        assert_eq!(permanent_failure_wait(short, None), short);
    }

    #[test]
    fn ninety_day_certificate_renews_with_a_third_left() {
        let v = validity(90);
        assert_eq!(fallback_at(&v, 0.0), v.not_after - time::Duration::days(30));
        // Jitter moves it earlier by at most 1/20 of the lifetime (4.5 days).
        assert_eq!(
            fallback_at(&v, 1.0),
            v.not_after - time::Duration::days(30) - time::Duration::hours(108)
        );
    }

    #[test]
    fn short_lived_certificates_renew_at_half_life() {
        let v = validity(6);
        assert_eq!(fallback_at(&v, 0.0), v.not_before + time::Duration::days(3));
        let v = validity(10);
        assert_eq!(fallback_ratio(&v), 0.5);
        let v = validity(11);
        assert_eq!(fallback_ratio(&v), 1.0 / 3.0);
    }

    #[test]
    fn ari_choice_wins_until_the_emergency_floor() {
        let v = validity(90);
        let t = v.not_before + time::Duration::days(60);
        assert_eq!(renewal_at(&v, Some(t), 0.0), (t, Reason::Ari));
        let late = v.not_after - time::Duration::days(1);
        assert_eq!(
            renewal_at(&v, Some(late), 0.0),
            (emergency_at(&v), Reason::Emergency)
        );
        assert_eq!(renewal_at(&v, None, 0.0).1, Reason::Lifetime);
    }

    #[test]
    fn emergency_is_the_last_twentieth() {
        let v = validity(100);
        assert_eq!(emergency_at(&v), v.not_after - time::Duration::days(5));
        assert!(!is_emergency(&v, v.not_after - time::Duration::days(6)));
        assert!(is_emergency(&v, v.not_after - time::Duration::days(4)));
    }

    #[test]
    fn ari_pick_stays_inside_the_window() {
        let w = AriWindow {
            start: datetime!(2026-03-01 00:00 UTC),
            end: datetime!(2026-03-03 00:00 UTC),
        };
        assert_eq!(ari_pick(&w, 0.0), w.start);
        assert_eq!(ari_pick(&w, 1.0), w.end);
        assert_eq!(ari_pick(&w, 0.5), datetime!(2026-03-02 00:00 UTC));
        let inverted = AriWindow {
            start: w.end,
            end: w.start,
        };
        assert_eq!(ari_pick(&inverted, 0.7), w.end);
    }

    #[test]
    fn backoff_ladder_doubles_to_the_cap() {
        let i = Duration::from_secs(60);
        let m = Duration::from_secs(6 * 3600);
        assert_eq!(backoff(0, i, m, 1.0), Duration::ZERO);
        assert_eq!(backoff(1, i, m, 1.0), Duration::from_secs(60));
        assert_eq!(backoff(2, i, m, 1.0), Duration::from_secs(120));
        assert_eq!(backoff(5, i, m, 1.0), Duration::from_secs(960));
        assert_eq!(backoff(20, i, m, 1.0), m);
        assert_eq!(backoff(u32::MAX, i, m, 1.0), m);
        assert_eq!(backoff(1, i, m, 0.0), Duration::from_secs(30));
    }

    proptest! {
        #[test]
        fn renewal_is_always_before_expiry_and_after_issuance(
            days in 1i64..400,
            jitter in 0.0f64..=1.0,
            ari_offset_h in proptest::option::of(-100i64..10_000),
        ) {
            let v = validity(days);
            let ari = ari_offset_h.map(|h| v.not_before + time::Duration::hours(h));
            let (at, reason) = renewal_at(&v, ari, jitter);
            prop_assert!(at < v.not_after);
            prop_assert!(at <= emergency_at(&v));
            if reason == Reason::Lifetime {
                prop_assert!(at > v.not_before);
                let remaining = v.remaining_fraction(at);
                let ratio = fallback_ratio(&v);
                prop_assert!(remaining >= ratio - 1e-9 && remaining <= ratio + EMERGENCY_FRACTION + 1e-9);
            }
        }

        #[test]
        fn backoff_is_within_half_and_full_step(failures in 1u32..40, u in 0.0f64..=1.0) {
            let i = Duration::from_secs(60);
            let m = Duration::from_secs(3 * 3600);
            let d = backoff(failures, i, m, u);
            let step = i.saturating_mul(1u32 << (failures - 1).min(30)).min(m);
            prop_assert!(d >= step / 2 && d <= step);
        }
    }
}
