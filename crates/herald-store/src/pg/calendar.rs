//! PostgreSQL: calendar events and their reminders. Writers lock the owner's row first, so an
//! owner's overlap check and write are one step however many requests race.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    calendar::{CalendarEvent, CalendarEventId, NOTIFICATION_KIND, REMINDER_KIND},
    change::ChangeEvent,
    delivery::{Delivery, NewDelivery},
    store::{CalendarStore, Constraint, EventDeleteEvents, StoreError},
    user::UserId,
};
use sqlx::{Postgres, Transaction};

use super::{
    PgStore,
    deliveries::{OnTaken, insert_deliveries},
    err,
    outbox::insert_events,
};
use crate::decode;

/// Locks `owner` for this transaction (other calendar writes of the owner wait), then fails with
/// `Constraint::EventsOverlap` if another of their events overlaps `event`.
async fn lock_and_check(tx: &mut Transaction<'_, Postgres>, event: &CalendarEvent) -> Result<(), StoreError> {
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
        .bind(event.owner.0)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    let busy: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM calendar_events WHERE owner_id = $1 AND id <> $2 AND starts_at < $3 AND ends_at > $4 LIMIT 1",
    )
    .bind(event.owner.0)
    .bind(event.id.0)
    .bind(event.ends_at())
    .bind(event.starts_at)
    .fetch_optional(&mut **tx)
    .await
    .map_err(err)?;
    if busy.is_some() {
        return Err(StoreError::conflict(Constraint::EventsOverlap));
    }
    Ok(())
}

/// Cancels the event's pending deliveries of `kinds` not among `keep` (source keys).
async fn cancel_reminders(
    tx: &mut Transaction<'_, Postgres>,
    event: CalendarEventId,
    kinds: &[&str],
    keep: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET status = 'cancelled', last_error = 'the event moved or was deleted', \
         updated_at = $3 WHERE source_id = $1 AND kind = ANY ($2) AND status = 'pending' \
         AND source_key <> ALL ($4)",
    )
    .bind(event.0)
    .bind(kinds)
    .bind(now)
    .bind(keep)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    Ok(())
}

#[async_trait]
impl CalendarStore for PgStore {
    async fn create_calendar_event(
        &self,
        e: &CalendarEvent,
        events: &[ChangeEvent],
        reminders: &[NewDelivery],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        lock_and_check(&mut tx, e).await?;
        sqlx::query(
            "INSERT INTO calendar_events (id, owner_id, title, description, starts_at, ends_at, remind_before, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.id.0)
        .bind(e.owner.0)
        .bind(e.title.as_str())
        .bind(e.description.as_str())
        .bind(e.starts_at)
        .bind(e.ends_at())
        .bind(e.remind_before.map(|d| d.num_seconds()))
        .bind(e.created_at)
        .bind(e.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        insert_deliveries(&mut tx, reminders, OnTaken::RefreshPending).await?;
        insert_events(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn calendar_event(&self, owner: UserId, id: CalendarEventId) -> Result<Option<CalendarEvent>, StoreError> {
        let row = sqlx::query("SELECT * FROM calendar_events WHERE id = $1 AND owner_id = $2")
            .bind(id.0)
            .bind(owner.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::calendar_event).transpose()
    }

    async fn update_calendar_event(
        &self,
        e: &CalendarEvent,
        events: &[ChangeEvent],
        reminders: &[NewDelivery],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        lock_and_check(&mut tx, e).await?;
        let done = sqlx::query(
            "UPDATE calendar_events SET title = $1, description = $2, starts_at = $3, ends_at = $4, \
             remind_before = $5, updated_at = $6 WHERE id = $7 AND owner_id = $8",
        )
        .bind(e.title.as_str())
        .bind(e.description.as_str())
        .bind(e.starts_at)
        .bind(e.ends_at())
        .bind(e.remind_before.map(|d| d.num_seconds()))
        .bind(e.updated_at)
        .bind(e.id.0)
        .bind(e.owner.0)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let keep: Vec<String> = reminders.iter().map(|r| r.source_key.clone()).collect();
        // The notifications of a reminder already sent stay: the owner was reminded.
        cancel_reminders(&mut tx, e.id, &[REMINDER_KIND], &keep, e.updated_at).await?;
        insert_deliveries(&mut tx, reminders, OnTaken::RefreshPending).await?;
        insert_events(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn delete_calendar_event(
        &self,
        owner: UserId,
        id: CalendarEventId,
        now: DateTime<Utc>,
        events: &EventDeleteEvents<'_>,
    ) -> Result<Option<CalendarEvent>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let row = sqlx::query("DELETE FROM calendar_events WHERE id = $1 AND owner_id = $2 RETURNING *")
            .bind(id.0)
            .bind(owner.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        let Some(event) = row.as_ref().map(decode::calendar_event).transpose()? else { return Ok(None) };
        cancel_reminders(&mut tx, id, &[REMINDER_KIND, NOTIFICATION_KIND], &[], now).await?;
        insert_events(&mut tx, &events(&event)).await?;
        self.commit(tx).await?;
        Ok(Some(event))
    }

    async fn list_calendar_events(
        &self,
        owner: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(DateTime<Utc>, CalendarEventId)>,
        limit: u32,
    ) -> Result<Vec<CalendarEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM calendar_events WHERE owner_id = $1 AND starts_at < $3 AND ends_at > $2 \
             AND ($4::timestamptz IS NULL OR (starts_at, id) > ($4, $5)) ORDER BY starts_at, id LIMIT $6",
        )
        .bind(owner.0)
        .bind(from)
        .bind(to)
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode::calendar_event).collect()
    }

    async fn delete_calendar_events_ended_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM calendar_events WHERE id IN \
             (SELECT id FROM calendar_events WHERE ends_at < $1 ORDER BY ends_at LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    async fn calendar_event_reminders(
        &self,
        owner: UserId,
        id: CalendarEventId,
    ) -> Result<Option<Vec<Delivery>>, StoreError> {
        if self.calendar_event(owner, id).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query("SELECT * FROM deliveries WHERE source_id = $1 AND kind = ANY ($2) ORDER BY id")
            .bind(id.0)
            .bind([REMINDER_KIND, NOTIFICATION_KIND])
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(decode::delivery).collect::<Result<Vec<_>, _>>().map(Some)
    }
}
