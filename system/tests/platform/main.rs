//! Integration tests of `system::platform` (outbox relay, idempotent consumer, dead-letter
//! topic) against a real single-broker stack, started once for the whole binary and shared
//! concurrently (each test has its own topics and database). Set TEST_LOG=1 to see logs.

#![allow(clippy::unwrap_used)]

#[path = "../common/shared.rs"]
mod shared;

mod consumer;
mod outbox;
mod ownership;
mod support;

use std::process::ExitCode;

use faultline_system::stack::Stack;

fn main() -> ExitCode {
    let tests: Vec<(&'static str, shared::Test<Stack>)> = vec![
        (
            "outbox_publishes_committed_events_in_order_and_never_rolled_back_ones",
            |s| Box::pin(outbox::publishes_committed_events_in_order_and_never_rolled_back_ones(s)),
        ),
        (
            "outbox_publishes_an_event_committed_after_a_later_one",
            |s| Box::pin(outbox::an_event_committed_after_a_later_one_is_still_published(s)),
        ),
        (
            "consumer_applies_each_event_once_and_dead_letters_what_it_cannot_read",
            |s| Box::pin(consumer::applies_each_event_once_and_dead_letters_what_it_cannot_read(s)),
        ),
        (
            "a_consumer_group_member_knows_when_it_owns_every_partition",
            |s| Box::pin(ownership::a_member_knows_when_it_owns_every_partition(s)),
        ),
    ];
    shared::run_in(shared::Turns::Concurrently, tests)
}
