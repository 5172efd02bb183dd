//! A stack served from a Certificate Manager certificate map
//! (`stack.certificate_map`), and what a map or a proxy's `sslCertificates`
//! serve for a name. Pure, except [`observe`] (reads only).
//!
//! Which certificate a map serves for a name follows Google's selection logic
//! ("How Certificate Manager works"): the entry whose hostname is the name,
//! else a wildcard entry covering one label, else the PRIMARY entry. An entry
//! may hold several certificates and Google picks among them (ECDSA before
//! RSA), so a name counts as served only when *every* certificate of the chosen
//! entry is valid for it: whichever Google picks, the client gets a valid one.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{StackError, gcp_err};
use crate::gcp::Gcp;
use crate::gcp::certificatemanager::{Certificate, CertificateMap, CertificateMapEntry};
use crate::gcp::compute::SslCertificate;
use crate::lb::naming;

/// A map and what it holds, as read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapObserved {
    /// The map's id (as configured).
    pub id: String,
    /// `None` when the map does not exist.
    pub map: Option<CertificateMap>,
    pub entries: Vec<CertificateMapEntry>,
    /// The certificates the entries name, and ours (`gclb-acme-<name>`) when
    /// it exists, each once.
    pub certificates: Vec<Certificate>,
}

impl MapObserved {
    /// The certificate with this id, if read.
    pub fn certificate(&self, id: &str) -> Option<&Certificate> {
        self.certificates.iter().find(|c| c.id() == id)
    }
}

/// Reads the map `id`, its entries and their certificates, and the
/// certificate of ours for `[[certificates]]` `cert_name` when given.
pub(crate) async fn observe(
    gcp: &Gcp,
    id: &str,
    cert_name: Option<&str>,
) -> Result<MapObserved, StackError> {
    let mut o = MapObserved {
        id: id.to_string(),
        map: gcp
            .get_certificate_map(id)
            .await
            .map_err(gcp_err(format!("reading certificate map {id}")))?,
        ..Default::default()
    };
    if o.map.is_some() {
        o.entries = gcp
            .list_certificate_map_entries(id, None)
            .await
            .map_err(gcp_err(format!(
                "listing the entries of certificate map {id}"
            )))?;
    }
    let mut ids: Vec<String> = cert_name
        .map(naming::cm_certificate_id)
        .into_iter()
        .collect();
    for e in &o.entries {
        for c in e.certificate_ids() {
            if !ids.iter().any(|i| i == c) {
                ids.push(c.to_string());
            }
        }
    }
    for c in ids {
        if let Some(cert) = gcp.get_certificate(&c).await.map_err(gcp_err(format!(
            "reading certificate {c} (Certificate Manager)"
        )))? {
            o.certificates.push(cert);
        }
    }
    Ok(o)
}

/// Whether `pattern` (a SAN or an entry hostname, `*.` allowed) covers `name`
/// (which may itself be a wildcard: then only the same wildcard covers it):
/// [`crate::lb::serves`], the takeover rules' matching, without regard to case
/// (Google may return names as the user typed them).
pub fn covers(pattern: &str, name: &str) -> bool {
    crate::lb::serves(&pattern.to_ascii_lowercase(), &name.to_ascii_lowercase())
}

fn valid_until(expire_time: Option<&str>, now: OffsetDateTime) -> bool {
    expire_time
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .is_some_and(|t| t > now)
}

/// The entry of the map that serves `name`, by Google's selection logic.
pub fn entry_for<'a>(
    entries: &'a [CertificateMapEntry],
    name: &str,
) -> Option<&'a CertificateMapEntry> {
    entries
        .iter()
        .find(|e| {
            e.hostname
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(name))
        })
        .or_else(|| {
            entries.iter().find(|e| {
                e.hostname
                    .as_deref()
                    .is_some_and(|h| h.starts_with("*.") && covers(h, name))
            })
        })
        .or_else(|| entries.iter().find(|e| e.is_primary()))
}

/// What the map serves for `name`: `Ok` with the certificates of the chosen
/// entry when every one of them is valid for it at `now`, else why not.
pub fn map_serves<'a>(
    m: &'a MapObserved,
    name: &str,
    now: OffsetDateTime,
) -> Result<Vec<&'a Certificate>, String> {
    if m.map.is_none() {
        return Err(format!("certificate map {} does not exist", m.id));
    }
    let Some(entry) = entry_for(&m.entries, name) else {
        return Err(format!(
            "certificate map {} has no entry for {name} and no PRIMARY entry",
            m.id
        ));
    };
    if entry.certificates.is_empty() {
        return Err(format!(
            "entry {} of certificate map {} serves {name} but holds no certificate",
            entry.id(),
            m.id
        ));
    }
    let mut out = Vec::new();
    for id in entry.certificate_ids() {
        let Some(c) = m.certificate(id) else {
            return Err(format!(
                "entry {} of certificate map {} serves {name} with certificate {id}, which cannot be read",
                entry.id(),
                m.id
            ));
        };
        if !c.san_dnsnames.iter().any(|s| covers(s, name)) {
            return Err(format!(
                "entry {} of certificate map {} serves {name} with certificate {id}, whose names ({}) do not cover it",
                entry.id(),
                m.id,
                c.san_dnsnames.join(", ")
            ));
        }
        if !valid_until(c.expire_time.as_deref(), now) {
            return Err(format!(
                "entry {} of certificate map {} serves {name} with certificate {id}, which expired at {}",
                entry.id(),
                m.id,
                c.expire_time.as_deref().unwrap_or("an unknown time")
            ));
        }
        out.push(c);
    }
    Ok(out)
}

/// What a proxy's `sslCertificates` serve for `name`: Compute picks the
/// certificate whose names match the SNI name, else the first. `Ok` with the
/// certificate when one valid at `now` covers the name.
pub fn ssl_serves<'a>(
    certs: &'a [SslCertificate],
    name: &str,
    now: OffsetDateTime,
) -> Result<&'a SslCertificate, String> {
    let matching: Vec<&SslCertificate> = certs
        .iter()
        .filter(|c| c.subject_alternative_names.iter().any(|s| covers(s, name)))
        .collect();
    if matching.is_empty() {
        return Err(format!(
            "no certificate of its sslCertificates ({}) covers {name}",
            certs
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    matching
        .iter()
        .find(|c| valid_until(c.expire_time.as_deref(), now))
        .copied()
        .ok_or_else(|| {
            format!(
                "every certificate of its sslCertificates covering {name} has expired ({})",
                matching
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The map id of a proxy's `certificateMap` reference (any of the forms
/// Compute takes: `//certificatemanager.googleapis.com/projects/P/locations/L/certificateMaps/M`
/// or the API URL), `None` when it names no global map.
pub fn map_id_of(reference: &str) -> Option<&str> {
    let (before, id) = reference.rsplit_once("/certificateMaps/")?;
    (before.ends_with("/locations/global") && !id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cert(id: &str, sans: &[&str], expire: &str) -> Certificate {
        Certificate {
            name: format!("projects/p/locations/global/certificates/{id}"),
            san_dnsnames: sans.iter().map(|s| s.to_string()).collect(),
            expire_time: Some(expire.into()),
            ..Default::default()
        }
    }

    fn entry(id: &str, host: Option<&str>, certs: &[&str]) -> CertificateMapEntry {
        CertificateMapEntry {
            name: format!(
                "projects/p/locations/global/certificateMaps/m/certificateMapEntries/{id}"
            ),
            hostname: host.map(str::to_string),
            matcher: host.is_none().then(|| "PRIMARY".to_string()),
            certificates: certs
                .iter()
                .map(|c| format!("projects/123/locations/global/certificates/{c}"))
                .collect(),
            labels: BTreeMap::new(),
            ..Default::default()
        }
    }

    fn map(entries: Vec<CertificateMapEntry>, certs: Vec<Certificate>) -> MapObserved {
        MapObserved {
            id: "m".into(),
            map: Some(CertificateMap {
                name: "projects/p/locations/global/certificateMaps/m".into(),
                ..Default::default()
            }),
            entries,
            certificates: certs,
        }
    }

    const LATER: &str = "2099-01-01T00:00:00Z";
    const PAST: &str = "2001-01-01T00:00:00Z";

    #[test]
    fn the_map_serves_by_exact_then_wildcard_then_primary() {
        let now = OffsetDateTime::now_utc();
        let m = map(
            vec![
                entry("exact", Some("www.example.com"), &["a"]),
                entry("wild", Some("*.example.com"), &["b"]),
                entry("primary", None, &["c"]),
            ],
            vec![
                cert("a", &["www.example.com"], LATER),
                cert("b", &["*.example.com"], LATER),
                cert("c", &["other.example.org"], LATER),
            ],
        );
        assert_eq!(map_serves(&m, "www.example.com", now).unwrap()[0].id(), "a");
        assert_eq!(map_serves(&m, "api.example.com", now).unwrap()[0].id(), "b");
        assert_eq!(map_serves(&m, "*.example.com", now).unwrap()[0].id(), "b");
        assert_eq!(
            map_serves(&m, "other.example.org", now).unwrap()[0].id(),
            "c"
        );
        // The PRIMARY entry's certificate does not cover this name.
        let e = map_serves(&m, "a.b.example.com", now).unwrap_err();
        assert!(e.contains("do not cover it"), "{e}");
    }

    #[test]
    fn a_name_is_unserved_without_an_entry_or_with_a_bad_certificate() {
        let now = OffsetDateTime::now_utc();
        let m = map(
            vec![entry("e", Some("www.example.com"), &["old", "new"])],
            vec![
                cert("old", &["www.example.com"], PAST),
                cert("new", &["www.example.com"], LATER),
            ],
        );
        // One of the entry's two certificates has expired: Google may pick it.
        let e = map_serves(&m, "www.example.com", now).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        let e = map_serves(&m, "api.example.com", now).unwrap_err();
        assert!(
            e.contains("no entry for api.example.com and no PRIMARY"),
            "{e}"
        );
        let missing = map(vec![entry("e", Some("www.example.com"), &["gone"])], vec![]);
        assert!(
            map_serves(&missing, "www.example.com", now)
                .unwrap_err()
                .contains("cannot be read")
        );
        let none = MapObserved {
            id: "m".into(),
            ..Default::default()
        };
        assert!(
            map_serves(&none, "www.example.com", now)
                .unwrap_err()
                .contains("does not exist")
        );
    }

    #[test]
    fn ssl_certificates_serve_a_covering_valid_one() {
        let now = OffsetDateTime::now_utc();
        let c = |name: &str, sans: &[&str], exp: &str| SslCertificate {
            name: name.into(),
            subject_alternative_names: sans.iter().map(|s| s.to_string()).collect(),
            expire_time: Some(exp.into()),
            ..Default::default()
        };
        let certs = vec![
            c("old", &["www.example.com"], PAST),
            c("new", &["www.example.com", "*.example.com"], LATER),
        ];
        assert_eq!(
            ssl_serves(&certs, "www.example.com", now).unwrap().name,
            "new"
        );
        assert_eq!(
            ssl_serves(&certs, "*.example.com", now).unwrap().name,
            "new"
        );
        assert!(
            ssl_serves(&certs[..1], "www.example.com", now)
                .unwrap_err()
                .contains("expired")
        );
        assert!(
            ssl_serves(&certs, "example.org", now)
                .unwrap_err()
                .contains("covers example.org")
        );
    }

    #[test]
    fn map_references_in_every_form() {
        assert_eq!(
            map_id_of(
                "//certificatemanager.googleapis.com/projects/p/locations/global/certificateMaps/m1"
            ),
            Some("m1")
        );
        assert_eq!(
            map_id_of(
                "https://certificatemanager.googleapis.com/v1/projects/p/locations/global/certificateMaps/m2"
            ),
            Some("m2")
        );
        assert_eq!(
            map_id_of(
                "//certificatemanager.googleapis.com/projects/p/locations/us-east1/certificateMaps/m"
            ),
            None
        );
        assert_eq!(map_id_of("nonsense"), None);
    }
}
