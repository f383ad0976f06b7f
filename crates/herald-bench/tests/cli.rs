//! `herald-bench` as its own process, on the embedded backends of a scratch data directory.

#![allow(clippy::expect_used)]

use std::process::{Command, Output};

fn bench(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(args)
        .env_clear()
        .env("HERALD_DATA_DIR", data_dir)
        .env("HERALD_LOG_FORMAT", "json")
        .output()
        .expect("run herald-bench")
}

/// Runs a bench that starts a `herald serve` child (the binary beside this one) on free ports;
/// `None`, after saying it was skipped, when that binary is not built.
fn bench_with_server(test: &str, data_dir: &std::path::Path, args: &[&str]) -> Option<Output> {
    let free = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let (port, grpc) = (free(), free());
    let herald = std::path::Path::new(env!("CARGO_BIN_EXE_herald-bench")).with_file_name("herald");
    if !herald.is_file() {
        eprintln!("SKIPPED {test}: build `herald` first (cargo build -p herald)");
        assert!(std::env::var("HERALD_TEST_REQUIRE_ALL").as_deref() != Ok("1"), "the herald binary is required");
        return None;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(args)
        .env_clear()
        .env("HERALD_DATA_DIR", data_dir)
        .env("HERALD_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("HERALD_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .output()
        .expect("run herald-bench");
    Some(out)
}

#[test]
fn relay_reports_every_event_relayed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = bench(dir.path(), &["relay", "--events", "1000"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("events  1000"), "{stdout}");
    assert!(stdout.contains("relay") && stdout.contains("events/s"), "{stdout}");
}

#[test]
fn broadcast_reports_every_batch_received() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = bench(dir.path(), &["broadcast", "--batch", "5", "--batches", "20"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("batches    20 of 5 messages"), "{stdout}");
    assert!(stdout.contains("received   p50") && stdout.contains("broadcast  p50"), "{stdout}");
    let refused = bench(dir.path(), &["broadcast", "--batch", "0"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least 1"), "{refused:?}");
}

#[test]
fn a_bad_setting_is_named_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["relay", "--events", "1"])
        .env_clear()
        .env("HERALD_DATA_DIR", dir.path())
        .env("HERALD_STORE_URL", "mysql://nowhere")
        .output()
        .expect("run herald-bench");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("store_url"), "{out:?}");
}

/// The soak bench against a `herald serve` child (the binary beside this one), for a few
/// seconds: every sample is printed with the server's RSS and the sessions that came and went.
#[test]
fn soak_samples_a_server_child_under_churn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["soak", "--sessions", "20", "--users", "4", "--rate", "20", "--seconds", "6", "--lifetime", "2"];
    let args: Vec<&str> = args.into_iter().chain(["--sample", "2"]).collect();
    let Some(out) = bench_with_server("soak_samples_a_server_child_under_churn", dir.path(), &args) else { return };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("MiB at the start") && stdout.contains("slope/hour RSS"), "{stdout}");
    // "written    N events; M sessions opened, F failed to open"
    let line = stdout.lines().find(|l| l.starts_with("written")).expect("the totals line");
    let numbers: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    let [written, opened, failed] = numbers[..] else { panic!("{line}") };
    assert!(written > 0, "{stdout}");
    // 20 sessions living at most 2 s over 6 s: each slot churned more than once.
    assert!(opened > 20, "{stdout}");
    assert_eq!(failed, 0, "{stdout}");
}

/// The realtime bench through the public API, briefly: every write goes over REST and reaches
/// its sessions, none lost (and its flags parse beside the server's settings).
#[test]
fn realtime_via_rest_writes_through_the_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["realtime", "--via", "rest", "--sessions", "4", "--per-user", "2", "--rate", "50", "--seconds", "2"];
    let Some(out) = bench_with_server("realtime_via_rest_writes_through_the_api", dir.path(), &args) else { return };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let via = stdout.lines().find(|l| l.starts_with("via")).expect("the via line");
    assert!(
        via.contains("POST /api/v1/tasks") && via.contains("0 writes refused") && via.contains("0 deliveries lost"),
        "{stdout}"
    );
    assert!(stdout.contains("latency    write to client: p50"), "{stdout}");
}

/// A provider that accepts every message: answers `200 {}` to each request, one per connection.
fn accepting_provider() -> u16 {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let mut conn = reader.into_inner();
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
            });
        }
    });
    port
}

#[test]
fn notify_makes_notices_over_rest_and_times_their_escalation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let free = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let provider = accepting_provider();
    let out = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["notify", "--notices", "40", "--users", "4", "--after", "1"])
        .env_clear()
        .env("HERALD_DATA_DIR", dir.path())
        .env("HERALD_HTTP_ADDR", format!("127.0.0.1:{}", free()))
        .env("HERALD_GRPC_ADDR", format!("127.0.0.1:{}", free()))
        .env("HERALD_PROVIDER_URL", format!("http://127.0.0.1:{provider}"))
        .env("HERALD_PROVIDER_TOKEN", "t")
        .env("HERALD_SCHEDULER_INTERVAL", "100ms")
        .output()
        .expect("run herald-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("create     40 notices to 4 people") && stdout.contains("0 refused"), "{stdout}");
    assert!(stdout.contains("escalate   40 SMS steps"), "every step was sent: {stdout}");
    assert!(stdout.contains("due->sent  p50"), "{stdout}");
    assert!(!stdout.contains("unsettled"), "{stdout}");

    let missing = bench(dir.path(), &["notify", "--notices", "1"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("HERALD_PROVIDER_URL"), "{missing:?}");
}
