//! A tiny HTTP/1.1 server for the tests, on 127.0.0.1 port 0.
//!
//! It counts what it receives by `METHOD path body` ([`TestServer::seen`]), so tests
//! check what was sent without trusting the load engine's own counts. `/capacity` has a
//! known capacity: a token bucket refilled at [`CAPACITY`] per second (a burst of
//! [`BURST`]) answers at once while a token is free and holds a request that finds
//! none for [`SLOW`] first, so latency jumps once the rate passes [`CAPACITY`]. A
//! bucket, not a count of the last second, so a step after a broken one starts afresh.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};

/// Requests per second `/capacity` answers at once.
pub const CAPACITY: f64 = 200.0;
/// Tokens the bucket holds: absorbs a short stall of the client (100 ms at CAPACITY).
pub const BURST: f64 = 20.0;
/// How long a request over the rate waits.
pub const SLOW: Duration = Duration::from_millis(400);

/// The token bucket of `/capacity`.
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// Takes a token if one is free.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * CAPACITY).min(BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Requests received: `METHOD path-and-query body` and how often.
type Seen = Arc<Mutex<BTreeMap<String, u64>>>;

/// A server running in the test's runtime; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    seen: Seen,
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
        let seen = Seen::default();
        let bucket = Arc::new(Mutex::new(Bucket {
            tokens: BURST,
            refilled: Instant::now(),
        }));
        let counts = seen.clone();
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (counts, bucket) = (counts.clone(), bucket.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request| respond(request, counts.clone(), bucket.clone()));
                    let _ = http1::Builder::new()
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

    pub fn total(&self) -> u64 {
        self.seen().values().sum()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

async fn respond(
    request: Request<Incoming>,
    seen: Seen,
    bucket: Arc<Mutex<Bucket>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let head = format!("{} {}", request.method(), request.uri());
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let key = format!("{head} {}", String::from_utf8_lossy(&body));
    *seen
        .lock()
        .unwrap()
        .entry(key.trim_end().to_string())
        .or_default() += 1;
    if path == "/capacity" {
        let free = bucket.lock().unwrap().take();
        if !free {
            tokio::time::sleep(SLOW).await;
        }
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
}
