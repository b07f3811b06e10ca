//! `faultline proxy --listen ADDR --upstream HOST:PORT [faults]`: the TCP fault proxy on
//! its own, in front of any TCP service. The work is `faultline_chaos::cli::run_proxy`.

use std::process::ExitCode;

use faultline_chaos::cli;

/// Runs the proxy until Ctrl-C or SIGTERM; a listen address that cannot be bound or an
/// upstream that does not resolve is an error naming it.
pub async fn run(args: cli::ProxyArgs) -> anyhow::Result<ExitCode> {
    cli::run_proxy(args).await?;
    Ok(ExitCode::SUCCESS)
}
