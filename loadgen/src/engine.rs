//! The load engine: one loop, driven by a schedule.
//!
//! [`run`] checks the target is reachable, opens every connection, starts the
//! clock and runs one task per connection (a *worker*) through the pacing loop of
//! module `pacing`, which journeys share: a worker takes the next arrival (in an open
//! schedule the next intended send time not yet taken by another worker, so an idle
//! connection takes whatever is due next and a request due while every connection is
//! busy waits and counts its wait; in a closed schedule "now" until the run's end),
//! sleeps until its time, and here an arrival is one request: send, read the whole
//! response and record, into the worker's own log, latency from the intended time,
//! the send delay, and the outcome. Meanwhile [`run`] itself collects the logs once a
//! wall-clock second, reports progress, and at the end builds [`Results`].
//!
//! HTTP/1.1 goes through the engine's own client (module `h1`): each endpoint's request
//! is serialized once per run, and a request costs one write, the reads of its
//! response and a parse, in the worker's own task (no connection task, no channel
//! hop, no per-request allocation or timer). HTTP/2 uses hyper: `streams` workers
//! share each connection, so up to `connections × streams` requests are in flight
//! (module `connection`). An `https://` target gets TLS on every connection (module
//! `tls` of the crate), its handshakes counted apart from requests; one handshake
//! before the run proves the TLS settings, so a wrong CA or name stops the run with
//! its cause instead of failing every request.

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use rustls::ClientConfig;
use tokio::{task::JoinSet, time::Instant};

mod connection;
mod h1;
mod pacing;

use connection::{Connection, Connector, H2Group};
pub(crate) use pacing::{Pacer, SecondClock, Slot, Worker};

use crate::{
    classify::ErrorClass,
    error::LoadError,
    recorder::{lock, Clock, Collected, Outcome, SharedLog},
    results::{HttpVersion, LatencyOrigin, Results, RunMetadata, RunRecord, TargetSchedule},
    schedule::Schedule,
    target::{default_content_type, RequestSpec, Target},
    tls::{TlsClient, TlsSettings, TlsStats, ALPN_HTTP1, ALPN_HTTP2},
};

/// Who ran the load, for the results' metadata (the binary fills it in).
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub scenario: Option<String>,
    /// Version of the faultline binary; the library's own when empty.
    pub faultline_version: Option<String>,
    pub git_commit: Option<String>,
}

/// Everything a load run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: Target,
    /// Endpoints; request `k` of the schedule goes to endpoint `k % len`.
    pub requests: Vec<RequestSpec>,
    pub schedule: Schedule,
    /// Connections, each carrying one request at a time (HTTP/1.1) or `streams`
    /// (HTTP/2): connections × streams bound the requests in flight (open model)
    /// or are the concurrency (closed model).
    pub connections: usize,
    pub http_version: HttpVersion,
    /// Requests in flight at once on each HTTP/2 connection (1 for HTTP/1.1).
    pub streams: usize,
    /// How to speak TLS to an `https://` target.
    pub tls: TlsSettings,
    /// Per request, from its actual send to the end of its response body.
    pub timeout: Duration,
    /// A request sent more than this after its intended time counts as late.
    pub late_threshold: Duration,
    /// A request still unsent this long after its intended time is dropped and
    /// counted, not sent (`None`: the timeout).
    pub max_send_delay: Option<Duration>,
    pub latency_origin: LatencyOrigin,
    pub run_info: RunInfo,
}

impl LoadConfig {
    /// A GET of the target's URL with defaults for everything else.
    pub fn new(target: Target, schedule: Schedule) -> LoadConfig {
        let request = RequestSpec::for_target(&target, Method::GET, HeaderMap::new(), Bytes::new());
        LoadConfig {
            target,
            requests: vec![request],
            schedule,
            connections: 64,
            http_version: HttpVersion::Http1,
            streams: 1,
            tls: TlsSettings::default(),
            timeout: Duration::from_secs(5),
            late_threshold: Duration::from_millis(10),
            max_send_delay: None,
            latency_origin: LatencyOrigin::IntendedSendTime,
            run_info: RunInfo::default(),
        }
    }

    fn max_send_delay(&self) -> Duration {
        self.max_send_delay.unwrap_or(self.timeout)
    }

    fn validate(&self) -> Result<(), LoadError> {
        let invalid = |option, reason: &str| {
            Err(LoadError::InvalidArgument {
                option,
                reason: reason.into(),
            })
        };
        if self.connections == 0 {
            return invalid("connections", "at least one connection is needed");
        }
        if self.streams == 0 {
            return invalid("--streams", "at least one stream per connection is needed");
        }
        if self.streams > 1 && self.http_version != HttpVersion::Http2 {
            return invalid(
                "--streams",
                "several requests in flight on one connection need --http2",
            );
        }
        if self.requests.is_empty() {
            return invalid("requests", "no request to send");
        }
        if self.timeout.is_zero() {
            return invalid("timeout", "the timeout must be longer than zero");
        }
        Ok(())
    }
}

/// What the live progress line shows, once a second.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub total: Duration,
    /// Target rate now (`None` in a closed schedule).
    pub target_rate: Option<f64>,
    /// What the target rate counts when it is not requests (e.g. `journeys`).
    pub target_unit: Option<&'static str>,
    /// Requests finished in the last whole second.
    pub last_second_requests: u64,
    pub last_second_p50_us: u64,
    pub last_second_p99_us: u64,
    pub last_second_errors: u64,
    /// Running totals.
    pub requests: u64,
    pub errors: u64,
    pub late: u64,
    pub dropped: u64,
}

/// Runs the load described by `config`, calling `progress` once a second.
pub async fn run(
    config: LoadConfig,
    progress: impl FnMut(&Progress) + Send,
) -> Result<Results, LoadError> {
    config.validate()?;
    // Bad TLS files are bad input: said before anything is connected to.
    let tls_config = tls_config(&config)?;
    config.target.check_reachable(config.timeout).await?;

    let requests: Vec<PreparedRequest> = config
        .requests
        .iter()
        .map(|spec| PreparedRequest::new(&config, spec))
        .collect();

    let tls_stats = Arc::new(TlsStats::new());
    let connector = Connector {
        target: config.target.clone(),
        version: config.http_version,
        tls: tls_client(&config, tls_config, tls_stats.clone()).await?,
    };
    let shared = Arc::new(Shared {
        connector,
        requests,
        timeout: config.timeout,
        late_threshold: config.late_threshold,
        latency_origin: config.latency_origin,
    });
    let workers_per_group = config.streams;
    let opened = open_all(&shared, config.connections).await;

    let (clock, start_wall) = Clock::start_now();
    let logs: Vec<SharedLog> = (0..config.connections * workers_per_group)
        .map(|_| SharedLog::default())
        .collect();
    let mut logs_left = logs.iter();
    let mut workers = Vec::with_capacity(logs.len());
    for (group, connection) in opened {
        // The first worker of a group takes the connection opened for it; the
        // others of an HTTP/2 group take handles to the same connection.
        let mut connection = connection;
        for log in logs_left.by_ref().take(workers_per_group) {
            workers.push(RequestWorker {
                shared: shared.clone(),
                log: log.clone(),
                connection: connection.take().or_else(|| group.handle()),
                group: group.clone(),
                watchdog: Watchdog::default(),
            });
        }
    }
    let pacer = Pacer::new(&config.schedule, clock, config.max_send_delay());
    let ((), collected) = collect_while(
        pacer.run(workers),
        &logs,
        clock,
        &config.schedule,
        None,
        progress,
    )
    .await;

    let metadata = RunMetadata {
        http_version: config.http_version,
        connections: config.connections as u64,
        timeout_ms: config.timeout.as_millis() as u64,
        latency_origin: config.latency_origin,
        ..RunMetadata::of_run(
            &config.run_info,
            &config.target.url,
            start_wall,
            &config.schedule,
        )
    };
    let names: Vec<String> = config.requests.iter().map(|r| r.name.clone()).collect();
    let pacing = PacingRecord {
        schedule: &config.schedule,
        late_threshold: config.late_threshold,
        max_send_delay: config.max_send_delay(),
    };
    let mut results = pacing.results(metadata, &names, &collected)?;
    if config.target.https {
        results.tls = Some(tls_stats.results().map_err(unrecordable)?);
    }
    Ok(results)
}

/// The rustls configuration of an `https://` run (`None` for `http://`), offering
/// the run's HTTP version by ALPN.
fn tls_config(config: &LoadConfig) -> Result<Option<ClientConfig>, LoadError> {
    if !config.target.https {
        return Ok(None);
    }
    let alpn = match config.http_version {
        HttpVersion::Http1 => ALPN_HTTP1,
        HttpVersion::Http2 => ALPN_HTTP2,
    };
    config.tls.client_config(&[alpn]).map(Some)
}

/// The TLS client of an `https://` run (`None` for `http://`), after one handshake
/// that proves the settings: an unknown CA, a name mismatch or no common protocol
/// version (or, for `--http2`, a server that does not agree to h2 by ALPN) stops the
/// run here, with its cause. That handshake is not counted.
async fn tls_client(
    config: &LoadConfig,
    tls_config: Option<ClientConfig>,
    stats: Arc<TlsStats>,
) -> Result<Option<TlsClient>, LoadError> {
    let Some(tls_config) = tls_config else {
        return Ok(None);
    };
    let client = TlsClient::new(tls_config, &config.target.host, stats)?;
    let probe = client.with_stats(Arc::new(TlsStats::new()));
    let failed = |cause: &str, source: std::io::Error| LoadError::TlsHandshake {
        target: config.target.url.clone(),
        cause: cause.to_string(),
        source,
    };
    let tcp = tokio::time::timeout(config.timeout, config.target.connect())
        .await
        .map_err(|_| failed("timed out", std::io::ErrorKind::TimedOut.into()))?
        .map_err(|e| failed("connect", e))?;
    let connection = tokio::time::timeout(config.timeout, probe.handshake(tcp))
        .await
        .map_err(|_| failed("timed out", std::io::ErrorKind::TimedOut.into()))?
        .map_err(|(cause, error)| failed(cause.advice(), error))?;
    if config.http_version == HttpVersion::Http2 && connection.alpn_protocol() != Some(ALPN_HTTP2) {
        let refused = std::io::Error::other("ALPN chose no h2");
        return Err(failed("the server does not speak HTTP/2 over TLS", refused));
    }
    Ok(Some(client))
}

/// Opens every connection (one per group) before the clock starts, so connection
/// setup is not mistaken for server latency in the first second. A connection
/// that fails now is opened again by its worker when it has a request.
async fn open_all(
    shared: &Arc<Shared>,
    connections: usize,
) -> Vec<(Arc<H2Group>, Option<Connection>)> {
    let mut connecting = JoinSet::new();
    for _ in 0..connections {
        let shared = shared.clone();
        connecting.spawn(async move {
            let group = Arc::new(H2Group::default());
            let opened = tokio::time::timeout(shared.timeout, shared.connector.open(&group)).await;
            (group, opened.ok().and_then(|r| r.ok()))
        });
    }
    let mut opened = Vec::with_capacity(connections);
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(group) => opened.push(group),
            Err(_) => opened.push((Arc::new(H2Group::default()), None)),
        }
    }
    opened
}

/// How a paced run was paced, as its results state it (both modes alike).
pub(crate) struct PacingRecord<'a> {
    pub schedule: &'a Schedule,
    pub late_threshold: Duration,
    pub max_send_delay: Duration,
}

impl PacingRecord<'_> {
    /// The results of a run whose endpoints are `names`, from what was collected.
    pub(crate) fn results(
        &self,
        metadata: RunMetadata,
        names: &[String],
        collected: &Collected,
    ) -> Result<Results, LoadError> {
        Results::build(RunRecord {
            metadata,
            schedule: TargetSchedule::of(self.schedule),
            endpoint_names: names,
            collected,
            late_threshold_ms: self.late_threshold.as_secs_f64() * 1000.0,
            max_send_delay_ms: self.max_send_delay.as_secs_f64() * 1000.0,
        })
        .map_err(unrecordable)
    }
}

/// A run's results that cannot be encoded (a histogram out of its bounds).
pub(crate) fn unrecordable(error: impl std::fmt::Display) -> LoadError {
    LoadError::BadResults {
        path: "(this run)".into(),
        reason: error.to_string(),
    }
}

/// Runs `working` (the load) to its end while collecting the workers' logs just after
/// each wall-clock second and reporting progress; then collects what is left.
pub(crate) async fn collect_while<T>(
    working: impl Future<Output = T>,
    logs: &[SharedLog],
    clock: Clock,
    schedule: &Schedule,
    target_unit: Option<&'static str>,
    mut progress: impl FnMut(&Progress),
) -> (T, Collected) {
    let mut ticks = tokio::time::interval_at(clock.first_collection(), Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut collected = Collected::default();
    let mut running = Progress {
        total: schedule.duration(),
        target_unit,
        ..Progress::default()
    };
    let mut working = pin!(working);
    let outcome = loop {
        tokio::select! {
            outcome = &mut working => break outcome,
            _ = ticks.tick() => {
                let now_second = clock.second_of(Instant::now());
                let seconds = collected.collect(logs, Some(now_second));
                update_progress(&mut running, &collected, &seconds, now_second, clock.start, schedule);
                progress(&running);
            }
        }
    };
    collected.collect(logs, None);
    (outcome, collected)
}

fn update_progress(
    running: &mut Progress,
    collected: &Collected,
    seconds: &[u64],
    now_second: u64,
    start: Instant,
    schedule: &Schedule,
) {
    for second in seconds {
        let bucket = collected.second(*second);
        running.requests += bucket.requests;
        running.errors += bucket.errors.total();
        running.late += bucket.late;
        running.dropped += bucket.dropped;
    }
    // Buckets of a second arrive in one collection, except requests that finish
    // after a stall; the last whole second is what the line shows.
    let last = collected.second(now_second.saturating_sub(1));
    running.elapsed = start.elapsed().min(running.total);
    running.target_rate = schedule.target_rate_at(running.elapsed);
    running.last_second_requests = last.requests;
    running.last_second_errors = last.errors.total();
    running.last_second_p50_us = last.latency.value_at_quantile(0.5);
    running.last_second_p99_us = last.latency.value_at_quantile(0.99);
}

/// What every worker shares.
struct Shared {
    connector: Connector,
    requests: Vec<PreparedRequest>,
    timeout: Duration,
    late_threshold: Duration,
    latency_origin: LatencyOrigin,
}

impl Shared {
    /// The endpoint arrival `index` goes to: they take turns.
    fn endpoint_of(&self, index: u64) -> usize {
        let endpoints = self.requests.len() as u64;
        if endpoints == 1 {
            0
        } else {
            (index % endpoints) as usize
        }
    }
}

/// Bounds each request by the timeout without a timer registration per request:
/// one sleep per worker, set to the deadline of the request in flight when it was
/// armed. Deadlines only move forward, so when it fires, the request in flight
/// has either passed its own deadline (a timeout) or the sleep is re-armed for it.
#[derive(Default)]
struct Watchdog {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watchdog {
    /// Runs `future` until it ends (`Some`) or `deadline` passes (`None`).
    async fn run<F: Future>(&mut self, deadline: Instant, future: F) -> Option<F::Output> {
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

/// One connection: an arrival is one request on it, recorded into the worker's log.
struct RequestWorker {
    shared: Arc<Shared>,
    log: SharedLog,
    /// `None` until (re)connected: a failed connection is opened again for the next
    /// request.
    connection: Option<Connection>,
    /// The workers sharing an HTTP/2 connection with this one (only this one for
    /// HTTP/1.1).
    group: Arc<H2Group>,
    watchdog: Watchdog,
}

impl Worker for RequestWorker {
    fn dropped(&mut self, index: u64, second: u64) {
        lock(&self.log).record_dropped(self.shared.endpoint_of(index), second);
    }

    async fn idle_until(&mut self, wake: Instant) {
        // Keep watching the idle connection while waiting, so a server closing it is
        // noticed before the next request rather than failing it.
        match &mut self.connection {
            Some(connection) => connection.idle_until(wake).await,
            None => tokio::time::sleep_until(wake).await,
        }
    }

    /// Sends the arrival's request and records it.
    async fn serve(&mut self, slot: Slot, seconds: &mut SecondClock) -> Option<Instant> {
        let shared = &*self.shared;
        let endpoint = shared.endpoint_of(slot.index);
        let intended = slot.intended;
        // In a closed schedule the request goes out at once: it is sent when due.
        let mut sent = (!slot.paced).then_some(intended);
        if self.connection.as_ref().is_none_or(Connection::is_closed) {
            self.connection = None;
            sent = None;
            let opened =
                tokio::time::timeout(shared.timeout, shared.connector.open(&self.group)).await;
            match opened {
                Ok(Ok(connection)) => self.connection = Some(connection),
                failed => {
                    let class = match &failed {
                        Ok(Err(error)) => {
                            tracing::debug!(message = %error.message, "connect failed");
                            error.class
                        }
                        _ => ErrorClass::Connect,
                    };
                    let now = Instant::now();
                    let delay = now.saturating_duration_since(intended);
                    lock(&self.log).record(
                        endpoint,
                        seconds.second_of(now),
                        delay,
                        delay > shared.late_threshold,
                        Outcome::Failed(class),
                    );
                    if matches!(failed, Ok(Err(_))) && !slot.paced {
                        // Nothing paces a closed model: without a pause a refused
                        // connection would spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    return None;
                }
            }
        }
        let connection = self.connection.as_mut()?;

        let request = &shared.requests[endpoint];
        let sent = sent.unwrap_or_else(Instant::now);
        let answer = connection
            .send(request, sent + shared.timeout, &mut self.watchdog)
            .await;
        let done = Instant::now();
        let send_delay = sent.saturating_duration_since(intended);
        let origin = match shared.latency_origin {
            LatencyOrigin::IntendedSendTime => intended.min(sent),
            LatencyOrigin::ActualSendTime => sent,
        };
        let outcome = match answer {
            Ok(status) => Outcome::Answered {
                latency: done.saturating_duration_since(origin),
                error: ErrorClass::of_status(status),
            },
            Err(class) => {
                // The connection's state is unknown after a failure: start afresh.
                self.connection = None;
                Outcome::Failed(class)
            }
        };
        lock(&self.log).record(
            endpoint,
            seconds.second_of(done),
            send_delay,
            send_delay > shared.late_threshold,
            outcome,
        );
        Some(done)
    }
}

/// A request template turned into what is sent, built once per run: the HTTP/1.1
/// bytes, or the parts of the request hyper takes for HTTP/2.
struct PreparedRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    /// The whole request as written on an HTTP/1.1 connection.
    http1: Bytes,
}

impl PreparedRequest {
    fn new(config: &LoadConfig, spec: &RequestSpec) -> PreparedRequest {
        let mut headers = spec.headers.clone();
        default_content_type(&mut headers, &spec.body);
        let uri = match config.http_version {
            // HTTP/1.1 sends the path in the request line and the host in a header.
            HttpVersion::Http1 => {
                if let Ok(host) = HeaderValue::from_str(&config.target.authority) {
                    headers.entry(header::HOST).or_insert(host);
                }
                spec.path_and_query
                    .parse()
                    .unwrap_or_else(|_| Uri::from_static("/"))
            }
            // HTTP/2 takes scheme and authority from the URI (:scheme, :authority).
            HttpVersion::Http2 => {
                let scheme = if config.target.https { "https" } else { "http" };
                format!(
                    "{scheme}://{}{}",
                    config.target.authority, spec.path_and_query
                )
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/"))
            }
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let http1 = h1::encode_request(&spec.method, path, &headers, &spec.body);
        PreparedRequest {
            method: spec.method.clone(),
            uri,
            headers,
            body: spec.body.clone(),
            http1,
        }
    }

    fn build(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}
