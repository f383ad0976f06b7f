//! Helpers the tests share: a reminder sent to a webhook (the HTTP client is the test kit's,
//! `herald_testkit::http::client`).

use chrono::SubsecRound as _;
use serde_json::{Value, json};

/// Sets `url` as the caller's webhook and makes an event whose reminder, due in two seconds, goes
/// to it; answers the path of that event's notifications.
pub(crate) async fn remind_to_webhook(client: &reqwest::Client, base: &str, token: &str, url: &str) -> String {
    let hook = json!({ "url": url });
    let set = client.put(format!("{base}/me/webhook")).bearer_auth(token).json(&hook).send().await.expect("set");
    assert_eq!(set.status(), 200);
    let due = (chrono::Utc::now() + chrono::Duration::seconds(2)).trunc_subsecs(0);
    let event = json!({"title": "Call", "starts_at": due + chrono::Duration::seconds(60), "duration": 30,
        "remind_before": 60});
    let created: Value = client
        .post(format!("{base}/events"))
        .bearer_auth(token)
        .json(&event)
        .send()
        .await
        .expect("event")
        .json()
        .await
        .expect("json");
    format!("{base}/events/{}/notifications", created["id"].as_str().expect("id"))
}
