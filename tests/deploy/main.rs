//! Offline validation of `deploy/` (no cluster and no Docker daemon run here), and the
//! distributed load it deploys.
//!
//! - [`charts`]: `helm lint` and `helm template` of both charts for every values
//!   combination the issue lists; every rendered object checked against the Kubernetes
//!   schemas (kubernetes-validate, pinned version) or its operator's vendored CRD schema
//!   (`deploy/schemas/`); a missing required value fails naming it.
//! - [`drift`]: every port, flag, probe path, environment variable and topic in the chart
//!   and the compose file is what the code uses: the flags parse with the services' own
//!   argument parser, the environment names are those the binary's `--help` lists, the
//!   probe paths answer on the services' operational routes, the topics are
//!   `messages::ALL_TOPICS`.
//! - [`pipelines`]: the compose file parses (`docker-compose config -q`), the GitHub
//!   workflow passes `actionlint`, the GitLab job its JSON schema.
//! - [`distributed`]: `faultline load --worker I/N --start-at` across four processes sends
//!   the single-machine schedule exactly, and bad worker input is exit 2.
//!
//! The tools come from `scripts/setup` (under `~/.cache/faultline/`); a test whose tool is
//! absent says so on stderr and passes without checking, so `make test` still runs on a
//! machine set up before this test existed.

#![allow(clippy::unwrap_used)]

mod charts;
mod distributed;
mod drift;
mod pipelines;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Kubernetes version rendered objects are validated against.
pub const KUBERNETES_VERSION: &str = "1.34.0";

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where scripts/setup installs tools.
fn cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    base.join("faultline")
}

/// A tool at `relative` under the cache (or `override_env`), or `None` after saying that
/// the calling test skips.
pub fn tool(override_env: &str, relative: &str, test: &str) -> Option<PathBuf> {
    let path = std::env::var_os(override_env)
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join(relative));
    if path.is_file() {
        return Some(path);
    }
    eprintln!(
        "SKIPPED {test}: {} not found (run scripts/setup, or set {override_env})",
        path.display()
    );
    None
}

pub fn helm(test: &str) -> Option<PathBuf> {
    tool("FAULTLINE_HELM", "helm-bin", test)
}

/// The Python of the validators' venv (kubernetes-validate, check-jsonschema).
pub fn validators_python(test: &str) -> Option<PathBuf> {
    tool(
        "FAULTLINE_VALIDATORS_PYTHON",
        "deploy-validators/bin/python3",
        test,
    )
}

/// Runs `program args` from the repository root.
pub fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// The output of a command that must succeed, or a panic showing its stderr.
pub fn succeed(program: &Path, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\n{}{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What deploy/tools/check-rendered.py prints for `args`, run by the validators' Python.
pub fn check_rendered(python: &Path, args: &[&str]) -> serde_json::Value {
    let checker = repo().join("deploy/tools/check-rendered.py");
    let mut all = vec![checker.to_str().unwrap()];
    all.extend(args);
    serde_json::from_str(&succeed(python, &all)).unwrap()
}

/// `helm template` of a chart directory, for the Kubernetes version the objects are
/// validated against (a Helm built with `go install` assumes an old one).
pub fn template_args(chart_dir: &str) -> Vec<&str> {
    vec![
        "template",
        "test",
        chart_dir,
        "--kube-version",
        KUBERNETES_VERSION,
    ]
}

/// A chart of deploy/helm rendered with `--set` values, written to a file in `dir`.
pub fn render(helm: &Path, chart: &str, sets: &[&str], dir: &Path) -> PathBuf {
    let chart_dir = format!("deploy/helm/{chart}");
    let mut args = template_args(&chart_dir);
    for set in sets {
        args.extend(["--set", set]);
    }
    let rendered = succeed(helm, &args);
    let path = dir.join(format!("{chart}-{}.yaml", sets.join(",").replace('/', "_")));
    std::fs::write(&path, rendered).unwrap();
    path
}
