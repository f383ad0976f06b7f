//! Chat rooms, their members and messages.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store_error::StoreError;
use crate::{
    change::ChangeEvent,
    room::{Room, RoomId, RoomMessage, RoomMessageId},
    user::UserId,
};

/// Chat rooms, their members and messages. Every write stores its events in the outbox in the
/// same transaction, each with the next offset of its stream. Rooms are never deleted.
///
/// Membership is the only access rule the store keeps itself: a message is stored only for a
/// member of its room. Who may add members is the use case's to decide.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Stores a room, makes its owner its first member (joined at `created_at`) and writes
    /// `events`. `NotFound` when the owner is not a user.
    async fn create_room(&self, room: &Room, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// The rooms `user` is a member of, in id order after `after`, at most `limit`.
    async fn rooms_of(&self, user: UserId, after: Option<RoomId>, limit: u32) -> Result<Vec<Room>, StoreError>;

    /// The room `id`, whoever asks (callers check membership).
    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError>;

    /// Whether `user` is a member of `room` (false too when either is unknown).
    async fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, StoreError>;

    /// Makes `user` a member of `room` (joined at `now`) and writes `events`. Idempotent: false,
    /// and no events written, when they are a member already. `NotFound` when the room or the
    /// user does not exist.
    async fn add_member(
        &self,
        room: RoomId,
        user: UserId,
        events: &[ChangeEvent],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Ends `user`'s membership of `room` and writes `events`. False, and no events written, when
    /// they are not a member (or either is unknown). Their messages stay.
    async fn remove_member(&self, room: RoomId, user: UserId, events: &[ChangeEvent]) -> Result<bool, StoreError>;

    /// Stores a message and writes `events`, only if its author is a member of its room:
    /// `NotFound` (nothing written) otherwise.
    async fn post_message(&self, message: &RoomMessage, events: &[ChangeEvent]) -> Result<(), StoreError>;

    /// A room's messages **newest first**: those before `before` (the oldest id of the previous
    /// page), at most `limit`.
    async fn room_messages(
        &self,
        room: RoomId,
        before: Option<RoomMessageId>,
        limit: u32,
    ) -> Result<Vec<RoomMessage>, StoreError>;
}
