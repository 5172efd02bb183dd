//! Real validation of an uploaded self-managed certificate: the PEM chain is parsed
//! with x509-parser, the key with rcgen, and the key must belong to the leaf.

use std::time::{Duration, SystemTime};

use rcgen::PublicKeyData;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey;

use crate::error::ApiError;

/// Google's limit on the uploaded chain (leaf included).
pub const MAX_CHAIN: usize = 5;

/// What the API reports about an accepted certificate.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The leaf's notAfter.
    pub not_after: SystemTime,
    /// The leaf's DNS subject alternative names, in certificate order.
    pub sans: Vec<String>,
}

fn cert_unparsable() -> ApiError {
    ApiError::invalid("The SSL certificate could not be parsed.")
}

fn key_unparsable() -> ApiError {
    ApiError::invalid("The SSL key could not be parsed.")
}

/// Checks `certificate` (PEM chain, leaf first) and `private_key` (PEM) as Google
/// does on `sslCertificates.insert`.
pub fn validate(certificate: &str, private_key: &str) -> Result<Parsed, ApiError> {
    let blocks = Pem::iter_from_buffer(certificate.as_bytes())
        .collect::<Result<Vec<Pem>, _>>()
        .map_err(|_| cert_unparsable())?;
    if blocks.is_empty() || blocks.iter().any(|b| b.label != "CERTIFICATE") {
        return Err(cert_unparsable());
    }
    if blocks.len() > MAX_CHAIN {
        return Err(ApiError::invalid(format!(
            "The SSL certificate chain is too long. The certificate chain must be no greater than {MAX_CHAIN} certs long, found {}.",
            blocks.len()
        )));
    }
    let mut parsed = Vec::with_capacity(blocks.len());
    for b in &blocks {
        parsed.push(b.parse_x509().map_err(|_| cert_unparsable())?);
    }
    let leaf = &parsed[0];

    let mut sans = Vec::new();
    if let Ok(Some(ext)) = leaf.subject_alternative_name() {
        for name in &ext.value.general_names {
            if let GeneralName::DNSName(d) = name {
                sans.push((*d).to_string());
            }
        }
    }
    if sans.is_empty() && leaf.subject().iter_common_name().next().is_none() {
        return Err(ApiError::invalid(
            "The SSL certificate is missing a Common Name(CN) or Subject Alternative Name(SAN).",
        ));
    }

    let unsupported = |what: String| {
        ApiError::invalid(format!(
            "The SSL key type is not supported: {what}. Supported keys are RSA-2048, RSA-3072, RSA-4096, ECDSA P-256 and ECDSA P-384."
        ))
    };
    // Judge an RSA size on the leaf: aws-lc refuses to even load a small RSA key,
    // and "not supported" is the truer answer than "could not be parsed".
    if let Ok(PublicKey::RSA(rsa)) = leaf.public_key().parsed() {
        let bits = rsa.key_size();
        if !matches!(bits, 2048 | 3072 | 4096) {
            return Err(unsupported(format!("RSA-{bits}")));
        }
    }

    // The key: one unencrypted PEM block that rcgen (aws-lc) can load.
    let key_blocks = Pem::iter_from_buffer(private_key.as_bytes())
        .collect::<Result<Vec<Pem>, _>>()
        .map_err(|_| key_unparsable())?;
    match key_blocks.as_slice() {
        [one]
            if matches!(
                one.label.as_str(),
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
            ) => {}
        _ => return Err(key_unparsable()),
    }
    let key = rcgen::KeyPair::from_pem(private_key).map_err(|_| key_unparsable())?;
    let alg = key.algorithm();
    let supported = alg == &rcgen::PKCS_RSA_SHA256
        || alg == &rcgen::PKCS_ECDSA_P256_SHA256
        || alg == &rcgen::PKCS_ECDSA_P384_SHA384;
    if !supported {
        return Err(unsupported(format!("{alg:?}")));
    }

    // Both sides hold the raw public key (RSAPublicKey DER or the EC point), so a
    // byte comparison decides whether the key belongs to the leaf.
    if key.der_bytes() != leaf.public_key().subject_public_key.data.as_ref() {
        return Err(mismatch());
    }

    let ts = leaf.validity().not_after.timestamp();
    let not_after = if ts >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    };
    Ok(Parsed { not_after, sans })
}

fn mismatch() -> ApiError {
    ApiError::invalid("The SSL certificate and key do not match.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> (String, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example.com".into()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key)
    }

    #[test]
    fn accepts_matching_p256_and_reports_sans() {
        let (cert, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let p = validate(&cert, &key.serialize_pem()).unwrap();
        assert_eq!(p.sans, vec!["a.example.com".to_string()]);
    }

    #[test]
    fn rejects_other_key_ed25519_and_garbage() {
        let (cert, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let e = validate(&cert, &other.serialize_pem()).unwrap_err();
        assert!(e.message.contains("do not match"), "{e}");

        let (ed_cert, ed_key) = self_signed(&rcgen::PKCS_ED25519);
        let e = validate(&ed_cert, &ed_key.serialize_pem()).unwrap_err();
        assert!(e.message.contains("not supported"), "{e}");

        let e = validate("hello", &other.serialize_pem()).unwrap_err();
        assert!(e.message.contains("certificate could not be parsed"), "{e}");
        let e = validate(
            &cert,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.message.contains("key could not be parsed"), "{e}");
    }

    /// `openssl genrsa -traditional 1024` and a self-signed certificate for it:
    /// rcgen cannot make keys this small.
    const RSA_1024_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIICDDCCAXWgAwIBAgIUZy91XgP5mLzte7u15Yl+XSOROuswDQYJKoZIhvcNAQEL\nBQAwGDEWMBQGA1UEAwwNci5leGFtcGxlLmNvbTAeFw0yNjExMjgyMjQ2MzFaFw0y\nNjEyMDMyMjQ2MzFaMBgxFjAUBgNVBAMMDXIuZXhhbXBsZS5jb20wgZ8wDQYJKoZI\nhvcNAQEBBQADgY0AMIGJAoGBAM5W6rZhz62XB7kZF9lVNeU6BThxPhEPUtkdcjRT\nLg2hw3qH4zcagRPdidSN4TLInZgvxKVnqQtKxAKSkWxdSlxD45s+q4ay5QCf5/9N\ndAgMMKS0fPjC6xD1vxViKw16VbagzpJvvi+zQkCiBTAcNVjSp6Mb6eBid8ZabYec\nC7aHAgMBAAGjUzBRMB0GA1UdDgQWBBTfFGFgx5Ak6fDAiFy7Aetquzbg9DAfBgNV\nHSMEGDAWgBTfFGFgx5Ak6fDAiFy7Aetquzbg9DAPBgNVHRMBAf8EBTADAQH/MA0G\nCSqGSIb3DQEBCwUAA4GBADc+FmssTtP9pafYdg/YntjesQe69HLMi730jJ9Ukso5\nFSuashs2hIQGIN3/IXQF0fbR0UJzQY31JwdzgOj/d5NEhUQf6kybH3kFifq17S9u\n1+hBnCnU6UER+wujtAmFV3ZpWDORwXJlE/HKxj/1Z5L/vuCerCjXEX+j7QekG0ix\n-----END CERTIFICATE-----\n";
    const RSA_1024_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIICXQIBAAKBgQDOVuq2Yc+tlwe5GRfZVTXlOgU4cT4RD1LZHXI0Uy4NocN6h+M3\nGoET3YnUjeEyyJ2YL8SlZ6kLSsQCkpFsXUpcQ+ObPquGsuUAn+f/TXQIDDCktHz4\nwusQ9b8VYisNelW2oM6Sb74vs0JAogUwHDVY0qejG+ngYnfGWm2HnAu2hwIDAQAB\nAoGAOSNQc5i6TbOY6+TK+d/iwMtETtDtAwRfSMgiq+KsyhGVdATVIpkwTTP3yuhP\nCCUNnur7ZWJDKWFWze+QXZWn1U0P+Y/UZcIrVPOL/iwX27oAl1VUOFEeUuA76yzI\n1YNsIKmTaC1Tmo6jvSbt9mwzpjXAHM6XojBCIxHCS0H7REECQQD8Rb8q0JxATnW3\nw2GIDV1LqivjaKDF2XOSxQGU5pRa79Kb+/dqhccK5NxZKxdVePaSx4JTyrumzaTG\nEqAF17C/AkEA0WNsPv4aQn+lf6/nvjTYp9zz2joDKbhZwOKOdbIhfbemNaEYnKsC\ncMD8FiNuHeIZGmBm/h02ymMLk0OHxfWkOQJBAMrulEQtwbOdKebkHZ3jGkyWnG13\nqfTd4rGLFqWgAnFQgDwIKVQgPyhNR8/W8RNJlhgms3kSGXep70WCkAWDJ2MCQQDN\nkgT2G1cArn13TOYCcbO7qkumlooAbcOAgW1H0+jZmnIN+OlG9wXgWTelLIexwwbO\nRJMZLOlb7b2xiP1FtxLRAkBy5QqKl82r0kVZ5e7oBIwI5gpwEUZqXyR5y+Z8PRTL\ncMpGb4FxQ5zj7AuU4s7PRq5kwvFJQqKZ2XzLNKo6tsQu\n-----END RSA PRIVATE KEY-----\n";

    #[test]
    fn small_rsa_is_unsupported_not_unparsable() {
        let e = validate(RSA_1024_CERT, RSA_1024_KEY).unwrap_err();
        assert!(e.message.contains("not supported: RSA-1024"), "{e}");
    }
}
