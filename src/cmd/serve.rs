//! `faultline serve <service>`: run one service of the reference system in this process
//! until SIGTERM or Ctrl-C (the supervisor of `faultline system up` runs one per replica).

use std::process::ExitCode;

use faultline_system::services::runtime::ServiceError;
use faultline_system::services::serve::{self, ServeArgs};
use tokio_util::sync::CancellationToken;

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "error: {} cannot listen on {}: {error}",
                args.service.name(),
                args.listen
            );
            return Ok(ExitCode::from(2));
        }
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        crate::cmd::terminated().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    match serve::serve(args, listener, shutdown).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            eprintln!("error: {error}");
            // A bad flag value or file is a usage error.
            let invalid = matches!(error, ServiceError::Invalid { .. });
            Ok(ExitCode::from(if invalid { 2 } else { 1 }))
        }
    }
}
