//! `faultline load` as the binary runs it (`faultline_scenarios::load::run`): scenario
//! files read through the one Scenario model, and capacity search judged by the gates,
//! against tiny servers on 127.0.0.1 port 0 ([`server::TestServer`]).

#![allow(clippy::unwrap_used)]

mod capacity;
mod scenario;
mod server;

use clap::Parser;
use faultline_loadgen::cli::LoadArgs;

#[derive(Parser)]
struct Load {
    #[command(flatten)]
    args: LoadArgs,
}

/// `faultline load ARGV...` parsed as the binary parses it.
pub fn load_args(argv: &[&str]) -> LoadArgs {
    Load::try_parse_from(std::iter::once("load").chain(argv.iter().copied()))
        .unwrap()
        .args
}
