//! TLS for the test servers: a certificate authority made in the test, certificates it signs
//! (or that nobody signed), and a TLS front that terminates TLS and passes the bytes on to a
//! plain loopback server (the mock provider, a webhook receiver, the OpenID provider). Herald's
//! outbound TLS is tested against real handshakes this way, on loopback only.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer},
    },
};

/// A certificate and its key, for a server.
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: CertificateDer<'static>,
    /// The certificate, PEM (what a client that trusts it exactly is given).
    pub pem: String,
    key: Vec<u8>,
}

impl ServerCert {
    /// A certificate for `names` that no authority signed: no client trusts it.
    pub fn self_signed(names: &[&str]) -> Self {
        let key = KeyPair::generate().expect("a key");
        let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("names");
        let cert = params.self_signed(&key).expect("a certificate");
        Self { cert: cert.der().clone(), pem: cert.pem(), key: key.serialize_der() }
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone().into())
    }

    /// A server configuration (rustls with ring) that presents this certificate.
    pub fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key())
            .expect("the test certificate")
    }
}

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(rcgen::DnType::CommonName, "Herald test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("the CA");
        Self { issuer }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA's certificate to `path`, as `HERALD_HTTP_CA_FILE` reads it.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.pem()).expect("write the CA file");
    }

    /// A server certificate for `names` (host names or addresses), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> ServerCert {
        let key = KeyPair::generate().expect("a key");
        let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("names");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        ServerCert { cert: cert.der().clone(), pem: cert.pem(), key: key.serialize_der() }
    }
}

/// A TLS listener on a free loopback port that hands each connection's plain bytes to
/// `upstream`. Speaks HTTP/1.1 only (ALPN), as the servers behind it do. Stops when dropped.
#[derive(Debug)]
pub struct TlsFront {
    pub addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    pub async fn start(upstream: SocketAddr, cert: &ServerCert) -> Self {
        let mut config = cert.server_config();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (handshakes, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = tokio::spawn({
            let (handshakes, failed) = (handshakes.clone(), failed.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (acceptor, handshakes, failed) = (acceptor.clone(), handshakes.clone(), failed.clone());
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(stream).await else {
                            failed.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else { return };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            }
        });
        Self { addr, handshakes, failed, task }
    }

    /// Handshakes that succeeded.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// Handshakes the client broke off (it did not trust the certificate) or that failed.
    pub fn failed_handshakes(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}
