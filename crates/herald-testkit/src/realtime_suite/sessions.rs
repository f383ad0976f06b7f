//! The real-time suite's sessions: stock socket.io-client on any gateway, token expiry and resume.

#[allow(unused_imports, reason = "the suite's helpers and imports, shared")]
use super::*;

/// The standard JS `socket.io-client` 4: a forged token is a `connect_error`; events not yet
/// acknowledged come again when the session reconnects, to another gateway when the broker is
/// shared (or after a restart when it is not); acks through the callback move the cursor; `call`
/// answers through the ack.
pub async fn socketio_clients_get_unacknowledged_events_again_on_any_gateway(cluster: &Cluster) {
    let Some(mut sio) = crate::node::SioClient::spawn() else { return };
    let node = cluster.serve().await;
    let ada = cluster.account(&node, "ada@example.org").await;

    let refused = sio.connect(&node.base, &format!("{}x", ada.token), "tab").await.expect_err("forged token");
    assert!(refused.to_string().contains("invalid_token"), "{refused}");
    sio.connect(&node.base, &ada.token, "tab").await.expect("connect");
    let subscribed = sio.subscribe(&channel(&ada), None).await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");
    let head = subscribed["offset"].as_i64().expect("offset");
    let created = sio.call("tasks.create", json!({"title": "one"})).await;
    assert_eq!(created["ok"], true, "{created}");
    create_task(cluster, &node, &ada, "two").await;
    let first = sio.next_event(WAIT).await.expect("event one");
    let second = sio.next_event(WAIT).await.expect("event two");
    assert_eq!(titles(&[first.clone(), second]), ["one", "two"]);
    assert_eq!(first["offset"], head + 1);
    assert_eq!(sio.ack(&channel(&ada), head + 1).await, 1, "one kept ack callback called");
    wait_for_cursor(&node, &ada, "tab", head + 1).await;
    sio.disconnect().await;

    // Back on another gateway when there is one; otherwise on a restarted node.
    let (first_node, other) = if cluster.shares_broker() {
        (Some(node), cluster.gateway().await)
    } else {
        node.stop().await;
        (None, cluster.serve().await)
    };
    sio.connect(&other.base, &ada.token, "tab").await.expect("reconnect");
    let resumed = sio.subscribe(&channel(&ada), None).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let again = sio.next_event(WAIT).await.expect("the unacknowledged event again");
    assert_eq!((again["offset"].as_i64(), again["data"]["title"].as_str()), (Some(head + 2), Some("two")));
    create_task(cluster, first_node.as_ref().unwrap_or(&other), &ada, "three").await;
    let live = sio.next_event(WAIT).await.expect("a live event");
    assert_eq!(live["offset"], head + 3);
    assert!(sio.next_event(QUIET).await.is_none(), "the acknowledged event did not come again");
    sio.disconnect().await;
    other.stop().await;
    if let Some(node) = first_node {
        node.stop().await;
    }
}

/// A session ends when its token expires (checked at the handshake only, it would otherwise
/// outlive it); a fresh token resumes it where it was.
pub async fn a_session_ends_when_its_token_expires_and_resumes_with_a_fresh_one(cluster: &Cluster) {
    let node = cluster.serve_with(|env| drop(env.insert("HERALD_JWT_TTL".into(), "2s".into()))).await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let mut ws = connect(&node, &ada, "short").await;
    let head = ws.subscribe(&channel(&ada), None).await["offset"].as_i64().expect("offset");
    create_task(cluster, &node, &ada, "before").await;
    assert_eq!(titles(&ws.events(1, WAIT).await), ["before"]);
    let close = loop {
        let frame = ws.next_frame(Duration::from_secs(5)).await.expect("the server closes the session");
        if frame["op"] == "close" {
            break frame;
        }
    };
    assert_eq!(close["code"], "token_expired", "{close}");
    let refused = WsClient::connect(&node.ws_url(), &ada.token, "short").await.expect_err("the old token");
    assert_eq!(refused["code"], "token_expired", "{refused}");

    let fresh = Account { token: cluster.login(&node, "ada@example.org").await, ..ada };
    let mut ws = connect(&node, &fresh, "short").await;
    assert_eq!(ws.subscribe(&channel(&fresh), None).await["recovered"], true);
    let again = ws.events(1, WAIT).await;
    assert_eq!(offsets(&again), [head + 1], "the unacknowledged event, again");
    ws.close().await;
    node.stop().await;
}
