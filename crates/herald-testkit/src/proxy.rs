//! A TCP proxy for tests: listens on `127.0.0.1:0`, forwards every connection to a target, and
//! severs all current connections on demand while it keeps accepting new ones, so a test can drop
//! a client's connection to RabbitMQ or NATS without admin tools. Held, it also turns away new
//! connections, for an outage that lasts until it is released.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A running proxy; stops (and severs everything) when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    /// Cancelled to sever the connections accepted since the last sever; then replaced.
    generation: Arc<Mutex<CancellationToken>>,
    /// New connections are closed at once while set.
    held: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target` (`host:port`).
    pub async fn start(target: &str) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let generation = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let held = Arc::new(AtomicBool::new(false));
        tokio::spawn(accept(listener, target.to_owned(), Arc::clone(&generation), Arc::clone(&held), stop.clone()));
        Ok(Self { addr, generation, held, stop })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection open now, both ways; new connections are accepted as before.
    pub fn sever(&self) {
        let mut current = self.generation.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        current.cancel();
        *current = CancellationToken::new();
    }

    /// Severs every connection and turns new ones away until [`Proxy::release`]: an outage.
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
        self.sever();
    }

    /// Ends [`Proxy::hold`]: new connections are forwarded again.
    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.sever();
        self.stop.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    target: String,
    generation: Arc<Mutex<CancellationToken>>,
    held: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut client, _)) = accepted else { continue };
        if held.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let severed = generation.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(mut upstream) = TcpStream::connect(&target).await else { return };
            client.set_nodelay(true).ok();
            upstream.set_nodelay(true).ok();
            // Dropping both streams on sever closes them, which both ends see as a lost connection.
            // Biased: once severed, not one more byte goes through.
            tokio::select! {
                biased;
                () = severed.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn forwards_severs_holds_and_releases() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let echo_addr = echo.local_addr().expect("echo addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    tokio::io::copy(&mut read, &mut write).await.ok();
                });
            }
        });
        let proxy = Proxy::start(&echo_addr.to_string()).await.expect("proxy");

        let mut first = TcpStream::connect(proxy.addr()).await.expect("connect");
        first.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        first.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"ping");

        proxy.sever();
        let read = tokio::time::timeout(Duration::from_secs(2), first.read(&mut buf)).await.expect("severed promptly");
        assert!(matches!(read, Ok(0) | Err(_)), "the severed connection is closed: {read:?}");

        let mut second = TcpStream::connect(proxy.addr()).await.expect("reconnect");
        second.write_all(b"pong").await.expect("write");
        second.read_exact(&mut buf).await.expect("echo again");
        assert_eq!(&buf, b"pong");

        proxy.hold();
        let mut turned_away = TcpStream::connect(proxy.addr()).await.expect("accepted, then closed");
        turned_away.write_all(b"ping").await.ok();
        let read = tokio::time::timeout(Duration::from_secs(2), turned_away.read(&mut buf)).await.expect("closed");
        assert!(matches!(read, Ok(0) | Err(_)), "a held proxy forwards nothing: {read:?}");
        proxy.release();
        let mut third = TcpStream::connect(proxy.addr()).await.expect("connect after release");
        third.write_all(b"back").await.expect("write");
        third.read_exact(&mut buf).await.expect("echo after release");
        assert_eq!(&buf, b"back");
    }
}
