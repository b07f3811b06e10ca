//! The compose file parses as Docker Compose reads it, and the CI pipelines pass their
//! linters: `actionlint` for the GitHub workflow, GitLab's CI schema for the GitLab job.

use std::process::Command;

use crate::{repo, succeed, tool};

#[test]
fn the_compose_file_parses_and_needs_its_secrets() {
    let Some(compose) = tool(
        "FAULTLINE_DOCKER_COMPOSE",
        "docker-compose-1.29.2/bin/docker-compose",
        "compose",
    ) else {
        return;
    };
    let config = |with_secrets: bool| {
        let mut command = Command::new(&compose);
        command
            .args(["--file", "deploy/compose.yaml", "config", "--quiet"])
            .current_dir(repo())
            .env_remove("POSTGRES_PASSWORD")
            .env_remove("FAULTLINE_JWT_SECRET");
        if with_secrets {
            command.env("POSTGRES_PASSWORD", "compose-test").env(
                "FAULTLINE_JWT_SECRET",
                "compose-test-secret-of-at-least-32-bytes",
            );
        }
        command.output().unwrap()
    };
    let output = config(true);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = config(false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "compose parsed without its secrets"
    );
    assert!(stderr.contains("POSTGRES_PASSWORD"), "{stderr}");
}

#[test]
fn the_github_workflow_passes_actionlint() {
    let Some(actionlint) = tool("FAULTLINE_ACTIONLINT", "actionlint-bin", "actionlint") else {
        return;
    };
    succeed(&actionlint, &["-no-color", "deploy/ci/github-actions.yml"]);
}

#[test]
fn the_gitlab_job_passes_gitlabs_ci_schema() {
    let Some(check) = tool(
        "FAULTLINE_CHECK_JSONSCHEMA",
        "deploy-validators/bin/check-jsonschema",
        "gitlab-ci schema",
    ) else {
        return;
    };
    let schema = [
        "--builtin-schema",
        "vendor.gitlab-ci",
        "deploy/ci/gitlab-ci.yml",
    ];
    succeed(&check, &schema);
}
