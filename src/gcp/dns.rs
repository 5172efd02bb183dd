//! Cloud DNS v1: managed zones, record sets, changes.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Api, Call, Gcp, GcpError, enc};

/// A managed zone.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedZone {
    pub name: String,
    /// With the trailing dot: `example.com.`
    pub dns_name: String,
    #[serde(default)]
    pub id: Option<String>,
    /// `public` or `private`; absent means public.
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub name_servers: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

impl ManagedZone {
    pub fn is_public(&self) -> bool {
        self.visibility.as_deref().is_none_or(|v| v == "public")
    }
}

/// A record set. Fields we do not model are kept, so a deletion sends back exactly
/// what Google returned (a deletion must match it exactly, or Google answers 412).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ResourceRecordSet {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub rrdatas: Vec<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A change: additions and deletions applied atomically.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additions: Vec<ResourceRecordSet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletions: Vec<ResourceRecordSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZoneList {
    #[serde(default)]
    managed_zones: Vec<ManagedZone>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RrsetList {
    #[serde(default)]
    rrsets: Vec<ResourceRecordSet>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// What Cloud DNS checks for a change: `dns.changes.create`, and per record set
/// `dns.resourceRecordSets.update` when the change deletes and adds the same
/// (name, type), `.create` for another addition, `.delete` for another deletion.
/// Cloud DNS's 403 is a bare "Forbidden", so errors name these instead.
pub fn change_permissions(change: &Change) -> Vec<&'static str> {
    let key = |r: &ResourceRecordSet| (r.name.to_ascii_lowercase(), r.rtype.clone());
    let adds: Vec<_> = change.additions.iter().map(key).collect();
    let dels: Vec<_> = change.deletions.iter().map(key).collect();
    let mut out = vec!["dns.changes.create"];
    let mut push = |p: &'static str| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for a in &adds {
        push(if dels.contains(a) {
            "dns.resourceRecordSets.update"
        } else {
            "dns.resourceRecordSets.create"
        });
    }
    if dels.iter().any(|d| !adds.contains(d)) {
        push("dns.resourceRecordSets.delete");
    }
    out
}

impl Gcp {
    /// Zones whose `dnsName` is exactly `dns_name` (with the trailing dot), or all
    /// zones when `None`.
    pub async fn list_zones(&self, dns_name: Option<&str>) -> Result<Vec<ManagedZone>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url(
                Api::Dns,
                &format!("projects/{}/managedZones?maxResults=1000", self.project),
            );
            if let Some(d) = dns_name {
                url.push_str(&format!("&dnsName={}", enc(d)));
            }
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", enc(t)));
            }
            let page: ZoneList = self
                .call::<(), _>(
                    Call::new(Api::Dns, "managedZones.list"),
                    Method::GET,
                    &url,
                    None,
                )
                .await
                .map_err(|e| e.needing(["dns.managedZones.list"]))?;
            out.extend(page.managed_zones);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// One zone by name.
    pub async fn get_zone(&self, zone: &str) -> Result<ManagedZone, GcpError> {
        let url = self.url(
            Api::Dns,
            &format!("projects/{}/managedZones/{}", self.project, enc(zone)),
        );
        self.call::<(), _>(
            Call::new(Api::Dns, "managedZones.get"),
            Method::GET,
            &url,
            None,
        )
        .await
        .map_err(|e| e.needing(["dns.managedZones.get"]))
    }

    /// Record sets of a zone named `name` (absolute, with the trailing dot), of `rtype`.
    pub async fn list_rrsets(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
    ) -> Result<Vec<ResourceRecordSet>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url(
                Api::Dns,
                &format!(
                    "projects/{}/managedZones/{}/rrsets?name={}&type={}",
                    self.project,
                    enc(zone),
                    enc(name),
                    enc(rtype)
                ),
            );
            if let Some(t) = &token {
                url.push_str(&format!("&pageToken={}", enc(t)));
            }
            let page: RrsetList = self
                .call::<(), _>(
                    Call::new(Api::Dns, "resourceRecordSets.list"),
                    Method::GET,
                    &url,
                    None,
                )
                .await
                .map_err(|e| e.needing(["dns.resourceRecordSets.list"]))?;
            out.extend(page.rrsets);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Submits a change. Not retried here: a change that may have been applied must
    /// be reconciled by re-reading (the caller does, on 409/412).
    pub async fn create_change(&self, zone: &str, change: &Change) -> Result<Change, GcpError> {
        let url = self.url(
            Api::Dns,
            &format!(
                "projects/{}/managedZones/{}/changes",
                self.project,
                enc(zone)
            ),
        );
        let mut call = Call::new(Api::Dns, "changes.create");
        call.retry = false;
        self.call(call, Method::POST, &url, Some(change))
            .await
            .map_err(|e| e.needing(change_permissions(change)))
    }

    /// One change by id.
    pub async fn get_change(&self, zone: &str, id: &str) -> Result<Change, GcpError> {
        let url = self.url(
            Api::Dns,
            &format!(
                "projects/{}/managedZones/{}/changes/{}",
                self.project,
                enc(zone),
                enc(id)
            ),
        );
        self.call::<(), _>(Call::new(Api::Dns, "changes.get"), Method::GET, &url, None)
            .await
            .map_err(|e| e.needing(["dns.changes.get"]))
    }

    /// Polls a change until `done`: quickly at first, then backing off.
    pub async fn wait_change(
        &self,
        zone: &str,
        change: Change,
        timeout: Duration,
    ) -> Result<Change, GcpError> {
        let started = Instant::now();
        let mut change = change;
        let mut delay = Duration::from_millis(20);
        let _step = (change.status.as_deref() != Some("done")).then(|| {
            crate::progress::Step::start(format!(
                "waiting for Cloud DNS to apply change {} in zone {zone}",
                change.id.as_deref().unwrap_or("?")
            ))
        });
        while change.status.as_deref() != Some("done") {
            let Some(id) = change.id.clone() else {
                return Err(GcpError::Decode {
                    method: "POST".into(),
                    url: format!("managedZones/{zone}/changes"),
                    status: 200,
                    message: "the change has no id".into(),
                });
            };
            if started.elapsed() > timeout {
                return Err(GcpError::Timeout {
                    what: format!("Cloud DNS change {id} in zone {zone}"),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            change = self.get_change(zone, &id).await?;
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrset_keeps_unknown_fields_for_exact_deletions() {
        let text = r#"{"name":"_acme-challenge.example.com.","type":"TXT","ttl":60,"rrdatas":["\"a\""],"signatureRrdatas":[],"kind":"dns#resourceRecordSet"}"#;
        let r: ResourceRecordSet = serde_json::from_str(text).unwrap();
        assert_eq!(r.rtype, "TXT");
        let back: Value = serde_json::to_value(&r).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn unknown_numbers_survive_the_round_trip() {
        // Found by fuzzing (gcp_json): without serde_json's float_roundtrip, a number
        // in an unmodelled field (here 4.44e38) came back as a different float, so a
        // deletion would not have matched the set Google returned.
        let text = r#"{"name":"_acme-challenge.example.com.","type":"TXT","ttl":60,"rrdatas":["\"a\""],"routingPolicy":{"wrr":{"items":[{"weight":444444444444444444444444444444444444444},{"weight":0.30000000000000004},{"weight":1.7976931348623157e308}]}}}"#;
        let r: ResourceRecordSet = serde_json::from_str(text).unwrap();
        let again: ResourceRecordSet =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn a_change_needs_create_update_or_delete_by_what_it_does() {
        let rr = |name: &str, t: &str| ResourceRecordSet {
            name: name.into(),
            rtype: t.into(),
            ..Default::default()
        };
        let c = Change {
            additions: vec![rr("a.", "TXT")],
            ..Default::default()
        };
        assert_eq!(
            change_permissions(&c),
            ["dns.changes.create", "dns.resourceRecordSets.create"]
        );
        let c = Change {
            additions: vec![rr("A.", "TXT")],
            deletions: vec![rr("a.", "TXT"), rr("b.", "A")],
            ..Default::default()
        };
        assert_eq!(
            change_permissions(&c),
            [
                "dns.changes.create",
                "dns.resourceRecordSets.update",
                "dns.resourceRecordSets.delete"
            ]
        );
    }

    #[test]
    fn zone_visibility() {
        let z: ManagedZone =
            serde_json::from_str(r#"{"name":"z","dnsName":"example.com."}"#).unwrap();
        assert!(z.is_public());
        let z: ManagedZone =
            serde_json::from_str(r#"{"name":"z","dnsName":"example.com.","visibility":"private"}"#)
                .unwrap();
        assert!(!z.is_public());
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            enc("_acme-challenge.example.com."),
            "_acme-challenge.example.com."
        );
        assert_eq!(enc("a b&c"), "a%20b%26c");
    }
}
