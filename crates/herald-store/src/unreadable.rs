//! Rows a worker takes in a batch that cannot be read: decoded one by one, so that one bad row
//! is named as a failure of its record and every other row goes on.

use herald_core::{
    change::Unpublished,
    delivery::Claimed,
    notice::{Notice, NoticeId},
    quarantine::{FailureReason, ItemFailure, Worker, with_causes},
    store::StoreError,
};
use sqlx::{FromRow, Row};
use uuid::Uuid;

use crate::decode::{self, DeliveryCols, NoticeCols, OutboxCols, StepCols};

/// The failure of a record that could not be read.
pub(crate) fn unreadable(worker: Worker, record: String, err: &StoreError) -> ItemFailure {
    ItemFailure::new(worker, record, FailureReason::Unreadable, with_causes(err))
}

/// The id in column `column` of a row that did not decode, as a record name.
fn id_of<'r, R: Row>(row: &'r R, column: &'static str) -> String
where
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    row.try_get::<Uuid, _>(column).map(|id| id.to_string()).unwrap_or_default()
}

/// Claimed delivery rows: those that decode, and the others as failures of their ids. A row
/// whose very id cannot be read is named with an empty record (it stays claimed until its lease
/// lapses, and is logged).
pub(crate) fn claimed<'r, R: Row>(rows: &'r [R]) -> Claimed
where
    DeliveryCols: FromRow<'r, R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    let mut claimed = Claimed::default();
    for row in rows {
        match decode::delivery(row) {
            Ok(d) => claimed.deliveries.push(d),
            Err(e) => claimed.unreadable.push(unreadable(Worker::Scheduler, id_of(row, "id"), &e)),
        }
    }
    claimed
}

/// Notices with their steps, from their rows and their steps' rows; a notice whose row or one of
/// whose steps cannot be read is left out and named in `failed`.
pub(crate) fn notices_with_steps<'r, R: Row>(
    notice_rows: &'r [R],
    step_rows: &'r [R],
    failed: &mut Vec<ItemFailure>,
) -> Vec<Notice>
where
    NoticeCols: FromRow<'r, R>,
    StepCols: FromRow<'r, R>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    let mut bad: Vec<(String, StoreError)> = Vec::new();
    let mut steps = Vec::with_capacity(step_rows.len());
    for row in step_rows {
        match decode::notice_step(row) {
            Ok(step) => steps.push(step),
            Err(e) => bad.push((id_of(row, "notice_id"), e)),
        }
    }
    let mut notices = Vec::with_capacity(notice_rows.len());
    for row in notice_rows {
        match decode::notice(row) {
            Ok(notice) if !bad.iter().any(|(id, _)| *id == notice.id.to_string()) => notices.push(notice),
            Ok(_) => {}
            Err(e) => bad.push((id_of(row, "id"), e)),
        }
    }
    failed.extend(bad.iter().map(|(id, e)| unreadable(Worker::Escalation, id.clone(), e)));
    let steps: Vec<(NoticeId, usize, _)> = steps;
    decode::with_steps(notices, steps)
}

/// Unpublished outbox rows in order; a row that cannot be read holds back its whole stream in
/// this batch (named by the stream in `unreadable`), so no stream skips an offset.
pub(crate) fn unpublished<'r, R: Row>(rows: &'r [R]) -> Unpublished
where
    OutboxCols: FromRow<'r, R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    let mut batch = Unpublished::default();
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        match decode::outbox_event(row) {
            Ok(event) => events.push(event),
            Err(e) => {
                let stream = row.try_get::<String, _>("channel").unwrap_or_default();
                if !batch.unreadable.iter().any(|f| f.record == stream) {
                    batch.unreadable.push(unreadable(Worker::Relay, stream, &e));
                }
            }
        }
    }
    events.retain(|e| !batch.unreadable.iter().any(|f| f.record == e.event.stream.to_string()));
    batch.events = events;
    batch
}
