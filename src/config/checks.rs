//! Checks of single values (URLs, `host:port`, PEM files) that `validate` turns
//! into problems under the key that holds the value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::names::normalize_dns_name;

/// A URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    // The URL parser silently drops surrounding spaces and any tab or newline, so
    // the string we keep (and send) would not be the URL that was checked.
    #[error(
        "{0:?} contains a space or control character: expected a URL like \"https://host/path\""
    )]
    Whitespace(String),
    /// `reason` is the URL parser's text (its error type is not ours to name).
    #[error("\"{url}\" is not a URL ({reason}): expected e.g. \"https://host/path\"")]
    NotUrl { url: String, reason: String },
    #[error("\"{0}\" uses http: expected an https URL (http is accepted only for localhost)")]
    Http(String),
    #[error("\"{url}\" has scheme \"{scheme}\": expected https")]
    Scheme { url: String, scheme: String },
}

pub(super) fn check_url(url: &str, https_only: bool) -> Result<(), UrlError> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::Whitespace(url.to_string()));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| UrlError::NotUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    let loopback = matches!(
        parsed.host_str(),
        Some("localhost") | Some("127.0.0.1") | Some("[::1]")
    );
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if !https_only || loopback => Ok(()),
        "http" => Err(UrlError::Http(url.to_string())),
        other => Err(UrlError::Scheme {
            url: url.to_string(),
            scheme: other.to_string(),
        }),
    }
}

const HOST_PORT_EXPECTED: &str =
    "expected \"host:port\", e.g. \"ns-cloud-a1.googledomains.com:53\" or \"127.0.0.1:8053\"";

/// A `host:port` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostPortError {
    #[error("\"{0}\" has no port: {HOST_PORT_EXPECTED}")]
    NoPort(String),
    #[error("\"{0}\" has a bad port: {HOST_PORT_EXPECTED}")]
    BadPort(String),
    #[error("\"{0}\" has a bad host: {HOST_PORT_EXPECTED}")]
    BadHost(String),
}

pub(super) fn check_host_port(s: &str) -> Result<(), HostPortError> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(HostPortError::NoPort(s.to_string()));
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(HostPortError::BadPort(s.to_string()));
    }
    if normalize_dns_name(host).is_err() && host != "localhost" {
        return Err(HostPortError::BadHost(s.to_string()));
    }
    Ok(())
}

/// A file of CA certificates that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error(
        "cannot read \"{}\": {source}; expected a PEM file of CA certificates",
        file.display()
    )]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// `reason` is the X.509 parser's text.
    #[error("\"{}\" holds a certificate that does not parse: {reason}", file.display())]
    Certificate { file: PathBuf, reason: String },
    #[error("\"{}\" is not valid PEM: {reason}", file.display())]
    Pem { file: PathBuf, reason: String },
    #[error(
        "\"{}\" holds no \"BEGIN CERTIFICATE\" block: expected a PEM file of CA certificates",
        .0.display()
    )]
    Empty(PathBuf),
}

pub(super) fn check_pem_certificates(f: &Path) -> Result<(), PemError> {
    let bytes = std::fs::read(f).map_err(|source| PemError::Read {
        file: f.to_path_buf(),
        source,
    })?;
    let mut count = 0;
    for item in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        match item {
            Ok(pem) if pem.label == "CERTIFICATE" => {
                pem.parse_x509().map_err(|e| PemError::Certificate {
                    file: f.to_path_buf(),
                    reason: e.to_string(),
                })?;
                count += 1;
            }
            Ok(_) => {}
            Err(e) => {
                return Err(PemError::Pem {
                    file: f.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        }
    }
    if count == 0 {
        return Err(PemError::Empty(f.to_path_buf()));
    }
    Ok(())
}
