//! Test servers and helpers.
//!
//! [`TestServer`] is a tiny hyper server (HTTP/1.1 and HTTP/2) whose paths behave
//! differently: `/` answers at once, `/stall` stops answering for the first 500 ms
//! of every second since the server started (like a stop-the-world pause),
//! `/status/N` answers status N, `/reset` drops the connection without an answer,
//! `/hang` never answers, `/metrics` serves a Prometheus gauge of the seconds since start.
//! Every server also counts what it receives, server-side, by method, path and body
//! ([`TestServer::seen`]), so tests check what was sent without trusting the
//! engine's own counters.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use faultline_loadgen::{LoadConfig, RequestSpec, Schedule, Target};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
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
    seen: Seen,
    accept_loop: JoinHandle<()>,
}

/// Requests received: `METHOD path-and-query body` (the body as text) and how often.
type Seen = Arc<Mutex<BTreeMap<String, u64>>>;

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
        let seen = Seen::default();
        let counts = seen.clone();
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let counts = counts.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request| respond(request, started, counts.clone()));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer {
            addr,
            seen,
            accept_loop,
        }
    }

    /// What was received so far: `METHOD path body` and how often.
    pub fn seen(&self) -> BTreeMap<String, u64> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn total(&self) -> u64 {
        self.seen().values().sum()
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
    seen: Seen,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let path = request.uri().path().to_string();
    let head = format!("{} {}", request.method(), request.uri());
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let key = format!("{head} {}", String::from_utf8_lossy(&body));
    *seen
        .lock()
        .unwrap()
        .entry(key.trim_end().to_string())
        .or_default() += 1;
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
