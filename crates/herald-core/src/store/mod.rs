//! The Store port: Herald's durable state. Adapters live in `herald-store` (SQLite, PostgreSQL).
//!
//! Contract, for every adapter:
//! - Every method is atomic: it commits all of its writes or none of them.
//! - Unique-key violations are reported as [`StoreError::Conflict`] naming the constraint, never
//!   as `Other`, so use cases can turn them into client errors.
//! - [`StoreError::Unavailable`] means the backend could not be reached or timed out; the
//!   operation may be retried. Anything else is [`StoreError::Other`].
//! - Timestamps round-trip with microsecond precision; ids are UUIDv7 and list orders follow them.

use async_trait::async_trait;

mod accounts;
mod calendar;
mod campaigns;
mod deliveries;
mod notices;
mod outbox;
mod quarantine;
mod rooms;
mod streams;
mod tasks;
mod users;
mod webhooks;

pub use accounts::AccountStore;
pub use calendar::{CalendarStore, EventDeleteEvents};
pub use campaigns::CampaignStore;
pub use deliveries::DeliveryStore;
pub use notices::{NoticeStore, StepPlan};
pub use outbox::OutboxStore;
pub use quarantine::QuarantineStore;
pub use rooms::RoomStore;
pub use streams::StreamStore;
pub use tasks::{AttachmentEvents, DeleteEvents, TaskStore};
pub use users::UserStore;
pub use webhooks::WebhookStore;

pub use crate::store_error::{Constraint, StoreError};

/// Herald's durable state: every focused store trait, plus lifecycle. See the module docs for
/// the contract every adapter keeps.
#[async_trait]
pub trait Store:
    UserStore
    + TaskStore
    + OutboxStore
    + DeliveryStore
    + CampaignStore
    + CalendarStore
    + StreamStore
    + RoomStore
    + NoticeStore
    + QuarantineStore
    + WebhookStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// Apply this backend's pending migrations. Idempotent; safe to run from several processes.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Releases connections; later calls fail.
    async fn close(&self);
}
