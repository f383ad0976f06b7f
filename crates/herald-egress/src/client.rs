//! The clients: one for destinations the operator configured, one per guard for those users choose.

use std::{path::PathBuf, sync::Arc, time::Duration};

use herald_core::net::Destinations;
use tokio_rustls::rustls::ClientConfig;

use crate::{guard::CheckedResolver, tls};

/// Why the outbound setup cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

/// How outbound calls are made.
#[derive(Debug, Clone, Default)]
pub struct EgressOptions {
    /// A PEM file of CA certificates trusted beside the system's (`HERALD_HTTP_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// The proxy `https://` calls go through, by `CONNECT` (`HERALD_HTTPS_PROXY`); none when unset.
    pub https_proxy: Option<String>,
    /// Hosts reached directly although a proxy is set (`HERALD_NO_PROXY`: comma-separated names,
    /// `.example.org` for a domain and its subdomains, addresses, CIDRs, `*` for all).
    pub no_proxy: Option<String>,
}

/// An `https_proxy` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the proxy URL cannot be used: {0}")]
pub struct ProxyError(String);

/// Idle connections kept per destination, for reuse.
const IDLE_PER_HOST: usize = 256;
/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The outbound HTTP setup: its TLS configuration and the client for operator-configured
/// destinations. Cheap to clone; clients made from it share nothing but the TLS configuration.
#[derive(Debug, Clone)]
pub struct Egress {
    tls: Arc<ClientConfig>,
    proxy: Option<Proxy>,
    open: reqwest::Client,
}

/// The proxy `https://` calls go through, and the host the guard lets it be.
#[derive(Clone)]
struct Proxy {
    proxy: reqwest::Proxy,
    host: String,
}

/// Only the host: the proxy's URL may hold a password.
impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("host", &self.host).finish_non_exhaustive()
    }
}

impl Egress {
    /// The setup `options` describe; fails on a CA file or a proxy URL that cannot be used.
    pub fn new(options: &EgressOptions) -> Result<Self, EgressError> {
        let mut roots = tls::system_roots();
        if let Some(ca_file) = &options.ca_file {
            tls::add_ca_file(&mut roots, ca_file)?;
        }
        let proxy = match &options.https_proxy {
            None => None,
            Some(url) => {
                let host = reqwest::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .ok_or_else(|| ProxyError(format!("{:?} is not a URL with a host", redact(url))))?;
                let proxy = reqwest::Proxy::https(url)
                    .map_err(|_| ProxyError(format!("{:?} is not a proxy URL", redact(url))))?
                    .no_proxy(options.no_proxy.as_deref().and_then(reqwest::NoProxy::from_string));
                Some(Proxy { proxy, host })
            }
        };
        Ok(Self::with(roots, proxy))
    }

    /// The setup that trusts the system's roots only.
    pub fn system() -> Self {
        Self::with(tls::system_roots(), None)
    }

    fn with(roots: tokio_rustls::rustls::RootCertStore, proxy: Option<Proxy>) -> Self {
        tls::install_ring_provider();
        let tls = Arc::new(tls::client_config(roots));
        let open = builder(&tls, proxy.as_ref())
            .build()
            .unwrap_or_else(|e| panic!("an HTTP client on rustls with a prepared configuration: {e}"));
        Self { tls, proxy, open }
    }

    /// Whether `https://` calls may go through a proxy, which resolves the destination's name
    /// itself: a guarded call then checks the destination first ([`herald_core::net::Destinations::check_host`]).
    pub fn proxied(&self) -> bool {
        self.proxy.is_some()
    }

    /// For destinations the operator configured (the provider): any address.
    pub fn open(&self) -> &reqwest::Client {
        &self.open
    }

    /// A client for destinations users choose (webhooks): every name resolves through
    /// `destinations`. Check addresses written in URLs with [`crate::check_literal`] first.
    pub fn guarded(&self, destinations: Destinations) -> reqwest::Client {
        let proxy_host = self.proxy.as_ref().map(|p| p.host.clone());
        builder(&self.tls, self.proxy.as_ref())
            .dns_resolver(CheckedResolver { destinations, proxy_host })
            .build()
            // Never a default client in its place: that one would connect anywhere.
            .unwrap_or_else(|e| panic!("the guarded HTTP client: {e}"))
    }
}

/// A proxy URL without its password, for messages.
fn redact(url: &str) -> String {
    herald_core::redact::url_password(url)
}

fn builder(tls: &ClientConfig, proxy: Option<&Proxy>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    // Never the environment's proxies: a proxy given here replaces them, none turns them off.
    let builder = match proxy {
        Some(proxy) => builder.proxy(proxy.proxy.clone()),
        None => builder.no_proxy(),
    };
    builder.pool_max_idle_per_host(IDLE_PER_HOST).pool_idle_timeout(IDLE_TIMEOUT).tls_backend_preconfigured(tls.clone())
}
