//! Programs the root crate's test binaries run: a tool that may be installed (`which`),
//! `faultline` with any arguments (`faultline`, `stderr_of`), and `faultline run` of a
//! scenario the way CI runs it.
//!
//! Included with `#[path = "../common/programs.rs"] mod programs;`.

// Each binary uses only part of this module, and dead code is an error under clippy.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where `program` is on PATH, if it is installed.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// `faultline ARGS` run to its end, with warnings only in its log.
pub fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env("FAULTLINE_LOG", "warn")
        .output()
        .expect("faultline runs")
}

/// What a finished program wrote on stderr, as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `faultline run` of `scenario` into `out`, quiet, with warnings only in its log and
/// `settle_deadline` (e.g. "30s") for the consistency check.
pub fn faultline_run(scenario: &Path, out: &Path, settle_deadline: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_faultline"));
    command
        .args(["run", "-q", "--settle-deadline", settle_deadline])
        .arg(scenario)
        .arg("-o")
        .arg(out)
        .env("FAULTLINE_LOG", "warn");
    command
}
