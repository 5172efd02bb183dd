//! The roots every HTTPS client of the process trusts, read from the system
//! once, and the rustls client configuration built on them.
//!
//! reqwest's default TLS set-up reads and parses the system's root bundle
//! (rustls-platform-verifier over rustls-native-certs) again for every client
//! it builds: the Compute/Cloud DNS client, the ACME client, each TLS check
//! after a swap, the metadata-server probe. Here the bundle is parsed once per
//! process and the verifier over it is shared (`Arc`); a client with extra
//! roots (`acme.ca_roots`, `daemon.verify_ca_roots`) gets a copy of the parsed
//! system roots plus its own, so those roots are trusted by that client only.
//!
//! Verification is the same as before, never weaker: WebPKI chain building to
//! the roots, the server name checked, TLS 1.2 and 1.3 with the process's
//! rustls crypto provider (AWS-LC). Where the system roots come from is
//! rustls-native-certs' rule (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the
//! distribution's bundle), as it was under reqwest.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why no TLS client configuration could be built.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TrustError {
    /// Neither the system nor the configuration gave a usable root.
    #[error(
        "no trusted root certificate could be loaded from the system{0}: install the distribution's ca-certificates package, or point SSL_CERT_FILE at a PEM bundle"
    )]
    NoRoots(String),
    /// A configured root is not a usable CA certificate.
    #[error("a configured root certificate cannot be used: {0}")]
    BadRoot(String),
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// The system's roots, parsed once, and a verifier over them (`None` when the
/// system has none: only clients with roots of their own can then connect).
struct System {
    roots: Arc<RootCertStore>,
    verifier: Option<Arc<WebPkiServerVerifier>>,
    /// What went wrong loading them, for [`TrustError::NoRoots`].
    problems: String,
}

static SYSTEM: OnceLock<System> = OnceLock::new();

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

fn system() -> &'static System {
    SYSTEM.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (_, ignored) = roots.add_parsable_certificates(loaded.certs);
        if ignored > 0 {
            tracing::warn!(
                ignored,
                "system root certificates that cannot be parsed were ignored"
            );
        }
        let problems: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        for p in &problems {
            tracing::warn!(error = %p, "loading the system's root certificates");
        }
        // One store: the verifier shares it.
        let roots = Arc::new(roots);
        let verifier = if roots.is_empty() {
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .ok()
        };
        System {
            roots,
            verifier,
            problems: if problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", problems.join("; "))
            },
        }
    })
}

/// A rustls client configuration trusting the system's roots plus `extra`,
/// for reqwest's `tls_backend_preconfigured`: HTTP/2 and HTTP/1.1 offered by
/// ALPN, as reqwest's own set-up does.
pub fn client_config(
    extra: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, TrustError> {
    let sys = system();
    let verifier = if extra.is_empty() {
        sys.verifier
            .clone()
            .ok_or_else(|| TrustError::NoRoots(sys.problems.clone()))?
    } else {
        let mut roots = (*sys.roots).clone();
        for c in extra {
            roots
                .add(c.clone())
                .map_err(|e| TrustError::BadRoot(e.to_string()))?;
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TrustError::Config(e.to_string()))?
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Config(e.to_string()))?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificates of a PEM bundle; an error says why not (none in it, or
/// a block that does not decode).
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM bundle of certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no BEGIN CERTIFICATE block".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    /// A test CA (PEM) and a server chain and key for `names` signed by it.
    fn ca_and_server(
        names: &[&str],
    ) -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "trust test CA");
        let ca = p.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(p, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut lp =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        lp.use_authority_key_identifier_extension = true;
        let leaf = lp.signed_by(&key, &issuer).unwrap();
        (
            ca.pem(),
            vec![leaf.der().clone(), ca.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    }

    /// A full TLS handshake in memory: the client's verdict on the server.
    fn handshake(
        client: rustls::ClientConfig,
        name: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), rustls::Error> {
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn a_server_is_trusted_only_through_a_root_and_for_its_names() {
        let (ca_pem, chain, key) = ca_and_server(&["svc.test"]);
        let ca = pem_certificates(ca_pem.as_bytes()).unwrap();
        assert_eq!(ca.len(), 1);
        // With the CA as an extra root: verified.
        let with = client_config(&ca).unwrap();
        assert_eq!(with.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        handshake(with.clone(), "svc.test", chain.clone(), key.clone_key()).unwrap();
        // Another name: refused.
        let e = handshake(with, "other.test", chain.clone(), key.clone_key()).unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e:?}");
        // The shared system-only configuration does not trust the test CA.
        let system_only = client_config(&[]).unwrap();
        let e = handshake(system_only, "svc.test", chain, key).unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{e:?}"
        );
    }

    #[test]
    fn bad_roots_and_bad_pem_are_refused() {
        let junk = CertificateDer::from(b"not a certificate".to_vec());
        assert!(matches!(
            client_config(&[junk]),
            Err(TrustError::BadRoot(_))
        ));
        assert!(pem_certificates(b"not pem").is_err());
        assert!(pem_certificates(b"").is_err());
    }
}
