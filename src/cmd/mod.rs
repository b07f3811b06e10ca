//! One module per subcommand; each turns arguments into library calls and an exit code.

pub mod broker_bench;
pub mod claims;
pub mod gate;
pub mod har;
pub mod kafka_bench;
pub mod load;
pub mod merge;
pub mod proxy;
pub mod report;
pub mod run;
pub mod serve;
pub mod stack;
pub mod system;

/// Resolves on Ctrl-C or SIGTERM (written once, in chaos, whose proxy command needs it too).
pub use faultline_chaos::cli::terminated;

/// A benchmark's end: exit 2 for bad input (its message on stderr), else its table on
/// stdout and, with `-o DIR`, its JSON written there (kafka-bench, broker-bench).
pub(crate) fn finish_bench<R, E>(
    name: &str,
    outcome: Result<R, E>,
    is_usage: impl Fn(&E) -> bool,
    render: impl Fn(&R) -> String,
    output: Option<&std::path::Path>,
    write: impl Fn(&std::path::Path, &R) -> Result<std::path::PathBuf, E>,
) -> anyhow::Result<std::process::ExitCode>
where
    E: std::error::Error + Send + Sync + 'static,
{
    use anyhow::Context as _;
    let results = match outcome {
        Ok(results) => results,
        Err(error) if is_usage(&error) => {
            eprintln!("error: {error}");
            return Ok(std::process::ExitCode::from(2));
        }
        Err(error) => return Err(error.into()),
    };
    print!("{}", render(&results));
    if let Some(dir) = output {
        let path = write(dir, &results)
            .with_context(|| format!("writing the results into {}", dir.display()))?;
        eprintln!("{name}: wrote {}", path.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}
