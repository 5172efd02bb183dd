//! How the resources we create are named and marked, so a retried upload finds its
//! own certificate, and cleanup and teardown touch only what is ours.
//!
//! An sslCertificate of ours is named `<certificate name>-<first 12 hex digits of
//! the SHA-256 of the leaf DER>` (at most 50 + 1 + 12 = 63 characters) and its
//! description starts with [`MARKER`].

use sha2::Digest;

/// Prefix of the `description` of every resource we create.
pub const MARKER: &str = "gclb-acme:";

/// Hex digits of the leaf hash in the resource name.
pub const HASH_LEN: usize = 12;

/// Lower-case hex SHA-256 of the leaf certificate's DER.
pub fn leaf_sha256(leaf_der: &[u8]) -> String {
    sha2::Sha256::digest(leaf_der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The sslCertificates name for a certificate config `name` and leaf hash.
pub fn certificate_resource_name(name: &str, leaf_sha256: &str) -> String {
    let h = &leaf_sha256[..leaf_sha256.len().min(HASH_LEN)];
    format!("{name}-{h}")
}

/// The description marking a certificate as ours.
pub fn certificate_description(name: &str, leaf_sha256: &str) -> String {
    format!(
        "{MARKER} certificate={name} leaf-sha256={leaf_sha256} (created by gclb-acme; it deletes this resource when it is replaced)"
    )
}

/// What a description of ours says: `(certificate config name, leaf hash)`.
pub fn parse_description(description: &str) -> Option<(String, String)> {
    let rest = description.strip_prefix(MARKER)?;
    let mut name = None;
    let mut hash = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix("certificate=") {
            name = Some(v.to_string());
        } else if let Some(v) = word.strip_prefix("leaf-sha256=") {
            hash = Some(v.to_string());
        }
    }
    Some((name?, hash?))
}

/// Whether a resource with this name and description is one of ours for the
/// certificate config `name`: the marker must name it and the resource name must
/// be `<name>-<hash prefix>`. Both must hold, so neither a look-alike name nor a
/// copied description is enough.
pub fn is_ours(cert_name: &str, resource_name: &str, description: Option<&str>) -> bool {
    let Some((n, h)) = description.and_then(parse_description) else {
        return false;
    };
    n == cert_name && resource_name == certificate_resource_name(cert_name, &h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_in_63_and_round_trip() {
        let h = leaf_sha256(b"leaf");
        assert_eq!(h.len(), 64);
        let long = "a".repeat(crate::config::MAX_CERT_NAME);
        let n = certificate_resource_name(&long, &h);
        assert_eq!(n.len(), 63);
        assert!(crate::names::is_gcp_name(&n, 63));
        let d = certificate_description("app", &h);
        assert_eq!(parse_description(&d), Some(("app".into(), h.clone())));
        assert!(is_ours(
            "app",
            &certificate_resource_name("app", &h),
            Some(&d)
        ));
    }

    #[test]
    fn foreign_resources_are_not_ours() {
        let h = leaf_sha256(b"leaf");
        let d = certificate_description("app", &h);
        assert!(!is_ours("app", "app-000000000000", Some(&d)));
        assert!(!is_ours(
            "other",
            &certificate_resource_name("app", &h),
            Some(&d)
        ));
        assert!(!is_ours("app", &certificate_resource_name("app", &h), None));
        assert!(!is_ours(
            "app",
            &certificate_resource_name("app", &h),
            Some("uploaded by hand")
        ));
    }
}
