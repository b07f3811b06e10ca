//! Acceptance tests of the load engine against local servers on 127.0.0.1 port 0.
//!
//! One test binary (modules below) so the servers' code is linked once. Each test
//! starts its own server ([`support::TestServer`]), so tests run in parallel
//! without sharing state.

#![allow(clippy::unwrap_used)]

mod cli;
mod coordinated_omission;
mod errors;
mod har;
mod har_replay;
mod merge;
mod nginx;
mod rate;
mod schema;
mod support;
mod templates;
mod tls;
