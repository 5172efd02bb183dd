//! Which hosted zone holds a name: the public zone with the longest DNS-name
//! suffix. A private zone of the same name (split horizon) is never chosen: the CA
//! resolves through the public one. Provider-neutral: a provider's zone type
//! implements [`HostedZone`].

/// What zone selection needs to know of a provider's zone.
pub trait HostedZone {
    /// The provider's identifier of the zone (Cloud DNS: the managed zone name).
    fn zone_name(&self) -> &str;
    /// The zone's apex, absolute with the trailing dot: `example.com.`
    fn apex(&self) -> &str;
    /// Whether the public internet (and so the CA) resolves through this zone.
    fn is_public_zone(&self) -> bool;
}

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
pub fn select<'a, Z: HostedZone>(
    zones: &'a [Z],
    fqdn: &str,
    project: &str,
) -> Result<&'a Z, ZoneError> {
    let best = zones
        .iter()
        .filter(|z| z.is_public_zone() && in_zone(fqdn, z.apex()))
        .max_by_key(|z| z.apex().len());
    best.ok_or_else(|| ZoneError::NoZone {
        name: fqdn.to_string(),
        project: project.to_string(),
        private_only: zones
            .iter()
            .any(|z| !z.is_public_zone() && in_zone(fqdn, z.apex())),
    })
}

/// Checks a configured zone against the name it must hold.
pub fn check_explicit<Z: HostedZone>(zone: &Z, fqdn: &str) -> Result<(), ZoneError> {
    if !zone.is_public_zone() {
        return Err(ZoneError::Private {
            zone: zone.zone_name().to_string(),
        });
    }
    if !in_zone(fqdn, zone.apex()) {
        return Err(ZoneError::NotInZone {
            zone: zone.zone_name().to_string(),
            dns_name: zone.apex().to_string(),
            name: fqdn.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The selection over Cloud DNS's own zone type is tested in `cloud_dns`.
    struct Z(&'static str, &'static str, bool);

    impl HostedZone for Z {
        fn zone_name(&self) -> &str {
            self.0
        }
        fn apex(&self) -> &str {
            self.1
        }
        fn is_public_zone(&self) -> bool {
            self.2
        }
    }

    #[test]
    fn membership_falls_on_label_boundaries() {
        assert!(in_zone("_acme-challenge.Example.com.", "example.COM."));
        assert!(in_zone("example.com.", "example.com."));
        assert!(!in_zone("_acme-challenge.xexample.com.", "example.com."));
        assert!(in_zone("anything.", "."));
    }

    #[test]
    fn any_zone_type_selects_the_longest_public_suffix() {
        let zones = [
            Z("outer", "example.com.", true),
            Z("inner-private", "app.example.com.", false),
            Z("inner", "app.example.com.", true),
        ];
        let pick = select(&zones, "_acme-challenge.app.example.com.", "p");
        assert_eq!(pick.map(|z| z.0), Ok("inner"));
        assert_eq!(
            check_explicit(&zones[1], "app.example.com."),
            Err(ZoneError::Private {
                zone: "inner-private".into()
            })
        );
    }
}
