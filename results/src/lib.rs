//! faultline's results contract: what a run measured, as `results.json`.
//!
//! This crate is the one contract between running and reporting. The load engine,
//! the user journeys, the checker and the scenario orchestrator write [`Results`];
//! reports, gates and `faultline merge` read them, and nothing else passes between
//! the two sides. So it depends on nothing that runs load (no runtime, no HTTP
//! client): a reader of results compiles serde, HdrHistogram and little more.
//!
//! How the parts fit:
//!
//! - [`results`]: the types of `results.json` ([`Results`] and its parts, the run's
//!   [`RunMetadata`] and who ran it, [`RunInfo`]), read and written as versioned
//!   JSON ([`SCHEMA_VERSION`], `schema/results.schema.json`, checked by tests in
//!   loadgen and reports).
//! - [`histogram`]: the one histogram shape (µs, 3 significant digits) and its
//!   stored form ([`EncodedHistogram`]), so that any two histograms add exactly.
//! - [`error_class`]: the classes of failed requests and their counts.
//! - [`schedule`]: the load that was asked for ([`TargetSchedule`], [`Stage`]).
//! - [`build`]: results from recorded [`Bucket`]s (per endpoint and second).
//! - [`merge`]: [`Results::merge`], several workers' results added exactly.
//! - [`capacity`]: a capacity search's steps and the capacity found
//!   ([`CapacityResults`]).
//! - [`resources`]: what the system's processes used (CPU, memory) and the machine's
//!   network and disk counters, sampled from `/proc` each second ([`ResourceResults`]).
//! - [`server_histogram`]: a histogram a service exports, as its change over the run
//!   ([`ServerHistogram`]), with its mean and interpolated quantiles.
//! - [`database`]: the statements the services' databases ran, from
//!   `pg_stat_statements` at the run's start and end ([`DatabaseResults`]).
//! - [`tls`]: what an `https://` run's TLS handshakes cost ([`TlsResults`]).
//! - [`gates`]: `[[gates]]` tables as written ([`GateSpec`]), recorded in results and
//!   judged by reports.
//! - [`kafka_bench`]: what `faultline kafka-bench` measured (`kafka-bench.json`).
//! - [`broker_bench`]: what `faultline broker-bench` measured (`<broker>.json`).
//! - [`traces`]: the slowest requests' trace ids (exemplars) and, fetched from Jaeger,
//!   their spans ([`Traces`]).
//! - [`quantity`]: the one parser of durations, sizes, rates and percentages that
//!   every scenario table and flag uses.

pub mod broker_bench;
pub mod build;
pub mod capacity;
pub mod database;
pub mod error;
pub mod error_class;
pub mod gates;
pub mod histogram;
pub mod kafka_bench;
pub mod merge;
pub mod quantity;
pub mod resources;
pub mod results;
pub mod schedule;
pub mod server_histogram;
pub mod tls;
pub mod traces;

pub use build::{Bucket, RunRecord};
pub use capacity::{CapacityResults, CapacitySearch, CapacityStep, SearchEnd, StepPhase};
pub use database::{DatabaseResults, StatementReading};
pub use error::{FileError, ResultsError};
pub use error_class::{ErrorClass, ErrorCounts};
pub use gates::{GateSpec, ScenarioGate};
pub use histogram::{EncodedHistogram, HistogramCodecError, LatencySummary};
pub use quantity::{Dimension, Quantity, QuantityError};
pub use resources::{MachineSample, ProcessResources, ProcessSample, ResourceResults};
pub use results::{
    CheckerResults, DeployStep, EndpointResults, FaultWindow, GeneratorHealth, HttpVersion,
    JourneyResults, JourneySecond, LatencyOrigin, Machine, MetricKind, MetricSeries,
    PrometheusSource, Results, RunInfo, RunMetadata, SecondResults, TimePoint, Totals, WarmUp,
    SCHEMA_VERSION,
};
pub use schedule::{Arrivals, LoadModel, Stage, TargetSchedule};
pub use server_histogram::ServerHistogram;
pub use tls::TlsResults;
pub use traces::{Exemplar, Kept, TraceSpan, Traces};
