//! Global addresses: network tier and IP allocation from the documentation ranges.

use crate::error::{ApiError, ApiResult};
use serde_json::{Map, Value, json};
use std::net::IpAddr;

use super::*;

/// Global load-balancing resources are always on the PREMIUM tier.
pub(super) fn premium_tier(obj: &mut Map<String, Value>, what: &str) -> ApiResult<()> {
    let tier = enum_field(
        obj,
        "networkTier",
        &[
            "FIXED_STANDARD",
            "PREMIUM",
            "STANDARD",
            "STANDARD_OVERRIDES_FIXED_STANDARD",
        ],
        Some("PREMIUM"),
    )?;
    if tier.as_deref() != Some("PREMIUM") {
        return Err(invalid_field(
            "resource.networkTier",
            tier.unwrap_or_default(),
            &format!("Global {what} must use the PREMIUM network tier."),
        ));
    }
    Ok(())
}

/// A free IP from the documentation ranges (RFC 5737 / RFC 3849) the emulator
/// hands out.
pub(super) fn allocate_ip(state: &State, v6: bool) -> ApiResult<String> {
    let taken: Vec<String> = state
        .all()
        .filter_map(|(c, v)| match c {
            Coll::Addresses => v["address"].as_str().map(str::to_string),
            Coll::ForwardingRules => v["IPAddress"].as_str().map(str::to_string),
            _ => None,
        })
        .collect();
    // Loopback addresses, not documentation ranges: a client that connects to an
    // allocated address (a post-swap TLS check) must never send traffic off the
    // machine the tests run on.
    let candidates: Box<dyn Iterator<Item = String>> = if v6 {
        Box::new((1..=0xffffu32).map(|n| format!("::ffff:127.1.{}.{}", n / 256, n % 256)))
    } else {
        Box::new(
            (1..=254)
                .map(|n| format!("127.0.113.{n}"))
                .chain((1..=254).map(|n| format!("127.0.114.{n}"))),
        )
    };
    candidates
        .into_iter()
        .find(|ip| !taken.contains(ip))
        .ok_or_else(|| {
            ApiError::new(
                403,
                "quotaExceeded",
                "The emulator's address range is exhausted.",
            )
        })
}

pub(super) fn build_address(
    state: &State,
    mut obj: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    enum_field(
        &mut obj,
        "addressType",
        &["EXTERNAL", "INTERNAL"],
        Some("EXTERNAL"),
    )?;
    let version = enum_field(
        &mut obj,
        "ipVersion",
        &["IPV4", "IPV6", "UNSPECIFIED_VERSION"],
        Some("IPV4"),
    )?;
    let v6 = version.as_deref() == Some("IPV6");
    premium_tier(&mut obj, "addresses")?;
    let ip = match obj.get("address").and_then(Value::as_str) {
        Some(a) => {
            let parsed: IpAddr = a
                .parse()
                .map_err(|_| invalid_field("resource.address", a, "Invalid IP address."))?;
            if parsed.is_ipv6() != v6 {
                return Err(invalid_field(
                    "resource.address",
                    a,
                    "The IP address does not match the requested IP version.",
                ));
            }
            let reserved = state
                .all()
                .any(|(c, v)| c == Coll::Addresses && v["address"].as_str() == Some(a));
            if reserved {
                return Err(invalid_field(
                    "resource.address",
                    a,
                    "The specified IP address is already reserved.",
                ));
            }
            a.to_string()
        }
        None => allocate_ip(state, v6)?,
    };
    obj.insert("address".into(), json!(ip));
    if v6 {
        default_field(&mut obj, "prefixLength", json!(64));
    }
    obj.insert("status".into(), json!("RESERVED"));
    obj.insert("labelFingerprint".into(), json!(EMPTY_LABEL_FINGERPRINT));
    Ok(obj)
}
