//! Global forwarding rules.

use crate::error::ApiResult;
use serde_json::{Map, Value, json};
use std::net::IpAddr;

use super::*;

pub(super) fn build_forwarding_rule(
    state: &State,
    ctx: &Ctx,
    mut obj: Map<String, Value>,
) -> ApiResult<Map<String, Value>> {
    let scheme = enum_field(&mut obj, "loadBalancingScheme", &SCHEMES, Some("EXTERNAL"))?
        .unwrap_or_default();
    if !matches!(
        scheme.as_str(),
        "EXTERNAL" | "EXTERNAL_MANAGED" | "INTERNAL_SELF_MANAGED"
    ) {
        return Err(invalid_field(
            "resource.loadBalancingScheme",
            &scheme,
            "Global forwarding rules support EXTERNAL, EXTERNAL_MANAGED and INTERNAL_SELF_MANAGED.",
        ));
    }
    let Some(target) = resolve_field(
        state,
        ctx,
        &mut obj,
        "target",
        "resource.target",
        &[Coll::TargetHttpsProxies, Coll::TargetHttpProxies],
    )?
    else {
        return Err(required_field("resource.target"));
    };
    // The backend services behind the proxy's URL map must use the same scheme.
    if let Some(map_link) = state.get(&target).and_then(|p| p["urlMap"].as_str())
        && let Some(map) = state
            .all()
            .find(|(c, v)| *c == Coll::UrlMaps && v["selfLink"].as_str() == Some(map_link))
            .map(|(_, v)| v)
    {
        for bs_link in refs_of(Coll::UrlMaps, map) {
            let bs_scheme = state
                .all()
                .find(|(c, v)| {
                    *c == Coll::BackendServices && v["selfLink"].as_str() == Some(&bs_link)
                })
                .and_then(|(_, v)| v["loadBalancingScheme"].as_str());
            if let Some(s) = bs_scheme
                && s != scheme
            {
                return Err(invalid_field(
                    "resource.loadBalancingScheme",
                    &scheme,
                    &format!(
                        "The load balancing scheme must match that of the backend service '{}' ({s}).",
                        path_of(&bs_link)
                    ),
                ));
            }
        }
    }
    let proto = enum_field(
        &mut obj,
        "IPProtocol",
        &["AH", "ESP", "ICMP", "L3_DEFAULT", "SCTP", "TCP", "UDP"],
        Some("TCP"),
    )?;
    if proto.as_deref() != Some("TCP") {
        return Err(invalid_field(
            "resource.IPProtocol",
            proto.unwrap_or_default(),
            "Forwarding rules to target proxies must use TCP.",
        ));
    }
    premium_tier(&mut obj, "forwarding rules")?;
    enum_field(
        &mut obj,
        "ipVersion",
        &["IPV4", "IPV6", "UNSPECIFIED_VERSION"],
        None,
    )?;

    let default_port = if target.coll == Coll::TargetHttpsProxies {
        443
    } else {
        80
    };
    let port_range = match obj.get("portRange").and_then(Value::as_str) {
        None => format!("{default_port}-{default_port}"),
        Some(p) => {
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) else {
                return Err(invalid_field(
                    "resource.portRange",
                    p,
                    "Invalid port range.",
                ));
            };
            if a == 0 || a != b {
                return Err(invalid_field(
                    "resource.portRange",
                    p,
                    "Forwarding rules to target proxies must use a single port.",
                ));
            }
            format!("{a}-{b}")
        }
    };
    obj.insert("portRange".into(), json!(port_range));

    let (ip, address_link) = match obj.get("IPAddress").filter(|v| !v.is_null()).cloned() {
        None => (allocate_ip(state, false)?, None),
        Some(Value::String(s)) if s.parse::<IpAddr>().is_ok() => {
            let owner = state
                .all()
                .find(|(c, v)| *c == Coll::Addresses && v["address"].as_str() == Some(&s))
                .and_then(|(_, v)| v["selfLink"].as_str().map(str::to_string));
            let Some(owner) = owner else {
                return Err(invalid_field(
                    "resource.IPAddress",
                    &s,
                    "The specified IP address is not reserved in this project.",
                ));
            };
            (s, Some(owner))
        }
        Some(v) => {
            let r = resolve(
                state,
                ctx,
                "resource.IPAddress",
                &v,
                &[Coll::Addresses],
                false,
            )?;
            let ip = state
                .get(&r)
                .and_then(|a| a["address"].as_str())
                .unwrap_or_default()
                .to_string();
            (ip, Some(r.link()))
        }
    };
    let clash = state.all().any(|(c, v)| {
        c == Coll::ForwardingRules
            && v["IPAddress"].as_str() == Some(&ip)
            && v["portRange"].as_str() == Some(&port_range)
    });
    if clash {
        return Err(invalid_field(
            "resource.IPAddress",
            &ip,
            "Specified IP address is in-use and would result in a conflict.",
        ));
    }
    obj.insert("IPAddress".into(), json!(ip));
    if let Some(a) = address_link {
        obj.insert("__address".into(), json!(a));
    }
    obj.insert("labelFingerprint".into(), json!(EMPTY_LABEL_FINGERPRINT));
    Ok(obj)
}
