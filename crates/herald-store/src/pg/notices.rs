//! PostgreSQL: notices and their steps.
//!
//! An escalation pass takes due steps with their notices `FOR UPDATE … SKIP LOCKED`, so passes of
//! several schedulers never take one notice twice, and an acknowledgement (which updates the
//! notice row first) waits for a pass holding it, or the pass skips a notice being acknowledged.
//! Steps whose deliveries reported, and notices whose every step ended, are settled by separate
//! statements, never while a notice row is held: no pass waits on an acknowledgement that waits
//! on it.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    change::ChangeEvent,
    delivery::DeliveryId,
    notice::{Acknowledged, DueStep, Escalation, Notice, NoticeFilter, NoticeId, NoticeStatus, StepMove, StepStatus},
    notify::NoticeChannel,
    store::{NoticeStore, StepPlan, StoreError},
    user::UserId,
};
use sqlx::{Postgres, Row as _, Transaction, types::Json};
use uuid::Uuid;

use super::{
    PgStore,
    deliveries::{OnTaken, insert_deliveries},
    err,
    outbox::insert_events,
};
use crate::{
    decode::{self, notice_columns, step_columns},
    error::{corrupt, missing_as_not_found},
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
pub(super) use cancel_rest;

/// Reads acknowledged notices from a statement ending in [`cancel_rest`].
pub(super) fn acknowledged(rows: Vec<sqlx::postgres::PgRow>) -> Result<Vec<Acknowledged>, StoreError> {
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
        let mut pass = Escalation::default();
        let mut touched: HashSet<Uuid> = HashSet::new();
        // Steps whose deliveries reported: a statement of its own, holding no notice.
        let rows = sqlx::query(
            "UPDATE notice_steps s SET status = CASE d.status WHEN 'sent' THEN 'sent' WHEN 'cancelled' THEN 'cancelled' \
             WHEN 'expired' THEN 'expired' ELSE 'failed' END, sent_at = d.sent_at, \
             reason = CASE WHEN d.status IN ('failed', 'expired') THEN d.last_error ELSE s.reason END \
             FROM deliveries d WHERE s.status = 'sending' AND d.id = s.delivery_id \
             AND d.status IN ('sent', 'failed', 'expired', 'cancelled') RETURNING s.notice_id, s.channel, s.status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        for row in &rows {
            touched.insert(row.try_get("notice_id").map_err(err)?);
            pass.steps
                .push(decode::step_change(row.try_get("channel").map_err(err)?, row.try_get("status").map_err(err)?)?);
        }

        let mut tx = self.pool.begin().await.map_err(err)?;
        let due = sqlx::query(
            "SELECT s.notice_id, s.idx, u.email, u.phone, u.timezone, u.preferences, u.webhook_url \
             FROM notice_steps s JOIN notices n ON n.id = s.notice_id JOIN users u ON u.id = n.user_id \
             WHERE s.status IN ('pending', 'deferred') AND s.due_at <= $1 AND n.status = 'pending' \
             ORDER BY s.due_at, s.notice_id, s.idx LIMIT $2 FOR UPDATE OF s, n SKIP LOCKED",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        pass.full = due.len() >= limit as usize;
        let mut work = Vec::with_capacity(due.len());
        for row in &due {
            let id: Uuid = row.try_get("notice_id").map_err(err)?;
            let index: i32 = row.try_get("idx").map_err(err)?;
            let reach = decode::reach(
                row.try_get("email").map_err(err)?,
                row.try_get("phone").map_err(err)?,
                row.try_get("timezone").map_err(err)?,
                row.try_get("preferences").map_err(err)?,
                row.try_get("webhook_url").map_err(err)?,
            )?;
            work.push((id, usize::try_from(index).map_err(|e| corrupt("notice step index", e))?, reach));
        }
        let ids: Vec<Uuid> = work.iter().map(|(id, ..)| *id).collect();
        let notices = {
            let rows = sqlx::query(concat!("SELECT ", notice_columns!(), " FROM notices WHERE id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
            let notices = rows.iter().map(decode::notice).collect::<Result<Vec<_>, _>>()?;
            let rows = sqlx::query(concat!("SELECT ", step_columns!(), " FROM notice_steps WHERE notice_id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
            let steps = rows.iter().map(decode::notice_step).collect::<Result<Vec<_>, _>>()?;
            decode::with_steps(notices, steps)
        };
        let mut notices: std::collections::HashMap<Uuid, Notice> = notices.into_iter().map(|n| (n.id.0, n)).collect();
        let mut wrote_events = false;
        for (id, index, reach) in work {
            let Some(notice) = notices.get_mut(&id) else { continue };
            // An earlier step of this pass expired the notice.
            if notice.status != NoticeStatus::Pending || notice.steps.get(index).is_none_or(|s| s.status.is_final()) {
                continue;
            }
            touched.insert(id);
            let due = DueStep { notice: notice.clone(), index, reach };
            let index_db = i32::try_from(index).unwrap_or(i32::MAX);
            let step_move = plan(&due);
            match &step_move {
                StepMove::InApp(event) => {
                    write_event(&mut tx, notice.id, event).await?;
                    set_step(&mut tx, id, index_db, StepStatus::Sent, Some(now), None, None).await?;
                    wrote_events = true;
                }
                StepMove::Dispatch(delivery) => {
                    let delivery_id = delivery.id;
                    insert_deliveries(&mut tx, std::slice::from_ref(delivery), OnTaken::Skip).await?;
                    set_step(&mut tx, id, index_db, StepStatus::Sending, None, None, Some(delivery_id)).await?;
                }
                StepMove::Skip(reason) => {
                    set_step(&mut tx, id, index_db, StepStatus::Skipped, None, Some(reason), None).await?;
                }
                StepMove::Defer(until, reason) => {
                    sqlx::query(
                        "UPDATE notice_steps SET status = 'deferred', due_at = $3, reason = $4 WHERE notice_id = $1 AND idx = $2",
                    )
                    .bind(id)
                    .bind(index_db)
                    .bind(*until)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                }
                StepMove::Expire => {
                    sqlx::query(
                        "UPDATE notice_steps SET status = 'expired', reason = 'the notice expired' \
                         WHERE notice_id = $1 AND status IN ('pending', 'deferred')",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                    sqlx::query("UPDATE notices SET status = 'expired' WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                }
            }
            decode::apply_move(notice, index, &step_move, &mut pass);
        }
        if wrote_events {
            self.commit(tx).await?
        } else {
            tx.commit().await.map_err(err)?
        }

        // Notices whose every step ended, in a statement of its own; one held by an
        // acknowledgement is skipped (it is acknowledged instead).
        if !touched.is_empty() {
            let ids: Vec<Uuid> = touched.into_iter().collect();
            let settled: Vec<String> = sqlx::query_scalar(
                "UPDATE notices n SET status = CASE \
                 WHEN EXISTS (SELECT 1 FROM notice_steps s WHERE s.notice_id = n.id AND s.status = 'sent') THEN 'delivered' \
                 WHEN EXISTS (SELECT 1 FROM notice_steps s WHERE s.notice_id = n.id AND s.status = 'expired') THEN 'expired' \
                 ELSE 'failed' END \
                 WHERE n.id IN (SELECT id FROM notices WHERE id = ANY($1) AND status = 'pending' FOR UPDATE SKIP LOCKED) \
                 AND NOT EXISTS (SELECT 1 FROM notice_steps s WHERE s.notice_id = n.id \
                 AND s.status IN ('pending', 'deferred', 'sending')) RETURNING n.status",
            )
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
            for status in settled {
                pass.settled.push(status.parse().map_err(|e| corrupt("notice status", e))?);
            }
        }
        Ok(pass)
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

/// Writes a notice's in-app event and records where it went.
async fn write_event(
    tx: &mut Transaction<'_, Postgres>,
    notice: NoticeId,
    event: &ChangeEvent,
) -> Result<(), StoreError> {
    insert_events(tx, std::slice::from_ref(event)).await?;
    sqlx::query(
        "UPDATE notices SET event_channel = $2, \
         event_offset = COALESCE(event_offset, (SELECT last_offset FROM channel_offsets WHERE channel = $2)) WHERE id = $1",
    )
    .bind(notice.0)
    .bind(&event.channel)
    .execute(&mut **tx)
    .await
    .map(drop)
    .map_err(err)
}

async fn set_step(
    tx: &mut Transaction<'_, Postgres>,
    notice: Uuid,
    index: i32,
    status: StepStatus,
    sent_at: Option<DateTime<Utc>>,
    reason: Option<&str>,
    delivery: Option<DeliveryId>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE notice_steps SET status = $3, sent_at = $4, reason = $5, delivery_id = $6 WHERE notice_id = $1 AND idx = $2",
    )
    .bind(notice)
    .bind(index)
    .bind(status.as_str())
    .bind(sent_at)
    .bind(reason)
    .bind(delivery.map(|d| d.0))
    .execute(&mut **tx)
    .await
    .map(drop)
    .map_err(err)
}
