//! Integration tests of the reference system against the real stack: one `System` (every
//! service a real process behind the gateway) is started for the whole binary, and the
//! tests run one after another on it, since some change the payments service's behaviour.
//! Set TEST_LOG=1 to see the supervisor's logs; each service's log is in the stack's data
//! directory under `services/`.

#![allow(clippy::unwrap_used)]

mod abuse;
mod api;
mod checker;
mod contract;
mod events;
mod faults;
mod journeys;
#[path = "../common/programs.rs"]
mod programs;
mod saga;
mod security;
mod support;

#[path = "../../system/tests/common/shared.rs"]
mod shared;

use std::process::ExitCode;

use support::TestFn;

fn main() -> ExitCode {
    let tests: Vec<(&'static str, TestFn)> = vec![
        (
            "open_model_journeys_keep_a_ledger_that_matches_the_orders",
            |h| Box::pin(journeys::open_model_journeys_keep_a_ledger_that_matches_the_orders(h)),
        ),
        ("shoppers_log_in_once_and_login_journeys_every_time", |h| {
            Box::pin(journeys::shoppers_log_in_once_and_login_journeys_every_time(h))
        }),
        ("goose_drives_the_same_journeys", |h| {
            Box::pin(journeys::goose_drives_the_same_journeys(h))
        }),
        (
            "happy_path_through_the_gateway_completes_and_the_view_shows_it",
            |h| Box::pin(saga::happy_path_completes_and_the_view_shows_it(h)),
        ),
        (
            "a_payment_failure_cancels_releases_the_reservation_and_leaves_no_charge",
            |h| Box::pin(saga::payment_failure_cancels_and_releases(h)),
        ),
        (
            "two_hundred_concurrent_orders_for_fifty_in_stock_complete_exactly_fifty",
            |h| Box::pin(saga::concurrent_orders_never_oversell(h)),
        ),
        ("the_same_idempotency_key_twice_creates_one_order", |h| {
            Box::pin(saga::idempotency_key_creates_one_order(h))
        }),
        (
            "orders_past_the_pending_limit_are_shed_with_retry_after",
            |h| Box::pin(saga::orders_past_the_pending_limit_are_shed_with_retry_after(h)),
        ),
        (
            "missing_forged_or_expired_tokens_are_refused_with_401",
            |h| Box::pin(api::bad_tokens_are_refused(h)),
        ),
        (
            "public_catalogue_reads_are_served_from_the_gateway_cache",
            |h| Box::pin(api::public_catalogue_reads_are_served_from_the_gateway_cache(h)),
        ),
        ("another_users_order_is_not_found", |h| {
            Box::pin(api::another_users_order_is_not_found(h))
        }),
        (
            "malformed_json_and_wrong_types_are_400_naming_the_field",
            |h| Box::pin(api::bad_bodies_are_400_naming_the_field(h)),
        ),
        ("over_the_rate_limit_is_429_with_retry_after", |h| {
            Box::pin(api::rate_limit_answers_429(h))
        }),
        (
            "an_undecodable_event_is_dead_lettered_and_the_projector_goes_on",
            |h| Box::pin(events::undecodable_event_is_dead_lettered(h)),
        ),
        (
            "ingest_acknowledges_a_batch_only_once_kafka_has_every_event",
            |h| Box::pin(events::ingest_acknowledges_only_what_kafka_has(h)),
        ),
        (
            "notifications_reach_the_webhook_and_are_dead_lettered_after_three_failed_attempts",
            |h| Box::pin(events::notifications_reach_the_webhook_and_dead_letter_after_retries(h)),
        ),
        (
            "notifications_time_each_event_they_handle_on_metrics",
            |h| Box::pin(events::notifications_time_each_event_they_handle(h)),
        ),
        (
            "the_gateway_serves_the_openapi_document_of_the_public_api",
            |h| Box::pin(api::openapi_document_lists_the_public_api(h)),
        ),
        ("every_service_metrics_pass_promtool", |h| {
            Box::pin(api::metrics_pass_promtool(h))
        }),
        (
            "the_checker_finds_orders_through_the_gateway_settled_and_consistent",
            |h| Box::pin(checker::orders_through_the_gateway_settle_and_are_consistent(h)),
        ),
        (
            "the_checker_counts_an_acknowledged_order_never_written_as_lost",
            |h| Box::pin(checker::an_acknowledged_order_never_written_is_lost(h)),
        ),
        (
            "the_checker_does_not_count_an_indeterminate_write_never_made_as_lost",
            |h| Box::pin(checker::an_indeterminate_write_never_made_is_not_lost(h)),
        ),
        (
            "the_checker_counts_tampered_databases_as_duplicated_or_inconsistent",
            |h| Box::pin(checker::tampered_databases_are_counted_as_duplicated_or_inconsistent(h)),
        ),
        ("orders_principal_cannot_produce_to_inventory_topics", |h| {
            Box::pin(security::orders_principal_cannot_produce_to_inventory_topics(h))
        }),
        ("a_consumer_in_a_group_not_its_own_is_refused", |h| {
            Box::pin(security::a_consumer_in_a_group_not_its_own_is_refused(h))
        }),
        (
            "anonymous_and_wrong_password_kafka_clients_are_refused",
            |h| {
                Box::pin(security::anonymous_and_wrong_password_clients_are_refused(
                    h,
                ))
            },
        ),
        ("orders_role_cannot_connect_to_the_payments_database", |h| {
            Box::pin(security::orders_role_cannot_connect_to_the_payments_database(h))
        }),
        (
            "metrics_and_admin_are_not_reachable_through_the_gateway",
            |h| Box::pin(security::metrics_and_admin_are_not_reachable_through_the_gateway(h)),
        ),
        (
            "orders_killed_mid_saga_restarts_and_every_saga_ends_once",
            |h| Box::pin(faults::orders_killed_mid_saga(h)),
        ),
        ("a_100_mb_body_is_413_before_it_is_sent", |h| {
            Box::pin(abuse::a_100_mb_body_is_413_before_it_is_sent(h))
        }),
        (
            "ten_thousand_forged_tokens_are_401_and_the_services_never_see_them",
            |h| {
                Box::pin(
                    abuse::ten_thousand_forged_tokens_are_401_and_the_services_never_see_them(h),
                )
            },
        ),
        ("slow_loris_connections_do_not_stop_normal_clients", |h| {
            Box::pin(abuse::slow_loris_connections_do_not_stop_normal_clients(h))
        }),
        ("the_gateway_serves_tls13_only_with_its_throwaway_ca", |h| {
            Box::pin(abuse::the_gateway_serves_tls13_only_with_its_throwaway_ca(
                h,
            ))
        }),
        // Last: its thousands of generated orders would take stock the others count on.
        (
            "the_api_keeps_its_openapi_contract_under_schemathesis",
            |h| Box::pin(contract::the_api_keeps_its_openapi_contract(h)),
        ),
    ];
    shared::run(tests)
}
