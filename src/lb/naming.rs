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

// Certificate Manager (a `[[certificates]]` entry with `certificate_map`).
// Its resources carry labels, so ownership is marked there, not in a description.

/// Label key/value on every Certificate Manager resource we create.
pub const LABEL_MANAGED_BY: (&str, &str) = ("managed-by", "gclb-acme");
/// Label key whose value is the `[[certificates]]` name a resource belongs to.
pub const LABEL_CERTIFICATE: &str = "gclb-acme-certificate";
/// Id of the PRIMARY map entry when gclb-acme creates it.
pub const PRIMARY_ENTRY_ID: &str = "gclb-acme-primary";

/// The Certificate Manager certificate id of `[[certificates]]` `name`: stable,
/// since a renewal patches it in place (at most 10 + 50 = 60 characters).
pub fn cm_certificate_id(name: &str) -> String {
    format!("gclb-acme-{name}")
}

/// The map entry id for `hostname` (normalised, `*.` allowed): readable, and
/// unique because it ends with 8 hex digits of the SHA-256 of the hostname
/// (`a-b.example.com` and `a.b-example.com` would otherwise both be
/// `a-b-example-com`). `*.example.com` -> `wildcard-example-com-<hash>`; at most 63.
pub fn map_entry_id(hostname: &str) -> String {
    let hash: String = sha2::Sha256::digest(hostname.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let readable = match hostname.strip_prefix("*.") {
        Some(rest) => format!("wildcard-{rest}"),
        None => hostname.to_string(),
    };
    let mut prefix: String = readable
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            _ => '-',
        })
        .collect();
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
        prefix.insert_str(0, "host-");
    }
    // 63 = prefix + '-' + 8 hex digits.
    prefix.truncate(63 - 9);
    let prefix = prefix.trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// The labels of a Certificate Manager resource of ours for `[[certificates]]` `name`.
pub fn cm_labels(name: &str) -> std::collections::BTreeMap<String, String> {
    [
        (
            LABEL_MANAGED_BY.0.to_string(),
            LABEL_MANAGED_BY.1.to_string(),
        ),
        (LABEL_CERTIFICATE.to_string(), name.to_string()),
    ]
    .into_iter()
    .collect()
}

/// Whether labels mark a Certificate Manager resource as ours for `name`.
pub fn cm_is_ours(name: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(LABEL_MANAGED_BY.0).map(String::as_str) == Some(LABEL_MANAGED_BY.1)
        && labels.get(LABEL_CERTIFICATE).map(String::as_str) == Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_manager_ids_are_valid_unique_and_readable() {
        let long = "a".repeat(crate::config::MAX_CERT_NAME);
        assert!(crate::names::is_gcp_name(&cm_certificate_id(&long), 63));
        let www = map_entry_id("www.example.com");
        assert!(www.starts_with("www-example-com-"), "{www}");
        let wild = map_entry_id("*.example.com");
        assert!(wild.starts_with("wildcard-example-com-"), "{wild}");
        assert_ne!(
            map_entry_id("a-b.example.com"),
            map_entry_id("a.b-example.com")
        );
        assert!(map_entry_id("1.example.com").starts_with("host-1-example-com-"));
        let deep = format!("{}.example.com", ["label"; 40].join("."));
        for h in [
            "www.example.com",
            "*.example.com",
            "1.example.com",
            deep.as_str(),
            "xn--bcher-kva.example",
        ] {
            let id = map_entry_id(h);
            assert!(crate::names::is_gcp_name(&id, 63), "{h} -> {id}");
            assert_eq!(id, map_entry_id(h), "stable");
        }
        let labels = cm_labels("app");
        assert!(cm_is_ours("app", &labels));
        assert!(!cm_is_ours("other", &labels));
        let mut theirs = labels.clone();
        theirs.remove(LABEL_MANAGED_BY.0);
        assert!(!cm_is_ours("app", &theirs));
    }

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
