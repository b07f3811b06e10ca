//! Acceptance tests of reports and gates, on results of a real load run.
//!
//! One test binary (modules below). [`support::real_results`] runs the load engine
//! once against a local server that stalls and fails on a schedule, then adds the
//! fault windows, consistency window, server series and checker counts that the
//! run will record later, so every chart has data.

#![allow(clippy::unwrap_used)]

mod browser;
mod claims;
mod gates;
mod journeys;
mod schema;
mod support;
