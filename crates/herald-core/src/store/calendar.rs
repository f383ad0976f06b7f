//! Calendar events with their change events and reminder deliveries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    calendar::{CalendarEvent, CalendarEventId},
    change::ChangeEvent,
    delivery::{Delivery, NewDelivery},
    user::UserId,
};

/// The calendar: events, their change events and their reminder deliveries, written together.
///
/// An owner's writes take turns (each locks the owner first), so the overlap check and the write
/// are one step: two events of one owner never overlap, however many requests race.
#[async_trait]
pub trait CalendarStore: Send + Sync {
    /// Stores an event with its change events and reminders. An overlap with another event of
    /// the owner is `Conflict` on [`Constraint::EventsOverlap`] and writes nothing.
    ///
    /// [`Constraint::EventsOverlap`]: super::Constraint::EventsOverlap
    async fn create_calendar_event(
        &self,
        event: &CalendarEvent,
        events: &[ChangeEvent],
        reminders: &[NewDelivery],
    ) -> Result<(), StoreError>;

    /// The event `id` if `owner` owns it.
    async fn calendar_event(&self, owner: UserId, id: CalendarEventId) -> Result<Option<CalendarEvent>, StoreError>;

    /// Replaces an event of its owner: cancels its pending reminders, stores `reminders` (a
    /// reminder stored before under the same key is kept as it is), writes `events`. `NotFound`
    /// when it is gone; `Conflict` on [`Constraint::EventsOverlap`] on an overlap.
    ///
    /// [`Constraint::EventsOverlap`]: super::Constraint::EventsOverlap
    async fn update_calendar_event(
        &self,
        event: &CalendarEvent,
        events: &[ChangeEvent],
        reminders: &[NewDelivery],
    ) -> Result<(), StoreError>;

    /// Deletes an event of `owner`, cancels its pending reminders and notifications (at `now`)
    /// and writes the events `events` makes from it; returns it, or `None`.
    async fn delete_calendar_event(
        &self,
        owner: UserId,
        id: CalendarEventId,
        now: DateTime<Utc>,
        events: &EventDeleteEvents<'_>,
    ) -> Result<Option<CalendarEvent>, StoreError>;

    /// `owner`'s events overlapping `[from, to)`, by start (then id), after `after` (the start
    /// and id of the last one seen), at most `limit`.
    async fn list_calendar_events(
        &self,
        owner: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<(DateTime<Utc>, CalendarEventId)>,
        limit: u32,
    ) -> Result<Vec<CalendarEvent>, StoreError>;

    /// Deletes up to `limit` events that ended before `before`; returns how many.
    async fn delete_calendar_events_ended_before(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// The reminder deliveries of an event of `owner` and the notifications they led to, oldest
    /// first, or `None` for no such event.
    async fn calendar_event_reminders(
        &self,
        owner: UserId,
        id: CalendarEventId,
    ) -> Result<Option<Vec<Delivery>>, StoreError>;
}

/// Builds the change events of a calendar event's deletion.
pub type EventDeleteEvents<'a> = dyn Fn(&CalendarEvent) -> Vec<ChangeEvent> + Sync + 'a;
