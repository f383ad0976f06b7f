//! The real-time gateway's behaviour, written once and run on every store and broker pair
//! (`tests/it/realtime.rs`): what a client sees over `/ws` across disconnects, restarts, and
//! moves between gateway instances.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    cluster::{Account, Cluster, Node},
    ws_client::WsClient,
};

mod accounts;
mod notices;
mod rooms;
mod sessions;
pub use accounts::*;
pub use notices::*;
pub use rooms::*;
pub use sessions::*;

const WAIT: Duration = Duration::from_secs(10);
/// How long to wait to be sure that nothing (more) arrives.
const QUIET: Duration = Duration::from_millis(700);

fn channel(account: &Account) -> String {
    format!("user:{}", account.id)
}

async fn create_task(cluster: &Cluster, node: &Node, account: &Account, title: &str) -> Value {
    let (status, body) = cluster.post(node, account, "/api/v1/tasks", &json!({"title": title})).await;
    assert_eq!(status, 201, "create {title}: {body}");
    body
}

fn titles(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["data"]["title"].as_str().unwrap_or_default().to_owned()).collect()
}

fn offsets(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["offset"].as_i64().expect("offset")).collect()
}

async fn connect(node: &Node, account: &Account, session: &str) -> WsClient {
    WsClient::connect(&node.ws_url(), &account.token, session).await.expect("connect")
}

/// A client that disconnects before acknowledging gets the same events again, in order, when it
/// comes back with its session id; acknowledged ones do not come again; live ones follow.
pub async fn unacknowledged_events_come_again_after_a_reconnect(cluster: &Cluster) {
    let node = cluster.serve().await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let mut ws = connect(&node, &ada, "tab-1").await;
    let first = ws.subscribe(&channel(&ada), None).await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["recovered"], false, "a first subscription has nothing to recover: {first}");
    let head = first["offset"].as_i64().expect("offset");

    for title in ["one", "two", "three"] {
        create_task(cluster, &node, &ada, title).await;
    }
    let events = ws.events(3, WAIT).await;
    assert_eq!(titles(&events), ["one", "two", "three"]);
    assert_eq!(offsets(&events), [head + 1, head + 2, head + 3], "gap-free offsets: {events:?}");
    assert!(events.iter().all(|e| e["type"] == "task.created" && e["channel"] == channel(&ada)));
    assert!(events.iter().all(|e| e["id"].is_string() && e["ts"].is_string()));
    ws.ack(&channel(&ada), head + 1).await;
    // The ack is written in a batch; the next subscribe reads it from the store.
    wait_for_cursor(&node, &ada, "tab-1", head + 1).await;
    ws.close().await;

    let mut ws = connect(&node, &ada, "tab-1").await;
    let again = ws.subscribe(&channel(&ada), None).await;
    assert_eq!(again["recovered"], true, "{again}");
    assert_eq!(again["offset"], head + 3);
    let replayed = ws.events(2, WAIT).await;
    assert_eq!(titles(&replayed), ["two", "three"], "unacknowledged events, in order");
    create_task(cluster, &node, &ada, "four").await;
    let live = ws.events(1, WAIT).await;
    assert_eq!(titles(&live), ["four"]);
    assert_eq!(offsets(&live), [head + 4]);
    ws.ack(&channel(&ada), head + 4).await;
    wait_for_cursor(&node, &ada, "tab-1", head + 4).await;
    ws.close().await;

    // Everything acknowledged: a reconnect recovers and nothing comes again.
    let mut ws = connect(&node, &ada, "tab-1").await;
    assert_eq!(ws.subscribe(&channel(&ada), None).await["recovered"], true);
    assert!(ws.next_event(QUIET).await.is_none(), "acknowledged events are not sent again");
    // Another session of the same user starts fresh: cursors are per session.
    let mut other = connect(&node, &ada, "tab-2").await;
    assert_eq!(other.subscribe(&channel(&ada), None).await["recovered"], false);

    // A closed connection leaves the sessions gauge once the server has seen it end.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = cluster.client.get(node.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
        if crate::cluster::metric(&metrics, "herald_realtime_sessions") == Some(2.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let value = |name: &str| -> f64 {
        crate::cluster::metric(&metrics, name.trim_end()).unwrap_or_else(|| panic!("{name} is not in /metrics"))
    };
    assert_eq!(value("herald_realtime_sessions "), 2.0, "two open sessions");
    assert_eq!(value("herald_realtime_subscriptions_total{result=\"fresh\"} "), 2.0);
    assert_eq!(value("herald_realtime_subscriptions_total{result=\"recovered\"} "), 2.0);
    assert_eq!(value("herald_realtime_redeliveries_total "), 2.0, "two and three, replayed");
    assert_eq!(value("herald_realtime_events_sent_total "), 6.0, "three live, two replayed, one live");
    assert_eq!(value("herald_realtime_acks_total "), 2.0);
    assert_eq!(value("herald_realtime_ack_seconds_count "), 4.0, "one latency per acknowledged event sent");
    ws.close().await;
    other.close().await;
    node.stop().await;
}

/// Nothing is lost across a gateway restart: the new process resumes the session from the
/// cursor kept in the store.
pub async fn nothing_is_lost_across_a_gateway_restart(cluster: &Cluster) {
    let node = cluster.serve().await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let mut ws = connect(&node, &ada, "phone").await;
    let head = ws.subscribe(&channel(&ada), None).await["offset"].as_i64().expect("offset");
    create_task(cluster, &node, &ada, "before").await;
    let seen = ws.events(1, WAIT).await;
    assert_eq!(titles(&seen), ["before"]);
    // Not acknowledged; the node stops (its sessions are closed) and another takes over.
    node.stop().await;
    drop(ws);

    let node = cluster.serve().await;
    let mut ws = connect(&node, &ada, "phone").await;
    let resumed = ws.subscribe(&channel(&ada), None).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    create_task(cluster, &node, &ada, "after").await;
    let events = ws.events(2, WAIT).await;
    assert_eq!(titles(&events), ["before", "after"]);
    assert_eq!(offsets(&events), [head + 1, head + 2]);
    ws.close().await;
    node.stop().await;
}

/// Two gateways without stickiness: each receives every live event through the broker's fan-out,
/// and a session that moves from one to the other resumes where it left off.
pub async fn a_session_moves_between_gateway_instances(cluster: &Cluster) {
    if !cluster.shares_broker() {
        eprintln!("(one process: the in-process broker cannot be shared by two gateways)");
        return;
    }
    let api = cluster.serve().await;
    let (east, west) = (cluster.gateway().await, cluster.gateway().await);
    let ada = cluster.account(&api, "ada@example.org").await;
    let mut on_east = connect(&east, &ada, "laptop").await;
    let mut on_west = connect(&west, &ada, "phone").await;
    let head = on_east.subscribe(&channel(&ada), None).await["offset"].as_i64().expect("offset");
    on_west.subscribe(&channel(&ada), None).await;

    create_task(cluster, &api, &ada, "one").await;
    create_task(cluster, &api, &ada, "two").await;
    assert_eq!(titles(&on_east.events(2, WAIT).await), ["one", "two"], "east gets live events");
    assert_eq!(titles(&on_west.events(2, WAIT).await), ["one", "two"], "west gets the same ones");
    on_east.ack(&channel(&ada), head + 1).await;
    wait_for_cursor(&api, &ada, "laptop", head + 1).await;
    on_east.close().await;

    // The laptop comes back through the other gateway.
    let mut moved = connect(&west, &ada, "laptop").await;
    assert_eq!(moved.subscribe(&channel(&ada), None).await["recovered"], true);
    create_task(cluster, &api, &ada, "three").await;
    let events = moved.events(2, WAIT).await;
    assert_eq!(titles(&events), ["two", "three"]);
    assert_eq!(offsets(&events), [head + 2, head + 3]);
    moved.close().await;
    on_west.close().await;
    east.stop().await;
    west.stop().await;
    api.stop().await;
}

/// A gateway cut off from the broker misses the live broadcasts of the outage and says so on
/// `/readyz` (503, so a load balancer sends no new sessions there); its sessions get what was
/// committed meanwhile from the store (while cut off, or once it is back and ready again), once
/// each, with no later event needed to reveal the gap.
pub async fn a_gateway_cut_off_from_the_broker_catches_up_when_it_is_back(cluster: &Cluster) {
    let Some(target) = cluster.broker_target() else {
        eprintln!("(in-process broker: there is no connection to cut)");
        return;
    };
    let proxy = crate::proxy::Proxy::start(&target).await.expect("start proxy");
    let api = cluster.serve().await;
    let gateway = cluster.gateway_through(&proxy).await;
    let ada = cluster.account(&api, "ada@example.org").await;
    let mut ws = connect(&gateway, &ada, "laptop").await;
    let head = ws.subscribe(&channel(&ada), None).await["offset"].as_i64().expect("offset");
    create_task(cluster, &api, &ada, "before").await;
    assert_eq!(titles(&ws.events(1, WAIT).await), ["before"]);

    proxy.hold();
    create_task(cluster, &api, &ada, "during").await;
    wait_relayed(&api).await;
    // Nothing reaches the gateway through the broker now. It may still find "during" in the store
    // while cut off: when its subscription ends, it subscribes again (a NATS client takes the
    // subscription while disconnected) and sends every session what the store holds past what it
    // sent. Either way "during" comes once, at its offset.
    let early = ws.next_event(QUIET).await;
    if let Some(event) = &early {
        let event = std::slice::from_ref(event);
        assert_eq!((titles(event), offsets(event)), (vec!["during".to_owned()], vec![head + 2]), "{event:?}");
    }
    assert_eq!(readiness_becomes(&gateway, 503).await, 503, "not ready while the broker is out of reach");
    proxy.release();
    assert_eq!(readiness_becomes(&gateway, 200).await, 200, "ready again once the broker is back");

    if early.is_none() {
        let caught_up = ws.events(1, 2 * WAIT).await;
        assert_eq!(titles(&caught_up), ["during"], "the broadcast missed in the outage, from the store");
        assert_eq!(offsets(&caught_up), [head + 2]);
    }
    create_task(cluster, &api, &ada, "after").await;
    let live = ws.events(1, WAIT).await;
    assert_eq!((titles(&live), offsets(&live)), (vec!["after".to_owned()], vec![head + 3]));
    ws.close().await;
    gateway.stop().await;
    api.stop().await;
}

/// Task changes made before, while and after the broker restarts (`restart` stops it, keeping
/// its data, and starts it again) all reach a session on another gateway, in order, each at its
/// offset: the store and its outbox take the writes while the broker is away, the relay publishes
/// them once it is back, and the gateway, told its subscription was interrupted, reads the gap
/// from the store.
pub async fn nothing_is_lost_across_a_broker_restart<F, R>(cluster: &Cluster, restart: R)
where
    R: FnOnce() -> F,
    F: std::future::Future<Output = ()>,
{
    const DURING: i64 = 20;
    let api = cluster.serve().await;
    let gateway = cluster.gateway().await;
    let ada = cluster.account(&api, "ada@example.org").await;
    let mut ws = connect(&gateway, &ada, "laptop").await;
    let head = ws.subscribe(&channel(&ada), None).await["offset"].as_i64().expect("offset");
    create_task(cluster, &api, &ada, "before").await;
    assert_eq!(titles(&ws.events(1, WAIT).await), ["before"]);

    let writes = async {
        for i in 0..DURING {
            create_task(cluster, &api, &ada, &format!("during {i}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(writes, restart());
    create_task(cluster, &api, &ada, "after").await;

    let events = ws.events(usize::try_from(DURING + 1).expect("count"), 3 * WAIT).await;
    let mut expected: Vec<String> = (0..DURING).map(|i| format!("during {i}")).collect();
    expected.push("after".to_owned());
    assert_eq!(titles(&events), expected, "every change, in order");
    assert_eq!(offsets(&events), ((head + 2)..=(head + DURING + 2)).collect::<Vec<_>>());
    assert!(ws.next_event(QUIET).await.is_none(), "nothing twice");
    ws.close().await;
    gateway.stop().await;
    api.stop().await;
}

/// Polls the node's `/readyz` for up to 15 s until it answers `status`; the last status seen.
async fn readiness_becomes(node: &Node, status: u16) -> u16 {
    let client = crate::http::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let seen = client.get(node.url("/readyz")).send().await.map_or(0, |r| r.status().as_u16());
        if seen == status || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A forged token, another user's channel and a malformed channel are refused with clear codes.
pub async fn forged_tokens_and_other_users_channels_are_refused(cluster: &Cluster) {
    let node = cluster.serve().await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let bob = cluster.account(&node, "bob@example.org").await;

    let forged = format!("{}x", ada.token);
    let refused = WsClient::connect(&node.ws_url(), &forged, "s").await.expect_err("forged token");
    assert_eq!(refused["op"], "close");
    assert_eq!(refused["code"], "invalid_token", "{refused}");
    let refused = WsClient::connect(&node.ws_url(), "", "s").await.expect_err("no token");
    assert_eq!(refused["code"], "unauthorized", "{refused}");
    let refused = WsClient::connect(&node.ws_url(), &ada.token, "bad session!").await.expect_err("bad session id");
    assert_eq!(refused["code"], "validation_failed", "{refused}");

    let mut ws = connect(&node, &ada, "s").await;
    let theirs = ws.subscribe(&channel(&bob), None).await;
    assert_eq!(theirs["ok"], false);
    assert_eq!(theirs["error"]["code"], "forbidden", "{theirs}");
    let room = ws.subscribe(&format!("room:{}", uuid::Uuid::now_v7()), None).await;
    assert_eq!(room["error"]["code"], "forbidden", "not a member: {room}");
    let mailing = ws.subscribe(&format!("mailing:{}", uuid::Uuid::now_v7()), None).await;
    assert_eq!(mailing["error"]["code"], "forbidden", "not an administrator: {mailing}");
    let odd = ws.subscribe("everything", None).await;
    assert_eq!(odd["error"]["code"], "validation_failed", "{odd}");
    ws.send_text("not json").await;
    let err = ws.next_frame(WAIT).await.expect("an error frame");
    assert_eq!((err["op"].as_str(), err["code"].as_str()), (Some("error"), Some("malformed_request")), "{err}");

    // Bob's events never reach ada's session, and the refused subscription delivered nothing.
    ws.subscribe(&channel(&ada), None).await;
    create_task(cluster, &node, &bob, "bob's").await;
    assert!(ws.next_event(QUIET).await.is_none(), "another user's event leaked");
    ws.close().await;
    node.stop().await;
}

/// When the stream no longer holds the gap since the session's cursor, the subscription says
/// `recovered: false` and live events follow from the head.
pub async fn recovery_fails_once_the_gap_has_left_the_stream(cluster: &Cluster) {
    let node = cluster.serve().await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let mut ws = connect(&node, &ada, "tab").await;
    let head = ws.subscribe(&channel(&ada), None).await["offset"].as_i64().expect("offset");
    ws.close().await;
    for title in ["a", "b", "c", "d"] {
        create_task(cluster, &node, &ada, title).await;
    }
    // Wait until the relay has published them, then keep only the newest 2 of the channel.
    wait_relayed(&node).await;
    let store = node.herald().services.store.clone();
    assert_eq!(store.trim_streams(2, 100).await.expect("trim"), 2);

    let mut ws = connect(&node, &ada, "tab").await;
    let lost = ws.subscribe(&channel(&ada), None).await;
    assert_eq!(lost["recovered"], false, "{lost}");
    assert_eq!(lost["offset"], head + 4);
    assert!(ws.next_event(QUIET).await.is_none(), "no partial replay after a lost gap");
    // A position the stream still holds recovers (what a client that kept its own offset does).
    let mut other = connect(&node, &ada, "tab-2").await;
    let held = other.subscribe(&channel(&ada), Some(head + 2)).await;
    assert_eq!(held["recovered"], true, "{held}");
    assert_eq!(titles(&other.events(2, WAIT).await), ["c", "d"]);
    create_task(cluster, &node, &ada, "e").await;
    assert_eq!(titles(&ws.events(1, WAIT).await), ["e"], "live events follow from the head");
    ws.close().await;
    other.close().await;
    node.stop().await;
}

/// `call` runs any registry command as the socket's user; errors come back as problem bodies.
pub async fn commands_run_over_the_socket_with_its_identity(cluster: &Cluster) {
    let node = cluster.serve().await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let mut ws = connect(&node, &ada, "cli").await;
    ws.subscribe(&channel(&ada), None).await;
    let created = ws.call("tasks.create", json!({"title": "over the socket"})).await;
    assert_eq!(created["ok"], true, "{created}");
    assert_eq!(created["output"]["title"], "over the socket");
    let event = ws.next_event(WAIT).await.expect("the change comes back as an event");
    assert_eq!(event["data"]["id"], created["output"]["id"]);

    let me = ws.call("users.me", json!({})).await;
    assert_eq!(me["output"]["id"], ada.id.to_string(), "{me}");
    let bad = ws.call("tasks.create", json!({"title": ""})).await;
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["error"]["code"], "validation_failed", "{bad}");
    assert_eq!(bad["error"]["errors"][0]["field"], "title", "{bad}");
    let unknown = ws.call("no.such.command", json!({})).await;
    assert_eq!(unknown["ok"], false);
    assert_eq!(unknown["error"]["status"], 404, "{unknown}");
    let admin_only = ws.call("clients.list", json!({})).await;
    assert_eq!(admin_only["error"]["code"], "forbidden", "{admin_only}");
    ws.close().await;
    node.stop().await;
}

/// A session that stops reading is disconnected as a slow consumer once its buffer is full (the
/// gateway does not queue without bound), and catches up by recovery, paced by the client.
pub async fn a_slow_session_is_disconnected_and_catches_up_by_recovery(cluster: &Cluster) {
    const EVENTS: usize = 2000;
    let node = cluster.serve_with(|env| drop(env.insert("HERALD_SESSION_BUFFER".into(), "16".into()))).await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let mut ws = connect(&node, &ada, "slow").await;
    let head = ws.subscribe(&channel(&ada), None).await["offset"].as_i64().expect("offset");

    // 16 MB of events at once, while the client reads nothing.
    let owner = herald_core::user::UserId(ada.id);
    let now = chrono::Utc::now();
    let events: Vec<_> = (0..EVENTS)
        .map(|n| {
            herald_core::change::ChangeEvent::for_user(owner, "test.big", json!({"n": n, "pad": "x".repeat(8000)}), now)
        })
        .collect();
    let store = node.herald().services.store.clone();
    store.create_task(&crate::store_suite::new_task(owner, "big"), &events).await.expect("write events");
    let metrics = node.herald().services.metrics.clone();
    for _ in 0..1000 {
        if metrics.realtime.slow_disconnects.get() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.realtime.slow_disconnects.get(), 1, "the session was disconnected as slow");
    let mut received = 0;
    let close = loop {
        let frame = ws.next_frame(WAIT).await.expect("the close frame comes after what was queued");
        if frame["op"] == "event" {
            received += 1;
        } else {
            break frame;
        }
    };
    assert_eq!(close["code"], "slow_consumer", "{close}");
    assert!(received < EVENTS, "the session was cut off before the end ({received} received)");

    let mut ws = connect(&node, &ada, "slow").await;
    assert_eq!(ws.subscribe(&channel(&ada), None).await["recovered"], true);
    let all = ws.events(EVENTS, Duration::from_secs(60)).await;
    let expected: Vec<i64> = (1..=EVENTS as i64).map(|i| head + i).collect();
    assert_eq!(offsets(&all), expected, "every event, in order, nothing skipped");
    assert_eq!(metrics.realtime.slow_disconnects.get(), 1, "a replay waits for the client instead");
    ws.close().await;
    node.stop().await;
}

/// Waits until the relay has published every event in the store.
async fn wait_relayed(node: &Node) {
    let store = node.herald().services.store.clone();
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    while !store.unpublished_events(10).await.expect("unpublished").events.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the relay did not publish within {:?}", 3 * WAIT);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the store holds `session`'s cursor at `offset` (acks are written in batches).
async fn wait_for_cursor(node: &Node, account: &Account, session: &str, offset: i64) {
    wait_for_cursor_on(node, account, session, &channel(account), offset).await;
}

/// As [`wait_for_cursor`], on `channel`.
async fn wait_for_cursor_on(node: &Node, account: &Account, session: &str, channel: &str, offset: i64) {
    let store = node.herald().services.store.clone();
    let session = herald_core::stream::SessionId::parse(session).expect("session");
    let user = herald_core::user::UserId(account.id);
    let stream = herald_core::stream::StreamName::parse(channel).expect("a stream name");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = None;
    while tokio::time::Instant::now() < deadline {
        seen = store.session_cursor(user, &session, stream).await.expect("cursor");
        if seen == Some(offset) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cursor of {session} never reached {offset} within {WAIT:?}: it is at {seen:?}");
}
