//! Chat rooms, their members and messages, in both adapters. Concurrent adds of one member meet
//! on the primary key (`ON CONFLICT DO NOTHING`: PostgreSQL waits for the other and then skips);
//! a message is a [`Write`] stored with its events only when its author is a member.

use super::Write;

pub(crate) const CREATE_ROOM: &str = "INSERT INTO rooms (id, name, owner_id, created_at) VALUES ($1, $2, $3, $4)";

pub(crate) const JOIN: &str = "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)";

pub(crate) const JOIN_ONCE: &str = "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3) \
     ON CONFLICT (room_id, user_id) DO NOTHING";

pub(crate) const ROOMS_OF: &str = "SELECT r.* FROM room_members m JOIN rooms r ON r.id = m.room_id \
     WHERE m.user_id = $1 AND ($2 IS NULL OR m.room_id > $2) ORDER BY m.room_id LIMIT $3";

pub(crate) const ROOM: &str = "SELECT * FROM rooms WHERE id = $1";

pub(crate) const IS_MEMBER: &str = "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)";

pub(crate) const LEAVE: &str = "DELETE FROM room_members WHERE room_id = $1 AND user_id = $2";

/// Posts message `$1` to room `$2` by `$3` if they are a member.
pub(crate) static POST_MESSAGE: Write = Write::new(
    "INSERT INTO room_messages (id, room_id, author_id, body, created_at) SELECT $1, $2, $3, $4, $5 \
     WHERE EXISTS (SELECT 1 FROM room_members WHERE room_id = $2 AND user_id = $3) RETURNING 1",
);

pub(crate) const ROOM_MESSAGES: &str = "SELECT * FROM room_messages WHERE room_id = $1 AND ($2 IS NULL OR id < $2) \
     ORDER BY id DESC LIMIT $3";

/// Implements `RoomStore` for an adapter (see [`crate::sql`]).
macro_rules! room_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};
            use herald_core::{
                change::ChangeEvent,
                room::{Room, RoomId, RoomMessage, RoomMessageId},
                store::{RoomStore, StoreError},
                user::UserId,
            };
            use $crate::{
                columns::Stamp,
                decode,
                error::missing_as_not_found,
                sql::{Adapter, rooms::*},
            };

            /// A write's error, with a missing room or user (a foreign key) as `NotFound`.
            fn missing(e: sqlx::Error) -> StoreError {
                missing_as_not_found(e, <$store>::err)
            }

            #[async_trait]
            impl RoomStore for $store {
                async fn create_room(&self, room: &Room, events: &[ChangeEvent]) -> Result<(), StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    sqlx::query(CREATE_ROOM)
                        .bind(room.id.0)
                        .bind(room.name.as_str())
                        .bind(room.owner.0)
                        .bind(Stamp(room.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(missing)?;
                    sqlx::query(JOIN)
                        .bind(room.id.0)
                        .bind(room.owner.0)
                        .bind(Stamp(room.created_at))
                        .execute(&mut *tx)
                        .await
                        .map_err(missing)?;
                    Self::insert_events(&mut tx, events).await?;
                    self.commit(tx).await
                }

                async fn rooms_of(
                    &self,
                    user: UserId,
                    after: Option<RoomId>,
                    limit: u32,
                ) -> Result<Vec<Room>, StoreError> {
                    let rows = sqlx::query(ROOMS_OF)
                        .bind(user.0)
                        .bind(after.map(|a| a.0))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::room).collect()
                }

                async fn room(&self, id: RoomId) -> Result<Option<Room>, StoreError> {
                    let row = sqlx::query(ROOM).bind(id.0).fetch_optional(self.reader()).await.map_err(Self::err)?;
                    row.as_ref().map(decode::room).transpose()
                }

                async fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, StoreError> {
                    sqlx::query_scalar(IS_MEMBER)
                        .bind(room.0)
                        .bind(user.0)
                        .fetch_one(self.reader())
                        .await
                        .map_err(Self::err)
                }

                async fn add_member(
                    &self,
                    room: RoomId,
                    user: UserId,
                    events: &[ChangeEvent],
                    now: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let done = sqlx::query(JOIN_ONCE)
                        .bind(room.0)
                        .bind(user.0)
                        .bind(Stamp(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(missing)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    Self::insert_events(&mut tx, events).await?;
                    self.commit(tx).await?;
                    Ok(true)
                }

                async fn remove_member(
                    &self,
                    room: RoomId,
                    user: UserId,
                    events: &[ChangeEvent],
                ) -> Result<bool, StoreError> {
                    let mut tx = self.writer().begin().await.map_err(Self::err)?;
                    let done =
                        sqlx::query(LEAVE).bind(room.0).bind(user.0).execute(&mut *tx).await.map_err(Self::err)?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    Self::insert_events(&mut tx, events).await?;
                    self.commit(tx).await?;
                    Ok(true)
                }

                async fn post_message(&self, m: &RoomMessage, events: &[ChangeEvent]) -> Result<(), StoreError> {
                    let written = self
                        .write_with_events(&POST_MESSAGE, events, |q| {
                            q.bind(m.id.0)
                                .bind(m.room.0)
                                .bind(m.author.0)
                                .bind(m.body.as_str())
                                .bind(Stamp(m.created_at))
                        })
                        .await?;
                    match written {
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
                    let rows = sqlx::query(ROOM_MESSAGES)
                        .bind(room.0)
                        .bind(before.map(|b| b.0))
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(Self::err)?;
                    rows.iter().map(decode::room_message).collect()
                }
            }
        };
    };
}
pub(crate) use room_store;
