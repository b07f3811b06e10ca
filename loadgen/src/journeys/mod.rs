//! User journeys of the reference system: browse, checkout and ingest, weighted.
//!
//! - **browse**: `GET /api/products`, then `GET /api/products/{id}` twice.
//! - **checkout**: `POST /api/users/login` → `POST /api/orders` (with an
//!   `Idempotency-Key`) → long-poll `GET /api/orders/{id}/view` until the read model
//!   shows the order. The time from the order's acknowledgement to the view is the
//!   **consistency window**; every acknowledged (or indeterminate) order goes into
//!   the **write ledger** ([`ledger`]) for the checker.
//! - **ingest**: `POST /api/ingest/events` with a batch of events.
//!
//! The journeys are written once ([`steps`]) against a [`steps::Transport`] and run by
//! one of two drivers:
//!
//! - [`Driver::Open`] (the default): the open-model engine's schedule gives each
//!   journey an intended start ("one journey started per arrival"); the first
//!   request's latency is measured from that intended time, so a stalled system
//!   cannot hide behind journeys the generator never started. A closed schedule
//!   runs `concurrency` journey loops back to back instead.
//! - [`Driver::Goose`] ([`goose_driver`]): the same journeys as goose scenarios
//!   with weights. Goose is a closed model (its users wait for each answer; it has
//!   no arrival rate, goose#87), so it measures latency from the actual send and
//!   takes only a closed schedule; use it to compare with goose's own view.
//!
//! Both record into the engine's [`recorder`](crate::recorder) (per worker, per step,
//! per second), so journeys give the same `results.json` as plain load, with one
//! endpoint per step (`POST /api/orders`, ...).

pub mod goose_driver;
pub mod ledger;
pub mod steps;

use std::{
    path::PathBuf,
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use rand::{rngs::SmallRng, Rng as _, SeedableRng as _};
use serde::Deserialize;
use tokio::{task::JoinSet, time::Instant};

use faultline_results::{
    histogram::{new_histogram, EncodedHistogram, HistogramCodecError},
    JourneyResults, JourneySecond, LatencyOrigin, Results, RunInfo, RunMetadata, RunRecord,
};

use crate::{
    engine::{collect_while, Progress},
    error::LoadError,
    recorder::{lock, Clock, SharedLog},
    schedule::Schedule,
    target::Target,
};

use self::{
    ledger::Ledger,
    steps::{Journey, JourneyContext, ReqwestTransport, VirtualUser},
};

/// A journey of the reference system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JourneyKind {
    Browse,
    Checkout,
    Ingest,
}

impl JourneyKind {
    pub const ALL: [JourneyKind; 3] = [
        JourneyKind::Browse,
        JourneyKind::Checkout,
        JourneyKind::Ingest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JourneyKind::Browse => "browse",
            JourneyKind::Checkout => "checkout",
            JourneyKind::Ingest => "ingest",
        }
    }

    /// The steps it records, in order.
    pub fn steps(self) -> &'static [Step] {
        match self {
            JourneyKind::Browse => &[Step::ListProducts, Step::GetProduct],
            JourneyKind::Checkout => &[Step::Login, Step::PlaceOrder, Step::OrderView],
            JourneyKind::Ingest => &[Step::Ingest],
        }
    }

    /// Whether it acts as a registered user.
    fn needs_users(self) -> bool {
        !matches!(self, JourneyKind::Browse)
    }
}

impl FromStr for JourneyKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        JourneyKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text.trim())
            .ok_or_else(|| format!("unknown journey {text:?} (known: browse, checkout, ingest)"))
    }
}

/// A request of a journey; its results go under [`Step::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    ListProducts,
    GetProduct,
    Login,
    PlaceOrder,
    OrderView,
    Ingest,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::ListProducts,
        Step::GetProduct,
        Step::Login,
        Step::PlaceOrder,
        Step::OrderView,
        Step::Ingest,
    ];

    /// The endpoint name, as plain load would record the same request.
    pub fn name(self) -> &'static str {
        match self {
            Step::ListProducts => "GET /api/products",
            Step::GetProduct => "GET /api/products/{id}",
            Step::Login => "POST /api/users/login",
            Step::PlaceOrder => "POST /api/orders",
            Step::OrderView => "GET /api/orders/{id}/view",
            Step::Ingest => "POST /api/ingest/events",
        }
    }
}

/// Journeys and their weights, e.g. `browse=6,checkout=3,ingest=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyMix {
    weights: Vec<(JourneyKind, u32)>,
    total: u32,
}

impl JourneyMix {
    /// A mix from weights; zero weights are left out, and at least one must remain.
    pub fn new(weights: impl IntoIterator<Item = (JourneyKind, u32)>) -> Result<Self, String> {
        let mut kept: Vec<(JourneyKind, u32)> = Vec::new();
        for (kind, weight) in weights {
            if kept.iter().any(|(k, _)| *k == kind) {
                return Err(format!("journey {} is given twice", kind.name()));
            }
            if weight > 0 {
                kept.push((kind, weight));
            }
        }
        if kept.is_empty() {
            return Err("no journey has a weight above zero".into());
        }
        let total = kept
            .iter()
            .try_fold(0u32, |sum, (_, w)| sum.checked_add(*w))
            .ok_or("the weights add up to more than 2^32")?;
        Ok(JourneyMix {
            weights: kept,
            total,
        })
    }

    /// Picks a journey with probability proportional to its weight.
    pub fn pick(&self, rng: &mut SmallRng) -> JourneyKind {
        let mut ticket = rng.random_range(0..self.total);
        for (kind, weight) in &self.weights {
            if ticket < *weight {
                return *kind;
            }
            ticket -= weight;
        }
        self.weights[0].0
    }

    pub fn kinds(&self) -> impl Iterator<Item = JourneyKind> + '_ {
        self.weights.iter().map(|(kind, _)| *kind)
    }

    pub fn weights(&self) -> &[(JourneyKind, u32)] {
        &self.weights
    }

    fn contains(&self, kind: JourneyKind) -> bool {
        self.kinds().any(|k| k == kind)
    }
}

impl FromStr for JourneyMix {
    type Err = String;

    /// `browse=6,checkout=3` (a name alone weighs 1).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut weights = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => (
                    name,
                    weight
                        .trim()
                        .parse::<u32>()
                        .map_err(|e| format!("weight of {name:?}: {e}"))?,
                ),
                None => (part, 1),
            };
            weights.push((name.parse::<JourneyKind>()?, weight));
        }
        JourneyMix::new(weights)
    }
}

/// Which engine drives the journeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// faultline's engine: open model (or closed), latency from the intended start.
    #[default]
    Open,
    /// goose scenarios: closed model only, latency from the actual send.
    Goose,
}

/// Everything a journey run needs.
#[derive(Debug, Clone)]
pub struct JourneyConfig {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub mix: JourneyMix,
    /// Journey arrivals (open) or the run's length (closed).
    pub schedule: Schedule,
    pub driver: Driver,
    /// Journeys in flight at most (open), or journey loops / goose users (closed).
    pub concurrency: usize,
    /// Users registered at set-up that checkout and ingest act as.
    pub users: usize,
    pub timeout: Duration,
    pub late_threshold: Duration,
    /// A journey still not started this long after its intended time is dropped.
    pub max_send_delay: Option<Duration>,
    pub ingest_batch: usize,
    pub consistency_deadline: Duration,
    pub ledger: Option<PathBuf>,
    pub seed: Option<u64>,
    pub run_info: RunInfo,
    /// Notified when the schedule's clock starts, after the set-up (registering users
    /// takes a while), so whatever runs alongside (a fault timeline) starts with the load.
    pub clock_started: Option<Arc<tokio::sync::Notify>>,
}

impl JourneyConfig {
    /// Defaults for a base URL and a schedule.
    pub fn new(base_url: &str, mix: JourneyMix, schedule: Schedule) -> JourneyConfig {
        JourneyConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            mix,
            schedule,
            driver: Driver::Open,
            concurrency: 64,
            users: 20,
            timeout: Duration::from_secs(5),
            late_threshold: Duration::from_millis(10),
            max_send_delay: None,
            ingest_batch: 50,
            consistency_deadline: Duration::from_secs(30),
            ledger: None,
            seed: None,
            run_info: RunInfo::default(),
            clock_started: None,
        }
    }

    fn validate(&self) -> Result<Target, LoadError> {
        let invalid = |option, reason: &str| LoadError::InvalidArgument {
            option,
            reason: reason.into(),
        };
        let target = Target::parse(&self.base_url)?;
        if target.path_and_query != "/" {
            return Err(invalid(
                "journey target",
                "give the gateway's base URL without a path (e.g. http://127.0.0.1:8080): journeys know their paths",
            ));
        }
        if self.concurrency == 0 {
            return Err(invalid("connections", "at least one is needed"));
        }
        if self.users == 0 && self.mix.kinds().any(JourneyKind::needs_users) {
            return Err(invalid(
                "users",
                "checkout and ingest need at least one user",
            ));
        }
        if self.ingest_batch == 0 || self.ingest_batch > 10_000 {
            return Err(invalid("ingest batch", "give 1 to 10,000 events per batch"));
        }
        if self.timeout.is_zero() || self.consistency_deadline.is_zero() {
            return Err(invalid("timeout", "timeouts must be longer than zero"));
        }
        if self.driver == Driver::Goose && !matches!(self.schedule, Schedule::Closed { .. }) {
            return Err(invalid(
                "driver",
                "goose has no open (arrival-rate) model (goose#87): use --closed with --driver goose, or the default driver for a rate",
            ));
        }
        Ok(target)
    }

    fn max_send_delay(&self) -> Duration {
        self.max_send_delay.unwrap_or(self.timeout)
    }
}

/// Runs the journeys: set-up (catalogue, users), the load, and results with the
/// consistency window and the ledger's location.
pub async fn run(
    config: JourneyConfig,
    progress: impl FnMut(&Progress) + Send,
) -> Result<Results, LoadError> {
    let target = config.validate()?;
    target.check_reachable(config.timeout).await?;
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .pool_max_idle_per_host(config.concurrency)
        .build()
        .map_err(|e| setup_error("building the HTTP client", e.to_string()))?;
    let base_url: Arc<str> = config.base_url.clone().into();

    let products = fetch_products(&client, &base_url).await?;
    let users = if config.mix.kinds().any(JourneyKind::needs_users) {
        register_users(&client, &base_url, config.users).await?
    } else {
        Vec::new()
    };
    let ledger = match (&config.ledger, config.mix.contains(JourneyKind::Checkout)) {
        (Some(path), true) => Some(Ledger::create(path)?),
        _ => None,
    };

    let mut names = Vec::new();
    let mut endpoint_of = [None; Step::ALL.len()];
    for kind in config.mix.kinds() {
        for step in kind.steps() {
            endpoint_of[*step as usize] = Some(names.len());
            names.push(step.name().to_string());
        }
    }
    let (clock, start_wall) = Clock::start_now();
    if let Some(started) = &config.clock_started {
        started.notify_one();
    }
    let context = Arc::new(JourneyContext {
        products,
        users,
        ingest_batch: config.ingest_batch,
        consistency_deadline: config.consistency_deadline,
        consistency: Mutex::new(new_histogram()),
        consistency_unseen: AtomicU64::new(0),
        started: Default::default(),
        started_by_second: Default::default(),
        dropped: AtomicU64::new(0),
        ledger,
        endpoint_of,
        clock,
    });

    let logs: Vec<SharedLog> = (0..config.concurrency.clamp(1, 64))
        .map(|_| SharedLog::default())
        .collect();
    let mut seed_rng = match config.seed {
        Some(seed) => SmallRng::seed_from_u64(seed),
        None => SmallRng::from_rng(&mut rand::rng()),
    };
    let driving = match config.driver {
        Driver::Open => tokio::spawn(drive_open(
            config.clone(),
            context.clone(),
            client,
            base_url,
            logs.clone(),
            SmallRng::from_rng(&mut seed_rng),
        )),
        Driver::Goose => tokio::spawn(goose_driver::drive(
            config.clone(),
            context.clone(),
            logs.clone(),
        )),
    };
    let (driven, collected) = collect_while(
        driving,
        &logs,
        clock,
        &config.schedule,
        Some("journeys"),
        progress,
    )
    .await;
    match driven {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        // A driver that panicked loses only what it had not recorded.
        Err(error) => tracing::error!(%error, "the journey driver failed"),
    }

    let metadata = RunMetadata {
        connections: config.concurrency as u64,
        timeout_ms: config.timeout.as_millis() as u64,
        latency_origin: match config.driver {
            Driver::Open => LatencyOrigin::IntendedSendTime,
            Driver::Goose => LatencyOrigin::ActualSendTime,
        },
        ..RunMetadata::of_run(
            &config.run_info,
            &config.base_url,
            start_wall,
            &config.schedule.target(),
        )
    };
    let codec = |e: HistogramCodecError| LoadError::BadResults {
        path: "(this run)".into(),
        reason: e.to_string(),
    };
    let mut results = Results::build(RunRecord {
        metadata,
        schedule: config.schedule.target(),
        endpoint_names: &names,
        collected: &collected.buckets,
        late_threshold_ms: config.late_threshold.as_secs_f64() * 1000.0,
        max_send_delay_ms: config.max_send_delay().as_secs_f64() * 1000.0,
    })
    .map_err(codec)?;
    if config.mix.contains(JourneyKind::Checkout) {
        let histogram = context
            .consistency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        results.consistency_window = Some(EncodedHistogram::encode(&histogram).map_err(codec)?);
    }
    results.journeys = Some(JourneyResults {
        driver: match config.driver {
            Driver::Open => "open",
            Driver::Goose => "goose",
        }
        .to_string(),
        started: config
            .mix
            .kinds()
            .map(|kind| {
                let count = context.started[kind as usize].load(Ordering::Relaxed);
                (kind.name().to_string(), count)
            })
            .collect(),
        seconds: context
            .started_by_second
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(&second, &started)| JourneySecond { second, started })
            .collect(),
        dropped: context.dropped.load(Ordering::Relaxed),
        consistency_unseen: context.consistency_unseen.load(Ordering::Relaxed),
        consistency_deadline_ms: config.consistency_deadline.as_secs_f64() * 1000.0,
    });
    results.write_ledger = context
        .ledger
        .as_ref()
        .map(|ledger| ledger.path().display().to_string());
    Ok(results)
}

fn setup_error(step: &str, reason: String) -> LoadError {
    LoadError::JourneySetup {
        step: step.to_string(),
        reason,
    }
}

/// The catalogue's product ids: checkouts order from them.
async fn fetch_products(client: &reqwest::Client, base_url: &str) -> Result<Vec<i64>, LoadError> {
    let step = "GET /api/products";
    let response = client
        .get(format!("{base_url}/api/products"))
        .send()
        .await
        .map_err(|e| setup_error(step, e.to_string()))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| setup_error(step, e.to_string()))?;
    if !status.is_success() {
        return Err(setup_error(
            step,
            format!(
                "answered {status}: is the target the faultline reference system's gateway? ({})",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        ));
    }
    #[derive(Deserialize)]
    struct Listed {
        id: i64,
    }
    let listed: Vec<Listed> = serde_json::from_slice(&body).map_err(|e| {
        setup_error(
            step,
            format!("the answer is not a product list ({e}): is the target the reference system's gateway?"),
        )
    })?;
    if listed.is_empty() {
        return Err(setup_error(
            step,
            "the catalogue is empty: seed it first (faultline system seed)".into(),
        ));
    }
    Ok(listed.into_iter().map(|p| p.id).collect())
}

/// Registers `count` fresh users and logs each in once.
async fn register_users(
    client: &reqwest::Client,
    base_url: &str,
    count: usize,
) -> Result<Vec<VirtualUser>, LoadError> {
    let run_id = format!("{:016x}", rand::random::<u64>());
    let mut pending = JoinSet::new();
    let mut users = Vec::with_capacity(count);
    // A few at a time: registration hashes the password (argon2) on the server.
    let mut next = 0;
    while users.len() < count {
        while next < count && pending.len() < 4 {
            let client = client.clone();
            let base_url = base_url.to_string();
            let email = format!("loadgen-{run_id}-{next}@faultline.test");
            let password = format!("pw-{:032x}", rand::random::<u128>());
            pending.spawn(async move { register_one(&client, &base_url, email, password).await });
            next += 1;
        }
        match pending.join_next().await {
            Some(Ok(user)) => users.push(user?),
            Some(Err(e)) => return Err(setup_error("registering users", e.to_string())),
            None => break,
        }
    }
    Ok(users)
}

async fn register_one(
    client: &reqwest::Client,
    base_url: &str,
    email: String,
    password: String,
) -> Result<VirtualUser, LoadError> {
    let post = |path: &'static str, body: serde_json::Value| {
        let client = client.clone();
        let url = format!("{base_url}{path}");
        let path = format!("POST {path}");
        async move {
            let response = client
                .post(&url)
                .json(&body)
                .send()
                .await
                .map_err(|e| setup_error(&path, e.to_string()))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| setup_error(&path, e.to_string()))?;
            if !status.is_success() {
                return Err(setup_error(
                    &path,
                    format!("answered {status}: {}", String::from_utf8_lossy(&body)),
                ));
            }
            Ok(body)
        }
    };
    post(
        "/api/users/register",
        serde_json::json!({"email": email, "password": password, "name": "faultline load"}),
    )
    .await?;
    let body = post(
        "/api/users/login",
        serde_json::json!({"email": email, "password": password}),
    )
    .await?;
    #[derive(Deserialize)]
    struct LoggedIn {
        token: String,
    }
    let LoggedIn { token } = serde_json::from_slice(&body).map_err(|e| {
        setup_error(
            "POST /api/users/login",
            format!("no token in the answer: {e}"),
        )
    })?;
    Ok(VirtualUser {
        email,
        password,
        token,
    })
}

/// The open-model driver: one journey started per arrival (or, in a closed
/// schedule, `concurrency` journey loops).
async fn drive_open(
    config: JourneyConfig,
    context: Arc<JourneyContext>,
    client: reqwest::Client,
    base_url: Arc<str>,
    logs: Vec<SharedLog>,
    mut rng: SmallRng,
) -> Result<(), LoadError> {
    let clock = context.clock;
    let late_threshold = config.late_threshold;
    let max_send_delay = config.max_send_delay();
    let mut journeys = JoinSet::new();
    let Some(times) = config.schedule.send_times() else {
        let end = clock.start + config.schedule.duration();
        let loops = config.concurrency;
        for worker in 0..loops {
            let context = context.clone();
            let log = logs[worker % logs.len()].clone();
            let mut transport = ReqwestTransport {
                client: client.clone(),
                base_url: base_url.clone(),
            };
            let mix = config.mix.clone();
            let mut rng = SmallRng::from_rng(&mut rng);
            journeys.spawn(async move {
                let mut round = 0;
                while Instant::now() < end {
                    let kind = mix.pick(&mut rng);
                    // Loops take users in turn, as arrivals do in the open model.
                    let user = worker + round * loops;
                    Journey::new(
                        &context,
                        &mut transport,
                        &log,
                        Instant::now(),
                        late_threshold,
                        user,
                        &mut rng,
                    )
                    .run(kind)
                    .await;
                    round += 1;
                }
            });
        }
        while journeys.join_next().await.is_some() {}
        return Ok(());
    };

    let slots = Arc::new(tokio::sync::Semaphore::new(config.concurrency));
    for (index, offset) in times.enumerate() {
        let intended = clock.start + offset;
        tokio::time::sleep_until(intended).await;
        let kind = config.mix.pick(&mut rng);
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let now = Instant::now();
        if now.saturating_duration_since(intended) > max_send_delay {
            // Every journey slot was busy for too long: count it, do not start it late.
            let endpoint = context.endpoint_of[kind.steps()[0] as usize].unwrap_or(0);
            lock(&logs[index % logs.len()]).record_dropped(endpoint, clock.second_of(now));
            context.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let context = context.clone();
        let log = logs[index % logs.len()].clone();
        let mut transport = ReqwestTransport {
            client: client.clone(),
            base_url: base_url.clone(),
        };
        let mut journey_rng = SmallRng::from_rng(&mut rng);
        journeys.spawn(async move {
            Journey::new(
                &context,
                &mut transport,
                &log,
                intended,
                late_threshold,
                index,
                &mut journey_rng,
            )
            .run(kind)
            .await;
            drop(permit);
        });
        // Reap finished journeys as we go, so the set stays small.
        while journeys.try_join_next().is_some() {}
    }
    while journeys.join_next().await.is_some() {}
    Ok(())
}
