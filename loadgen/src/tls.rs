//! HTTPS: the TLS settings of a run, the rustls client built from them once, and
//! what the handshakes cost.
//!
//! [`TlsSettings`] is what the user gives (`--insecure`, `--cacert`, `--cert`/`--key`,
//! `--tls-version`, or a scenario's `[load.tls]`); [`TlsSettings::client_config`]
//! turns it, once per run, into a rustls `ClientConfig` that every connection shares.
//! Sharing it is what makes session resumption work: the config holds the session
//! store (module `resumption`, sized for a run's many connections), so a reconnect
//! resumes the session an earlier connection made.
//! The engine's [`TlsClient`] does the handshakes on its TCP connections; the
//! journeys give the same config to reqwest (`reqwest_config`), so both clients
//! trust the same roots and present the same client certificate.
//!
//! Handshakes are counted and timed apart from requests ([`TlsResults`] in
//! `results.json`, defined by the results crate), and a TLS failure is its own error class (`tls`), counted by its
//! cause ([`TlsCause`]): an unknown CA, a name mismatch, a protocol version, or a
//! refused client certificate.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use hdrhistogram::Histogram;
use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        Resumption,
    },
    crypto::{aws_lc_rs, CryptoProvider},
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::Instant,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use faultline_results::{
    histogram::{new_histogram, record, EncodedHistogram, HistogramCodecError, LatencySummary},
    TlsResults,
};

use crate::error::LoadError;

mod resumption;

use resumption::SessionStore;

/// A TLS protocol version to insist on (`--tls-version`); without one, 1.2 and 1.3
/// are both offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<TlsVersion, String> {
        match text.trim() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            other => Err(format!("TLS version {other:?}: expected 1.2 or 1.3")),
        }
    }
}

/// How to speak TLS to an `https://` target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Accept any server certificate (self-signed test targets).
    pub insecure: bool,
    /// Trust the CAs in this PEM file instead of the built-in roots.
    pub cacert: Option<PathBuf>,
    /// A client certificate chain (PEM) and its key, for targets that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub version: Option<TlsVersion>,
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

/// The ALPN protocol names of HTTP/1.1 and HTTP/2.
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";
pub(crate) const ALPN_HTTP2: &[u8] = b"h2";

impl TlsSettings {
    /// The rustls configuration of a run, offering `alpn` (e.g. `h2`), built once.
    /// A file that cannot be read or holds no usable certificate or key is an error
    /// naming the option and the file.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, LoadError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self.version {
            None => rustls::DEFAULT_VERSIONS,
            Some(TlsVersion::Tls12) => &[&rustls::version::TLS12],
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| bad_tls("--tls-version", None, e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        } else {
            builder.with_root_certificates(self.root_store()?)
        };
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certificates("--cert", cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad_tls("--key", Some(key), e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad_tls("--cert/--key", None, e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) | (None, Some(_)) => {
                return Err(bad_tls(
                    "--cert/--key",
                    None,
                    "a client certificate needs both --cert FILE and --key FILE".into(),
                ))
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // rustls's default store keeps 8 tickets a server: too few for the connections
        // of a run to resume at once (module `resumption`).
        config.resumption = Resumption::store(Arc::new(SessionStore::default()));
        Ok(config)
    }

    fn root_store(&self) -> Result<RootCertStore, LoadError> {
        let mut roots = RootCertStore::empty();
        match &self.cacert {
            Some(path) => {
                for cert in read_certificates("--cacert", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| bad_tls("--cacert", Some(path), e.to_string()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        Ok(roots)
    }

    /// The configuration reqwest is given for the journeys (HTTP/1.1 over TLS).
    pub(crate) fn reqwest_config(&self) -> Result<ClientConfig, LoadError> {
        self.client_config(&[ALPN_HTTP1])
    }
}

fn bad_tls(option: &'static str, path: Option<&Path>, reason: String) -> LoadError {
    let reason = match path {
        Some(path) => format!("{}: {reason}", path.display()),
        None => reason,
    };
    LoadError::InvalidArgument { option, reason }
}

/// Every certificate of a PEM file; none at all is an error too.
fn read_certificates(
    option: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad_tls(option, Some(path), e.to_string()))?;
    if certs.is_empty() {
        return Err(bad_tls(
            option,
            Some(path),
            "no PEM certificate in it".into(),
        ));
    }
    Ok(certs)
}

/// `--insecure`: any certificate is accepted, and so is the handshake's signature
/// made with its key. Checking that signature would prove only that the server holds
/// the key of a certificate nobody vouches for, which anyone in the middle does too;
/// it would cost a public-key verification per full handshake (as much as the rest of
/// the client's handshake), which a handshake-bound load pays on every connection.
/// The provider is kept for the signature schemes the client offers.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS connection failed, as an operator acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsCause {
    /// The server's certificate does not chain to a trusted CA.
    UnknownCa,
    /// The server's certificate is not for the host name connected to.
    NameMismatch,
    /// No protocol version (or other parameter) both sides accept.
    ProtocolVersion,
    /// The server refused the client's certificate, or wanted one and got none.
    ClientCertificate,
    /// The server's certificate is otherwise invalid (expired, revoked, ...).
    BadCertificate,
    /// The server speaks none of the HTTP versions offered by ALPN.
    Alpn,
    Other,
}

impl TlsCause {
    /// The cause of a rustls error.
    pub fn of(error: &rustls::Error) -> TlsCause {
        use rustls::Error;
        match error {
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => TlsCause::UnknownCa,
            Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => TlsCause::NameMismatch,
            Error::InvalidCertificate(_) => TlsCause::BadCertificate,
            Error::PeerIncompatible(_)
            | Error::AlertReceived(
                AlertDescription::ProtocolVersion | AlertDescription::InsufficientSecurity,
            ) => TlsCause::ProtocolVersion,
            Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::AccessDenied,
            ) => TlsCause::ClientCertificate,
            Error::AlertReceived(AlertDescription::NoApplicationProtocol)
            | Error::NoApplicationProtocol => TlsCause::Alpn,
            _ => TlsCause::Other,
        }
    }

    /// The cause of an I/O error, when it carries a rustls error.
    pub fn of_io_error(error: &io::Error) -> Option<TlsCause> {
        let inner = error.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(TlsCause::of(inner))
    }

    /// The name results count it under.
    pub fn name(self) -> &'static str {
        match self {
            TlsCause::UnknownCa => "unknown_ca",
            TlsCause::NameMismatch => "name_mismatch",
            TlsCause::ProtocolVersion => "protocol_version",
            TlsCause::ClientCertificate => "client_certificate",
            TlsCause::BadCertificate => "bad_certificate",
            TlsCause::Alpn => "alpn",
            TlsCause::Other => "other",
        }
    }

    /// What to do about it, in words.
    pub fn advice(self) -> &'static str {
        match self {
            TlsCause::UnknownCa => {
                "unknown CA: the server's certificate is not signed by a trusted CA \
                 (give --cacert FILE, or --insecure for a test target)"
            }
            TlsCause::NameMismatch => {
                "name mismatch: the server's certificate is not valid for the URL's host name"
            }
            TlsCause::ProtocolVersion => {
                "protocol version: the server and --tls-version have no TLS version in common"
            }
            TlsCause::ClientCertificate => {
                "client certificate refused: the server requires a client certificate it \
                 trusts (give --cert FILE --key FILE)"
            }
            TlsCause::BadCertificate => "bad certificate: the server's certificate is invalid",
            TlsCause::Alpn => {
                "no common protocol by ALPN: the server does not speak the HTTP version asked \
                 for (HTTP/2 over TLS needs h2)"
            }
            TlsCause::Other => "handshake failed",
        }
    }
}

/// Handshakes of a run: counted, timed and their failures by cause. A
/// `std::sync::Mutex`, held only to add one handshake, never across an await; a
/// handshake costs far more than the lock.
#[derive(Debug)]
pub(crate) struct TlsStats(Mutex<TlsTally>);

#[derive(Debug)]
struct TlsTally {
    handshakes: u64,
    resumed: u64,
    failures: BTreeMap<String, u64>,
    latency: Histogram<u64>,
}

impl TlsStats {
    pub(crate) fn new() -> TlsStats {
        TlsStats(Mutex::new(TlsTally {
            handshakes: 0,
            resumed: 0,
            failures: BTreeMap::new(),
            latency: new_histogram(),
        }))
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, TlsTally> {
        // A panic while holding it leaves counts that are still counts.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn failed(&self, cause: TlsCause) {
        *self
            .tally()
            .failures
            .entry(cause.name().into())
            .or_default() += 1;
    }

    /// What results keep.
    pub(crate) fn results(&self) -> Result<TlsResults, HistogramCodecError> {
        let tally = self.tally();
        Ok(TlsResults {
            handshakes: tally.handshakes,
            resumed: tally.resumed,
            failures: tally.failures.clone(),
            handshake_latency: EncodedHistogram::encode(&tally.latency)?,
            handshake_summary: LatencySummary::of(&tally.latency),
        })
    }
}

/// The engine's TLS client for one target: the shared config, the server's name,
/// and where handshakes are counted.
#[derive(Clone)]
pub(crate) struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    stats: Arc<TlsStats>,
}

impl TlsClient {
    /// A client for `host` (the name the certificate must be valid for).
    pub(crate) fn new(
        config: ClientConfig,
        host: &str,
        stats: Arc<TlsStats>,
    ) -> Result<TlsClient, LoadError> {
        // An IPv6 literal comes bracketed out of a URL.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name =
            ServerName::try_from(host.to_string()).map_err(|e| LoadError::BadUrl {
                url: host.to_string(),
                reason: format!("not a TLS server name: {e}"),
            })?;
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            stats,
        })
    }

    /// The same client counting its handshakes into `stats` instead.
    pub(crate) fn with_stats(&self, stats: Arc<TlsStats>) -> TlsClient {
        TlsClient {
            stats,
            ..self.clone()
        }
    }

    /// Does the handshake on `tcp`, counting and timing it; a failure is counted by
    /// its cause and returned with it.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<TlsConnection, (TlsCause, io::Error)> {
        let started = Instant::now();
        match self.connector.connect(self.server_name.clone(), tcp).await {
            Ok(stream) => {
                let resumed =
                    stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                let mut tally = self.stats.tally();
                tally.handshakes += 1;
                tally.resumed += u64::from(resumed);
                record(&mut tally.latency, started.elapsed());
                drop(tally);
                Ok(TlsConnection {
                    stream: Box::new(stream),
                    stats: self.stats.clone(),
                })
            }
            Err(error) => {
                let cause = TlsCause::of_io_error(&error).unwrap_or(TlsCause::Other);
                self.stats.failed(cause);
                Err((cause, error))
            }
        }
    }
}

/// An established TLS connection. It reads and writes as the stream it wraps, and
/// counts a TLS error met after the handshake (a TLS 1.3 server refuses a client
/// certificate only then) under its cause.
pub(crate) struct TlsConnection {
    /// Boxed: a rustls session is over a kilobyte, and the engine's connection enum
    /// should stay the size of its plain variant. One allocation per connection.
    stream: Box<TlsStream<TcpStream>>,
    stats: Arc<TlsStats>,
}

impl TlsConnection {
    /// The protocol the server chose by ALPN, if any.
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.stream.get_ref().1.alpn_protocol()
    }

    fn counted<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(error)) = &polled {
            if let Some(cause) = TlsCause::of_io_error(error) {
                self.stats.failed(cause);
            }
        }
        polled
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.counted(polled)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.counted(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.counted(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.counted(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reqwest_takes_the_journeys_rustls_config() {
        // reqwest accepts a preconfigured backend only of the rustls version it was
        // built with: this fails if the two ever drift apart.
        let insecure = TlsSettings {
            insecure: true,
            ..TlsSettings::default()
        };
        for settings in [TlsSettings::default(), insecure] {
            reqwest::Client::builder()
                .tls_backend_preconfigured(settings.reqwest_config().unwrap())
                .build()
                .unwrap();
        }
    }

    #[test]
    fn a_client_certificate_without_its_key_is_refused() {
        let settings = TlsSettings {
            cert: Some("client.pem".into()),
            ..TlsSettings::default()
        };
        let err = settings.client_config(&[]).unwrap_err();
        assert!(err.to_string().contains("--key"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn tls_versions_parse_from_what_users_write() {
        assert_eq!("1.2".parse::<TlsVersion>().unwrap(), TlsVersion::Tls12);
        assert_eq!("1.3".parse::<TlsVersion>().unwrap(), TlsVersion::Tls13);
        assert!("1.1"
            .parse::<TlsVersion>()
            .unwrap_err()
            .contains("1.2 or 1.3"));
    }
}
