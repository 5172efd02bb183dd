//! Human durations in configuration: `"500ms"`, `"90s"`, `"15m"`, `"2h"`, `"30d"`,
//! and sums such as `"1h30m"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A configured duration; serialised back in the same human form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

const EXPECTED: &str = "expected a duration such as \"500ms\", \"90s\", \"15m\", \"2h\" or \"30d\"";

/// Parses `"90s"`, `"2h"`, `"1h30m"`, `"30d"`, `"500ms"`. Zero and negative values
/// parse (as zero / as an error respectively); callers decide whether zero is allowed.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError(format!("\"{s}\" is empty: {EXPECTED}")));
    }
    if t.starts_with('-') {
        return Err(DurationError(format!("\"{s}\" is negative: {EXPECTED}")));
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError(format!(
                "\"{s}\" is not a duration: {EXPECTED}"
            )));
        }
        let (num, after) = rest.split_at(digits);
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let (unit, next) = after.split_at(unit_len);
        let n: u128 = num
            .parse()
            .map_err(|_| DurationError(format!("\"{s}\" is too large: {EXPECTED}")))?;
        let ms_per: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(DurationError(format!("\"{s}\" has no unit: {EXPECTED}")));
            }
            other => {
                return Err(DurationError(format!(
                    "\"{s}\" has an unknown unit \"{other}\": {EXPECTED}"
                )));
            }
        };
        total = total
            .checked_add(n.saturating_mul(ms_per))
            .ok_or_else(|| DurationError(format!("\"{s}\" is too large")))?;
        rest = next.trim_start();
    }
    // Ten years is beyond anything meaningful here and keeps arithmetic safe.
    if total > 10 * 366 * 86_400_000 {
        return Err(DurationError(format!("\"{s}\" is longer than ten years")));
    }
    Ok(Duration::from_millis(total as u64))
}

/// Renders a duration the way it would be written in the configuration.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, per) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse(v).map(HumanDuration).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{v} has no unit: {EXPECTED} (write \"{v}s\" for seconds)"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                self.visit_i64(v as i64)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn refuses_bad_input_with_the_expected_form() {
        for bad in [
            "",
            "90",
            "-5s",
            "5 parsecs",
            "s",
            "1y",
            "99999999999999999999d",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("\"{bad}\"")) || bad.is_empty(),
                "{bad}: {e}"
            );
        }
        assert!(parse("90").unwrap_err().to_string().contains("no unit"));
        assert!(parse("-5s").unwrap_err().to_string().contains("negative"));
        assert!(
            parse("1y")
                .unwrap_err()
                .to_string()
                .contains("unknown unit \"y\"")
        );
        assert!(
            parse("4000d")
                .unwrap_err()
                .to_string()
                .contains("ten years")
        );
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(180)), "3m");
        assert_eq!(format(Duration::from_secs(86400 * 2)), "2d");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
