//! `faultline har rec.har -o requests.toml`: turn a browser recording into a requests
//! file to edit, then run with `faultline load URL --requests requests.toml`. The
//! conversion is `faultline_loadgen::cli::run_har`, the same `faultline load --har`
//! runs; this file only maps the outcome to an exit code.

use std::process::ExitCode;

use faultline_loadgen::cli;

/// Arguments of `faultline har`.
#[derive(Debug, clap::Args)]
pub struct HarArgs {
    #[command(flatten)]
    pub har: cli::HarArgs,
}

/// Converts the recording; a bad recording (not JSON, not a HAR, a bad entry) prints
/// a message naming the entry and exits with code 2.
pub async fn run(args: HarArgs) -> anyhow::Result<ExitCode> {
    match cli::run_har(&args.har) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(error) if error.is_usage() => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(error.exit_code()))
        }
        Err(error) => Err(error.into()),
    }
}
