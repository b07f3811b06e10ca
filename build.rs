//! Stamps the `faultline` binary with the commit it was built from
//! (`FAULTLINE_GIT_COMMIT`, read with `option_env!`), so that a run's results and the
//! claims report name the code that measured them, not whichever checkout the binary
//! happens to be run from later. A `FAULTLINE_GIT_COMMIT` given to the build wins;
//! outside a git checkout (a source archive) nothing is stamped.
//!
//! The stamp is HEAD's commit when the binary was built; uncommitted edits are not
//! marked, since tracking them would rerun this script on every file of the workspace.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FAULTLINE_GIT_COMMIT");
    if std::env::var_os("FAULTLINE_GIT_COMMIT").is_some() {
        return;
    }
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    // Build again when HEAD moves: HEAD itself (a checkout), the branch it names (a
    // commit), and packed-refs (where that branch may live). Only files that exist:
    // cargo reruns on every build for a missing one.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]).map(PathBuf::from) {
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rustc-env=FAULTLINE_GIT_COMMIT={commit}");
}

/// A git command's trimmed output, `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}
