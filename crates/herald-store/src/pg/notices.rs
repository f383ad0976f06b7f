//! PostgreSQL: notices and their steps.
//!
//! An escalation pass takes due steps with their notices `FOR UPDATE … SKIP LOCKED`, so passes of
//! several schedulers never take one notice twice, and an acknowledgement (which updates the
//! notice row first) waits for a pass holding it, or the pass skips a notice being acknowledged.
//! Steps whose deliveries reported, and notices whose every step ended, are settled by separate
//! statements, never while a notice row is held: no pass waits on an acknowledgement that waits
//! on it.

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
use sqlx::{Postgres, Row as _, types::Json};
use uuid::Uuid;

use super::{PgStore, err, escalate::write_event};
use crate::sql::{Adapter as _, streams::CursorBatches};
use crate::{
    decode::{self, notice_columns, step_columns},
    error::missing_as_not_found,
};

/// The statement that cancels what an acknowledgement leaves to come of the notices `acked`
/// (a CTE of `id`s): steps not yet due, and deliveries of steps not yet claimed by a sender.
/// Appended to a statement that defines `acked`; `$now` is the time parameter.
macro_rules! cancel_rest {
    ($now:literal) => {
        concat!(
            ", rest AS (UPDATE notice_steps SET status = 'cancelled', reason = 'acknowledged first' \
             WHERE notice_id IN (SELECT id FROM acked) AND status IN ('pending', 'deferred')), \
             held AS (UPDATE deliveries SET status = 'cancelled', updated_at = ",
            $now,
            " WHERE id IN (SELECT delivery_id FROM notice_steps WHERE notice_id IN (SELECT id FROM acked) \
             AND status = 'sending') AND status = 'pending' RETURNING id), \
             held_steps AS (UPDATE notice_steps SET status = 'cancelled', reason = 'acknowledged first' \
             WHERE delivery_id IN (SELECT id FROM held) AND status = 'sending') \
             SELECT id, created_at FROM acked"
        )
    };
}

/// Reads acknowledged notices from a statement ending in [`cancel_rest`].
fn acknowledged(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Acknowledged>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(Acknowledged {
                id: NoticeId(row.try_get("id").map_err(err)?),
                created_at: row.try_get("created_at").map_err(err)?,
            })
        })
        .collect()
}

impl PgStore {
    async fn load_steps(&self, notices: Vec<Notice>) -> Result<Vec<Notice>, StoreError> {
        if notices.is_empty() {
            return Ok(notices);
        }
        let ids: Vec<Uuid> = notices.iter().map(|n| n.id.0).collect();
        let rows = sqlx::query(concat!("SELECT ", step_columns!(), " FROM notice_steps WHERE notice_id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let steps = rows.iter().map(decode::notice_step).collect::<Result<Vec<_>, _>>()?;
        Ok(decode::with_steps(notices, steps))
    }

    async fn notices_where(
        &self,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<Notice>, StoreError> {
        let rows = query.fetch_all(&self.pool).await.map_err(err)?;
        let notices = rows.iter().map(decode::notice).collect::<Result<Vec<_>, _>>()?;
        self.load_steps(notices).await
    }
}

#[async_trait]
impl NoticeStore for PgStore {
    async fn create_notice(&self, notice: &Notice, event: Option<&ChangeEvent>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(concat!(
            "INSERT INTO notices (",
            notice_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL, NULL, NULL)"
        ))
        .bind(notice.id.0)
        .bind(notice.user_id.0)
        .bind(&notice.caller)
        .bind(notice.kind.as_str())
        .bind(&notice.title)
        .bind(&notice.body)
        .bind(notice.data.as_ref().map(Json))
        .bind(notice.urgent)
        .bind(notice.expires_at)
        .bind(&notice.idempotency_key)
        .bind(&notice.request_hash)
        .bind(notice.status.as_str())
        .bind(notice.created_at)
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
        let indexes: Vec<i32> = (0..steps.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect();
        let channels: Vec<&str> = steps.iter().map(|s| s.channel.as_str()).collect();
        let afters: Vec<i32> = steps.iter().map(|s| i32::try_from(s.after).unwrap_or(i32::MAX)).collect();
        let statuses: Vec<&str> = steps.iter().map(|s| s.status.as_str()).collect();
        let due: Vec<DateTime<Utc>> = steps.iter().map(|s| s.due_at).collect();
        let sent: Vec<Option<DateTime<Utc>>> = steps.iter().map(|s| s.sent_at).collect();
        sqlx::query(
            "INSERT INTO notice_steps (notice_id, idx, channel, after_secs, status, due_at, sent_at) \
             SELECT $1, i, c, a, s, d, t FROM unnest($2::int[], $3::text[], $4::int[], $5::text[], $6::timestamptz[], \
             $7::timestamptz[]) AS x(i, c, a, s, d, t)",
        )
        .bind(notice.id.0)
        .bind(&indexes)
        .bind(&channels)
        .bind(&afters)
        .bind(&statuses)
        .bind(&due)
        .bind(&sent)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
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
        let query = sqlx::query(concat!("SELECT ", notice_columns!(), " FROM notices WHERE id = $1")).bind(id.0);
        Ok(self.notices_where(query).await?.pop())
    }

    async fn notice_by_key(&self, caller: &str, key: &str) -> Result<Option<Notice>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE caller = $1 AND idempotency_key = $2"
        ))
        .bind(caller)
        .bind(key);
        Ok(self.notices_where(query).await?.pop())
    }

    async fn list_notices(
        &self,
        filter: &NoticeFilter,
        before: Option<NoticeId>,
        limit: u32,
    ) -> Result<Vec<Notice>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR type = $3) AND ($4::uuid IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
        ))
        .bind(filter.user.map(|u| u.0))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.kind.as_ref().map(|k| k.as_str()))
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit));
        self.notices_where(query).await
    }

    async fn inbox(
        &self,
        user: UserId,
        unread: bool,
        before: Option<NoticeId>,
        limit: u32,
    ) -> Result<Vec<Notice>, StoreError> {
        let query = sqlx::query(concat!(
            "SELECT ",
            notice_columns!(),
            " FROM notices WHERE user_id = $1 AND event_offset IS NOT NULL AND (NOT $2 OR read_at IS NULL) \
             AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(user.0)
        .bind(unread)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit));
        self.notices_where(query).await
    }

    async fn read_notices(
        &self,
        user: UserId,
        id: Option<NoticeId>,
        now: DateTime<Utc>,
    ) -> Result<(u64, Vec<Acknowledged>), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        if let Some(id) = id {
            let found: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM notices WHERE id = $1 AND user_id = $2 AND event_offset IS NOT NULL")
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
            "UPDATE notices SET read_at = $3 WHERE user_id = $1 AND ($2::uuid IS NULL OR id = $2) \
             AND event_offset IS NOT NULL AND read_at IS NULL",
        )
        .bind(user.0)
        .bind(id.map(|i| i.0))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        let rows = sqlx::query(concat!(
            "WITH acked AS (UPDATE notices SET status = 'acknowledged', acknowledged_at = $3 WHERE user_id = $1 \
             AND ($2::uuid IS NULL OR id = $2) AND event_offset IS NOT NULL AND status = 'pending' \
             RETURNING id, created_at)",
            cancel_rest!("$3")
        ))
        .bind(user.0)
        .bind(id.map(|i| i.0))
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let acked = acknowledged(rows)?;
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
            "DELETE FROM notices WHERE id IN (SELECT id FROM notices WHERE status <> 'pending' AND created_at < $1 \
             ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }
}

impl CursorBatches for PgStore {
    /// One statement for the batch, one row per cursor (the highest offset wins), sorted so that
    /// concurrent batches lock rows in one order. The same statement acknowledges the pending
    /// notices whose in-app event a cursor reached, and cancels what they had to come.
    async fn advance_session_cursors(
        &self,
        cursors: &[SessionCursor],
        now: DateTime<Utc>,
    ) -> Result<Vec<Acknowledged>, StoreError> {
        let mut highest: BTreeMap<(Uuid, &str, &str), i64> = BTreeMap::new();
        for c in cursors {
            let offset = highest.entry((c.user.0, c.session.as_str(), c.channel.as_str())).or_insert(c.offset);
            *offset = (*offset).max(c.offset);
        }
        let users: Vec<Uuid> = highest.keys().map(|k| k.0).collect();
        let sessions: Vec<&str> = highest.keys().map(|k| k.1).collect();
        let channels: Vec<&str> = highest.keys().map(|k| k.2).collect();
        let offsets: Vec<i64> = highest.values().copied().collect();
        let rows = sqlx::query(concat!(
            "WITH moved AS (INSERT INTO session_cursors (user_id, session_id, channel, acked, updated_at) \
             SELECT u, s, c, o, $5 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[]) AS t(u, s, c, o) \
             ON CONFLICT (user_id, session_id, channel) DO UPDATE \
             SET acked = greatest(session_cursors.acked, excluded.acked), updated_at = excluded.updated_at \
             RETURNING channel, acked), \
             reached AS (SELECT channel, max(acked) AS acked FROM moved GROUP BY channel), \
             acked AS (UPDATE notices n SET status = 'acknowledged', acknowledged_at = $5 FROM reached r \
             WHERE n.status = 'pending' AND n.event_offset IS NOT NULL AND n.event_channel = r.channel \
             AND n.event_offset <= r.acked RETURNING n.id, n.created_at)",
            cancel_rest!("$5")
        ))
        .bind(&users)
        .bind(&sessions)
        .bind(&channels)
        .bind(&offsets)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        acknowledged(rows)
    }
}
