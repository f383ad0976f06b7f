//! The store conformance suite, run on SQLite always and on PostgreSQL when configured.

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let db = herald_testkit::TestStore::sqlite().await;
                herald_testkit::store_suite::$name(db.store.as_ref()).await;
                db.finish().await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let Some(db) = herald_testkit::TestStore::postgres(stringify!($name)).await else { return };
                herald_testkit::store_suite::$name(db.store.as_ref()).await;
                db.finish().await;
            })*
        }
    };
}

store_suite! {
    migrations_are_idempotent_and_ping_answers,
    a_created_user_reads_back_identically,
    unknown_users_are_none,
    a_taken_email_is_a_conflict_naming_its_constraint,
    racing_registrations_of_one_email_store_exactly_one,
    users_list_in_id_order_page_by_page,
    tasks_round_trip_and_stay_with_their_owner,
    tasks_list_by_status_page_by_page,
    task_updates_compare_and_swap_their_version,
    a_failed_write_leaves_neither_row_nor_event,
    deleting_a_task_takes_its_attachments_and_reports_them,
    attachments_belong_to_their_owners_task,
    outbox_events_read_back_in_order_with_every_field,
    published_events_are_pruned_after_retention_and_no_others,
    a_lease_is_held_by_one_holder_until_released_or_expired,
    deliveries_are_created_once_per_source_key,
    only_due_pending_deliveries_are_claimed_earliest_first,
    concurrent_claimers_never_share_a_delivery,
    lapsed_leases_are_rescued_and_stale_reports_change_nothing,
    a_retry_report_returns_the_delivery_to_pending_until_its_next_attempt,
    claims_are_checked_counted_and_settled_with_their_events,
}
