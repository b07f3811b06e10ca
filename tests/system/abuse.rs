//! The gateway under abuse, and over HTTPS.
//!
//! - A body far past a route's limit is answered 413 before the client could have sent it.
//! - Thousands of requests with forged tokens are answered 401 by the gateway alone: the
//!   request counters of the services behind it do not move.
//! - A thousand slow-loris connections (a request head trickled a byte at a time) do not
//!   keep a normal client from its answers, and the header read timeout closes them.
//! - `--tls`: a TLS 1.3 client that trusts the printed CA gets 200s (the load generator,
//!   as a user would run it), a TLS 1.2 client and plain HTTP are refused.
//!
//! The last two start a gateway process of their own ([`TestGateway`]) in front of the shared
//! system's services, with the flags under test; the first two use the system's gateway.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use faultline_system::platform::auth::{Secret, Tokens};
use faultline_system::services::gateway::Upstream;
use faultline_system::services::ServiceKind;
use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::Harness;

/// A gateway process of a test's own, in front of the shared system's services.
struct TestGateway {
    _process: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestGateway {
    async fn start(h: &Harness, flags: &[&str]) -> anyhow::Result<TestGateway> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
        command
            .args(["serve", "gateway", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--rate-limit", "0"])
            .args(flags)
            .env("FAULTLINE_JWT_SECRET", &h.system.jwt_secret)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("gateway.log"))?)
            .kill_on_drop(true);
        // Every service the gateway routes to: those its routing table names.
        for kind in ServiceKind::ALL
            .into_iter()
            .filter(|kind| Upstream::from_name(kind.name()).is_some())
        {
            let url = h.system.service_url(kind, 1).context(kind.name())?;
            command
                .arg("--upstream")
                .arg(format!("{}={url}", kind.name()));
        }
        let process = command.spawn().context("starting a gateway")?;
        let gateway = TestGateway {
            _process: process,
            port,
            dir,
        };
        gateway.wait_until_serving().await?;
        Ok(gateway)
    }

    /// Waits until a request gets any HTTP answer, or a TLS alert for plain HTTP (a TLS
    /// listener): then the server loop runs.
    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let probe = "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            if let Ok((_, true)) = plain_exchange(self.port, probe).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default();
        bail!("the test gateway did not serve within 60 s; its log:\n{log}")
    }

    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }
}

/// Writes `request` on a new plain TCP connection and returns what comes back until the
/// server closes it, and whether it did within 5 s (a listener whose server loop does not
/// run yet holds the connection in its backlog).
async fn plain_exchange(port: u16, request: &str) -> anyhow::Result<(Vec<u8>, bool)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    Ok((answer, read.is_ok()))
}

/// The gateway answers 413 to a body past the route's limit as soon as it has the head: the
/// client is still sending when the answer comes.
pub async fn a_100_mb_body_is_413_before_it_is_sent(h: Arc<Harness>) -> anyhow::Result<()> {
    const BODY: u64 = 100 * 1024 * 1024;
    let port: u16 = h
        .system
        .gateway_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("the gateway's port")?;
    for path in ["/api/ingest/events", "/api/users/register"] {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await?;
        let sent = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let sending = {
            let (sent, finished) = (sent.clone(), finished.clone());
            tokio::spawn(async move {
                let chunk = vec![b' '; 64 * 1024];
                while sent.load(Ordering::SeqCst) < BODY {
                    if writer.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
                finished.store(true, Ordering::SeqCst);
            })
        };
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = reader.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buffer[..n]);
            }
            anyhow::Ok(())
        })
        .await;
        let unfinished = !finished.load(Ordering::SeqCst);
        let sent = sent.load(Ordering::SeqCst);
        sending.abort();
        read.context("no answer within 30 s")??;
        let answer = String::from_utf8_lossy(&answer);
        ensure!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        ensure!(
            unfinished && sent < BODY,
            "{path}: answered only after the client sent {sent} of {BODY} bytes"
        );
        println!("{path}: 413 after {sent} of {BODY} bytes sent");
    }
    Ok(())
}

/// Requests the services answered, by their own metrics: every route but health and
/// metrics, summed.
async fn requests_served(h: &Harness, kind: ServiceKind) -> anyhow::Result<u64> {
    let url = h.system.service_url(kind, 1).context(kind.name())?;
    let text = h.metrics(&url).await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("faultline_http_request_duration_seconds_count{"))
        .filter(|line| !line.contains("route=\"/health") && !line.contains("route=\"/metrics\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Tokens of every kind a forger might try: garbage, a JWT signed with another secret, one
/// with `alg: none`, a real one with its signature changed.
fn forgeries(real: &str) -> anyhow::Result<Vec<String>> {
    let forger = Tokens::new(
        &Secret::new("not the system's secret, but long enough to sign"),
        Duration::from_secs(3600),
    )?;
    let (unsigned, _) = real.rsplit_once('.').context("a JWT")?;
    let (_, rest) = unsigned.split_once('.').context("a JWT")?;
    // {"alg":"none","typ":"JWT"}
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{rest}.");
    // The signature's first character: all six of its bits are the signature's.
    let signature = unsigned.len() + 1;
    let first = real[signature..].chars().next().context("a signature")?;
    let other = if first == 'A' { 'B' } else { 'A' };
    let flipped = format!("{}{other}{}", &real[..signature], &real[signature + 1..]);
    Ok(vec![
        "garbage".into(),
        "a.b.c".into(),
        forger.issue(uuid::Uuid::new_v4())?,
        none,
        flipped,
        format!("{unsigned}."),
    ])
}

/// 10,000 requests with forged tokens are 401 at the gateway; no service sees one.
pub async fn ten_thousand_forged_tokens_are_401_and_the_services_never_see_them(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    const REQUESTS: usize = 10_000;
    let user = h.user().await?;
    let forged = forgeries(&user.token)?;
    let services = [
        ServiceKind::Users,
        ServiceKind::Orders,
        ServiceKind::Analytics,
        ServiceKind::Ingest,
    ];
    let mut before = Vec::new();
    for kind in services {
        before.push(requests_served(&h, kind).await?);
    }
    let order = uuid::Uuid::new_v4();
    let routes = [
        (reqwest::Method::GET, "/users/me".to_string()),
        (reqwest::Method::PUT, "/users/me".to_string()),
        (reqwest::Method::POST, "/orders".to_string()),
        (reqwest::Method::GET, format!("/orders/{order}")),
        (reqwest::Method::GET, format!("/orders/{order}/view")),
        (reqwest::Method::GET, "/analytics/summary".to_string()),
        (reqwest::Method::POST, "/ingest/events".to_string()),
    ];
    let statuses: Vec<anyhow::Result<StatusCode>> = futures::stream::iter(0..REQUESTS)
        .map(|i| {
            let (method, path) = routes[i % routes.len()].clone();
            let token = forged[i % forged.len()].clone();
            let request = h
                .http
                .request(method, h.api(&path))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(r#"{"items":[{"product_id":1,"quantity":1}]}"#);
            async move { Ok(request.send().await?.status()) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut unauthorized = 0;
    for status in statuses {
        let status = status?;
        ensure!(
            status == StatusCode::UNAUTHORIZED,
            "a forged token got {status}"
        );
        unauthorized += 1;
    }
    ensure!(unauthorized == REQUESTS);
    for (kind, before) in services.into_iter().zip(before) {
        let after = requests_served(&h, kind).await?;
        ensure!(
            after == before,
            "{} served {} requests while only forged tokens were sent",
            kind.name(),
            after - before
        );
    }
    // The counters do count: one request with the real token moves the users service's.
    let users_before = requests_served(&h, ServiceKind::Users).await?;
    let status = h
        .http
        .get(h.api("/users/me"))
        .bearer_auth(&user.token)
        .send()
        .await?
        .status();
    ensure!(status == StatusCode::OK, "the real token got {status}");
    let users_after = requests_served(&h, ServiceKind::Users).await?;
    ensure!(
        users_after > users_before,
        "the users service's counter did not count a request it served"
    );
    println!("{REQUESTS} forged tokens: all 401, no service request counter moved");
    Ok(())
}

/// One slow-loris connection: a request head written a byte every `pace`, never finished.
/// Returns how long the server took to close it, or `None` if it had not within `limit`.
async fn slow_loris(
    port: u16,
    pace: Duration,
    limit: Duration,
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut reader, mut writer) = stream.split();
    writer
        .write_all(b"GET /api/products HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await?;
    let mut probe = [0u8; 512];
    let mut tick = tokio::time::interval(pace);
    while started.elapsed() < limit {
        tokio::select! {
            read = reader.read(&mut probe) => match read {
                // Closed (a 408 or nothing first): either way, the server let it go.
                Ok(0) | Err(_) => return Ok(Some(started.elapsed())),
                Ok(_) => {}
            },
            _ = tick.tick() => {
                if writer.write_all(b"x").await.is_err() {
                    return Ok(Some(started.elapsed()));
                }
            }
        }
    }
    Ok(None)
}

/// 1,000 slow-loris connections: a normal client's requests are all answered meanwhile,
/// and the header read timeout closes every slow one.
pub async fn slow_loris_connections_do_not_stop_normal_clients(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    const SLOW: usize = 1_000;
    const NORMAL: usize = 200;
    let gateway = TestGateway::start(&h, &["--header-read-timeout", "3s"]).await?;
    let opened = Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let (port, opened) = (gateway.port, opened.clone());
        slow.push(tokio::spawn(async move {
            opened.fetch_add(1, Ordering::SeqCst);
            slow_loris(port, Duration::from_millis(200), Duration::from_secs(60)).await
        }));
    }
    while opened.load(Ordering::SeqCst) < SLOW {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut latencies = Vec::new();
    for _ in 0..NORMAL {
        let started = Instant::now();
        let status = client
            .get(gateway.url("http", "/api/products"))
            .send()
            .await?
            .status();
        ensure!(status == StatusCode::OK, "a normal request got {status}");
        latencies.push(started.elapsed());
    }
    let mut closed_after = Vec::new();
    for task in slow {
        let closed = task.await??;
        closed_after.push(closed.context("a slow-loris connection was still open after 60 s")?);
    }
    latencies.sort();
    closed_after.sort();
    println!(
        "{NORMAL} normal requests among {SLOW} slow-loris connections: all 200, p50 {:?}, max {:?} (debug build, not a figure); slow ones closed after {:?} to {:?}",
        latencies[NORMAL / 2],
        latencies[NORMAL - 1],
        closed_after[0],
        closed_after[SLOW - 1]
    );
    Ok(())
}

/// `faultline load` against `url` for 2 s at 20/s, its results written to `out`; returns them.
async fn load(url: &str, flags: &[&str], out: &Path) -> anyhow::Result<Value> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["load", url, "--rate", "20", "--duration", "2s", "-q", "-o"])
        .arg(out)
        .args(flags)
        .output()
        .await?;
    let results = std::fs::read_to_string(out).with_context(|| {
        format!(
            "no results.json; exit {:?}, stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok(serde_json::from_str(&results)?)
}

/// `faultline load` against `url` with `flags`, expected to fail before any request;
/// returns its stderr.
async fn refused(url: &str, flags: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["load", url, "--rate", "20", "--duration", "2s", "-q"])
        .args(flags)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(!output.status.success(), "it ran: {stderr}");
    Ok(stderr)
}

/// `serve gateway --tls`: HTTPS with TLS 1.3 only and a throwaway CA written out.
pub async fn the_gateway_serves_tls13_only_with_its_throwaway_ca(
    h: Arc<Harness>,
) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let ca_path = scratch.path().join("ca.pem");
    let ca = ca_path.to_str().context("a UTF-8 path")?;
    let gateway = TestGateway::start(&h, &["--tls", "--tls-ca-out", ca]).await?;
    let url = gateway.url("https", "/api/products");

    let tls13 = load(
        &url,
        &["--cacert", ca, "--tls-version", "1.3"],
        &scratch.path().join("tls13.json"),
    )
    .await?;
    let requests = tls13["totals"]["requests"].as_u64().unwrap_or_default();
    let ok = tls13["totals"]["ok"].as_u64().unwrap_or_default();
    ensure!(
        requests > 0 && ok == requests,
        "TLS 1.3 with the CA: {}",
        tls13["totals"]
    );
    ensure!(
        tls13["tls"]["handshakes"].as_u64().unwrap_or_default() > 0,
        "{}",
        tls13["tls"]
    );

    // A client that offers only TLS 1.2, or does not trust the CA, cannot connect: the
    // load generator's first handshake fails and it stops with a usage error naming why.
    let tls12 = refused(&url, &["--cacert", ca, "--tls-version", "1.2"]).await?;
    ensure!(tls12.contains("protocol version"), "TLS 1.2: {tls12}");
    let untrusted = refused(&url, &[]).await?;
    ensure!(
        untrusted.contains("TLS handshake"),
        "no --cacert: {untrusted}"
    );

    let request = "GET /api/products HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let (plain, _) = plain_exchange(gateway.port, request).await?;
    ensure!(
        !plain.starts_with(b"HTTP/"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&plain)
    );
    println!(
        "TLS 1.3 with the CA: {ok} of {requests} ok; TLS 1.2: refused; plain HTTP: {} bytes, no HTTP answer",
        plain.len()
    );
    drop(gateway);

    // A certificate file that is not there: a usage error naming it.
    let missing = gateway_usage_error(&[
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ])
    .await?;
    ensure!(
        missing.contains("--tls-cert /nonexistent/cert.pem"),
        "{missing}"
    );
    Ok(())
}

/// Runs `serve gateway` with `flags`, expecting exit 2; returns its stderr.
async fn gateway_usage_error(flags: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "serve",
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--jwt-secret",
        ])
        .arg("a secret long enough for the gateway to start with")
        .args(flags)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(
        output.status.code() == Some(2),
        "exit {:?}: {stderr}",
        output.status
    );
    Ok(stderr)
}
