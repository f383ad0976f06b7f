//! SQLite: an escalation pass over due notice steps. The pass runs in one write transaction
//! (SQLite has one writer); each step's writes go under a savepoint, so a step that fails is
//! undone alone and named in [`Escalation::failed`] while the pass goes on.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use herald_core::{
    change::ChangeEvent,
    delivery::DeliveryId,
    notice::{DueStep, Escalation, Notice, NoticeId, NoticeStatus, StepMove, StepStatus},
    quarantine::{ItemFailure, Worker},
    store::{StepPlan, StoreError},
};
use sqlx::{Row as _, Sqlite, Transaction};
use uuid::Uuid;

use super::{SqliteStore, err, micros, outbox::insert_events};
use crate::{
    decode::{self, notice_columns, step_columns},
    error::corrupt,
    sql::{Adapter as _, deliveries::OnTaken},
    unreadable::{notices_with_steps, unreadable},
};

impl SqliteStore {
    pub(super) async fn escalate(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        plan: &StepPlan<'_>,
    ) -> Result<Escalation, StoreError> {
        let mut pass = Escalation::default();
        let mut touched: HashSet<Uuid> = HashSet::new();
        let held = crate::sql::held_ids(&self.reader, [Worker::Escalation; 2], now).await.map_err(err)?;
        let mut tx = self.writer.begin().await.map_err(err)?;
        // Steps whose deliveries reported.
        let rows = sqlx::query(
            "UPDATE notice_steps AS s SET status = CASE d.status WHEN 'sent' THEN 'sent' WHEN 'cancelled' THEN 'cancelled' \
             WHEN 'expired' THEN 'expired' ELSE 'failed' END, sent_at = d.sent_at, \
             reason = CASE WHEN d.status IN ('failed', 'expired') THEN d.last_error ELSE s.reason END \
             FROM deliveries AS d WHERE s.status = 'sending' AND d.id = s.delivery_id \
             AND d.status IN ('sent', 'failed', 'expired', 'cancelled') RETURNING notice_id, channel, status",
        )
        .fetch_all(&mut *tx)
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

        let due = sqlx::query(
            "SELECT s.notice_id, s.idx, u.email, u.phone, u.timezone, u.preferences, u.webhook_url \
             FROM notice_steps s JOIN notices n ON n.id = s.notice_id JOIN users u ON u.id = n.user_id \
             WHERE s.status IN ('pending', 'deferred') AND s.due_at <= ?1 AND n.status = 'pending' \
             AND s.notice_id NOT IN (SELECT unhex(value) FROM json_each(?3)) \
             ORDER BY s.due_at, s.notice_id, s.idx LIMIT ?2",
        )
        .bind(micros(now))
        .bind(i64::from(limit))
        .bind(&held)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        pass.full = due.len() >= limit as usize;
        // Each notice read once (`None`: it could not be read, and is named in `pass.failed`).
        let mut notices: HashMap<Uuid, Option<Notice>> = HashMap::new();
        let mut wrote_events = false;
        for row in &due {
            let id: Uuid = row.try_get("notice_id").map_err(err)?;
            let index: i64 = row.try_get("idx").map_err(err)?;
            let reach = decode::reach(
                row.try_get("email").map_err(err)?,
                row.try_get("phone").map_err(err)?,
                row.try_get("timezone").map_err(err)?,
                row.try_get("preferences").map_err(err)?,
                row.try_get("webhook_url").map_err(err)?,
            );
            let (reach, index) = match (reach, usize::try_from(index)) {
                (Ok(reach), Ok(index)) => (reach, index),
                (Err(e), _) => {
                    notices.insert(id, None);
                    pass.failed.push(unreadable(Worker::Escalation, id.to_string(), &e));
                    continue;
                }
                (_, Err(e)) => {
                    notices.insert(id, None);
                    let e = corrupt("notice step index", e);
                    pass.failed.push(unreadable(Worker::Escalation, id.to_string(), &e));
                    continue;
                }
            };
            let notice = match notices.entry(id) {
                std::collections::hash_map::Entry::Occupied(held) => held.into_mut(),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    let row = sqlx::query(concat!("SELECT ", notice_columns!(), " FROM notices WHERE id = ?"))
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(err)?;
                    let steps =
                        sqlx::query(concat!("SELECT ", step_columns!(), " FROM notice_steps WHERE notice_id = ?"))
                            .bind(id)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(err)?;
                    slot.insert(notices_with_steps(std::slice::from_ref(&row), &steps, &mut pass.failed).pop())
                }
            };
            let Some(notice) = notice else { continue };
            if notice.status != NoticeStatus::Pending || notice.steps.get(index).is_none_or(|s| s.status.is_final()) {
                continue;
            }
            let due = DueStep { notice: notice.clone(), index, reach };
            let step_move = plan(&due);
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

        // Notices whose every step ended.
        for id in touched {
            let settled: Option<String> = sqlx::query_scalar(
                "UPDATE notices AS n SET status = CASE \
                 WHEN EXISTS (SELECT 1 FROM notice_steps s WHERE s.notice_id = n.id AND s.status = 'sent') THEN 'delivered' \
                 WHEN EXISTS (SELECT 1 FROM notice_steps s WHERE s.notice_id = n.id AND s.status = 'expired') THEN 'expired' \
                 ELSE 'failed' END \
                 WHERE n.id = ?1 AND n.status = 'pending' AND NOT EXISTS (SELECT 1 FROM notice_steps s \
                 WHERE s.notice_id = n.id AND s.status IN ('pending', 'deferred', 'sending')) RETURNING status",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            if let Some(status) = settled {
                pass.settled.push(status.parse().map_err(|e| corrupt("notice status", e))?);
            }
        }
        if wrote_events {
            self.commit(tx).await?
        } else {
            tx.commit().await.map_err(err)?
        }
        Ok(pass)
    }
}

/// Writes what `step_move` makes of step `index` of `notice`; whether it wrote an event.
async fn apply_step(
    tx: &mut Transaction<'_, Sqlite>,
    notice: NoticeId,
    index: usize,
    step_move: &StepMove,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let id = notice.0;
    let index = i64::try_from(index).unwrap_or(i64::MAX);
    match step_move {
        StepMove::InApp(event) => {
            write_event(tx, notice, event).await?;
            set_step(tx, id, index, StepStatus::Sent, Some(now), None, None).await?;
            return Ok(true);
        }
        StepMove::Dispatch(delivery) => {
            SqliteStore::insert_deliveries(tx, std::slice::from_ref(delivery), OnTaken::Skip).await?;
            set_step(tx, id, index, StepStatus::Sending, None, None, Some(delivery.id)).await?;
        }
        StepMove::Skip(reason) => set_step(tx, id, index, StepStatus::Skipped, None, Some(reason), None).await?,
        StepMove::Defer(until, reason) => {
            sqlx::query(
                "UPDATE notice_steps SET status = 'deferred', due_at = ?3, reason = ?4 WHERE notice_id = ?1 AND idx = ?2",
            )
            .bind(id)
            .bind(index)
            .bind(micros(*until))
            .bind(reason)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
        }
        StepMove::Expire => {
            sqlx::query(
                "UPDATE notice_steps SET status = 'expired', reason = 'the notice expired' \
                 WHERE notice_id = ?1 AND status IN ('pending', 'deferred')",
            )
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            sqlx::query("UPDATE notices SET status = 'expired' WHERE id = ?")
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
    tx: &mut Transaction<'_, Sqlite>,
    notice: NoticeId,
    event: &ChangeEvent,
) -> Result<(), StoreError> {
    insert_events(tx, std::slice::from_ref(event)).await?;
    sqlx::query(
        "UPDATE notices SET event_channel = ?2, \
         event_offset = COALESCE(event_offset, (SELECT last_offset FROM channel_offsets WHERE channel = ?2)) WHERE id = ?1",
    )
    .bind(notice.0)
    .bind(&event.channel)
    .execute(&mut **tx)
    .await
    .map(drop)
    .map_err(err)
}

async fn set_step(
    tx: &mut Transaction<'_, Sqlite>,
    notice: Uuid,
    index: i64,
    status: StepStatus,
    sent_at: Option<DateTime<Utc>>,
    reason: Option<&str>,
    delivery: Option<DeliveryId>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE notice_steps SET status = ?3, sent_at = ?4, reason = ?5, delivery_id = ?6 WHERE notice_id = ?1 AND idx = ?2",
    )
    .bind(notice)
    .bind(index)
    .bind(status.as_str())
    .bind(sent_at.map(micros))
    .bind(reason)
    .bind(delivery.map(|d| d.0))
    .execute(&mut **tx)
    .await
    .map(drop)
    .map_err(err)
}
