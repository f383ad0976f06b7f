//! A Redis server of a test's own (never the shared one), on a free loopback port with
//! `appendonly yes` in a temporary directory, so a test can stop and restart it and find its
//! data again.

use std::{process::Stdio, time::Duration};

use tempfile::TempDir;
use tokio::{
    net::TcpStream,
    process::{Child, Command},
};

const REDIS_SERVER: &str = "redis-server";

/// A running `redis-server` that a test owns.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one, or `None` after saying loudly that `test` is skipped (fails instead with
    /// `HERALD_TEST_REQUIRE_ALL=1`) when `redis-server` is not installed.
    pub async fn start(test: &str) -> Option<Self> {
        let installed = std::process::Command::new(REDIS_SERVER)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            assert!(!crate::require_all(), "redis-server is not installed but HERALD_TEST_REQUIRE_ALL=1: {test}");
            eprintln!("SKIPPED {test}: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut server = Self { port, dir: tempfile::tempdir().expect("temp dir"), child: None };
        server.run().await;
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let child = Command::new(REDIS_SERVER)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not come up on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server as an operator would (SIGTERM: it writes its append-only file and
    /// exits), waits for it to be gone, then starts it again on the same port and data.
    pub async fn restart(&mut self, down_for: Duration) {
        self.stop().await;
        tokio::time::sleep(down_for).await;
        self.run().await;
    }

    /// Stops the server (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill -TERM");
            }
            tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .expect("redis-server exits within 20 s of SIGTERM")
                .expect("wait for redis-server");
        }
    }
}
