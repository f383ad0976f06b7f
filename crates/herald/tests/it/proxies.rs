//! Outbound calls go where their URL says: the standard `HTTP_PROXY`, `HTTPS_PROXY` and
//! `ALL_PROXY` variables in a served process's environment are not followed (the provider's
//! client once followed them, silently), neither by the provider's calls nor by webhooks.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{SubsecRound as _, Utc};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use super::{herald, register_ada, run, serve};

/// A loopback listener that answers each request `200` and counts what it was sent.
async fn counting(answer: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = vec![0; 64 * 1024];
                if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut request)).await
                    && n > 0
                {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    (port, count)
}

const OK: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
/// What a proxy that was asked would say: it refuses to forward.
const PROXY_REFUSES: &str = "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

async fn wait_for(count: &AtomicUsize, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{what} was never called");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_in_the_environment_are_not_followed() {
    let (proxy_port, proxied) = counting(PROXY_REFUSES).await;
    let (provider_port, provider_calls) = counting(OK).await;
    let (hook_port, hook_calls) = counting(OK).await;
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let provider = format!("http://localhost:{provider_port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let admin = ["users", "create", "--email", "root@example.org", "--password", "root-password", "--admin"];
    assert!(run(&mut herald(dir.path(), &admin, &[])).status.success());
    let mut env = vec![
        ("HERALD_PROVIDER_URL", provider.as_str()),
        ("HERALD_PROVIDER_TOKEN", "t"),
        ("HERALD_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
        ("HERALD_SCHEDULER_INTERVAL", "200ms"),
        ("HERALD_MAILINGS_SCHEDULE", "@every 1s"),
    ];
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        env.push((name, proxy.as_str()));
    }
    let (_child, addr, _lines, _) = serve(dir.path(), &env);
    let client = crate::http();
    let base = format!("http://{addr}/api/v1");

    // A provider call: a one-client mailing that starts now.
    let creds = json!({"email": "root@example.org", "password": "root-password"});
    let login: Value =
        client.post(format!("{base}/auth/login")).json(&creds).send().await.expect("login").json().await.expect("json");
    let root = login["access_token"].as_str().expect("token").to_owned();
    let made = client.post(format!("{base}/clients")).bearer_auth(&root).json(&json!({"phone": "79160000001"}));
    assert!(made.send().await.expect("client").status().is_success());
    let now = Utc::now();
    let mailing = json!({"start_at": now, "end_at": now + chrono::Duration::hours(1), "text": "direct"});
    let made = client.post(format!("{base}/mailings")).bearer_auth(&root).json(&mailing).send().await.expect("mailing");
    assert!(made.status().is_success(), "{:?}", made.text().await);

    // A webhook call: a reminder due in a second or two.
    let ada = register_ada(&client, &base).await;
    let hook = json!({"url": format!("http://127.0.0.1:{hook_port}/hook")});
    let set = client.put(format!("{base}/me/webhook")).bearer_auth(&ada).json(&hook).send().await.expect("set");
    assert!(set.status().is_success(), "{:?}", set.text().await);
    let due = (Utc::now() + chrono::Duration::seconds(2)).trunc_subsecs(0);
    let event =
        json!({"title": "Call", "starts_at": due + chrono::Duration::seconds(60), "duration": 30, "remind_before": 60});
    let made = client.post(format!("{base}/events")).bearer_auth(&ada).json(&event).send().await.expect("event");
    assert!(made.status().is_success(), "{:?}", made.text().await);

    wait_for(&provider_calls, "the provider").await;
    wait_for(&hook_calls, "the webhook").await;
    assert_eq!(proxied.load(Ordering::SeqCst), 0, "no call went through the proxy the environment names");
}
