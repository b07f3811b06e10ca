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
//! hop, no per-request allocation or timer). HTTP/2 uses hyper, whose connection is
//! driven inside the worker's task too.

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{task::JoinSet, time::Instant};

mod h1;
mod pacing;

use h1::H1Connection;
pub(crate) use pacing::{Pacer, SecondClock, Slot, Worker};

use faultline_results::{
    ErrorClass, HttpVersion, LatencyOrigin, Results, RunInfo, RunMetadata, RunRecord,
};

use crate::{
    classify::Classify as _,
    error::LoadError,
    recorder::{lock, Clock, Collected, Outcome, SharedLog},
    schedule::Schedule,
    target::{default_content_type, RequestSpec, Target},
};

/// Everything a load run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: Target,
    /// Endpoints; request `k` of the schedule goes to endpoint `k % len`.
    pub requests: Vec<RequestSpec>,
    pub schedule: Schedule,
    /// Connections, each carrying one request at a time: the bound on requests in
    /// flight (open model) or the concurrency (closed model).
    pub connections: usize,
    pub http_version: HttpVersion,
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
    config.target.check_reachable(config.timeout).await?;

    let requests: Vec<PreparedRequest> = config
        .requests
        .iter()
        .map(|spec| PreparedRequest::new(&config, spec))
        .collect();

    // Connect everything before the clock starts, so connection setup is not
    // mistaken for server latency in the first second.
    let mut connecting = JoinSet::new();
    for _ in 0..config.connections {
        let target = config.target.clone();
        let version = config.http_version;
        let timeout = config.timeout;
        connecting.spawn(async move {
            tokio::time::timeout(timeout, Connection::open(&target, version)).await
        });
    }
    let mut connections = Vec::with_capacity(config.connections);
    while let Some(joined) = connecting.join_next().await {
        // A connection that fails now is retried by its worker when it has a request.
        connections.push(joined.ok().and_then(|r| r.ok()).and_then(|r| r.ok()));
    }

    let (clock, start_wall) = Clock::start_now();
    let shared = Arc::new(Shared {
        target: config.target.clone(),
        http_version: config.http_version,
        requests,
        timeout: config.timeout,
        late_threshold: config.late_threshold,
        latency_origin: config.latency_origin,
    });
    let logs: Vec<SharedLog> = (0..config.connections)
        .map(|_| SharedLog::default())
        .collect();
    let workers: Vec<RequestWorker> = logs
        .iter()
        .zip(connections)
        .map(|(log, connection)| RequestWorker {
            shared: shared.clone(),
            log: log.clone(),
            connection,
            watchdog: Watchdog::default(),
        })
        .collect();
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
            &config.schedule.target(),
        )
    };
    let names: Vec<String> = config.requests.iter().map(|r| r.name.clone()).collect();
    let pacing = PacingRecord {
        schedule: &config.schedule,
        late_threshold: config.late_threshold,
        max_send_delay: config.max_send_delay(),
    };
    pacing.results(metadata, &names, &collected)
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
            schedule: self.schedule.target(),
            endpoint_names: names,
            collected: &collected.buckets,
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
    target: Target,
    http_version: HttpVersion,
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
            let opened = tokio::time::timeout(
                shared.timeout,
                Connection::open(&shared.target, shared.http_version),
            )
            .await;
            match opened {
                Ok(Ok(connection)) => self.connection = Some(connection),
                failed => {
                    if let Ok(Err(error)) = &failed {
                        tracing::debug!(%error, "connect failed");
                    }
                    let now = Instant::now();
                    let delay = now.saturating_duration_since(intended);
                    lock(&self.log).record(
                        endpoint,
                        seconds.second_of(now),
                        delay,
                        delay > shared.late_threshold,
                        Outcome::Failed(ErrorClass::Connect),
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
                format!("http://{}{}", config.target.authority, spec.path_and_query)
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

type ConnectionDriver = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// One connection to the target.
enum Connection {
    /// The engine's own HTTP/1.1 client (module `h1`).
    Http1(H1Connection),
    /// hyper's HTTP/2 client: the handle requests are sent through, and the
    /// connection future that does the I/O, driven by the worker's own task
    /// (`None` once the connection has ended).
    Http2 {
        sender: http2::SendRequest<Full<Bytes>>,
        driver: Option<ConnectionDriver>,
    },
}

impl Connection {
    async fn open(target: &Target, version: HttpVersion) -> Result<Connection, std::io::Error> {
        let stream = target.connect().await?;
        Ok(match version {
            HttpVersion::Http1 => Connection::Http1(H1Connection::new(stream)),
            HttpVersion::Http2 => {
                let (sender, driver) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
                Connection::Http2 {
                    sender,
                    driver: Some(Box::pin(driver)),
                }
            }
        })
    }

    fn is_closed(&self) -> bool {
        match self {
            Connection::Http1(conn) => conn.is_closed(),
            Connection::Http2 { sender, driver } => driver.is_none() || sender.is_closed(),
        }
    }

    /// Waits until `deadline` while watching (HTTP/1.1) or driving (HTTP/2) the
    /// idle connection.
    async fn idle_until(&mut self, deadline: Instant) {
        match self {
            Connection::Http1(conn) => conn.idle_until(deadline).await,
            Connection::Http2 { driver, .. } => {
                drive(driver, tokio::time::sleep_until(deadline)).await
            }
        }
    }

    /// Sends one request and reads its whole response before `deadline`.
    async fn send(
        &mut self,
        request: &PreparedRequest,
        deadline: Instant,
        watchdog: &mut Watchdog,
    ) -> Result<http::StatusCode, ErrorClass> {
        match self {
            Connection::Http1(conn) => {
                let head = request.method == Method::HEAD;
                watchdog
                    .run(deadline, conn.exchange(&request.http1, head))
                    .await
                    .unwrap_or(Err(ErrorClass::Timeout))
            }
            Connection::Http2 { sender, driver } => {
                let request = request.build();
                let exchange = async {
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
                    // Read frames and drop them: the body must be consumed for the
                    // stream to finish, but nothing needs it kept.
                    while let Some(frame) = body.frame().await {
                        frame.map_err(|e| ErrorClass::of_hyper_error(&e))?;
                    }
                    Ok(status)
                };
                drive(driver, watchdog.run(deadline, exchange))
                    .await
                    .unwrap_or(Err(ErrorClass::Timeout))
            }
        }
    }
}

/// Polls `future` to completion while also polling the connection driver (until it
/// ends, when it is set to `None`; pending requests then fail on their own).
async fn drive<F: Future>(driver: &mut Option<ConnectionDriver>, future: F) -> F::Output {
    let mut future = pin!(future);
    poll_fn(|cx| {
        if let Some(connection) = driver.as_mut() {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                *driver = None;
            }
        }
        future.as_mut().poll(cx)
    })
    .await
}
