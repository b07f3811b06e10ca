//! `faultline report results.json -o DIR`: the HTML report of a run, from its results
//! alone. The work is `faultline_reports::run_report`; bad input exits 2.

use std::process::ExitCode;

use faultline_reports::{cli, ReportError};

/// Arguments of `faultline report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub report: cli::ReportArgs,
}

/// Writes index.html and prints its path.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    match cli::run_report(&args.report) {
        Ok(path) => {
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(ReportError::EXIT_CODE))
        }
    }
}
