//! The load part of a scenario file (`[load]`, [`LoadSpec`]), and what it plans
//! ([`LoadPlan`]).
//!
//! A scenario file is TOML, and each crate owns its part: `[load]` is here; the file
//! as a whole is `faultline_scenarios::Scenario`, the one model that `faultline run`
//! and `faultline load --scenario` both read it through. Unknown keys are errors, so a
//! typo does not silently fall back to a default. The file's TOML parser gives every
//! error its line; [`LoadSpec::plan`]'s own checks name the key. `[load.find_max]` is
//! a capacity search ([`crate::capacity`]) instead of one rate. The `--requests FILE`
//! of `faultline load` ([`RequestsFile`]) shares `[[load.requests]]`'s entries.
//!
//! ```toml
//! [load]
//! target = "http://127.0.0.1:8080"
//! stages = "10s:0->20, 40s:20, 10s:20->0"   # or rate = 20 with duration = "60s", or closed = true
//! arrivals = "poisson"
//! connections = 64
//! # Or plain requests in a weighted mix, with templates filled from a feeder:
//! # targets = ["3*http://10.0.0.1:8080", "http://10.0.0.2:8080"]
//! # [load.feeder]
//! # path = "users.csv"     # relative to the scenario file; mode = "circular", "once" or "random"
//! # [[load.requests]]
//! # weight = 3
//! # method = "POST"
//! # path = "/api/orders/{{user_id}}"
//! # body = '{"sku": "{{sku}}", "qty": {{randint 1 5}}}'
//! # Or, instead of a rate, a capacity search (then no rate, stages or duration):
//! # [load.find_max]
//! # start = 50
//! # max = 2000
//! # gates = ["http.p99<120ms"]
//! [load.journeys]
//! mix = { browse = 6, checkout = 3, ingest = 1 }
//! ledger = "ledger.jsonl"
//! [load.tls]                  # for an https:// target; all optional
//! cacert = "ca.pem"           # or insecure = true
//! cert = "client.pem"         # a client certificate, with its key
//! key = "client-key.pem"
//! version = "1.3"
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;

use faultline_results::{Arrivals, HttpVersion, RunInfo};

use crate::{
    capacity::{FindMaxSpec, Staircase},
    engine::LoadConfig,
    error::LoadError,
    feeder::{Feeder, FeederMode},
    journeys::{Driver, JourneyConfig, JourneyKind, JourneyMix},
    schedule::{parse_stages, Schedule},
    target::{parse_method, Host, RequestSpec, Target},
    tls::TlsSettings,
};

/// The `[load]` table: what to send, at what rate, for how long.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Target URL: the full URL of a single request, or the base URL of the requests
    /// and journeys. The command line's URL overrides it.
    pub target: Option<String>,
    /// Several base URLs instead of `target`, to spread plain requests over; `N*URL`
    /// weighs a host (`"3*http://10.0.0.1:8080"`).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Rows that fill the requests' `{{column}}` placeholders.
    pub feeder: Option<FeederSpec>,
    /// Constant arrival rate (requests or journeys per second).
    pub rate: Option<f64>,
    /// Rate stages, e.g. `"10s:0->500, 60s:500, 10s:500->0"`.
    pub stages: Option<String>,
    /// Closed model: back to back on every connection.
    #[serde(default)]
    pub closed: bool,
    /// Length of a `rate` or `closed` run.
    #[serde(default, deserialize_with = "duration_opt::deserialize")]
    pub duration: Option<Duration>,
    #[serde(default)]
    pub arrivals: ArrivalsSpec,
    pub seed: Option<u64>,
    pub connections: Option<usize>,
    #[serde(default)]
    pub http2: bool,
    /// HTTP/2 requests in flight at once per connection.
    pub streams: Option<usize>,
    /// How to speak TLS to an `https://` target.
    pub tls: Option<TlsSpec>,
    #[serde(default, deserialize_with = "duration_opt::deserialize")]
    pub timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt::deserialize")]
    pub late_threshold: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt::deserialize")]
    pub max_send_delay: Option<Duration>,
    /// Plain requests, in weighted turns (equal weights: in turn).
    #[serde(default)]
    pub requests: Vec<RequestEntry>,
    /// User journeys of the reference system instead of plain requests.
    pub journeys: Option<JourneysSpec>,
    /// A capacity search instead of `rate`, `stages` or `closed`.
    pub find_max: Option<FindMaxSpec>,
    /// A warm-up before the measured load: its requests or journeys at the rate it starts
    /// with, for this long, not recorded ([`crate::warm_up`]).
    #[serde(default, deserialize_with = "duration_opt::deserialize")]
    pub warm_up: Option<Duration>,
}

/// The `[load.tls]` table (paths relative to the working directory).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    #[serde(default)]
    pub insecure: bool,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// `"1.2"` or `"1.3"`.
    pub version: Option<String>,
}

impl TlsSpec {
    fn settings(&self) -> Result<TlsSettings, String> {
        let version = match &self.version {
            Some(text) => Some(text.parse().map_err(|e| format!("load.tls.version: {e}"))?),
            None => None,
        };
        if self.cert.is_some() != self.key.is_some() {
            return Err("load.tls: a client certificate needs both cert and key".into());
        }
        Ok(TlsSettings {
            insecure: self.insecure,
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            version,
        })
    }
}

/// Uniform or Poisson arrivals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalsSpec {
    #[default]
    Uniform,
    Poisson,
}

/// One `[[load.requests]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEntry {
    #[serde(default = "get")]
    pub method: String,
    /// Path (and query) on the target, e.g. `/api/products`.
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body as text.
    pub body: Option<String>,
    /// Results go under this name (default `METHOD /path`, placeholders as written).
    pub name: Option<String>,
    /// Its share of the mix (default 1).
    pub weight: Option<u32>,
}

/// The `[load.feeder]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeederSpec {
    /// A `.csv` (header row first) or `.jsonl` file, relative to the scenario file.
    pub path: PathBuf,
    #[serde(default)]
    pub mode: FeederMode,
}

/// A requests file (`faultline load --requests FILE`): `[[requests]]` tables in the
/// shape of `[[load.requests]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestsFile {
    pub requests: Vec<RequestEntry>,
}

impl RequestsFile {
    /// Reads and parses a requests file (errors name the file, the line and the key).
    pub fn read(path: &Path) -> Result<RequestsFile, LoadError> {
        let bad = |reason: String| LoadError::InvalidArgument {
            option: "--requests",
            reason: format!("{}: {reason}", path.display()),
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let file: RequestsFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.requests.is_empty() {
            return Err(bad("no [[requests]]".into()));
        }
        Ok(file)
    }

    /// The file's requests under `target`'s path, with `headers` (from `-H`) added to
    /// each where it does not set them itself.
    pub fn specs(
        &self,
        target: &Target,
        headers: &HeaderMap,
        path: &Path,
    ) -> Result<Vec<RequestSpec>, LoadError> {
        self.requests
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let mut spec = entry.to_spec(target, "requests", index).map_err(|reason| {
                    LoadError::InvalidArgument {
                        option: "--requests",
                        reason: format!("{}: {reason}", path.display()),
                    }
                })?;
                for (name, value) in headers {
                    if !spec.headers.contains_key(name) {
                        spec.headers.insert(name.clone(), value.clone());
                    }
                }
                Ok(spec)
            })
            .collect()
    }
}

fn get() -> String {
    "GET".into()
}

/// The `[load.journeys]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneysSpec {
    /// Weights, e.g. `{ browse = 6, checkout = 3, ingest = 1 }`.
    pub mix: BTreeMap<JourneyKind, u32>,
    #[serde(default)]
    pub driver: Driver,
    pub users: Option<usize>,
    /// Log the users in at set-up, before the clock starts, instead of on their first
    /// journey (`--login-before-start`): for a run that measures what follows a login.
    #[serde(default)]
    pub login_before_start: bool,
    pub ingest_batch: Option<usize>,
    #[serde(default, deserialize_with = "duration_opt::deserialize")]
    pub consistency_deadline: Option<Duration>,
    /// Where to write the ledger of acknowledged writes (relative to the working
    /// directory).
    pub ledger: Option<std::path::PathBuf>,
}

/// What a scenario's `[load]` asks for, ready to run.
#[derive(Debug, Clone)]
pub enum LoadPlan {
    Requests(LoadConfig),
    Journeys(JourneyConfig),
}

impl LoadPlan {
    /// When the load is due, whichever kind it is.
    pub fn schedule(&self) -> &Schedule {
        match self {
            LoadPlan::Requests(config) => &config.schedule,
            LoadPlan::Journeys(config) => &config.schedule,
        }
    }
}

impl LoadSpec {
    /// Checks the spec and turns it into a runnable plan. `target` overrides the
    /// spec's own target.
    pub fn plan(
        &self,
        target: Option<&str>,
        run_info: RunInfo,
        scenario_path: &str,
    ) -> Result<LoadPlan, LoadError> {
        let bad = |reason: String| LoadError::Scenario {
            path: scenario_path.to_string(),
            reason,
        };
        if self.target.is_some() && !self.targets.is_empty() {
            return Err(bad("give load.target or load.targets, not both".into()));
        }
        self.check_warm_up().map_err(&bad)?;
        let hosts = match target {
            Some(_) => Vec::new(),
            None if self.targets.is_empty() => Vec::new(),
            None => Host::parse_list(self.targets.iter().map(String::as_str))?,
        };
        let url = target
            .or(self.target.as_deref())
            .or(hosts.first().map(|h| h.target.url.as_str()))
            .ok_or_else(|| bad("[load] has no target: set load.target or give a URL".into()))?;
        let arrivals = match self.arrivals {
            ArrivalsSpec::Uniform => Arrivals::Uniform,
            ArrivalsSpec::Poisson => Arrivals::Poisson {
                seed: self.seed.unwrap_or_else(rand::random),
            },
        };
        let schedule = self.schedule(arrivals, bad)?;
        if let (Some(_), Schedule::Open { stages, .. }) = (self.warm_up, &schedule) {
            if crate::warm_up::start_rate(stages).is_none() {
                return Err(bad(
                    "load.warm_up: the load's first stage asks for nothing to \
                                warm up with (start it above 0, or ramp it up from 0)"
                        .into(),
                ));
            }
        }
        let timeout = self.timeout.unwrap_or(Duration::from_secs(5));
        let connections = self.connections.unwrap_or(64);
        let late_threshold = self.late_threshold.unwrap_or(Duration::from_millis(10));
        let tls = self
            .tls
            .clone()
            .unwrap_or_default()
            .settings()
            .map_err(bad)?;

        match (&self.journeys, self.requests.is_empty()) {
            (Some(_), false) => Err(bad(
                "give either [[load.requests]] or [load.journeys], not both".into(),
            )),
            (Some(journeys), true) => {
                if !hosts.is_empty() || self.feeder.is_some() {
                    return Err(bad(
                        "load.targets and load.feeder are for plain requests, not journeys".into(),
                    ));
                }
                if self.http2 {
                    return Err(bad("load.http2 is not supported by journeys yet".into()));
                }
                let mix = JourneyMix::new(journeys.mix.iter().map(|(k, w)| (*k, *w)))
                    .map_err(|e| bad(format!("load.journeys.mix: {e}")))?;
                let mut config = JourneyConfig::new(url, mix, schedule);
                config.driver = journeys.driver;
                config.concurrency = connections;
                config.timeout = timeout;
                config.late_threshold = late_threshold;
                config.max_send_delay = self.max_send_delay;
                config.seed = self.seed;
                if let Some(users) = journeys.users {
                    config.users = users;
                }
                config.login_before_start = journeys.login_before_start;
                if let Some(batch) = journeys.ingest_batch {
                    config.ingest_batch = batch;
                }
                if let Some(deadline) = journeys.consistency_deadline {
                    config.consistency_deadline = deadline;
                }
                config.ledger = journeys.ledger.clone();
                config.run_info = run_info;
                config.tls = tls;
                Ok(LoadPlan::Journeys(config))
            }
            (None, _) => {
                let mut config = self.requests_config(url, schedule, scenario_path)?;
                config.hosts = hosts;
                config.connections = connections;
                config.http_version = if self.http2 {
                    HttpVersion::Http2
                } else {
                    HttpVersion::Http1
                };
                config.streams = self.streams.unwrap_or(1);
                config.tls = tls;
                config.timeout = timeout;
                config.late_threshold = late_threshold;
                config.max_send_delay = self.max_send_delay;
                config.run_info = run_info;
                config.check()?;
                Ok(LoadPlan::Requests(config))
            }
        }
    }
}

impl LoadSpec {
    /// When the load is due: `rate`, `stages` or `closed`; with `[load.find_max]`, its
    /// first step (the search sets every step's rate itself).
    fn schedule(
        &self,
        arrivals: Arrivals,
        bad: impl Fn(String) -> LoadError,
    ) -> Result<Schedule, LoadError> {
        if let Some(staircase) = self.staircase().map_err(&bad)? {
            if self.rate.is_some()
                || self.stages.is_some()
                || self.closed
                || self.duration.is_some()
            {
                return Err(bad(
                    "[load.find_max] sets its own rates and holds: drop load.rate, \
                     load.stages, load.closed and load.duration"
                        .into(),
                ));
            }
            return Schedule::constant(staircase.start, staircase.hold, arrivals);
        }
        match (&self.stages, self.rate, self.closed, self.duration) {
            (Some(stages), None, false, None) => Schedule::open(parse_stages(stages)?, arrivals),
            (None, Some(rate), false, Some(duration)) => {
                Schedule::constant(rate, duration, arrivals)
            }
            (None, None, true, Some(duration)) => Schedule::closed(duration),
            (Some(_), _, _, Some(_)) => Err(bad(
                "load.duration goes with rate or closed; stages carry their own durations".into(),
            )),
            (_, _, _, None) if self.stages.is_none() => Err(bad(
                "load.duration is missing (e.g. duration = \"30s\")".into(),
            )),
            _ => Err(bad(
                "give exactly one of load.rate, load.stages or load.closed = true".into(),
            )),
        }
    }

    /// `load.warm_up`: longer than zero, and only where a warm-up means the same load.
    fn check_warm_up(&self) -> Result<(), String> {
        let Some(warm_up) = self.warm_up else {
            return Ok(());
        };
        if warm_up.is_zero() {
            return Err("load.warm_up must be longer than zero (or left out)".into());
        }
        if self.find_max.is_some() {
            return Err(
                "load.warm_up does not go with [load.find_max]: each of its steps \
                        starts from the one before"
                    .into(),
            );
        }
        if self
            .feeder
            .as_ref()
            .is_some_and(|f| f.mode == FeederMode::Once)
        {
            return Err(
                "load.warm_up with a feeder in mode \"once\": the warm-up would use \
                        up rows the load needs"
                    .into(),
            );
        }
        Ok(())
    }

    /// The capacity search `[load.find_max]` asks for, checked (`None` without one).
    pub fn staircase(&self) -> Result<Option<Staircase>, String> {
        self.find_max
            .as_ref()
            .map(FindMaxSpec::staircase)
            .transpose()
    }

    /// The engine configuration of plain requests to `url` (the first host), with
    /// the feeder read; the caller sets the rest.
    fn requests_config(
        &self,
        url: &str,
        schedule: Schedule,
        scenario_path: &str,
    ) -> Result<LoadConfig, LoadError> {
        let target = Target::parse(url)?;
        let requests = if self.requests.is_empty() {
            let request =
                RequestSpec::for_target(&target, http::Method::GET, HeaderMap::new(), Bytes::new());
            vec![request]
        } else {
            self.requests
                .iter()
                .enumerate()
                .map(|(index, entry)| entry.to_spec(&target, "load.requests", index))
                .collect::<Result<_, _>>()
                .map_err(|reason| LoadError::Scenario {
                    path: scenario_path.to_string(),
                    reason,
                })?
        };
        let mut config = LoadConfig::new(target, schedule);
        config.requests = requests;
        if let Some(feeder) = &self.feeder {
            // Relative to the scenario file, so a scenario runs from anywhere.
            let base = Path::new(scenario_path).parent().unwrap_or(Path::new(""));
            let read = Feeder::read(&base.join(&feeder.path), feeder.mode)?;
            config.feeder = Some(Arc::new(read));
        }
        Ok(config)
    }
}

impl RequestEntry {
    /// The request under `target`'s path; errors name `table[index].field`.
    fn to_spec(&self, target: &Target, table: &str, index: usize) -> Result<RequestSpec, String> {
        let bad = |field: &str, reason: String| format!("{table}[{index}].{field}: {reason}");
        let method = parse_method(&self.method).map_err(|e| bad("method", e.to_string()))?;
        if !self.path.starts_with('/') {
            return Err(bad("path", format!("{:?} must start with /", self.path)));
        }
        let lines: Vec<String> = self
            .headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}"))
            .collect();
        let headers =
            crate::target::parse_headers(&lines).map_err(|e| bad("headers", e.to_string()))?;
        let body = self.body.clone().map(Bytes::from).unwrap_or_default();
        let mut spec =
            RequestSpec::for_target(&target.with_subpath(&self.path), method, headers, body);
        if let Some(name) = &self.name {
            spec.name = name.clone();
        }
        match self.weight {
            Some(0) => return Err(bad("weight", "weights start at 1".into())),
            Some(weight) => spec.weight = weight,
            None => {}
        }
        Ok(spec)
    }
}

/// `Option<Duration>` from a duration as [`faultline_results::quantity`] reads it
/// (`"30s"`, `"1.5s"`, `"1m30s"`), so `[load]` spells times as `[[faults]]` does.
mod duration_opt {
    use std::time::Duration;

    use faultline_results::quantity::parse_duration;
    use serde::{Deserialize as _, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The `[load]` of scenario text, planned. The other tables are other crates'
    /// (the whole file is `faultline_scenarios::Scenario`), so they are skipped here.
    fn plan(text: &str) -> Result<LoadPlan, String> {
        #[derive(Deserialize)]
        struct LoadTable {
            load: LoadSpec,
        }
        let file: LoadTable = toml::from_str(text).map_err(|e| e.to_string())?;
        file.load
            .plan(None, RunInfo::default(), "test.toml")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn journeys_with_stages_and_a_ledger() {
        let text = r#"
            name = "checkout"
            [load]
            target = "http://127.0.0.1:8080"
            stages = "5s:0->10, 10s:10"
            arrivals = "poisson"
            seed = 7
            [load.journeys]
            mix = { browse = 6, checkout = 3 }
            users = 5
            login_before_start = true
            ledger = "ledger.jsonl"
            [[gates]]
            metric = "http.p99"
            max = "500ms"
            [[faults]]
            at = "5s"
            kind = "kill"
            target = "orders"
        "#;
        let LoadPlan::Journeys(config) = plan(text).unwrap() else {
            panic!("journeys expected");
        };
        assert_eq!(config.users, 5);
        assert!(config.login_before_start);
        assert_eq!(config.schedule.duration(), Duration::from_secs(15));
        assert_eq!(
            config.mix.weights(),
            &[(JourneyKind::Browse, 6), (JourneyKind::Checkout, 3)]
        );
    }

    #[test]
    fn requests_get_the_target_base_and_names() {
        let text = r#"
            [load]
            target = "http://127.0.0.1:9/api"
            rate = 10
            duration = "2s"
            [[load.requests]]
            path = "/products"
            [[load.requests]]
            method = "POST"
            path = "/orders"
            body = '{"items": []}'
            headers = { "content-type" = "application/json" }
        "#;
        let LoadPlan::Requests(config) = plan(text).unwrap() else {
            panic!("requests expected");
        };
        let names: Vec<&str> = config.requests.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["GET /api/products", "POST /api/orders"]);
    }

    #[test]
    fn load_durations_are_spelled_as_in_faults_and_gates() {
        let text = r#"
            [load]
            target = "http://127.0.0.1:9"
            rate = 10
            duration = "1m30s"
            timeout = "1.5s"
            late_threshold = "250MS"
        "#;
        let LoadPlan::Requests(config) = plan(text).unwrap() else {
            panic!("requests expected");
        };
        assert_eq!(config.schedule.duration(), Duration::from_secs(90));
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(config.late_threshold, Duration::from_millis(250));
        let error = plan("[load]\nrate = 5\nduration = \"5%\"\n").unwrap_err();
        assert!(error.contains("is a percentage"), "{error}");
    }

    #[test]
    fn requests_take_weights_and_targets_spread_them() {
        let text = r#"
            [load]
            targets = ["3*http://127.0.0.1:9/api", "http://127.0.0.1:10/api"]
            rate = 10
            duration = "2s"
            requests = [{ weight = 3, path = "/products/{{randint 1 9}}" }, { path = "/health" }]
        "#;
        let LoadPlan::Requests(config) = plan(text).unwrap() else {
            panic!("requests expected");
        };
        let weights: Vec<u32> = config.requests.iter().map(|r| r.weight).collect();
        assert_eq!(weights, [3, 1]);
        assert_eq!(config.requests[0].name, "GET /api/products/{{randint 1 9}}");
        let hosts: Vec<(&str, u32)> = config
            .hosts
            .iter()
            .map(|h| (h.target.authority.as_str(), h.weight))
            .collect();
        assert_eq!(hosts, [("127.0.0.1:9", 3), ("127.0.0.1:10", 1)]);
    }

    #[test]
    fn bad_mixes_templates_and_feeders_are_refused_before_the_run() {
        let head = "[load]\nrate = 5\nduration = \"1s\"\n";
        for (rest, expected) in [
            (
                "target = \"http://a:1\"\ntargets = [\"http://b:1\"]\n",
                "not both",
            ),
            (
                "target = \"http://a:1\"\n[[load.requests]]\npath = \"/\"\nweight = 0\n",
                "load.requests[0].weight",
            ),
            (
                "target = \"http://a:1\"\n[[load.requests]]\npath = \"/{{user}}\"\n",
                "template in request 1 (GET /{{user}}) path, column 2",
            ),
            (
                "target = \"http://a:1\"\n[load.feeder]\npath = \"no-such.csv\"\n",
                "no-such.csv: cannot be read",
            ),
        ] {
            let error = plan(&format!("{head}{rest}")).unwrap_err();
            assert!(error.contains(expected), "{rest}: {error}");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_line() {
        let typo = "[load]\ntarget = \"http://127.0.0.1:1\"\nrat = 5\n";
        let error = plan(typo).unwrap_err();
        assert!(error.contains("rat") && error.contains("line 3"), "{error}");

        let no_model = "[load]\ntarget = \"http://127.0.0.1:1\"\nduration = \"5s\"\n";
        assert!(plan(no_model).unwrap_err().contains("exactly one of"));

        let bad_duration = "[load]\nrate = 5\nduration = \"five\"\n";
        let error = plan(bad_duration).unwrap_err();
        assert!(
            error.contains("five") && error.contains("duration"),
            "{error}"
        );

        let bad_path = "[load]\ntarget = \"http://127.0.0.1:1\"\nrate = 5\nduration = \"1s\"\n[[load.requests]]\npath = \"x\"\n";
        assert!(plan(bad_path)
            .unwrap_err()
            .contains("load.requests[0].path"));

        let unknown_journey = "[load]\ntarget = \"http://127.0.0.1:1\"\nrate = 5\nduration = \"1s\"\n[load.journeys]\nmix = { shop = 1 }\n";
        let error = plan(unknown_journey).unwrap_err();
        assert!(error.contains("shop"), "{error}");

        let goose_open = "[load]\ntarget = \"http://127.0.0.1:1\"\nrate = 5\nduration = \"1s\"\n[load.journeys]\nmix = { browse = 1 }\ndriver = \"goose\"\n";
        let LoadPlan::Journeys(config) = plan(goose_open).unwrap() else {
            panic!("journeys expected");
        };
        assert_eq!(config.driver, Driver::Goose);
    }
}
