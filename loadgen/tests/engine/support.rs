//! Test servers and helpers.
//!
//! [`TestServer`] is a tiny hyper server (HTTP/1.1 and HTTP/2) whose paths behave
//! differently: `/` answers at once, `/stall` stops answering for the first 500 ms
//! of every second since the server started (like a stop-the-world pause),
//! `/status/N` answers status N, `/reset` drops the connection without an answer,
//! `/hang` never answers, `/metrics` serves a Prometheus gauge of the seconds since start.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use faultline_loadgen::{LoadConfig, RequestSpec, Schedule, Target};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};

/// How long `/stall` stops answering, once a second.
pub const STALL: Duration = Duration::from_millis(500);

/// A server running in the test's runtime; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(move |request| respond(request, started));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer { addr, accept_loop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A load configuration against `path` with `schedule`.
    pub fn config(&self, path: &str, schedule: Schedule) -> LoadConfig {
        let mut config = LoadConfig::new(Target::parse(&self.url(path)).unwrap(), schedule);
        config.connections = 8;
        config
    }

    /// A request spec for another path of this server.
    pub fn endpoint(&self, path: &str) -> RequestSpec {
        let target = Target::parse(&self.url(path)).unwrap();
        RequestSpec::for_target(&target, Method::GET, Default::default(), Bytes::new())
    }
}

/// The error a service returns to make hyper drop the connection unanswered.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropping the connection on purpose")
    }
}

impl std::error::Error for DropConnection {}

async fn respond(
    request: Request<Incoming>,
    started: Instant,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let path = request.uri().path().to_string();
    let reply = |status: u16| {
        let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(response)
    };
    match path.as_str() {
        "/stall" => {
            let into_second =
                Duration::from_nanos((started.elapsed().as_nanos() % 1_000_000_000) as u64);
            if into_second < STALL {
                tokio::time::sleep(STALL - into_second).await;
            }
            reply(200)
        }
        "/reset" => Err(DropConnection),
        // A Prometheus endpoint whose gauge counts the seconds since the server started.
        "/metrics" => {
            let seconds = started.elapsed().as_secs();
            let text = format!(
                "# HELP faultline_outbox_backlog test gauge\n# TYPE faultline_outbox_backlog gauge\n\
                 faultline_outbox_backlog{{service=\"test\"}} {seconds}\n\
                 # TYPE unwanted_total counter\nunwanted_total 1\n"
            );
            Ok(Response::new(Full::new(Bytes::from(text))))
        }
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            reply(200)
        }
        other => match other.strip_prefix("/status/") {
            Some(code) => reply(code.parse().unwrap_or(500)),
            None => reply(200),
        },
    }
}

/// Decodes a stored histogram.
pub fn decode(encoded: &faultline_results::EncodedHistogram) -> hdrhistogram::Histogram<u64> {
    encoded.decode().unwrap()
}
