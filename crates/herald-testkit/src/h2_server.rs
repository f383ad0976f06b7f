//! An HTTP/2-only server behind TLS (ALPN `h2` alone), answering every request `200 {}` and
//! noting each request's version and path: what shows an outbound client speaks HTTP/2 when a
//! server offers it.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, Version, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use crate::tls::ServerCert;

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct H2Server {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<(Version, String)>>>,
    task: JoinHandle<()>,
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl H2Server {
    /// Starts on a free loopback port, presenting `cert`.
    pub async fn start(cert: &ServerCert) -> Self {
        let mut config = cert.server_config();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((conn, _)) = listener.accept().await {
                    let (acceptor, seen) = (acceptor.clone(), seen.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(conn).await else { return };
                        let service = service_fn(move |request: Request<Incoming>| {
                            seen.lock().expect("seen").push((request.version(), request.uri().path().to_owned()));
                            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}")))) }
                        });
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        });
        Self { addr, seen, task }
    }

    /// The version and path of every request, in order.
    pub fn seen(&self) -> Vec<(Version, String)> {
        self.seen.lock().expect("seen").clone()
    }
}
