//! A minimal HTTP/1.1 server for benchmarking load generators (`scripts/bench-loadgen`).
//!
//! One thread, one current-thread Tokio runtime, hyper 1.x: answers every request
//! with `200 Hello, World!`. Pin it to a core with `taskset` so the generators it is
//! compared with get the other one. With `--tls` it serves HTTPS (rustls, TLS 1.2 and
//! 1.3, ALPN `http/1.1`) with a self-signed certificate for 127.0.0.1 made at start,
//! so the generators run with `--insecure` (wrk does not check certificates).
//!
//! Usage: `hello_server [ADDR] [--tls]` (default `127.0.0.1:8080`).

use std::{convert::Infallible, sync::Arc};

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
    let tls = args.iter().any(|a| a == "--tls");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
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
                    None => serve(stream).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream).await;
                        }
                    }
                }
            });
        }
    })
}

/// Answers every request on one connection with `Hello, World!`.
async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) {
    let service = service_fn(|_request| async {
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
