//! `rooms.*`: chat rooms. Only members see a room: to anyone else it answers `not_found`, never
//! `forbidden`. Every write stores its events in the same transaction: `room.created` to the
//! creator's `user:` stream, `room.member_added` and `room.member_removed` to the room's stream
//! and to the user's, `room.message` to the room's stream.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::shapes::{Deleted, ListInput};
use crate::{
    change::ChangeEvent,
    command::{Access, Command, Ctx},
    error::{ApiError, ErrorCode},
    page::{self, Page},
    room::{MEMBER_REMOVED, MessageBody, Room, RoomId, RoomMessage, RoomMessageId, RoomName},
    services::Services,
    store::StoreError,
    stream::StreamName,
    user::UserId,
};

/// A room as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "name": "General", "owner": "0192f0c0-0000-7000-8000-000000000001", "created_at": "2026-11-22T10:00:00Z"}))]
pub struct RoomView {
    pub id: Uuid,
    pub name: String,
    /// The user who created the room.
    pub owner: Uuid,
    pub created_at: DateTime<Utc>,
}

impl From<&Room> for RoomView {
    fn from(r: &Room) -> Self {
        Self { id: r.id.0, name: r.name.as_str().to_owned(), owner: r.owner.0, created_at: r.created_at }
    }
}

/// A room message as the API shows it (also the data of a `room.message` event).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": "0192f0c2-0000-7000-8000-000000000002", "room": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "author": "0192f0c0-0000-7000-8000-000000000001", "body": "Hello!", "created_at": "2026-11-22T10:01:00Z"}))]
#[schema(as = rooms::MessageView)]
pub struct MessageView {
    pub id: Uuid,
    pub room: Uuid,
    pub author: Uuid,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl From<&RoomMessage> for MessageView {
    fn from(m: &RoomMessage) -> Self {
        Self {
            id: m.id.0,
            room: m.room.0,
            author: m.author.0,
            body: m.body.as_str().to_owned(),
            created_at: m.created_at,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such room")
}

fn no_such_user() -> ApiError {
    ApiError::invalid_field("user", "no such user")
}

/// Fails with `not_found` unless `user` is a member of `room`.
async fn check_member(svc: &Services, room: RoomId, user: UserId) -> Result<(), ApiError> {
    if svc.store.is_member(room, user).await? { Ok(()) } else { Err(not_found()) }
}

/// Input of `rooms.create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "General"}))]
pub struct CreateRoomInput {
    #[schema(value_type = String, min_length = 1, max_length = 100)]
    pub name: RoomName,
}

/// Creates a room; the caller owns it and is its first member.
#[derive(Debug)]
pub struct Create;

#[async_trait]
impl Command for Create {
    const NAME: &'static str = "rooms.create";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Create a chat room (you become its owner and first member)";
    type Input = CreateRoomInput;
    type Output = RoomView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: CreateRoomInput) -> Result<RoomView, ApiError> {
        let now = svc.clock.now();
        let room = Room { id: RoomId::new(), name: input.name, owner: cx.identity()?.user_id, created_at: now };
        let view = RoomView::from(&room);
        let created = ChangeEvent::for_user(room.owner, "room.created", json!(view), now);
        svc.store.create_room(&room, &[created]).await?;
        Ok(view)
    }
}

/// Lists the rooms the caller is a member of, oldest first.
#[derive(Debug)]
pub struct List;

#[async_trait]
impl Command for List {
    const NAME: &'static str = "rooms.list";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "List the rooms you are a member of";
    type Input = ListInput;
    type Output = Page<RoomView>;

    async fn run(&self, svc: &Services, cx: &Ctx, input: ListInput) -> Result<Page<RoomView>, ApiError> {
        let (limit, after) = page::request::<RoomId>(input.limit, input.cursor.as_deref())?;
        let rows = svc.store.rooms_of(cx.identity()?.user_id, after, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |r| r.id.0, |r| RoomView::from(&r)))
    }
}

/// Input of `rooms.add_member` and `rooms.remove_member`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"room": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "user": "0192f0c0-0000-7000-8000-000000000003"}))]
pub struct MemberInput {
    /// The room's id.
    pub room: Uuid,
    /// The user's id.
    pub user: Uuid,
}

/// A membership, and whether this call made it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub room: Uuid,
    pub user: Uuid,
    /// False when the user was a member already (nothing changed).
    pub added: bool,
}

/// Adds a user to a room. Only the room's owner adds members, so nobody is put into a room (and
/// onto its stream) by a stranger: another member gets `forbidden`, a non-member `not_found`.
#[derive(Debug)]
pub struct AddMember;

#[async_trait]
impl Command for AddMember {
    const NAME: &'static str = "rooms.add_member";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Add a user to a room you own (other members: 403; unknown user: 422 on `user`)";
    type Input = MemberInput;
    type Output = MemberView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: MemberInput) -> Result<MemberView, ApiError> {
        let (room, user) = (RoomId(input.room), UserId(input.user));
        let me = cx.identity()?.user_id;
        check_member(svc, room, me).await?;
        if svc.store.room(room).await?.ok_or_else(not_found)?.owner != me {
            return Err(ApiError::new(ErrorCode::Forbidden, "only the room's owner may add members"));
        }
        if svc.store.user_by_id(user).await?.is_none() {
            return Err(no_such_user());
        }
        let now = svc.clock.now();
        let data = json!({"room": room, "user": user});
        let events = [
            ChangeEvent::on_stream(StreamName::Room(room), "room.member_added", data.clone(), now),
            ChangeEvent::for_user(user, "room.member_added", data, now),
        ];
        // Rooms are never deleted and the caller's membership was just seen, so a missing row
        // here is the user, gone since the check.
        let added = match svc.store.add_member(room, user, &events, now).await {
            Err(StoreError::NotFound) => return Err(no_such_user()),
            other => other?,
        };
        Ok(MemberView { room: room.0, user: user.0, added })
    }
}

/// Removes a member from a room: any member may leave, and the room's owner may remove anyone
/// else. The owner stays (`conflict`). The removed user's open sessions stop receiving the room's
/// stream at the `room.member_removed` event, which goes to the room and to them.
#[derive(Debug)]
pub struct RemoveMember;

#[async_trait]
impl Command for RemoveMember {
    const NAME: &'static str = "rooms.remove_member";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Leave a room, or, as its owner, remove a member (the owner stays)";
    type Input = MemberInput;
    type Output = Deleted;

    async fn run(&self, svc: &Services, cx: &Ctx, input: MemberInput) -> Result<Deleted, ApiError> {
        let (room_id, user) = (RoomId(input.room), UserId(input.user));
        let me = cx.identity()?.user_id;
        check_member(svc, room_id, me).await?;
        let room = svc.store.room(room_id).await?.ok_or_else(not_found)?;
        if user == room.owner {
            return Err(ApiError::new(ErrorCode::Conflict, "the room's owner cannot leave or be removed"));
        }
        if user != me && me != room.owner {
            return Err(ApiError::new(ErrorCode::Forbidden, "only the room's owner may remove another member"));
        }
        let now = svc.clock.now();
        let data = json!({"room": room_id, "user": user});
        let events = [
            ChangeEvent::on_stream(StreamName::Room(room_id), MEMBER_REMOVED, data.clone(), now),
            ChangeEvent::for_user(user, MEMBER_REMOVED, data, now),
        ];
        if svc.store.remove_member(room_id, user, &events).await? {
            Ok(Deleted {})
        } else {
            Err(ApiError::new(ErrorCode::NotFound, "the user is not a member of this room"))
        }
    }
}

/// Input of `rooms.post_message`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"room": "0192f0c1-5c3a-7b8e-9d4f-1a2b3c4d5e6f", "body": "Hello!"}))]
pub struct PostMessageInput {
    /// The room's id.
    pub room: Uuid,
    #[schema(value_type = String, min_length = 1, max_length = 4000)]
    pub body: MessageBody,
}

/// Posts a message to a room the caller is a member of.
#[derive(Debug)]
pub struct PostMessage;

#[async_trait]
impl Command for PostMessage {
    const NAME: &'static str = "rooms.post_message";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "Post a message to a room you are a member of";
    type Input = PostMessageInput;
    type Output = MessageView;

    async fn run(&self, svc: &Services, cx: &Ctx, input: PostMessageInput) -> Result<MessageView, ApiError> {
        let now = svc.clock.now();
        let message = RoomMessage {
            id: RoomMessageId::new(),
            room: RoomId(input.room),
            author: cx.identity()?.user_id,
            body: input.body,
            created_at: now,
        };
        let view = MessageView::from(&message);
        let event = ChangeEvent::on_stream(StreamName::Room(message.room), "room.message", json!(view), now);
        // The store refuses a non-member's message itself, in the same statement.
        match svc.store.post_message(&message, &[event]).await {
            Err(StoreError::NotFound) => Err(not_found()),
            other => other.map(|()| view).map_err(ApiError::from),
        }
    }
}

/// Input of `rooms.messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomMessagesInput {
    /// The room's id.
    pub room: Uuid,
    /// Items per page (default 50).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: the next page holds older messages.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// Lists a room's messages, newest first.
#[derive(Debug)]
pub struct Messages;

#[async_trait]
impl Command for Messages {
    const NAME: &'static str = "rooms.messages";
    const ACCESS: Access = Access::User;
    const SUMMARY: &'static str = "List a room's messages, newest first (next pages are older)";
    type Input = RoomMessagesInput;
    type Output = Page<MessageView>;

    async fn run(&self, svc: &Services, cx: &Ctx, input: RoomMessagesInput) -> Result<Page<MessageView>, ApiError> {
        let room = RoomId(input.room);
        let (limit, before) = page::request::<RoomMessageId>(input.limit, input.cursor.as_deref())?;
        check_member(svc, room, cx.identity()?.user_id).await?;
        let rows = svc.store.room_messages(room, before, limit + 1).await?;
        Ok(Page::from_rows(rows, limit, |m| m.id.0, |m| MessageView::from(&m)))
    }
}
