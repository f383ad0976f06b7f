//! Notices end to end on the wall clock: made over REST, their in-app event delivered to a
//! `/ws` session, acknowledged by that session's ack, and escalated by email to a real SMTP
//! server on loopback when nobody acknowledges them in time.

use std::time::{Duration, Instant};

use herald_core::{
    auth::PasswordHasher,
    new_account::{NewAccount, create_user},
    user::{Email, Password, Role, UserName},
};
use serde_json::{Value, json};

use super::{WAIT, channel, connect};
use crate::{
    cluster::{Account, Cluster, Node},
    smtp::{SmtpServer, SmtpTls},
};

/// An administrator made the way `herald users create --admin` does.
async fn admin(cluster: &Cluster, node: &Node) -> String {
    let svc = &node.herald().services;
    let account = NewAccount {
        email: Email::parse("root@example.org").expect("email"),
        name: UserName::parse("Admin").expect("name"),
        password: Password::new_secret("password123".into()).expect("password"),
        role: Role::Admin,
    };
    create_user(svc.store.as_ref(), &PasswordHasher::default(), svc.clock.as_ref(), account).await.expect("admin");
    cluster.login(node, "root@example.org").await
}

async fn notify(cluster: &Cluster, node: &Node, admin: &str, to: &Account, title: &str, email_after: u32) -> String {
    let body = json!({
        "user_id": to.id, "type": "alert", "title": title, "body": "Look at this.",
        "steps": [{"channel": "realtime", "after": 0}, {"channel": "email", "after": email_after}],
    });
    let reply = cluster
        .client
        .post(node.url("/api/v1/notifications"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(reply.status(), 201, "notify");
    let made: Value = reply.json().await.expect("json");
    made["id"].as_str().expect("id").to_owned()
}

async fn notice(cluster: &Cluster, node: &Node, admin: &str, id: &str) -> Value {
    let reply = cluster
        .client
        .get(node.url(&format!("/api/v1/notifications/{id}")))
        .bearer_auth(admin)
        .send()
        .await
        .expect("get");
    reply.json().await.expect("json")
}

fn mails_titled(smtp: &SmtpServer, title: &str) -> usize {
    smtp.mails().iter().filter(|m| m.data.contains(&format!("Subject: {title}"))).count()
}

/// Acknowledged in the app: no email. Not acknowledged: the email comes after its delay.
pub async fn an_acknowledged_notice_sends_no_email_and_an_ignored_one_does(cluster: &Cluster) {
    let smtp = SmtpServer::start(SmtpTls::None, None).await;
    let url = format!("smtp://127.0.0.1:{}?tls=none", smtp.addr.port());
    let node = cluster
        .serve_with(|env| {
            env.insert("HERALD_SMTP_URL".into(), url);
            env.insert("HERALD_EMAIL_FROM".into(), "Herald <noreply@herald.test>".into());
            env.insert("HERALD_SCHEDULER_INTERVAL".into(), "100ms".into());
        })
        .await;
    let root = admin(cluster, &node).await;
    let ada = cluster.account(&node, "ada@example.org").await;
    let mut ws = connect(&node, &ada, "tab-1").await;
    assert_eq!(ws.subscribe(&channel(&ada), None).await["ok"], true);

    // Seen and acknowledged within its two seconds: the email never goes.
    let seen = notify(cluster, &node, &root, &ada, "Seen in the app", 2).await;
    let event = ws.next_event(WAIT).await.expect("the in-app event");
    assert_eq!((&event["type"], &event["data"]["id"]), (&json!("notification"), &json!(seen)), "{event}");
    assert_eq!(event["data"]["title"], "Seen in the app");
    ws.ack(&channel(&ada), event["offset"].as_i64().expect("offset")).await;
    let deadline = Instant::now() + WAIT;
    while notice(cluster, &node, &root, &seen).await["status"] != "acknowledged" {
        assert!(Instant::now() < deadline, "the ack never acknowledged the notice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Ignored: the email comes after its second, not before.
    let started = Instant::now();
    let ignored = notify(cluster, &node, &root, &ada, "Ignored in the app", 1).await;
    let event = ws.next_event(WAIT).await.expect("the in-app event");
    assert_eq!(event["data"]["id"], json!(ignored));
    while mails_titled(&smtp, "Ignored in the app") == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the email never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "the email came before its delay: {took:?}");
    assert!(took < Duration::from_secs(4), "the email came {took:?} after the notice, for a 1 s delay");
    let deadline = Instant::now() + WAIT;
    let settled = loop {
        let found = notice(cluster, &node, &root, &ignored).await;
        if found["status"] == "delivered" {
            break found;
        }
        assert!(Instant::now() < deadline, "never settled: {found}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(settled["steps"][1]["status"], "sent", "{settled}");

    // By then the acknowledged notice's email was due long ago; it never went.
    assert_eq!(mails_titled(&smtp, "Seen in the app"), 0);
    let seen = notice(cluster, &node, &root, &seen).await;
    assert_eq!(seen["steps"][1]["status"], "cancelled", "{seen}");
    assert_eq!(smtp.mails()[0].to, [String::from("ada@example.org")]);
    ws.close().await;
    node.stop().await;
}
