//! User journeys of the reference system: browse, checkout, ingest and login, weighted.
//!
//! - **browse**: `GET /api/products`, then `GET /api/products/{id}` twice.
//! - **checkout**: `POST /api/orders` (with an `Idempotency-Key`) → long-poll
//!   `GET /api/orders/{id}/view` until the read model shows the order. The time from
//!   the order's acknowledgement to the view is the **consistency window**; every
//!   acknowledged (or indeterminate) order goes into the **write ledger** ([`ledger`])
//!   for the checker.
//! - **ingest**: `POST /api/ingest/events` with a batch of events.
//! - **login**: `POST /api/users/login`, every time: the login rate on its own.
//!
//! Checkout and ingest act as one of the users registered at set-up, who logs in once
//! and keeps the token ([`session`]): the user's first journey logs in (recorded under
//! `POST /api/users/login`), later ones reuse the token until it nears its expiry or
//! is refused. So N checkouts by U users log in at most U times, not N. With
//! [`JourneyConfig::login_before_start`] they log in at set-up instead, before the clock
//! starts, so a benchmark of what follows the login has no login in its timed run.
//!
//! The journeys are written once ([`steps`]) against a [`steps::Transport`] and run by
//! one of two drivers:
//!
//! - [`Driver::Open`] (the default): the engine's pacing loop (the one plain requests
//!   use) gives each journey an intended start ("one journey started per arrival",
//!   at most `concurrency` in flight, overdue ones dropped); the first request's
//!   latency is measured from that intended time, so a stalled system cannot hide
//!   behind journeys the generator never started. A closed schedule runs
//!   `concurrency` journey loops back to back instead.
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
pub mod session;
pub mod steps;

use std::{
    path::PathBuf, str::FromStr, sync::atomic::Ordering, sync::Arc, time::Duration,
    time::SystemTime,
};

use rand::{rngs::SmallRng, Rng as _, SeedableRng as _};
use serde::Deserialize;
use tokio::{task::JoinSet, time::Instant};

use faultline_results::{
    histogram::EncodedHistogram, JourneyResults, JourneySecond, LatencyOrigin, Results, RunInfo,
    RunMetadata,
};

use crate::{
    engine::{
        collect_while, unrecordable, Pacer, PacingRecord, Progress, SecondClock, Slot, Worker,
    },
    error::LoadError,
    recorder::{lock, Clock, Collected, SharedLog},
    schedule::Schedule,
    target::Target,
    tls::TlsSettings,
};

use self::{
    ledger::Ledger,
    steps::{Journey, JourneyContext, JourneyTally, ReqwestTransport, VirtualUser},
};

/// A journey of the reference system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JourneyKind {
    Browse,
    Checkout,
    Ingest,
    Login,
    /// Reads the user's own profile (`GET /api/users/me`), the users service's read
    /// path, which the claims suite drives apart from logins.
    Profile,
    /// Reads the analytics summary, the analytics service's own public route.
    Analytics,
}

impl JourneyKind {
    pub const ALL: [JourneyKind; 6] = [
        JourneyKind::Browse,
        JourneyKind::Checkout,
        JourneyKind::Ingest,
        JourneyKind::Login,
        JourneyKind::Profile,
        JourneyKind::Analytics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JourneyKind::Browse => "browse",
            JourneyKind::Checkout => "checkout",
            JourneyKind::Ingest => "ingest",
            JourneyKind::Login => "login",
            JourneyKind::Profile => "profile",
            JourneyKind::Analytics => "analytics",
        }
    }

    /// The steps it records, in order. A journey acting as a user whose session has
    /// no fit token also records the login before them ([`session`]).
    pub fn steps(self) -> &'static [Step] {
        match self {
            JourneyKind::Browse => &[Step::ListProducts, Step::GetProduct],
            JourneyKind::Checkout => &[Step::PlaceOrder, Step::OrderView],
            JourneyKind::Ingest => &[Step::Ingest],
            JourneyKind::Login => &[Step::Login],
            JourneyKind::Profile => &[Step::Profile],
            JourneyKind::Analytics => &[Step::AnalyticsSummary],
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
            .ok_or_else(|| {
                let known: Vec<&str> = JourneyKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown journey {text:?} (known: {})", known.join(", "))
            })
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
    Profile,
    AnalyticsSummary,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::ListProducts,
        Step::GetProduct,
        Step::Login,
        Step::PlaceOrder,
        Step::OrderView,
        Step::Ingest,
        Step::Profile,
        Step::AnalyticsSummary,
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
            Step::Profile => "GET /api/users/me",
            Step::AnalyticsSummary => "GET /api/analytics/summary",
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
    /// Users registered at set-up that checkout, ingest and login act as.
    pub users: usize,
    /// Whether those users also log in at set-up (before the clock starts), rather than
    /// on their first journey: no login is then timed, unless a `login` journey does it.
    pub login_before_start: bool,
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
    /// How to speak TLS to an `https://` gateway: the engine's own settings.
    pub tls: TlsSettings,
    /// Send a `traceparent` with every request and keep the slowest by trace id
    /// (module `exemplars`); `None` sends none.
    pub exemplars: Option<crate::exemplars::ExemplarLimits>,
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
            login_before_start: false,
            timeout: Duration::from_secs(5),
            late_threshold: Duration::from_millis(10),
            max_send_delay: None,
            ingest_batch: 50,
            consistency_deadline: Duration::from_secs(30),
            ledger: None,
            seed: None,
            run_info: RunInfo::default(),
            clock_started: None,
            tls: TlsSettings::default(),
            exemplars: None,
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
                "checkout, ingest and login need at least one user",
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
        // The engine's rustls settings, so journeys trust and present the same.
        .tls_backend_preconfigured(config.tls.reqwest_config()?)
        .timeout(config.timeout)
        .pool_max_idle_per_host(config.concurrency)
        .build()
        .map_err(|e| setup_error("building the HTTP client", e.to_string()))?;
    let base_url: Arc<str> = config.base_url.clone().into();
    let (products, users, ledger) = set_up(&config, &client, &base_url).await?;
    let (names, endpoint_of) = endpoints(&config.mix);

    config.schedule.wait_for_start().await;
    let (clock, start_wall) = Clock::start_now();
    if let Some(started) = &config.clock_started {
        started.notify_one();
    }
    let context = Arc::new(JourneyContext {
        products,
        users,
        ingest_batch: config.ingest_batch,
        consistency_deadline: config.consistency_deadline,
        tally: JourneyTally::default(),
        ledger,
        endpoint_of,
        clock,
        exemplars: config.exemplars.map(crate::exemplars::Exemplars::new),
    });

    let logs: Vec<SharedLog> = (0..config.concurrency.clamp(1, 64))
        .map(|_| SharedLog::default())
        .collect();
    let mut seed_rng = match config.seed {
        Some(seed) => SmallRng::seed_from_u64(seed),
        None => SmallRng::from_rng(&mut rand::rng()),
    };
    let driving = match config.driver {
        Driver::Open => {
            let transport = ReqwestTransport { client, base_url };
            let workers: Vec<JourneyWorker> = (0..config.concurrency)
                .map(|worker| JourneyWorker {
                    context: context.clone(),
                    transport: transport.clone(),
                    log: logs[worker % logs.len()].clone(),
                    mix: config.mix.clone(),
                    late_threshold: config.late_threshold,
                    rng: SmallRng::from_rng(&mut seed_rng),
                })
                .collect();
            let pacer = Pacer::new(&config.schedule, clock, config.max_send_delay());
            tokio::spawn(async move {
                pacer.run(workers).await;
                Ok::<(), LoadError>(())
            })
        }
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
    journey_results(&config, &context, &names, &collected, start_wall)
}

/// What the journeys need before the clock starts: the catalogue's product ids, the
/// users (when a journey acts as one), and the ledger (when checkouts write).
async fn set_up(
    config: &JourneyConfig,
    client: &reqwest::Client,
    base_url: &str,
) -> Result<(Vec<i64>, Vec<VirtualUser>, Option<Ledger>), LoadError> {
    let products = fetch_products(client, base_url).await?;
    let users = if config.mix.kinds().any(JourneyKind::needs_users) {
        register_users(client, base_url, config.users, config.login_before_start).await?
    } else {
        Vec::new()
    };
    let ledger = match (&config.ledger, config.mix.contains(JourneyKind::Checkout)) {
        (Some(path), true) => Some(Ledger::create(path)?),
        _ => None,
    };
    Ok((products, users, ledger))
}

/// The results' endpoints: every step of the mix's journeys in order, with the login
/// before the steps of the first journey that acts as a user (its session logs in on
/// first use); and each step's index among them.
fn endpoints(mix: &JourneyMix) -> (Vec<String>, [Option<usize>; Step::ALL.len()]) {
    let mut names = Vec::new();
    let mut endpoint_of = [None; Step::ALL.len()];
    for kind in mix.kinds() {
        let session = kind.needs_users().then_some(Step::Login);
        for step in session.into_iter().chain(kind.steps().iter().copied()) {
            if endpoint_of[step as usize].is_none() {
                endpoint_of[step as usize] = Some(names.len());
                names.push(step.name().to_string());
            }
        }
    }
    (names, endpoint_of)
}

/// The run's results: the requests as plain load records them, plus what only
/// journeys have (consistency window, journeys started and dropped, the ledger).
fn journey_results(
    config: &JourneyConfig,
    context: &JourneyContext,
    names: &[String],
    collected: &Collected,
    start_wall: SystemTime,
) -> Result<Results, LoadError> {
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
    let pacing = PacingRecord::new(
        &config.schedule,
        config.late_threshold,
        config.max_send_delay(),
    );
    let mut results = pacing.results(metadata, names, collected)?;
    let tally = &context.tally;
    if config.mix.contains(JourneyKind::Checkout) {
        let histogram = tally
            .consistency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        results.consistency_window =
            Some(EncodedHistogram::encode(&histogram).map_err(unrecordable)?);
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
                let count = tally.started[kind as usize].load(Ordering::Relaxed);
                (kind.name().to_string(), count)
            })
            .collect(),
        seconds: tally
            .started_by_second
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(&second, &started)| JourneySecond { second, started })
            .collect(),
        dropped: tally.dropped.load(Ordering::Relaxed),
        consistency_unseen: tally.consistency_unseen.load(Ordering::Relaxed),
        consistency_deadline_ms: config.consistency_deadline.as_secs_f64() * 1000.0,
    });
    results.traces = (context.exemplars.as_ref()).map(|exemplars| exemplars.traces(names));
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

/// Registers `count` fresh users. None logs in here unless `log_in`: each does on its
/// first journey ([`session`]), so its login is measured with the load.
async fn register_users(
    client: &reqwest::Client,
    base_url: &str,
    count: usize,
    log_in: bool,
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
            pending.spawn(async move {
                register_one(&client, &base_url, email, password, log_in).await
            });
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
    log_in: bool,
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
    let user = VirtualUser::new(email, password);
    if log_in {
        let body = post(
            "/api/users/login",
            serde_json::json!({"email": user.email, "password": user.password}),
        )
        .await?;
        #[derive(Deserialize)]
        struct LoggedIn {
            token: String,
        }
        let LoggedIn { token } = serde_json::from_slice(&body).map_err(|e| {
            setup_error(
                "POST /api/users/login",
                format!("no token in its answer: {e}"),
            )
        })?;
        user.session.keep(session::Token::new(&token)).await;
    }
    Ok(user)
}

/// The open-model driver's worker: one journey in flight at a time, an arrival being
/// one journey of a kind the mix's weights pick. The engine's pacing loop
/// ([`Pacer`]) hands it arrivals, as it does requests to plain load's connections.
struct JourneyWorker {
    context: Arc<JourneyContext>,
    transport: ReqwestTransport,
    log: SharedLog,
    mix: JourneyMix,
    late_threshold: Duration,
    rng: SmallRng,
}

impl Worker for JourneyWorker {
    fn dropped(&mut self, _index: u64, second: u64) {
        // Counted under the first step of the journey it would have been.
        let kind = self.mix.pick(&mut self.rng);
        let endpoint = self.context.endpoint_of[kind.steps()[0] as usize].unwrap_or(0);
        lock(&self.log).record_dropped(endpoint, second);
        self.context.tally.dropped.fetch_add(1, Ordering::Relaxed);
    }

    async fn idle_until(&mut self, wake: Instant) {
        tokio::time::sleep_until(wake).await;
    }

    async fn serve(&mut self, slot: Slot, _seconds: &mut SecondClock) -> Option<Instant> {
        let kind = self.mix.pick(&mut self.rng);
        Journey::new(
            &self.context,
            &mut self.transport,
            &self.log,
            slot.intended,
            self.late_threshold,
            // Arrivals take the users in turn.
            slot.index as usize,
            &mut self.rng,
        )
        .run(kind)
        .await;
        // A journey is long: the next closed arrival reads the clock.
        None
    }
}
