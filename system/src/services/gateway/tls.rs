//! HTTPS at the gateway: the rustls server configuration, from a certificate and key given
//! as PEM files, or from a throwaway CA and a leaf for 127.0.0.1 and localhost made at start
//! (rcgen), whose CA certificate is written out for clients to trust.
//!
//! Only TLS 1.3 is offered. The gateway is the system's one public entry and every client
//! of it is ours to choose (the load generator, reqwest, curl, schemathesis all speak 1.3),
//! so nothing needs 1.2; 1.3 drops the static-RSA and CBC suites and renegotiation that
//! 1.2 still allows, and its handshake takes one round trip instead of two. ALPN offers
//! HTTP/1.1 only, the one protocol the gateway's server speaks.
//!
//! [`throwaway_files`] is the same certificate written to a directory, for a supervisor
//! that starts the gateway and must tell clients which CA to trust.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The names the throwaway leaf is valid for: where the gateway listens by default.
const LOCAL_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// Why the gateway cannot serve HTTPS; each names the file or step at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {path}: {reason}")]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("making the throwaway certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the TLS settings: {0}")]
    Config(#[from] rustls::Error),
}

/// A CA made for this process and a leaf it signed, as PEM.
pub struct Throwaway {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a CA and a leaf for [`LOCAL_NAMES`]; the CA's key is dropped here, so nothing
/// else can ever be signed by it.
pub fn throwaway() -> Result<Throwaway, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "faultline gateway throwaway CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(LOCAL_NAMES.map(String::from).to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "faultline gateway");
    let cert_pem = leaf.signed_by(&leaf_key, &issuer)?.pem();
    Ok(Throwaway {
        ca_pem,
        cert_pem,
        key_pem: leaf_key.serialize_pem(),
    })
}

/// The files [`throwaway_files`] writes.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A [`throwaway`] certificate written to `dir` as `gateway-ca.pem`, `gateway.pem` and
/// `gateway-key.pem` (the key readable by its owner only).
pub fn throwaway_files(dir: &Path) -> Result<TlsFiles, TlsError> {
    let made = throwaway()?;
    let files = TlsFiles {
        ca: dir.join("gateway-ca.pem"),
        cert: dir.join("gateway.pem"),
        key: dir.join("gateway-key.pem"),
    };
    write("--tls-ca-out", &files.ca, &made.ca_pem)?;
    write("--tls-cert", &files.cert, &made.cert_pem)?;
    write_private("--tls-key", &files.key, &made.key_pem)?;
    Ok(files)
}

fn write(flag: &'static str, path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|e| file_error(flag, path, e))
}

fn write_private(flag: &'static str, path: &Path, text: &str) -> Result<(), TlsError> {
    crate::platform::files::write_owner_only(path, text).map_err(|e| file_error(flag, path, e))
}

fn file_error(flag: &'static str, path: &Path, error: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        flag,
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

/// The server configuration for a chain and key given as PEM files.
pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error("--tls-cert", cert, e))?;
    if chain.is_empty() {
        return Err(file_error("--tls-cert", cert, "holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("--tls-key", key, e))?;
    server_config(chain, key)
}

/// The server configuration for a [`Throwaway`].
pub fn from_throwaway(made: &Throwaway) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(made.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let key = PrivateKeyDer::from_pem_slice(made.key_pem.as_bytes())
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    server_config(chain, key)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    // The provider named, not the process default: which one is the default depends on
    // the features other crates of the build turn on.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether the HTTPS server at `base` (`https://host:port`), whose certificate `ca` signed,
/// answers `/health/ready` with 200 within `timeout`: the supervisor's readiness check of a
/// gateway serving HTTPS (the plain one is `platform::http::answers_ready`).
pub async fn answers_ready_over_tls(base: &str, ca: &Path, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, ready_over_tls(base, ca))
        .await
        .is_ok_and(|ready| ready.unwrap_or(false))
}

async fn ready_over_tls(
    base: &str,
    ca: &Path,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let url = url::Url::parse(base)?;
    let host = url.host_str().ok_or("no host")?.to_string();
    let port = url.port_or_known_default().ok_or("no port")?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca)? {
        roots.add(certificate?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.clone())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let request =
        format!("GET /health/ready HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    Ok(head.starts_with(b"HTTP/1.1 200"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throwaway_certificate_makes_a_tls13_only_configuration() {
        let made = throwaway().expect("a certificate");
        assert!(made.ca_pem.contains("BEGIN CERTIFICATE"));
        assert_ne!(made.ca_pem, made.cert_pem, "the leaf is not the CA");
        let config = from_throwaway(&made).expect("a configuration");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_the_flag_and_file() {
        let dir = tempfile::tempdir().expect("a directory");
        let missing = dir.path().join("nothing.pem");
        let error = from_files(&missing, &missing).expect_err("no file");
        assert!(error.to_string().starts_with("--tls-cert "), "{error}");
        assert!(error.to_string().contains("nothing.pem"), "{error}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("written");
        let error = from_files(&empty, &empty).expect_err("no certificate");
        assert!(
            error.to_string().contains("holds no certificate"),
            "{error}"
        );
        let files = throwaway_files(dir.path()).expect("written");
        from_files(&files.cert, &files.key).expect("the written files load");
        let error = from_files(&files.cert, &files.cert).expect_err("a certificate is no key");
        assert!(error.to_string().starts_with("--tls-key "), "{error}");
    }
}
