//! Streams and session cursors, for every store.

use herald_core::{
    room::RoomId,
    store::Store,
    stream::{SessionCursor, SessionId, StreamName},
    user::UserId,
};

use super::{event, new_task, now, owner};

fn cursor(user: UserId, session: &str, stream: StreamName, offset: i64) -> SessionCursor {
    SessionCursor { user, session: SessionId::parse(session).expect("session"), stream, offset }
}

pub async fn a_channel_stream_reads_by_offset_and_reports_its_head(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let channel = StreamName::User(ada);
    let empty = store.stream_head(channel).await.expect("head");
    assert_eq!((empty.offset, empty.first), (0, 1), "a channel without events");
    assert!(!empty.epoch.is_empty());

    let events: Vec<_> = (0..5).map(|_| event(ada, "task.updated")).collect();
    store.create_task(&new_task(ada, "Milk"), &events).await.expect("create");
    store.create_task(&new_task(bob, "Tea"), &[event(bob, "task.created")]).await.expect("other channel");

    let head = store.stream_head(channel).await.expect("head");
    assert_eq!((head.offset, head.first), (5, 1));
    assert_eq!(head.epoch, empty.epoch, "one store, one epoch");
    let read = store.read_stream(channel, 2, 2).await.expect("read");
    assert_eq!(read.iter().map(|e| e.stream_offset).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(read[0].event, events[2], "every field of the event");
    assert_eq!(store.read_stream(channel, 5, 10).await.expect("tail").len(), 0);
    assert_eq!(store.read_stream(StreamName::User(bob), 0, 10).await.expect("bob").len(), 1, "channels are apart");
}

pub async fn trimming_keeps_the_newest_published_events_of_each_channel(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let events: Vec<_> = (0..6).map(|_| event(ada, "task.updated")).collect();
    store.create_task(&new_task(ada, "Milk"), &events).await.expect("create");
    store.create_task(&new_task(bob, "Tea"), &[event(bob, "task.created")]).await.expect("bob");
    let all = store.read_outbox(0, 100).await.expect("outbox");
    // Offsets 1..=4 of ada's channel are published; 5 and 6 and bob's one are not.
    let published: Vec<i64> =
        all.iter().filter(|e| e.event.stream == StreamName::User(ada)).take(4).map(|e| e.seq).collect();
    store.mark_published(&published, now()).await.expect("mark");

    let trimmed = store.trim_streams(3, 100).await.expect("trim");
    assert_eq!(trimmed, 3, "offsets 1..=3 are more than 3 behind the head (6)");
    let head = store.stream_head(StreamName::User(ada)).await.expect("head");
    assert_eq!((head.offset, head.first), (6, 4));
    assert!(head.holds_after(3) && !head.holds_after(2));
    assert_eq!(store.trim_streams(1, 100).await.expect("trim again"), 1, "unpublished events are never trimmed");
    assert_eq!(store.read_stream(StreamName::User(bob), 0, 10).await.expect("bob").len(), 1);
}

pub async fn session_cursors_are_set_advanced_and_expired(store: &dyn Store) {
    let ada = owner(store, "ada@example.org").await;
    let bob = owner(store, "bob@example.org").await;
    let tab = SessionId::parse("tab-1").expect("session");
    let channel = StreamName::User(ada);
    assert_eq!(store.session_cursor(ada, &tab, channel).await.expect("none"), None);

    store.set_cursor(&cursor(ada, "tab-1", channel, 4), now()).await.expect("set");
    assert_eq!(store.session_cursor(ada, &tab, channel).await.expect("get"), Some(4));
    store
        .advance_cursors(
            &[
                cursor(ada, "tab-1", channel, 7),
                cursor(ada, "tab-1", channel, 6),
                cursor(ada, "tab-2", channel, 2),
                cursor(bob, "tab-1", StreamName::Room(RoomId::new()), 1),
            ],
            now(),
        )
        .await
        .expect("advance");
    assert_eq!(store.session_cursor(ada, &tab, channel).await.expect("get"), Some(7), "the highest of a batch");
    store.advance_cursors(&[cursor(ada, "tab-1", channel, 5)], now()).await.expect("behind");
    assert_eq!(store.session_cursor(ada, &tab, channel).await.expect("get"), Some(7), "never moves back");
    let tab2 = SessionId::parse("tab-2").expect("session");
    assert_eq!(store.session_cursor(ada, &tab2, channel).await.expect("get"), Some(2), "sessions are apart");
    store.set_cursor(&cursor(ada, "tab-1", channel, 3), now()).await.expect("set back");
    assert_eq!(store.session_cursor(ada, &tab, channel).await.expect("get"), Some(3), "a subscription may rewind");

    let later = now() + chrono::Duration::hours(1);
    store.advance_cursors(&[cursor(ada, "tab-2", channel, 3)], later).await.expect("touch tab-2");
    let expired = store.expire_cursors(now() + chrono::Duration::minutes(30), 100).await.expect("expire");
    assert_eq!(expired, 2, "tab-1 of ada and bob's cursor were idle");
    assert_eq!(store.session_cursor(ada, &tab, channel).await.expect("gone"), None);
    assert_eq!(store.session_cursor(ada, &tab2, channel).await.expect("kept"), Some(3));
}

pub async fn writers_of_many_channels_in_any_order_never_deadlock(store: &dyn Store) {
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(owner(store, &format!("u{i}@example.org")).await);
    }
    // Sixteen transactions, each writing to every channel, in sixteen different orders.
    let writes = (0..16).map(|i| {
        let mut events: Vec<_> = users.iter().map(|u| event(*u, &format!("w{i}"))).collect();
        events.rotate_left(i % 4);
        if i % 2 == 1 {
            events.reverse();
        }
        let task = new_task(users[0], "t");
        async move { store.create_task(&task, &events).await }
    });
    for result in futures::future::join_all(writes).await {
        result.expect("no write fails, none deadlocks");
    }
    for user in &users {
        let read = store.read_stream(StreamName::User(*user), 0, 100).await.expect("read");
        assert_eq!(read.iter().map(|e| e.stream_offset).collect::<Vec<_>>(), (1..=16).collect::<Vec<i64>>());
    }

    // Within one transaction, a channel's events keep their order.
    let (a, b) = (users[0], users[1]);
    let batch = [event(a, "first"), event(b, "other"), event(a, "second")];
    store.create_task(&new_task(a, "t"), &batch).await.expect("write");
    let tail = store.read_stream(StreamName::User(a), 16, 10).await.expect("read");
    let kinds: Vec<_> = tail.iter().map(|e| (e.stream_offset, e.event.kind.as_str())).collect();
    assert_eq!(kinds, [(17, "first"), (18, "second")]);
}
