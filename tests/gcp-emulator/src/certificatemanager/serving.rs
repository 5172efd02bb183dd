//! What a target HTTPS proxy serves for an SNI name: the emulator terminates no
//! TLS, so tests ask it here (`GET /emulator/served?proxy=P&sni=HOST`).
//!
//! - A proxy with a `certificateMap` serves from the map, whatever its
//!   `sslCertificates` say (Compute's `TargetHttpsProxy.certificateMap` doc: "If
//!   set, sslCertificates will be ignored."). The entry is chosen as Certificate
//!   Manager documents it ("How Certificate Manager works", certificate selection
//!   logic): the entry whose `hostname` is the SNI name, else a wildcard entry
//!   (`*.example.com` covers one label), else the `PRIMARY` entry; without any,
//!   nothing is served (the handshake fails). Of an entry's certificates an ECDSA
//!   one is served before an RSA one (the same page; the emulator has no client
//!   whose support could say otherwise), else the first.
//! - A proxy without a map serves the first of its `sslCertificates` whose SANs
//!   cover the name, else the first one (Compute: "the first certificate is the
//!   primary certificate").
//!
//! Changes are served at once: Google's propagation to its front ends is not
//! modelled here (see docs/certificate-manager.md).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;

use super::{LOCATION, parse_map_reference};
use crate::state::{Project, Shared};

/// The certificate a proxy serves for one SNI name.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Served {
    /// `certificateMap` or `sslCertificates`.
    pub source: &'static str,
    /// The certificate's resource name (`projects/P/locations/global/certificates/C`
    /// or `projects/P/global/sslCertificates/C`).
    pub certificate: String,
    /// The map entry that matched (`certificateMap` only).
    pub entry: Option<String>,
    /// The PEM chain served.
    pub pem: String,
    pub sans: Vec<String>,
    pub expire_time: String,
}

/// Whether certificate name pattern `pattern` (a SAN or an entry hostname)
/// covers `host`.
fn covers(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(suffix) => h
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => p == h,
    }
}

/// What `proxy` serves to a client asking for `sni`.
pub fn served(p: &Project, proxy: &str, sni: &str) -> Result<Served, String> {
    let proxies = p.compute.resources.get("global/targetHttpsProxies");
    let Some(px) = proxies.and_then(|m| m.get(proxy)) else {
        return Err(format!("no target HTTPS proxy {proxy} in project {}", p.id));
    };
    if let Some(reference) = px["certificateMap"].as_str() {
        return from_map(p, reference, sni);
    }
    let certs: Vec<&Value> = px["sslCertificates"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let stored = p.compute.resources.get("global/sslCertificates");
    let lookup = |link: &Value| {
        let name = link.as_str()?.rsplit('/').next()?;
        stored?.get(name)
    };
    let found: Vec<&Value> = certs.iter().filter_map(|l| lookup(l)).collect();
    let chosen = found
        .iter()
        .find(|c| {
            c["subjectAlternativeNames"]
                .as_array()
                .is_some_and(|s| s.iter().any(|n| n.as_str().is_some_and(|n| covers(n, sni))))
        })
        .or(found.first())
        .ok_or_else(|| format!("proxy {proxy} has no certificate"))?;
    Ok(Served {
        source: "sslCertificates",
        certificate: format!(
            "projects/{}/global/sslCertificates/{}",
            p.id,
            chosen["name"].as_str().unwrap_or_default()
        ),
        entry: None,
        pem: chosen["certificate"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        sans: strings(&chosen["subjectAlternativeNames"]),
        expire_time: chosen["expireTime"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn from_map(p: &Project, reference: &str, sni: &str) -> Result<Served, String> {
    let number = p.number.to_string();
    let map = match parse_map_reference(reference) {
        Some((proj, LOCATION, m)) if proj == p.id || proj == number => m,
        _ => {
            return Err(format!(
                "certificate map {reference} is not one of this project's"
            ));
        }
    };
    let st = &p.cloud.certificatemanager;
    let entries = st
        .entries
        .get(map)
        .ok_or_else(|| format!("certificate map {map} has no entries"))?;
    let host = |e: &&(&String, &Value)| e.1["hostname"].as_str().map(str::to_ascii_lowercase);
    let all: Vec<(&String, &Value)> = entries.iter().collect();
    let exact = all
        .iter()
        .find(|e| host(e).is_some_and(|h| !h.starts_with("*.") && h == sni.to_ascii_lowercase()));
    let wildcard = all
        .iter()
        .find(|e| host(e).is_some_and(|h| h.starts_with("*.") && covers(&h, sni)));
    let primary = all
        .iter()
        .find(|e| e.1["matcher"].as_str() == Some("PRIMARY"));
    let (entry_id, entry) = exact.or(wildcard).or(primary).ok_or_else(|| {
        format!("no entry of certificate map {map} matches {sni} and it has no PRIMARY entry")
    })?;
    let refs: Vec<&str> = entry["certificates"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let certs: Vec<(&str, &Value)> = refs
        .iter()
        .filter_map(|r| {
            let id = r.rsplit('/').next().unwrap_or_default();
            st.certificates.get(id).map(|c| (id, c))
        })
        .collect();
    let (cert_id, cert) = certs
        .iter()
        .find(|(_, c)| is_ecdsa(c["pemCertificate"].as_str().unwrap_or_default()))
        .or(certs.first())
        .copied()
        .ok_or_else(|| format!("entry {entry_id} of certificate map {map} has no certificate"))?;
    Ok(Served {
        source: "certificateMap",
        certificate: format!(
            "projects/{}/locations/{LOCATION}/certificates/{cert_id}",
            p.id
        ),
        entry: Some(format!(
            "projects/{}/locations/{LOCATION}/certificateMaps/{map}/certificateMapEntries/{entry_id}",
            p.id
        )),
        pem: cert["pemCertificate"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        sans: strings(&cert["sanDnsnames"]),
        expire_time: cert["expireTime"].as_str().unwrap_or_default().to_string(),
    })
}

/// Whether the leaf of a PEM chain has an ECDSA key.
fn is_ecdsa(pem: &str) -> bool {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .is_some_and(|p| {
            p.parse_x509().is_ok_and(|c| {
                matches!(
                    c.public_key().parsed(),
                    Ok(x509_parser::public_key::PublicKey::EC(_))
                )
            })
        })
}

/// `GET /emulator/served?proxy=P&sni=HOST[&project=ID]` -> [`Served`], or 404
/// with the reason nothing is served.
async fn served_route(
    AxState(shared): AxState<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let project = q
        .get("project")
        .cloned()
        .unwrap_or_else(|| shared.config.project.clone());
    let (Some(proxy), Some(sni)) = (q.get("proxy"), q.get("sni")) else {
        return (StatusCode::BAD_REQUEST, "proxy and sni are required").into_response();
    };
    let mut world = shared.world();
    let p = match world.project(&project) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match served(p, proxy, sni) {
        Ok(s) => Json(s).into_response(),
        Err(why) => (StatusCode::NOT_FOUND, why).into_response(),
    }
}

/// The `/emulator/served` admin route.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new().route("/emulator/served", get(served_route))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "a.example.com"));
        assert!(covers("*.Example.com", "A.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("example.com", "EXAMPLE.com"));
    }
}
