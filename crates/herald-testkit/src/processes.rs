//! Herald's roles as separate operating-system processes: the built `herald` binary started with
//! an environment of its own, its JSON log read line by line, stopped with SIGTERM or SIGKILL.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// The `herald` binary next to this test binary (`target/<profile>/herald`); `cargo test
/// --workspace` builds it. Panics naming the fix when it is missing.
pub fn herald_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current test binary");
    // target/debug/deps/it-… -> target/debug/herald
    let bin = exe.parent().and_then(|deps| deps.parent()).map(|dir| dir.join("herald")).expect("target dir");
    assert!(bin.is_file(), "{} is missing: run `cargo build -p herald` (or `cargo test --workspace`)", bin.display());
    bin
}

/// The settings every role of a test deployment shares: `store_url` and `broker_url` (in a fresh
/// namespace), the test JWT secret, no login limits (the security suite tests them), `data_dir`,
/// and HTTP and gRPC on free loopback ports.
pub fn deployment_env(store_url: &str, broker_url: &str, data_dir: &std::path::Path) -> Vec<(String, String)> {
    [
        ("HERALD_STORE_URL", store_url),
        ("HERALD_STORE_POOL_SIZE", "4"),
        ("HERALD_BROKER_URL", broker_url),
        ("HERALD_BROKER_NAMESPACE", &format!("t_{}", uuid::Uuid::now_v7().simple())),
        ("HERALD_JWT_SECRET", crate::app::TEST_JWT_SECRET),
        ("HERALD_AUTH_ACCOUNT_RATE", "unlimited"),
        ("HERALD_AUTH_ADDRESS_RATE", "unlimited"),
        ("HERALD_DATA_DIR", &data_dir.display().to_string()),
        ("HERALD_HTTP_ADDR", "127.0.0.1:0"),
        ("HERALD_GRPC_ADDR", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// One running `herald <args>` process.
#[derive(Debug)]
pub struct HeraldProcess {
    pub name: String,
    child: Child,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl HeraldProcess {
    /// Starts `herald <args>` with exactly `env` (and JSON logs), reading its log in the background.
    pub fn start(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let mut command = Command::new(herald_bin());
        command.args(args).env_clear().env("HERALD_LOG_FORMAT", "json");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start herald {args:?}: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let log = serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({"message": line}));
                sink.lock().expect("logs").push(log);
            }
        });
        Self { name: name.to_owned(), child, logs }
    }

    /// The first log line `matches` accepts, waiting up to `wait`; panics with the log so far.
    pub async fn wait_log(&mut self, wait: Duration, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(found) = self.logs.lock().expect("logs").iter().find(|l| matches(l)) {
                return found.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Its last lines may still be on their way from the pipe.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Some(found) = self.logs.lock().expect("logs").iter().find(|l| matches(l)) {
                    return found.clone();
                }
                panic!("{} exited ({status}) before the awaited line; log:\n{}", self.name, self.log_text());
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{}: the awaited log line did not come within {wait:?}; log:\n{}", self.name, self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every log line so far that `matches` accepts.
    pub fn logs_matching(&self, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.logs.lock().expect("logs").iter().filter(|l| matches(l)).cloned().collect()
    }

    /// The log so far, one JSON line each.
    pub fn log_text(&self) -> String {
        self.logs.lock().expect("logs").iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    }

    /// The HTTP address it serves (`herald is serving`'s `http_addr`).
    pub async fn http_addr(&mut self) -> String {
        let line = self.wait_log(Duration::from_secs(30), |l| l["message"] == "herald is serving").await;
        line["http_addr"].as_str().expect("http_addr").to_owned()
    }

    /// The admin address of a background role (`<role> starting`'s `admin_addr`).
    pub async fn admin_addr(&mut self) -> String {
        let line = self.wait_log(Duration::from_secs(30), |l| l["admin_addr"].is_string()).await;
        line["admin_addr"].as_str().expect("admin_addr").to_owned()
    }

    /// Waits for it to exit by itself, successfully.
    pub async fn wait_success(&mut self) {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "{} failed: {status:?}; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Waits up to `wait` for it to exit by itself; its exit status.
    pub async fn wait_exit(&mut self, wait: Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(status) => status.expect("wait for the process"),
            Err(_) => panic!("{} still runs after {wait:?}; log:\n{}", self.name, self.log_text()),
        }
    }

    /// The process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let pid = self.child.id().expect("the process is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// SIGKILL: no draining, no goodbye.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "{} did not stop cleanly on SIGTERM: {status:?}; log:\n{}",
            self.name,
            self.log_text()
        );
    }
}
