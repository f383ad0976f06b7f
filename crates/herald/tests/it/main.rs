//! The `herald` binary as an operator runs it: configuration checks, account creation, and a
//! served process that stops cleanly on SIGTERM.

#![allow(clippy::expect_used)]

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Output, Stdio},
    time::Duration,
};

use herald_testkit::http::client as http;
use serde_json::{Value, json};

mod accounts;
mod answers;
mod proxies;
mod sealed;
mod split;
mod support;
mod tls_failures;
mod traces;

fn herald(data_dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(args).env_clear().env("HERALD_DATA_DIR", data_dir).env("HERALD_LOG_FORMAT", "json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run herald")
}

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Starts `herald serve` on a free port; returns the child, its address, its remaining log lines
/// and the JSON log lines read until it was serving.
/// A served herald, killed and reaped when dropped so a failing test leaves no process behind.
struct Served(Option<std::process::Child>);

impl Served {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    fn take(&mut self) -> std::process::Child {
        self.0.take().expect("child present")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

fn serve(data: &std::path::Path, env: &[(&str, &str)]) -> (Served, String, Lines, Vec<Value>) {
    serve_role("serve", data, env)
}

/// Starts `herald <role>` (`serve` or `api`) on free ports; returns it, its HTTP address, its
/// remaining log lines and those read so far.
fn serve_role(role: &str, data: &std::path::Path, env: &[(&str, &str)]) -> (Served, String, Lines, Vec<Value>) {
    let mut child = Served(Some(
        herald(data, &[role, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"], env)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve"),
    ));
    let stderr = child.0.as_mut().and_then(|c| c.stderr.take()).expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut logs = Vec::new();
    loop {
        let line = lines.next().expect("serve exited before listening").expect("read log");
        let log: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if log["message"] == "herald is serving" {
            let addr = log["http_addr"].as_str().expect("http_addr").to_owned();
            logs.push(log);
            return (child, addr, lines, logs);
        }
        logs.push(log);
    }
}

/// Registers ada@example.org through the API at `base` (`…/api/v1`); her access token.
async fn register_ada(client: &reqwest::Client, base: &str) -> String {
    let register = json!({"email": "ada@example.org", "password": "password123", "name": "Ada"});
    client.post(format!("{base}/auth/register")).json(&register).send().await.expect("register");
    let creds = json!({"email": "ada@example.org", "password": "password123"});
    let login: Value =
        client.post(format!("{base}/auth/login")).json(&creds).send().await.expect("login").json().await.expect("json");
    login["access_token"].as_str().expect("token").to_owned()
}

/// Peak resident set size of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).expect("value").parse().expect("number")
}

#[tokio::test]
async fn a_large_upload_streams_through_without_growing_the_server() {
    const MIB: usize = 1 << 20;
    let size_mib: usize = std::env::var("HERALD_TEST_UPLOAD_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let dir = tempfile::tempdir().expect("temp dir");
    let (child, addr, _lines, _) = serve(dir.path(), &[("HERALD_MAX_UPLOAD_SIZE", "2GiB")]);
    let client = crate::http();
    let base = format!("http://{addr}/api/v1");
    let token = register_ada(&client, &base).await;
    let task: Value = client
        .post(format!("{base}/tasks"))
        .bearer_auth(&token)
        .json(&json!({"title": "Big file"}))
        .send()
        .await
        .expect("task")
        .json()
        .await
        .expect("json");
    let upload = |mib: usize| {
        let chunks =
            (0..mib * 16).map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![(i % 251) as u8; MIB / 16])));
        let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
        let part = reqwest::multipart::Part::stream_with_length(body, (mib * MIB) as u64).file_name("big.bin");
        client
            .post(format!("{base}/tasks/{}/attachments", task["id"].as_str().expect("id")))
            .bearer_auth(&token)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
    };
    // Warm up every code path first, so the baseline includes the buffers any upload needs.
    assert_eq!(upload(4).await.expect("warm-up").status(), 201);
    let before = peak_rss_kib(child.id());
    let resp = upload(size_mib).await.expect("upload");
    assert_eq!(resp.status(), 201);
    let stored: Value = resp.json().await.expect("json");
    assert_eq!(stored["size"].as_u64(), Some((size_mib * MIB) as u64));
    // The kernel's RSS counters are per-CPU and read approximately, so the high-water mark can
    // read a little lower than before: that is no growth.
    let grown_mib = peak_rss_kib(child.id()).saturating_sub(before) as f64 / 1024.0;
    drop(child);
    eprintln!("peak RSS grew by {grown_mib:.1} MiB during a {size_mib} MiB upload");
    assert!(grown_mib < 8.0, "a {size_mib} MiB upload grew the server's peak RSS by {grown_mib:.1} MiB");
}

#[test]
fn config_check_names_each_bad_setting_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ok = run(herald(dir.path(), &["config", "--check"], &[]).stdin(Stdio::null()));
    assert!(ok.status.success(), "{ok:?}");

    let bad = run(&mut herald(
        dir.path(),
        &["config", "--check", "--body-limit", "lots"],
        &[("HERALD_HTTP_ADDR", "localhost"), ("HERALD_STORE_URL", "mongodb://x"), ("HERALD_JWT_SECRET", "tiny")],
    ));
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    for needle in ["HERALD_HTTP_ADDR", "HERALD_STORE_URL", "HERALD_JWT_SECRET", "--body-limit", "from flag"] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
    assert!(!stderr.contains("tiny"), "a secret leaked: {stderr}");
}

#[test]
fn config_lists_every_setting_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = "0123456789abcdef0123456789abcdef-very-secret";
    let out = run(&mut herald(
        dir.path(),
        &["config"],
        &[("HERALD_JWT_SECRET", secret), ("HERALD_STORE_URL", "postgres://app:pw@db/herald")],
    ));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for s in herald::config::SETTINGS {
        assert!(stdout.contains(&format!("{} = ", s.name)) && stdout.contains(s.env), "{} missing", s.name);
    }
    assert!(stdout.contains("jwt_secret = ***    (env)"), "{stdout}");
    assert!(stdout.contains("postgres://app:***@db/herald"), "{stdout}");
    assert!(!stdout.contains(secret) && !stdout.contains(":pw@"), "{stdout}");
}

#[tokio::test]
async fn an_admin_made_by_the_cli_logs_in_to_a_served_herald_that_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let create = |email: &str| {
        run(&mut herald(data, &["users", "create", "--email", email, "--password", "root-password", "--admin"], &[]))
    };
    let made = create("root@example.org");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(String::from_utf8_lossy(&made.stdout).contains("created admin root@example.org"));
    let again = create("ROOT@example.org");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("email_taken"));

    let (mut served, addr, lines, logs) = serve(data, &[]);
    assert!(
        logs.iter().any(|l| l["message"].as_str().is_some_and(|m| m.contains("generated a JWT secret"))),
        "serve says when it generates the JWT secret"
    );
    assert!(data.join("jwt-secret").exists());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(data.join("jwt-secret")), 0o600, "the secret is readable by its owner only");
    assert_eq!(mode(data.join("files")), 0o700, "uploaded files are private to the service user");

    let client = crate::http();
    // Embedded, nothing waits on NATS: ready within moments of serving.
    let mut ready = None;
    for _ in 0..100 {
        let answer = client.get(format!("http://{addr}/readyz")).send().await.expect("readyz");
        if answer.status() == 200 {
            ready = None;
            break;
        }
        ready = Some(answer.text().await.expect("body"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, None, "an embedded serve never became ready");
    let base = format!("http://{addr}/api/v1");
    let login: Value = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "root@example.org", "password": "root-password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token");
    let users = client.get(format!("{base}/users")).bearer_auth(token).send().await.expect("users");
    assert_eq!(users.status(), 200, "the CLI-made account is an admin");

    let pid = served.id().to_string();
    let mut child = served.take();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                child.kill().ok();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .expect("join");
    assert!(status.expect("serve stops within 10 s of SIGTERM").success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");
}

/// Names of the shape of Herald's keys (a UUID's 32 hex digits): the collector considers no other.
const OLD: &str = "0000000000000000000000000000001d";
const NEW: &str = "0000000000000000000000000000002e";
/// Not of that shape: never collected, however old.
const FOREIGN: &str = "report.pdf";

/// A files directory in `data_dir` holding an orphan two hours old ([`OLD`]), a fresh one
/// ([`NEW`]) and an old file that is not Herald's ([`FOREIGN`]).
fn old_and_new_files(data_dir: &std::path::Path) -> std::path::PathBuf {
    let files = data_dir.join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    for name in [OLD, FOREIGN] {
        std::fs::write(files.join(name), b"x").expect("write");
        let old = std::fs::File::options().write(true).open(files.join(name)).expect("open");
        old.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200)).expect("age");
    }
    std::fs::write(files.join(NEW), b"x").expect("write");
    files
}

#[test]
fn gc_files_removes_old_orphans_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = old_and_new_files(dir.path());

    let out = run(&mut herald(dir.path(), &["gc", "files", "--gc-grace", "1h"], &[]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("scanned 2 files: removed 1"), "{stdout}");
    assert!(!files.join(OLD).exists() && files.join(NEW).exists());
    assert!(files.join(FOREIGN).exists(), "a file not named like Herald's keys is not Herald's");
}

/// `herald relay`, `scheduler` and `sender` each answer `/healthz`, `/readyz` and `/metrics` on
/// their admin port, and stop cleanly on SIGTERM.
#[tokio::test]
async fn background_roles_serve_their_probes_on_the_admin_port() {
    let Ok(nats) = std::env::var("HERALD_TEST_NATS_URL") else {
        eprintln!("SKIPPED background_roles_serve_their_probes_on_the_admin_port: HERALD_TEST_NATS_URL is not set");
        assert!(std::env::var("HERALD_TEST_REQUIRE_ALL").as_deref() != Ok("1"), "NATS is required");
        return;
    };
    for role in ["relay", "scheduler", "sender"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let namespace = format!("t_admin_{}", uuid::Uuid::now_v7().simple());
        let env = [("HERALD_BROKER_URL", nats.as_str()), ("HERALD_BROKER_NAMESPACE", namespace.as_str())];
        let mut child = Served(Some(
            herald(dir.path(), &[role, "--admin-addr", "127.0.0.1:0"], &env)
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn role"),
        ));
        let stderr = child.0.as_mut().and_then(|c| c.stderr.take()).expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let admin = loop {
            let line = lines.next().expect("the role exited before running").expect("read log");
            let log: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            if log["message"] == format!("{role} starting") {
                break log["admin_addr"].as_str().expect("admin_addr").to_owned();
            }
        };
        let get = |path: &str| reqwest::get(format!("http://{admin}{path}"));
        assert_eq!(get("/healthz").await.expect("healthz").status(), 200, "{role}");
        let ready = get("/readyz").await.expect("readyz");
        assert_eq!(ready.status(), 200, "{role}");
        let metrics = get("/metrics").await.expect("metrics").text().await.expect("text");
        assert!(metrics.contains("herald_http_requests_total"), "{role}: {metrics}");
        assert_eq!(get("/api/v1/me").await.expect("no api").status(), 404, "{role} serves no API");

        let pid = child.id().to_string();
        let mut process = child.take();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let status = tokio::task::spawn_blocking(move || process.wait().expect("wait")).await.expect("join");
        assert!(status.success(), "{role} stops cleanly on SIGTERM");
    }
}

#[test]
fn standalone_background_roles_refuse_the_in_process_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    for role in ["api", "gateway", "relay", "scheduler", "sender"] {
        let out = run(&mut herald(dir.path(), &[role], &[]));
        assert!(!out.status.success(), "{role}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("herald {role} needs"))
                && stderr.contains("HERALD_BROKER_URL")
                && stderr.contains("amqp://")
                && stderr.contains("nats://"),
            "{role}: {stderr}"
        );
    }
}

/// `scheme://user:password@host…` -> (user, password), when both are there and non-empty.
fn url_credentials(url: &str) -> Option<(&str, &str)> {
    let (_, rest) = url.split_once("://")?;
    let (userinfo, _) = rest.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    (!user.is_empty() && !password.is_empty()).then_some((user, password))
}

/// Every engine in the compose file requires credentials, every Herald service reaches the store
/// and the broker with the ones the engine was given, and all of them sign broker messages with
/// one key taken from the environment (never written into the file).
fn check_compose_credentials(services: &serde_json::Map<String, Value>, roles: &[(String, String)]) {
    let env = |service: &str, var: &str| -> String {
        services[service]["environment"][var].as_str().unwrap_or_else(|| panic!("{service} sets {var}")).to_owned()
    };
    let pg_password = env("postgres", "POSTGRES_PASSWORD");
    let rabbit_password = env("rabbitmq", "RABBITMQ_DEFAULT_PASS");
    for password in [&pg_password, &rabbit_password] {
        assert!(password.starts_with("${") && password.contains(":?"), "a required variable, not {password:?}");
    }
    let nats: Vec<&str> =
        services["nats"]["command"].as_array().expect("nats command").iter().filter_map(Value::as_str).collect();
    let flag = |name: &str| nats.iter().position(|a| *a == name).and_then(|i| nats.get(i + 1)).copied();
    let nats_credentials = match (flag("--user"), flag("--pass"), flag("--auth")) {
        (Some(user), Some(password), _) if !user.is_empty() && password.starts_with("${") => Some((user, password)),
        (_, _, Some(token)) if token.starts_with("${") => None,
        _ => panic!("NATS runs without --user/--pass or --auth from the environment: {nats:?}"),
    };

    let mut keys = Vec::new();
    for (name, role) in roles {
        let key = env(name, "HERALD_BROKER_SIGNING_KEY");
        assert!(key.starts_with("${HERALD_BROKER_SIGNING_KEY:?"), "{name} ({role}) takes the key from the environment");
        keys.push(key);
        let store = env(name, "HERALD_STORE_URL");
        assert_eq!(url_credentials(&store), Some(("herald", pg_password.as_str())), "{name}: {store}");
        let broker = env(name, "HERALD_BROKER_URL");
        let expected = match broker.split_once("://").map(|(scheme, _)| scheme) {
            Some("amqp" | "amqps") => ("herald", rabbit_password.as_str()),
            Some("nats" | "tls") => nats_credentials.expect("user and password on NATS"),
            _ => panic!("{name}: a networked broker, not {broker}"),
        };
        assert_eq!(url_credentials(&broker), Some(expected), "{name}: {broker}");
    }
    keys.dedup();
    assert_eq!(keys.len(), 1, "every role signs with the same key: {keys:?}");
}

/// The container files hang together: the compose file and the Prometheus config parse, every
/// Herald service runs a role the binary has, with credentials for the store and the broker and
/// the broker signing key, every role that serves metrics is scraped on the port it serves them
/// on, and the image builds with the command the test command builds with.
#[test]
fn the_deployment_files_name_real_roles_and_scrape_each_one() {
    let Ok(python) = std::env::var("HERALD_TEST_PYTHON") else {
        eprintln!("SKIPPED the_deployment_files_name_real_roles_and_scrape_each_one: HERALD_TEST_PYTHON is not set");
        assert!(std::env::var("HERALD_TEST_REQUIRE_ALL").as_deref() != Ok("1"), "the Python venv is required");
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = "import json, sys, yaml\n\
                compose = yaml.safe_load(open(sys.argv[1]))\n\
                prometheus = yaml.safe_load(open(sys.argv[2]))\n\
                print(json.dumps({'compose': compose, 'prometheus': prometheus}))";
    let out = Command::new(python)
        .args(["-c", read])
        .arg(root.join("docker-compose.yml"))
        .arg(root.join("deploy/prometheus.yml"))
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let services = files["compose"]["services"].as_object().expect("services");
    let mut roles = Vec::new();
    for (name, service) in services {
        if service["image"] != "herald:latest" {
            continue;
        }
        let role = service["command"][0].as_str().unwrap_or_else(|| panic!("{name} names its role"));
        let dir = tempfile::tempdir().expect("temp dir");
        let help = run(&mut herald(dir.path(), &[role, "--help"], &[]));
        assert!(help.status.success(), "{name} runs `herald {role}`, which the binary does not have");
        roles.push((name.clone(), role.to_owned()));
    }
    let mut names: Vec<_> = roles.iter().map(|(_, role)| role.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["api", "gateway", "migrate", "relay", "scheduler", "sender"]);
    check_compose_credentials(services, &roles);

    let scraped: Vec<String> = files["prometheus"]["scrape_configs"]
        .as_array()
        .expect("scrape configs")
        .iter()
        .flat_map(|job| {
            let statics = job["static_configs"].as_array().into_iter().flatten().flat_map(|c| {
                c["targets"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned))
            });
            let dns = job["dns_sd_configs"].as_array().into_iter().flatten().flat_map(|c| {
                let port = c["port"].as_u64().unwrap_or(0);
                let names = c["names"].as_array().into_iter().flatten().filter_map(|n| n.as_str());
                names.map(move |n| format!("{n}:{port}")).collect::<Vec<_>>()
            });
            statics.chain(dns).collect::<Vec<_>>()
        })
        .collect();
    for (name, role) in &roles {
        let port = match role.as_str() {
            "migrate" => continue,
            "api" | "gateway" => 8080,
            _ => 9090,
        };
        assert!(scraped.contains(&format!("{name}:{port}")), "{name} ({role}) is not scraped on :{port}: {scraped:?}");
    }

    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked -p herald"), "the image builds as the tests do");
    assert!(dockerfile.contains("USER herald"), "the image runs unprivileged");
    for var in ["HERALD_HTTP_ADDR=0.0.0.0:8080", "HERALD_GRPC_ADDR=0.0.0.0:50051", "HERALD_ADMIN_ADDR=0.0.0.0:9090"] {
        assert!(dockerfile.contains(var), "{var}");
    }
}
