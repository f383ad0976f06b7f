//! A webhook receiver does not decide how much memory Herald uses: one answering `200` with a
//! 1 GiB body (made as it is sent, never held by the test) is read up to
//! `HERALD_WEBHOOK_ANSWER_LIMIT` and dropped, the delivery counts as sent, and the served
//! process's peak RSS stays within a bound.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use super::{peak_rss_kib, register_ada, serve};

const GIB: u64 = 1 << 30;
/// How much the sender's peak RSS may grow while the receiver offers its gibibyte.
const RSS_BOUND_MIB: f64 = 32.0;

/// A receiver that answers every request `200` with a 1 GiB body, counting what it managed to
/// write and noting when the sender hung up before the end.
async fn huge_answers() -> (u16, Arc<AtomicU64>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (written, hung_up) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let (sent, cut) = (written.clone(), hung_up.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (sent, cut) = (sent.clone(), cut.clone());
            tokio::spawn(async move {
                // The request: its head and a small JSON body; read until the sender waits.
                let mut request = vec![0; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut request)).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {GIB}\r\n\r\n"
                );
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = GIB;
                while left > 0 {
                    let n = left.min(chunk.len() as u64);
                    if conn.write_all(&chunk[..n as usize]).await.is_err() {
                        cut.store(true, Ordering::SeqCst);
                        return;
                    }
                    sent.fetch_add(n, Ordering::SeqCst);
                    left -= n;
                }
            });
        }
    });
    (port, written, hung_up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_webhook_answer_leaves_the_senders_memory_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (child, addr, _lines, _) = serve(
        dir.path(),
        &[
            ("HERALD_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8"),
            ("HERALD_WEBHOOK_SECRET", "a-webhook-secret-of-at-least-32-bytes"),
            ("HERALD_SCHEDULER_INTERVAL", "200ms"),
        ],
    );
    let (port, written, hung_up) = huge_answers().await;
    let client = crate::http();
    let base = format!("http://{addr}/api/v1");
    let token = register_ada(&client, &base).await;
    let path =
        super::support::remind_to_webhook(&client, &base, &token, &format!("http://127.0.0.1:{port}/hook")).await;
    let before = peak_rss_kib(child.id());
    let mut hook = Value::Null;
    for _ in 0..300 {
        let listed: Value =
            client.get(&path).bearer_auth(&token).send().await.expect("list").json().await.expect("json");
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        if let Some(found) = items.into_iter().find(|n| n["channel"] == "webhook" && n["attempts"].as_u64() >= Some(1))
        {
            hook = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hook["status"], "sent", "a 2xx is sent whatever its body: {hook}");
    // The sender hung up long before the end (what it did not read sat at most in socket buffers).
    for _ in 0..100 {
        if hung_up.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let offered = written.load(Ordering::SeqCst);
    assert!(hung_up.load(Ordering::SeqCst), "the sender closed the connection");
    assert!(offered < GIB / 16, "the receiver got {offered} bytes out before the sender closed");
    let grown_mib = peak_rss_kib(child.id()).saturating_sub(before) as f64 / 1024.0;
    drop(child);
    eprintln!("peak RSS grew by {grown_mib:.1} MiB; the receiver wrote {} KiB of its 1 GiB answer", offered / 1024);
    assert!(grown_mib < RSS_BOUND_MIB, "a 1 GiB answer grew the sender's peak RSS by {grown_mib:.1} MiB");
}
