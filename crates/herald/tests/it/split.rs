//! Split deployments: roles in processes of their own, and command groups hosted by different
//! `herald api` processes that form one API.

use std::{process::Command, time::Duration};

use serde_json::{Value, json};

use super::{NEW, OLD, Served, herald, old_and_new_files, run, serve_role};

/// The NATS URL of the test environment, or `None` after saying loudly that `test` is skipped.
pub(super) fn nats_or_skip(test: &str) -> Option<String> {
    match std::env::var("HERALD_TEST_NATS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("SKIPPED {test}: HERALD_TEST_NATS_URL is not set");
            assert!(std::env::var("HERALD_TEST_REQUIRE_ALL").as_deref() != Ok("1"), "NATS is required");
            None
        }
    }
}

/// Waits until `GET /readyz` at `addr` answers 200.
pub(super) async fn wait_ready(addr: &str) {
    for _ in 0..200 {
        let status = reqwest::get(format!("http://{addr}/readyz")).await.expect("readyz").status().as_u16();
        if status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} never became ready");
}

/// `herald api` serves REST and gRPC and runs no worker: a delivery stays pending until a
/// scheduler and a sender run somewhere.
#[tokio::test]
async fn the_api_role_serves_http_and_grpc_without_workers() {
    let Ok(nats) = std::env::var("HERALD_TEST_NATS_URL") else {
        eprintln!("SKIPPED the_api_role_serves_http_and_grpc_without_workers: HERALD_TEST_NATS_URL is not set");
        assert!(std::env::var("HERALD_TEST_REQUIRE_ALL").as_deref() != Ok("1"), "NATS is required");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let namespace = format!("t_api_{}", uuid::Uuid::now_v7().simple());
    let env = [("HERALD_BROKER_URL", nats.as_str()), ("HERALD_BROKER_NAMESPACE", namespace.as_str())];
    let (_api, addr, _lines, logs) = serve_role("api", dir.path(), &env);
    let serving = logs.last().expect("the serving line");
    assert_eq!(serving["role"], "api");
    let grpc = serving["grpc_addr"].as_str().expect("grpc_addr");
    tokio::net::TcpStream::connect(grpc).await.expect("gRPC listens");
    // Ready once its NATS command transport serves too, which may take a moment after the log line.
    let mut status = 0;
    for _ in 0..200 {
        status = reqwest::get(format!("http://{addr}/readyz")).await.expect("readyz").status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    let jobs = logs.iter().any(|l| l["message"] == "scheduler running");
    assert!(!jobs, "no scheduler in the api role: {logs:?}");
}

/// A split deployment collects orphaned files too: `herald scheduler` runs the collector among its
/// jobs (under the jobs lease), removing an old orphan and leaving a fresh file alone.
#[test]
fn the_split_scheduler_collects_orphaned_files() {
    let Ok(nats) = std::env::var("HERALD_TEST_NATS_URL") else {
        eprintln!("SKIPPED the_split_scheduler_collects_orphaned_files: HERALD_TEST_NATS_URL is not set");
        assert!(std::env::var("HERALD_TEST_REQUIRE_ALL").as_deref() != Ok("1"), "NATS is required");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let files = old_and_new_files(dir.path());
    let namespace = format!("t_gc_{}", uuid::Uuid::now_v7().simple());
    let env = [
        ("HERALD_BROKER_URL", nats.as_str()),
        ("HERALD_BROKER_NAMESPACE", namespace.as_str()),
        ("HERALD_ADMIN_ADDR", "127.0.0.1:0"),
        ("HERALD_GC_INTERVAL", "1s"),
        ("HERALD_GC_GRACE", "1h"),
    ];
    let _scheduler = Served(Some(herald(dir.path(), &["scheduler"], &env).spawn().expect("spawn scheduler")));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while files.join(OLD).exists() {
        assert!(std::time::Instant::now() < deadline, "the scheduler never collected the old orphan");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(files.join(NEW).exists(), "a file younger than the grace period stays");
}

/// Two `herald api` processes with different `HERALD_COMMANDS` behind one HTTP address: the
/// first hosts accounts and tasks, the second the calendar and everything else; a client that
/// talks only to the first uses both groups, with the second's answers (and refusals) as its own.
/// Once the second stops, its commands are `503 unavailable` within seconds while the first's
/// own commands go on.
#[tokio::test]
async fn api_processes_hosting_different_command_groups_form_one_api() {
    let Some(nats) = nats_or_skip("api_processes_hosting_different_command_groups_form_one_api") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let (front_dir, back_dir) = (dir.path().join("front"), dir.path().join("back"));
    let store = format!("sqlite://{}/herald.db", dir.path().display());
    let namespace = format!("t_split_{}", uuid::Uuid::now_v7().simple());
    let common = [
        ("HERALD_BROKER_URL", nats.as_str()),
        ("HERALD_BROKER_NAMESPACE", namespace.as_str()),
        ("HERALD_STORE_URL", store.as_str()),
        ("HERALD_JWT_SECRET", "a shared secret of at least thirty-two bytes"),
        ("HERALD_COMMAND_FORWARD_TIMEOUT", "3s"),
    ];
    let with = |groups: &'static str| {
        let mut env = common.to_vec();
        env.push(("HERALD_COMMANDS", groups));
        env
    };
    let (_front, front, _front_logs, _) = serve_role("api", &front_dir, &with("auth,users,tasks"));
    let (mut back, back_addr, _back_logs, _) =
        serve_role("api", &back_dir, &with("attachments,clients,mailings,events,rooms"));
    wait_ready(&front).await;
    wait_ready(&back_addr).await;

    let http = crate::http();
    let base = format!("http://{front}/api/v1");
    let token = super::register_ada(&http, &base).await;
    let send = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http.request(method, format!("{base}{path}")).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Hosted here.
    let (status, task) = send(reqwest::Method::POST, "/tasks", Some(json!({"title": "Buy milk"}))).await;
    assert_eq!(status, 201, "{task}");
    // Hosted by the other process, through this one's address.
    let event = json!({"title": "Stand-up", "starts_at": "2026-12-01T09:00:00Z", "duration": 900});
    let (status, created) = send(reqwest::Method::POST, "/events", Some(event)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["title"], "Stand-up");
    let (status, listed) = send(reqwest::Method::GET, "/events?period=day&date=2026-12-01", None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["id"], created["id"], "{listed}");
    // The host's refusals come back as its own: every field error, the same code and status.
    let bad = json!({"title": "", "starts_at": "not a time", "duration": 0, "timezone": "Nowhere/Land"});
    let (status, problem) = send(reqwest::Method::POST, "/events", Some(bad)).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("validation_failed")), "{problem}");
    assert!(problem["errors"].as_array().is_some_and(|e| e.len() >= 3), "{problem}");
    // The host checks the caller itself: the forwarded call carries the caller's token, so an
    // admin-only command stays refused for this user.
    let (status, problem) = send(reqwest::Method::GET, "/clients", None).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")), "{problem}");
    // A command with a byte stream too: the upload travels to its host in the request's payload,
    // and a download comes back in the reply's.
    let content: Vec<u8> = (0..50_000u32).map(|i| (i % 249) as u8).collect();
    let part = reqwest::multipart::Part::bytes(content.clone()).file_name("notes.txt");
    let task_id = task["id"].as_str().expect("task id");
    let upload = http
        .post(format!("{base}/tasks/{task_id}/attachments"))
        .bearer_auth(&token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 201);
    let attachment: Value = upload.json().await.expect("json");
    assert_eq!(attachment["size"], content.len(), "{attachment}");
    let download = http
        .get(format!("{base}/attachments/{}/content", attachment["id"].as_str().expect("id")))
        .bearer_auth(&token)
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 206);
    assert_eq!(download.bytes().await.expect("bytes"), &content[10..20]);

    // The other host stops: its commands are unavailable within seconds, ours still answer.
    let pid = back.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    assert!(back.take().wait().expect("wait").success(), "the back host stops cleanly");
    let started = std::time::Instant::now();
    let (status, problem) = send(reqwest::Method::GET, "/events?period=day&date=2026-12-01", None).await;
    assert_eq!((status, problem["code"].as_str()), (503, Some("unavailable")), "{problem}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    let (status, tasks) = send(reqwest::Method::GET, "/tasks", None).await;
    assert_eq!(status, 200, "{tasks}");
}

/// A subset of command groups needs NATS to reach the rest: refused at start without it, and a
/// group that does not exist is a configuration error naming the setting.
#[test]
fn a_subset_of_commands_needs_nats_and_known_groups() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(&mut herald(dir.path(), &["serve", "--http-addr", "127.0.0.1:0"], &[("HERALD_COMMANDS", "tasks")]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HERALD_COMMANDS") && stderr.contains("nats://"), "{stderr}");
    let out = run(&mut herald(dir.path(), &["config", "--check"], &[("HERALD_COMMANDS", "tasks,spaceships")]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("HERALD_COMMANDS") && stderr.contains("spaceships"), "{stderr}");
}
