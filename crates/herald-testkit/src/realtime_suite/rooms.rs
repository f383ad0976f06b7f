//! The real-time suite's rooms: members read a room's stream live; a removed member's last event.

#[allow(unused_imports, reason = "the suite's helpers and imports, shared")]
use super::*;

/// A room's members read its channel: messages posted over REST or over the socket reach every
/// member's session; a non-member is refused; being added shows on the new member's own channel.
pub async fn room_messages_reach_every_member_live(cluster: &Cluster) {
    let node = cluster.serve().await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let bob = cluster.account(&node, "bob@example.org").await;
    let eve = cluster.account(&node, "eve@example.org").await;
    let mut bob_ws = connect(&node, &bob, "bob-tab").await;
    bob_ws.subscribe(&channel(&bob), None).await;

    let (status, room) = cluster.post(&node, &ada, "/api/v1/rooms", &json!({"name": "general"})).await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["id"].as_str().expect("room id").to_owned();
    let room_stream = format!("room:{room_id}");
    let (status, added) =
        cluster.post(&node, &ada, &format!("/api/v1/rooms/{room_id}/members"), &json!({"user": bob.id})).await;
    assert_eq!(status, 201, "{added}");
    let told = bob_ws.next_event(WAIT).await.expect("bob learns of the room");
    assert_eq!(
        (told["type"].as_str(), told["data"]["room"].as_str()),
        (Some("room.member_added"), Some(room_id.as_str()))
    );

    let joined = bob_ws.subscribe(&room_stream, None).await;
    assert_eq!(joined["ok"], true, "a member may read the room: {joined}");
    let mut eve_ws = connect(&node, &eve, "eve-tab").await;
    let refused = eve_ws.subscribe(&room_stream, None).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");

    let (status, _) =
        cluster.post(&node, &ada, &format!("/api/v1/rooms/{room_id}/messages"), &json!({"body": "hello"})).await;
    assert_eq!(status, 201);
    let message = bob_ws.next_event(WAIT).await.expect("the message");
    assert_eq!(message["type"], "room.message");
    assert_eq!(message["channel"], room_stream.as_str());
    assert_eq!(message["data"]["body"], "hello");
    assert_eq!(message["data"]["author"], ada.id.to_string());

    let reply = bob_ws.call("rooms.post_message", json!({"room": room_id, "body": "hi ada"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let echoed = bob_ws.next_event(WAIT).await.expect("bob's own message comes back on the room");
    assert_eq!(echoed["data"]["body"], "hi ada");
    assert_eq!(echoed["offset"].as_i64(), message["offset"].as_i64().map(|o| o + 1), "the room's offsets follow");
    let denied = eve_ws.call("rooms.post_message", json!({"room": room_id, "body": "let me in"})).await;
    assert_eq!(denied["error"]["code"], "not_found", "{denied}");
    assert!(eve_ws.next_event(QUIET).await.is_none(), "nothing of the room reached eve");
    bob_ws.close().await;
    eve_ws.close().await;
    node.stop().await;
}

/// Removing a member: the owner removes anyone but themself, a member leaves; the removed user's
/// session gets `room.member_removed` as the room's last event and nothing after it, and may not
/// subscribe again until added again, when it resumes after the removal.
pub async fn a_removed_member_stops_receiving_the_room(cluster: &Cluster) {
    let node = cluster.serve().await;
    let [ada, bob, carol, eve] = [
        cluster.account(&node, "ada@example.org").await,
        cluster.account(&node, "bob@example.org").await,
        cluster.account(&node, "carol@example.org").await,
        cluster.account(&node, "eve@example.org").await,
    ];
    let (_, room) = cluster.post(&node, &ada, "/api/v1/rooms", &json!({"name": "general"})).await;
    let room_id = room["id"].as_str().expect("room id").to_owned();
    let room_stream = format!("room:{room_id}");
    let members = format!("/api/v1/rooms/{room_id}/members");
    for member in [&bob, &carol] {
        let (status, body) = cluster.post(&node, &ada, &members, &json!({"user": member.id})).await;
        assert_eq!(status, 201, "{body}");
    }
    let mut bob_ws = connect(&node, &bob, "bob-tab").await;
    let head = bob_ws.subscribe(&room_stream, None).await["offset"].as_i64().expect("offset");
    bob_ws.subscribe(&channel(&bob), None).await;

    let remove = |who: &Account, user: String| {
        let request = cluster.client.delete(node.url(&format!("{members}/{user}"))).bearer_auth(&who.token);
        async move {
            let reply = request.send().await.expect("delete");
            let status = reply.status().as_u16();
            (status, reply.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = remove(&carol, bob.id.to_string()).await;
    assert_eq!((status, &body["code"]), (403, &json!("forbidden")), "only the owner removes others: {body}");
    let (status, body) = remove(&bob, ada.id.to_string()).await;
    assert_eq!((status, &body["code"]), (409, &json!("conflict")), "the owner stays: {body}");
    let (status, body) = remove(&eve, bob.id.to_string()).await;
    assert_eq!((status, &body["code"]), (404, &json!("not_found")), "a stranger sees no room: {body}");
    let (status, body) = remove(&ada, eve.id.to_string()).await;
    assert_eq!((status, &body["code"]), (404, &json!("not_found")), "eve is no member: {body}");
    let (status, body) = remove(&ada, "not-a-uuid".to_owned()).await;
    assert!((400..500).contains(&status) && body["code"].is_string(), "{status} {body}");
    assert!(bob_ws.next_event(QUIET).await.is_none(), "refused removals wrote nothing");

    let (status, body) = remove(&ada, bob.id.to_string()).await;
    assert_eq!(status, 204, "{body}");
    let told = bob_ws.events(2, WAIT).await;
    let kinds: Vec<_> = told.iter().map(|e| (e["type"].as_str(), e["channel"].as_str())).collect();
    assert!(kinds.contains(&(Some("room.member_removed"), Some(room_stream.as_str()))), "{told:?}");
    assert!(kinds.contains(&(Some("room.member_removed"), Some(channel(&bob).as_str()))), "{told:?}");
    let removed_at = head + 1;
    let (status, _) =
        cluster.post(&node, &ada, &format!("/api/v1/rooms/{room_id}/messages"), &json!({"body": "psst"})).await;
    assert_eq!(status, 201);
    assert!(bob_ws.next_event(QUIET).await.is_none(), "nothing of the room after the removal");
    let again = bob_ws.subscribe(&room_stream, None).await;
    assert_eq!(again["error"]["code"], "forbidden", "{again}");
    let denied = bob_ws.call("rooms.post_message", json!({"room": room_id, "body": "hello?"})).await;
    assert_eq!(denied["error"]["code"], "not_found", "{denied}");
    wait_for_cursor_on(&node, &bob, "bob-tab", &room_stream, removed_at).await;

    // Carol leaves by herself, over the socket; bob is added again and resumes after his removal.
    let mut carol_ws = connect(&node, &carol, "carol-tab").await;
    let left = carol_ws.call("rooms.remove_member", json!({"room": room_id, "user": carol.id})).await;
    assert_eq!(left["ok"], true, "{left}");
    let (status, _) = cluster.post(&node, &ada, &members, &json!({"user": bob.id})).await;
    assert_eq!(status, 201);
    assert_eq!(bob_ws.next_event(WAIT).await.expect("added again")["type"], "room.member_added");
    let back = bob_ws.subscribe(&room_stream, None).await;
    assert_eq!((back["ok"].as_bool(), back["recovered"].as_bool()), (Some(true), Some(true)), "{back}");
    let since = bob_ws.events(3, WAIT).await;
    let kinds: Vec<_> = since.iter().map(|e| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["room.message", "room.member_removed", "room.member_added"], "{since:?}");
    assert_eq!(offsets(&since), [removed_at + 1, removed_at + 2, removed_at + 3]);
    bob_ws.close().await;
    carol_ws.close().await;
    node.stop().await;
}
