//! `faultline load` as a standalone program, for benchmarking the engine without
//! building the whole faultline binary (its system crate pulls Kafka and more).
//!
//! Same arguments as `faultline load`; exits 2 on usage errors.

use std::process::ExitCode;

use clap::Parser;
use faultline_loadgen::cli::{run_load, LoadArgs};
use faultline_results::RunInfo;

#[derive(Parser)]
#[command(name = "load", about = "faultline's load engine against one URL")]
struct Cli {
    #[command(flatten)]
    args: LoadArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One current-thread runtime: the benchmark pins the generator to one core,
    // where a single scheduler thread is all there is to use.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run_load(cli.args, RunInfo::default())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
