//! Chat rooms over real HTTP, on every store.

use herald_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

api_tests! {
    rooms_are_created_listed_joined_and_chatted_in,
    room_writes_leave_their_events_on_the_right_channels,
    outsiders_find_no_room,
    room_input_is_validated_field_by_field,
    an_unknown_user_cannot_be_added,
}

/// A user's token and id.
async fn person(app: &TestApp, email: &str) -> (String, String) {
    let token = app.user(email).await;
    let me = app.get("/api/v1/me", Some(&token)).await;
    (token, me.body["id"].as_str().expect("id").to_owned())
}

async fn create(app: &TestApp, token: &str, name: &str) -> Value {
    let reply = app.post("/api/v1/rooms", Some(token), &json!({"name": name})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

fn id(value: &Value) -> &str {
    value["id"].as_str().expect("id")
}

fn items(reply: &herald_testkit::app::Reply) -> &Vec<Value> {
    reply.body["items"].as_array().expect("items")
}

async fn add(app: &TestApp, token: &str, room: &str, user: &str) -> herald_testkit::app::Reply {
    app.post(&format!("/api/v1/rooms/{room}/members"), Some(token), &json!({"user": user})).await
}

async fn post(app: &TestApp, token: &str, room: &str, body: &str) -> herald_testkit::app::Reply {
    app.post(&format!("/api/v1/rooms/{room}/messages"), Some(token), &json!({"body": body})).await
}

async fn rooms_are_created_listed_joined_and_chatted_in(app: &TestApp) {
    let (ada, ada_id) = person(app, "ada@example.org").await;
    let (bob, bob_id) = person(app, "bob@example.org").await;
    let room = create(app, &ada, "  General ").await;
    assert_eq!((room["name"].as_str(), room["owner"].as_str()), (Some("General"), Some(ada_id.as_str())));
    let room_id = id(&room);
    assert_eq!(items(&app.get("/api/v1/rooms", Some(&ada)).await), std::slice::from_ref(&room));
    assert!(items(&app.get("/api/v1/rooms", Some(&bob)).await).is_empty(), "not bob's room yet");

    let added = add(app, &ada, room_id, &bob_id).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert_eq!(added.body, json!({"room": room_id, "user": bob_id, "added": true}));
    let again = add(app, &ada, room_id, &bob_id).await;
    assert_eq!((again.status, &again.body["added"]), (StatusCode::OK, &json!(false)), "a member already");
    // Only the owner adds: a member cannot put anyone (themselves included) into the room.
    let (_, carol_id) = person(app, "carol@example.org").await;
    let by_member = add(app, &bob, room_id, &carol_id).await;
    assert_eq!((by_member.status, by_member.code()), (StatusCode::FORBIDDEN, "forbidden"), "{:?}", by_member.body);
    assert_eq!(add(app, &bob, room_id, &bob_id).await.status, StatusCode::FORBIDDEN);
    assert_eq!(items(&app.get("/api/v1/rooms", Some(&bob)).await), std::slice::from_ref(&room));

    let hello = post(app, &bob, room_id, "hello\n  everyone").await;
    assert_eq!(hello.status, StatusCode::CREATED, "{:?}", hello.body);
    assert_eq!(
        (hello.body["room"].as_str(), hello.body["author"].as_str(), hello.body["body"].as_str()),
        (Some(room_id), Some(bob_id.as_str()), Some("hello\n  everyone"))
    );
    let mut sent = vec![hello.body];
    for i in 0..4 {
        sent.push(post(app, &ada, room_id, &format!("reply {i}")).await.body);
    }
    let newest: Vec<Value> = sent.iter().rev().cloned().collect();

    let all = app.get(&format!("/api/v1/rooms/{room_id}/messages"), Some(&bob)).await;
    assert_eq!((all.status, items(&all)), (StatusCode::OK, &newest), "newest first");
    assert!(all.body.get("next_cursor").is_none());
    let first = app.get(&format!("/api/v1/rooms/{room_id}/messages?limit=2"), Some(&ada)).await;
    assert_eq!(items(&first)[..], newest[..2]);
    let cursor = first.body["next_cursor"].as_str().expect("older pages");
    let second = app.get(&format!("/api/v1/rooms/{room_id}/messages?limit=2&cursor={cursor}"), Some(&ada)).await;
    assert_eq!(items(&second)[..], newest[2..4]);
    let cursor = second.body["next_cursor"].as_str().expect("one more page");
    let last = app.get(&format!("/api/v1/rooms/{room_id}/messages?limit=2&cursor={cursor}"), Some(&ada)).await;
    assert_eq!((&items(&last)[..], last.body.get("next_cursor")), (&newest[4..], None));

    // The caller's rooms page by id.
    let more = [create(app, &ada, "room 0").await, create(app, &ada, "room 1").await];
    let page = app.get("/api/v1/rooms?limit=2", Some(&ada)).await;
    assert_eq!(items(&page).len(), 2);
    let cursor = page.body["next_cursor"].as_str().expect("more rooms");
    let rest = app.get(&format!("/api/v1/rooms?limit=2&cursor={cursor}"), Some(&ada)).await;
    let mut ids: Vec<&str> = items(&page).iter().chain(items(&rest)).map(id).collect();
    let mut expected: Vec<&str> = more.iter().map(id).chain([room_id]).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    expected.sort();
    ids.sort();
    assert_eq!(ids, expected);
}

async fn room_writes_leave_their_events_on_the_right_channels(app: &TestApp) {
    let (ada, ada_id) = person(app, "ada@example.org").await;
    let (bob, bob_id) = person(app, "bob@example.org").await;
    let room = create(app, &ada, "General").await;
    let room_id = id(&room);
    add(app, &ada, room_id, &bob_id).await;
    add(app, &ada, room_id, &bob_id).await;
    let message = post(app, &bob, room_id, "hi").await.body;

    let events = app.store().read_outbox(0, 100).await.expect("outbox");
    let seen: Vec<(&str, String, i64)> =
        events.iter().map(|e| (e.event.kind.as_str(), e.event.stream.to_string(), e.stream_offset)).collect();
    let (ada_channel, bob_channel, room_stream) =
        (format!("user:{ada_id}"), format!("user:{bob_id}"), format!("room:{room_id}"));
    assert_eq!(
        seen,
        [
            ("room.created", ada_channel, 1),
            ("room.member_added", room_stream.clone(), 1),
            ("room.member_added", bob_channel, 1),
            ("room.message", room_stream, 2),
        ],
        "adding a member again wrote nothing"
    );
    assert_eq!(events[0].event.payload, room);
    let membership = json!({"room": room_id, "user": bob_id});
    assert_eq!((&events[1].event.payload, &events[2].event.payload), (&membership, &membership));
    assert_eq!(events[3].event.payload, message);
}

async fn outsiders_find_no_room(app: &TestApp) {
    let (ada, _) = person(app, "ada@example.org").await;
    let (eve, eve_id) = person(app, "eve@example.org").await;
    let room = create(app, &ada, "Private").await;
    post(app, &ada, id(&room), "secret").await;
    let room_id = id(&room);
    let written = app.store().read_outbox(0, 100).await.expect("outbox").len();

    for target in [room_id.to_owned(), uuid::Uuid::now_v7().to_string()] {
        let join = add(app, &eve, &target, &eve_id).await;
        assert_eq!((join.status, join.code()), (StatusCode::NOT_FOUND, "not_found"), "{:?}", join.body);
        assert_eq!(post(app, &eve, &target, "hi").await.code(), "not_found");
        assert_eq!(app.get(&format!("/api/v1/rooms/{target}/messages"), Some(&eve)).await.code(), "not_found");
    }
    assert!(items(&app.get("/api/v1/rooms", Some(&eve)).await).is_empty());
    assert_eq!(app.get("/api/v1/rooms", None).await.code(), "unauthorized");
    assert_eq!(app.post("/api/v1/rooms", None, &json!({"name": "x"})).await.code(), "unauthorized");
    assert_eq!(app.store().read_outbox(0, 100).await.expect("outbox").len(), written, "nothing was written");
    let messages = app.get(&format!("/api/v1/rooms/{room_id}/messages"), Some(&ada)).await;
    assert_eq!(items(&messages).len(), 1, "the owner's room is untouched");
}

async fn room_input_is_validated_field_by_field(app: &TestApp) {
    let (ada, _) = person(app, "ada@example.org").await;
    let fields = |reply: herald_testkit::app::Reply| {
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
        reply.fields()
    };
    assert_eq!(fields(app.post("/api/v1/rooms", Some(&ada), &json!({"name": "   "})).await), ["name"]);
    assert_eq!(fields(app.post("/api/v1/rooms", Some(&ada), &json!({"name": "n".repeat(101)})).await), ["name"]);
    assert_eq!(fields(app.post("/api/v1/rooms", Some(&ada), &json!({})).await), ["name"]);
    let mut extra = fields(app.post("/api/v1/rooms", Some(&ada), &json!({"name": 5, "owner": "me"})).await);
    extra.sort();
    assert_eq!(extra, ["name", "owner"]);

    let room = create(app, &ada, "General").await;
    let room_id = id(&room);
    assert_eq!(fields(post(app, &ada, room_id, " \n ").await), ["body"]);
    assert_eq!(fields(post(app, &ada, room_id, &"b".repeat(4001)).await), ["body"]);
    assert_eq!(fields(post(app, &ada, "not-a-uuid", "hi").await), ["room"]);
    assert_eq!(fields(add(app, &ada, room_id, "not-a-uuid").await), ["user"]);
    let no_user = app.post(&format!("/api/v1/rooms/{room_id}/members"), Some(&ada), &json!({})).await;
    assert_eq!(fields(no_user), ["user"]);
    for (query, field) in [("cursor=junk", "cursor"), ("limit=0", "limit"), ("limit=ten", "limit")] {
        let reply = app.get(&format!("/api/v1/rooms/{room_id}/messages?{query}"), Some(&ada)).await;
        assert_eq!(fields(reply), [field], "{query}");
    }
    assert_eq!(fields(app.get("/api/v1/rooms/not-a-uuid/messages", Some(&ada)).await), ["room"]);
    assert_eq!(fields(app.get("/api/v1/rooms?limit=201", Some(&ada)).await), ["limit"]);

    let raw = app
        .client
        .post(app.url(&format!("/api/v1/rooms/{room_id}/messages")))
        .bearer_auth(&ada)
        .header("content-type", "application/json")
        .body("{\"body\": ")
        .send()
        .await
        .expect("send");
    let malformed = TestApp::reply(raw).await;
    assert_eq!((malformed.status, malformed.code()), (StatusCode::BAD_REQUEST, "malformed_request"));
    let messages = app.get(&format!("/api/v1/rooms/{room_id}/messages"), Some(&ada)).await;
    assert!(items(&messages).is_empty(), "nothing was posted");
}

async fn an_unknown_user_cannot_be_added(app: &TestApp) {
    let (ada, _) = person(app, "ada@example.org").await;
    let room = create(app, &ada, "General").await;
    let room_id = id(&room);
    let written = app.store().read_outbox(0, 100).await.expect("outbox").len();
    let ghost = uuid::Uuid::now_v7().to_string();
    let reply = add(app, &ada, room_id, &ghost).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"));
    assert_eq!(reply.fields(), ["user"]);
    assert_eq!(app.store().read_outbox(0, 100).await.expect("outbox").len(), written, "nothing was written");
}
