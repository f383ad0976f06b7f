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
    a_notice_and_its_in_app_first_step_are_stored_together,
    an_escalation_pass_sends_skips_and_settles_due_steps,
    quiet_hours_defer_a_step_and_expiry_ends_the_notice,
    a_cursor_past_the_event_or_reading_acknowledges_and_cancels_the_rest,
    an_acknowledgement_racing_a_due_step_wins_or_loses_whole,
    migrations_are_idempotent_and_ping_answers,
    a_created_user_reads_back_identically,
    unknown_users_are_none,
    a_taken_email_is_a_conflict_naming_its_constraint,
    the_only_admin_is_neither_demoted_nor_deleted,
    two_admins_removing_each_other_at_once_leave_one,
    deleting_an_account_takes_what_is_theirs_and_cancels_their_deliveries,
    racing_registrations_of_one_email_store_exactly_one,
    users_list_in_id_order_page_by_page,
    a_profile_changes_only_the_fields_given_and_clears_with_none,
    preferences_default_until_set_and_read_back_whole,
    api_keys_are_found_by_hash_listed_and_revoked_once,
    tasks_round_trip_and_stay_with_their_owner,
    tasks_list_by_status_page_by_page,
    task_updates_compare_and_swap_their_version,
    a_failed_write_leaves_neither_row_nor_event,
    concurrent_task_creations_get_gap_free_offsets,
    a_bad_task_among_concurrent_creations_fails_alone,
    deleting_a_task_takes_its_attachments_and_reports_them,
    attachments_belong_to_their_owners_task,
    outbox_events_read_back_in_order_with_every_field,
    published_events_are_pruned_after_retention_and_no_others,
    a_channel_stream_reads_by_offset_and_reports_its_head,
    trimming_keeps_the_newest_published_events_of_each_channel,
    session_cursors_are_set_advanced_and_expired,
    writers_of_many_channels_in_any_order_never_deadlock,
    a_lease_is_held_by_one_holder_until_released_or_expired,
    deliveries_are_created_once_per_source_key,
    only_due_pending_deliveries_are_claimed_earliest_first,
    concurrent_claimers_never_share_a_delivery,
    lapsed_leases_are_rescued_and_stale_reports_change_nothing,
    a_retry_report_returns_the_delivery_to_pending_until_its_next_attempt,
    claims_are_checked_counted_and_settled_with_their_events,
    clients_round_trip_and_a_taken_phone_names_its_constraint,
    inserting_clients_skips_taken_phones_and_repeats_in_the_batch,
    inserting_a_large_batch_of_clients_stores_every_new_one,
    clients_list_in_id_order_page_by_page,
    mailings_round_trip_and_list_by_status_page_by_page,
    mailing_updates_apply_only_from_the_expected_status,
    due_mailings_are_scheduled_ones_whose_start_passed_earliest_first,
    starting_a_mailing_creates_one_message_per_matching_client,
    a_windowed_mailing_plans_each_clients_first_attempt_by_zone,
    a_mailing_starts_once_and_only_when_scheduled,
    a_mailing_is_made_chunk_by_chunk_once_per_client,
    updating_a_running_mailing_moves_its_live_messages,
    cancelling_a_mailing_cancels_its_pending_messages,
    deleting_a_client_cancels_its_pending_messages,
    running_mailings_finish_when_no_message_is_live,
    message_counts_add_up_by_status,
    the_timeline_counts_every_change_of_a_mailings_messages,
    messages_list_in_id_order_page_by_page_and_by_status,
    overlapping_events_of_one_owner_are_refused,
    periods_list_what_overlaps_them_by_start,
    reminders_follow_their_event,
    events_past_retention_are_deleted,
    a_users_webhook_is_set_read_and_cleared,
    a_webhooks_secret_is_given_once_kept_across_urls_and_rotated,
    a_room_is_created_with_its_owner_as_first_member,
    a_member_is_added_once_and_unknown_ones_are_not_found,
    a_removed_member_is_gone_once_and_their_messages_stay,
    room_events_take_consecutive_offsets_on_the_room_channel,
    messages_are_for_members_only_and_list_newest_first_page_by_page,
    a_users_rooms_list_in_id_order_page_by_page,
}
