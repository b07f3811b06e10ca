//! TLS 1.3 as the whole system speaks it: CAs and leaf certificates made at start (rcgen),
//! PEM files read and written, and the rustls server and client configurations built from
//! them. The gateway's public HTTPS (`services::gateway::tls`) and the mutual TLS between
//! the services ([`super::mesh`]) are both made from these parts.
//!
//! Only TLS 1.3 is offered, client or server: every peer is ours to choose, so nothing
//! needs 1.2, and 1.3 drops the static-RSA and CBC suites and renegotiation that 1.2 still
//! allows. The crypto provider is named (aws-lc-rs, which the load generator's client
//! already builds), never the process default: which one is the default depends on the
//! features other crates of the build turn on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS cannot be set up; each names the file (and the flag that gave it) or the step.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path}: {reason}")]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the TLS settings: {0}")]
    Config(#[from] rustls::Error),
}

/// The one crypto provider of every TLS configuration here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A CA made by this process; its key lives only as long as the value, so once it is
/// dropped nothing else can ever be signed by it.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, for peers to trust.
    pub pem: String,
}

/// A leaf certificate and its private key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A CA named `common_name` that may sign leaves only (path length 0).
    pub fn new(common_name: &str) -> Result<Ca, TlsError> {
        let (key, mut params) = new_params(common_name, Vec::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key)?.pem();
        Ok(Ca {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// A leaf for `names` (IP addresses and DNS names), good for either end of a
    /// connection: the services are servers to their callers and clients of others.
    pub fn leaf(&self, common_name: &str, names: Vec<String>) -> Result<Leaf, TlsError> {
        let (key, mut params) = new_params(common_name, names)?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        Ok(Leaf {
            cert_pem: params.signed_by(&key, &self.issuer)?.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A fresh key, and the parameters of a certificate for it named `common_name`, valid for
/// `names`.
fn new_params(
    common_name: &str,
    names: Vec<String>,
) -> Result<(KeyPair, CertificateParams), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    Ok((key, params))
}

/// Writes a certificate (readable by anyone: it is public).
pub fn write_public(flag: &'static str, path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|e| file_error(flag, path, e))
}

/// Writes a private key, readable by its owner only.
pub fn write_private(flag: &'static str, path: &Path, text: &str) -> Result<(), TlsError> {
    super::files::write_owner_only(path, text).map_err(|e| file_error(flag, path, e))
}

pub fn file_error(flag: &'static str, path: &Path, error: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        flag,
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// The certificates of a PEM file (given by `flag`), at least one.
pub fn read_chain(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(flag, path, e))?;
    if chain.is_empty() {
        return Err(file_error(flag, path, "holds no certificate"));
    }
    Ok(chain)
}

/// The private key of a PEM file (given by `flag`).
pub fn read_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(flag, path, e))
}

/// The CA certificates of a PEM file (given by `flag`), as the roots a peer is checked by.
pub fn read_roots(flag: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_chain(flag, path)? {
        roots
            .add(certificate)
            .map_err(|e| file_error(flag, path, e))?;
    }
    Ok(roots)
}

/// A leaf made in memory, as rustls takes it.
pub fn leaf_der(
    leaf: &Leaf,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let pem_error = |e: rustls::pki_types::pem::Error| rustls::Error::General(e.to_string());
    let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).map_err(pem_error)?;
    Ok((chain, key))
}

/// A server configuration serving `chain`; with `clients`, a client must present a
/// certificate those roots signed or the handshake fails.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    clients: Option<RootCertStore>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    // HTTP/1.1 is the one protocol the servers speak.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting only `roots`; with `identity`, it presents that chain
/// when a server asks for a certificate.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
    };
    Ok(Arc::new(config))
}
