//! Maintenance windows as cron expressions (`minute hour day-of-month month
//! day-of-week`, UTC): the window is open during every minute the expression matches.
//! `"* 2-4 * * mon-fri"` is open 02:00-04:59 UTC on weekdays.

use time::{Duration, OffsetDateTime};

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// Why a cron expression was refused; the text completes "`"expr"` ...".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "has {0} fields: expected 5 (minute hour day-of-month month day-of-week, UTC), e.g. \"* 2-4 * * mon-fri\""
    )]
    FieldCount(usize),
    #[error("has a bad {name} field \"{field}\": {problem}")]
    Field {
        name: &'static str,
        field: String,
        problem: FieldError,
    },
}

/// What is wrong inside one field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("step \"{0}\" is not a number")]
    BadStep(String),
    #[error("a step of 0 never advances")]
    ZeroStep,
    #[error("range {0}-{1} runs backwards")]
    Backwards(u32, u32),
    #[error("\"{value}\" is not a {name}")]
    NotA { value: String, name: &'static str },
    #[error("{value} is outside {lo}-{hi}")]
    OutOfRange { value: u32, lo: u32, hi: u32 },
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    /// Parses five space-separated fields; the error completes "`"expr"` ...".
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len()));
        }
        let mut sets = [0u64; 5];
        for (i, f) in fields.iter().enumerate() {
            sets[i] = parse_field(f, i).map_err(|problem| CronError::Field {
                name: FIELDS[i].0,
                field: (*f).to_string(),
                problem,
            })?;
        }
        // Sunday is 0 and 7.
        if sets[4] & (1 << 7) != 0 {
            sets[4] |= 1;
        }
        Ok(Cron {
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays: sets[4] & 0x7f,
            days_restricted: fields[2] != "*",
            weekdays_restricted: fields[4] != "*",
        })
    }

    /// Whether the minute containing `t` is inside the window.
    pub fn matches(&self, t: OffsetDateTime) -> bool {
        let t = t.to_offset(time::UtcOffset::UTC);
        let bit = |set: u64, v: u32| set & (1u64 << v) != 0;
        let day_ok = bit(self.days, u32::from(t.day()));
        let wd_ok = bit(
            self.weekdays,
            u32::from(t.weekday().number_days_from_sunday()),
        );
        let date_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day_ok || wd_ok,
            (true, false) => day_ok,
            (false, true) => wd_ok,
            (false, false) => true,
        };
        date_ok
            && bit(self.months, u32::from(u8::from(t.month())))
            && bit(self.hours, u32::from(t.hour()))
            && bit(self.minutes, u32::from(t.minute()))
    }

    /// The first moment at or after `t` inside the window, within about four years
    /// (`None` for an expression that never matches, like `* * 31 2 *`).
    pub fn next_open(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let t = t.to_offset(time::UtcOffset::UTC);
        if self.matches(t) {
            return Some(t);
        }
        // Checked arithmetic: near the end of the calendar (year 9999) the search
        // stops there instead of overflowing.
        let mut c = t
            .replace_second(0)
            .ok()?
            .replace_nanosecond(0)
            .ok()?
            .checked_add(Duration::minutes(1))?;
        let end = t
            .checked_add(Duration::days(4 * 366))
            .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc());
        while c < end {
            if !self.date_matches(c) {
                c = c
                    .replace_time(time::Time::MIDNIGHT)
                    .checked_add(Duration::days(1))?;
                continue;
            }
            if self.hours & (1u64 << c.hour()) == 0 {
                c = c.replace_minute(0).ok()?.checked_add(Duration::hours(1))?;
                continue;
            }
            if self.matches(c) {
                return Some(c);
            }
            c = c.checked_add(Duration::minutes(1))?;
        }
        None
    }

    fn date_matches(&self, t: OffsetDateTime) -> bool {
        let midnight_any = Cron {
            minutes: u64::MAX,
            hours: u64::MAX,
            ..self.clone()
        };
        midnight_any.matches(t)
    }
}

fn parse_field(f: &str, index: usize) -> Result<u64, FieldError> {
    let (_, lo, hi) = FIELDS[index];
    let mut set = 0u64;
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| FieldError::BadStep(s.to_string()))?;
                if step == 0 {
                    return Err(FieldError::ZeroStep);
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, index)?, value(b, index)?)
        } else {
            let v = value(range, index)?;
            (v, if step > 1 { hi } else { v })
        };
        if a > b {
            return Err(FieldError::Backwards(a, b));
        }
        let mut v = a;
        while v <= b {
            set |= 1u64 << v;
            // A huge step ("*/4294967295") ends the range instead of overflowing.
            match v.checked_add(step) {
                Some(next) => v = next,
                None => break,
            }
        }
    }
    Ok(set)
}

fn value(s: &str, index: usize) -> Result<u32, FieldError> {
    let (name, lo, hi) = FIELDS[index];
    let lower = s.to_ascii_lowercase();
    let named = match index {
        3 => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|i| i as u32 + 1),
        4 => WEEKDAYS.iter().position(|d| *d == lower).map(|i| i as u32),
        _ => None,
    };
    let v = match named {
        Some(v) => v,
        None => s.parse::<u32>().map_err(|_| FieldError::NotA {
            value: s.to_string(),
            name,
        })?,
    };
    if v < lo || v > hi {
        return Err(FieldError::OutOfRange { value: v, lo, hi });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn weekday_night_window() {
        let c = Cron::parse("* 2-4 * * mon-fri").unwrap();
        // 2026-11-30 is a Monday.
        assert!(c.matches(datetime!(2026-11-30 02:00 UTC)));
        assert!(c.matches(datetime!(2026-11-30 04:59 UTC)));
        assert!(!c.matches(datetime!(2026-11-30 05:00 UTC)));
        assert!(!c.matches(datetime!(2026-11-29 03:00 UTC)), "Sunday");
        assert_eq!(
            c.next_open(datetime!(2026-11-28 12:34:56 UTC)),
            Some(datetime!(2026-11-30 02:00 UTC))
        );
    }

    #[test]
    fn steps_lists_and_sunday_as_seven() {
        let c = Cron::parse("*/15 0,12 * * 7").unwrap();
        assert!(c.matches(datetime!(2026-11-29 12:45 UTC)));
        assert!(!c.matches(datetime!(2026-11-29 12:44 UTC)));
    }

    #[test]
    fn never_matching_expression_has_no_next() {
        let c = Cron::parse("0 0 31 2 *").unwrap();
        assert_eq!(c.next_open(datetime!(2026-01-01 00:00 UTC)), None);
    }

    #[test]
    fn next_open_near_the_end_of_the_calendar_does_not_overflow() {
        let never = Cron::parse("0 0 31 2 *").unwrap();
        let daily = Cron::parse("30 3 * * *").unwrap();
        let late = datetime!(9999-12-31 23:59:30 UTC);
        assert_eq!(never.next_open(datetime!(9998-06-01 00:00 UTC)), None);
        assert_eq!(never.next_open(late), None);
        assert_eq!(daily.next_open(late), None);
        assert_eq!(
            daily.next_open(datetime!(9999-12-30 12:00 UTC)),
            Some(datetime!(9999-12-31 03:30 UTC))
        );
    }

    #[test]
    fn huge_steps_do_not_overflow() {
        let c = Cron::parse("59/4294967295 23/4294967295 * * *").unwrap();
        assert!(c.matches(datetime!(2026-11-30 23:59 UTC)));
        assert!(!c.matches(datetime!(2026-11-30 23:58 UTC)));
        assert!(!c.matches(datetime!(2026-11-30 22:59 UTC)));
    }

    #[test]
    fn errors_name_the_field() {
        assert!(
            Cron::parse("* * *")
                .unwrap_err()
                .to_string()
                .contains("expected 5")
        );
        assert!(
            Cron::parse("61 * * * *")
                .unwrap_err()
                .to_string()
                .contains("minute field")
        );
        assert!(
            Cron::parse("* 5-2 * * *")
                .unwrap_err()
                .to_string()
                .contains("backwards")
        );
        assert!(
            Cron::parse("* * * foo *")
                .unwrap_err()
                .to_string()
                .contains("month field")
        );
        assert!(
            Cron::parse("*/0 * * * *")
                .unwrap_err()
                .to_string()
                .contains("step of 0")
        );
    }
}
