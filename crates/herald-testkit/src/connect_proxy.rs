//! An HTTP `CONNECT` proxy for tests: it opens a tunnel to the `host:port` a client asks for,
//! resolving names through the map it was given (anything else is refused with 502), and notes
//! every target it was asked for.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct ConnectProxy {
    pub addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    /// Starts on a free loopback port; `names` are the host names it resolves (addresses are
    /// taken as they are).
    pub async fn start(names: &[(&str, IpAddr)]) -> Self {
        let names: Arc<HashMap<String, IpAddr>> =
            Arc::new(names.iter().map(|(name, ip)| ((*name).to_owned(), *ip)).collect());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let asked = asked.clone();
            async move {
                while let Ok((conn, _)) = listener.accept().await {
                    let (asked, names) = (asked.clone(), names.clone());
                    tokio::spawn(async move {
                        let _ = tunnel(conn, &asked, &names).await;
                    });
                }
            }
        });
        Self { addr, asked, task }
    }

    /// `http://127.0.0.1:<port>`, as `HERALD_HTTPS_PROXY` names it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every `host:port` a client asked for, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("asked").clone()
    }
}

async fn tunnel(
    mut conn: TcpStream,
    asked: &Mutex<Vec<String>>,
    names: &HashMap<String, IpAddr>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        return conn.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").await;
    };
    asked.lock().expect("asked").push(target.to_owned());
    let Some((host, port)) = target.rsplit_once(':') else {
        return conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse::<IpAddr>().ok().or_else(|| names.get(host).copied());
    let (Some(ip), Ok(port)) = (ip, port.parse::<u16>()) else {
        return conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
    };
    let Ok(mut upstream) = TcpStream::connect((ip, port)).await else {
        return conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
    };
    conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
    tokio::io::copy_bidirectional(&mut conn, &mut upstream).await.map(drop)
}
