//! PostgreSQL: chat rooms, their members and messages. Concurrent adds of one member meet on the
//! primary key (`ON CONFLICT DO NOTHING` waits for the other and then skips); writers of one
//! channel take turns on its `channel_offsets` row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    change::ChangeEvent,
    room::{Room, RoomId, RoomMessage, RoomMessageId},
    store::{RoomStore, StoreError},
    user::UserId,
};

use super::{
    PgStore, err,
    outbox::{Events, insert_events, with_events},
};
use crate::{decode, error::missing_as_not_found};

/// A write's error, with a missing room or user (a foreign key) as `NotFound`.
fn missing(e: sqlx::Error) -> StoreError {
    missing_as_not_found(e, err)
}

#[async_trait]
impl RoomStore for PgStore {
    async fn create_room(&self, room: &Room, events: &[ChangeEvent]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("INSERT INTO rooms (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(room.id.0)
            .bind(room.name.as_str())
            .bind(room.owner.0)
            .bind(room.created_at)
            .execute(&mut *tx)
            .await
            .map_err(missing)?;
        sqlx::query("INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)")
            .bind(room.id.0)
            .bind(room.owner.0)
            .bind(room.created_at)
            .execute(&mut *tx)
            .await
            .map_err(missing)?;
        insert_events(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn rooms_of(&self, user: UserId, after: Option<RoomId>, limit: u32) -> Result<Vec<Room>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.* FROM room_members m JOIN rooms r ON r.id = m.room_id \
             WHERE m.user_id = $1 AND ($2::uuid IS NULL OR m.room_id > $2) ORDER BY m.room_id LIMIT $3",
        )
        .bind(user.0)
        .bind(after.map(|a| a.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode::room).collect()
    }

    async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
        let row = sqlx::query("SELECT * FROM rooms WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(decode::room).transpose()
    }

    async fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, StoreError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)")
            .bind(room.0)
            .bind(user.0)
            .fetch_one(&self.pool)
            .await
            .map_err(err)
    }

    async fn add_member(
        &self,
        room: RoomId,
        user: UserId,
        events: &[ChangeEvent],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let done = sqlx::query(
            "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3) \
             ON CONFLICT (room_id, user_id) DO NOTHING",
        )
        .bind(room.0)
        .bind(user.0)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(missing)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_events(&mut tx, events).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn remove_member(&self, room: RoomId, user: UserId, events: &[ChangeEvent]) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let done = sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
            .bind(room.0)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_events(&mut tx, events).await?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn post_message(&self, m: &RoomMessage, events: &[ChangeEvent]) -> Result<(), StoreError> {
        let events = Events::new(events);
        let write = events
            .query(with_events!(
                "INSERT INTO room_messages (id, room_id, author_id, body, created_at) SELECT $7, $8, $9, $10, $11 \
                 WHERE EXISTS (SELECT 1 FROM room_members WHERE room_id = $8 AND user_id = $9) RETURNING 1"
            ))
            .bind(m.id.0)
            .bind(m.room.0)
            .bind(m.author.0)
            .bind(m.body.as_str())
            .bind(m.created_at);
        match self.write_with_events(write, &events).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn room_messages(
        &self,
        room: RoomId,
        before: Option<RoomMessageId>,
        limit: u32,
    ) -> Result<Vec<RoomMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM room_messages WHERE room_id = $1 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(room.0)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(decode::room_message).collect()
    }
}
