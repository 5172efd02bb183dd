//! The ACME account: created once per directory URL, stored in the state
//! directory, reused on every later run.
//!
//! The file name is a hash of the directory URL, so pointing the config at
//! another CA (or staging) yields a separate account instead of silently mixing
//! credentials. The file holds the account key: it is written 0600, atomically,
//! and never logged.

use std::path::Path;

use base64::Engine;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::acme::http::{self, AcmeHttp, Endpoint};
use crate::acme::{AcmeError, RetryConfig, retrying};
use crate::config::{AcmeConfig, EabConfig};
use crate::state::State;

/// Subdirectory of the state dir holding account files.
pub(crate) const ACCOUNTS_DIR: &str = "accounts";

/// What we keep about an account.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    /// The directory URL, checked on load against the hash-derived file name.
    directory: String,
    contact: Vec<String>,
    #[serde(default)]
    eab_kid: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// instant-acme's credentials (account URL and PKCS#8 key).
    credentials: AccountCredentials,
}

/// The state-dir file name of the account for this directory URL.
pub fn account_file(directory_url: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory_url.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{ACCOUNTS_DIR}/{hex}.json")
}

/// A ready account plus how we got it.
pub(crate) struct LoadedAccount {
    pub account: Account,
    /// True when this run created it (a newAccount request was sent).
    pub created: bool,
}

/// Loads the account for `acme.directory` from `state`, or creates and stores it.
pub(crate) async fn load_or_create(
    acme: &AcmeConfig,
    state: &State,
    http: &AcmeHttp,
    retry: &RetryConfig,
) -> Result<LoadedAccount, AcmeError> {
    let file = account_file(&acme.directory);
    if let Some(stored) = state.read_json::<StoredAccount>(&file).await? {
        if stored.directory != acme.directory {
            return Err(AcmeError::Config(format!(
                "{}: holds the account of {}, not of {}: remove it or restore the directory URL",
                state.describe(&file).display(),
                stored.directory,
                acme.directory
            )));
        }
        let contact_changed = stored.contact != acme.contact;
        let account = retrying!(retry, "load_account", {
            http::hint(Endpoint::Other);
            Account::builder_with_http(Box::new(http.clone()))
                .from_credentials(clone_credentials(&stored.credentials)?)
                .await
                .map_err(|e| AcmeError::from_acme("load_account", e))
        })?;
        tracing::info!(account = account.id(), directory = %acme.directory, "ACME account loaded");
        if contact_changed {
            let contacts: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
            retrying!(retry, "update_contacts", {
                http::hint(Endpoint::Other);
                account
                    .update_contacts(&contacts)
                    .await
                    .map_err(|e| AcmeError::from_acme("update_contacts", e))
            })?;
            state
                .write_json(
                    &file,
                    &StoredAccount {
                        contact: acme.contact.clone(),
                        ..stored
                    },
                )
                .await?;
            tracing::info!(account = account.id(), "ACME account contact updated");
        }
        return Ok(LoadedAccount {
            account,
            created: false,
        });
    }

    let eab = acme.eab.as_ref().map(read_eab).transpose()?;
    let contacts: Vec<&str> = acme.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: acme.accept_terms,
        only_return_existing: false,
    };
    // A retry after a lost response may leave an unused account at the CA: harmless,
    // and instant-acme's EAB path has no create-from-existing-key variant.
    let (account, credentials) = retrying!(retry, "new_account", {
        Account::builder_with_http(Box::new(http.clone()))
            .create(&new, acme.directory.clone(), eab.as_ref())
            .await
            .map_err(|e| AcmeError::from_acme("new_account", e))
    })?;
    // Create-only in a shared bucket: daemons starting together on an empty
    // one agree on the account stored first (orders are resumed only by the
    // account that placed them).
    let stored = state
        .create_json(
            &file,
            &StoredAccount {
                directory: acme.directory.clone(),
                contact: acme.contact.clone(),
                eab_kid: acme.eab.as_ref().map(|e| e.kid.clone()),
                created_at: OffsetDateTime::now_utc(),
                credentials,
            },
        )
        .await?;
    if !stored {
        tracing::info!(unused = account.id(), directory = %acme.directory, "another gclb-acme process stored an account for this CA first: using that one (the one just created stays unused at the CA)");
        return Box::pin(load_or_create(acme, state, http, retry)).await;
    }
    tracing::info!(account = account.id(), directory = %acme.directory, file = %file, "ACME account created");
    Ok(LoadedAccount {
        account,
        created: true,
    })
}

/// AccountCredentials is neither Clone nor Debug: round-trip through JSON.
fn clone_credentials(c: &AccountCredentials) -> Result<AccountCredentials, AcmeError> {
    serde_json::to_value(c)
        .and_then(serde_json::from_value)
        .map_err(|_| AcmeError::Config("stored account credentials do not round-trip".into()))
}

/// Reads the EAB HMAC key (base64url, padded or not). Errors name the file only.
fn read_eab(eab: &EabConfig) -> Result<ExternalAccountKey, AcmeError> {
    let key = decode_hmac_key_file(&eab.hmac_key_file)?;
    Ok(ExternalAccountKey::new(eab.kid.clone(), &key))
}

fn decode_hmac_key_file(path: &Path) -> Result<Vec<u8>, AcmeError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AcmeError::Config(format!(
            "acme.eab.hmac_key_file {}: cannot read: {e}",
            path.display()
        ))
    })?;
    let trimmed = text.trim().trim_end_matches('=');
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .map_err(|_| {
            AcmeError::Config(format!(
                "acme.eab.hmac_key_file {}: not a base64url HMAC key",
                path.display()
            ))
        })?;
    if key.is_empty() {
        return Err(AcmeError::Config(format!(
            "acme.eab.hmac_key_file {}: the key is empty",
            path.display()
        )));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_depends_on_directory() {
        let a = account_file("https://acme-v02.api.letsencrypt.org/directory");
        let b = account_file("https://acme-staging-v02.api.letsencrypt.org/directory");
        assert_ne!(a, b);
        assert!(a.starts_with("accounts/") && a.ends_with(".json"));
        assert_eq!(
            a,
            account_file("https://acme-v02.api.letsencrypt.org/directory")
        );
    }

    #[test]
    fn eab_key_errors_never_show_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("hmac");
        std::fs::write(&p, "not*base64*SECRETVALUE\n").unwrap();
        let e = decode_hmac_key_file(&p).unwrap_err().to_string();
        assert!(e.contains("hmac") && !e.contains("SECRETVALUE"), "{e}");
        std::fs::write(
            &p,
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n",
        )
        .unwrap();
        assert_eq!(decode_hmac_key_file(&p).unwrap().len(), 48);
        let e = decode_hmac_key_file(&tmp.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"));
    }
}
