//! `faultline load URL ...`: drive HTTP load at any service (open or closed model), a
//! scenario file's `[load]`, or a capacity search (`--find-max`), and write
//! `results.json`. The arguments live in `faultline_loadgen::cli`, the run in
//! `faultline_scenarios::load`; this file only maps the outcome to an exit code.

use std::process::ExitCode;

use faultline_loadgen::cli;
use faultline_results::RunInfo;
use faultline_scenarios::load;

/// Arguments of `faultline load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub load: cli::LoadArgs,
}

/// Runs the load; usage errors (bad URL, rate or stages, unreachable target) print a
/// message and exit with code 2.
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let run_info = RunInfo {
        scenario: None,
        faultline_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        // Set at build time when known (e.g. by CI or a build script).
        git_commit: option_env!("FAULTLINE_GIT_COMMIT").map(str::to_string),
    };
    match load::run(args.load, run_info).await {
        Ok(_results) => Ok(ExitCode::SUCCESS),
        Err(error) if error.is_usage() => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(error.exit_code()))
        }
        Err(error) => Err(error.into()),
    }
}
