//! Which APIs are enabled, from one cheap read of each; the Cloud Run service
//! read doubles as the Run API probe.

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, join_all};
use reqwest::Method;
use serde_json::{Value, json};

use super::{CALL_TIMEOUT, first_line, fix_for, is_disabled};
use crate::config::Config;
use crate::gcp::{Api, Call, Gcp, GcpError};
use crate::preflight::Line;

/// A GET (or POST with `body`) of any JSON, bounded in time.
async fn probe(
    gcp: &Gcp,
    api: Api,
    op: &'static str,
    path: String,
    body: Option<Value>,
) -> Result<Value, GcpError> {
    let url = gcp.url(api, &path);
    let mut call = Call::new(api, op);
    call.timeout = CALL_TIMEOUT;
    let method = if body.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    gcp.call::<Value, Value>(call, method, &url, body.as_ref())
        .await
}

/// The verdict on "is `api` enabled" from the answer to a cheap read of it. Any
/// answer but `accessNotConfigured`/`SERVICE_DISABLED` proves it is enabled: Google
/// checks that first, before permissions or existence.
pub(super) fn api_line(api: &str, project: &str, answer: &Result<Value, GcpError>) -> Line {
    let what = format!("API {api}");
    match answer {
        Ok(_) => Line::ok(format!("{what}: enabled")),
        Err(e) if is_disabled(e) => Line::fail(
            format!("{what}: disabled in project {project}"),
            format!("gcloud services enable {api} --project {project}"),
        ),
        // A refusal on the merits (permission, existence, argument) comes from the
        // service itself; 401 and 429 may come from Google's front end.
        Err(GcpError::Api(a)) if (400..500).contains(&a.code) && !matches!(a.code, 401 | 429) => {
            Line::ok(format!(
                "{what}: enabled (the probe read answered {} {}, which only an enabled API does)",
                a.code, a.reason
            ))
        }
        Err(e) => Line::warn(
            format!(
                "{what}: could not tell whether it is enabled: {}",
                first_line(e)
            ),
            "re-run check; if it persists, look at the error above",
        ),
    }
}

pub(super) async fn apis(config: &Config, gcp: &Gcp) -> Vec<Line> {
    let p = gcp.project.clone();
    let mut probes: Vec<(&str, BoxFuture<'_, Result<Value, GcpError>>)> = vec![
        (
            "dns.googleapis.com",
            probe(gcp, Api::Dns, "projects.get", format!("projects/{p}"), None).boxed(),
        ),
        (
            "compute.googleapis.com",
            probe(
                gcp,
                Api::Compute,
                "projects.get",
                format!("projects/{p}"),
                None,
            )
            .boxed(),
        ),
    ];
    if let Some(stack) = &config.stack {
        let names = stack.names();
        probes.push((
            "serviceusage.googleapis.com",
            probe(
                gcp,
                Api::ServiceUsage,
                "services.get",
                format!("projects/{p}/services/serviceusage.googleapis.com"),
                None,
            )
            .boxed(),
        ));
        // IAP has no plain read; testing a permission on the backend's IAP
        // resource reads nothing and changes nothing.
        probes.push((
            "iap.googleapis.com",
            probe(
                gcp,
                Api::Iap,
                "webServices.testIamPermissions",
                format!(
                    "projects/{p}/iap_web/compute/services/{}:testIamPermissions",
                    names.backend
                ),
                Some(json!({"permissions": ["iap.webServices.getIamPolicy"]})),
            )
            .boxed(),
        ));
    }
    // Certificate Manager: reading a configured map proves the API enabled (a
    // 404 too) and says whether the map exists yet.
    let maps = certificate_maps(config);
    if let Some(first) = maps.first() {
        probes.push((
            "certificatemanager.googleapis.com",
            probe(
                gcp,
                Api::CertificateManager,
                "certificateMaps.get",
                format!("projects/{p}/locations/global/certificateMaps/{first}"),
                None,
            )
            .boxed(),
        ));
    }
    let (apis, futures): (Vec<&str>, Vec<_>) = probes.into_iter().unzip();
    let answers = join_all(futures).await;
    let mut lines: Vec<Line> = apis
        .iter()
        .zip(&answers)
        .map(|(api, a)| api_line(api, &p, a))
        .collect();
    if let Some(first) = maps.first() {
        let probed = answers.last();
        let mut found = vec![(first.as_str(), probed)];
        let rest = join_all(maps[1..].iter().map(|m| {
            probe(
                gcp,
                Api::CertificateManager,
                "certificateMaps.get",
                format!("projects/{p}/locations/global/certificateMaps/{m}"),
                None,
            )
        }))
        .await;
        found.extend(
            maps[1..]
                .iter()
                .map(String::as_str)
                .zip(rest.iter().map(Some)),
        );
        for (m, answer) in found {
            if let Some(a) = answer {
                lines.push(map_line(m, &p, a));
            }
        }
    }
    if let Some(stack) = &config.stack {
        // The Cloud Run service read doubles as the Run API probe.
        let answer = probe(
            gcp,
            Api::Run,
            "services.get",
            format!(
                "projects/{p}/locations/{}/services/{}",
                stack.region, stack.service
            ),
            None,
        )
        .await;
        lines.push(api_line("run.googleapis.com", &p, &answer));
        lines.push(match &answer {
            Ok(_) => Line::ok(format!(
                "Cloud Run service {} exists in {}",
                stack.service, stack.region
            )),
            Err(e) if e.is_not_found() => Line::fail(
                format!(
                    "Cloud Run service {} does not exist in region {} of project {p}",
                    stack.service, stack.region
                ),
                format!(
                    "deploy it first (gcloud run deploy {} --region {}), or fix stack.service / stack.region",
                    stack.service, stack.region
                ),
            ),
            Err(e) if is_disabled(e) => Line::skip(format!(
                "Cloud Run service {}: not checked (the Run API is disabled)",
                stack.service
            )),
            Err(e) => Line::fail(
                format!("Cloud Run service {}: cannot read: {}", stack.service, first_line(e)),
                fix_for(e),
            ),
        });
    }
    lines
}

/// The distinct certificate maps of the configuration, in order.
fn certificate_maps(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in config
        .certificates
        .iter()
        .filter_map(|c| c.certificate_map.as_ref())
    {
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    out
}

/// Whether a configured certificate map exists, from the answer to reading it.
pub(super) fn map_line(map: &str, project: &str, answer: &Result<Value, GcpError>) -> Line {
    let what = format!("certificate map {map}");
    match answer {
        Ok(_) => Line::ok(format!("{what}: exists")),
        Err(e) if e.is_not_found() => Line::ok(format!(
            "{what}: does not exist yet in project {project}; the first renewal creates it (labelled managed-by=gclb-acme)"
        )),
        Err(e) if is_disabled(e) => Line::skip(format!(
            "{what}: not checked (the Certificate Manager API is disabled)"
        )),
        Err(e) => Line::fail(
            format!("{what}: cannot read: {}", first_line(e)),
            fix_for(e),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::ApiError;
    use crate::preflight::Status;

    fn err(code: u16, reason: &str, message: &str) -> Result<Value, GcpError> {
        Err(GcpError::Api(ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
            status: String::new(),
            request: "GET u".into(),
            needs: Box::default(),
        }))
    }

    #[test]
    fn api_verdicts() {
        let l = api_line(
            "dns.googleapis.com",
            "p",
            &err(403, "accessNotConfigured", "off"),
        );
        assert_eq!(l.status, Status::Fail);
        assert_eq!(
            l.fix.as_deref(),
            Some("gcloud services enable dns.googleapis.com --project p")
        );
        let l = api_line(
            "run.googleapis.com",
            "p",
            &err(403, "SERVICE_DISABLED", "off"),
        );
        assert_eq!(l.status, Status::Fail);
        let l = api_line(
            "dns.googleapis.com",
            "p",
            &err(403, "forbidden", "no dns.projects.get"),
        );
        assert_eq!(l.status, Status::Ok);
        let l = api_line(
            "run.googleapis.com",
            "p",
            &err(404, "NOT_FOUND", "no service"),
        );
        assert_eq!(l.status, Status::Ok);
        assert_eq!(api_line("x", "p", &Ok(json!({}))).status, Status::Ok);
        assert_eq!(
            api_line("x", "p", &err(503, "backendError", "")).status,
            Status::Warn
        );
    }
}
