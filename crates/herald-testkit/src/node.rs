//! Node.js from Rust tests: a real `socket.io-client` driven line by line (`tests/js/sio-driver.mjs`)
//! and the demo page's browser test (`tests/js/demo.mjs`, Playwright on the system's Chromium).
//!
//! Both need the packages of `tests/js` installed (`scripts/test` runs `npm ci` there and sets
//! `HERALD_TEST_NODE_MODULES`); the browser test also needs `HERALD_TEST_CHROMIUM`. Without them the
//! tests say loudly that they are skipped, or fail under `HERALD_TEST_REQUIRE_ALL=1`.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
    time::{Instant, timeout_at},
};

/// How long the driver may take to answer a command (its own ack timeout is 10 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the browser test may run in all (it gives up by itself after 60 s).
const BROWSER_TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// `tests/js` of the repository.
fn js_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/js");
    dir.canonicalize().unwrap_or(dir)
}

/// The running test's name, as libtest names its thread.
fn current_test() -> String {
    std::thread::current().name().filter(|n| *n != "main").unwrap_or("a Node.js test").to_owned()
}

/// The `node_modules` folder from `HERALD_TEST_NODE_MODULES`, or `None` after saying loudly that
/// `test` is skipped (a failure under `HERALD_TEST_REQUIRE_ALL=1`).
fn node_modules(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(crate::test_env::backend_url("HERALD_TEST_NODE_MODULES", test)?);
    assert!(
        dir.join("socket.io-client").is_dir() && dir.join("playwright-core").is_dir(),
        "HERALD_TEST_NODE_MODULES={} holds no socket.io-client and playwright-core: run `npm ci --prefix tests/js`",
        dir.display()
    );
    Some(dir)
}

/// A `socket.io-client` 4 in a Node.js process, answering one command at a time.
#[derive(Debug)]
pub struct SioClient {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Lines nobody asked for yet: events, `close`, server-side disconnects.
    notices: VecDeque<Value>,
    stderr: Arc<Mutex<String>>,
}

impl SioClient {
    /// Starts the driver, or `None` when `HERALD_TEST_NODE_MODULES` is unset (see the module
    /// docs). Must be called inside a Tokio runtime.
    pub fn spawn() -> Option<Self> {
        let modules = node_modules(&current_test())?;
        let script = js_dir().join("sio-driver.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start node {}: {e}", script.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or_else(|_| json!({"kind": "stdout", "text": line}));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().expect("stderr buffer").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Some(Self { child, stdin, lines, notices: VecDeque::new(), stderr })
    }

    /// Opens a connection at `url` with handshake `auth: {token, session}` (websocket transport,
    /// no reconnection). `Err` carries the `connect_error`'s `data` (`{code, message}`), or
    /// `{message}` when the server sent none.
    pub async fn connect(&mut self, url: &str, token: &str, session: &str) -> Result<(), Value> {
        self.send(json!({"cmd": "connect", "url": url, "token": token, "session": session})).await;
        let line = self.answer("connect", |l| l["kind"] == "connected" || l["kind"] == "connect_error").await;
        if line["kind"] == "connected" {
            return Ok(());
        }
        match &line["data"] {
            Value::Null => Err(json!({"message": line["message"]})),
            data => Err(data.clone()),
        }
    }

    /// `subscribe {channel, since?}`: the ack's body (`{ok, channel, epoch, offset, recovered}`).
    pub async fn subscribe(&mut self, channel: &str, since: Option<i64>) -> Value {
        self.send(json!({"cmd": "subscribe", "channel": channel, "since": since})).await;
        self.reply("subscribe").await
    }

    /// `unsubscribe {channel}`: the ack's body.
    pub async fn unsubscribe(&mut self, channel: &str) -> Value {
        self.send(json!({"cmd": "unsubscribe", "channel": channel})).await;
        self.reply("unsubscribe").await
    }

    /// `call {command, input}`: the ack's body (`{ok: true, output}` or `{ok: false, error}`).
    pub async fn call(&mut self, command: &str, input: Value) -> Value {
        self.send(json!({"cmd": "call", "command": command, "input": input})).await;
        self.reply("call").await
    }

    /// `call {command, input, body: <bytes>}`: the ack's body, with bytes it carries (a
    /// download's `body`) decoded into the second value.
    pub async fn call_with_body(
        &mut self,
        command: &str,
        input: Value,
        body: Option<&[u8]>,
    ) -> (Value, Option<Vec<u8>>) {
        use base64::Engine as _;
        let mut line = json!({"cmd": "call", "command": command, "input": input});
        if let Some(body) = body {
            line["body_base64"] = base64::engine::general_purpose::STANDARD.encode(body).into();
        }
        self.send(line).await;
        let mut answer = self.reply("call").await;
        let bytes = answer.as_object_mut().and_then(|a| a.remove("body_base64")).map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.as_str().unwrap_or_default())
                .expect("base64 from the driver")
        });
        (answer, bytes)
    }

    /// `call {command, input, upload: id}` with `data` sent as `chunk` events of `chunk` bytes,
    /// each after the previous one's ack: the call's ack body and every chunk's.
    pub async fn upload(
        &mut self,
        command: &str,
        input: Value,
        id: &str,
        data: &[u8],
        chunk: usize,
    ) -> (Value, Vec<Value>) {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        self.send(json!({"cmd": "upload", "command": command, "input": input, "upload": id, "data_base64": data, "chunk": chunk}))
            .await;
        let line = self.reply_line("upload").await;
        let chunks = line["chunks"].as_array().cloned().unwrap_or_default();
        (line["body"].clone(), chunks)
    }

    /// Calls the kept ack callbacks of `channel`'s events up to `offset`; answers how many.
    pub async fn ack(&mut self, channel: &str, offset: i64) -> u64 {
        self.send(json!({"cmd": "ack", "channel": channel, "offset": offset})).await;
        let line = self.answer("ack", |l| l["kind"] == "acked").await;
        line["count"].as_u64().unwrap_or_default()
    }

    /// Acknowledges with the plain event `ack {channel, offset}` instead of a callback.
    pub async fn ack_plain(&mut self, channel: &str, offset: i64) {
        self.send(json!({"cmd": "ack", "channel": channel, "offset": offset, "plain": true})).await;
        self.answer("ack", |l| l["kind"] == "acked").await;
    }

    /// Whether each event is acknowledged as it arrives (off at start: events wait for [`Self::ack`]).
    pub async fn set_auto_ack(&mut self, value: bool) {
        self.send(json!({"cmd": "set_auto_ack", "value": value})).await;
        self.answer("set_auto_ack", |l| l["kind"] == "ok" && l["to"] == "set_auto_ack").await;
    }

    /// The next `event` (`{channel, offset, id, type, data, ts}`) within `wait`, other notices
    /// staying queued for [`Self::next_notice`].
    pub async fn next_event(&mut self, wait: Duration) -> Option<Value> {
        if let Some(at) = self.notices.iter().position(|l| l["kind"] == "event") {
            return self.notices.remove(at).map(|l| l["event"].clone());
        }
        let deadline = Instant::now() + wait;
        loop {
            let line = timeout_at(deadline, self.lines.recv()).await.ok()??;
            if line["kind"] == "event" {
                return Some(line["event"].clone());
            }
            self.notices.push_back(line);
        }
    }

    /// The next unasked line within `wait`, as the driver printed it: `{"kind":"event","event":…}`,
    /// `{"kind":"close","data":…}` or `{"kind":"disconnected","reason":…}`.
    pub async fn next_notice(&mut self, wait: Duration) -> Option<Value> {
        if let Some(line) = self.notices.pop_front() {
            return Some(line);
        }
        timeout_at(Instant::now() + wait, self.lines.recv()).await.ok()?
    }

    /// Closes the connection; answers Socket.io's reason (`io client disconnect`, or `not
    /// connected` when it was closed already).
    pub async fn disconnect(&mut self) -> String {
        self.send(json!({"cmd": "disconnect"})).await;
        let line = self.answer("disconnect", |l| l["kind"] == "disconnected" && l["to"] == "disconnect").await;
        line["reason"].as_str().unwrap_or_default().to_owned()
    }

    /// What the driver wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    async fn send(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
            let status = self.child.try_wait().ok().flatten();
            panic!("the Socket.io driver does not listen ({e}; exit {status:?}); stderr:\n{}", self.stderr());
        }
        self.stdin.flush().await.expect("flush the driver's stdin");
    }

    /// The `reply` to `to`, or a panic naming the driver's error.
    async fn reply(&mut self, to: &str) -> Value {
        self.reply_line(to).await["body"].clone()
    }

    async fn reply_line(&mut self, to: &str) -> Value {
        let line = self.answer(to, |l| l["kind"] == "reply" && l["to"] == to).await;
        if let Some(error) = line.get("error") {
            panic!("{to}: no answer from the server ({error})");
        }
        line
    }

    /// Waits for the line that `is_answer` picks, queueing the unasked ones; panics when the
    /// driver reports an error for `to`, exits or stays silent.
    async fn answer(&mut self, to: &str, is_answer: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let line = match timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("the Socket.io driver exited while waiting for {to}; stderr:\n{}", self.stderr()),
                Err(_) => panic!("no answer to {to} from the Socket.io driver in {ANSWER_TIMEOUT:?}"),
            };
            if is_answer(&line) {
                return line;
            }
            if line["kind"] == "error" {
                panic!("the Socket.io driver could not run {to}: {}", line["message"]);
            }
            self.notices.push_back(line);
        }
    }
}

/// Runs the demo page's browser test (`node tests/js/demo.mjs`) against the Herald at `base_url`:
/// two tabs of one person and a page of another, tasks, a notification in the inbox (sent with
/// `admin_token` when given) and a chat room, all live. `Err` holds
/// the test's output. Skipped (`Ok`) without `HERALD_TEST_NODE_MODULES` and
/// `HERALD_TEST_CHROMIUM`, unless `HERALD_TEST_REQUIRE_ALL=1`.
pub async fn run_demo_browser_test(base_url: &str, admin_token: Option<&str>) -> Result<(), String> {
    run_browser_script("demo.mjs", base_url, &[("HERALD_DEMO_ADMIN_TOKEN", admin_token.unwrap_or_default())]).await
}

/// Runs the admin console's browser test (`node tests/js/admin.mjs`) against the Herald at
/// `base_url` with `env` (the accounts and the mailing it looks at; see the script). Screenshots
/// go to `target/browser-screenshots/`. `Err` holds the test's output; skipped as
/// [`run_demo_browser_test`] is.
pub async fn run_admin_browser_test(base_url: &str, env: &[(&str, &str)]) -> Result<(), String> {
    run_browser_script("admin.mjs", base_url, env).await
}

/// Runs `tests/js/<script>` with Playwright on the system's Chromium against `base_url`.
async fn run_browser_script(script: &str, base_url: &str, env: &[(&str, &str)]) -> Result<(), String> {
    let test = current_test();
    let Some(modules) = node_modules(&test) else { return Ok(()) };
    let Some(chromium) = crate::test_env::backend_url("HERALD_TEST_CHROMIUM", &test) else { return Ok(()) };
    let script = js_dir().join(script);
    let screenshots = js_dir().join("../../target/browser-screenshots");
    let mut command = Command::new("node");
    command
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("HERALD_URL", base_url)
        .env("HERALD_TEST_CHROMIUM", &chromium)
        .env("HERALD_SCREENSHOTS", &screenshots)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = match tokio::time::timeout(BROWSER_TEST_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("could not start node {}: {e}", script.display())),
        Err(_) => return Err(format!("{} did not finish in {BROWSER_TEST_TIMEOUT:?}", script.display())),
    };
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} failed ({}):\n--- stdout\n{}--- stderr\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Runs `tests/js/sio-churn.mjs`: `total` Socket.io sessions, `concurrency` at a time, spread
/// over `users` (token, user id); each subscribes to its user channel and disconnects. Returns the
/// script's summary (`opened`, `answered`, `unanswered`, `connect_errors`, `errors`, `ms`), or
/// `None` when `HERALD_TEST_NODE_MODULES` is unset (skipped loudly, or failed under
/// `HERALD_TEST_REQUIRE_ALL`).
pub async fn sio_churn(
    url: &str,
    users: &[(String, String)],
    total: usize,
    concurrency: usize,
    prefix: &str,
) -> Option<Value> {
    let modules = node_modules(&current_test())?;
    let users: Vec<Value> = users.iter().map(|(token, id)| json!({"token": token, "id": id})).collect();
    let options = json!({"url": url, "users": users, "total": total, "concurrency": concurrency, "prefix": prefix});
    let output = Command::new("node")
        .arg(js_dir().join("sio-churn.mjs"))
        .arg(options.to_string())
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node sio-churn.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok());
    Some(summary.unwrap_or_else(|| {
        panic!(
            "sio-churn.mjs printed no summary ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    }))
}

/// Runs `tests/js/rest-to-socket.mjs` against the Herald at `url`: `users` people with a stock
/// `socket.io-client` session each, tasks written over REST at `rate` per second for `seconds`.
/// Returns the script's summary (`written`, `refused`, `delivered`, `lost`, `delivered_per_s`,
/// `p50_ms`, `p99_ms`, `p999_ms`, `max_ms`), or `None` when `HERALD_TEST_NODE_MODULES` is unset
/// (skipped loudly, or failed under `HERALD_TEST_REQUIRE_ALL`).
pub async fn rest_to_socket(url: &str, users: usize, rate: u32, seconds: u32) -> Option<Value> {
    let modules = node_modules(&current_test())?;
    let options = json!({"url": url, "users": users, "rate": rate, "seconds": seconds});
    let run = Command::new("node")
        .arg(js_dir().join("rest-to-socket.mjs"))
        .arg(options.to_string())
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(u64::from(seconds) + 60), run)
        .await
        .expect("rest-to-socket.mjs finishes")
        .expect("run node rest-to-socket.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok());
    Some(summary.unwrap_or_else(|| {
        panic!(
            "rest-to-socket.mjs printed no summary ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    }))
}
