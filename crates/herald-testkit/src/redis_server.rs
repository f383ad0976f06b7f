//! A Redis server of a test's own (never the shared one), on a free loopback port with
//! `appendonly yes` in a temporary directory, so a test can stop and restart it and find its
//! data again; or serving TLS only, with a self-signed certificate made for it.

use std::{process::Stdio, time::Duration};

use tempfile::TempDir;
use tokio::{
    net::TcpStream,
    process::{Child, Command},
};

use crate::test_env::require_all;

const REDIS_SERVER: &str = "redis-server";

/// A running `redis-server` that a test owns.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// The certificate's PEM file when it serves TLS only.
    certificate: Option<std::path::PathBuf>,
}

impl RedisServer {
    /// Starts one, or `None` after saying loudly that `test` is skipped (fails instead with
    /// `HERALD_TEST_REQUIRE_ALL=1`) when `redis-server` is not installed.
    pub async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, false).await
    }

    /// Starts one that serves only TLS (`rediss://`) with a self-signed certificate for
    /// `127.0.0.1` ([`RedisServer::certificate`]), or `None` as [`RedisServer::start`].
    pub async fn start_tls(test: &str) -> Option<Self> {
        Self::start_with(test, true).await
    }

    async fn start_with(test: &str, tls: bool) -> Option<Self> {
        let installed = std::process::Command::new(REDIS_SERVER)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            assert!(!require_all(), "redis-server is not installed but HERALD_TEST_REQUIRE_ALL=1: {test}");
            eprintln!("SKIPPED {test}: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut server = Self { port, dir: tempfile::tempdir().expect("temp dir"), child: None, certificate: None };
        if tls {
            let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("a test certificate");
            let certificate = server.dir.path().join("redis.crt");
            std::fs::write(&certificate, key.cert.pem()).expect("write the certificate");
            std::fs::write(server.dir.path().join("redis.key"), key.signing_key.serialize_pem())
                .expect("write the key");
            server.certificate = Some(certificate);
        }
        server.run().await;
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://…` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.certificate.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The PEM file of its self-signed certificate, when it serves TLS.
    pub fn certificate(&self) -> Option<&std::path::Path> {
        self.certificate.as_deref()
    }

    async fn run(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new(REDIS_SERVER);
        command.args(["--bind", "127.0.0.1", "--appendonly", "yes", "--save", ""]);
        if self.certificate.is_some() {
            command.args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"]);
            command.arg("--tls-cert-file").arg(self.dir.path().join("redis.crt"));
            command.arg("--tls-key-file").arg(self.dir.path().join("redis.key"));
        } else {
            command.args(["--port", &port]);
        }
        let child = command
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
