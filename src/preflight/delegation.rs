//! Pure decisions about what public DNS shows: does the registrar delegate the
//! zone to Cloud DNS, and is a challenge name a CNAME left behind by Certificate
//! Manager?

use std::collections::BTreeSet;

/// What the public resolver's NS answer says about a zone's delegation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Delegation {
    /// Exactly the zone's name servers.
    Match,
    /// Only some of the zone's name servers: works, but with less redundancy.
    Subset { missing: Vec<String> },
    /// Other servers answer for the name: the CA will never see our TXT records.
    Elsewhere {
        served: Vec<String>,
        zone: Vec<String>,
    },
    /// No NS records at all: the name is not delegated.
    None,
}

fn norm(ns: &str) -> String {
    let n = ns.trim().to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

/// Compares the NS set public DNS serves for the zone's name with the zone's
/// `nameServers`.
pub(crate) fn compare_ns(served: &[String], zone: &[String]) -> Delegation {
    let served: BTreeSet<String> = served.iter().map(|s| norm(s)).collect();
    let zone: BTreeSet<String> = zone.iter().map(|s| norm(s)).collect();
    if served.is_empty() {
        return Delegation::None;
    }
    if served == zone {
        return Delegation::Match;
    }
    if served.is_subset(&zone) {
        return Delegation::Subset {
            missing: zone.difference(&served).cloned().collect(),
        };
    }
    Delegation::Elsewhere {
        served: served.into_iter().collect(),
        zone: zone.into_iter().collect(),
    }
}

/// The suffix of the CNAME targets a Certificate Manager DNS authorization asks
/// for (`<hash>.<n>.authorize.certificatemanager.goog.`).
pub(crate) const CERTIFICATE_MANAGER_SUFFIX: &str = ".authorize.certificatemanager.goog.";

/// Whether a CNAME target at `_acme-challenge.<name>` points into Certificate
/// Manager's DNS authorization: then the name can hold no TXT record of ours
/// (a CNAME excludes other data) and the CA follows the CNAME to Google's record.
pub(crate) fn is_certificate_manager_cname(target: &str) -> bool {
    norm(target).ends_with(CERTIFICATE_MANAGER_SUFFIX)
}

/// The challenge name of a domain: `_acme-challenge.` before it (a wildcard's
/// base name), absolute.
pub(crate) fn challenge_name(domain: &str) -> String {
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    norm(&format!("_acme-challenge.{base}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn same_servers_match_whatever_the_case_and_dots() {
        assert_eq!(
            compare_ns(
                &v(&[
                    "NS-CLOUD-A2.googledomains.com",
                    "ns-cloud-a1.googledomains.com."
                ]),
                &v(&[
                    "ns-cloud-a1.googledomains.com.",
                    "ns-cloud-a2.googledomains.com."
                ])
            ),
            Delegation::Match
        );
    }

    #[test]
    fn fewer_servers_is_a_subset() {
        assert_eq!(
            compare_ns(
                &v(&["ns-cloud-a1.googledomains.com."]),
                &v(&[
                    "ns-cloud-a1.googledomains.com.",
                    "ns-cloud-a2.googledomains.com."
                ])
            ),
            Delegation::Subset {
                missing: v(&["ns-cloud-a2.googledomains.com."])
            }
        );
    }

    #[test]
    fn other_servers_are_elsewhere() {
        let d = compare_ns(
            &v(&["ns1.other-dns.com.", "ns-cloud-a1.googledomains.com."]),
            &v(&["ns-cloud-a1.googledomains.com."]),
        );
        assert_eq!(
            d,
            Delegation::Elsewhere {
                served: v(&["ns-cloud-a1.googledomains.com.", "ns1.other-dns.com."]),
                zone: v(&["ns-cloud-a1.googledomains.com."]),
            }
        );
        // Another Cloud DNS zone's servers (a re-created zone) are elsewhere too.
        assert!(matches!(
            compare_ns(
                &v(&["ns-cloud-b1.googledomains.com."]),
                &v(&["ns-cloud-a1.googledomains.com."])
            ),
            Delegation::Elsewhere { .. }
        ));
    }

    #[test]
    fn no_answer_is_no_delegation() {
        assert_eq!(
            compare_ns(&[], &v(&["ns-cloud-a1.googledomains.com."])),
            Delegation::None
        );
    }

    #[test]
    fn certificate_manager_cnames_are_recognised() {
        assert!(is_certificate_manager_cname(
            "0a1b2c3d-4e5f.9.authorize.certificatemanager.goog."
        ));
        assert!(is_certificate_manager_cname(
            "0A1B.9.Authorize.CertificateManager.goog"
        ));
        assert!(!is_certificate_manager_cname(
            "_acme-challenge.acme-zone.example.com."
        ));
        assert!(!is_certificate_manager_cname(
            "authorize.certificatemanager.goog.evil.com."
        ));
    }

    #[test]
    fn challenge_names() {
        assert_eq!(
            challenge_name("*.app.example.com"),
            "_acme-challenge.app.example.com."
        );
        assert_eq!(
            challenge_name("example.com"),
            "_acme-challenge.example.com."
        );
    }
}
