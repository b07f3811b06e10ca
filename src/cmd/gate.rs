//! `faultline gate results.json [--baseline base.json --max-regression 10%]`: CI
//! gates. Exit 0 when every gate holds, 1 when one fails, 2 for bad input; writes
//! junit.xml and summary.md. The work is `faultline_reports::run_gate`.

use std::process::ExitCode;

use faultline_reports::cli;

/// Arguments of `faultline gate`.
#[derive(Debug, clap::Args)]
pub struct GateArgs {
    #[command(flatten)]
    pub gate: cli::GateArgs,
}

/// Judges the gates, prints the Markdown summary, and exits with the verdict.
pub async fn run(args: GateArgs) -> anyhow::Result<ExitCode> {
    let outcome = cli::run_gate(&args.gate);
    match &outcome {
        Ok(run) => print!("{}", run.markdown),
        Err(error) => eprintln!("error: {error}"),
    }
    Ok(ExitCode::from(cli::gate_exit_code(&outcome)))
}
