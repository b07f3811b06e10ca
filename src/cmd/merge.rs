//! `faultline merge a.json b.json -o all.json`: merge the results of several load
//! workers exactly (histograms add). The work is `faultline_loadgen::cli::run_merge`.

use std::process::ExitCode;

use faultline_loadgen::cli;

/// Arguments of `faultline merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub merge: cli::MergeArgs,
}

/// Merges the files; unreadable or incompatible results are an error (exit code 1).
pub async fn run(args: MergeArgs) -> anyhow::Result<ExitCode> {
    cli::run_merge(&args.merge)?;
    Ok(ExitCode::SUCCESS)
}
