//! Keys, CSRs and the checks every issued chain must pass before anything is
//! uploaded: it parses, the signatures chain, the leaf names exactly what we
//! asked for, the leaf carries our public key, and it is currently valid.

use std::fmt;

use aws_lc_rs::digest;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, RsaKeySize};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::config::KeyType;

/// Why a key, CSR or chain was refused. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Key generation failed (aws-lc-rs / rcgen).
    #[error("cannot generate a {key_type} key: {message}")]
    KeyGeneration { key_type: KeyType, message: String },
    /// A stored private key does not parse.
    #[error("the private key does not parse as PKCS#8 PEM")]
    BadKey,
    /// The CSR could not be built.
    #[error("cannot build the CSR: {0}")]
    Csr(String),
    /// No certificate in the PEM text.
    #[error("the certificate chain is empty: no BEGIN CERTIFICATE block")]
    EmptyChain,
    /// The PEM is malformed or truncated.
    #[error("the certificate chain is not valid PEM (block {index}): {message}")]
    BadPem { index: usize, message: String },
    /// A certificate does not parse as X.509.
    #[error("certificate {index} of the chain does not parse as X.509: {message}")]
    BadCertificate { index: usize, message: String },
    /// A certificate is not signed by the next one.
    #[error("certificate {index} of the chain is not signed by certificate {}: {message}", index + 1)]
    BrokenChain { index: usize, message: String },
    /// The leaf's DNS names differ from the requested ones.
    #[error("the certificate names {got:?}, but {expected:?} were requested")]
    WrongNames {
        expected: Vec<String>,
        got: Vec<String>,
    },
    /// The leaf's public key is not ours.
    #[error("the certificate's public key does not match our private key")]
    KeyMismatch,
    /// More certificates than Google's load balancers accept.
    #[error(
        "the CA's chain has {count} certificates after dropping a served root; \
         Google's sslCertificates accept at most {MAX_CHAIN}"
    )]
    ChainTooLong { count: usize },
    /// The leaf is expired or not yet valid.
    #[error("the certificate is valid from {not_before} to {not_after}, not now ({now})")]
    NotCurrentlyValid {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    },
}

/// A private key in PKCS#8 PEM. Its `Debug` and `Display` never show the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretPem(String);

impl SecretPem {
    /// Wraps PEM text.
    pub fn new(pem: String) -> Self {
        SecretPem(pem)
    }
    /// The PEM text: only for uploading, storing, or loading the key.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Parses it back into a key pair.
    pub fn key_pair(&self) -> Result<KeyPair, CertError> {
        KeyPair::from_pem(&self.0).map_err(|_| CertError::BadKey)
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPem(<redacted>)")
    }
}

/// Generates a fresh key of this type.
pub fn generate_key(key_type: KeyType) -> Result<KeyPair, CertError> {
    let gen_err = |e: rcgen::Error| CertError::KeyGeneration {
        key_type,
        message: e.to_string(),
    };
    match key_type {
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
    }
    .map_err(gen_err)
}

/// The key type of a key pair, if it is one the load balancer accepts.
pub fn key_type_of(key: &KeyPair) -> Option<KeyType> {
    let alg = key.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Some(KeyType::EcdsaP256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Some(KeyType::EcdsaP384)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        // RSA public_key_raw is the PKCS#1 RSAPublicKey DER: its modulus gives the size.
        match rsa_modulus_bits(key.public_key_raw()) {
            Some(2048) => Some(KeyType::Rsa2048),
            Some(3072) => Some(KeyType::Rsa3072),
            Some(4096) => Some(KeyType::Rsa4096),
            _ => None,
        }
    } else {
        None
    }
}

fn rsa_modulus_bits(pkcs1: &[u8]) -> Option<usize> {
    let (_, key) = x509_parser::public_key::RSAPublicKey::from_der(pkcs1).ok()?;
    Some(key.key_size())
}

/// A DER CSR for exactly these DNS names (no subject: CAs take names from the SANs).
pub fn csr_der(key: &KeyPair, names: &[String]) -> Result<Vec<u8>, CertError> {
    let mut params =
        CertificateParams::new(names.to_vec()).map_err(|e| CertError::Csr(e.to_string()))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(key)
        .map_err(|e| CertError::Csr(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// Splits a PEM chain into DER certificates, in file order (leaf first for ACME).
/// Non-certificate blocks are refused: a chain holds certificates only.
pub fn split_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut out = Vec::new();
    for (index, item) in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        let block = item.map_err(|e| CertError::BadPem {
            index,
            message: e.to_string(),
        })?;
        if block.label != "CERTIFICATE" {
            return Err(CertError::BadPem {
                index,
                message: format!("unexpected block {:?}", block.label),
            });
        }
        out.push(CertificateDer::from(block.contents));
    }
    if out.is_empty() {
        return Err(CertError::EmptyChain);
    }
    Ok(out)
}

/// Most certificates Google's `sslCertificates` accept in one chain.
pub const MAX_CHAIN: usize = 5;

/// The chain we upload, from the one the CA returned (already validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingChain {
    /// PEM, leaf first, in the CA's order and text.
    pub pem: String,
    /// Subject of the self-signed root that was dropped, if one was.
    pub dropped_root: Option<String>,
    /// Certificates in `pem`.
    pub count: usize,
}

/// The chain to serve: the CA's, without a trailing self-signed root when an
/// intermediate stays in front of it. A client must already have the root to
/// trust it, so serving it only adds bytes to every handshake; Google wants at
/// least one intermediate and at most [`MAX_CHAIN`] certificates. A leaf signed
/// directly by a root is left as it is (nothing to drop without breaking it).
pub fn serving_chain(chain_pem: &str) -> Result<ServingChain, CertError> {
    let ders = split_chain(chain_pem)?;
    let mut keep = ders.len();
    let mut dropped_root = None;
    if ders.len() >= 3 {
        let last = ders.len() - 1;
        let (_, root) =
            X509Certificate::from_der(&ders[last]).map_err(|e| CertError::BadCertificate {
                index: last,
                message: e.to_string(),
            })?;
        if root.subject() == root.issuer() && root.verify_signature(None).is_ok() {
            keep = last;
            dropped_root = Some(root.subject().to_string());
        }
    }
    if keep > MAX_CHAIN {
        return Err(CertError::ChainTooLong { count: keep });
    }
    let pem = if keep == ders.len() {
        chain_pem.to_string()
    } else {
        // The text up to the end of the last kept block: the CA's own encoding.
        const END: &str = "-----END CERTIFICATE-----";
        let mut cut = 0;
        for _ in 0..keep {
            match chain_pem[cut..].find(END) {
                Some(i) => cut += i + END.len(),
                None => {
                    return Err(CertError::BadPem {
                        index: keep,
                        message: "fewer END CERTIFICATE lines than certificates".into(),
                    });
                }
            }
        }
        format!("{}\n", &chain_pem[..cut])
    };
    Ok(ServingChain {
        pem,
        dropped_root,
        count: keep,
    })
}

/// Facts about a leaf certificate that the installer and the scheduler use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafInfo {
    /// Serial number, lower-case hex without separators.
    pub serial_hex: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// DNS SANs, lower case, in certificate order.
    pub dns_names: Vec<String>,
    /// Issuer common name, when present.
    pub issuer_cn: Option<String>,
    /// `ecdsa-p256`, `ecdsa-p384`, `rsa-2048`, ... or e.g. `rsa-1024`/`unknown`.
    pub public_key_algorithm: String,
    /// The key type when it is one we support.
    pub key_type: Option<KeyType>,
    /// SHA-256 of the leaf DER, lower-case hex.
    pub sha256_hex: String,
    /// ARI certificate id (`base64url(AKI keyIdentifier).base64url(serial)`), when the
    /// leaf has an authority key identifier.
    pub ari_id: Option<String>,
}

impl LeafInfo {
    /// The ARI `replaces` identifier of this certificate.
    pub fn certificate_identifier(&self) -> Option<instant_acme::CertificateIdentifier<'static>> {
        let (aki, serial) = self.ari_id.as_deref()?.split_once('.')?;
        Some(instant_acme::CertificateIdentifier {
            authority_key_identifier: aki.to_string().into(),
            serial: serial.to_string().into(),
        })
    }
}

/// Facts about one DER certificate.
pub fn leaf_info(der: &[u8]) -> Result<LeafInfo, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::BadCertificate {
        index: 0,
        message: e.to_string(),
    })?;
    Ok(info_of(&cert, der))
}

fn info_of(cert: &X509Certificate<'_>, der: &[u8]) -> LeafInfo {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut dns_names = Vec::new();
    let mut aki = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::DNSName(n) = name {
                        dns_names.push(n.to_ascii_lowercase());
                    }
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    let (algorithm, key_type) = public_key_kind(cert);
    LeafInfo {
        serial_hex: hex(cert.raw_serial()).trim_start_matches("00").to_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        dns_names,
        issuer_cn: cert
            .issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        public_key_algorithm: algorithm,
        key_type,
        sha256_hex: hex(digest::digest(&digest::SHA256, der).as_ref()),
        ari_id: aki.map(|k| format!("{}.{}", b64.encode(k), b64.encode(cert.raw_serial()))),
    }
}

fn public_key_kind(cert: &X509Certificate<'_>) -> (String, Option<KeyType>) {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            let kt = match bits {
                2048 => Some(KeyType::Rsa2048),
                3072 => Some(KeyType::Rsa3072),
                4096 => Some(KeyType::Rsa4096),
                _ => None,
            };
            (format!("rsa-{bits}"), kt)
        }
        Ok(PublicKey::EC(point)) => {
            // Uncompressed points: 65 bytes for P-256, 97 for P-384.
            match point.key_size() {
                256 => ("ecdsa-p256".into(), Some(KeyType::EcdsaP256)),
                384 => ("ecdsa-p384".into(), Some(KeyType::EcdsaP384)),
                n => (format!("ecdsa-{n}"), None),
            }
        }
        _ => (format!("unknown ({})", spki.algorithm.algorithm), None),
    }
}

/// Validates an issued chain against what we asked for, then returns the leaf's
/// facts. `names` must be the requested DNS names (any order, lower case).
pub fn validate_chain(
    chain_pem: &str,
    names: &[String],
    key: &KeyPair,
    now: OffsetDateTime,
) -> Result<LeafInfo, CertError> {
    let ders = split_chain(chain_pem)?;
    let mut certs = Vec::with_capacity(ders.len());
    for (index, der) in ders.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::BadCertificate {
            index,
            message: e.to_string(),
        })?;
        certs.push(cert);
    }
    for (index, pair) in certs.windows(2).enumerate() {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|e| CertError::BrokenChain {
                index,
                message: e.to_string(),
            })?;
    }
    // infallible: split_chain never returns an empty list.
    let leaf = &certs[0];
    let info = info_of(leaf, &ders[0]);

    let mut expected: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    expected.sort();
    expected.dedup();
    let mut got = info.dns_names.clone();
    got.sort();
    got.dedup();
    if expected != got {
        return Err(CertError::WrongNames { expected, got });
    }
    if leaf.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CertError::KeyMismatch);
    }
    if now < info.not_before || now >= info.not_after {
        return Err(CertError::NotCurrentlyValid {
            not_before: info.not_before,
            not_after: info.not_after,
            now,
        });
    }
    Ok(info)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // infallible: writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, DnType, IsCa, Issuer};

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "test CA");
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, key: &KeyPair, names: &[&str]) -> String {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.use_authority_key_identifier_extension = true;
        let c = p.signed_by(key, &ca.issuer).unwrap();
        format!("{}{}", c.pem(), ca.pem)
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn good_chain_passes_and_reports_facts() {
        let ca = ca();
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let pem = leaf(&ca, &key, &["example.test", "*.example.test"]);
        let info = validate_chain(
            &pem,
            &names(&["*.example.test", "EXAMPLE.test"]),
            &key,
            now(),
        )
        .unwrap();
        assert_eq!(info.dns_names, vec!["example.test", "*.example.test"]);
        assert_eq!(info.issuer_cn.as_deref(), Some("test CA"));
        assert_eq!(info.key_type, Some(KeyType::EcdsaP256));
        assert_eq!(info.public_key_algorithm, "ecdsa-p256");
        assert_eq!(info.sha256_hex.len(), 64);
        assert!(!info.serial_hex.is_empty());
        assert!(info.not_after > info.not_before);
        assert!(info.ari_id.is_some());
        assert!(info.certificate_identifier().is_some());
        assert_eq!(split_chain(&pem).unwrap().len(), 2);
    }

    #[test]
    fn wrong_names_rejected() {
        let ca = ca();
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let pem = leaf(&ca, &key, &["example.test", "evil.test"]);
        let e = validate_chain(&pem, &names(&["example.test"]), &key, now()).unwrap_err();
        assert!(matches!(e, CertError::WrongNames { .. }), "{e}");
        // A subset is just as wrong.
        let pem = leaf(&ca, &key, &["example.test"]);
        let e = validate_chain(
            &pem,
            &names(&["example.test", "www.example.test"]),
            &key,
            now(),
        )
        .unwrap_err();
        assert!(matches!(e, CertError::WrongNames { .. }), "{e}");
    }

    #[test]
    fn empty_garbage_truncated_rejected() {
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let n = names(&["example.test"]);
        assert!(matches!(
            validate_chain("", &n, &key, now()),
            Err(CertError::EmptyChain)
        ));
        assert!(matches!(
            validate_chain("hello, I am not a certificate\n", &n, &key, now()),
            Err(CertError::EmptyChain)
        ));
        let ca = ca();
        let pem = leaf(&ca, &key, &["example.test"]);
        let truncated = &pem[..pem.len() / 3];
        let e = validate_chain(truncated, &n, &key, now()).unwrap_err();
        assert!(
            matches!(e, CertError::BadPem { .. } | CertError::EmptyChain),
            "{e}"
        );
        let bad_body = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = validate_chain(bad_body, &n, &key, now()).unwrap_err();
        assert!(
            matches!(e, CertError::BadCertificate { index: 0, .. }),
            "{e}"
        );
        let key_block = key.serialize_pem();
        let e = validate_chain(&key_block, &n, &key, now()).unwrap_err();
        assert!(matches!(e, CertError::BadPem { .. }), "{e}");
        assert!(!e.to_string().contains("PRIVATE KEY-----\n"), "{e}");
    }

    #[test]
    fn foreign_key_rejected() {
        let ca = ca();
        let ours = generate_key(KeyType::EcdsaP256).unwrap();
        let theirs = generate_key(KeyType::EcdsaP256).unwrap();
        let pem = leaf(&ca, &theirs, &["example.test"]);
        let e = validate_chain(&pem, &names(&["example.test"]), &ours, now()).unwrap_err();
        assert!(matches!(e, CertError::KeyMismatch), "{e}");
    }

    #[test]
    fn broken_chain_rejected() {
        let ca1 = ca();
        let ca2 = ca();
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let pem = leaf(&ca1, &key, &["example.test"]);
        let leaf_only = &pem[..pem.find("-----END CERTIFICATE-----").unwrap() + 26];
        let mixed = format!("{leaf_only}{}", ca2.pem);
        let e = validate_chain(&mixed, &names(&["example.test"]), &key, now()).unwrap_err();
        assert!(matches!(e, CertError::BrokenChain { index: 0, .. }), "{e}");
    }

    #[test]
    fn expired_rejected() {
        let ca = ca();
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let pem = leaf(&ca, &key, &["example.test"]);
        let later = now() + time::Duration::days(365 * 5000);
        let e = validate_chain(&pem, &names(&["example.test"]), &key, later).unwrap_err();
        assert!(matches!(e, CertError::NotCurrentlyValid { .. }), "{e}");
    }

    #[test]
    fn every_key_type_generates_and_is_recognised() {
        for kt in [
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::Rsa2048,
            KeyType::Rsa3072,
            KeyType::Rsa4096,
        ] {
            let key = generate_key(kt).unwrap();
            assert_eq!(key_type_of(&key), Some(kt));
            let pem = SecretPem::new(key.serialize_pem());
            let back = pem.key_pair().unwrap();
            assert_eq!(key_type_of(&back), Some(kt));
            assert_eq!(format!("{pem:?}"), "SecretPem(<redacted>)");
            let csr = csr_der(&key, &names(&["example.test", "*.example.test"])).unwrap();
            assert!(!csr.is_empty());
            let ca = ca();
            let chain = leaf(&ca, &key, &["example.test"]);
            let info = validate_chain(&chain, &names(&["example.test"]), &key, now()).unwrap();
            assert_eq!(info.key_type, Some(kt));
            assert_eq!(info.public_key_algorithm, kt.as_str());
        }
    }

    /// root -> intermediate -> leaf, as PEMs (leaf first).
    fn three_level() -> (String, String, String) {
        let root = ca();
        let ikey = KeyPair::generate().unwrap();
        let mut ip = CertificateParams::new(Vec::<String>::new()).unwrap();
        ip.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ip.distinguished_name
            .push(DnType::CommonName, "test intermediate");
        let icert = ip.signed_by(&ikey, &root.issuer).unwrap();
        let inter = Ca {
            pem: icert.pem(),
            issuer: Issuer::new(ip, ikey),
        };
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let leaf_and_inter = leaf(&inter, &key, &["example.test"]);
        let leaf_only = split_chain(&leaf_and_inter).unwrap();
        let leaf_pem = leaf_and_inter[..leaf_and_inter.find(&inter.pem).unwrap()].to_string();
        assert_eq!(leaf_only.len(), 2);
        (leaf_pem, inter.pem, root.pem)
    }

    #[test]
    fn serving_chain_drops_a_served_root_behind_an_intermediate() {
        let (lp, inter, root) = three_level();
        let full = format!("{lp}{inter}{root}");
        let s = serving_chain(&full).unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.pem, format!("{lp}{inter}"));
        assert_eq!(s.dropped_root.as_deref(), Some("CN=test CA"));
        assert_eq!(
            split_chain(&s.pem).unwrap(),
            split_chain(&full).unwrap()[..2]
        );
        // Already without the root: unchanged, text and all.
        let s = serving_chain(&format!("{lp}{inter}")).unwrap();
        assert_eq!((s.count, s.dropped_root), (2, None));
        assert_eq!(s.pem, format!("{lp}{inter}"));
        // Leaf + root: the root is the only issuer, so it stays.
        let ca = ca();
        let key = generate_key(KeyType::EcdsaP256).unwrap();
        let two = leaf(&ca, &key, &["example.test"]);
        let s = serving_chain(&two).unwrap();
        assert_eq!((s.count, s.dropped_root, s.pem), (2, None, two));
    }

    #[test]
    fn serving_chain_refuses_more_than_google_accepts() {
        let (lp, inter, _root) = three_level();
        // Six certificates, none a trailing self-signed root.
        let long = format!("{lp}{inter}{inter}{inter}{inter}{inter}");
        let e = serving_chain(&long).unwrap_err();
        assert!(matches!(e, CertError::ChainTooLong { count: 6 }), "{e}");
        assert!(e.to_string().contains("at most 5"), "{e}");
        // Five plus a root is fine once the root is dropped.
        let (_, _, root) = three_level();
        let ok = format!("{lp}{inter}{inter}{inter}{inter}{root}");
        assert_eq!(serving_chain(&ok).unwrap().count, 5);
    }
}
