//! SQLite: a notice's steps stored a statement at a time, and acknowledgements (by reading, or by
//! a cursor reaching a notice's in-app event) a notice at a time, what they leave to come
//! cancelled with each (the other notice queries are in [`crate::sql::notices`]). Writes go
//! through the one writer connection, so an escalation pass and an acknowledgement take turns as
//! whole transactions: of a racing acknowledgement and due step, whichever commits first wins
//! and the other sees it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use herald_core::{
    notice::{Acknowledged, NoticeId, NoticeStep},
    store::StoreError,
    stream::{SessionCursor, StreamName},
    user::UserId,
};
use sqlx::{Row as _, Sqlite, Transaction};
use uuid::Uuid;

use super::{SqliteStore, err};
use crate::{
    columns::Stamp,
    sql::{notices::NoticeWrites, streams::CursorBatches},
};

/// Acknowledges the pending notices among `ids` and cancels what they had to come: steps not yet due, and deliveries not yet claimed.
async fn acknowledge(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<Acknowledged>, StoreError> {
    let mut acked = Vec::new();
    for id in ids {
        let row = sqlx::query(
            "UPDATE notices SET status = 'acknowledged', acknowledged_at = $2 WHERE id = $1 AND status = 'pending' \
             RETURNING created_at",
        )
        .bind(id)
        .bind(Stamp(now))
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
        let Some(row) = row else { continue };
        let created_at: Stamp = row.try_get("created_at").map_err(err)?;
        sqlx::query(
            "UPDATE notice_steps SET status = 'cancelled', reason = 'acknowledged first' \
             WHERE notice_id = $1 AND status IN ('pending', 'deferred')",
        )
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "UPDATE deliveries SET status = 'cancelled', updated_at = $2 WHERE status = 'pending' AND id IN \
             (SELECT delivery_id FROM notice_steps WHERE notice_id = $1 AND status = 'sending')",
        )
        .bind(id)
        .bind(Stamp(now))
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "UPDATE notice_steps SET status = 'cancelled', reason = 'acknowledged first' WHERE notice_id = $1 \
             AND status = 'sending' AND delivery_id IN (SELECT id FROM deliveries WHERE status = 'cancelled')",
        )
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        acked.push(Acknowledged { id: NoticeId(*id), created_at: created_at.0 });
    }
    Ok(acked)
}

/// In one cursor batch's transaction: acknowledges the pending notices whose in-app event on
/// `channel` is at or below `offset`.
async fn acknowledge_reached(
    tx: &mut Transaction<'_, Sqlite>,
    channel: &str,
    offset: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Acknowledged>, StoreError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM notices WHERE status = 'pending' AND event_offset IS NOT NULL AND event_channel = $1 \
         AND event_offset <= $2",
    )
    .bind(channel)
    .bind(offset)
    .fetch_all(&mut **tx)
    .await
    .map_err(err)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    acknowledge(tx, &ids, now).await
}

impl NoticeWrites for SqliteStore {
    async fn insert_steps(
        tx: &mut Transaction<'_, Sqlite>,
        notice: NoticeId,
        steps: &[NoticeStep],
    ) -> Result<(), StoreError> {
        for (index, step) in steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO notice_steps (notice_id, idx, channel, after_secs, status, due_at, sent_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(notice.0)
            .bind(i64::try_from(index).unwrap_or(i64::MAX))
            .bind(step.channel.as_str())
            .bind(i64::from(step.after))
            .bind(step.status.as_str())
            .bind(Stamp(step.due_at))
            .bind(step.sent_at.map(Stamp))
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        Ok(())
    }

    async fn acknowledge_read(
        tx: &mut Transaction<'_, Sqlite>,
        user: UserId,
        id: Option<NoticeId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError> {
        let pending: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM notices WHERE user_id = $1 AND ($2 IS NULL OR id = $2) AND event_offset IS NOT NULL \
             AND status = 'pending'",
        )
        .bind(user.0)
        .bind(id.map(|i| i.0))
        .fetch_all(&mut **tx)
        .await
        .map_err(err)?;
        acknowledge(tx, &pending, now).await
    }
}

impl CursorBatches for SqliteStore {
    /// One transaction on the writer, a statement per cursor; then the notices each of the
    /// person's own streams reached are acknowledged.
    async fn advance_session_cursors(
        &self,
        cursors: &[SessionCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let mut reached: BTreeMap<String, i64> = BTreeMap::new();
        for cursor in cursors {
            let acked: i64 = sqlx::query_scalar(
                "INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, session_id, channel) DO UPDATE \
                 SET acked = max(session_cursors.acked, excluded.acked), updated_at = excluded.updated_at \
                 RETURNING acked",
            )
            .bind(cursor.user.0)
            .bind(cursor.session.as_str())
            .bind(cursor.stream.to_string())
            .bind(cursor.offset)
            .bind(Stamp(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            // Only a person's own stream carries notices.
            if matches!(cursor.stream, StreamName::User(_)) {
                let highest = reached.entry(cursor.stream.to_string()).or_insert(acked);
                *highest = (*highest).max(acked);
            }
        }
        let mut acknowledged = Vec::new();
        for (stream, offset) in reached {
            acknowledged.extend(acknowledge_reached(&mut tx, &stream, offset, now).await?);
        }
        tx.commit().await.map_err(err)?;
        Ok(acknowledged)
    }
}
