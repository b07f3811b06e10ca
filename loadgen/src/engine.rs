//! The load engine: one loop, driven by a schedule.
//!
//! [`run`] checks the target is reachable, opens every connection, starts the
//! clock and spawns one task per connection (a *worker*). A worker asks the pacer
//! for its next request: in an open schedule that is the next intended send time
//! not yet taken by another worker (so an idle connection takes whatever is due
//! next, and a request due while every connection is busy waits and counts its
//! wait), in a closed schedule it is "now" until the run's end. The worker sleeps
//! until the intended time, sends, reads the whole response and records, into its
//! own log, latency from the intended time, the send delay, and the outcome.
//! Meanwhile [`run`] itself collects the logs once a wall-clock second, reports
//! progress, and at the end builds [`Results`].
//!
//! HTTP/1.1 goes through the engine's own client (module `h1`): each endpoint's request
//! is serialized once per run, and a request costs one write, the reads of its
//! response and a parse, in the worker's own task (no connection task, no channel
//! hop, no per-request allocation or timer). HTTP/2 uses hyper, whose connection is
//! driven inside the worker's task too.

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
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

use h1::H1Connection;

use faultline_results::{
    ErrorClass, HttpVersion, LatencyOrigin, Results, RunInfo, RunMetadata, RunRecord,
};

use crate::{
    classify::Classify as _,
    error::LoadError,
    recorder::{lock, Clock, Collected, Outcome, SharedLog},
    schedule::{Schedule, SendTimes},
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
    let Clock {
        start,
        start_unix_nanos,
    } = clock;
    let pacer = match config.schedule.send_times() {
        Some(times) => Pacer::Open(Box::new(Mutex::new((times, 0)))),
        None => Pacer::Closed {
            end: start + config.schedule.duration(),
            next: AtomicU64::new(0),
        },
    };
    let shared = Arc::new(Shared {
        target: config.target.clone(),
        http_version: config.http_version,
        requests,
        pacer,
        start,
        start_unix_nanos,
        timeout: config.timeout,
        late_threshold: config.late_threshold,
        max_send_delay: config.max_send_delay(),
        latency_origin: config.latency_origin,
    });

    let logs: Vec<SharedLog> = (0..config.connections)
        .map(|_| SharedLog::default())
        .collect();
    let mut workers = JoinSet::new();
    for (log, connection) in logs.iter().zip(connections) {
        workers.spawn(worker(shared.clone(), log.clone(), connection));
    }

    let working = async {
        while let Some(joined) = workers.join_next().await {
            // A worker that panicked loses only its own unrecorded request.
            if let Err(error) = joined {
                tracing::error!(%error, "load worker failed");
            }
        }
    };
    let ((), collected) =
        collect_while(working, &logs, clock, &config.schedule, None, progress).await;

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
    Results::build(RunRecord {
        metadata,
        schedule: config.schedule.target(),
        endpoint_names: &names,
        collected: &collected.buckets,
        late_threshold_ms: config.late_threshold.as_secs_f64() * 1000.0,
        max_send_delay_ms: config.max_send_delay().as_secs_f64() * 1000.0,
    })
    .map_err(|e| LoadError::BadResults {
        path: "(this run)".into(),
        reason: e.to_string(),
    })
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

/// The granularity of Tokio's timer.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// What every worker shares.
struct Shared {
    target: Target,
    http_version: HttpVersion,
    requests: Vec<PreparedRequest>,
    pacer: Pacer,
    start: Instant,
    start_unix_nanos: u128,
    timeout: Duration,
    late_threshold: Duration,
    max_send_delay: Duration,
    latency_origin: LatencyOrigin,
}

/// Hands out requests: intended times of an open schedule, or "now" until the end.
enum Pacer {
    /// The send times and how many were handed out. A `std::sync::Mutex`: it is
    /// held only to take the next time, never across an await.
    Open(Box<Mutex<(SendTimes, u64)>>),
    Closed {
        end: Instant,
        next: AtomicU64,
    },
}

/// One request to send: its endpoint and when it was due.
struct Slot {
    endpoint: usize,
    /// The intended send time; in a closed schedule, when the worker became free for
    /// it (took the slot, or finished its previous request).
    intended: Instant,
    /// Whether `intended` comes from an open schedule (and may lie ahead).
    paced: bool,
}

impl Shared {
    /// The next request for an idle worker, dropping (and counting) requests that
    /// are already overdue by more than the maximum send delay. `free_since`: when
    /// the worker finished its last request, if it has done nothing since (a closed
    /// schedule's next request is due then, which saves reading the clock again).
    fn next_slot(
        &self,
        log: &SharedLog,
        clock: &mut SecondClock,
        free_since: Option<Instant>,
    ) -> Option<Slot> {
        let endpoints = self.requests.len() as u64;
        let endpoint_of = |index: u64| {
            if endpoints == 1 {
                0
            } else {
                (index % endpoints) as usize
            }
        };
        match &self.pacer {
            Pacer::Closed { end, next } => {
                let now = free_since.unwrap_or_else(Instant::now);
                if now >= *end {
                    return None;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                Some(Slot {
                    endpoint: endpoint_of(index),
                    intended: now,
                    paced: false,
                })
            }
            Pacer::Open(times) => loop {
                let (offset, index) = {
                    let mut guard = times
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    let offset = guard.0.next()?;
                    let index = guard.1;
                    guard.1 += 1;
                    (offset, index)
                };
                let endpoint = endpoint_of(index);
                let intended = self.start + offset;
                let now = Instant::now();
                if now.saturating_duration_since(intended) > self.max_send_delay {
                    lock(log).record_dropped(endpoint, clock.second_of(now));
                    continue;
                }
                return Some(Slot {
                    endpoint,
                    intended,
                    paced: true,
                });
            },
        }
    }
}

/// The wall-clock second an instant falls in, as [`unix_second`] computes it, with
/// the current second's bounds kept so most requests need only two comparisons.
struct SecondClock {
    start: Instant,
    start_unix_nanos: u128,
    /// Instants in `from..until` are in `second`.
    from: Instant,
    until: Instant,
    second: u64,
}

impl SecondClock {
    fn new(shared: &Shared) -> SecondClock {
        SecondClock {
            start: shared.start,
            start_unix_nanos: shared.start_unix_nanos,
            from: shared.start,
            until: shared.start,
            second: 0,
        }
    }

    fn second_of(&mut self, at: Instant) -> u64 {
        if self.from <= at && at < self.until {
            return self.second;
        }
        let unix_nanos =
            self.start_unix_nanos + at.saturating_duration_since(self.start).as_nanos();
        let second = (unix_nanos / 1_000_000_000) as u64;
        if at >= self.start {
            let into_second = Duration::from_nanos((unix_nanos % 1_000_000_000) as u64);
            self.from = at
                .checked_sub(into_second)
                .unwrap_or(self.start)
                .max(self.start);
            self.until = at + (Duration::from_secs(1) - into_second);
            self.second = second;
        }
        second
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

/// One connection's loop: take the next request, wait for its time, send, record.
async fn worker(shared: Arc<Shared>, log: SharedLog, mut connection: Option<Connection>) {
    let mut clock = SecondClock::new(&shared);
    let mut watchdog = Watchdog::default();
    let mut free_since = None;
    while let Some(slot) = shared.next_slot(&log, &mut clock, free_since.take()) {
        let intended = slot.intended;
        // In a closed schedule the request goes out at once: it is sent when due.
        let mut sent = (!slot.paced).then_some(intended);
        if slot.paced {
            // Tokio's timer fires on the first millisecond tick at or after its
            // deadline: sleeping until `intended` would send up to 1 ms late every
            // time and add that lag to every latency. Waking in the millisecond before
            // keeps sends within a millisecond of their time without that bias
            // (latency is then measured from the earlier of intended and actual send).
            let wake = intended.checked_sub(TIMER_RESOLUTION).unwrap_or(intended);
            if wake > Instant::now() {
                // Keep watching the idle connection while waiting, so a server closing
                // it is noticed before the next request rather than failing it.
                match &mut connection {
                    Some(conn) => conn.idle_until(wake).await,
                    None => tokio::time::sleep_until(wake).await,
                }
            }
        }

        if connection.as_ref().is_none_or(Connection::is_closed) {
            connection = None;
            sent = None;
            let opened = tokio::time::timeout(
                shared.timeout,
                Connection::open(&shared.target, shared.http_version),
            )
            .await;
            match opened {
                Ok(Ok(conn)) => connection = Some(conn),
                failed => {
                    if let Ok(Err(error)) = &failed {
                        tracing::debug!(%error, "connect failed");
                    }
                    let now = Instant::now();
                    let delay = now.saturating_duration_since(intended);
                    lock(&log).record(
                        slot.endpoint,
                        clock.second_of(now),
                        delay,
                        delay > shared.late_threshold,
                        Outcome::Failed(ErrorClass::Connect),
                    );
                    if matches!(failed, Ok(Err(_))) && !slot.paced {
                        // Nothing paces a closed model: without a pause a refused
                        // connection would spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
            }
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };

        let request = &shared.requests[slot.endpoint];
        let sent = sent.unwrap_or_else(Instant::now);
        let answer = conn
            .send(request, sent + shared.timeout, &mut watchdog)
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
                connection = None;
                Outcome::Failed(class)
            }
        };
        lock(&log).record(
            slot.endpoint,
            clock.second_of(done),
            send_delay,
            send_delay > shared.late_threshold,
            outcome,
        );
        free_since = Some(done);
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
