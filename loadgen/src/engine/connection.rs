//! The engine's connections to the target: plain or TLS, HTTP/1.1 or HTTP/2, the
//! send of one request on them, and the [`Watchdog`] that bounds each request by the
//! timeout.
//!
//! A [`Connector`] opens them to one host (TCP, then the TLS handshake for
//! `https://`, with ALPN `h2` for HTTP/2). An HTTP/1.1 connection belongs to one
//! worker and carries one request at a time, through the engine's own client (module
//! `h1`), monomorphic for plain TCP and for TLS. An HTTP/2 connection is an
//! [`H2Group`]'s: `streams` workers share it, each with its own handle to hyper's
//! connection, so up to `streams` requests are in flight on it at once (stream
//! multiplexing); the connection's I/O runs in a task of its own. A worker that finds
//! its group's connection closed opens the next one for the whole group.

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::{Arc, Mutex},
    task::Poll,
};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    time::Instant,
};

use super::h1::H1Connection;
use faultline_results::{ErrorClass, HttpVersion};

use crate::{
    classify::Classify as _,
    error::LoadError,
    target::Target,
    tls::{TlsClient, TlsConnection, TlsStats, ALPN_HTTP2},
};

/// Bounds each request by the timeout without a timer registration per request:
/// one sleep per worker, set to the deadline of the request in flight when it was
/// armed. Deadlines only move forward, so when it fires, the request in flight
/// has either passed its own deadline (a timeout) or the sleep is re-armed for it.
#[derive(Default)]
pub(super) struct Watchdog {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watchdog {
    /// Runs `future` until it ends (`Some`) or `deadline` passes (`None`).
    pub(super) async fn run<F: Future>(
        &mut self,
        deadline: Instant,
        future: F,
    ) -> Option<F::Output> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        let mut future = pin!(future);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            while sleep.as_mut().poll(cx).is_ready() {
                if Instant::now() >= deadline {
                    return Poll::Ready(None);
                }
                sleep.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }
}

/// What one send writes: encoded HTTP/1.1 bytes, or an HTTP/2 request's parts.
// It lives on the stack for one send: boxing the larger HTTP/2 variant would add an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Message<'a> {
    Http1 {
        bytes: &'a [u8],
        /// A `HEAD`, whose response has no body.
        head: bool,
    },
    Http2(Request<Full<Bytes>>),
}

/// Why a connection could not be opened: its error class and the cause in words.
#[derive(Debug)]
pub(super) struct OpenError {
    pub class: ErrorClass,
    pub message: String,
}

impl OpenError {
    fn connect(error: std::io::Error) -> OpenError {
        OpenError {
            class: ErrorClass::of_connect_error(&error),
            message: error.to_string(),
        }
    }
}

/// Opens connections to one host.
pub(super) struct Connector {
    pub target: Target,
    pub version: HttpVersion,
    /// `Some` for an `https://` host.
    pub tls: Option<TlsClient>,
}

impl Connector {
    /// The connector of `target`; for an `https://` one, after one handshake that
    /// proves the TLS settings: an unknown CA, a name mismatch or no common protocol
    /// version (or, for HTTP/2, a server that does not agree to h2 by ALPN) stops
    /// the run here, with its cause. That handshake is not counted in `stats`.
    pub(super) async fn new(
        target: Target,
        version: HttpVersion,
        tls_config: Option<&ClientConfig>,
        stats: &Arc<TlsStats>,
        timeout: std::time::Duration,
    ) -> Result<Connector, LoadError> {
        let tls = match tls_config.filter(|_| target.https) {
            None => None,
            Some(config) => {
                let client = TlsClient::new(config.clone(), &target.host, stats.clone())?;
                probe(&target, version, &client, timeout).await?;
                Some(client)
            }
        };
        Ok(Connector {
            target,
            version,
            tls,
        })
    }

    /// TCP and, for `https://`, the TLS handshake (counted by the TLS client).
    async fn transport(&self) -> Result<Transport, OpenError> {
        let tcp = self.target.connect().await.map_err(OpenError::connect)?;
        match &self.tls {
            None => Ok(Transport::Plain(tcp)),
            Some(tls) => match tls.handshake(tcp).await {
                Ok(stream) => Ok(Transport::Tls(stream)),
                Err((cause, error)) => Err(OpenError {
                    class: ErrorClass::Tls,
                    message: format!("{}: {error}", cause.advice()),
                }),
            },
        }
    }

    /// A connection for one worker. For HTTP/2, the group's connection: the one open
    /// now, or a new one that the rest of the group then shares.
    pub(super) async fn open(&self, group: &H2Group) -> Result<Connection, OpenError> {
        match self.version {
            HttpVersion::Http1 => Ok(match self.transport().await? {
                Transport::Plain(tcp) => Connection::Http1(H1Connection::new(tcp)),
                Transport::Tls(tls) => Connection::Https1(H1Connection::new(tls)),
            }),
            HttpVersion::Http2 => {
                // One worker of the group opens; the others wait and take its handle.
                let _opening = group.opening.lock().await;
                if let Some(sender) = group.current() {
                    return Ok(Connection::Http2(sender));
                }
                let sender = match self.transport().await? {
                    Transport::Plain(tcp) => h2_handshake(tcp).await?,
                    Transport::Tls(tls) => {
                        if tls.alpn_protocol() != Some(ALPN_HTTP2) {
                            return Err(OpenError {
                                class: ErrorClass::Protocol,
                                message: "the server did not agree to HTTP/2 (ALPN h2)".into(),
                            });
                        }
                        h2_handshake(tls).await?
                    }
                };
                *group.lock() = Some(sender.clone());
                Ok(Connection::Http2(sender))
            }
        }
    }
}

/// One handshake with an `https://` host before the run (see [`Connector::new`]).
async fn probe(
    target: &Target,
    version: HttpVersion,
    client: &TlsClient,
    timeout: std::time::Duration,
) -> Result<(), LoadError> {
    let probe = client.with_stats(Arc::new(TlsStats::new()));
    let failed = |cause: &str, source: std::io::Error| LoadError::TlsHandshake {
        target: target.url.clone(),
        cause: cause.to_string(),
        source,
    };
    let tcp = tokio::time::timeout(timeout, target.connect())
        .await
        .map_err(|_| failed("timed out", std::io::ErrorKind::TimedOut.into()))?
        .map_err(|e| failed("connect", e))?;
    let connection = tokio::time::timeout(timeout, probe.handshake(tcp))
        .await
        .map_err(|_| failed("timed out", std::io::ErrorKind::TimedOut.into()))?
        .map_err(|(cause, error)| failed(cause.advice(), error))?;
    if version == HttpVersion::Http2 && connection.alpn_protocol() != Some(ALPN_HTTP2) {
        let refused = std::io::Error::other("ALPN chose no h2");
        return Err(failed("the server does not speak HTTP/2 over TLS", refused));
    }
    Ok(())
}

enum Transport {
    Plain(TcpStream),
    Tls(TlsConnection),
}

/// The HTTP/2 preface and settings on `io`; the connection's I/O then runs in its
/// own task, which ends when the connection does or every handle is dropped.
async fn h2_handshake<T>(io: T) -> Result<http2::SendRequest<Full<Bytes>>, OpenError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .map_err(|e| OpenError {
            class: ErrorClass::of_hyper_error(&e),
            message: e.to_string(),
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "HTTP/2 connection ended");
        }
    });
    Ok(sender)
}

/// The workers that share one HTTP/2 connection (`--streams`), and its handle.
#[derive(Default)]
pub(super) struct H2Group {
    /// The open connection's handle. A `std::sync::Mutex`: held only to clone or
    /// replace it, never across an await.
    sender: Mutex<Option<http2::SendRequest<Full<Bytes>>>>,
    /// Held while the group's next connection is being opened (across awaits, hence
    /// Tokio's).
    opening: tokio::sync::Mutex<()>,
}

impl H2Group {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<http2::SendRequest<Full<Bytes>>>> {
        // A handle is valid whatever a panicking holder did.
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle to the group's connection, if it is open.
    fn current(&self) -> Option<http2::SendRequest<Full<Bytes>>> {
        self.lock().as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// A worker's own handle to the group's HTTP/2 connection, if it is open.
    pub(super) fn handle(&self) -> Option<Connection> {
        self.current().map(Connection::Http2)
    }
}

/// One worker's connection to a host.
pub(super) enum Connection {
    /// The engine's own HTTP/1.1 client on plain TCP.
    Http1(H1Connection<TcpStream>),
    /// The same client over TLS.
    Https1(H1Connection<TlsConnection>),
    /// A handle to the group's HTTP/2 connection: one stream at a time per worker.
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Connection {
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Connection::Http1(conn) => conn.is_closed(),
            Connection::Https1(conn) => conn.is_closed(),
            Connection::Http2(sender) => sender.is_closed(),
        }
    }

    /// Waits until `deadline` while watching an idle HTTP/1.1 connection (the
    /// HTTP/2 connection's own task watches it).
    pub(super) async fn idle_until(&mut self, deadline: Instant) {
        match self {
            Connection::Http1(conn) => conn.idle_until(deadline).await,
            Connection::Https1(conn) => conn.idle_until(deadline).await,
            Connection::Http2(_) => tokio::time::sleep_until(deadline).await,
        }
    }

    /// Sends one request and reads its whole response before `deadline`.
    pub(super) async fn send(
        &mut self,
        message: Message<'_>,
        deadline: Instant,
        watchdog: &mut Watchdog,
    ) -> Result<http::StatusCode, ErrorClass> {
        let answer = match (self, message) {
            (Connection::Http1(conn), Message::Http1 { bytes, head }) => {
                watchdog.run(deadline, conn.exchange(bytes, head)).await
            }
            (Connection::Https1(conn), Message::Http1 { bytes, head }) => {
                watchdog.run(deadline, conn.exchange(bytes, head)).await
            }
            (Connection::Http2(sender), Message::Http2(request)) => {
                watchdog.run(deadline, h2_exchange(sender, request)).await
            }
            // The engine builds the message for its connections' version.
            _ => return Err(ErrorClass::Protocol),
        };
        answer.unwrap_or(Err(ErrorClass::Timeout))
    }
}

/// One request on an HTTP/2 stream, its body read and dropped.
async fn h2_exchange(
    sender: &mut http2::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<http::StatusCode, ErrorClass> {
    sender
        .ready()
        .await
        .map_err(|e| ErrorClass::of_hyper_error(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ErrorClass::of_hyper_error(&e))?;
    let status = response.status();
    let mut body = response.into_body();
    // The body must be consumed for the stream to finish, but nothing needs it kept.
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| ErrorClass::of_hyper_error(&e))?;
    }
    Ok(status)
}
