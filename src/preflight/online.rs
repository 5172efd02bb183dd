//! The checks that ask Google and public DNS. Each check is an async function
//! returning report lines; the decisions they make are the pure functions of
//! `caa.rs`, `delegation.rs` and `permissions.rs` plus `apis::api_line` and
//! `domains::zone_line` here. Independent checks run concurrently.

mod apis;
mod bucket;
mod domains;
mod iam;
mod proxies;

use std::time::Duration;

use super::Line;
use super::credentials::Credentials;
use super::resolver::Resolver;
use crate::config::Config;
use crate::gcp::{Auth, Gcp, GcpError, RetryPolicy};

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
enum TokenError {
    #[error("no answer in {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Credentials(google_cloud_auth::errors::CredentialsError),
}

/// One request may not hold `check` up for longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A short retry ladder: `check` is interactive, and a transient error shows up
/// as a failed line the user can simply re-run.
fn check_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
    }
}

/// Runs every online check with these credentials.
pub(crate) async fn run(config: &Config, creds: Credentials) -> Vec<Line> {
    let mut lines = Vec::new();
    let who = creds
        .identity
        .clone()
        .map(|i| format!("identity {i}"))
        .unwrap_or_else(|| "identity unknown".into());
    let skip_rest = |lines: &mut Vec<Line>, why: &str| {
        lines.push(Line::skip(format!(
            "APIs, IAM permissions, zones, delegation, CAA, proxies: not checked ({why})"
        )));
    };
    let auth = match creds.auth {
        Ok(a) => a,
        Err(e) => {
            lines.push(Line::fail(
                format!("credentials: {}: unusable: {e}", creds.kind),
                creds.source.fix(),
            ));
            skip_rest(&mut lines, "no usable credentials");
            return lines;
        }
    };
    match token(&auth).await {
        Ok(how) => lines.push(Line::ok(format!(
            "credentials: {}, {who}: {how}",
            creds.kind
        ))),
        Err(e) => {
            lines.push(Line::fail(
                format!("credentials: {}, {who}: no access token: {e}", creds.kind),
                creds.source.fix(),
            ));
            skip_rest(&mut lines, "the credentials do not work");
            return lines;
        }
    }
    let (project, source) = match project(config, creds.file_project.as_deref()).await {
        Ok(p) => p,
        Err(e) => {
            lines.push(Line::fail(
                format!("project: {e}"),
                "set gcp.project in the configuration",
            ));
            skip_rest(&mut lines, "no project");
            return lines;
        }
    };
    lines.push(Line::ok(format!("project {project} (from {source})")));
    let mut gcp = match Gcp::new(config.gcp.endpoints.clone(), project, auth) {
        Ok(g) => g,
        Err(e) => {
            lines.push(Line::fail(
                format!("HTTP client: {e}"),
                "report this as a bug",
            ));
            return lines;
        }
    };
    gcp.retry = check_retry();
    lines.extend(checks(config, &gcp, &who).await);
    lines
}

/// Every check after credentials and project, with a ready client. Public so tests
/// can run them against an emulator with injected credentials.
pub(crate) async fn checks(config: &Config, gcp: &Gcp, who: &str) -> Vec<Line> {
    let resolver = Resolver::from_config(&config.dns.resolvers).await;
    let (apis, iam, dns, proxies, bucket) = tokio::join!(
        apis::apis(config, gcp),
        iam::iam(config, gcp, who),
        domains::domains(config, gcp, resolver),
        proxies::proxies(config, gcp),
        bucket::bucket(config, gcp),
    );
    // After the proxy lines, which report a missing proxy.
    let takeover = super::takeover::check(config, gcp).await;
    [apis, iam, bucket, dns, proxies, takeover].concat()
}

async fn token(auth: &Auth) -> Result<&'static str, TokenError> {
    match auth {
        Auth::Adc(c) => tokio::time::timeout(CALL_TIMEOUT, c.access_token())
            .await
            .map_err(|_| TokenError::Timeout(CALL_TIMEOUT))?
            .map(|_| "an access token was obtained")
            .map_err(TokenError::Credentials),
        Auth::Static(_) => Ok("a fixed access token is used"),
        Auth::None => Ok("no access token is sent (emulator)"),
    }
}

/// The project the daemon would use, and where it comes from (the same order as
/// `Gcp::from_config`).
async fn project(
    config: &Config,
    file_project: Option<&str>,
) -> Result<(String, String), GcpError> {
    if let Some(p) = &config.gcp.project {
        return Ok((p.clone(), "gcp.project in the configuration".into()));
    }
    let p = crate::gcp::discover_project().await?;
    for var in ["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"] {
        if std::env::var(var).is_ok_and(|v| v == p) {
            return Ok((p, var.into()));
        }
    }
    // discover_project reads only GOOGLE_APPLICATION_CREDENTIALS' file, not gcloud's.
    let source = if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some()
        && file_project == Some(p.as_str())
    {
        "the credentials file's project_id"
    } else {
        "the metadata server"
    };
    Ok((p, source.into()))
}
fn is_disabled(e: &GcpError) -> bool {
    e.code() == Some(403) && matches!(e.reason(), Some("accessNotConfigured" | "SERVICE_DISABLED"))
}

/// The error without the hint line (the fix goes in the line's own fix).
fn first_line(e: &GcpError) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

/// The fix for an unexpected Google error: its hint, or a generic one.
fn fix_for(e: &GcpError) -> String {
    e.api()
        .and_then(|a| a.hint())
        .unwrap_or_else(|| "re-run check; if it persists, look at the error".into())
}
