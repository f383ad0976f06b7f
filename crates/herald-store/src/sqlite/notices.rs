//! SQLite: notices and their steps. Writes go through the one writer connection, so an
//! escalation pass and an acknowledgement take turns as whole transactions: of a racing
//! acknowledgement and due step, whichever commits first wins and the other sees it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    change::ChangeEvent,
    notice::{Acknowledged, Escalation, Notice, NoticeFilter, NoticeId, StepStatus},
    notify::NoticeChannel,
    store::{NoticeStore, StepPlan, StoreError},
    stream::SessionCursor,
    user::UserId,
};
use sqlx::{Row as _, Sqlite, Transaction};
use uuid::Uuid;

use super::{SqliteStore, err, escalate::write_event, from_micros, micros};
use crate::sql::{Adapter as _, streams::CursorBatches};
use crate::{
    decode::{self, notice_columns, step_columns},
    error::missing_as_not_found,
};

/// Acknowledges the pending notices among `candidates` (their ids and creation times) and
/// cancels what they had to come: steps not yet due, and deliveries not yet claimed.
async fn acknowledge(
    tx: &mut Transaction<'_, Sqlite>,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<Acknowledged>, StoreError> {
    let mut acked = Vec::new();
    for id in ids {
        let row = sqlx::query(
            "UPDATE notices SET status = 'acknowledged', acknowledged_at = ?2 WHERE id = ?1 AND status = 'pending' \
             RETURNING created_at",
        )
        .bind(id)
        .bind(micros(now))
        .fetch_optional(&mut **tx)
        .await
        .map_err(err)?;
        let Some(row) = row else { continue };
        let created_at = from_micros(row.try_get("created_at").map_err(err)?)?;
        sqlx::query(
            "UPDATE notice_steps SET status = 'cancelled', reason = 'acknowledged first' \
             WHERE notice_id = ?1 AND status IN ('pending', 'deferred')",
        )
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "UPDATE deliveries SET status = 'cancelled', updated_at = ?2 WHERE status = 'pending' AND id IN \
             (SELECT delivery_id FROM notice_steps WHERE notice_id = ?1 AND status = 'sending')",
        )
        .bind(id)
        .bind(micros(now))
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        sqlx::query(
            "UPDATE notice_steps SET status = 'cancelled', reason = 'acknowledged first' WHERE notice_id = ?1 \
             AND status = 'sending' AND delivery_id IN (SELECT id FROM deliveries WHERE status = 'cancelled')",
        )
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
        acked.push(Acknowledged { id: NoticeId(*id), created_at });
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
        "SELECT id FROM notices WHERE status = 'pending' AND event_offset IS NOT NULL AND event_channel = ?1 \
         AND event_offset <= ?2",
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

impl SqliteStore {
    async fn with_steps(&self, notices: Vec<Notice>) -> Result<Vec<Notice>, StoreError> {
        let mut steps = Vec::new();
        for notice in &notices {
            let rows = sqlx::query(concat!("SELECT ", step_columns!(), " FROM notice_steps WHERE notice_id = ?"))
                .bind(notice.id.0)
                .fetch_all(&self.reader)
                .await
                .map_err(err)?;
            for row in &rows {
                steps.push(decode::notice_step(row)?);
            }
        }
        Ok(decode::with_steps(notices, steps))
    }
}

#[async_trait]
impl NoticeStore for SqliteStore {
    async fn create_notice(&self, notice: &Notice, event: Option<&ChangeEvent>) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        sqlx::query(concat!(
            "INSERT INTO notices (",
            notice_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)"
        ))
        .bind(notice.id.0)
        .bind(notice.user_id.0)
        .bind(&notice.caller)
        .bind(notice.kind.as_str())
        .bind(&notice.title)
        .bind(&notice.body)
        .bind(notice.data.as_ref().map(|d| d.to_string()))
        .bind(notice.urgent)
        .bind(notice.expires_at.map(micros))
        .bind(&notice.idempotency_key)
        .bind(&notice.request_hash)
        .bind(notice.status.as_str())
        .bind(micros(notice.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| missing_as_not_found(e, err))?;
        let mut steps = notice.steps.clone();
        if let Some(event) = event {
            write_event(&mut tx, notice.id, event).await?;
            if let Some(first) = steps.first_mut() {
                first.status = StepStatus::Sent;
                first.sent_at = Some(notice.created_at);
            }
        }
        for (index, step) in steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO notice_steps (notice_id, idx, channel, after_secs, status, due_at, sent_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(notice.id.0)
            .bind(i64::try_from(index).unwrap_or(i64::MAX))
            .bind(step.channel.as_str())
            .bind(i64::from(step.after))
            .bind(step.status.as_str())
            .bind(micros(step.due_at))
            .bind(step.sent_at.map(micros))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        if event.is_some() {
            self.commit(tx).await?;
        } else {
            tx.commit().await.map_err(err)?;
        }
        // A step due at once (other than in-app) is for the scheduler to take now.
        if notice.steps.iter().any(|s| s.channel != NoticeChannel::Realtime && s.due_at <= notice.created_at) {
            self.wake_schedulers();
        }
        Ok(())
    }

    async fn notice(&self, id: NoticeId) -> Result<Option<Notice>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", notice_columns!(), " FROM notices WHERE id = ?"))
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(err)?;
        let notices = row.iter().map(decode::notice).collect::<Result<Vec<_>, _>>()?;
        Ok(self.with_steps(notices).await?.pop())
    }

    async fn notice_by_key(&self, caller: &str, key: &str) -> Result<Option<Notice>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE caller = ? AND idempotency_key = ?"
        ))
        .bind(caller)
        .bind(key)
        .fetch_optional(&self.reader)
        .await
        .map_err(err)?;
        let notices = row.iter().map(decode::notice).collect::<Result<Vec<_>, _>>()?;
        Ok(self.with_steps(notices).await?.pop())
    }

    async fn list_notices(
        &self,
        filter: &NoticeFilter,
        before: Option<NoticeId>,
        limit: u32,
    ) -> Result<Vec<Notice>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR status = ?2) \
             AND (?3 IS NULL OR type = ?3) AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5"
        ))
        .bind(filter.user.map(|u| u.0))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.kind.as_ref().map(|k| k.as_str()))
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        let notices = rows.iter().map(decode::notice).collect::<Result<Vec<_>, _>>()?;
        self.with_steps(notices).await
    }

    async fn inbox(
        &self,
        user: UserId,
        unread: bool,
        before: Option<NoticeId>,
        limit: u32,
    ) -> Result<Vec<Notice>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE user_id = ?1 AND event_offset IS NOT NULL AND (NOT ?2 OR read_at IS NULL) \
             AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
        ))
        .bind(user.0)
        .bind(unread)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(err)?;
        let notices = rows.iter().map(decode::notice).collect::<Result<Vec<_>, _>>()?;
        self.with_steps(notices).await
    }

    async fn read_notices(
        &self,
        user: UserId,
        id: Option<NoticeId>,
        now: DateTime<Utc>,
    ) -> Result<(u64, Vec<Acknowledged>), StoreError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        if let Some(id) = id {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM notices WHERE id = ?1 AND user_id = ?2 AND event_offset IS NOT NULL")
                    .bind(id.0)
                    .bind(user.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
            if found.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        let read = sqlx::query(
            "UPDATE notices SET read_at = ?3 WHERE user_id = ?1 AND (?2 IS NULL OR id = ?2) \
             AND event_offset IS NOT NULL AND read_at IS NULL",
        )
        .bind(user.0)
        .bind(id.map(|i| i.0))
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        let pending: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM notices WHERE user_id = ?1 AND (?2 IS NULL OR id = ?2) AND event_offset IS NOT NULL \
             AND status = 'pending'",
        )
        .bind(user.0)
        .bind(id.map(|i| i.0))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let acked = acknowledge(&mut tx, &pending, now).await?;
        tx.commit().await.map_err(err)?;
        Ok((read, acked))
    }

    async fn escalate_notices(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        plan: &StepPlan<'_>,
    ) -> Result<Escalation, StoreError> {
        self.escalate(now, limit, plan).await
    }

    async fn delete_notices_settled_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM notices WHERE id IN (SELECT id FROM notices WHERE status <> 'pending' AND created_at < ?1 \
             ORDER BY id LIMIT ?2)",
        )
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
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
        let mut reached: BTreeMap<&str, i64> = BTreeMap::new();
        for cursor in cursors {
            let acked: i64 = sqlx::query_scalar(
                "INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, session_id, channel) DO UPDATE \
                 SET acked = max(session_cursors.acked, excluded.acked), updated_at = excluded.updated_at \
                 RETURNING acked",
            )
            .bind(cursor.user.0)
            .bind(cursor.session.as_str())
            .bind(&cursor.channel)
            .bind(cursor.offset)
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
            // Only a person's own stream carries notices.
            if cursor.channel.starts_with("user:") {
                let highest = reached.entry(cursor.channel.as_str()).or_insert(acked);
                *highest = (*highest).max(acked);
            }
        }
        let mut acknowledged = Vec::new();
        for (channel, offset) in reached {
            acknowledged.extend(acknowledge_reached(&mut tx, channel, offset, now).await?);
        }
        tx.commit().await.map_err(err)?;
        Ok(acknowledged)
    }
}
