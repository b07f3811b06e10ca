//! HTTPS at the gateway: the rustls server configuration, from a certificate and key given
//! as PEM files, or from a throwaway CA and a leaf for 127.0.0.1 and localhost made at start
//! (rcgen), whose CA certificate is written out for clients to trust. The parts (CA, leaf,
//! TLS 1.3-only configurations) are `platform::tls`'s, shared with the services' mutual TLS.
//!
//! The gateway is the system's one public entry and every client of it is ours to choose
//! (the load generator, reqwest, curl, schemathesis all speak 1.3), so TLS 1.3 only costs
//! nothing; its handshake takes one round trip instead of two.
//!
//! [`throwaway_files`] is the same certificate written to a directory, for a supervisor
//! that starts the gateway and must tell clients which CA to trust.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub use crate::platform::tls::TlsError;
use crate::platform::tls::{self as shared, Ca};

/// The names the throwaway leaf is valid for: where the gateway listens by default.
const LOCAL_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A CA made for this process and a leaf it signed, as PEM.
pub struct Throwaway {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a CA and a leaf for [`LOCAL_NAMES`]; the CA's key is dropped here, so nothing
/// else can ever be signed by it.
pub fn throwaway() -> Result<Throwaway, TlsError> {
    let ca = Ca::new("faultline gateway throwaway CA")?;
    let leaf = ca.leaf("faultline gateway", LOCAL_NAMES.map(String::from).to_vec())?;
    Ok(Throwaway {
        ca_pem: ca.pem,
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
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
    shared::write_public("--tls-ca-out", &files.ca, &made.ca_pem)?;
    shared::write_public("--tls-cert", &files.cert, &made.cert_pem)?;
    shared::write_private("--tls-key", &files.key, &made.key_pem)?;
    Ok(files)
}

/// The server configuration for a chain and key given as PEM files.
pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = shared::read_chain("--tls-cert", cert)?;
    let key = shared::read_key("--tls-key", key)?;
    shared::server_config(chain, key, None)
}

/// The server configuration for a [`Throwaway`].
pub fn from_throwaway(made: &Throwaway) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = shared::leaf_der(&shared::Leaf {
        cert_pem: made.cert_pem.clone(),
        key_pem: made.key_pem.clone(),
    })?;
    shared::server_config(chain, key, None)
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
    let config = shared::client_config(shared::read_roots("CA", ca)?, None)?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let mut stream = tokio_rustls::TlsConnector::from(config)
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
