//! `render_report RESULTS.json [-o DIR]`: the `faultline report` command without the
//! binary around it, so `scripts/bench-reports` can time report generation before
//! (and independently of) the binary's wiring. Same arguments as `faultline report`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    report: faultline_reports::cli::ReportArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match faultline_reports::run_report(&args.report) {
        Ok(path) => {
            println!("{}", path.display());
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(faultline_reports::ReportError::EXIT_CODE)
        }
    }
}
