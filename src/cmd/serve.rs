//! `faultline serve <service>`: run one service of the reference system in this process
//! until SIGTERM or Ctrl-C (the supervisor of `faultline system up` runs one per replica).

use std::process::ExitCode;
use std::time::Duration;

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
    let code = match serve::serve(args, listener, shutdown).await {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            // A bad flag value or file is a usage error.
            let invalid = matches!(error, ServiceError::Invalid { .. });
            if invalid {
                2
            } else {
                1
            }
        }
    };
    exit_after(TEARDOWN_GRACE, code);
    Ok(ExitCode::from(code))
}

/// Once `serve` returned, the service has stopped: its requests are answered, its
/// consumers' offsets committed, its relay's sends settled. What is left is the clients'
/// own teardown as the runtime drops them: a Kafka consumer leaving its group, a producer's
/// last flush. That takes milliseconds with a healthy broker, but waits for request
/// timeouts with a slow one; measured before this bound, a service took 7 to 15 s from
/// "stopped" to its exit there. Past the grace the process exits without them (the group
/// then drops the member at its session timeout).
const TEARDOWN_GRACE: Duration = Duration::from_secs(1);

/// Exits the process with `code` after `grace`, unless it has exited by then.
fn exit_after(grace: Duration, code: u8) {
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        tracing::warn!(?grace, "teardown took too long; exiting without it");
        std::process::exit(i32::from(code));
    });
}
