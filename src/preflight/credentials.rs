//! Which Application Default Credentials the daemon would use, and whose they
//! are, found the way google-cloud-auth looks: `GOOGLE_APPLICATION_CREDENTIALS`,
//! then gcloud's application-default file, then the metadata server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::gcp::{Auth, GcpError};

/// Why credentials are unusable, or none were found.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("unknown credentials type \"{0}\"")]
    UnknownType(String),
    #[error("no \"type\" field")]
    NoType,
    /// google-cloud-auth refused to build the ADC chain.
    #[error(transparent)]
    Adc(Box<GcpError>),
    #[error("cannot build an HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("no metadata server at {host} ({source})")]
    NoMetadata {
        host: String,
        source: reqwest::Error,
    },
    #[error("{host} answered {status} without Metadata-Flavor: Google")]
    NotMetadata {
        host: String,
        status: reqwest::StatusCode,
    },
    #[error("{0}")]
    Body(reqwest::Error),
}

impl From<GcpError> for CredentialsError {
    fn from(e: GcpError) -> Self {
        CredentialsError::Adc(Box::new(e))
    }
}

/// Where credentials were found (it decides the fix when they fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    EnvFile,
    /// gcloud's application-default file.
    Gcloud,
    /// The metadata server.
    Metadata,
    /// Given by the caller (tests).
    Injected,
}

impl Source {
    /// What to do when these credentials yield no token.
    pub fn fix(self) -> &'static str {
        match self {
            Source::EnvFile => {
                "point GOOGLE_APPLICATION_CREDENTIALS at a working credentials file (a new key: gcloud iam service-accounts keys create)"
            }
            Source::Gcloud => "log in again: gcloud auth application-default login",
            Source::Metadata => {
                "give the VM a service account and the cloud-platform access scope (gcloud compute instances set-service-account --scopes=cloud-platform)"
            }
            Source::Injected => "check the credentials given",
        }
    }
}

/// Credentials found, and what we could tell about them.
#[derive(Debug)]
pub struct Credentials {
    pub source: Source,
    /// Where they come from, e.g. `service-account key file /etc/sa.json`.
    pub kind: String,
    /// Whose they are: a service account or user email, when known.
    pub identity: Option<String>,
    /// The `project_id` (or `quota_project_id`) of a credentials file.
    pub file_project: Option<String>,
    /// How tokens are obtained; an error when the credentials are unusable.
    pub auth: Result<Auth, CredentialsError>,
}

/// The result of looking.
#[derive(Debug)]
pub enum Detection {
    Found(Credentials),
    /// Nothing anywhere; says where we looked.
    None(String),
}

/// What a credentials JSON file says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileKind {
    pub kind: String,
    pub identity: Option<String>,
    pub project: Option<String>,
}

/// Reads an ADC JSON file's `type` and the identity it names.
pub fn describe_file(
    text: &str,
    gcloud_account: Option<String>,
) -> Result<FileKind, CredentialsError> {
    let v: Value = serde_json::from_str(text).map_err(CredentialsError::NotJson)?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let project = s("project_id").or_else(|| s("quota_project_id"));
    let (kind, identity) = match s("type").as_deref() {
        Some("service_account") => ("service-account key", s("client_email")),
        // The file holds a refresh token only; gcloud's config names the account.
        Some("authorized_user") => ("gcloud user credentials", gcloud_account),
        Some("external_account") => (
            "workload identity federation",
            s("service_account_impersonation_url")
                .as_deref()
                .and_then(impersonated_email)
                .or_else(|| s("audience")),
        ),
        Some("impersonated_service_account") => (
            "impersonated service account",
            s("service_account_impersonation_url")
                .as_deref()
                .and_then(impersonated_email),
        ),
        Some(other) => return Err(CredentialsError::UnknownType(other.to_string())),
        None => return Err(CredentialsError::NoType),
    };
    Ok(FileKind {
        kind: kind.to_string(),
        identity,
        project,
    })
}

/// `.../serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken` -> the email.
fn impersonated_email(url: &str) -> Option<String> {
    let after = url.rsplit_once("/serviceAccounts/")?.1;
    Some(after.split(':').next()?.to_string())
}

/// The `account` of gcloud's active configuration (`[core] account = ...`).
pub fn gcloud_account(config_text: &str) -> Option<String> {
    let mut in_core = false;
    for line in config_text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_core = l == "[core]";
        } else if in_core
            && let Some((k, v)) = l.split_once('=')
            && k.trim() == "account"
            && !v.trim().is_empty()
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

fn gcloud_dir() -> Option<PathBuf> {
    std::env::var_os("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/gcloud")))
}

fn active_gcloud_account() -> Option<String> {
    let dir = gcloud_dir()?;
    let active = std::fs::read_to_string(dir.join("active_config"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "default".into());
    let text = std::fs::read_to_string(dir.join(format!("configurations/config_{active}"))).ok()?;
    gcloud_account(&text)
}

fn from_file(path: &Path, label: &str, source: Source) -> Credentials {
    let described = std::fs::read_to_string(path)
        .map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|t| describe_file(&t, active_gcloud_account()));
    match described {
        Ok(f) => Credentials {
            source,
            kind: format!("{} ({label}{})", f.kind, path.display()),
            identity: f.identity,
            file_project: f.project,
            auth: Auth::adc().map_err(CredentialsError::from),
        },
        Err(e) => Credentials {
            source,
            kind: format!("{label}{}", path.display()),
            identity: None,
            file_project: None,
            auth: Err(e),
        },
    }
}

/// The metadata server's host, as the Google libraries find it.
fn metadata_host() -> String {
    std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| "metadata.google.internal".into())
}

/// The default service account's email from the metadata server; `Err` when no
/// metadata server answers (as off Google Cloud).
async fn metadata_email(host: &str) -> Result<String, CredentialsError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(1500))
        .build()
        .map_err(CredentialsError::Client)?;
    let resp = client
        .get(format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/default/email"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|source| CredentialsError::NoMetadata {
            host: host.to_string(),
            source,
        })?;
    // A proxy or captive portal may answer too: only Google's server says this.
    let flavor = resp
        .headers()
        .get("metadata-flavor")
        .is_some_and(|v| v.as_bytes() == b"Google");
    if !flavor || !resp.status().is_success() {
        return Err(CredentialsError::NotMetadata {
            host: host.to_string(),
            status: resp.status(),
        });
    }
    Ok(resp
        .text()
        .await
        .map_err(CredentialsError::Body)?
        .trim()
        .to_string())
}

/// Looks for credentials in google-cloud-auth's order.
pub async fn detect() -> Detection {
    if let Some(f) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        return Detection::Found(from_file(
            Path::new(&f),
            "GOOGLE_APPLICATION_CREDENTIALS=",
            Source::EnvFile,
        ));
    }
    if let Some(dir) = gcloud_dir() {
        let adc = dir.join("application_default_credentials.json");
        if adc.is_file() {
            return Detection::Found(from_file(
                &adc,
                "gcloud application-default file ",
                Source::Gcloud,
            ));
        }
    }
    let host = metadata_host();
    match metadata_email(&host).await {
        Ok(email) => Detection::Found(Credentials {
            source: Source::Metadata,
            kind: format!("the VM's service account (metadata server {host})"),
            identity: Some(email),
            file_project: None,
            auth: Auth::adc().map_err(CredentialsError::from),
        }),
        Err(why) => Detection::None(format!(
            "GOOGLE_APPLICATION_CREDENTIALS unset, no gcloud application-default file, {why}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_keys_name_their_email_and_project() {
        let f = describe_file(
            r#"{"type":"service_account","client_email":"acme@p.iam.gserviceaccount.com","project_id":"my-proj","private_key":"x"}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            f.identity.as_deref(),
            Some("acme@p.iam.gserviceaccount.com")
        );
        assert_eq!(f.project.as_deref(), Some("my-proj"));
        assert_eq!(f.kind, "service-account key");
    }

    #[test]
    fn user_credentials_take_the_gcloud_account() {
        let f = describe_file(
            r#"{"type":"authorized_user","client_id":"c","refresh_token":"r","quota_project_id":"qp"}"#,
            Some("alice@example.com".into()),
        )
        .unwrap();
        assert_eq!(f.identity.as_deref(), Some("alice@example.com"));
        assert_eq!(f.project.as_deref(), Some("qp"));
    }

    #[test]
    fn impersonation_names_the_target() {
        let f = describe_file(
            r#"{"type":"impersonated_service_account","service_account_impersonation_url":"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken"}"#,
            None,
        )
        .unwrap();
        assert_eq!(f.identity.as_deref(), Some("sa@p.iam.gserviceaccount.com"));
    }

    #[test]
    fn bad_files_say_why() {
        assert!(
            describe_file("{", None)
                .unwrap_err()
                .to_string()
                .contains("not JSON")
        );
        assert!(
            describe_file("{}", None)
                .unwrap_err()
                .to_string()
                .contains("type")
        );
        assert!(
            describe_file(r#"{"type":"mystery"}"#, None)
                .unwrap_err()
                .to_string()
                .contains("mystery")
        );
    }

    #[test]
    fn gcloud_config_account() {
        let text = "[compute]\naccount = wrong\n[core]\nproject = p\naccount = bob@example.com\n";
        assert_eq!(gcloud_account(text).as_deref(), Some("bob@example.com"));
        assert_eq!(gcloud_account("[core]\nproject = p\n"), None);
    }
}
