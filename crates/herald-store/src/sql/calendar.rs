//! Calendar events and their reminders, in both adapters. An owner's overlap check and write are
//! one step however many requests race: PostgreSQL's writers lock the owner's row first, SQLite's
//! take turns on its one writer.

use super::Sql;

/// Locks the owner's row for the transaction: other calendar writes of the owner wait
/// (PostgreSQL only; SQLite's one writer already holds the database).
pub(crate) const LOCK_OWNER: &str = "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE";

/// Another event of owner `$1` than `$2` that overlaps `[$4, $3)`.
pub(crate) const OVERLAPPING: &str =
    "SELECT 1 FROM calendar_events WHERE owner_id = $1 AND id <> $2 AND starts_at < $3 AND ends_at > $4 LIMIT 1";

/// Cancels the pending deliveries of event `$1` whose kind is among `$2` and whose source key is
/// not among `$4` (those to keep).
pub(crate) static CANCEL_REMINDERS: Sql = Sql::new(|d| {
    format!(
        "UPDATE deliveries SET status = 'cancelled', last_error = 'the event moved or was deleted', \
         updated_at = $3 WHERE source_id = $1 AND {} AND status = 'pending' AND NOT ({})",
        d.in_list("kind", 2),
        d.in_list("source_key", 4),
    )
});

/// Stores event `$1` of owner `$2` (the parameters of [`UPDATE_EVENT`], then its creation time).
pub(crate) const CREATE_EVENT: &str = "INSERT INTO calendar_events (id, owner_id, title, description, starts_at, \
     ends_at, remind_before, updated_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(crate) const EVENT: &str = "SELECT * FROM calendar_events WHERE id = $1 AND owner_id = $2";

/// Changes event `$1` of owner `$2`.
pub(crate) const UPDATE_EVENT: &str = "UPDATE calendar_events SET title = $3, description = $4, starts_at = $5, \
     ends_at = $6, remind_before = $7, updated_at = $8 WHERE id = $1 AND owner_id = $2";

pub(crate) const DELETE_EVENT: &str = "DELETE FROM calendar_events WHERE id = $1 AND owner_id = $2 RETURNING *";

/// Events of owner `$1` overlapping `[$2, $3)`, by start, after (`$4`, `$5`) when given.
pub(crate) const LIST_EVENTS: &str = "SELECT * FROM calendar_events WHERE owner_id = $1 AND starts_at < $3 \
     AND ends_at > $2 AND ($4 IS NULL OR (starts_at, id) > ($4, $5)) ORDER BY starts_at, id LIMIT $6";

pub(crate) const DELETE_ENDED: &str = "DELETE FROM calendar_events WHERE id IN \
     (SELECT id FROM calendar_events WHERE ends_at < $1 ORDER BY ends_at LIMIT $2)";

pub(crate) const REMINDERS: &str = "SELECT * FROM deliveries WHERE source_id = $1 AND kind IN ($2, $3) ORDER BY id";

/// Implements `CalendarStore` for an adapter (see [`crate::sql`]).
macro_rules! calendar_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                calendar::{CalendarEvent, CalendarEventId, REMINDER_DUE_KIND, REMINDER_SENT_KIND},
                change::ChangeEvent,
                delivery::{Delivery, NewDelivery},
                store::{CalendarStore, Constraint, EventDeleteEvents, StoreError},
                user::UserId,
            };
            use $crate::{
                columns::{Stamp, Texts},
                decode,
                sql::{Adapter, Query, calendar::*, deliveries::OnTaken},
            };

            type Tx<'c> = sqlx::Transaction<'c, <$store as Adapter>::Db>;

            /// `query` with the parameters of [`UPDATE_EVENT`] bound.
            fn bind_event<'q>(query: Query<'q, $store>, e: &CalendarEvent) -> Query<'q, $store> {
                query
                    .bind(e.id.0)
                    .bind(e.owner.0)
                    .bind(e.title.as_str())
                    .bind(e.description.as_str())
                    .bind(Stamp(e.starts_at))
                    .bind(Stamp(e.ends_at()))
                    .bind(e.remind_before.map(|d| d.num_seconds()))
                    .bind(Stamp(e.updated_at))
            }

            /// Locks `owner` for this transaction where writers lock rows, then fails with
            /// `Constraint::EventsOverlap` if another of their events overlaps `event`.
            async fn lock_and_check(tx: &mut Tx<'_>, event: &CalendarEvent) -> Result<(), StoreError> {
                if <$store>::DIALECT.locks_rows() {
                    sqlx::query(LOCK_OWNER).bind(event.owner.0).execute(&mut **tx).await.map_err(<$store>::err)?;
                }
                let busy = sqlx::query(OVERLAPPING)
                    .bind(event.owner.0)
                    .bind(event.id.0)
                    .bind(Stamp(event.ends_at()))
                    .bind(Stamp(event.starts_at))
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(<$store>::err)?;
                if busy.is_some() {
                    return Err(StoreError::conflict(Constraint::EventsOverlap));
                }
                Ok(())
            }

            /// Cancels the event's pending deliveries of `kinds` not among `keep` (source keys).
            async fn cancel_reminders(
                tx: &mut Tx<'_>,
                event: CalendarEventId,
                kinds: &[&str],
                keep: &[String],
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(CANCEL_REMINDERS.text(<$store>::DIALECT))
                    .bind(event.0)
                    .bind(Texts(kinds.iter().map(|k| (*k).to_owned()).collect()))
                    .bind(Stamp(now))
                    .bind(Texts(keep.to_vec()))
                    .execute(&mut **tx)
                    .await
                    .map_err(<$store>::err)?;
                Ok(())
            }

            #[async_trait]
            impl CalendarStore for $store {
                async fn create_calendar_event(
                    &self,
                    e: &CalendarEvent,
                    events: &[ChangeEvent],
                    reminders: &[NewDelivery],
                ) -> Result<(), StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    lock_and_check(&mut tx, e).await?;
                    bind_event(sqlx::query(CREATE_EVENT), e)
                        .bind(Stamp(e.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    Self::insert_deliveries(&mut tx, reminders, OnTaken::RefreshPending).await?;
                    Self::insert_events(&mut tx, events).await?;
                    self.commit(tx).await
                }

                async fn calendar_event(
                    &self,
                    owner: UserId,
                    id: CalendarEventId,
                ) -> Result<Option<CalendarEvent>, StoreError> {
                    let row = self.owned_row(EVENT, id.0, owner.0).await?;
                    row.as_ref().map(decode::calendar_event).transpose()
                }

                async fn update_calendar_event(
                    &self,
                    e: &CalendarEvent,
                    events: &[ChangeEvent],
                    reminders: &[NewDelivery],
                ) -> Result<(), StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    lock_and_check(&mut tx, e).await?;
                    let done = bind_event(sqlx::query(UPDATE_EVENT), e).execute(&mut *tx).await.map_err(Self::err)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    let keep: Vec<String> = reminders.iter().map(|r| r.source_key.clone()).collect();
                    // The notifications of a reminder already sent stay: the owner was reminded.
                    cancel_reminders(&mut tx, e.id, &[REMINDER_DUE_KIND], &keep, e.updated_at).await?;
                    Self::insert_deliveries(&mut tx, reminders, OnTaken::RefreshPending).await?;
                    Self::insert_events(&mut tx, events).await?;
                    self.commit(tx).await
                }

                async fn delete_calendar_event(
                    &self,
                    owner: UserId,
                    id: CalendarEventId,
                    now: DateTime<Utc>,
                    events: &EventDeleteEvents<'_>,
                ) -> Result<Option<CalendarEvent>, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let row = sqlx::query(DELETE_EVENT)
                        .bind(id.0)
                        .bind(owner.0)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    let Some(event) = row.as_ref().map(decode::calendar_event).transpose()? else { return Ok(None) };
                    cancel_reminders(&mut tx, id, &[REMINDER_DUE_KIND, REMINDER_SENT_KIND], &[], now).await?;
                    Self::insert_events(&mut tx, &events(&event)).await?;
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
                    let rows = sqlx::query(LIST_EVENTS)
                        .bind(owner.0)
                        .bind(Stamp(from))
                        .bind(Stamp(to))
                        .bind(after.map(|(at, _)| Stamp(at)))
                        .bind(after.map(|(_, id)| id.0))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::calendar_event).collect()
                }

                async fn delete_calendar_events_ended_before(
                    &self,
                    before: DateTime<Utc>,
                    limit: u32,
                ) -> Result<u64, StoreError> {
                    self.delete_before(DELETE_ENDED, before, limit).await
                }

                async fn calendar_event_reminders(
                    &self,
                    owner: UserId,
                    id: CalendarEventId,
                ) -> Result<Option<Vec<Delivery>>, StoreError> {
                    if self.calendar_event(owner, id).await?.is_none() {
                        return Ok(None);
                    }
                    let rows = sqlx::query(REMINDERS)
                        .bind(id.0)
                        .bind(REMINDER_DUE_KIND)
                        .bind(REMINDER_SENT_KIND)
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::delivery).collect::<Result<Vec<_>, _>>().map(Some)
                }
            }
        };
    };
}
pub(crate) use calendar_store;
