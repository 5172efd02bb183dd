//! IAM enforcement: which permission(s) Google checks for each method the emulator
//! serves, which ones the caller holds in each project, and a record of every
//! permission that requests needed, so a test can prove a permission list minimal.
//!
//! The table ([`TABLE`]) gives each discovery method id its own permission, as
//! Google's API reference ("IAM Permissions" of each method) and the Compute
//! Engine IAM permissions reference document it. On top of it, [`referenced`]
//! adds the permissions Google checks on the *other* resources a request names:
//! Compute's `.use` on a URL map a proxy points at, `sslCertificates.get` on the
//! certificates it serves, `.use` on the proxy and address of a forwarding rule,
//! on the NEG behind a backend service, on the backend service behind a URL map;
//! Cloud DNS's `resourceRecordSets.create/update/delete` on the record sets a
//! change touches.
//!
//! A request the caller may not make is answered with the 403 of its API:
//! - Compute: `forbidden`, "Required 'compute.sslCertificates.create' permission
//!   for 'projects/p/global/sslCertificates/x'";
//! - Cloud DNS: `forbidden`, "Forbidden" (Cloud DNS does not say which permission);
//! - Cloud Run, IAP, Resource Manager, Service Usage: `PERMISSION_DENIED` with an
//!   `IAM_PERMISSION_DENIED` ErrorInfo naming the permission and the resource.
//!
//! Admin routes:
//! - `POST /emulator/iam/granted` `{"permissions": [...] | null, "project"?: "p"}`:
//!   the caller holds exactly these permissions (an allow-list); `null` (or
//!   `DELETE /emulator/iam/granted?project=p`) lifts it: everything is granted, the
//!   default.
//! - `POST /emulator/iam/denied` `{"permissions": [...], "project"?: "p"}`: these
//!   permissions are missing whatever the allow-list says; an empty list removes
//!   the deny-list.
//! - `GET /emulator/iam/checked?project=p` -> the sorted permissions requests
//!   needed since the last reset (`&detail=true`: every check, in order, with its
//!   method, resource and verdict); `DELETE` resets it.
//!
//! Service accounts are not modelled: `iam.serviceAccounts.actAs`, which Cloud Run
//! checks on a service's runtime service account when the service is created or
//! updated, is never asked for.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::{Project, Shared};

/// The detail log keeps at most this many checks (the set keeps every permission).
const MAX_DETAIL: usize = 20_000;

/// Every method the emulator serves, by discovery id, with the permission(s)
/// Google checks on the resource the request names. An empty list: the method
/// needs no permission (`testIamPermissions` answers for any caller; Google
/// documents that triggering a service agent's creation needs none).
#[rustfmt::skip]
pub const TABLE: &[(&str, &[&str])] = &[
    // Compute Engine.
    ("compute.projects.get",                               &["compute.projects.get"]),
    ("compute.sslCertificates.insert",                     &["compute.sslCertificates.create"]),
    ("compute.sslCertificates.get",                        &["compute.sslCertificates.get"]),
    ("compute.sslCertificates.list",                       &["compute.sslCertificates.list"]),
    ("compute.sslCertificates.delete",                     &["compute.sslCertificates.delete"]),
    ("compute.targetHttpsProxies.insert",                  &["compute.targetHttpsProxies.create"]),
    ("compute.targetHttpsProxies.get",                     &["compute.targetHttpsProxies.get"]),
    ("compute.targetHttpsProxies.list",                    &["compute.targetHttpsProxies.list"]),
    ("compute.targetHttpsProxies.delete",                  &["compute.targetHttpsProxies.delete"]),
    // Uncertain: Google's reference pages name `update` for the PATCH of proxies
    // (there is no `compute.targetHttpsProxies.patch` permission).
    ("compute.targetHttpsProxies.patch",                   &["compute.targetHttpsProxies.update"]),
    ("compute.targetHttpsProxies.setSslCertificates",      &["compute.targetHttpsProxies.setSslCertificates"]),
    ("compute.targetHttpsProxies.setUrlMap",               &["compute.targetHttpsProxies.setUrlMap"]),
    // Plus `certificatemanager.certmaps.use` on the map (see `referenced`).
    ("compute.targetHttpsProxies.setCertificateMap",       &["compute.targetHttpsProxies.setCertificateMap"]),
    ("compute.targetHttpProxies.insert",                   &["compute.targetHttpProxies.create"]),
    ("compute.targetHttpProxies.get",                      &["compute.targetHttpProxies.get"]),
    ("compute.targetHttpProxies.list",                     &["compute.targetHttpProxies.list"]),
    ("compute.targetHttpProxies.delete",                   &["compute.targetHttpProxies.delete"]),
    ("compute.targetHttpProxies.patch",                    &["compute.targetHttpProxies.update"]),
    ("compute.targetHttpProxies.setUrlMap",                &["compute.targetHttpProxies.setUrlMap"]),
    ("compute.urlMaps.insert",                             &["compute.urlMaps.create"]),
    ("compute.urlMaps.get",                                &["compute.urlMaps.get"]),
    ("compute.urlMaps.list",                               &["compute.urlMaps.list"]),
    ("compute.urlMaps.delete",                             &["compute.urlMaps.delete"]),
    ("compute.urlMaps.patch",                              &["compute.urlMaps.update"]),
    ("compute.urlMaps.update",                             &["compute.urlMaps.update"]),
    ("compute.backendServices.insert",                     &["compute.backendServices.create"]),
    ("compute.backendServices.get",                        &["compute.backendServices.get"]),
    ("compute.backendServices.list",                       &["compute.backendServices.list"]),
    ("compute.backendServices.delete",                     &["compute.backendServices.delete"]),
    ("compute.backendServices.patch",                      &["compute.backendServices.update"]),
    ("compute.backendServices.update",                     &["compute.backendServices.update"]),
    ("compute.globalAddresses.insert",                     &["compute.globalAddresses.create"]),
    ("compute.globalAddresses.get",                        &["compute.globalAddresses.get"]),
    ("compute.globalAddresses.list",                       &["compute.globalAddresses.list"]),
    ("compute.globalAddresses.delete",                     &["compute.globalAddresses.delete"]),
    ("compute.globalForwardingRules.insert",               &["compute.globalForwardingRules.create"]),
    ("compute.globalForwardingRules.get",                  &["compute.globalForwardingRules.get"]),
    ("compute.globalForwardingRules.list",                 &["compute.globalForwardingRules.list"]),
    ("compute.globalForwardingRules.delete",               &["compute.globalForwardingRules.delete"]),
    // `aggregatedList` checks the collection's `list` permission.
    ("compute.sslCertificates.aggregatedList",            &["compute.sslCertificates.list"]),
    ("compute.targetHttpsProxies.aggregatedList",         &["compute.targetHttpsProxies.list"]),
    ("compute.targetHttpProxies.aggregatedList",          &["compute.targetHttpProxies.list"]),
    ("compute.urlMaps.aggregatedList",                    &["compute.urlMaps.list"]),
    ("compute.backendServices.aggregatedList",            &["compute.backendServices.list"]),
    ("compute.addresses.aggregatedList",                  &["compute.addresses.list"]),
    ("compute.forwardingRules.aggregatedList",            &["compute.forwardingRules.list"]),
    ("compute.networkEndpointGroups.aggregatedList",      &["compute.networkEndpointGroups.list"]),
    ("compute.globalOperations.aggregatedList",           &["compute.globalOperations.list"]),
    ("compute.regionNetworkEndpointGroups.insert",         &["compute.regionNetworkEndpointGroups.create"]),
    ("compute.regionNetworkEndpointGroups.get",            &["compute.regionNetworkEndpointGroups.get"]),
    ("compute.regionNetworkEndpointGroups.list",           &["compute.regionNetworkEndpointGroups.list"]),
    ("compute.regionNetworkEndpointGroups.delete",         &["compute.regionNetworkEndpointGroups.delete"]),
    // `wait` is a read of the operation.
    ("compute.globalOperations.get",                       &["compute.globalOperations.get"]),
    ("compute.globalOperations.wait",                      &["compute.globalOperations.get"]),
    ("compute.globalOperations.list",                      &["compute.globalOperations.list"]),
    ("compute.globalOperations.delete",                    &["compute.globalOperations.delete"]),
    ("compute.regionOperations.get",                       &["compute.regionOperations.get"]),
    ("compute.regionOperations.wait",                      &["compute.regionOperations.get"]),
    ("compute.regionOperations.list",                      &["compute.regionOperations.list"]),
    ("compute.regionOperations.delete",                    &["compute.regionOperations.delete"]),
    // Cloud DNS.
    ("dns.projects.get",                                   &["dns.projects.get"]),
    ("dns.managedZones.create",                            &["dns.managedZones.create"]),
    ("dns.managedZones.get",                               &["dns.managedZones.get"]),
    ("dns.managedZones.list",                              &["dns.managedZones.list"]),
    ("dns.managedZones.delete",                            &["dns.managedZones.delete"]),
    ("dns.managedZones.patch",                             &["dns.managedZones.update"]),
    ("dns.managedZones.update",                            &["dns.managedZones.update"]),
    ("dns.managedZoneOperations.get",                      &["dns.managedZoneOperations.get"]),
    ("dns.managedZoneOperations.list",                     &["dns.managedZoneOperations.list"]),
    // Plus `dns.resourceRecordSets.create/update/delete` by what the change does.
    ("dns.changes.create",                                 &["dns.changes.create"]),
    ("dns.changes.get",                                    &["dns.changes.get"]),
    ("dns.changes.list",                                   &["dns.changes.list"]),
    ("dns.resourceRecordSets.list",                        &["dns.resourceRecordSets.list"]),
    ("dns.resourceRecordSets.get",                         &["dns.resourceRecordSets.get"]),
    ("dns.resourceRecordSets.create",                      &["dns.resourceRecordSets.create"]),
    ("dns.resourceRecordSets.patch",                       &["dns.resourceRecordSets.update"]),
    ("dns.resourceRecordSets.delete",                      &["dns.resourceRecordSets.delete"]),
    // IAP: the emulator serves the policies of `iap_web/compute*/services/*`,
    // whose permissions are the `webServices` ones.
    ("iap.getIamPolicy",                                   &["iap.webServices.getIamPolicy"]),
    ("iap.setIamPolicy",                                   &["iap.webServices.setIamPolicy"]),
    ("iap.testIamPermissions",                             &[]),
    // Cloud Run Admin v2. Create and update also check `iam.serviceAccounts.actAs`
    // on the runtime service account, which the emulator does not model.
    ("run.projects.locations.services.create",             &["run.services.create"]),
    ("run.projects.locations.services.get",                &["run.services.get"]),
    ("run.projects.locations.services.list",               &["run.services.list"]),
    ("run.projects.locations.services.patch",              &["run.services.update"]),
    ("run.projects.locations.services.delete",             &["run.services.delete"]),
    ("run.projects.locations.services.getIamPolicy",       &["run.services.getIamPolicy"]),
    ("run.projects.locations.services.setIamPolicy",       &["run.services.setIamPolicy"]),
    ("run.projects.locations.services.testIamPermissions", &[]),
    // Cloud Run Admin v1: the v2 ids above also name v1's methods at the same
    // names; these are v1's own.
    ("run.projects.locations.services.replaceService",    &["run.services.update"]),
    ("run.namespaces.services.get",                        &["run.services.get"]),
    ("run.namespaces.services.list",                       &["run.services.list"]),
    ("run.namespaces.services.create",                     &["run.services.create"]),
    ("run.namespaces.services.replaceService",             &["run.services.update"]),
    ("run.namespaces.services.delete",                     &["run.services.delete"]),
    ("run.projects.locations.operations.get",              &["run.operations.get"]),
    ("run.projects.locations.operations.wait",             &["run.operations.get"]),
    ("run.projects.locations.operations.list",             &["run.operations.list"]),
    ("run.projects.locations.operations.delete",           &["run.operations.delete"]),
    // Service Usage (v1beta1 and v1 share these ids). "Triggering service agent creation
    // doesn't require any IAM permissions" (Google, "Create and grant roles to
    // service agents").
    ("serviceusage.services.generateServiceIdentity",      &[]),
    ("serviceusage.services.enable",                       &["serviceusage.services.enable"]),
    ("serviceusage.services.disable",                      &["serviceusage.services.disable"]),
    ("serviceusage.services.get",                          &["serviceusage.services.get"]),
    // Certificate Manager: Google's "Roles and permissions" page of Certificate
    // Manager (access-control), one permission per method; creating or
    // updating a map entry also needs `certificatemanager.certs.use` on each of
    // its certificates (see `referenced`).
    ("certificatemanager.projects.locations.certificates.create",  &["certificatemanager.certs.create"]),
    ("certificatemanager.projects.locations.certificates.get",     &["certificatemanager.certs.get"]),
    ("certificatemanager.projects.locations.certificates.list",    &["certificatemanager.certs.list"]),
    ("certificatemanager.projects.locations.certificates.patch",   &["certificatemanager.certs.update"]),
    ("certificatemanager.projects.locations.certificates.delete",  &["certificatemanager.certs.delete"]),
    ("certificatemanager.projects.locations.certificateMaps.create", &["certificatemanager.certmaps.create"]),
    ("certificatemanager.projects.locations.certificateMaps.get",  &["certificatemanager.certmaps.get"]),
    ("certificatemanager.projects.locations.certificateMaps.list", &["certificatemanager.certmaps.list"]),
    ("certificatemanager.projects.locations.certificateMaps.patch", &["certificatemanager.certmaps.update"]),
    ("certificatemanager.projects.locations.certificateMaps.delete", &["certificatemanager.certmaps.delete"]),
    ("certificatemanager.projects.locations.certificateMaps.certificateMapEntries.create", &["certificatemanager.certmapentries.create"]),
    ("certificatemanager.projects.locations.certificateMaps.certificateMapEntries.get",    &["certificatemanager.certmapentries.get"]),
    ("certificatemanager.projects.locations.certificateMaps.certificateMapEntries.list",   &["certificatemanager.certmapentries.list"]),
    ("certificatemanager.projects.locations.certificateMaps.certificateMapEntries.patch",  &["certificatemanager.certmapentries.update"]),
    ("certificatemanager.projects.locations.certificateMaps.certificateMapEntries.delete", &["certificatemanager.certmapentries.delete"]),
    // The Owner role's list names these; the page's method table has no row.
    ("certificatemanager.projects.locations.operations.get",       &["certificatemanager.operations.get"]),
    ("certificatemanager.projects.locations.operations.list",      &["certificatemanager.operations.list"]),
    ("certificatemanager.projects.locations.operations.delete",    &["certificatemanager.operations.delete"]),
    // Resource Manager v3.
    ("cloudresourcemanager.projects.get",                  &["resourcemanager.projects.get"]),
    ("cloudresourcemanager.projects.testIamPermissions",   &[]),
    // Cloud Storage (JSON API). An insert that replaces an object also needs
    // `storage.objects.delete`, which the storage module checks itself (the
    // object's name may be in the query, which this module does not see).
    ("storage.buckets.insert",                             &["storage.buckets.create"]),
    ("storage.buckets.get",                                &["storage.buckets.get"]),
    ("storage.buckets.list",                               &["storage.buckets.list"]),
    ("storage.buckets.getIamPolicy",                       &["storage.buckets.getIamPolicy"]),
    ("storage.buckets.setIamPolicy",                       &["storage.buckets.setIamPolicy"]),
    ("storage.buckets.testIamPermissions",                 &[]),
    ("storage.objects.insert",                             &["storage.objects.create"]),
    ("storage.objects.get",                                &["storage.objects.get"]),
    ("storage.objects.list",                               &["storage.objects.list"]),
    ("storage.objects.delete",                             &["storage.objects.delete"]),
    ("storage.objects.patch",                              &["storage.objects.update"]),
];

/// The table's entry for a method id.
pub fn permissions_of(id: &str) -> Option<&'static [&'static str]> {
    TABLE.iter().find(|(m, _)| *m == id).map(|(_, p)| *p)
}

/// One permission a request needs, on one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub permission: String,
    /// The resource it is checked on, as the API's messages name it.
    pub resource: String,
}

impl Need {
    pub fn new(permission: impl Into<String>, resource: impl Into<String>) -> Need {
        Need {
            permission: permission.into(),
            resource: resource.into(),
        }
    }
}

/// One check, as recorded.
#[derive(Clone, Debug)]
struct Checked {
    method: Option<String>,
    permission: String,
    resource: String,
    granted: bool,
}

/// Per-project IAM state.
#[derive(Default)]
pub struct Iam {
    /// `None`: every permission is granted (unless denied).
    granted: Option<BTreeSet<String>>,
    denied: BTreeSet<String>,
    /// Every permission a request needed since the last reset.
    checked: BTreeSet<String>,
    detail: Vec<Checked>,
}

impl Iam {
    /// Whether the caller holds `permission` in this project.
    pub fn holds(&self, permission: &str) -> bool {
        !self.denied.contains(permission)
            && self.granted.as_ref().is_none_or(|g| g.contains(permission))
    }

    /// Records one check (what `checked` reports).
    pub fn record(&mut self, method: Option<&str>, need: &Need, granted: bool) {
        self.checked.insert(need.permission.clone());
        if self.detail.len() < MAX_DETAIL {
            self.detail.push(Checked {
                method: method.map(str::to_string),
                permission: need.permission.clone(),
                resource: need.resource.clone(),
                granted,
            });
        }
    }
}

/// Which API family a path belongs to, for the shape of its 403.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Compute,
    Dns,
    Storage,
    /// Run, IAP, Resource Manager, Service Usage.
    Aip193,
}

fn family(path: &str) -> Option<Family> {
    if path.starts_with("/compute/") {
        Some(Family::Compute)
    } else if path.starts_with("/dns/") {
        Some(Family::Dns)
    } else if crate::storage::is_storage_path(path) {
        Some(Family::Storage)
    } else if ["/v1/", "/v1beta1/", "/v2/", "/v3/", "/apis/"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        Some(Family::Aip193)
    } else {
        None
    }
}

/// Google's 403 for a missing permission, in the shape of the API called.
pub fn denied_error(path: &str, need: &Need) -> ApiError {
    match family(path) {
        Some(Family::Compute) => ApiError::new(
            403,
            "forbidden",
            format!(
                "Required '{}' permission for '{}'",
                need.permission, need.resource
            ),
        ),
        // Cloud DNS's v1 API says no more than this.
        Some(Family::Dns) => ApiError::new(403, "forbidden", "Forbidden"),
        // Cloud Storage names the caller (an identity the emulator does not
        // model), the permission and the kind of resource.
        Some(Family::Storage) => {
            let kind = if need.resource.contains("/objects/") {
                "object"
            } else {
                "bucket"
            };
            ApiError::new(
                403,
                "forbidden",
                format!(
                    "caller does not have {} access to the Google Cloud Storage {kind}. Permission '{}' denied on resource (or it may not exist).",
                    need.permission, need.permission
                ),
            )
        }
        _ => crate::cloud::permission_denied(&need.permission, &need.resource),
    }
}

/// Called by the admin middleware for every API request (after the API-enabled
/// check, before faults and body validation): records what the request needs and
/// answers Google's 403 when the caller lacks any of it. Requests naming an
/// unknown project pass: their handler answers as Google does for those.
pub fn check(
    shared: &Shared,
    id: Option<&str>,
    path: &str,
    body: Option<&[u8]>,
) -> Option<ApiError> {
    let project = if crate::storage::is_storage_path(path) {
        crate::storage::project_of(shared, path)?
    } else {
        crate::cloud::project_in_path(path)?.to_string()
    };
    let body: Value = body
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null);
    let mut world = shared.world();
    let p = world.project(&project).ok()?;
    let needs = needs(p, id, path, &body);
    let mut first_missing = None;
    for n in &needs {
        let ok = p.iam.holds(&n.permission);
        p.iam.record(id, n, ok);
        if !ok && first_missing.is_none() {
            first_missing = Some(n.clone());
        }
    }
    first_missing.map(|n| denied_error(path, &n))
}

/// Everything a request needs: its method's own permission(s) on the resource it
/// names, then what it checks on the resources it refers to.
pub fn needs(p: &Project, id: Option<&str>, path: &str, body: &Value) -> Vec<Need> {
    let Some(id) = id else {
        return Vec::new();
    };
    let Some(perms) = permissions_of(id) else {
        return Vec::new();
    };
    let resource = resource_of(id, path, body, &p.id);
    let mut out: Vec<Need> = perms
        .iter()
        .map(|perm| Need::new(*perm, &resource))
        .collect();
    for n in referenced(p, id, path, body) {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// The resource a method's own permission is checked on, named as the API's
/// messages name it.
fn resource_of(id: &str, path: &str, body: &Value, project: &str) -> String {
    let trimmed = path.trim_start_matches('/');
    if crate::storage::is_storage_path(path) {
        return storage_resource(path, project);
    }
    if let Some(rest) = trimmed.strip_prefix("compute/v1/") {
        return compute_resource(id, rest, body, project);
    }
    if let Some(rest) = trimmed.strip_prefix("dns/v1/") {
        return rest.to_string();
    }
    if let Some(rest) = trimmed.strip_prefix("v3/") {
        let name = rest.split(':').next().unwrap_or(rest);
        return format!("//cloudresourcemanager.googleapis.com/{name}");
    }
    // Cloud Run v1's Knative paths name the project as the namespace.
    if let Some((_, rest)) = trimmed
        .strip_prefix("apis/")
        .and_then(|r| r.split_once("/namespaces/"))
    {
        let mut segs = rest.split('/');
        let project = segs.next().unwrap_or("");
        let service = segs.nth(1);
        return match service {
            Some(s) => format!("projects/{project}/locations/-/services/{s}"),
            None => format!("projects/{project}/locations/-"),
        };
    }
    // `v1/`, `v1beta1/`, `v2/`: the resource name, verb and `:wait` dropped; a
    // collection (`.../services` of a list or create) names its parent.
    let rest = trimmed.split_once('/').map_or("", |(_, r)| r);
    let name = rest.split(':').next().unwrap_or(rest);
    match name.rsplit_once('/') {
        Some((parent, _)) if name.split('/').count() % 2 == 1 => parent.to_string(),
        _ => name.to_string(),
    }
}

/// Cloud Storage names buckets `projects/_/buckets/B` and objects
/// `projects/_/buckets/B/objects/O`; `b` itself (list, insert) is the project.
fn storage_resource(path: &str, project: &str) -> String {
    let rest = [
        "/storage/v1/",
        "/upload/storage/v1/",
        "/download/storage/v1/",
    ]
    .iter()
    .find_map(|p| path.strip_prefix(p))
    .unwrap_or("");
    let segs: Vec<&str> = rest.split('/').collect();
    match segs.as_slice() {
        ["b", bucket, "o", object, ..] => {
            let object = object.replace("%2F", "/").replace("%2f", "/");
            format!("projects/_/buckets/{bucket}/objects/{object}")
        }
        ["b", bucket, ..] => format!("projects/_/buckets/{bucket}"),
        _ => format!("projects/{project}"),
    }
}

/// `projects/p/global/sslCertificates/x` for an item, its future name for an
/// insert, the project for a list.
fn compute_resource(id: &str, rest: &str, body: &Value, project: &str) -> String {
    let segs: Vec<&str> = rest.split('/').collect();
    match segs.as_slice() {
        ["projects", p] => format!("projects/{p}"),
        ["projects", p, "global", coll] if id.ends_with(".insert") => {
            let name = body["name"].as_str().unwrap_or("");
            format!("projects/{p}/global/{coll}/{name}")
        }
        ["projects", p, "regions", r, coll] if id.ends_with(".insert") => {
            let name = body["name"].as_str().unwrap_or("");
            format!("projects/{p}/regions/{r}/{coll}/{name}")
        }
        ["projects", p, "global", _]
        | ["projects", p, "regions", _, _]
        | ["projects", p, "aggregated", _] => format!("projects/{p}"),
        ["projects", p, "global", coll, name, ..] => format!("projects/{p}/global/{coll}/{name}"),
        ["projects", p, "regions", r, coll, name, ..] => {
            format!("projects/{p}/regions/{r}/{coll}/{name}")
        }
        // `projects/p/targetHttpsProxies/x/setSslCertificates` (no `/global/`).
        ["projects", p, coll, name, _verb] => format!("projects/{p}/global/{coll}/{name}"),
        _ => format!("projects/{project}"),
    }
}

/// What a request checks on the resources it refers to.
fn referenced(p: &Project, id: &str, path: &str, body: &Value) -> Vec<Need> {
    let project = &p.id;
    let mut out = Vec::new();
    let uses = |out: &mut Vec<Need>, v: &Value, default_coll: &str| {
        if let Some(r) = v
            .as_str()
            .and_then(|s| compute_ref(project, s, default_coll))
            && let Some(perm) = use_permission(&r)
        {
            out.push(Need::new(perm, r));
        }
    };
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    match id {
        "compute.targetHttpsProxies.insert" | "compute.targetHttpsProxies.patch" => {
            uses(&mut out, &body["urlMap"], "urlMaps");
            for c in arr(&body["sslCertificates"]) {
                uses(&mut out, &c, "sslCertificates");
            }
            uses(&mut out, &body["sslPolicy"], "sslPolicies");
            if let Some(m) = body["certificateMap"].as_str().filter(|m| !m.is_empty()) {
                out.push(Need::new(
                    "certificatemanager.certmaps.use",
                    map_resource(m),
                ));
            }
        }
        "compute.targetHttpsProxies.setSslCertificates" => {
            for c in arr(&body["sslCertificates"]) {
                uses(&mut out, &c, "sslCertificates");
            }
        }
        "compute.targetHttpsProxies.setCertificateMap" => {
            if let Some(m) = body["certificateMap"].as_str().filter(|m| !m.is_empty()) {
                out.push(Need::new(
                    "certificatemanager.certmaps.use",
                    map_resource(m),
                ));
            }
        }
        "certificatemanager.projects.locations.certificateMaps.certificateMapEntries.create"
        | "certificatemanager.projects.locations.certificateMaps.certificateMapEntries.patch" => {
            for c in arr(&body["certificates"]) {
                if let Some(c) = c.as_str() {
                    out.push(Need::new("certificatemanager.certs.use", c));
                }
            }
        }
        "compute.targetHttpProxies.insert"
        | "compute.targetHttpProxies.patch"
        | "compute.targetHttpsProxies.setUrlMap"
        | "compute.targetHttpProxies.setUrlMap" => {
            uses(&mut out, &body["urlMap"], "urlMaps");
        }
        "compute.urlMaps.insert" | "compute.urlMaps.patch" | "compute.urlMaps.update" => {
            uses(&mut out, &body["defaultService"], "backendServices");
            for pm in arr(&body["pathMatchers"]) {
                uses(&mut out, &pm["defaultService"], "backendServices");
                for pr in arr(&pm["pathRules"]) {
                    uses(&mut out, &pr["service"], "backendServices");
                }
                for rr in arr(&pm["routeRules"]) {
                    uses(&mut out, &rr["service"], "backendServices");
                }
            }
        }
        "compute.backendServices.insert"
        | "compute.backendServices.patch"
        | "compute.backendServices.update" => {
            for b in arr(&body["backends"]) {
                uses(&mut out, &b["group"], "networkEndpointGroups");
            }
            for h in arr(&body["healthChecks"]) {
                uses(&mut out, &h, "healthChecks");
            }
            uses(&mut out, &body["securityPolicy"], "securityPolicies");
        }
        "compute.globalForwardingRules.insert" => {
            uses(&mut out, &body["target"], "targetHttpsProxies");
            match body["IPAddress"].as_str() {
                // A literal IP of a reserved address uses that address (our
                // reading: Google documents `.use` for the address resource; that
                // naming it by IP is checked the same way is not written down).
                Some(ip) if ip.parse::<std::net::IpAddr>().is_ok() => {
                    if let Some(owner) = address_with_ip(p, ip) {
                        out.push(Need::new("compute.globalAddresses.use", owner));
                    }
                }
                Some(_) => uses(&mut out, &body["IPAddress"], "addresses"),
                None => {}
            }
        }
        "dns.changes.create" => out.extend(record_set_needs(path, body)),
        "dns.managedZones.create" => {
            // A private zone binds to VPC networks (Google: "If you are creating a
            // private zone, you also need dns.networks.bindPrivateDNSZone").
            for n in arr(&body["privateVisibilityConfig"]["networks"]) {
                if let Some(url) = n["networkUrl"].as_str() {
                    out.push(Need::new("dns.networks.bindPrivateDNSZone", url));
                }
            }
        }
        _ => {}
    }
    out
}

/// `projects/P/locations/L/certificateMaps/M` out of a map's full name or API URL.
fn map_resource(m: &str) -> &str {
    m.find("projects/").map_or(m, |i| &m[i..])
}

/// A Compute reference (full URL, `projects/...` path, `global/...` or
/// `regions/...` partial path, or a bare name of `default_coll`) as a
/// `projects/P/...` path.
fn compute_ref(project: &str, s: &str, default_coll: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    // Any host: the handler itself refuses references to hosts that are not
    // Google's or the one the request was addressed to.
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .and_then(|r| r.split_once('/'))
        .and_then(|(_, path)| path.strip_prefix("compute/v1/"))
        .unwrap_or(s);
    Some(if rest.starts_with("projects/") {
        rest.to_string()
    } else if ["global/", "regions/", "zones/"]
        .iter()
        .any(|p| rest.starts_with(p))
    {
        format!("projects/{project}/{rest}")
    } else {
        format!("projects/{project}/global/{default_coll}/{rest}")
    })
}

/// The permission Compute checks on a resource another one refers to.
fn use_permission(path: &str) -> Option<&'static str> {
    let segs: Vec<&str> = path.split('/').collect();
    let (scope, coll) = match segs.as_slice() {
        ["projects", _, "global", coll, _] => ("global", *coll),
        ["projects", _, "regions", _, coll, _] => ("regions", *coll),
        ["projects", _, "zones", _, coll, _] => ("zones", *coll),
        _ => return None,
    };
    Some(match (scope, coll) {
        ("global", "urlMaps") => "compute.urlMaps.use",
        ("global", "backendServices") => "compute.backendServices.use",
        ("global", "backendBuckets") => "compute.backendBuckets.use",
        // A proxy serving a certificate reads it.
        ("global", "sslCertificates") => "compute.sslCertificates.get",
        ("global", "sslPolicies") => "compute.sslPolicies.use",
        ("global", "targetHttpsProxies") => "compute.targetHttpsProxies.use",
        ("global", "targetHttpProxies") => "compute.targetHttpProxies.use",
        ("global", "addresses") => "compute.globalAddresses.use",
        ("global", "networkEndpointGroups") => "compute.globalNetworkEndpointGroups.use",
        ("global", "healthChecks") => "compute.healthChecks.useReadOnly",
        ("global", "securityPolicies") => "compute.securityPolicies.use",
        ("regions", "networkEndpointGroups") => "compute.regionNetworkEndpointGroups.use",
        ("regions", "addresses") => "compute.addresses.use",
        ("zones", "networkEndpointGroups") => "compute.networkEndpointGroups.use",
        ("zones", "instanceGroups") => "compute.instanceGroups.use",
        _ => return None,
    })
}

/// The global address holding `ip` in the project, as a `projects/P/...` path.
fn address_with_ip(p: &Project, ip: &str) -> Option<String> {
    p.compute
        .resources
        .get("global/addresses")?
        .values()
        .find(|a| a["address"].as_str() == Some(ip))
        .and_then(|a| a["selfLink"].as_str())
        .map(|l| l.trim_start_matches(crate::compute::LINK_ROOT).to_string())
}

/// What Cloud DNS checks on the record sets of a change: an addition of a (name,
/// type) the same change also deletes replaces it (`update`); any other addition
/// is a `create`, any other deletion a `delete`. (Google's table says "to update
/// resource records: dns.changes.create and dns.resourceRecordSets.update"; that an
/// update is a deletion and an addition of the same set in one change is our
/// reading: the v1 API has no other way to express one.)
pub fn record_set_needs(path: &str, body: &Value) -> Vec<Need> {
    let zone = path
        .trim_start_matches('/')
        .trim_start_matches("dns/v1/")
        .trim_end_matches("/changes");
    let key = |r: &Value| {
        (
            r["name"].as_str().unwrap_or("").to_ascii_lowercase(),
            r["type"].as_str().unwrap_or("").to_string(),
        )
    };
    let adds: Vec<(String, String)> = body["additions"]
        .as_array()
        .map(|a| a.iter().map(key).collect())
        .unwrap_or_default();
    let dels: Vec<(String, String)> = body["deletions"]
        .as_array()
        .map(|a| a.iter().map(key).collect())
        .unwrap_or_default();
    let mut out: Vec<Need> = Vec::new();
    let mut push = |perm: &str, (name, rtype): &(String, String)| {
        let n = Need::new(perm, format!("{zone}/rrsets/{name}/{rtype}"));
        if !out.contains(&n) {
            out.push(n);
        }
    };
    for a in &adds {
        let perm = if dels.contains(a) {
            "dns.resourceRecordSets.update"
        } else {
            "dns.resourceRecordSets.create"
        };
        push(perm, a);
    }
    for d in dels.iter().filter(|d| !adds.contains(d)) {
        push("dns.resourceRecordSets.delete", d);
    }
    out
}

// ---------------------------------------------------------------- admin routes

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Granted {
    /// `None` (or `null`): everything is granted.
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Denied {
    permissions: Vec<String>,
    #[serde(default)]
    project: Option<String>,
}

type Q = Query<HashMap<String, String>>;

/// Runs `f` on the IAM state of the project named by `project` (or the default).
fn with_iam(
    shared: &Shared,
    project: Option<String>,
    f: impl FnOnce(&mut Iam) -> Response,
) -> Response {
    let project = project.unwrap_or_else(|| shared.config.project.clone());
    let mut world = shared.world();
    match world.project(&project) {
        Ok(p) => f(&mut p.iam),
        Err(e) => e.into_response(),
    }
}

async fn set_granted(AxState(shared): AxState<Shared>, Json(b): Json<Granted>) -> Response {
    with_iam(&shared, b.project, |iam| {
        iam.granted = b.permissions.map(|p| p.into_iter().collect());
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn clear_granted(AxState(shared): AxState<Shared>, Query(q): Q) -> Response {
    with_iam(&shared, q.get("project").cloned(), |iam| {
        iam.granted = None;
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn set_denied(AxState(shared): AxState<Shared>, Json(b): Json<Denied>) -> Response {
    with_iam(&shared, b.project, |iam| {
        iam.denied = b.permissions.into_iter().collect();
        StatusCode::NO_CONTENT.into_response()
    })
}

async fn get_checked(AxState(shared): AxState<Shared>, Query(q): Q) -> Response {
    let detail = q.get("detail").is_some_and(|v| v == "true");
    with_iam(&shared, q.get("project").cloned(), |iam| {
        if detail {
            let v: Vec<Value> = iam
                .detail
                .iter()
                .map(|c| {
                    json!({
                        "method": c.method,
                        "permission": c.permission,
                        "resource": c.resource,
                        "granted": c.granted,
                    })
                })
                .collect();
            Json(v).into_response()
        } else {
            Json(iam.checked.iter().collect::<Vec<_>>()).into_response()
        }
    })
}

async fn reset_checked(AxState(shared): AxState<Shared>, Query(q): Q) -> Response {
    with_iam(&shared, q.get("project").cloned(), |iam| {
        iam.checked.clear();
        iam.detail.clear();
        StatusCode::NO_CONTENT.into_response()
    })
}

/// The `/emulator/iam/...` routes.
pub fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route(
            "/emulator/iam/granted",
            post(set_granted).delete(clear_granted),
        )
        .route("/emulator/iam/denied", post(set_denied))
        .route(
            "/emulator/iam/checked",
            axum::routing::get(get_checked).delete(reset_checked),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Project {
        Project::new("p", 42)
    }

    fn perms(n: &[Need]) -> Vec<&str> {
        n.iter().map(|n| n.permission.as_str()).collect()
    }

    #[test]
    fn every_served_method_has_an_entry_and_ids_are_unique() {
        let d = crate::discovery::Discovery::load().unwrap();
        let mut seen = BTreeSet::new();
        for (id, perms) in TABLE {
            assert!(seen.insert(*id), "{id} twice");
            assert!(d.knows(id), "{id} is not a discovery method id");
            for p in *perms {
                assert_eq!(p.split('.').count(), 3, "{p}");
            }
        }
    }

    #[test]
    fn allow_and_deny_lists() {
        let mut iam = Iam::default();
        assert!(iam.holds("a.b.c"));
        iam.granted = Some(["a.b.c".to_string()].into_iter().collect());
        assert!(iam.holds("a.b.c"));
        assert!(!iam.holds("a.b.d"));
        iam.denied.insert("a.b.c".into());
        assert!(!iam.holds("a.b.c"));
    }

    #[test]
    fn compute_resources_are_named_as_compute_names_them() {
        let p = project();
        let n = needs(
            &p,
            Some("compute.sslCertificates.insert"),
            "/compute/v1/projects/p/global/sslCertificates",
            &json!({"name": "x"}),
        );
        assert_eq!(
            n,
            [Need::new(
                "compute.sslCertificates.create",
                "projects/p/global/sslCertificates/x"
            )]
        );
        let n = needs(
            &p,
            Some("compute.targetHttpsProxies.setSslCertificates"),
            "/compute/v1/projects/p/targetHttpsProxies/px/setSslCertificates",
            &json!({"sslCertificates": ["https://www.googleapis.com/compute/v1/projects/p/global/sslCertificates/a", "http://127.0.0.1:8080/compute/v1/projects/p/global/sslCertificates/b"]}),
        );
        assert_eq!(
            n,
            [
                Need::new(
                    "compute.targetHttpsProxies.setSslCertificates",
                    "projects/p/global/targetHttpsProxies/px"
                ),
                Need::new(
                    "compute.sslCertificates.get",
                    "projects/p/global/sslCertificates/a"
                ),
                Need::new(
                    "compute.sslCertificates.get",
                    "projects/p/global/sslCertificates/b"
                ),
            ]
        );
        let n = needs(
            &p,
            Some("compute.globalOperations.wait"),
            "/compute/v1/projects/p/global/operations/op-1/wait",
            &Value::Null,
        );
        assert_eq!(
            n,
            [Need::new(
                "compute.globalOperations.get",
                "projects/p/global/operations/op-1"
            )]
        );
        let n = needs(
            &p,
            Some("compute.sslCertificates.list"),
            "/compute/v1/projects/p/global/sslCertificates",
            &Value::Null,
        );
        assert_eq!(n, [Need::new("compute.sslCertificates.list", "projects/p")]);
    }

    #[test]
    fn referenced_resources_add_their_use_permissions() {
        let p = project();
        let n = needs(
            &p,
            Some("compute.globalForwardingRules.insert"),
            "/compute/v1/projects/p/global/forwardingRules",
            &json!({"name": "fr", "target": "global/targetHttpProxies/hp", "IPAddress": "projects/p/global/addresses/ip"}),
        );
        assert_eq!(
            perms(&n),
            [
                "compute.globalForwardingRules.create",
                "compute.targetHttpProxies.use",
                "compute.globalAddresses.use"
            ]
        );
        let n = needs(
            &p,
            Some("compute.backendServices.insert"),
            "/compute/v1/projects/p/global/backendServices",
            &json!({"name": "b", "backends": [{"group": "https://www.googleapis.com/compute/v1/projects/p/regions/r/networkEndpointGroups/neg"}]}),
        );
        assert_eq!(
            perms(&n),
            [
                "compute.backendServices.create",
                "compute.regionNetworkEndpointGroups.use"
            ]
        );
        let n = needs(
            &p,
            Some("compute.urlMaps.insert"),
            "/compute/v1/projects/p/global/urlMaps",
            &json!({"name": "m", "defaultUrlRedirect": {"httpsRedirect": true}}),
        );
        assert_eq!(perms(&n), ["compute.urlMaps.create"]);
    }

    #[test]
    fn certificate_manager_names_its_resources_and_uses() {
        let p = project();
        let n = needs(
            &p,
            Some("certificatemanager.projects.locations.certificates.create"),
            "/v1/projects/p/locations/global/certificates",
            &json!({}),
        );
        assert_eq!(
            n,
            [Need::new(
                "certificatemanager.certs.create",
                "projects/p/locations/global"
            )]
        );
        let n = needs(
            &p,
            Some(
                "certificatemanager.projects.locations.certificateMaps.certificateMapEntries.create",
            ),
            "/v1/projects/p/locations/global/certificateMaps/m/certificateMapEntries",
            &json!({"hostname": "a.example.com", "certificates": ["projects/p/locations/global/certificates/c"]}),
        );
        assert_eq!(
            n,
            [
                Need::new(
                    "certificatemanager.certmapentries.create",
                    "projects/p/locations/global/certificateMaps/m"
                ),
                Need::new(
                    "certificatemanager.certs.use",
                    "projects/p/locations/global/certificates/c"
                ),
            ]
        );
        let n = needs(
            &p,
            Some("compute.targetHttpsProxies.setCertificateMap"),
            "/compute/v1/projects/p/global/targetHttpsProxies/px/setCertificateMap",
            &json!({"certificateMap": "//certificatemanager.googleapis.com/projects/p/locations/global/certificateMaps/m"}),
        );
        assert_eq!(
            perms(&n),
            [
                "compute.targetHttpsProxies.setCertificateMap",
                "certificatemanager.certmaps.use"
            ]
        );
        assert_eq!(n[0].resource, "projects/p/global/targetHttpsProxies/px");
    }

    #[test]
    fn dns_changes_need_create_update_or_delete_by_what_they_do() {
        let rr = |n: &str, t: &str| json!({"name": n, "type": t, "ttl": 60, "rrdatas": ["x"]});
        let path = "/dns/v1/projects/p/managedZones/z/changes";
        let n = record_set_needs(path, &json!({"additions": [rr("a.", "TXT")]}));
        assert_eq!(perms(&n), ["dns.resourceRecordSets.create"]);
        assert_eq!(n[0].resource, "projects/p/managedZones/z/rrsets/a./TXT");
        let n = record_set_needs(
            path,
            &json!({"additions": [rr("A.", "TXT")], "deletions": [rr("a.", "TXT"), rr("b.", "A")]}),
        );
        assert_eq!(
            perms(&n),
            [
                "dns.resourceRecordSets.update",
                "dns.resourceRecordSets.delete"
            ]
        );
    }

    #[test]
    fn service_usage_v1_is_checked_as_service_usage_not_iap() {
        // gcloud's `services describe/enable` paths share `/v1/{+name}` with
        // IAP; resolved through the discovery documents they need Service
        // Usage's permissions on the service.
        let d = crate::discovery::Discovery::load().unwrap();
        let p = project();
        for (m, path, want) in [
            (
                axum::http::Method::GET,
                "/v1/projects/p/services/dns.googleapis.com",
                "serviceusage.services.get",
            ),
            (
                axum::http::Method::POST,
                "/v1/projects/p/services/dns.googleapis.com:enable",
                "serviceusage.services.enable",
            ),
        ] {
            let id = d.resolve(&m, path);
            let n = needs(&p, id.as_deref(), path, &json!({}));
            assert_eq!(
                n,
                [Need::new(want, "projects/p/services/dns.googleapis.com")],
                "{m} {path}"
            );
        }
    }
}
