//! The gateway's front door: the server loop that takes connections from the public side,
//! in plain HTTP or HTTPS ([`super::tls`]), with the limits a public listener needs and the
//! services behind it (reached only by the gateway) do not.
//!
//! - **A header read timeout**: a client must send a whole request head within
//!   `--header-read-timeout` of the server starting to wait for it (hyper's timer; it runs
//!   on idle keep-alive connections too, so it also closes those). A slow-loris client that
//!   trickles its headers a byte at a time is closed instead of holding its connection open.
//! - **A TLS handshake timeout** of the same length, for the same attack before HTTP.
//! - **A connection limit** (`--max-connections`): past it, new connections are closed at
//!   once, so that no number of idle or slow clients exhausts the process's descriptors.
//! - **The client's address** as `ConnectInfo`, which the rate limiter keys anonymous
//!   callers by.
//!
//! The services behind the gateway are served by this loop too under mutual TLS
//! (`platform::mesh`): it is the one that speaks TLS, and it puts the identity of each
//! connection's client certificate into its requests.
//!
//! On shutdown it stops accepting and lets open connections finish their requests (for at
//! most the drain time), as `platform::http::serve` does for the other services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use clap::Args;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use super::tls::{self, TlsError};

/// The gateway's listener settings (flags of `faultline serve gateway`).
#[derive(Debug, Clone, Args)]
#[group(skip)]
pub struct FrontArgs {
    /// Gateway: serve HTTPS, TLS 1.3 only. Without --tls-cert, with a certificate for
    /// 127.0.0.1 and localhost made at start by a throwaway CA (see --tls-ca-out).
    #[arg(long)]
    pub tls: bool,

    /// Gateway: the certificate chain to serve HTTPS with (PEM; implies --tls).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Gateway: the private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Gateway with --tls and no --tls-cert: where to write the throwaway CA's certificate
    /// for clients to trust (default: gateway-ca-PID.pem in the temporary directory).
    #[arg(long, value_name = "FILE", conflicts_with = "tls_cert")]
    pub tls_ca_out: Option<PathBuf>,

    /// Gateway: time a client has to send a whole request head (and a TLS handshake) once
    /// the server waits for one; also how long a keep-alive connection may stay idle.
    /// Our clients' pools keep idle connections for half the default (see
    /// `platform::http::POOL_IDLE_TIMEOUT`).
    #[arg(long, default_value_t = crate::platform::http::SERVER_IDLE_TIMEOUT.into())]
    pub header_read_timeout: humantime::Duration,

    /// Gateway: connections open at once; past it new ones are closed at once.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

/// The acceptor of a gateway asked to serve HTTPS, `None` for plain HTTP. A throwaway
/// certificate's CA is written where `--tls-ca-out` says (and logged) before anything
/// listens, so a client can trust it from the first request.
pub fn acceptor(args: &FrontArgs) -> Result<Option<TlsAcceptor>, TlsError> {
    let config = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => tls::from_files(cert, key)?,
        _ if args.tls => {
            let made = tls::throwaway()?;
            let ca_file = args.tls_ca_out.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("gateway-ca-{}.pem", std::process::id()))
            });
            std::fs::write(&ca_file, &made.ca_pem).map_err(|e| TlsError::File {
                flag: "--tls-ca-out",
                path: ca_file.clone(),
                reason: e.to_string(),
            })?;
            tracing::info!(ca_file = %ca_file.display(), "serving HTTPS with a throwaway CA");
            tls::from_throwaway(&made)?
        }
        _ => return Ok(None),
    };
    Ok(Some(TlsAcceptor::from(config)))
}

/// Serves `router` on `listener` (through `tls` when given) until `shutdown`, then lets
/// open connections finish for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    args: &FrontArgs,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(args.max_connections as usize));
    let refused = Arc::new(AtomicU64::new(0));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(*args.header_read_timeout);
    let http = Arc::new(http);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was taken:
                    // neither ends the server. A pause lets descriptors free up.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if refused.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
                tracing::warn!(
                    limit = args.max_connections,
                    "over the connection limit: closing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            peer,
            http: http.clone(),
            watcher: graceful.watcher(),
            caller: None,
        };
        let tls = tls.clone();
        let handshake_timeout = *args.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            // Under mutual TLS: who the verified client certificate names.
                            let caller = crate::platform::mesh::Caller::of(stream.get_ref().1);
                            Connection {
                                caller,
                                ..connection
                            }
                            .serve(stream)
                            .await
                        }
                        // A failed or slow handshake (plain HTTP, TLS 1.2, a stalled client)
                        // is the client's problem: rustls has sent it an alert if it could.
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?drain, "in-flight requests did not finish in time");
    }
    Ok(())
}

/// One accepted connection, and what serving it needs.
struct Connection {
    router: Router,
    peer: SocketAddr,
    http: Arc<hyper::server::conn::http1::Builder>,
    watcher: hyper_util::server::graceful::Watcher,
    caller: Option<crate::platform::mesh::Caller>,
}

impl Connection {
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            router,
            peer,
            http,
            watcher,
            caller,
        } = self;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(caller) = &caller {
                request.extensions_mut().insert(caller.clone());
            }
            let mut router = router.clone();
            async move { router.call(request.map(axum::body::Body::new)).await }
        });
        let served = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
        if let Err(error) = served.await {
            // Timeouts and resets of one client's connection: worth a trace, not a warning.
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}
