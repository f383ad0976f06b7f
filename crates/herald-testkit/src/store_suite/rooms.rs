//! The rooms part of the store suite: the owner as first member, members added once, messages
//! for members only and newest first, and every event with the next offset of its channel.

use herald_core::{
    change::{ChangeEvent, OutboxEvent},
    room::{MessageBody, Room, RoomId, RoomMessage, RoomMessageId, RoomName},
    store::{Store, StoreError},
    stream::StreamName,
    user::UserId,
};
use serde_json::json;

use super::{now, owner};

/// A room of `owner`, not yet stored.
pub fn new_room(owner: UserId, name: &str) -> Room {
    Room { id: RoomId::new(), name: RoomName::parse(name).expect("room name"), owner, created_at: now() }
}

/// A message of `author` in `room`, not yet stored.
pub fn new_message(room: RoomId, author: UserId, body: &str) -> RoomMessage {
    RoomMessage {
        id: RoomMessageId::new(),
        room,
        author,
        body: MessageBody::parse(body).expect("message body"),
        created_at: now(),
    }
}

fn on_room(room: RoomId, kind: &str) -> ChangeEvent {
    ChangeEvent::on_stream(StreamName::Room(room), kind, json!({"kind": kind}), now())
}

async fn outbox(store: &dyn Store) -> Vec<OutboxEvent> {
    store.read_outbox(0, 1000).await.expect("outbox")
}

/// (kind, stream, offset) of every outbox event, in order.
async fn written(store: &dyn Store) -> Vec<(String, StreamName, i64)> {
    outbox(store).await.into_iter().map(|e| (e.event.kind, e.event.stream, e.stream_offset)).collect()
}

pub async fn a_room_is_created_with_its_owner_as_first_member(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let room = new_room(ada, "General");
    let created = ChangeEvent::for_user(ada, "room.created", json!({"id": room.id}), now());
    store.create_room(&room, std::slice::from_ref(&created)).await.expect("create");

    assert_eq!(store.room(room.id).await.expect("read"), Some(room.clone()), "every field round-trips");
    assert_eq!(store.room(RoomId::new()).await.expect("read"), None);
    assert!(store.is_member(room.id, ada).await.expect("ada"));
    assert!(!store.is_member(room.id, bob).await.expect("bob"));
    assert!(!store.is_member(RoomId::new(), ada).await.expect("no such room"));
    assert_eq!(store.rooms_of(ada, None, 10).await.expect("ada's"), std::slice::from_ref(&room));
    assert!(store.rooms_of(bob, None, 10).await.expect("bob's").is_empty());
    assert_eq!(outbox(store).await.into_iter().map(|e| e.event).collect::<Vec<_>>(), [created]);

    // An owner who is not a user is refused cleanly, and leaves nothing behind.
    let ghost = new_room(UserId::new(), "Ghost town");
    let refused = store.create_room(&ghost, &[on_room(ghost.id, "room.created")]).await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    assert_eq!(store.room(ghost.id).await.expect("read"), None);
    assert!(store.create_room(&room, &[]).await.is_err(), "the same id twice");
    assert_eq!(outbox(store).await.len(), 1, "refused writes wrote no events");
}

pub async fn a_member_is_added_once_and_unknown_ones_are_not_found(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let room = new_room(ada, "General");
    store.create_room(&room, &[]).await.expect("create");

    let events =
        [on_room(room.id, "room.member_added"), ChangeEvent::for_user(bob, "room.member_added", json!({}), now())];
    assert!(store.add_member(room.id, bob, &events, now()).await.expect("add bob"));
    assert!(store.is_member(room.id, bob).await.expect("bob"));
    assert_eq!(store.rooms_of(bob, None, 10).await.expect("bob's"), std::slice::from_ref(&room));
    let again = [on_room(room.id, "room.member_added")];
    assert!(!store.add_member(room.id, bob, &again, now()).await.expect("add bob again"), "a member already");
    assert!(!store.add_member(room.id, ada, &again, now()).await.expect("add the owner"), "a member already");
    assert_eq!(outbox(store).await.len(), 2, "adding a member again wrote nothing");

    let unknown_user = store.add_member(room.id, UserId::new(), &again, now()).await;
    assert!(matches!(unknown_user, Err(StoreError::NotFound)), "{unknown_user:?}");
    let unknown_room = store.add_member(RoomId::new(), bob, &again, now()).await;
    assert!(matches!(unknown_room, Err(StoreError::NotFound)), "{unknown_room:?}");
    assert_eq!(outbox(store).await.len(), 2, "refused adds wrote nothing");

    // Racing adds of one user: exactly one adds.
    let carol = owner(store, "carol@example.org").await;
    let adds = (0..6).map(|_| store.add_member(room.id, carol, &again, now()));
    let results = futures::future::join_all(adds).await;
    let added: Vec<bool> = results.into_iter().map(|r| r.expect("add carol")).collect();
    assert_eq!(added.iter().filter(|a| **a).count(), 1, "{added:?}");
    assert_eq!(outbox(store).await.len(), 3);
}

pub async fn a_removed_member_is_gone_once_and_their_messages_stay(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let room = new_room(ada, "General");
    store.create_room(&room, &[]).await.expect("create");
    store.add_member(room.id, bob, &[], now()).await.expect("add bob");
    let hello = new_message(room.id, bob, "hello");
    store.post_message(&hello, &[]).await.expect("bob posts");

    let removed =
        [on_room(room.id, "room.member_removed"), ChangeEvent::for_user(bob, "room.member_removed", json!({}), now())];
    assert!(store.remove_member(room.id, bob, &removed).await.expect("remove bob"));
    assert!(!store.is_member(room.id, bob).await.expect("bob"));
    assert!(store.rooms_of(bob, None, 10).await.expect("bob's").is_empty());
    assert!(store.is_member(room.id, ada).await.expect("ada stays"));
    let refused = store.post_message(&new_message(room.id, bob, "still here?"), &[]).await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "a former member cannot post: {refused:?}");
    assert_eq!(store.room_messages(room.id, None, 10).await.expect("messages"), [hello], "their messages stay");
    assert_eq!(outbox(store).await.len(), 2);

    let again = [on_room(room.id, "room.member_removed")];
    assert!(!store.remove_member(room.id, bob, &again).await.expect("remove bob again"), "not a member");
    assert!(!store.remove_member(RoomId::new(), ada, &again).await.expect("no such room"));
    assert!(!store.remove_member(room.id, UserId::new(), &again).await.expect("no such user"));
    assert_eq!(outbox(store).await.len(), 2, "removing a non-member wrote nothing");
    assert!(store.add_member(room.id, bob, &[], now()).await.expect("bob comes back"), "and may be added again");
}

pub async fn room_events_take_consecutive_offsets_on_the_room_channel(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let room = new_room(ada, "General");
    let other = new_room(bob, "Elsewhere");
    store.create_room(&room, &[ChangeEvent::for_user(ada, "room.created", json!({}), now())]).await.expect("create");
    store.create_room(&other, &[on_room(other.id, "room.created")]).await.expect("create other");
    let added =
        [on_room(room.id, "room.member_added"), ChangeEvent::for_user(bob, "room.member_added", json!({}), now())];
    store.add_member(room.id, bob, &added, now()).await.expect("add bob");
    for (author, body) in [(ada, "hi"), (bob, "hello"), (ada, "bye")] {
        let message = new_message(room.id, author, body);
        store.post_message(&message, &[on_room(room.id, "room.message")]).await.expect("post");
    }
    let (stream, other_stream) = (StreamName::Room(room.id), StreamName::Room(other.id));
    let on = |kind: &str, stream: StreamName, offset| (kind.to_owned(), stream, offset);
    let (ada_stream, bob_stream) = (StreamName::User(ada), StreamName::User(bob));
    assert_eq!(
        written(store).await,
        [
            on("room.created", ada_stream, 1),
            on("room.created", other_stream, 1),
            on("room.member_added", stream, 1),
            on("room.member_added", bob_stream, 1),
            on("room.message", stream, 2),
            on("room.message", stream, 3),
            on("room.message", stream, 4),
        ],
        "each stream counts its own events, gap-free"
    );
}

pub async fn messages_are_for_members_only_and_list_newest_first_page_by_page(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let eve = owner(store, "eve@example.org").await;
    let room = new_room(ada, "General");
    let elsewhere = new_room(ada, "Elsewhere");
    store.create_room(&room, &[]).await.expect("create");
    store.create_room(&elsewhere, &[]).await.expect("create");
    let mut posted = Vec::new();
    for i in 0..5 {
        let message = new_message(room.id, ada, &format!("message {i}\nline two"));
        store.post_message(&message, &[]).await.expect("post");
        posted.push(message);
    }
    store.post_message(&new_message(elsewhere.id, ada, "not here"), &[]).await.expect("post elsewhere");

    let intruder = new_message(room.id, eve, "let me in");
    let refused = store.post_message(&intruder, &[on_room(room.id, "room.message")]).await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    let nowhere = store.post_message(&new_message(RoomId::new(), ada, "void"), &[]).await;
    assert!(matches!(nowhere, Err(StoreError::NotFound)), "{nowhere:?}");
    assert!(outbox(store).await.is_empty(), "refused posts wrote no events");

    let newest: Vec<RoomMessage> = posted.iter().rev().cloned().collect();
    assert_eq!(store.room_messages(room.id, None, 10).await.expect("all"), newest, "every field round-trips");
    let first = store.room_messages(room.id, None, 2).await.expect("page 1");
    assert_eq!(first, newest[..2]);
    let second = store.room_messages(room.id, Some(first[1].id), 2).await.expect("page 2");
    assert_eq!(second, newest[2..4]);
    let last = store.room_messages(room.id, Some(second[1].id), 2).await.expect("page 3");
    assert_eq!(last, newest[4..]);
    assert!(store.room_messages(room.id, Some(posted[0].id), 2).await.expect("past the end").is_empty());
    assert!(store.room_messages(RoomId::new(), None, 2).await.expect("no such room").is_empty());
}

pub async fn a_users_rooms_list_in_id_order_page_by_page(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let mut rooms = Vec::new();
    for i in 0..5 {
        let room = new_room(if i == 2 { bob } else { ada }, &format!("room {i}"));
        store.create_room(&room, &[]).await.expect("create");
        rooms.push(room);
    }
    store.add_member(rooms[2].id, ada, &[], now()).await.expect("ada joins bob's room");
    store.add_member(rooms[4].id, bob, &[], now()).await.expect("bob joins");

    let first = store.rooms_of(ada, None, 3).await.expect("page 1");
    assert_eq!(first, rooms[..3]);
    let rest = store.rooms_of(ada, Some(rooms[2].id), 3).await.expect("page 2");
    assert_eq!(rest, rooms[3..]);
    let bobs = store.rooms_of(bob, None, 10).await.expect("bob's");
    assert_eq!(bobs.iter().map(|r| r.id).collect::<Vec<_>>(), [rooms[2].id, rooms[4].id]);
}
