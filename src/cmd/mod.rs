//! One module per subcommand; each turns arguments into library calls and an exit code.

pub mod gate;
pub mod load;
pub mod merge;
pub mod proxy;
pub mod report;
pub mod run;
pub mod serve;
pub mod stack;
pub mod system;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn terminated() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
