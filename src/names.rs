//! Names: DNS names (with ACME's wildcard rule) and GCP resource names.

/// Why a DNS name was refused; the text completes "`"x"` is not a valid DNS name: ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    #[error("it is empty")]
    Empty,
    #[error("it is {0} characters long; at most 253 are allowed")]
    TooLong(usize),
    #[error("label \"{0}\" is longer than 63 characters")]
    LabelTooLong(String),
    #[error("it has an empty label")]
    EmptyLabel,
    #[error(
        "label \"{0}\" may hold only letters, digits and '-' (write internationalised names as punycode, xn--...)"
    )]
    BadCharacter(String),
    #[error("label \"{0}\" starts or ends with '-'")]
    Hyphen(String),
    #[error("a wildcard '*' is allowed only as the whole leftmost label (\"*.example.com\")")]
    Wildcard,
    #[error(
        "it needs at least two labels (\"example.com\"); certificate authorities refuse single-label names"
    )]
    SingleLabel,
    #[error(
        "the top-level label \"{0}\" is all digits; IP addresses cannot be validated with DNS-01"
    )]
    NumericTld(String),
}

/// Checks a DNS name for a certificate: letters, digits and hyphens, labels of 1 to 63
/// characters, at most 253 in all, `*` only as the whole leftmost label. Returns the
/// name in lower case without a trailing dot.
pub fn normalize_dns_name(name: &str) -> Result<String, DnsNameError> {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if n.is_empty() {
        return Err(DnsNameError::Empty);
    }
    if n.len() > 253 {
        return Err(DnsNameError::TooLong(n.len()));
    }
    let labels: Vec<&str> = n.split('.').collect();
    if labels.len() < 2 {
        return Err(DnsNameError::SingleLabel);
    }
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return Err(DnsNameError::EmptyLabel);
        }
        if label.contains('*') {
            if i == 0 && *label == "*" && labels.len() >= 3 {
                continue;
            }
            if i == 0 && *label == "*" {
                // "*.com": a wildcard directly under a TLD is never issuable.
                return Err(DnsNameError::Wildcard);
            }
            return Err(DnsNameError::Wildcard);
        }
        if label.len() > 63 {
            return Err(DnsNameError::LabelTooLong(label.to_string()));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(DnsNameError::BadCharacter(label.to_string()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DnsNameError::Hyphen(label.to_string()));
        }
    }
    if let Some(tld) = labels.last()
        && tld.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(DnsNameError::NumericTld(tld.to_string()));
    }
    Ok(n)
}

/// The name without its wildcard label: `*.example.com` -> `example.com`.
pub fn base_name(name: &str) -> &str {
    name.strip_prefix("*.").unwrap_or(name)
}

/// Whether `name` is a GCP resource name: `[a-z]([-a-z0-9]*[a-z0-9])?`, 1 to `max`
/// characters.
pub fn is_gcp_name(name: &str, max: usize) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// The explanation used wherever a GCP name is refused.
pub fn gcp_name_rule(max: usize) -> String {
    format!(
        "expected a GCP resource name: 1 to {max} characters, lowercase letters, digits and '-', starting with a letter and not ending with '-'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalizes() {
        assert_eq!(
            normalize_dns_name("App.Example.COM.").unwrap(),
            "app.example.com"
        );
        assert_eq!(
            normalize_dns_name("*.example.com").unwrap(),
            "*.example.com"
        );
        assert_eq!(
            normalize_dns_name("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn refuses_each_rule() {
        assert_eq!(normalize_dns_name(""), Err(DnsNameError::Empty));
        assert_eq!(
            normalize_dns_name("localhost"),
            Err(DnsNameError::SingleLabel)
        );
        assert!(matches!(
            normalize_dns_name("exa mple.com"),
            Err(DnsNameError::BadCharacter(_))
        ));
        assert_eq!(
            normalize_dns_name("a.*.example.com"),
            Err(DnsNameError::Wildcard)
        );
        assert_eq!(
            normalize_dns_name("*a.example.com"),
            Err(DnsNameError::Wildcard)
        );
        assert_eq!(normalize_dns_name("*.com"), Err(DnsNameError::Wildcard));
        assert_eq!(normalize_dns_name("a..com"), Err(DnsNameError::EmptyLabel));
        assert!(matches!(
            normalize_dns_name("-a.com"),
            Err(DnsNameError::Hyphen(_))
        ));
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            normalize_dns_name(&long_label),
            Err(DnsNameError::LabelTooLong(_))
        ));
        let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(matches!(
            normalize_dns_name(&long),
            Err(DnsNameError::TooLong(_))
        ));
        assert!(matches!(
            normalize_dns_name("10.0.0.1"),
            Err(DnsNameError::NumericTld(_))
        ));
        assert!(matches!(
            normalize_dns_name("bücher.example"),
            Err(DnsNameError::BadCharacter(_))
        ));
    }

    #[test]
    fn gcp_names() {
        assert!(is_gcp_name("cloud-run-iap-http-proxy", 63));
        assert!(is_gcp_name("a", 63));
        assert!(!is_gcp_name("", 63));
        assert!(!is_gcp_name("1abc", 63));
        assert!(!is_gcp_name("abc-", 63));
        assert!(!is_gcp_name("ABC", 63));
        assert!(!is_gcp_name("a_b", 63));
        assert!(!is_gcp_name(&"a".repeat(64), 63));
        assert!(is_gcp_name(&"a".repeat(63), 63));
    }
}
