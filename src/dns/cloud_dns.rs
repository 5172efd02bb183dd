//! The Cloud DNS provider: the one place that speaks Cloud DNS's wire types
//! (`gcp::dns`). It finds the managed zone of each challenge name (following a
//! CNAME delegation into another managed zone), writes all TXT values of one zone
//! in one atomic change that deletes the set as read and adds the merged one (so a
//! concurrent writer makes it fail with 409/412 instead of being overwritten), and
//! names the zone's name servers for the propagation check.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::future::join_all;
use rand::RngExt;
use tokio::sync::{Mutex, OnceCell};

use super::txt::{self, Edit};
use super::zone::{self, HostedZone};
use super::{DnsError, DnsProvider, Placement, TxtRecord, fqdn};
use crate::config::DnsConfig;
use crate::gcp::dns::{Change, ManagedZone, ResourceRecordSet};
use crate::gcp::{Gcp, GcpError};

const MAX_CNAME_HOPS: usize = 8;
const MAX_CHANGE_ATTEMPTS: u32 = 8;

/// Where a challenge name's TXT values are written.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub zone: ManagedZone,
    /// Absolute, with the trailing dot; differs from the challenge name when a
    /// CNAME delegates it.
    pub name: String,
}

impl HostedZone for ManagedZone {
    fn zone_name(&self) -> &str {
        &self.name
    }
    fn apex(&self) -> &str {
        &self.dns_name
    }
    fn is_public_zone(&self) -> bool {
        ManagedZone::is_public(self)
    }
}

fn gcp(what: impl Into<String>) -> impl FnOnce(GcpError) -> DnsError {
    let what = what.into();
    move |source| DnsError::Gcp { what, source }
}

/// Adds to `change` what `edit` needs given the `current` TXT set at its name:
/// the set as read goes into the deletions (Cloud DNS refuses the change with 412
/// when the set differs by then) and the merged set into the additions, keeping
/// the TTL of a set another writer made. Returns false when nothing needs changing.
pub fn plan_change(
    change: &mut Change,
    current: Option<&ResourceRecordSet>,
    edit: &Edit,
    ttl: u32,
) -> bool {
    let rrdatas = current.map(|r| r.rrdatas.as_slice()).unwrap_or_default();
    let Some(merged) = txt::merge(rrdatas, edit) else {
        return false;
    };
    if let Some(cur) = current {
        change.deletions.push(cur.clone());
    }
    if !merged.is_empty() {
        change.additions.push(ResourceRecordSet {
            name: edit.name.clone(),
            rtype: "TXT".into(),
            ttl: Some(current.and_then(|c| c.ttl).unwrap_or(ttl)),
            rrdatas: merged,
            other: Default::default(),
        });
    }
    true
}

/// Cloud DNS as a [`DnsProvider`], for one certificate's names.
pub struct CloudDnsProvider {
    gcp: Gcp,
    ttl: u32,
    zone_override: Option<String>,
    zones: OnceCell<Vec<ManagedZone>>,
    targets: Mutex<HashMap<String, Target>>,
}

impl CloudDnsProvider {
    /// `zone`: the configured managed zone (skips discovery), if any.
    pub fn new(gcp: Gcp, config: &DnsConfig, zone: Option<String>) -> CloudDnsProvider {
        CloudDnsProvider {
            gcp,
            ttl: config.ttl,
            zone_override: zone,
            zones: OnceCell::new(),
            targets: Mutex::new(HashMap::new()),
        }
    }

    async fn all_zones(&self) -> Result<&Vec<ManagedZone>, DnsError> {
        self.zones
            .get_or_try_init(|| async {
                self.gcp.list_zones(None).await.map_err(gcp(format!(
                    "listing the Cloud DNS zones of project {}",
                    self.gcp.project
                )))
            })
            .await
    }

    async fn zone_for(&self, fqdn: &str, allow_override: bool) -> Result<ManagedZone, DnsError> {
        if allow_override && let Some(z) = &self.zone_override {
            let zone = self
                .gcp
                .get_zone(z)
                .await
                .map_err(gcp(format!("reading the configured zone {z}")))?;
            zone::check_explicit(&zone, fqdn)?;
            return Ok(zone);
        }
        let zones = self.all_zones().await?;
        Ok(zone::select(zones, fqdn, &self.gcp.project)?.clone())
    }

    /// The zone and name where `record_name`'s TXT values go, following CNAMEs.
    pub async fn target(&self, record_name: &str) -> Result<Target, DnsError> {
        let start = fqdn(record_name);
        if let Some(t) = self.targets.lock().await.get(&start) {
            return Ok(t.clone());
        }
        let mut name = start.clone();
        let mut zone = self.zone_for(&name, true).await?;
        let mut seen = vec![name.clone()];
        for _ in 0..MAX_CNAME_HOPS {
            let cnames = self
                .gcp
                .list_rrsets(&zone.name, &name, "CNAME")
                .await
                .map_err(gcp(format!("reading {name} CNAME in zone {}", zone.name)))?;
            let Some(target) = cnames
                .first()
                .and_then(|c| c.rrdatas.first())
                .map(|t| fqdn(t))
            else {
                let t = Target { zone, name };
                self.targets.lock().await.insert(start, t.clone());
                return Ok(t);
            };
            if seen.contains(&target) {
                return Err(DnsError::Cname {
                    name,
                    target,
                    why: "loops back to an earlier name".into(),
                });
            }
            tracing::debug!(from = %name, to = %target, "following CNAME delegation of the challenge");
            zone = self
                .zone_for(&target, false)
                .await
                .map_err(|e| DnsError::Cname {
                    name: name.clone(),
                    target: target.clone(),
                    why: format!("no writable zone holds: {e}"),
                })?;
            seen.push(target.clone());
            name = target;
        }
        Err(DnsError::Cname {
            name: start,
            target: name,
            why: format!("is more than {MAX_CNAME_HOPS} CNAMEs away"),
        })
    }

    /// Applies the edits of every zone concurrently (zones are independent);
    /// returns how many changes were made.
    async fn write(&self, records: &[TxtRecord], add: bool) -> Result<u32, DnsError> {
        let by_zone = self.group(records, add).await?;
        let results = join_all(
            by_zone
                .values()
                .map(|(zone, edits)| self.apply(zone, edits)),
        )
        .await;
        let mut changes = 0;
        for r in results {
            if r? {
                changes += 1;
            }
        }
        Ok(changes)
    }

    async fn group(
        &self,
        records: &[TxtRecord],
        add: bool,
    ) -> Result<BTreeMap<String, (ManagedZone, Vec<Edit>)>, DnsError> {
        let mut by_zone: BTreeMap<String, (ManagedZone, Vec<Edit>)> = BTreeMap::new();
        for r in records {
            let t = self.target(&r.name).await?;
            let entry = by_zone
                .entry(t.zone.name.clone())
                .or_insert_with(|| (t.zone.clone(), Vec::new()));
            let edit = match entry.1.iter_mut().find(|e| e.name == t.name) {
                Some(e) => e,
                None => {
                    entry.1.push(Edit {
                        name: t.name.clone(),
                        ..Default::default()
                    });
                    let last = entry.1.len() - 1;
                    &mut entry.1[last]
                }
            };
            let list = if add { &mut edit.add } else { &mut edit.remove };
            if !list.contains(&r.value) {
                list.push(r.value.clone());
            }
        }
        Ok(by_zone)
    }

    /// One atomic change for all edits of a zone; on 409/412/404 (another writer
    /// got there first) re-read and try again. Returns whether a change was made.
    async fn apply(&self, zone: &ManagedZone, edits: &[Edit]) -> Result<bool, DnsError> {
        for attempt in 1..=MAX_CHANGE_ATTEMPTS {
            let mut change = Change::default();
            let currents = join_all(
                edits
                    .iter()
                    .map(|e| self.gcp.list_rrsets(&zone.name, &e.name, "TXT")),
            )
            .await;
            for (e, current) in edits.iter().zip(currents) {
                let current = current
                    .map_err(gcp(format!("reading {} TXT in zone {}", e.name, zone.name)))?;
                plan_change(&mut change, current.first(), e, self.ttl);
            }
            if change.additions.is_empty() && change.deletions.is_empty() {
                return Ok(false);
            }
            match self.gcp.create_change(&zone.name, &change).await {
                Ok(c) => {
                    // Not polled to `done`: an accepted change is part of the
                    // zone ("the current state of the ManagedZone is the sum
                    // effect of applying all Change elements in the Changes
                    // collection in sequence", Cloud DNS API, Change), and `done`
                    // says only that the update was sent to the name servers
                    // ("the servers might not be updated yet", same page), which
                    // the solver asks directly anyway. Waiting cost a poll every
                    // ~0.4 s for seconds, and after a removal nobody waits.
                    tracing::debug!(zone = %zone.name, change = ?c.id, status = ?c.status, additions = change.additions.len(), deletions = change.deletions.len(), "Cloud DNS change accepted");
                    return Ok(true);
                }
                Err(e)
                    if e.is(409, "alreadyExists")
                        || e.is(412, "conditionNotMet")
                        || e.is(404, "notFound")
                        || e.is_retryable() =>
                {
                    // Someone changed the set between our read and our write (or
                    // the write's fate is unknown): read again and rebuild.
                    let delay = Duration::from_millis(
                        rand::rng().random_range(10..=50) * u64::from(attempt),
                    );
                    tracing::debug!(zone = %zone.name, attempt, error = %e, "TXT set changed under us; re-reading");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(gcp(format!("writing TXT records in zone {}", zone.name))(e)),
            }
        }
        Err(DnsError::Contended {
            zone: zone.name.clone(),
            attempts: MAX_CHANGE_ATTEMPTS,
        })
    }
}

impl DnsProvider for CloudDnsProvider {
    fn name(&self) -> &'static str {
        "Cloud DNS"
    }

    async fn present(&self, records: &[TxtRecord]) -> Result<u32, DnsError> {
        self.write(records, true).await
    }

    async fn cleanup(&self, records: &[TxtRecord]) -> Result<u32, DnsError> {
        self.write(records, false).await
    }

    async fn placement(&self, record_name: &str) -> Result<Placement, DnsError> {
        let t = self.target(record_name).await?;
        Ok(Placement {
            name: t.name,
            zone: t.zone.name,
            servers: t.zone.name_servers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::zone::ZoneError;

    fn set(name: &str, ttl: u32, values: &[&str]) -> ResourceRecordSet {
        ResourceRecordSet {
            name: name.into(),
            rtype: "TXT".into(),
            ttl: Some(ttl),
            rrdatas: values.iter().map(|v| txt::quote(v)).collect(),
            other: Default::default(),
        }
    }

    #[test]
    fn add_to_empty_name_is_one_addition() {
        let mut c = Change::default();
        let e = Edit {
            name: "_acme-challenge.example.com.".into(),
            add: vec!["v1".into(), "v2".into()],
            remove: vec![],
        };
        assert!(plan_change(&mut c, None, &e, 60));
        assert!(c.deletions.is_empty());
        assert_eq!(c.additions.len(), 1);
        assert_eq!(c.additions[0].rrdatas, vec!["\"v1\"", "\"v2\""]);
        assert_eq!(c.additions[0].ttl, Some(60));
    }

    #[test]
    fn merge_keeps_other_writers_values_and_ttl() {
        let cur = set("_acme-challenge.example.com.", 300, &["theirs"]);
        let mut c = Change::default();
        let e = Edit {
            name: cur.name.clone(),
            add: vec!["ours".into()],
            remove: vec![],
        };
        assert!(plan_change(&mut c, Some(&cur), &e, 60));
        assert_eq!(c.deletions, vec![cur.clone()]);
        assert_eq!(c.additions[0].rrdatas, vec!["\"theirs\"", "\"ours\""]);
        assert_eq!(c.additions[0].ttl, Some(300));
    }

    #[test]
    fn cleanup_removes_only_ours_and_deletes_an_emptied_set() {
        let cur = set("n.", 60, &["theirs", "ours"]);
        let mut c = Change::default();
        let e = Edit {
            name: "n.".into(),
            add: vec![],
            remove: vec!["ours".into()],
        };
        assert!(plan_change(&mut c, Some(&cur), &e, 60));
        assert_eq!(c.additions[0].rrdatas, vec!["\"theirs\""]);

        let cur = set("n.", 60, &["ours"]);
        let mut c = Change::default();
        assert!(plan_change(&mut c, Some(&cur), &e, 60));
        assert_eq!(c.deletions.len(), 1);
        assert!(c.additions.is_empty());
    }

    #[test]
    fn nothing_to_do_is_no_change() {
        let cur = set("n.", 60, &["ours"]);
        let mut c = Change::default();
        let add = Edit {
            name: "n.".into(),
            add: vec!["ours".into()],
            remove: vec![],
        };
        assert!(!plan_change(&mut c, Some(&cur), &add, 60));
        let rm = Edit {
            name: "n.".into(),
            add: vec![],
            remove: vec!["gone".into()],
        };
        assert!(!plan_change(&mut c, None, &rm, 60));
        assert_eq!(c, Change::default());
    }

    #[test]
    fn values_match_however_they_were_quoted() {
        let mut cur = set("n.", 60, &[]);
        cur.rrdatas = vec!["ours".into()]; // unquoted by another tool
        let mut c = Change::default();
        let add = Edit {
            name: "n.".into(),
            add: vec!["ours".into()],
            remove: vec![],
        };
        assert!(!plan_change(&mut c, Some(&cur), &add, 60));
    }

    // Zone selection (`zone`) over Cloud DNS's managed zones.
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
        let pick = |n| zone::select(&zones, n, "p").map(|z| z.name.clone());
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
        let e = zone::select(&zones, "_acme-challenge.app.corp.example.", "p").unwrap_err();
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
        zone::check_explicit(
            &z("a", "example.com.", false),
            "_acme-challenge.example.com.",
        )
        .unwrap();
        assert!(matches!(
            zone::check_explicit(
                &z("a", "example.com.", true),
                "_acme-challenge.example.com."
            ),
            Err(ZoneError::Private { .. })
        ));
        assert!(matches!(
            zone::check_explicit(&z("a", "other.com.", false), "_acme-challenge.example.com."),
            Err(ZoneError::NotInZone { .. })
        ));
    }
}
