//! The state bucket (`[state] location = "gs://..."`): it exists, uniform
//! bucket-level access is on, it is not public, public access prevention is
//! enforced, and the daemon's account holds the `storage.*` permissions the
//! state calls need (testIamPermissions on the bucket). docs/iam.md lists the
//! same permissions; a test holds it to [`crate::state::REQUIRED_PERMISSIONS`].

use super::first_line;
use crate::config::Config;
use crate::gcp::{Gcp, GcpError};
use crate::preflight::Line;
use crate::state::{GcsLocation, GcsStore, StoreError};

/// The bucket's lines; none when the state is a directory.
pub(crate) async fn bucket(config: &Config, gcp: &Gcp) -> Vec<Line> {
    if !config.state.is_bucket() {
        return Vec::new();
    }
    let location = config.state.location();
    let loc = match GcsLocation::parse(&location) {
        Ok(l) => l,
        // Config validation refuses it first; say so anyway.
        Err(e) => {
            return vec![Line::fail(
                format!("state.location: {e}"),
                "set state.location to gs://BUCKET[/PREFIX]",
            )];
        }
    };
    let what = format!("state bucket gs://{}", loc.bucket);
    let store = GcsStore::new(gcp.clone(), loc.clone());
    let report = match store.inspect().await {
        Ok(r) => r,
        Err(StoreError::Gcs { source, .. }) => return vec![bucket_error(&what, &loc, &source)],
        Err(e) => {
            return vec![Line::fail(
                format!("{what}: {e}"),
                "re-run check; if it persists, look at the error",
            )];
        }
    };
    // Whether it exists, even when its settings are not readable: one list
    // call (a permission the daemon needs anyway).
    if let Err(e) = gcp
        .list_objects(&loc.bucket, &format!("{}leases/", loc.prefix))
        .await
    {
        return vec![bucket_error(&what, &loc, &e)];
    }
    let problems = report.problems();
    if problems.is_empty() {
        let mut ok = format!(
            "{what}: exists, uniform bucket-level access, not public, the account holds {}",
            crate::state::REQUIRED_PERMISSIONS.join(", ")
        );
        if report.uniform_access.is_none() || report.public_roles.is_none() {
            ok.push_str(
                " (its settings or IAM policy are not readable by this account: not checked)",
            );
        }
        if let Some(key) = &report.default_kms_key {
            ok.push_str(&format!("; objects encrypted with {key}"));
        }
        return vec![Line::ok(ok)];
    }
    problems
        .into_iter()
        .map(|p| {
            let fix = if p.contains("lacks") {
                format!(
                    "gcloud storage buckets add-iam-policy-binding gs://{} --member=serviceAccount:SA --role=roles/storage.objectUser (docs/iam.md)",
                    loc.bucket
                )
            } else if p.contains("uniform") {
                format!(
                    "gcloud storage buckets update gs://{} --uniform-bucket-level-access",
                    loc.bucket
                )
            } else if p.contains("prevention") {
                format!(
                    "gcloud storage buckets update gs://{} --public-access-prevention",
                    loc.bucket
                )
            } else {
                format!(
                    "remove the allUsers/allAuthenticatedUsers bindings of gs://{}",
                    loc.bucket
                )
            };
            Line::fail(p, fix)
        })
        .collect()
}

fn bucket_error(what: &str, loc: &GcsLocation, e: &GcpError) -> Line {
    if e.code() == Some(404) {
        Line::fail(
            format!("{what}: does not exist"),
            format!(
                "gcloud storage buckets create gs://{} --uniform-bucket-level-access --public-access-prevention",
                loc.bucket
            ),
        )
    } else {
        Line::fail(
            format!("{what}: {}", first_line(e)),
            "grant the daemon's account roles/storage.objectUser on the bucket (docs/iam.md)",
        )
    }
}
