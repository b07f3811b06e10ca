//! Integration tests of `system::platform` (outbox relay, idempotent consumer, dead-letter
//! topic) against a real single-broker stack, started once for the whole binary.
//! Set TEST_LOG=1 to see logs.

#![allow(clippy::unwrap_used)]

mod consumer;
mod outbox;
mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use faultline_system::stack::{Stack, StackSpec};
use libtest_mimic::{Arguments, Trial};

type TestFn = fn(
    Arc<Stack>,
)
    -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

fn main() -> ExitCode {
    let args = Arguments::from_args();
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let shared = if args.list {
        Err("listing only".to_string())
    } else {
        runtime
            .block_on(Stack::start(StackSpec {
                ready_timeout: Duration::from_secs(120),
                ..StackSpec::default()
            }))
            .map(Arc::new)
            .map_err(|e| format!("the shared stack did not start: {e}"))
    };
    let tests: [(&'static str, TestFn); 2] = [
        (
            "outbox_publishes_committed_events_in_order_and_never_rolled_back_ones",
            |s| Box::pin(outbox::publishes_committed_events_in_order_and_never_rolled_back_ones(s)),
        ),
        (
            "consumer_applies_each_event_once_and_dead_letters_what_it_cannot_read",
            |s| Box::pin(consumer::applies_each_event_once_and_dead_letters_what_it_cannot_read(s)),
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            let runtime = runtime.clone();
            let shared = shared.clone();
            Trial::test(name, move || {
                let stack = shared.map_err(libtest_mimic::Failed::from)?;
                runtime
                    .block_on(test(stack))
                    .map_err(|e| format!("{e:#}").into())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(stack) = shared {
        if let Ok(stack) = Arc::try_unwrap(stack) {
            runtime.block_on(stack.stop());
        }
    }
    conclusion.exit_code()
}
