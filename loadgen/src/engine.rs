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
//! hop, no per-request allocation or timer). A request with `{{...}}` placeholders
//! (module `template`) is rendered per send instead, into the worker's reused
//! buffers. HTTP/2 uses hyper: `streams` workers share each connection, so up to
//! `connections × streams` requests are in flight (module `connection`). Which
//! request and which host an arrival goes to is a weighted turn, or a replayed
//! recording's next step after its think time (module `mix`); with
//! several hosts each worker keeps a connection to each, so `connections × streams`
//! stays the bound on requests in flight. An `https://` host gets TLS on every
//! connection (module `tls` of the crate), its handshakes counted apart from
//! requests; one handshake before the run proves the TLS settings, so a wrong CA or
//! name stops the run with its cause instead of failing every request.

use std::{
    future::Future,
    pin::pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method};
use rand::{rngs::SmallRng, SeedableRng as _};
use rustls::ClientConfig;
use tokio::{sync::Notify, task::JoinSet, time::Instant};

mod connection;
mod fine_timer;
mod h1;
mod pacing;
mod prepared;

use connection::{Connection, Connector, H2Group, Message, Watchdog};
pub(crate) use pacing::{Pacer, SecondClock, Slot, Worker};
use prepared::PreparedRequest;

use faultline_results::{
    ErrorClass, HttpVersion, LatencyOrigin, Results, RunInfo, RunMetadata, RunRecord,
};

use crate::{
    classify::Classify as _,
    error::LoadError,
    feeder::Feeder,
    har::ReplayStep,
    mix::Routes,
    recorder::{lock, Clock, Collected, Outcome, SharedLog},
    schedule::Schedule,
    target::{Host, RequestSpec, Target},
    template::Values,
    tls::{TlsSettings, TlsStats, ALPN_HTTP1, ALPN_HTTP2},
};

/// Everything a load run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The host (or the first of [`LoadConfig::hosts`]): its URL names the run, its
    /// path is the requests' base.
    pub target: Target,
    /// Several hosts to spread the requests over by weight (each worker keeps a
    /// connection to each); empty: `target` alone.
    pub hosts: Vec<Host>,
    /// Endpoints, in weighted turns (module `mix`): equal weights take plain turns,
    /// 3:1 sends exactly three of every four arrivals to the first.
    pub requests: Vec<RequestSpec>,
    /// Per request, the index in [`LoadConfig::all_hosts`] of the one host it goes to
    /// (a recording spanning several hosts); empty: each request meets every host.
    pub request_hosts: Vec<usize>,
    /// A recording replayed in order: each worker is a virtual user that takes these
    /// steps one after another, waiting each one's think time; empty: the requests'
    /// weighted turns. Needs a closed schedule.
    pub replay: Vec<ReplayStep>,
    /// Rows that fill the requests' `{{column}}` placeholders.
    pub feeder: Option<Arc<Feeder>>,
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
            hosts: Vec::new(),
            requests: vec![request],
            request_hosts: Vec::new(),
            replay: Vec::new(),
            feeder: None,
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

    /// The hosts requests go to, with their weights.
    pub fn all_hosts(&self) -> Vec<Host> {
        if self.hosts.is_empty() {
            vec![Host {
                target: self.target.clone(),
                weight: 1,
            }]
        } else {
            self.hosts.clone()
        }
    }

    /// Compiles every request's templates for every host, so a bad template or a
    /// missing feeder column is found before anything is sent.
    fn prepare(&self, hosts: &[Host], routes: &Routes) -> Result<Vec<PreparedRequest>, LoadError> {
        let columns = self.feeder.as_ref().map_or(&[][..], |f| f.columns());
        let endpoints = routes.endpoints().into_iter();
        endpoints
            .map(|(request, host)| {
                let (target, spec) = (&hosts[host].target, &self.requests[request]);
                PreparedRequest::new(self.http_version, target, spec, request + 1, columns)
            })
            .collect()
    }

    /// Checks what can be checked before a run, so a plan is refused whole before
    /// anything starts: the options, the weights, and every request's templates
    /// against the feeder's columns.
    pub fn check(&self) -> Result<(), LoadError> {
        self.validate()?;
        let hosts = self.all_hosts();
        let routes = self.routes(&hosts)?;
        self.prepare(&hosts, &routes)?;
        Ok(())
    }

    /// Which request and host each arrival goes to (module `mix`).
    fn routes(&self, hosts: &[Host]) -> Result<Routes, LoadError> {
        let request_weights: Vec<u32> = self.requests.iter().map(|r| r.weight).collect();
        let host_weights: Vec<u32> = hosts.iter().map(|h| h.weight).collect();
        Routes::new(
            &request_weights,
            &host_weights,
            &self.request_hosts,
            &self.replay,
        )
    }

    /// The results' endpoint names: the requests', with the host when there are several.
    fn endpoint_names(&self, hosts: &[Host], routes: &Routes) -> Vec<String> {
        let endpoints = routes.endpoints().into_iter();
        endpoints
            .map(|(request, host)| match hosts.len() {
                1 => self.requests[request].name.clone(),
                _ => format!(
                    "{} @ {}",
                    self.requests[request].name, hosts[host].target.authority
                ),
            })
            .collect()
    }

    fn max_send_delay(&self) -> Duration {
        self.max_send_delay.unwrap_or(self.timeout)
    }

    /// The rustls configuration of a run with an `https://` host (`None` without),
    /// offering the run's HTTP version by ALPN.
    fn tls_config(&self, hosts: &[Host]) -> Result<Option<ClientConfig>, LoadError> {
        if !hosts.iter().any(|h| h.target.https) {
            return Ok(None);
        }
        let alpn = match self.http_version {
            HttpVersion::Http1 => ALPN_HTTP1,
            HttpVersion::Http2 => ALPN_HTTP2,
        };
        self.tls.client_config(&[alpn]).map(Some)
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
        if !self.replay.is_empty() && self.schedule.expected_requests().is_some() {
            return invalid(
                "--har-replay ordered",
                "each connection is a virtual user replaying the recording at its own pace: \
                 use --closed, not a rate",
            );
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
    let hosts = config.all_hosts();
    let routes = config.routes(&hosts)?;
    let requests = config.prepare(&hosts, &routes)?;
    // Bad TLS files are bad input: said before anything is connected to.
    let tls_config = config.tls_config(&hosts)?;
    let tls_stats = Arc::new(TlsStats::new());
    let mut connectors = Vec::with_capacity(hosts.len());
    for host in hosts {
        host.target.check_reachable(config.timeout).await?;
        let (version, timeout) = (config.http_version, config.timeout);
        let connector = Connector::new(
            host.target,
            version,
            tls_config.as_ref(),
            &tls_stats,
            timeout,
        );
        connectors.push(connector.await?);
    }
    let shared = Arc::new(Shared {
        http_version: config.http_version,
        requests,
        routes,
        feeder: config.feeder.clone(),
        feeder_exhausted: AtomicBool::new(false),
        feeder_ran_out: Notify::new(),
        timeout: config.timeout,
        late_threshold: config.late_threshold,
        latency_origin: config.latency_origin,
        hosts: connectors,
    });
    let opened = open_all(&shared, config.connections).await;

    config.schedule.wait_for_start().await;
    let (clock, start_wall) = Clock::start_now();
    let logs: Vec<SharedLog> = (0..config.connections * config.streams)
        .map(|_| SharedLog::default())
        .collect();
    let workers = RequestWorker::all(&shared, opened, &logs, config.streams);
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
    let elapsed = clock.start.elapsed();

    let urls: Vec<&str> = shared.hosts.iter().map(|c| c.target.url.as_str()).collect();
    let metadata = RunMetadata {
        http_version: config.http_version,
        connections: config.connections as u64,
        streams: config.streams as u64,
        timeout_ms: config.timeout.as_millis() as u64,
        latency_origin: config.latency_origin,
        ..RunMetadata::of_run(
            &config.run_info,
            &urls.join(", "),
            start_wall,
            &config.schedule.target(),
        )
    };
    let pacing = PacingRecord::new(
        &config.schedule,
        config.late_threshold,
        config.max_send_delay(),
    );
    let names = config.endpoint_names(&config.all_hosts(), &shared.routes);
    let mut results = pacing.results(metadata, &names, &collected)?;
    if tls_config.is_some() {
        results.tls = Some(tls_stats.results().map_err(unrecordable)?);
    }
    if let Some(feeder) = shared
        .feeder
        .as_ref()
        .filter(|_| shared.feeder_exhausted.load(Ordering::Relaxed))
    {
        // The run ended early on purpose: the results say so, where the summary shows it.
        let ended = format!(
            "feeder {} exhausted after {} rows: the run ended at {:.1} s of {:.1} s",
            feeder.path,
            feeder.len(),
            elapsed
                .as_secs_f64()
                .min(config.schedule.duration().as_secs_f64()),
            config.schedule.duration().as_secs_f64()
        );
        let message = &mut results.generator.message;
        *message = Some(match message.take() {
            Some(earlier) => format!("{ended}; {earlier}"),
            None => ended,
        });
    }
    Ok(results)
}

/// Opens every connection group's connection to every host before the clock
/// starts, so connection setup is not mistaken for server latency in the first
/// second. Yields each group's HTTP/2 groups and connections, one per host (`None`
/// where it failed: a worker retries when it has a request for that host).
async fn open_all(shared: &Arc<Shared>, connections: usize) -> Vec<OpenedGroup> {
    let mut connecting = JoinSet::new();
    let hosts = shared.hosts.len();
    let groups: Vec<Vec<Arc<H2Group>>> = (0..connections)
        .map(|_| (0..hosts).map(|_| Arc::new(H2Group::default())).collect())
        .collect();
    for (index, hosts_groups) in groups.iter().enumerate() {
        for (host, group) in hosts_groups.iter().enumerate() {
            let (shared, group) = (shared.clone(), group.clone());
            connecting.spawn(async move {
                let opening = shared.hosts[host].open(&group);
                let opened = tokio::time::timeout(shared.timeout, opening).await;
                (index, host, opened.ok().and_then(Result::ok))
            });
        }
    }
    let mut opened: Vec<Vec<Option<Connection>>> = (0..connections)
        .map(|_| (0..hosts).map(|_| None).collect())
        .collect();
    while let Some(joined) = connecting.join_next().await {
        if let Ok((index, host, connection)) = joined {
            opened[index][host] = connection;
        }
    }
    groups.into_iter().zip(opened).collect()
}

/// One connection group's HTTP/2 groups and opened connections, one per host.
type OpenedGroup = (Vec<Arc<H2Group>>, Vec<Option<Connection>>);

/// How a paced run was paced, as its results state it (both modes alike).
pub(crate) struct PacingRecord<'a> {
    pub schedule: &'a Schedule,
    pub late_threshold: Duration,
    pub max_send_delay: Duration,
}

impl PacingRecord<'_> {
    /// How a run of `schedule` was paced.
    pub(crate) fn new(
        schedule: &Schedule,
        late_threshold: Duration,
        max_send_delay: Duration,
    ) -> PacingRecord<'_> {
        PacingRecord {
            schedule,
            late_threshold,
            max_send_delay,
        }
    }

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
    /// The hosts' connectors, in the order of [`LoadConfig::hosts`].
    hosts: Vec<Connector>,
    http_version: HttpVersion,
    /// Per endpoint, numbered by `routes`.
    requests: Vec<PreparedRequest>,
    routes: Routes,
    feeder: Option<Arc<Feeder>>,
    /// Set when a `once` feeder ran out: every worker stops.
    feeder_exhausted: AtomicBool,
    /// Wakes the workers waiting for a later arrival when the feeder runs out, so
    /// the run ends then rather than when the last of them wakes.
    feeder_ran_out: Notify,
    timeout: Duration,
    late_threshold: Duration,
    latency_origin: LatencyOrigin,
}

/// One worker's slot: an arrival is one request on its connection to the arrival's
/// host, recorded into the worker's log.
struct RequestWorker {
    shared: Arc<Shared>,
    log: SharedLog,
    state: WorkerState,
}

/// What a worker changes while it sends (apart from the shared log).
struct WorkerState {
    /// One per host; `None` until (re)connected: a failed connection is opened again
    /// for the next request to its host.
    connections: Vec<Option<Connection>>,
    /// One per host: the workers sharing an HTTP/2 connection with this one (only
    /// this one for HTTP/1.1).
    groups: Vec<Arc<H2Group>>,
    watchdog: Watchdog,
    /// Templates' random values and a `random` feeder's rows (seeded once per worker).
    rng: SmallRng,
    /// Reused buffers of templated HTTP/1.1 requests: the rendered body, the request.
    body: Vec<u8>,
    encoded: Vec<u8>,
    /// Whether the last [`WorkerState::connect`] opened a new connection (the
    /// request then goes out after it, not at its slot's time).
    reconnected: bool,
    /// A replaying virtual user's steps taken so far.
    replayed: u64,
}

impl RequestWorker {
    /// The workers of every connection group, `streams` to a group, one per log.
    /// The first worker of a group takes the connections opened for it; the others
    /// of an HTTP/2 group take handles to the same connections.
    fn all(
        shared: &Arc<Shared>,
        opened: Vec<OpenedGroup>,
        logs: &[SharedLog],
        streams: usize,
    ) -> Vec<RequestWorker> {
        let mut logs_left = logs.iter();
        let mut workers = Vec::with_capacity(logs.len());
        for (groups, connections) in opened {
            let mut first = Some(connections);
            for log in logs_left.by_ref().take(streams) {
                let connections = first
                    .take()
                    .unwrap_or_else(|| groups.iter().map(|g| g.handle()).collect());
                workers.push(RequestWorker {
                    shared: shared.clone(),
                    log: log.clone(),
                    state: WorkerState {
                        connections,
                        groups: groups.clone(),
                        watchdog: Watchdog::default(),
                        rng: SmallRng::from_rng(&mut rand::rng()),
                        body: Vec::new(),
                        encoded: Vec::new(),
                        reconnected: false,
                        replayed: 0,
                    },
                });
            }
        }
        workers
    }
}

impl Worker for RequestWorker {
    fn dropped(&mut self, index: u64, second: u64) {
        lock(&self.log).record_dropped(self.shared.routes.of_arrival(index).0, second);
    }

    fn finished(&self) -> bool {
        self.shared.feeder_exhausted.load(Ordering::Relaxed)
    }

    async fn idle_until(&mut self, wake: Instant) {
        let shared = &*self.shared;
        // Keep watching an idle connection while waiting, so a server closing it is
        // noticed before the next request rather than failing it.
        let waiting = async {
            match self.state.connections.iter_mut().flatten().next() {
                Some(connection) => connection.idle_until(wake).await,
                None => tokio::time::sleep_until(wake).await,
            }
        };
        if shared.feeder.is_none() {
            // No feeder, no early end: nothing more to wait for (nor to register).
            return waiting.await;
        }
        let mut ran_out = pin!(shared.feeder_ran_out.notified());
        // Registered before the flag is read, so a notice in between is not lost.
        ran_out.as_mut().enable();
        if shared.feeder_exhausted.load(Ordering::Relaxed) {
            return;
        }
        tokio::select! {
            () = waiting => {}
            () = ran_out => {}
        }
    }

    /// Sends the arrival's request and records it.
    async fn serve(&mut self, slot: Slot, seconds: &mut SecondClock) -> Option<Instant> {
        let (endpoint, host, think) = match self.shared.routes.replaying() {
            false => {
                let (endpoint, host) = self.shared.routes.of_arrival(slot.index);
                (endpoint, host, Duration::ZERO)
            }
            true => {
                // The slot is due when the last step's think time is over.
                if !slot.paced && slot.intended > Instant::now() {
                    self.idle_until(slot.intended).await;
                }
                self.state.replayed += 1;
                self.shared.routes.step(self.state.replayed - 1)
            }
        };
        let shared = &*self.shared;
        let intended = slot.intended;
        // In a closed schedule the request goes out at once: it is sent when due.
        let mut sent = (!slot.paced).then_some(intended);
        if let Err(failed) = self.state.connect(shared, host).await {
            let now = Instant::now();
            let delay = now.saturating_duration_since(intended);
            let class = match failed {
                ConnectFailure::Refused(class) => class,
                ConnectFailure::TimedOut => ErrorClass::Connect,
            };
            lock(&self.log).record(
                endpoint,
                seconds.second_of(now),
                delay,
                delay > shared.late_threshold,
                Outcome::Failed(class),
            );
            if matches!(failed, ConnectFailure::Refused(_)) && !slot.paced {
                // Nothing paces a closed model: without a pause a refused connection
                // would spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return None;
        } else if self.state.reconnected {
            sent = None;
        }

        let request = &shared.requests[endpoint];
        let state = &mut self.state;
        let message = match &request.templated {
            None => request.message(shared.http_version),
            Some(template) => {
                let row = match (&shared.feeder, template.uses_row) {
                    (Some(feeder), true) => match feeder.take(&mut state.rng) {
                        Some(row) => Some(row),
                        None => {
                            shared.feeder_exhausted.store(true, Ordering::Relaxed);
                            shared.feeder_ran_out.notify_waiters();
                            return None;
                        }
                    },
                    _ => None,
                };
                let mut values = Values {
                    seq: slot.index,
                    row,
                    rng: &mut state.rng,
                };
                match shared.http_version {
                    HttpVersion::Http1 => {
                        template.encode_http1(&mut values, &mut state.body, &mut state.encoded);
                        Some(Message::Http1 {
                            bytes: &state.encoded,
                            head: template.is_head(),
                        })
                    }
                    HttpVersion::Http2 => template
                        .build_http2(&mut values, &request.scheme_authority)
                        .map(Message::Http2),
                }
            }
        };
        let connection = state.connections[host].as_mut()?;
        let sent = sent.unwrap_or_else(Instant::now);
        let answer = match message {
            Some(message) => {
                connection
                    .send(message, sent + shared.timeout, &mut state.watchdog)
                    .await
            }
            // A filled-in path that is no URI: the request cannot be sent.
            None => Err(ErrorClass::Protocol),
        };
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
                state.connections[host] = None;
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
        // A replaying user's next step is due after its think time (zero otherwise).
        Some(done + think)
    }
}

/// Why a worker has no connection for its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectFailure {
    /// Refused, or the TLS handshake failed: the class it counts under.
    Refused(ErrorClass),
    TimedOut,
}

impl WorkerState {
    /// Makes sure the connection to `host` is open, opening it again if it closed.
    async fn connect(&mut self, shared: &Shared, host: usize) -> Result<(), ConnectFailure> {
        self.reconnected = false;
        let slot = &mut self.connections[host];
        if slot.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        *slot = None;
        self.reconnected = true;
        let opening = shared.hosts[host].open(&self.groups[host]);
        match tokio::time::timeout(shared.timeout, opening).await {
            Ok(Ok(connection)) => {
                *slot = Some(connection);
                Ok(())
            }
            Ok(Err(error)) => {
                tracing::debug!(message = %error.message, "connect failed");
                Err(ConnectFailure::Refused(error.class))
            }
            Err(_) => Err(ConnectFailure::TimedOut),
        }
    }
}
