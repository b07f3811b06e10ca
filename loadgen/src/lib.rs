//! faultline's load generator: drives HTTP load at any service and measures it
//! honestly.
//!
//! How the parts fit, in the order a run goes through them:
//!
//! - [`target`]: the URL (or several hosts, [`target::Host`]) and the requests to
//!   send, parsed once ([`Target`], [`RequestSpec`]), each with its weight in the mix.
//! - [`template`]: `{{seq}}`, `{{uuid}}`, `{{randint 1 100}}`, ... and feeder columns in
//!   a request's path, headers and body, compiled once at start; [`feeder`]: the CSV
//!   or JSON-lines rows they are filled from. Module `mix`: the weighted turns that
//!   pick each arrival's request and host.
//! - [`har`]: a browser recording (`--har FILE`) turned into requests, the entries of
//!   a requests file (`--requests`), with third parties, static assets and
//!   browser-only headers left out.
//! - [`schedule`]: when requests are due. An open [`Schedule`] (constant rate or
//!   linear stages such as `10s:0->500, 60s:500`, uniform or Poisson arrivals) yields
//!   an intended send time per request; a closed one sends back to back.
//! - [`engine`]: one loop for every mode. One task per connection (HTTP/1.1
//!   keep-alive or HTTP/2, hyper 1.x; with several hosts, one to each) takes the
//!   next due request, renders it if it is templated, sends it, and records
//!   latency *from the intended send time*, so a stalled server cannot hide
//!   behind requests the generator never sent (coordinated omission). Send delays,
//!   late and dropped requests are counted so a generator that cannot keep up says
//!   so.
//! - [`recorder`]: per-worker, per-endpoint, per-second HdrHistograms and counts,
//!   collected once a second (no message per request).
//! - results: the engine's recorder fills `faultline_results::Bucket`s, from which
//!   `faultline_results::Results` are built: `results.json`, the only thing reports
//!   read, defined in the `faultline-results` crate with its schema and exact merge.
//! - [`exemplars`]: with tracing on, a W3C `traceparent` of the generator's own on each
//!   journey request, and per endpoint the slowest requests' trace ids, for results.
//! - [`summary`] and [`cli`]: the progress line, the end-of-run table, and the
//!   `faultline load` / `faultline merge` commands that the binary wraps.
//! - [`scrape`]: the services' Prometheus `/metrics`, polled during the run into
//!   `results.json` (`--scrape URL`), for the server-side charts.
//! - [`journeys`]: the reference system's user journeys (browse, checkout, ingest,
//!   login), driven by the engine's own pacing loop ("one journey per arrival") or by
//!   goose, recorded by the same recorder, with the consistency window, the write
//!   ledger, and users who log in once.
//! - [`scenario`]: the `[load]` table of a scenario file ([`scenario::LoadSpec`]),
//!   turned into plain requests or journeys; the file as a whole is read by
//!   `faultline-scenarios`, which depends on this crate.
//! - [`warm_up`]: a scenario's `[load] warm_up`, the load's own requests or journeys at
//!   its starting rate, run first and not recorded (a JVM's JIT, cold caches).
//! - [`capacity`]: capacity search (`--find-max`, `[load.find_max]`): a staircase of
//!   rates, each step a run of the engine, judged, then bisection to the knee.
//! - [`tls`]: HTTPS settings (`--insecure`, `--cacert`, `--cert`/`--key`,
//!   `--tls-version`), the one rustls config a run shares (session resumption), and
//!   handshakes counted and timed apart from requests.
//! - [`classify`]: which error class (connect, timeout, reset, 4xx, 5xx, protocol,
//!   tls) a failed request falls in.

pub mod capacity;
pub mod classify;
pub mod cli;
pub mod engine;
pub mod error;
pub mod exemplars;
pub mod feeder;
pub mod har;
pub mod journeys;
mod mix;
pub mod recorder;
pub mod scenario;
pub mod schedule;
pub mod scrape;
pub mod summary;
pub mod target;
pub mod template;
pub mod tls;
pub mod warm_up;

pub use classify::Classify;
pub use engine::{run, LoadConfig, Progress};
pub use error::{LoadError, StageParseError};
pub use schedule::{parse_stages, Schedule, WorkerShare};
pub use target::{RequestSpec, Target};
pub use tls::{TlsCause, TlsSettings, TlsVersion};
