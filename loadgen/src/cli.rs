//! The `faultline load` and `faultline merge` commands, as library code.
//!
//! The binary's `src/cmd/load.rs` and `src/cmd/merge.rs` only flatten these
//! argument structs into its own, so every check (URL, rate, stages, reachability) is
//! tested here. Errors are [`LoadError`]s; [`LoadError::exit_code`] gives 2 for the
//! usage errors.
//!
//! Two options need more than this crate: `--scenario` (the file is read through the
//! one scenario model, `faultline_scenarios::Scenario`) and the SLO gates of
//! `--find-max` (judged by `faultline-reports`). `faultline_scenarios::load` plans
//! those and calls [`run_plan`]; [`run_load`] runs the rest (plain requests and
//! journeys from the command line) and refuses the two.

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use faultline_results::{
    quantity::parse_duration, Arrivals, GateSpec, HttpVersion, Results, RunInfo,
};

use crate::{
    capacity::{self, Climb, Staircase, StepJudge},
    engine::{self, LoadConfig},
    error::LoadError,
    exemplars::ExemplarLimits,
    feeder::{Feeder, FeederMode},
    har::{self, Conversion, HarFilter, HarReplay, ReplayStep},
    journeys::{self, Driver, JourneyConfig, JourneyMix},
    scenario::{LoadPlan, RequestsFile},
    schedule::{parse_stages, Schedule, WorkerShare},
    summary::{progress_line, summary_table},
    target::{
        parse_headers, parse_method, parse_request_arg, read_body, Host, RequestSpec, Target,
    },
    tls::{TlsSettings, TlsVersion},
};

mod merge;
pub use merge::{run_merge, MergeArgs};

/// The target, the hosts to spread requests over (empty: the target alone), and each
/// request's own host among them (empty: requests meet every host in turn).
type Targets = (Target, Vec<Host>, Vec<usize>);

/// What results keep of a scenario file besides its load: its gates and its text.
#[derive(Debug, Clone)]
pub struct ScenarioExtras {
    pub gates: Vec<GateSpec>,
    pub text: String,
    /// Its `[load] warm_up`: run before the load, not recorded ([`crate::warm_up`]).
    pub warm_up: Option<std::time::Duration>,
}

/// What `faultline load` runs: a plan, and a capacity search over it when asked.
#[derive(Debug, Clone)]
pub struct LoadRun {
    pub plan: LoadPlan,
    /// The staircase and its gates as written (`http.p99<120ms`), judged by the
    /// judge [`run_plan`] is given.
    pub search: Option<(Staircase, Vec<String>)>,
    /// The scenario file the plan came from, when there is one.
    pub scenario: Option<ScenarioExtras>,
}

/// Arguments of `faultline load`.
///
/// No argument group of its own (`group(skip)`), so the binary can flatten it into
/// a struct of the same name.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct LoadArgs {
    /// Target URL, e.g. http://127.0.0.1:8080/orders or https://shop.example/api. With --journeys,
    /// the gateway's base URL; with --scenario, it overrides the file's target; with
    /// --har, it replaces the recorded origin (default: the recording's).
    #[arg(required_unless_present_any = ["scenario", "target_list", "har"])]
    pub url: Option<String>,

    /// Several target base URLs to spread the requests over (each connection keeps
    /// one connection to each host), comma-separated; N*URL weighs a host, e.g.
    /// "3*http://10.0.0.1:8080,http://10.0.0.2:8080". Repeatable.
    #[arg(long, value_name = "URLS", conflicts_with_all = ["url", "journeys"])]
    pub target_list: Vec<String>,

    /// One request of a weighted mix, `[weight=N] [METHOD] /path [@BODY_FILE]`, the
    /// path under the target URL's; -H headers apply to all. Repeatable.
    #[arg(long = "request", value_name = "REQUEST", conflicts_with_all = ["method", "body", "requests", "journeys"])]
    pub request: Vec<String>,

    /// A TOML file of `[[requests]]` tables (method, path, headers, body, name, weight),
    /// as `[[load.requests]]` in a scenario: the mix to send.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["method", "body", "journeys"])]
    pub requests: Option<PathBuf>,

    /// A browser recording (HAR, as developer tools export it) whose entries are the
    /// mix to send: method, path, headers and body of each, weight 1 (identical requests
    /// add up), recorded under `METHOD /path`. The --har-* options filter it;
    /// `faultline har FILE -o requests.toml` writes the requests file it makes.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "method", "body", "journeys", "request", "requests", "scenario",
    ])]
    pub har: Option<PathBuf>,

    #[command(flatten)]
    pub har_filter: HarFilter,

    /// HAR: `mix` sends the kept requests as a weighted mix (each weighs as often as
    /// it was recorded); `ordered` makes each connection a virtual user that sends
    /// them in recorded order, waiting before each the think time recorded before it
    /// (from the end of the previous response to this request's start), and starts
    /// over at the end. `ordered` needs --closed: -c is the number of users.
    #[arg(long, value_enum, default_value = "mix", requires = "har")]
    pub har_replay: HarReplay,

    /// HAR, ordered replay: scale the recorded think times (0: none, 0.5: half as long).
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 1.0,
        requires = "har",
        allow_negative_numbers = true
    )]
    pub har_think_factor: f64,

    /// Rows (a .csv with a header row, or .jsonl) that fill the {{column}} placeholders
    /// of request templates; one row per request.
    #[arg(long, value_name = "FILE", conflicts_with = "journeys")]
    pub feeder: Option<PathBuf>,

    /// How feeder rows are taken: in order and again (circular), each once (the run
    /// ends when they run out), or at random.
    #[arg(long, value_enum, default_value = "circular", requires = "feeder")]
    pub feeder_mode: FeederMode,

    /// Run the `[load]` of this scenario file (TOML; see scenarios/README.md), checked
    /// whole as `faultline run` checks it. Its `[[gates]]` and text are kept in the
    /// results; a `[load.find_max]` table makes it a capacity search.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "rate", "stages", "closed", "poisson", "seed", "http2", "method", "body", "headers",
        "journeys", "driver", "users", "login_before_start", "ledger", "ingest_batch", "consistency_deadline",
        "target_list", "request", "requests", "feeder", "find_max", "trace_sample_ratio",
    ])]
    pub scenario: Option<PathBuf>,

    /// User journeys of the reference system instead of one request, weighted, e.g.
    /// "browse=6,checkout=3,ingest=1"; the rate is then journeys per second.
    #[arg(long, value_name = "MIX", conflicts_with_all = ["method", "body", "headers", "http2"])]
    pub journeys: Option<String>,

    /// What drives the journeys: faultline's engine (open model) or goose (closed only).
    #[arg(long, value_enum, default_value = "open", requires = "journeys")]
    pub driver: Driver,

    /// Users registered at set-up that checkout and ingest journeys act as.
    #[arg(long, default_value_t = 20, requires = "journeys")]
    pub users: usize,

    /// Log those users in at set-up, before the clock starts, instead of on their first
    /// journey: for a benchmark of what follows the login (a login journey still logs in).
    #[arg(long, requires = "journeys")]
    pub login_before_start: bool,

    /// Write the ledger of acknowledged (and indeterminate) orders here, JSON lines.
    #[arg(long, value_name = "FILE", requires = "journeys")]
    pub ledger: Option<PathBuf>,

    /// Events per ingest journey's batch.
    #[arg(long, default_value_t = 50, requires = "journeys")]
    pub ingest_batch: usize,

    /// How long a checkout waits for the read model to show its order.
    #[arg(long, value_parser = parse_duration, default_value = "30s", requires = "journeys")]
    pub consistency_deadline: Duration,

    /// Trace this share (0 to 1) of journey requests and keep the slowest ones' trace ids.
    #[arg(long, value_name = "RATIO", requires = "journeys")]
    pub trace_sample_ratio: Option<f64>,

    /// Constant arrival rate, requests per second (open model).
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["stages", "closed"])]
    pub rate: Option<f64>,

    /// How long to run with --rate or --closed.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,

    /// Rate stages instead of --rate, e.g. "10s:0->500, 60s:500, 10s:500->0".
    #[arg(long, allow_hyphen_values = true, conflicts_with = "closed")]
    pub stages: Option<String>,

    /// Connections: the bound on requests in flight (open) or the concurrency (closed).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,

    /// Closed model: every connection sends back to back, no pacing (maximum rate).
    #[arg(long)]
    pub closed: bool,

    /// Poisson arrivals (exponential gaps with the target mean rate).
    #[arg(long, conflicts_with = "closed")]
    pub poisson: bool,

    /// Seed of the Poisson arrivals (random when not given).
    #[arg(long, requires = "poisson")]
    pub seed: Option<u64>,

    /// Distributed load: be worker I of N (from 0, e.g. 0/4). Every worker computes the same
    /// global arrival schedule and sends the arrivals whose index is I modulo N, so the N
    /// workers together send exactly what one machine would; `faultline merge` adds their
    /// results. Give every worker the same --rate/--stages, --seed and --start-at.
    #[arg(long, value_name = "I/N", conflicts_with_all = ["closed", "find_max", "scenario"])]
    pub worker: Option<String>,

    /// Start the arrival schedule at this instant (RFC 3339 in UTC, e.g.
    /// 2026-12-01T21:30:00Z) rather than as soon as the connections are open, so the
    /// workers of one distributed load start together. It must lie ahead.
    #[arg(long, value_name = "RFC3339", conflicts_with_all = ["closed", "find_max", "scenario"])]
    pub start_at: Option<String>,

    /// Speak HTTP/2 instead of HTTP/1.1 (prior knowledge on http://, ALPN h2 on https://).
    #[arg(long)]
    pub http2: bool,

    /// HTTP/2 requests in flight at once on each connection (stream multiplexing).
    #[arg(long, default_value_t = 1, requires = "http2")]
    pub streams: usize,

    /// HTTP/1.1: a new connection for every request (each request says `Connection:
    /// close`), so every request pays a connect and, on https://, a TLS handshake
    /// (resumed when the server allows): the handshake-bound load of oha's option of the
    /// same name.
    #[arg(long, conflicts_with = "http2")]
    pub disable_keepalive: bool,

    /// HTTPS: accept any server certificate (self-signed test targets).
    #[arg(long, conflicts_with = "cacert")]
    pub insecure: bool,

    /// HTTPS: trust the CAs in this PEM file instead of the built-in roots.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// HTTPS: client certificate chain (PEM) for targets that require one (with --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// HTTPS: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// HTTPS: offer only this TLS version, 1.2 or 1.3 (default: both).
    #[arg(long, value_name = "VERSION")]
    pub tls_version: Option<TlsVersion>,

    /// Per-request timeout, from send to the end of the response.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,

    /// A request sent later than this after its intended time counts as late.
    #[arg(long, value_parser = parse_duration, default_value = "10ms")]
    pub late_threshold: Duration,

    /// A request still unsent this long after its intended time is dropped (default: --timeout).
    #[arg(long, value_parser = parse_duration)]
    pub max_send_delay: Option<Duration>,

    /// HTTP method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,

    /// Request body; @FILE reads it from a file. The URL's path, the headers and the
    /// body may hold placeholders: {{seq}}, {{uuid}}, {{randint 1 100}},
    /// {{choice a,b,c}}, {{now_ms}}, {{env NAME}} and {{COLUMN}} of --feeder;
    /// {{"{{"}} is a literal {{.
    #[arg(long, short = 'd')]
    pub body: Option<String>,

    /// Request header, NAME:VALUE (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,

    /// Write results.json here.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,

    /// No live progress line (it is also off when stderr is not a terminal).
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Scrape this Prometheus endpoint during the run (a service's base URL, or its
    /// /metrics URL) and record the series into results.json; repeatable.
    #[arg(long = "scrape", value_name = "URL")]
    pub scrape: Vec<String>,

    /// How often to scrape.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub scrape_interval: Duration,

    /// Metric names to keep from the scrapes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = crate::scrape::DEFAULT_METRICS.iter().map(|m| m.to_string()))]
    pub scrape_metrics: Vec<String>,

    /// Capacity search: up to what rate do the --gate SLOs hold? Climbs a staircase of
    /// constant-rate steps (--start-rate, times --rate-factor or plus --rate-step, up to
    /// --max-rate, each held --hold), stops at the first step that breaks a gate (a
    /// dropped request always breaks one), then bisects between the last good and the
    /// first bad rate for --rounds. Each step is printed on stderr; results.json
    /// records every step and the capacity, the highest rate at which every gate held.
    ///
    /// Example: faultline load http://127.0.0.1:8080/api/products --find-max
    /// --start-rate 100 --max-rate 5000 --hold 3s --gate 'http.p99<120ms' --gate
    /// 'http.error_rate<0.1%'
    ///
    /// In a scenario file: a [load.find_max] table (start, factor or step, max, hold,
    /// rounds, gates = ["http.p99<120ms"]) instead of rate, stages or closed.
    #[arg(long, conflicts_with_all = ["rate", "stages", "closed", "duration", "scrape"])]
    pub find_max: bool,

    /// Capacity search: the first step's rate, per second.
    #[arg(long, value_name = "RATE", requires = "find_max")]
    pub start_rate: Option<f64>,

    /// Capacity search: each step's rate is the last one's times this (default 2).
    #[arg(
        long,
        value_name = "FACTOR",
        requires = "find_max",
        conflicts_with = "rate_step"
    )]
    pub rate_factor: Option<f64>,

    /// Capacity search: add this to each step's rate instead of multiplying.
    #[arg(long, value_name = "RATE", requires = "find_max")]
    pub rate_step: Option<f64>,

    /// Capacity search: the highest rate to try.
    #[arg(long, value_name = "RATE", requires = "find_max")]
    pub max_rate: Option<f64>,

    /// Capacity search: how long each step runs (default 5s).
    #[arg(long, value_parser = parse_duration, requires = "find_max")]
    pub hold: Option<Duration>,

    /// Capacity search: bisection rounds between the last good and the first bad rate.
    #[arg(long, default_value_t = capacity::DEFAULT_ROUNDS, requires = "find_max")]
    pub rounds: u32,

    /// Capacity search: an SLO every step must hold, as `faultline gate` writes it,
    /// e.g. 'http.p99<120ms' or 'http.error_rate<0.1%'; repeatable.
    #[arg(long = "gate", value_name = "GATE", requires = "find_max")]
    pub gates: Vec<String>,
}

impl LoadArgs {
    /// The TLS options as settings (all unset: the defaults).
    fn tls(&self) -> TlsSettings {
        TlsSettings {
            insecure: self.insecure,
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            version: self.tls_version,
        }
    }

    /// The target, and the hosts of --target-list (empty without); with --har and
    /// neither, the recording's origin, or its hosts and each request's host when it
    /// spans several.
    fn targets(&self, har: Option<&Conversion>) -> Result<Targets, LoadError> {
        if !self.target_list.is_empty() {
            let hosts = Host::parse_list(self.target_list.iter().map(String::as_str))?;
            let first = hosts[0].target.clone();
            return Ok((first, hosts, Vec::new()));
        }
        if let (None, Some(conversion)) = (&self.url, har) {
            let (hosts, request_hosts) = conversion.hosts()?;
            if let Some(first) = hosts.first() {
                return Ok((first.target.clone(), hosts, request_hosts));
            }
        }
        let url = self
            .url
            .as_deref()
            .or(har.map(|conversion| conversion.origin.as_str()))
            .ok_or(LoadError::InvalidArgument {
                option: "URL",
                reason: "give a target URL, --target-list, --har FILE or --scenario FILE".into(),
            })?;
        Ok((Target::parse(url)?, Vec::new(), Vec::new()))
    }

    /// The steps of `--har-replay ordered`, their think times scaled (empty for a mix).
    fn replay(&self, har: Option<&Conversion>) -> Result<Vec<ReplayStep>, LoadError> {
        let (HarReplay::Ordered, Some(conversion)) = (self.har_replay, har) else {
            return Ok(Vec::new());
        };
        let factor = self.har_think_factor;
        let invalid = |reason: String| LoadError::InvalidArgument {
            option: "--har-think-factor",
            reason,
        };
        if !factor.is_finite() || factor < 0.0 {
            return Err(invalid(format!("{factor} is not a factor of 0 or more")));
        }
        conversion
            .steps
            .iter()
            .map(|step| {
                let think = Duration::try_from_secs_f64(step.think.as_secs_f64() * factor)
                    .map_err(|e| invalid(format!("{factor}: {e}")))?;
                Ok(ReplayStep { think, ..*step })
            })
            .collect()
    }

    /// The recording of --har, converted (the summary on stderr unless --quiet).
    fn har(&self) -> Result<Option<Conversion>, LoadError> {
        let Some(path) = &self.har else {
            return Ok(None);
        };
        let conversion = har::read(path, &self.har_filter)?;
        if !self.quiet {
            eprintln!("{}", conversion.summary(&path.display().to_string()));
        }
        Ok(Some(conversion))
    }

    /// The requests to send: the --request mix, the --requests file's, the --har
    /// recording's, or the one request of --method, --body and the URL.
    fn requests_for(
        &self,
        target: &Target,
        har: Option<&Conversion>,
    ) -> Result<Vec<RequestSpec>, LoadError> {
        let headers = parse_headers(&self.headers)?;
        if !self.request.is_empty() {
            return self
                .request
                .iter()
                .map(|text| parse_request_arg(text, target, &headers))
                .collect();
        }
        if let Some(path) = &self.requests {
            return RequestsFile::read(path)?.specs(target, &headers, path);
        }
        if let (Some(conversion), Some(path)) = (har, &self.har) {
            return conversion.requests.specs(target, &headers, path);
        }
        let method = parse_method(&self.method)?;
        let body = read_body(self.body.as_deref())?;
        Ok(vec![RequestSpec::for_target(target, method, headers, body)])
    }

    /// The options given on the command line that win over a scenario file's `[load]`:
    /// `--connections` where the file sets none (`file_connections`), and any TLS option.
    pub fn override_scenario_plan(&self, plan: &mut LoadPlan, file_connections: bool) {
        if !file_connections {
            match plan {
                LoadPlan::Requests(config) => config.connections = self.connections,
                LoadPlan::Journeys(config) => config.concurrency = self.connections,
            }
        }
        let tls = self.tls();
        if tls != TlsSettings::default() {
            match plan {
                LoadPlan::Requests(config) => config.tls = tls,
                LoadPlan::Journeys(config) => config.tls = tls,
            }
        }
    }

    /// `schedule` as `--worker` and `--start-at` split and align it (unchanged without them).
    fn distribute(&self, schedule: Schedule) -> Result<Schedule, LoadError> {
        if self.worker.is_none() && self.start_at.is_none() {
            return Ok(schedule);
        }
        let share = match &self.worker {
            Some(text) => {
                text.parse::<WorkerShare>()
                    .map_err(|reason| LoadError::InvalidArgument {
                        option: "--worker",
                        reason,
                    })?
            }
            None => WorkerShare::WHOLE,
        };
        if share.count > 1 && self.poisson && self.seed.is_none() {
            return Err(LoadError::InvalidArgument {
                option: "--worker",
                reason: "with --poisson every worker needs the same --seed, or their \
                         arrivals would not add up to one schedule"
                    .into(),
            });
        }
        let start_at = self.start_at.as_deref().map(parse_start_at).transpose()?;
        schedule.distributed(share, start_at)
    }

    /// The capacity search of `--find-max`, checked (`None` without it).
    pub fn staircase(&self) -> Result<Option<Staircase>, LoadError> {
        if !self.find_max {
            return Ok(None);
        }
        let start = self.start_rate.ok_or(LoadError::InvalidArgument {
            option: "--start-rate",
            reason: "--find-max needs the first step's rate, e.g. --start-rate 50".into(),
        })?;
        let max = self.max_rate.ok_or(LoadError::InvalidArgument {
            option: "--max-rate",
            reason: "--find-max needs the highest rate to try, e.g. --max-rate 5000".into(),
        })?;
        let staircase = Staircase {
            start,
            climb: match self.rate_step {
                Some(step) => Climb::Step(step),
                None => Climb::Factor(self.rate_factor.unwrap_or(capacity::DEFAULT_FACTOR)),
            },
            max,
            hold: self.hold.unwrap_or(capacity::DEFAULT_HOLD),
            rounds: self.rounds,
        };
        staircase
            .check()
            .map_err(|reason| LoadError::InvalidArgument {
                option: "--find-max",
                reason,
            })?;
        Ok(Some(staircase))
    }

    /// Checks the command line's arguments (not `--scenario`'s file, which
    /// `faultline_scenarios::load` plans) and turns them into a plan: plain requests
    /// or journeys, at the first step's rate with `--find-max`.
    pub fn to_plan(&self, run_info: RunInfo) -> Result<LoadPlan, LoadError> {
        let config = self.to_config(run_info)?;
        let Some(mix) = &self.journeys else {
            return Ok(LoadPlan::Requests(config));
        };
        let mix: JourneyMix = mix.parse().map_err(|reason| LoadError::InvalidArgument {
            option: "--journeys",
            reason,
        })?;
        let mut journeys = JourneyConfig::new(&config.target.url, mix, config.schedule);
        journeys.driver = self.driver;
        journeys.concurrency = config.connections;
        journeys.users = self.users;
        journeys.login_before_start = self.login_before_start;
        journeys.timeout = config.timeout;
        journeys.late_threshold = config.late_threshold;
        journeys.max_send_delay = config.max_send_delay;
        journeys.ingest_batch = self.ingest_batch;
        journeys.consistency_deadline = self.consistency_deadline;
        journeys.ledger = self.ledger.clone();
        journeys.seed = self.seed;
        let ratio = self.trace_sample_ratio;
        journeys.exemplars = ratio.map(ExemplarLimits::sampling).transpose()?;
        journeys.run_info = config.run_info;
        journeys.tls = config.tls;
        Ok(LoadPlan::Journeys(journeys))
    }

    /// Checks the arguments and turns them into an engine configuration.
    pub fn to_config(&self, run_info: RunInfo) -> Result<LoadConfig, LoadError> {
        let har = self.har()?;
        let (target, hosts, request_hosts) = self.targets(har.as_ref())?;
        let arrivals = if self.poisson {
            Arrivals::Poisson {
                seed: self.seed.unwrap_or_else(rand::random),
            }
        } else {
            Arrivals::Uniform
        };
        let schedule = match (self.staircase()?, &self.stages, self.rate, self.closed) {
            // A capacity search starts at its first step; it sets every step's rate itself.
            (Some(staircase), ..) => Schedule::constant(staircase.start, staircase.hold, arrivals)?,
            (None, Some(stages), _, _) => Schedule::open(parse_stages(stages)?, arrivals)?,
            (None, None, Some(rate), _) => Schedule::constant(rate, self.duration, arrivals)?,
            (None, None, None, true) => Schedule::closed(self.duration)?,
            (None, None, None, false) => {
                return Err(LoadError::InvalidArgument {
                    option: "load model",
                    reason: "give --rate N, --stages \"...\" or --closed".into(),
                })
            }
        };
        let schedule = self.distribute(schedule)?;
        if self.duration.is_zero() {
            return Err(LoadError::InvalidArgument {
                option: "--duration",
                reason: "the duration must be longer than zero".into(),
            });
        }
        let requests = self.requests_for(&target, har.as_ref())?;
        let mut config = LoadConfig::new(target, schedule);
        config.requests = requests;
        config.hosts = hosts;
        config.request_hosts = request_hosts;
        config.replay = self.replay(har.as_ref())?;
        if self.disable_keepalive {
            for request in &mut config.requests {
                let close = http::HeaderValue::from_static("close");
                request.headers.insert(http::header::CONNECTION, close);
            }
        }
        if let Some(path) = &self.feeder {
            config.feeder = Some(Arc::new(Feeder::read(path, self.feeder_mode)?));
        }
        config.connections = self.connections;
        config.http_version = if self.http2 {
            HttpVersion::Http2
        } else {
            HttpVersion::Http1
        };
        config.streams = self.streams;
        config.tls = self.tls();
        config.timeout = self.timeout;
        config.late_threshold = self.late_threshold;
        config.max_send_delay = self.max_send_delay;
        config.run_info = run_info;
        config.check()?;
        Ok(config)
    }
}

/// The instant of `--start-at`: RFC 3339 in UTC, not in the past.
fn parse_start_at(text: &str) -> Result<std::time::SystemTime, LoadError> {
    let invalid = |reason: String| LoadError::InvalidArgument {
        option: "--start-at",
        reason,
    };
    let at = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
        invalid(format!(
            "{text:?} is not an RFC 3339 instant in UTC ({e}); e.g. 2026-12-01T21:30:00Z"
        ))
    })?;
    let now = std::time::SystemTime::now();
    if at < now {
        return Err(invalid(format!(
            "{text} is in the past (it is {} now): workers could not start together",
            humantime::format_rfc3339_seconds(now)
        )));
    }
    Ok(at)
}

/// Runs `faultline load` from the command line alone: checks the arguments and the
/// target, runs the load (see [`run_plan`]). `--scenario` and `--find-max` need the
/// scenario model and the gates, so `faultline_scenarios::load` runs those.
pub async fn run_load(args: LoadArgs, run_info: RunInfo) -> Result<Results, LoadError> {
    if args.scenario.is_some() || args.find_max {
        return Err(LoadError::InvalidArgument {
            option: "--scenario/--find-max",
            reason: "run by faultline_scenarios::load (the faultline binary's load command)".into(),
        });
    }
    let run = LoadRun {
        plan: args.to_plan(run_info)?,
        search: None,
        scenario: None,
    };
    run_plan(run, &args, &|_: &Results| None).await
}

/// Runs a planned `faultline load`: the load, with a live progress line on stderr (or, for
/// a capacity search, one line per step, each judged by `judge`); then the scenario's
/// gates and text, the scrape, the results file if asked, and the summary on stdout.
pub async fn run_plan(
    run: LoadRun,
    args: &LoadArgs,
    judge: &impl StepJudge,
) -> Result<Results, LoadError> {
    let warm_up = match run.scenario.as_ref().and_then(|s| s.warm_up) {
        Some(duration) => Some(crate::warm_up::before(&run.plan, duration, args.quiet).await?),
        None => None,
    };
    let live = !args.quiet && std::io::stderr().is_terminal();
    let scrape = (!args.scrape.is_empty()).then(|| crate::scrape::ScrapeSpec {
        targets: args.scrape.clone(),
        metrics: args.scrape_metrics.clone(),
        histograms: Vec::new(),
        interval: args.scrape_interval,
        tls: None,
    });
    let scraper = scrape.map(crate::scrape::Scraper::start).transpose()?;
    let show = |progress: &engine::Progress| {
        if live {
            let mut stderr = std::io::stderr().lock();
            // \r and "erase line" keep it one line that updates in place.
            let _ = write!(stderr, "\r\x1b[2K{}", progress_line(progress));
            let _ = stderr.flush();
        }
    };
    let mut results = match (run.plan, run.search) {
        (plan, Some((staircase, gates))) => {
            let mut number = 0;
            let on_step = |step: &_| {
                number += 1;
                if !args.quiet {
                    eprintln!("{}", capacity::step_line(number, step));
                }
            };
            capacity::find_max(&plan, &staircase, gates, judge, on_step).await?
        }
        (LoadPlan::Requests(config), None) => engine::run(config, show).await?,
        (LoadPlan::Journeys(config), None) => journeys::run(config, show).await?,
    };
    if let Some(extras) = run.scenario {
        results.gates = extras.gates;
        results.scenario_text = Some(extras.text);
    }
    results.warm_up = warm_up;
    if live {
        eprint!("\r\x1b[2K");
    }
    if let Some(scraper) = scraper {
        let started_at = humantime::parse_rfc3339(&results.metadata.started_at)
            .unwrap_or(std::time::SystemTime::now());
        results.server_metrics = scraper.finish(started_at).await;
    }
    if let Some(path) = &args.output {
        results.write(path)?;
    }
    print!("{}", summary_table(&results));
    Ok(results)
}

/// Arguments of `faultline har`.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct HarArgs {
    /// The browser recording (HAR) to convert.
    #[arg(value_name = "FILE")]
    pub har: PathBuf,

    #[command(flatten)]
    pub filter: HarFilter,

    /// Write the requests file here (stdout when not given).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `faultline har`: converts the recording as `faultline load --har` does and
/// writes it as a requests file (`--requests` reads it back unchanged); the summary
/// goes to stderr.
pub fn run_har(args: &HarArgs) -> Result<Conversion, LoadError> {
    let conversion = har::read(&args.har, &args.filter)?;
    let source = args.har.display().to_string();
    match &args.output {
        Some(path) => {
            let text = conversion.to_toml(&source, &path.display().to_string());
            std::fs::write(path, text).map_err(|e| {
                faultline_results::FileError::new("writing the requests file to", path, e)
            })?;
        }
        None => print!("{}", conversion.to_toml(&source, "requests.toml")),
    }
    eprintln!("{}", conversion.summary(&source));
    Ok(conversion)
}
