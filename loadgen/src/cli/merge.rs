//! `faultline merge`: the results files of several load workers merged exactly.

use std::path::PathBuf;

use faultline_results::Results;

use crate::{error::LoadError, summary::summary_table};

/// Arguments of `faultline merge`.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct MergeArgs {
    /// Results files of several load workers.
    #[arg(required = true, num_args = 2..)]
    pub inputs: Vec<PathBuf>,

    /// Write the merged results here (stdout when not given).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// Runs `faultline merge`: merges results files exactly, writes them, and prints
/// the summary (on stderr when the results themselves go to stdout).
pub fn run_merge(args: &MergeArgs) -> Result<Results, LoadError> {
    let mut inputs = args.inputs.iter();
    let first = inputs.next().ok_or_else(|| LoadError::InvalidArgument {
        option: "inputs",
        reason: "no results files given".into(),
    })?;
    let mut merged = Results::read(first)?;
    for path in inputs {
        let next = Results::read(path)?;
        merged = Results::merge(&merged, &next).map_err(|e| LoadError::BadResults {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    match &args.output {
        Some(path) => {
            merged.write(path)?;
            print!("{}", summary_table(&merged));
        }
        None => {
            let text =
                serde_json::to_string_pretty(&merged).map_err(|e| LoadError::BadResults {
                    path: "(merged)".into(),
                    reason: e.to_string(),
                })?;
            println!("{text}");
            eprint!("{}", summary_table(&merged));
        }
    }
    Ok(merged)
}
