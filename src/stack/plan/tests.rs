//! Unit tests of the planner; compiled only under #[cfg(test)] (see plan.rs).

use super::*;
use crate::config::stack::{Scheme, StackConfig};
use crate::gcp::compute::{SslCertificate, TargetHttpsProxy};
use crate::gcp::run::RunService;
use crate::stack::{DesiredIap, DnsObserved, Secret};

fn desired() -> Desired {
    let s: StackConfig = toml::from_str(
        "region = \"europe-west1\"\nservice = \"app\"\ndomains = [\"app.example.test\"]\n",
    )
    .unwrap();
    Desired {
        project: "p".into(),
        region: s.region.clone(),
        service: s.service.clone(),
        domains: s.domains.clone(),
        certificate: "app".into(),
        certificate_map: None,
        zone: None,
        scheme: Scheme::ExternalManaged,
        http_redirect: true,
        manage_dns: true,
        dns_ttl: 300,
        iap: DesiredIap {
            enabled: true,
            client_id: Some("id.apps.googleusercontent.com".into()),
            client_secret: Some(Secret("s3cret".into())),
            members: vec!["user:alice@example.test".into()],
        },
        names: s.names(),
    }
}

const AGENT: &str = "serviceAccount:service-1@gcp-sa-iap.iam.gserviceaccount.com";

fn empty(d: &Desired) -> ObservedStack {
    ObservedStack {
        run: Some(RunService {
            name: "projects/p/locations/europe-west1/services/app".into(),
            ingress: Some("INGRESS_TRAFFIC_ALL".into()),
            ..Default::default()
        }),
        iap_agent: Some(AGENT.into()),
        dns: vec![DnsObserved {
            domain: d.domains[0].clone(),
            zone: Some("example-test".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// What a finished bootstrap looks like, built from the plan of an empty project.
fn complete(d: &Desired) -> ObservedStack {
    let mut o = empty(d);
    let m = Some(d.marker());
    o.run.as_mut().unwrap().ingress = Some(INGRESS_INTERNAL_LOAD_BALANCER.into());
    o.invoker_granted = true;
    o.neg = Some(NetworkEndpointGroup {
        name: d.names.neg.clone(),
        description: m.clone(),
        cloud_run: Some(CloudRunTarget {
            service: Some("app".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    o.backend = Some(BackendService {
        name: d.names.backend.clone(),
        description: m.clone(),
        load_balancing_scheme: Some("EXTERNAL_MANAGED".into()),
        protocol: Some("HTTP".into()),
        backends: vec![Backend {
            group: d.neg_link(),
            ..Default::default()
        }],
        iap: Some(BackendIap {
            enabled: true,
            oauth2_client_id: d.iap.client_id.clone(),
            oauth2_client_secret_sha256: Some(Secret("s3cret".into()).sha256()),
            ..Default::default()
        }),
        fingerprint: Some("fp-b".into()),
        ..Default::default()
    });
    o.url_map = Some(UrlMap {
        name: d.names.url_map.clone(),
        description: m.clone(),
        default_service: Some(d.link("backendServices", &d.names.backend)),
        fingerprint: Some("fp-u".into()),
        ..Default::default()
    });
    o.address = Some(Address {
        name: d.names.ip.clone(),
        description: m.clone(),
        address: Some("203.0.113.1".into()),
        ..Default::default()
    });
    o.dns[0].a = Some(ResourceRecordSet {
        name: "app.example.test.".into(),
        rtype: "A".into(),
        ttl: Some(300),
        rrdatas: vec!["203.0.113.1".into()],
        other: Default::default(),
    });
    let mut https = TargetHttpsProxy {
        name: d.names.https_proxy.clone(),
        url_map: Some(d.link("urlMaps", &d.names.url_map)),
        ssl_certificates: vec![d.link("sslCertificates", "app-0123456789ab")],
        ..Default::default()
    };
    https.other.insert("description".into(), d.marker().into());
    o.https_proxy = Some(https);
    let fr = |name: &str, target: String, port: &str| ForwardingRule {
        name: name.into(),
        description: m.clone(),
        ip_address: Some("203.0.113.1".into()),
        port_range: Some(port.into()),
        target: Some(target),
        load_balancing_scheme: Some("EXTERNAL_MANAGED".into()),
        ..Default::default()
    };
    o.forwarding_rule = Some(fr(
        &d.names.forwarding_rule,
        d.link("targetHttpsProxies", &d.names.https_proxy),
        "443-443",
    ));
    o.http_url_map = Some(UrlMap {
        name: d.names.http_url_map.clone(),
        description: m.clone(),
        default_url_redirect: Some(UrlRedirect {
            https_redirect: Some(true),
            redirect_response_code: Some("MOVED_PERMANENTLY_DEFAULT".into()),
            ..Default::default()
        }),
        fingerprint: Some("fp-r".into()),
        ..Default::default()
    });
    o.http_proxy = Some(TargetHttpProxy {
        name: d.names.http_proxy.clone(),
        description: m.clone(),
        url_map: Some(d.link("urlMaps", &d.names.http_url_map)),
        ..Default::default()
    });
    o.http_forwarding_rule = Some(fr(
        &d.names.http_forwarding_rule,
        d.link("targetHttpProxies", &d.names.http_proxy),
        "80-80",
    ));
    o.iap_members = Some(vec![
        "user:alice@example.test".into(),
        "user:other@x".into(),
    ]);
    o
}

fn kinds(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .map(|a| {
            let s = format!("{a:?}");
            s.split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn empty_project_gives_the_full_ordered_plan() {
    let d = desired();
    let p = plan(&d, &empty(&d)).unwrap();
    assert_eq!(
        kinds(&p),
        [
            "SetRunIngress",
            "CreateIapAgent",
            "GrantRunInvoker",
            "CreateNeg",
            "CreateBackend",
            "CreateUrlMap",
            "CreateAddress",
            "SetDnsA",
            "EnsureCertificate",
            "CreateHttpsProxy",
            "CreateForwardingRule",
            "CreateUrlMap",
            "CreateHttpProxy",
            "CreateForwardingRule",
            "GrantIapAccess",
        ]
    );
    // References are canonical links, computable before anything exists.
    let Action::CreateBackend(b) = &p.actions[4] else {
        panic!()
    };
    assert_eq!(b.backends[0].group, d.neg_link());
    assert_eq!(b.load_balancing_scheme.as_deref(), Some("EXTERNAL_MANAGED"));
    assert_eq!(
        b.iap.as_ref().unwrap().oauth2_client_secret.as_deref(),
        Some("s3cret")
    );
    assert!(d.is_marked(b.description.as_deref()));
    let Action::CreateForwardingRule(fr) = &p.actions[10] else {
        panic!()
    };
    assert_eq!(
        fr.ip_address.as_deref(),
        Some(d.link("addresses", "app-ip").as_str())
    );
    assert_eq!(fr.port_range.as_deref(), Some("443"));
    let Action::SetDnsA { ip, replace, .. } = &p.actions[7] else {
        panic!()
    };
    assert_eq!((ip, replace), (&None, &None));
    // The secret never shows in the plan's Debug or Display.
    assert!(!format!("{p:?}").contains("s3cret"));
    assert!(p.actions.iter().all(|a| !a.to_string().contains("s3cret")));
}

#[test]
fn complete_stack_plans_nothing() {
    let d = desired();
    let p = plan(&d, &complete(&d)).unwrap();
    assert_eq!(p.actions, []);
    assert_eq!(p.notes, Vec::<String>::new());
}

#[test]
fn drift_is_fixed_in_place() {
    let d = desired();
    let mut o = complete(&d);
    o.backend.as_mut().unwrap().iap.as_mut().unwrap().enabled = false;
    o.url_map.as_mut().unwrap().default_service = Some(d.link("backendServices", "other"));
    o.https_proxy.as_mut().unwrap().url_map = Some(d.link("urlMaps", "other"));
    o.iap_members = Some(vec![]);
    o.dns[0].a.as_mut().unwrap().rrdatas = vec!["192.0.2.9".into()];
    let p = plan(&d, &o).unwrap();
    assert_eq!(
        kinds(&p),
        [
            "PatchBackend",
            "PatchUrlMap",
            "SetDnsA",
            "SetProxyUrlMap",
            "GrantIapAccess"
        ]
    );
    let Action::PatchBackend {
        fingerprint,
        iap,
        backends,
        protocol,
        ..
    } = &p.actions[0]
    else {
        panic!()
    };
    assert_eq!(fingerprint, "fp-b");
    assert!(iap.as_ref().unwrap().enabled);
    assert_eq!((backends, protocol), (&None, &None));
    let Action::PatchUrlMap {
        fingerprint,
        default_service,
        ..
    } = &p.actions[1]
    else {
        panic!()
    };
    assert_eq!(fingerprint, "fp-u");
    assert_eq!(
        default_service.as_deref(),
        Some(d.link("backendServices", "app-backend").as_str())
    );
    assert!(
        p.actions[2]
            .to_string()
            .contains("replace DNS record app.example.test. A 192.0.2.9 with A 203.0.113.1")
    );
}

#[test]
fn a_changed_secret_is_drift_without_reading_it_back() {
    let mut d = desired();
    d.iap.client_secret = Some(Secret("rotated".into()));
    let p = plan(&d, &complete(&d)).unwrap();
    assert_eq!(kinds(&p), ["PatchBackend"]);
    assert!(p.actions[0].to_string().contains("secret differs"));
}

#[test]
fn unfixable_drift_is_a_precise_error() {
    let d = desired();
    let mut o = complete(&d);
    o.forwarding_rule.as_mut().unwrap().ip_address = Some("198.51.100.7".into());
    o.neg.as_mut().unwrap().cloud_run.as_mut().unwrap().service = Some("other".into());
    let e = plan(&d, &o).unwrap_err();
    let StackError::Unfixable(list) = &e else {
        panic!("{e}")
    };
    assert_eq!(list.len(), 2, "{list:?}");
    let text = e.to_string();
    assert!(text.contains("forwarding rule app-forwarding-rule listens on 198.51.100.7, but the stack's address app-ip is 203.0.113.1; IPAddress cannot be changed after creation"), "{text}");
    assert!(
        text.contains("gcloud compute forwarding-rules delete app-forwarding-rule --global"),
        "{text}"
    );
    assert!(
        text.contains("network endpoint group app-neg serves Cloud Run service other"),
        "{text}"
    );
}

#[test]
fn a_missing_run_service_says_where_it_is() {
    let d = desired();
    let mut o = empty(&d);
    o.run = None;
    let e = plan(&d, &o).unwrap_err();
    assert!(
        e.to_string()
            .contains("does not exist in region europe-west1"),
        "{e}"
    );
    o.run_elsewhere = vec!["us-central1".into()];
    let e = plan(&d, &o).unwrap_err();
    assert!(
        e.to_string().contains("stack.region = \"us-central1\""),
        "{e}"
    );
}

#[test]
fn a_domain_without_zone_stops_bootstrap_unless_dns_is_manual() {
    let mut d = desired();
    let mut o = empty(&d);
    o.dns[0].zone = None;
    o.dns[0].zone_problem =
        Some("no public Cloud DNS zone of project p holds app.example.test.".into());
    let e = plan(&d, &o).unwrap_err();
    assert!(e.to_string().contains("stack.manage_dns = false"), "{e}");
    d.manage_dns = false;
    assert!(!kinds(&plan(&d, &o).unwrap()).contains(&"SetDnsA".to_string()));
}

#[test]
fn foreign_resources_are_used_by_bootstrap_and_left_by_teardown() {
    let d = desired();
    let mut o = complete(&d);
    o.url_map.as_mut().unwrap().description = Some("made by hand".into());
    let p = plan(&d, &o).unwrap();
    assert_eq!(p.actions, []);
    assert!(p.notes[0].contains("URL map app-url-map exists and was not created by gclb-acme"));

    o.certificates = vec![SslCertificate {
        name: "app-0123456789ab".into(),
        ..Default::default()
    }];
    o.dns[0]
        .a
        .as_mut()
        .unwrap()
        .rrdatas
        .push("192.0.2.1".into());
    let t = teardown_plan(&d, &o);
    let text: Vec<String> = t.actions.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        text,
        [
            "revoke IAP access of user:alice@example.test",
            "delete forwarding rule app-http-forwarding-rule",
            "delete forwarding rule app-forwarding-rule",
            "delete target HTTP proxy app-http-proxy",
            "delete target HTTPS proxy app-https-proxy",
            "delete SSL certificate app-0123456789ab",
            "delete URL map app-http-redirect",
            "delete backend service app-backend",
            "delete network endpoint group app-neg",
            "delete global address app-ip",
            &format!("revoke roles/run.invoker on the Cloud Run service from {AGENT}"),
        ]
    );
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("URL map app-url-map was not created by gclb-acme"))
    );
    assert!(
        t.notes
            .iter()
            .any(|n| n.contains("does not point only at our address"))
    );
}

#[test]
fn teardown_of_nothing_is_empty() {
    let d = desired();
    let mut o = empty(&d);
    o.iap_agent = Some(AGENT.into());
    assert_eq!(teardown_plan(&d, &o), Plan::default());
}

#[test]
fn bootstrap_records_the_ingress_it_replaces_once() {
    let d = desired();
    let mut o = empty(&d);
    o.run
        .as_mut()
        .unwrap()
        .other
        .insert("labels".into(), serde_json::json!({"team": "web"}));
    let p = plan(&d, &o).unwrap();
    let Action::SetRunIngress { from, labels } = &p.actions[0] else {
        panic!("{:?}", p.actions[0])
    };
    assert_eq!(from.as_deref(), Some("INGRESS_TRAFFIC_ALL"));
    let labels = labels.as_ref().expect("recorded");
    assert_eq!(labels["team"], "web", "other labels are kept");
    assert_eq!(labels[INGRESS_LABEL], "ingress_traffic_all");
    // Recorded already (a bootstrap after a hand edit): the first record stays.
    o.run.as_mut().unwrap().other.insert(
        "labels".into(),
        serde_json::json!({INGRESS_LABEL: "ingress_traffic_internal_only"}),
    );
    let p = plan(&d, &o).unwrap();
    assert!(matches!(
        &p.actions[0],
        Action::SetRunIngress { labels: None, .. }
    ));
}

#[test]
fn teardown_restores_the_recorded_ingress_or_says_why_not() {
    let d = desired();
    let mut o = complete(&d);
    o.run.as_mut().unwrap().other.insert(
        "labels".into(),
        serde_json::json!({INGRESS_LABEL: "ingress_traffic_all", "team": "web"}),
    );
    let p = teardown_plan(&d, &o);
    let Some(Action::RestoreRunIngress { to, labels }) = p.actions.last() else {
        panic!("{:#?}", p.actions)
    };
    assert_eq!(to, "INGRESS_TRAFFIC_ALL");
    assert_eq!(labels.len(), 1);
    assert_eq!(labels["team"], "web");
    // Nothing recorded: left, with the reason and the command.
    let o = complete(&d);
    let p = teardown_plan(&d, &o);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RestoreRunIngress { .. }))
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("recorded no earlier value") && n.contains("--ingress all")),
        "{:#?}",
        p.notes
    );
    // A hand-edited record that names no ingress: left, and said.
    let mut o = complete(&d);
    o.run
        .as_mut()
        .unwrap()
        .other
        .insert("labels".into(), serde_json::json!({INGRESS_LABEL: "open"}));
    let p = teardown_plan(&d, &o);
    assert!(p.notes.iter().any(|n| n.contains("names no ingress")));
}

#[test]
fn name_collisions_refuse_in_one_collection_and_warn_across() {
    let mut d = desired();
    d.names.http_proxy = d.names.https_proxy.clone();
    let (errors, warnings) = name_collisions(&d);
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let p = plan(&d, &empty(&d)).unwrap();
    assert!(p.notes.iter().any(|n| n.contains("stack.names.http_proxy")));

    d.names.http_url_map = d.names.url_map.clone();
    let e = plan(&d, &empty(&d)).unwrap_err().to_string();
    assert!(
        e.contains("stack.names.url_map and stack.names.http_url_map") && e.contains("urlMaps"),
        "{e}"
    );
    // Without the redirect half, its names do not matter.
    d.http_redirect = false;
    assert_eq!(name_collisions(&d), (vec![], vec![]));
}

#[test]
fn a_map_served_by_a_proxy_we_keep_is_left_whole_by_teardown() {
    use crate::gcp::certificatemanager::{CertificateMap, CertificateMapEntry};
    use crate::stack::certmap::MapObserved;
    let mut d = desired();
    d.certificate_map = Some("m".into());
    let mut o = complete(&d);
    let px = o.https_proxy.as_mut().unwrap();
    px.other.insert("description".into(), "hand-made".into());
    px.certificate_map = Some(
        "//certificatemanager.googleapis.com/projects/p/locations/global/certificateMaps/m".into(),
    );
    o.map = Some(MapObserved {
        id: "m".into(),
        map: Some(CertificateMap {
            name: "projects/p/locations/global/certificateMaps/m".into(),
            labels: crate::lb::naming::cm_labels("app"),
            ..Default::default()
        }),
        entries: vec![CertificateMapEntry {
            name: "projects/p/locations/global/certificateMaps/m/certificateMapEntries/e".into(),
            labels: crate::lb::naming::cm_labels("app"),
            hostname: Some("app.example.test".into()),
            ..Default::default()
        }],
        certificates: vec![],
    });
    let p = teardown_plan(&d, &o);
    assert!(
        p.actions.iter().all(|a| !matches!(
            a,
            Action::DeleteMapEntry { .. }
                | Action::DeleteCertificateMap { .. }
                | Action::DeleteCmCertificate { .. }
        )),
        "{:#?}",
        p.actions
    );
    assert!(
        p.notes.iter().any(|n| n.contains(
            "certificate map m is served by target HTTPS proxy app-https-proxy, which gclb-acme did not create"
        )),
        "{:#?}",
        p.notes
    );
    // Ours: the entry goes, then the map (labelled ours, nothing else in it).
    let px = o.https_proxy.as_mut().unwrap();
    px.other.insert("description".into(), d.marker().into());
    let p = teardown_plan(&d, &o);
    let k = kinds(&p);
    let entry = k.iter().position(|x| x == "DeleteMapEntry").unwrap();
    let map = k.iter().position(|x| x == "DeleteCertificateMap").unwrap();
    assert!(entry < map, "{k:?}");
}
