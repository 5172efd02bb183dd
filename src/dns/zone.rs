//! Which managed zone holds a name: the public zone with the longest `dnsName`
//! suffix. A private zone of the same name (split horizon) is never chosen: the CA
//! resolves through the public one.

use crate::gcp::dns::ManagedZone;

/// Why no zone could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error(
        "no public Cloud DNS zone of project {project} holds {name}{}",
        if *.private_only { " (only a private zone matches; challenges must go to the public zone the CA resolves)" } else { "" }
    )]
    NoZone {
        name: String,
        project: String,
        private_only: bool,
    },
    #[error(
        "zone {zone} ({dns_name}) does not hold {name}: set certificates[].zone to the zone that does, or remove it to discover the zone"
    )]
    NotInZone {
        zone: String,
        dns_name: String,
        name: String,
    },
    #[error("zone {zone} is private: challenges must be written in a public zone")]
    Private { zone: String },
}

/// Whether `fqdn` (with the trailing dot) is `zone_dns` or below it.
pub fn in_zone(fqdn: &str, zone_dns: &str) -> bool {
    let f = fqdn.to_ascii_lowercase();
    let z = zone_dns.to_ascii_lowercase();
    f == z || f.ends_with(&format!(".{z}")) || z == "."
}

/// The public zone with the longest `dnsName` holding `fqdn`.
pub fn select<'a>(
    zones: &'a [ManagedZone],
    fqdn: &str,
    project: &str,
) -> Result<&'a ManagedZone, ZoneError> {
    let best = zones
        .iter()
        .filter(|z| z.is_public() && in_zone(fqdn, &z.dns_name))
        .max_by_key(|z| z.dns_name.len());
    best.ok_or_else(|| ZoneError::NoZone {
        name: fqdn.to_string(),
        project: project.to_string(),
        private_only: zones
            .iter()
            .any(|z| !z.is_public() && in_zone(fqdn, &z.dns_name)),
    })
}

/// Checks a configured zone against the name it must hold.
pub fn check_explicit(zone: &ManagedZone, fqdn: &str) -> Result<(), ZoneError> {
    if !zone.is_public() {
        return Err(ZoneError::Private {
            zone: zone.name.clone(),
        });
    }
    if !in_zone(fqdn, &zone.dns_name) {
        return Err(ZoneError::NotInZone {
            zone: zone.name.clone(),
            dns_name: zone.dns_name.clone(),
            name: fqdn.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(name: &str, dns: &str, private: bool) -> ManagedZone {
        ManagedZone {
            name: name.into(),
            dns_name: dns.into(),
            visibility: Some(if private { "private" } else { "public" }.into()),
            ..Default::default()
        }
    }

    #[test]
    fn longest_public_suffix_wins() {
        let zones = vec![
            z("example-com", "example.com.", false),
            z("app-example-com", "app.example.com.", false),
            z("app-private", "app.example.com.", true),
            z("notexample", "notexample.com.", false),
        ];
        let pick = |n| select(&zones, n, "p").map(|z| z.name.clone());
        assert_eq!(
            pick("_acme-challenge.app.example.com.").unwrap(),
            "app-example-com"
        );
        assert_eq!(
            pick("_acme-challenge.www.example.com.").unwrap(),
            "example-com"
        );
        assert_eq!(pick("example.com.").unwrap(), "example-com");
        // A suffix match must fall on a label boundary.
        assert_eq!(
            pick("_acme-challenge.xexample.com.")
                .unwrap_err()
                .to_string(),
            "no public Cloud DNS zone of project p holds _acme-challenge.xexample.com."
        );
    }

    #[test]
    fn private_zone_is_never_chosen() {
        let zones = vec![z("internal", "corp.example.", true)];
        let e = select(&zones, "_acme-challenge.app.corp.example.", "p").unwrap_err();
        assert!(matches!(
            e,
            ZoneError::NoZone {
                private_only: true,
                ..
            }
        ));
        assert!(e.to_string().contains("only a private zone matches"));
    }

    #[test]
    fn explicit_zone_is_checked() {
        check_explicit(
            &z("a", "example.com.", false),
            "_acme-challenge.example.com.",
        )
        .unwrap();
        assert!(matches!(
            check_explicit(
                &z("a", "example.com.", true),
                "_acme-challenge.example.com."
            ),
            Err(ZoneError::Private { .. })
        ));
        assert!(matches!(
            check_explicit(&z("a", "other.com.", false), "_acme-challenge.example.com."),
            Err(ZoneError::NotInZone { .. })
        ));
    }
}
