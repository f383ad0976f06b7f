//! The clients: one for destinations the operator configured, one per guard for those users choose.

use std::{path::PathBuf, sync::Arc, time::Duration};

use herald_core::net::Destinations;
use tokio_rustls::rustls::ClientConfig;

use crate::{guard::CheckedResolver, tls};

/// How outbound calls are made.
#[derive(Debug, Clone, Default)]
pub struct EgressOptions {
    /// A PEM file of CA certificates trusted beside the system's (`HERALD_HTTP_CA_FILE`).
    pub ca_file: Option<PathBuf>,
}

/// Idle connections kept per destination, for reuse.
const IDLE_PER_HOST: usize = 256;
/// How long an idle pooled connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The outbound HTTP setup: its TLS configuration and the client for operator-configured
/// destinations. Cheap to clone; clients made from it share nothing but the TLS configuration.
#[derive(Debug, Clone)]
pub struct Egress {
    tls: Arc<ClientConfig>,
    open: reqwest::Client,
}

impl Egress {
    /// The setup `options` describe; fails on a CA file that cannot be used.
    pub fn new(options: &EgressOptions) -> Result<Self, tls::TlsError> {
        let mut roots = tls::system_roots();
        if let Some(ca_file) = &options.ca_file {
            tls::add_ca_file(&mut roots, ca_file)?;
        }
        Ok(Self::with_roots(roots))
    }

    /// The setup that trusts the system's roots only.
    pub fn system() -> Self {
        Self::with_roots(tls::system_roots())
    }

    fn with_roots(roots: tokio_rustls::rustls::RootCertStore) -> Self {
        tls::install_ring_provider();
        let tls = Arc::new(tls::client_config(roots));
        let open = builder(&tls)
            .build()
            .unwrap_or_else(|e| panic!("an HTTP client on rustls with a prepared configuration: {e}"));
        Self { tls, open }
    }

    /// For destinations the operator configured (the provider): any address.
    pub fn open(&self) -> &reqwest::Client {
        &self.open
    }

    /// A client for destinations users choose (webhooks): every name resolves through
    /// `destinations`. Check addresses written in URLs with [`crate::check_literal`] first.
    pub fn guarded(&self, destinations: Destinations) -> reqwest::Client {
        builder(&self.tls)
            .dns_resolver(CheckedResolver(destinations))
            .build()
            // Never a default client in its place: that one would connect anywhere.
            .unwrap_or_else(|e| panic!("the guarded HTTP client: {e}"))
    }

    /// The TLS configuration, for other clients that must trust the same roots.
    pub fn tls_config(&self) -> Arc<ClientConfig> {
        self.tls.clone()
    }
}

fn builder(tls: &ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .tls_backend_preconfigured(tls.clone())
}
