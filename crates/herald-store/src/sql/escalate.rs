//! An escalation pass over due notice steps, in both adapters (see [`super::notices`] for how
//! passes and acknowledgements take turns). Each step's writes go under a savepoint, so a step
//! that fails is undone alone and named in `Escalation::failed` while the pass goes on.
//!
//! PostgreSQL settles the steps whose deliveries reported, and the notices whose every step
//! ended, in statements of their own, never while the pass holds notice rows; SQLite, which has
//! one writer, runs the whole pass in one write transaction.

use super::Sql;

/// Settles the steps whose deliveries reported, from their deliveries' outcome.
pub(crate) const SETTLE_REPORTED: &str = "UPDATE notice_steps SET status = CASE d.status \
     WHEN 'sent' THEN 'sent' WHEN 'cancelled' THEN 'cancelled' WHEN 'expired' THEN 'expired' ELSE 'failed' END, \
     sent_at = d.sent_at, \
     reason = CASE WHEN d.status IN ('failed', 'expired') THEN d.last_error ELSE notice_steps.reason END \
     FROM deliveries AS d WHERE notice_steps.status = 'sending' AND d.id = notice_steps.delivery_id \
     AND d.status IN ('sent', 'failed', 'expired', 'cancelled') \
     RETURNING notice_steps.notice_id, notice_steps.channel, notice_steps.status";

/// The steps due at `$1` of pending notices but those `$3` (held back), earliest first, at most
/// `$2`, with what their recipients can be reached by; PostgreSQL locks them and their notices,
/// skipping those another pass or an acknowledgement holds.
pub(crate) static DUE_STEPS: Sql = Sql::new(|d| {
    format!(
        "SELECT s.notice_id, s.idx, u.email, u.phone, u.timezone, u.preferences, u.webhook_url \
         FROM notice_steps s JOIN notices n ON n.id = s.notice_id JOIN users u ON u.id = n.user_id \
         WHERE s.status IN ('pending', 'deferred') AND s.due_at <= $1 AND n.status = 'pending' AND NOT ({}) \
         ORDER BY s.due_at, s.notice_id, s.idx LIMIT $2{}",
        d.in_ids("s.notice_id", 3),
        d.lock(" FOR UPDATE OF s, n SKIP LOCKED"),
    )
});

pub(crate) static NOTICES: Sql = Sql::new(|d| {
    format!(concat!("SELECT ", crate::decode::notice_columns!(), " FROM notices WHERE {}"), d.in_ids("id", 1))
});

pub(crate) const DEFER_STEP: &str =
    "UPDATE notice_steps SET status = 'deferred', due_at = $3, reason = $4 WHERE notice_id = $1 AND idx = $2";

pub(crate) const EXPIRE_STEPS: &str = "UPDATE notice_steps SET status = 'expired', reason = 'the notice expired' \
     WHERE notice_id = $1 AND status IN ('pending', 'deferred')";

pub(crate) const EXPIRE_NOTICE: &str = "UPDATE notices SET status = 'expired' WHERE id = $1";

pub(crate) const SET_STEP: &str = "UPDATE notice_steps SET status = $3, sent_at = $4, reason = $5, delivery_id = $6 \
     WHERE notice_id = $1 AND idx = $2";

/// Settles the pending notices among `$1` whose every step ended; PostgreSQL skips one an
/// acknowledgement holds (it is acknowledged instead).
pub(crate) static SETTLE_NOTICES: Sql = Sql::new(|d| {
    format!(
        "UPDATE notices AS n SET status = CASE \
         WHEN EXISTS (SELECT 1 FROM notice_steps s WHERE s.notice_id = n.id AND s.status = 'sent') THEN 'delivered' \
         WHEN EXISTS (SELECT 1 FROM notice_steps s WHERE s.notice_id = n.id AND s.status = 'expired') THEN 'expired' \
         ELSE 'failed' END \
         WHERE n.id IN (SELECT id FROM notices WHERE {} AND status = 'pending'{}) \
         AND NOT EXISTS (SELECT 1 FROM notice_steps s WHERE s.notice_id = n.id \
         AND s.status IN ('pending', 'deferred', 'sending')) RETURNING status",
        d.in_ids("id", 1),
        d.lock(" FOR UPDATE SKIP LOCKED"),
    )
});

/// Implements the escalation pass, `escalate`, for an adapter (see [`crate::sql`]).
macro_rules! escalation {
    ($store:ty) => {
        const _: () = {
            use std::collections::{HashMap, HashSet};

            use chrono::{DateTime, Utc};
            use herald_core::{
                delivery::DeliveryId,
                notice::{DueStep, Escalation, Notice, NoticeId, NoticeStatus, StepMove, StepStatus},
                quarantine::{ItemFailure, Worker},
                store::{StepPlan, StoreError},
            };
            use sqlx::Row as _;
            use uuid::Uuid;
            use $crate::{
                columns::{Ids, Stamp},
                decode,
                error::corrupt,
                sql::{Adapter, deliveries::OnTaken, escalate::*, held_ids, notices::STEPS_OF},
                unreadable::{notices_with_steps, unreadable},
            };

            type Db = <$store as Adapter>::Db;
            type Tx<'c> = sqlx::Transaction<'c, Db>;

            /// Settles the steps whose deliveries reported, and counts them in `pass`.
            async fn settle_reported<'e>(
                on: impl sqlx::Executor<'e, Database = Db>,
                pass: &mut Escalation,
                touched: &mut HashSet<Uuid>,
            ) -> Result<(), StoreError> {
                let rows = sqlx::query(SETTLE_REPORTED).fetch_all(on).await.map_err(<$store>::err)?;
                for row in &rows {
                    let id: Uuid = row.try_get("notice_id").map_err(<$store>::err)?;
                    touched.insert(id);
                    let channel = row.try_get("channel").map_err(<$store>::err)?;
                    match decode::step_change(channel, row.try_get("status").map_err(<$store>::err)?) {
                        Ok(change) => pass.steps.push(change),
                        Err(e) => pass.failed.push(unreadable(Worker::Escalation, id.to_string(), &e)),
                    }
                }
                Ok(())
            }

            /// Settles the notices of `touched` whose every step ended, and counts them in `pass`.
            async fn settle_notices<'e>(
                on: impl sqlx::Executor<'e, Database = Db>,
                touched: &HashSet<Uuid>,
                pass: &mut Escalation,
            ) -> Result<(), StoreError> {
                if touched.is_empty() {
                    return Ok(());
                }
                let settled: Vec<String> = sqlx::query_scalar(SETTLE_NOTICES.text(<$store>::DIALECT))
                    .bind(Ids(touched.iter().copied().collect()))
                    .fetch_all(on)
                    .await
                    .map_err(<$store>::err)?;
                for status in settled {
                    pass.settled.push(status.parse().map_err(|e| corrupt("notice status", e))?);
                }
                Ok(())
            }

            /// Writes what `step_move` makes of step `index` of `notice`; whether it wrote an event.
            async fn apply_step(
                tx: &mut Tx<'_>,
                notice: NoticeId,
                index: usize,
                step_move: &StepMove,
                now: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let id = notice.0;
                let index = i32::try_from(index).unwrap_or(i32::MAX);
                match step_move {
                    StepMove::InApp(event) => {
                        <$store>::write_event(tx, notice, event).await?;
                        set_step(tx, id, index, StepStatus::Sent, Some(now), None, None).await?;
                        return Ok(true);
                    }
                    StepMove::Dispatch(delivery) => {
                        <$store>::insert_deliveries(tx, std::slice::from_ref(delivery), OnTaken::Skip).await?;
                        set_step(tx, id, index, StepStatus::Sending, None, None, Some(delivery.id)).await?;
                    }
                    StepMove::Skip(reason) => {
                        set_step(tx, id, index, StepStatus::Skipped, None, Some(reason), None).await?;
                    }
                    StepMove::Defer(until, reason) => {
                        sqlx::query(DEFER_STEP)
                            .bind(id)
                            .bind(index)
                            .bind(Stamp(*until))
                            .bind(reason)
                            .execute(&mut **tx)
                            .await
                            .map_err(<$store>::err)?;
                    }
                    StepMove::Expire => {
                        sqlx::query(EXPIRE_STEPS).bind(id).execute(&mut **tx).await.map_err(<$store>::err)?;
                        sqlx::query(EXPIRE_NOTICE).bind(id).execute(&mut **tx).await.map_err(<$store>::err)?;
                    }
                }
                Ok(false)
            }

            async fn set_step(
                tx: &mut Tx<'_>,
                notice: Uuid,
                index: i32,
                status: StepStatus,
                sent_at: Option<DateTime<Utc>>,
                reason: Option<&str>,
                delivery: Option<DeliveryId>,
            ) -> Result<(), StoreError> {
                sqlx::query(SET_STEP)
                    .bind(notice)
                    .bind(index)
                    .bind(status.as_str())
                    .bind(sent_at.map(Stamp))
                    .bind(reason)
                    .bind(delivery.map(|d| d.0))
                    .execute(&mut **tx)
                    .await
                    .map(drop)
                    .map_err(<$store>::err)
            }

            impl $store {
                /// One escalation pass (see [`crate::sql::escalate`]).
                pub(crate) async fn escalate(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    plan: &StepPlan<'_>,
                ) -> Result<Escalation, StoreError> {
                    // Where writers lock rows, the settling statements run on their own, holding
                    // no notice; SQLite's one writer runs them in the pass's transaction.
                    let one_writer = !Self::DIALECT.locks_rows();
                    let mut pass = Escalation::default();
                    let mut touched: HashSet<Uuid> = HashSet::new();
                    let held = held_ids(self.reader(), [Worker::Escalation; 2], now).await.map_err(Self::err)?;
                    if !one_writer {
                        settle_reported(self.writer(), &mut pass, &mut touched).await?;
                    }
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    if one_writer {
                        settle_reported(&mut *tx, &mut pass, &mut touched).await?;
                    }
                    let due = sqlx::query(DUE_STEPS.text(Self::DIALECT))
                        .bind(Stamp(now))
                        .bind(i64::from(limit))
                        .bind(held)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    pass.full = due.len() >= limit as usize;
                    let mut work = Vec::with_capacity(due.len());
                    for row in &due {
                        let id: Uuid = row.try_get("notice_id").map_err(Self::err)?;
                        let index: i32 = row.try_get("idx").map_err(Self::err)?;
                        let reach = decode::reach(
                            row.try_get("email").map_err(Self::err)?,
                            row.try_get("phone").map_err(Self::err)?,
                            row.try_get("timezone").map_err(Self::err)?,
                            row.try_get("preferences").map_err(Self::err)?,
                            row.try_get("webhook_url").map_err(Self::err)?,
                        );
                        match (reach, usize::try_from(index)) {
                            (Ok(reach), Ok(index)) => work.push((id, index, reach)),
                            (Err(e), _) => pass.failed.push(unreadable(Worker::Escalation, id.to_string(), &e)),
                            (_, Err(e)) => {
                                let e = corrupt("notice step index", e);
                                pass.failed.push(unreadable(Worker::Escalation, id.to_string(), &e));
                            }
                        }
                    }
                    let ids = Ids(work.iter().map(|(id, ..)| *id).collect());
                    let notice_rows = sqlx::query(NOTICES.text(Self::DIALECT))
                        .bind(&ids)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    let step_rows = sqlx::query(STEPS_OF.text(Self::DIALECT))
                        .bind(&ids)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    let notices = notices_with_steps(&notice_rows, &step_rows, &mut pass.failed);
                    let mut notices: HashMap<Uuid, Notice> = notices.into_iter().map(|n| (n.id.0, n)).collect();
                    let mut wrote_events = false;
                    for (id, index, reach) in work {
                        let Some(notice) = notices.get_mut(&id) else { continue };
                        // An earlier step of this pass expired the notice.
                        if notice.status != NoticeStatus::Pending
                            || notice.steps.get(index).is_none_or(|s| s.status.is_final())
                        {
                            continue;
                        }
                        let due = DueStep { notice: notice.clone(), index, reach };
                        let step_move = plan(&due);
                        // Each step's writes under a savepoint: one that fails is undone alone, and
                        // the pass goes on with the other notices.
                        let mut step = sqlx::Connection::begin(&mut *tx).await.map_err(Self::err)?;
                        match apply_step(&mut step, notice.id, index, &step_move, now).await {
                            Ok(wrote) => {
                                step.commit().await.map_err(Self::err)?;
                                wrote_events |= wrote;
                                touched.insert(id);
                                $crate::escalation::apply_move(notice, index, &step_move, &mut pass);
                            }
                            Err(e) => {
                                let Some(failure) = ItemFailure::of_store(Worker::Escalation, id.to_string(), &e)
                                else {
                                    return Err(e);
                                };
                                step.rollback().await.map_err(Self::err)?;
                                pass.failed.push(failure);
                                // Its later steps in this pass wait for it.
                                notice.status = NoticeStatus::Failed;
                            }
                        }
                    }
                    if one_writer {
                        settle_notices(&mut *tx, &touched, &mut pass).await?;
                    }
                    if wrote_events {
                        self.commit(tx).await?
                    } else {
                        tx.commit().await.map_err(Self::err)?
                    }
                    if !one_writer {
                        settle_notices(self.writer(), &touched, &mut pass).await?;
                    }
                    Ok(pass)
                }
            }
        };
    };
}
pub(crate) use escalation;
