//! Acceptance tests of reports and gates, on the results of one run.
//!
//! One test binary (modules below). [`support::real_results`] records a run that
//! stalls and fails on a schedule the way the load engine records, then adds the
//! fault windows, consistency window, server series and checker counts that the
//! run will record later, so every chart has data.

#![allow(clippy::unwrap_used)]

mod browser;
mod capacity;
mod claims;
mod claims_kafka;
mod gates;
mod journeys;
mod prometheus;
mod recovery;
mod resources;
mod schema;
mod support;
