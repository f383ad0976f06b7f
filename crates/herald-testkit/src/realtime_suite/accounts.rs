//! A deleted account's sessions close on every gateway: the deletion, made through the API
//! process, reaches the others as the `account.gone` event on the account's stream, and each
//! closes that account's sessions there with `account_gone`, subscribed or not.

use reqwest::StatusCode;

use super::{QUIET, WAIT, channel, connect};
use crate::{
    cluster::{Account, Cluster},
    ws_client::WsClient,
};

/// The code of the `close` frame (other frames are skipped).
async fn close_code(client: &mut WsClient) -> String {
    let close = client.next_op("close", WAIT).await.expect("a close frame before the socket ends");
    close["code"].as_str().unwrap_or_default().to_owned()
}

pub async fn a_deleted_accounts_sessions_close_on_every_gateway(cluster: &Cluster) {
    if !cluster.shares_broker() {
        eprintln!("(one process: the in-process broker cannot be shared by two gateways)");
        return;
    }
    let api = cluster.serve().await;
    let (east, west) = (cluster.gateway().await, cluster.gateway().await);
    let root = cluster.account(&api, "root@example.org").await;
    let store = api.herald().services.store.clone();
    let promoted =
        store.change_role(herald_core::user::UserId(root.id), herald_core::user::Role::Admin).await.expect("promote");
    assert!(matches!(promoted, herald_core::accounts::AccountChange::Done(_)));
    let ada: Account = cluster.account(&api, "ada@example.org").await;
    let bob = cluster.account(&api, "bob@example.org").await;
    let mut subscribed = connect(&east, &ada, "laptop").await;
    assert_eq!(subscribed.subscribe(&channel(&ada), None).await["ok"], true);
    let mut idle = connect(&west, &ada, "phone").await;
    let mut other = connect(&west, &bob, "phone").await;

    let reply = crate::http::client()
        .delete(api.url(&format!("/api/v1/users/{}", ada.id)))
        .bearer_auth(&root.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(reply.status(), StatusCode::NO_CONTENT);
    assert_eq!(close_code(&mut subscribed).await, "account_gone", "on the gateway where ada listens to her stream");
    assert_eq!(close_code(&mut idle).await, "account_gone", "on the gateway where ada listens to nothing");
    assert!(other.next_frame(QUIET).await.is_none(), "bob's session carries on");
    assert_eq!(other.subscribe(&channel(&bob), None).await["ok"], true);
    let refused = WsClient::connect(&east.ws_url(), &ada.token, "laptop").await.expect_err("gone");
    assert_eq!(refused["code"], "invalid_token", "{refused}");
    other.close().await;
    east.stop().await;
    west.stop().await;
    api.stop().await;
}
