//! Integration tests of `system::stack` against the real components: one single-broker
//! stack is started for the whole binary and the tests share it, concurrently (each uses
//! its own topic, database or key). Set TEST_LOG=1 to see the stack's logs.

#![allow(clippy::unwrap_used)]

#[path = "../common/shared.rs"]
mod shared;

mod errors;
mod kafka_roundtrip;
mod stores;

use std::process::ExitCode;

use faultline_system::stack::Stack;

fn main() -> ExitCode {
    let tests: Vec<(&'static str, shared::Test<Stack>)> = vec![
        (
            "kafka_ten_thousand_keyed_messages_come_back_in_order_per_partition",
            |s| Box::pin(kafka_roundtrip::ten_thousand_keyed_messages_come_back_in_order(s)),
        ),
        (
            "postgres_round_trip_in_a_database_created_on_request",
            |s| Box::pin(stores::postgres_round_trip_in_a_database_created_on_request(s)),
        ),
        ("redis_set_then_get_returns_the_value", |s| {
            Box::pin(stores::redis_set_then_get_returns_the_value(s))
        }),
        ("an_unreachable_external_bootstrap_is_a_clear_error", |s| {
            Box::pin(errors::an_unreachable_external_bootstrap_is_a_clear_error(
                s,
            ))
        }),
        ("a_component_that_cannot_start_is_named_with_its_log", |s| {
            Box::pin(errors::a_component_that_cannot_start_is_named_with_its_log(
                s,
            ))
        }),
        // These two start stacks of their own that must fail; the shared one is unused.
        ("a_taken_port_is_a_clear_error_and_starts_nothing", |_| {
            Box::pin(errors::a_taken_port_is_a_clear_error_and_starts_nothing())
        }),
        ("a_missing_kafka_cache_tells_to_run_setup", |_| {
            Box::pin(errors::a_missing_kafka_cache_tells_to_run_setup())
        }),
    ];
    shared::run_in(shared::Turns::Concurrently, tests)
}
