//! Integration tests of `system::stack` against the real components: one single-broker
//! stack is started for the whole binary (libtest-mimic harness, so that it can be stopped
//! after the last test), and the tests share it. Set TEST_LOG=1 to see the stack's logs.

#![allow(clippy::unwrap_used)]

mod errors;
mod kafka_roundtrip;
mod stores;
mod support;

use std::process::ExitCode;
use std::sync::Arc;

use libtest_mimic::{Arguments, Trial};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    support::init_logging();
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
    );
    // Listing the tests must not start anything.
    let shared = if args.list {
        Err("listing only".to_string())
    } else {
        runtime
            .block_on(faultline_system::stack::Stack::start(
                support::single_broker_spec(),
            ))
            .map(Arc::new)
            .map_err(|e| format!("the shared stack did not start: {e}"))
    };

    let mut trials = Vec::new();
    let with_stack = |name: &'static str, test: support::StackTest| {
        let runtime = runtime.clone();
        let shared = shared.clone();
        Trial::test(name, move || {
            let stack = shared.map_err(libtest_mimic::Failed::from)?;
            runtime
                .block_on(test(stack))
                .map_err(|e| format!("{e:#}").into())
        })
    };
    trials.push(with_stack(
        "kafka_ten_thousand_keyed_messages_come_back_in_order_per_partition",
        |s| Box::pin(kafka_roundtrip::ten_thousand_keyed_messages_come_back_in_order(s)),
    ));
    trials.push(with_stack(
        "postgres_round_trip_in_a_database_created_on_request",
        |s| Box::pin(stores::postgres_round_trip_in_a_database_created_on_request(s)),
    ));
    trials.push(with_stack("redis_set_then_get_returns_the_value", |s| {
        Box::pin(stores::redis_set_then_get_returns_the_value(s))
    }));
    trials.push(with_stack(
        "an_unreachable_external_bootstrap_is_a_clear_error",
        |s| {
            Box::pin(errors::an_unreachable_external_bootstrap_is_a_clear_error(
                s,
            ))
        },
    ));
    trials.push(with_stack(
        "a_component_that_cannot_start_is_named_with_its_log",
        |s| {
            Box::pin(errors::a_component_that_cannot_start_is_named_with_its_log(
                s,
            ))
        },
    ));
    let plain = |name: &'static str, test: fn() -> support::PlainTest| {
        let runtime = runtime.clone();
        Trial::test(name, move || {
            runtime
                .block_on(test())
                .map_err(|e| format!("{e:#}").into())
        })
    };
    trials.push(plain(
        "a_taken_port_is_a_clear_error_and_starts_nothing",
        || Box::pin(errors::a_taken_port_is_a_clear_error_and_starts_nothing()),
    ));
    trials.push(plain("a_missing_kafka_cache_tells_to_run_setup", || {
        Box::pin(errors::a_missing_kafka_cache_tells_to_run_setup())
    }));

    let conclusion = libtest_mimic::run(&args, trials);
    if let Ok(stack) = shared {
        match Arc::try_unwrap(stack) {
            Ok(stack) => runtime.block_on(stack.stop()),
            Err(_) => {
                eprintln!("the shared stack is still referenced; it stops when the process exits")
            }
        }
    }
    conclusion.exit_code()
}
