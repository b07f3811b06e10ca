//! Reports and CI gates for faultline: `results.json` in; a self-contained HTML
//! report (plotters SVG charts), JUnit XML, a Markdown summary and an exit code out.
//!
//! Reports read only results, never live state, so they can be regenerated later and
//! from merged results; the crate depends on `faultline-results` (the contract) and
//! not on the load engine. How the parts fit, from input to output:
//!
//! - [`input`]: reads `results.json` with errors naming the file, JSON path and line.
//! - [`metric`], with `faultline_results::quantity`: the metric vocabulary (`http.p99`,
//!   `endpoint:GET /orders.error_rate`, `consistency.p99`, `checker.lost`, ...)
//!   shared by gates and claims, with units, and how each is measured from results.
//! - [`gate`]: thresholds (`[[gates]]` tables, `--gate 'http.p99<450ms'`) and the
//!   baseline comparison, judged into a [`gate::GateReport`] that writes
//!   `junit.xml` and `summary.md` and gives the exit code.
//! - [`claims`]: the documents' figures from `scenarios/claims.toml`, held against
//!   the run with the hardware of both; a run's capacity answers the rates it could
//!   not reach. [`claims_kafka`] holds Table 5's claims against a kafka-bench run,
//!   [`claims_brokers`] Table 1's against broker-bench runs, and [`claims_suite`]
//!   writes the one claims report of `faultline claims`.
//! - [`timeline`] and [`charts`]: time series and distributions derived from the
//!   results, drawn as inline SVG with fault windows shaded.
//! - [`resources`]: CPU and memory per process of the system, sampled from `/proc`,
//!   drawn over the run.
//! - [`capacity`]: a capacity search's latency against offered rate, its knee and
//!   steps, on the page and in `summary.md`.
//! - [`report`] and [`html`]: the sections of the report and the one-page HTML.
//! - [`traces`]: the slowest requests' traces (waterfalls, where the time went).
//! - [`prometheus`]: where a run's Prometheus kept the raw series, under the server-side
//!   charts.
//! - [`cli`]: the `faultline report` and `faultline gate` commands that the binary
//!   wraps. `faultline run` judges once with [`GateReport::judge`], builds with
//!   [`Report::build`] and writes with [`Report::write_all`]: typed values in memory.

pub mod capacity;
pub mod charts;
pub mod claims;
pub mod claims_brokers;
pub mod claims_kafka;
pub mod claims_suite;
pub mod cli;
pub mod error;
pub mod gate;
pub mod html;
pub mod input;
pub mod metric;
pub mod prometheus;
pub mod report;
pub mod resources;
pub mod timeline;
pub mod traces;

pub use claims::{ClaimResult, ClaimStatus, Claims};
pub use cli::{gate_exit_code, run_gate, run_report, GateArgs, ReportArgs};
pub use error::ReportError;
pub use gate::{Baseline, Gate, GateReport, GateResult};
pub use input::read_results;
pub use metric::{Measured, Metric};
pub use report::{all_gates, Report, Section, Written};
