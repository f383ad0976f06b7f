//! PostgreSQL: an escalation pass over due notice steps (see [`super::notices`] for how passes and
//! acknowledgements take turns). Each step's writes go under a savepoint, so a step that fails
//! is undone alone and named in [`Escalation::failed`] while the pass goes on.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use herald_core::{
    change::ChangeEvent,
    delivery::DeliveryId,
    notice::{DueStep, Escalation, Notice, NoticeId, NoticeStatus, StepMove, StepStatus},
    quarantine::{ItemFailure, Worker},
    store::{StepPlan, StoreError},
};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use super::{PgStore, err, outbox::insert_events};
use crate::{
    decode::{self, notice_columns, step_columns},
    error::corrupt,
    sql::{Adapter as _, deliveries::OnTaken},
};

impl PgStore {
    pub(super) async fn escalate(
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
            let id: Uuid = row.try_get("notice_id").map_err(err)?;
            touched.insert(id);
            match decode::step_change(row.try_get("channel").map_err(err)?, row.try_get("status").map_err(err)?) {
                Ok(change) => pass.steps.push(change),
                Err(e) => pass.failed.push(crate::unreadable::unreadable(Worker::Escalation, id.to_string(), &e)),
            }
        }

        let held = crate::sql::held_ids(&self.pool, [Worker::Escalation; 2], now).await.map_err(err)?;
        let mut tx = self.pool.begin().await.map_err(err)?;
        let due = sqlx::query(
            "SELECT s.notice_id, s.idx, u.email, u.phone, u.timezone, u.preferences, u.webhook_url \
             FROM notice_steps s JOIN notices n ON n.id = s.notice_id JOIN users u ON u.id = n.user_id \
             WHERE s.status IN ('pending', 'deferred') AND s.due_at <= $1 AND n.status = 'pending' \
             AND NOT (s.notice_id = ANY($3)) \
             ORDER BY s.due_at, s.notice_id, s.idx LIMIT $2 FOR UPDATE OF s, n SKIP LOCKED",
        )
        .bind(now)
        .bind(i64::from(limit))
        .bind(&held)
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
            );
            match (reach, usize::try_from(index)) {
                (Ok(reach), Ok(index)) => work.push((id, index, reach)),
                (Err(e), _) => pass.failed.push(crate::unreadable::unreadable(Worker::Escalation, id.to_string(), &e)),
                (_, Err(e)) => pass.failed.push(crate::unreadable::unreadable(
                    Worker::Escalation,
                    id.to_string(),
                    &corrupt("notice step index", e),
                )),
            }
        }
        let ids: Vec<Uuid> = work.iter().map(|(id, ..)| *id).collect();
        let notices = {
            let rows = sqlx::query(concat!("SELECT ", notice_columns!(), " FROM notices WHERE id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
            let rows = sqlx::query(concat!("SELECT ", step_columns!(), " FROM notice_steps WHERE notice_id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)
                .map(|steps| (rows, steps))?;
            crate::unreadable::notices_with_steps(&rows.0, &rows.1, &mut pass.failed)
        };
        let mut notices: std::collections::HashMap<Uuid, Notice> = notices.into_iter().map(|n| (n.id.0, n)).collect();
        let mut wrote_events = false;
        for (id, index, reach) in work {
            let Some(notice) = notices.get_mut(&id) else { continue };
            // An earlier step of this pass expired the notice.
            if notice.status != NoticeStatus::Pending || notice.steps.get(index).is_none_or(|s| s.status.is_final()) {
                continue;
            }
            let due = DueStep { notice: notice.clone(), index, reach };
            let step_move = plan(&due);
            // Each step's writes under a savepoint: one that fails is undone alone, and the pass
            // goes on with the other notices.
            let mut step = sqlx::Connection::begin(&mut *tx).await.map_err(err)?;
            match apply_step(&mut step, notice.id, index, &step_move, now).await {
                Ok(wrote) => {
                    step.commit().await.map_err(err)?;
                    wrote_events |= wrote;
                    touched.insert(id);
                    crate::escalation::apply_move(notice, index, &step_move, &mut pass);
                }
                Err(e) => {
                    let Some(failure) = ItemFailure::of_store(Worker::Escalation, id.to_string(), &e) else {
                        return Err(e);
                    };
                    step.rollback().await.map_err(err)?;
                    pass.failed.push(failure);
                    // Its later steps in this pass wait for it.
                    notice.status = NoticeStatus::Failed;
                }
            }
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
}

/// Writes what `step_move` makes of step `index` of `notice`; whether it wrote an event.
async fn apply_step(
    tx: &mut Transaction<'_, Postgres>,
    notice: NoticeId,
    index: usize,
    step_move: &StepMove,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let id = notice.0;
    let index = i32::try_from(index).unwrap_or(i32::MAX);
    match step_move {
        StepMove::InApp(event) => {
            write_event(tx, notice, event).await?;
            set_step(tx, id, index, StepStatus::Sent, Some(now), None, None).await?;
            return Ok(true);
        }
        StepMove::Dispatch(delivery) => {
            PgStore::insert_deliveries(tx, std::slice::from_ref(delivery), OnTaken::Skip).await?;
            set_step(tx, id, index, StepStatus::Sending, None, None, Some(delivery.id)).await?;
        }
        StepMove::Skip(reason) => set_step(tx, id, index, StepStatus::Skipped, None, Some(reason), None).await?,
        StepMove::Defer(until, reason) => {
            sqlx::query(
                "UPDATE notice_steps SET status = 'deferred', due_at = $3, reason = $4 WHERE notice_id = $1 AND idx = $2",
            )
            .bind(id)
            .bind(index)
            .bind(*until)
            .bind(reason)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        StepMove::Expire => {
            sqlx::query(
                "UPDATE notice_steps SET status = 'expired', reason = 'the notice expired' \
                 WHERE notice_id = $1 AND status IN ('pending', 'deferred')",
            )
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            sqlx::query("UPDATE notices SET status = 'expired' WHERE id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(err)?;
        }
    }
    Ok(false)
}

/// Writes a notice's in-app event and records where it went.
pub(super) async fn write_event(
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
