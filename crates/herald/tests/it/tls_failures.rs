//! A webhook receiver whose certificate Herald does not trust: the user's delivery says only
//! `tls`, and the operator's log says which certificate problem it was, for which host.

use std::{sync::mpsc, time::Duration};

use herald_testkit::tls::{ServerCert, TlsFront};
use serde_json::Value;

use super::{register_ada, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_tells_the_user_tls_and_the_operator_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("HERALD_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"), ("HERALD_SCHEDULER_INTERVAL", "200ms")];
    let (_child, addr, lines, _) = serve(dir.path(), &env);
    let (tx, logs) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(log) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(log);
            }
        }
    });
    // Nobody signed this certificate: the handshake fails before any byte reaches `upstream`.
    let upstream = "127.0.0.1:9".parse().expect("address");
    let front = TlsFront::start(upstream, &ServerCert::self_signed(&["127.0.0.1"])).await;
    let client = crate::http();
    let base = format!("http://{addr}/api/v1");
    let token = register_ada(&client, &base).await;
    let url = format!("https://127.0.0.1:{}/hook", front.addr.port());
    let path = super::support::remind_to_webhook(&client, &base, &token, &url).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let logged = loop {
        if let Some(log) = logs.try_iter().find(|l| l["message"] == "a webhook's TLS handshake failed") {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "no TLS failure was logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(logged["host"], format!("127.0.0.1:{}", front.addr.port()), "{logged}");
    let reason = logged["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("UnknownIssuer"), "the log names the problem: {logged}");

    // The delivery's report is written after the call: wait for it.
    let hook = loop {
        let listed: Value =
            client.get(&path).bearer_auth(&token).send().await.expect("list").json().await.expect("json");
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        if let Some(hook) = items.into_iter().find(|n| n["channel"] == "webhook" && n["attempts"].as_u64() >= Some(1)) {
            break hook;
        }
        assert!(tokio::time::Instant::now() < deadline, "the webhook delivery was never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(hook["last_error"], "tls", "the user learns no more than that: {hook}");
    assert!(front.failed_handshakes() >= 1);
}
