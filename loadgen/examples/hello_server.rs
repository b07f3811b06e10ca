//! A minimal HTTP/1.1 server for benchmarking load generators (`scripts/bench-loadgen`).
//!
//! One thread, one current-thread Tokio runtime, hyper 1.x: answers every request
//! with `200 Hello, World!`. Pin it to a core with `taskset` so the generators it is
//! compared with get the other one. With `--tls` it serves HTTPS (rustls, TLS 1.2 and
//! 1.3, ALPN `http/1.1`) with a self-signed certificate for 127.0.0.1 made at start,
//! so the generators run with `--insecure` (wrk does not check certificates).
//!
//! With `--delay-ms N` it waits N ms before each answer, a service time large enough
//! that two runs' percentiles can be compared without the scheduler's noise of a few
//! hundred µs deciding (`scripts/bench-distributed` with `SERVICE_MS`).
//!
//! Usage: `hello_server [ADDR] [--tls] [--delay-ms N]` (default `127.0.0.1:8080`).

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
};
use tokio_rustls::TlsAcceptor;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut tls, mut delay, mut addr) = (false, Duration::ZERO, None);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--tls" => tls = true,
            "--delay-ms" => {
                let value = rest
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--delay-ms needs a number of milliseconds"))?;
                let ms: u64 = value
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--delay-ms {value}: {e}"))?;
                delay = Duration::from_millis(ms);
            }
            other => addr = Some(other.to_string()),
        }
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8080".into());
    let acceptor = if tls { Some(self_signed()?) } else { None };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        let scheme = if tls { "https" } else { "http" };
        eprintln!(
            "hello_server listening on {scheme}://{}",
            listener.local_addr()?
        );
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => serve(stream, delay).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, delay).await;
                        }
                    }
                }
            });
        }
    })
}

/// Answers every request on one connection with `Hello, World!`, `delay` after it came.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, delay: Duration) {
    let service = service_fn(move |_request| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
            b"Hello, World!",
        ))))
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A TLS acceptor with a certificate for 127.0.0.1 and localhost, made now.
fn self_signed() -> anyhow::Result<TlsAcceptor> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
