//! Whether the identity holds the permissions renewal (and bootstrap) need.

use super::{first_line, fix_for};
use crate::config::Config;
use crate::gcp::Gcp;
use crate::preflight::{Line, permissions};

pub(super) async fn iam(config: &Config, gcp: &Gcp, who: &str) -> Vec<Line> {
    let renewal = permissions::renewal(config);
    let bootstrap = permissions::bootstrap(config);
    let wanted: Vec<String> = renewal
        .iter()
        .chain(&bootstrap)
        .map(|s| s.to_string())
        .collect();
    let granted = match gcp.test_project_permissions(&wanted).await {
        Ok(g) => g,
        Err(e) => {
            return vec![Line::fail(
                format!("IAM permissions: cannot test them: {}", first_line(&e)),
                fix_for(&e),
            )];
        }
    };
    let p = &gcp.project;
    let mut lines = Vec::new();
    let missing = permissions::missing(&renewal, &granted);
    lines.push(if missing.is_empty() {
        Line::ok(format!(
            "IAM: {who} holds all {} permissions renewal needs in project {p}",
            renewal.len()
        ))
    } else {
        Line::fail(
            format!(
                "IAM: {who} lacks {} permission(s) renewal needs in project {p}: {}",
                missing.len(),
                missing.join(", ")
            ),
            "grant them (docs/iam.md has a custom role with exactly the daemon's permissions, and the predefined roles that hold them)",
        )
    });
    if !bootstrap.is_empty() {
        let missing = permissions::missing(&bootstrap, &granted);
        lines.push(if missing.is_empty() {
            Line::ok(format!(
                "IAM: {who} holds all {} extra permissions bootstrap/teardown/certificate-map attach need",
                bootstrap.len()
            ))
        } else {
            // The daemon does not need these; whoever runs bootstrap does.
            Line::warn(
                format!(
                    "IAM: {who} lacks {} permission(s) bootstrap/teardown/certificate-map attach need (renewal does not): {}",
                    missing.len(),
                    missing.join(", ")
                ),
                "run bootstrap as someone who holds them, or grant them (docs/iam.md)",
            )
        });
    }
    lines
}
