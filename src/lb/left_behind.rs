//! For `status`, the sslCertificates implementation of
//! [`CertificateTarget::left_behind`](crate::lb::CertificateTarget::left_behind):
//! hand-made certificates that the configured names fully cover and that no
//! configured proxy lists any more, named, with where they are still served
//! and the command that deletes them.

use std::sync::Arc;

use serde::Serialize;

use crate::acme::store;
use crate::config::CertificateConfig;
use crate::gcp::compute::{SslCertificate, TargetHttpsProxy, name_of};
use crate::gcp::{Gcp, GcpError};
use crate::lb::observe::served_from;
use crate::lb::takeover::{self, Overlap};

/// A hand-made certificate ours replaced (or would have), left in the project.
#[derive(Clone, Debug, Serialize)]
pub struct LeftBehind {
    pub name: String,
    /// Proxies of the project that list it (none of them configured here).
    pub served_by: Vec<String>,
    /// In words, with what to do.
    pub message: String,
    /// Deletes it (when no proxy lists it).
    pub delete_command: Option<String>,
}

/// Every proxy and certificate of the project, read once for all entries.
#[derive(Default)]
pub struct Project {
    read: tokio::sync::OnceCell<Lists>,
}

/// Why the certificates left behind cannot be looked for: listing the
/// project's proxies or certificates failed (shared by every entry of one
/// `status` run, hence the `Arc`).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct LeftBehindError(Arc<GcpError>);

impl LeftBehindError {
    pub(crate) fn new(e: GcpError) -> LeftBehindError {
        LeftBehindError(Arc::new(e))
    }
}

type Lists = (
    Result<Vec<TargetHttpsProxy>, LeftBehindError>,
    Result<Vec<SslCertificate>, LeftBehindError>,
);

impl Project {
    async fn lists(&self, gcp: &Gcp) -> &Lists {
        self.read
            .get_or_init(|| async {
                let proxies = gcp
                    .list_target_https_proxies()
                    .await
                    .map_err(|e| LeftBehindError(Arc::new(e)));
                let certificates = gcp
                    .list_ssl_certificates(None)
                    .await
                    .map_err(|e| LeftBehindError(Arc::new(e)));
                (proxies, certificates)
            })
            .await
    }
}

/// The hand-made certificates `cert` left behind; `Err` says why they cannot
/// be looked for.
pub(crate) async fn left_behind(
    gcp: &Gcp,
    cert: &CertificateConfig,
    project: &Project,
) -> Result<Vec<LeftBehind>, LeftBehindError> {
    let (proxies, certificates) = match project.lists(gcp).await {
        (Ok(p), Ok(c)) => (p, c),
        (Err(e), _) | (_, Err(e)) => return Err(e.clone()),
    };
    let names = store::normalize_names(&cert.domains);
    let mut found = Vec::new();
    for c in certificates {
        let served = served_from(&cert.name, "", c.clone());
        let listed = served.listed();
        if listed.marked || takeover::overlap(&names, &listed.sans) != Overlap::Covered {
            continue;
        }
        let served_by: Vec<String> = proxies
            .iter()
            .filter(|p| p.ssl_certificates.iter().any(|u| name_of(u) == c.name))
            .map(|p| p.name.clone())
            .collect();
        if served_by
            .iter()
            .any(|p| cert.target_https_proxies.contains(p))
        {
            // Still on a configured proxy: the reasons say it.
            continue;
        }
        let adopted = cert.adopt.contains(&c.name);
        let (message, delete_command) = if served_by.is_empty() {
            let cmd = takeover::delete_command(&gcp.project, &c.name);
            (
                format!(
                    "hand-made sslCertificate {} (for {}) is no longer served by any proxy{}; delete it with: {cmd}",
                    c.name,
                    listed.sans.join(", "),
                    if adopted {
                        "; it is adopted, so the next renewal deletes it"
                    } else {
                        "; gclb-acme keeps it"
                    }
                ),
                Some(cmd),
            )
        } else {
            (
                format!(
                    "hand-made sslCertificate {} (for {}) is still served by target HTTPS proxy {}, which is not configured for {}: add it to target_https_proxies to have it replaced there too",
                    c.name,
                    listed.sans.join(", "),
                    served_by.join(", "),
                    cert.name
                ),
                None,
            )
        };
        found.push(LeftBehind {
            name: c.name.clone(),
            served_by,
            message,
            delete_command,
        });
    }
    Ok(found)
}
