//! HTTP clients for tests: reqwest's, with ring installed as the process's rustls provider first
//! (the workspace builds reqwest with rustls and no provider of its own; see `herald-egress`).

/// A client with reqwest's defaults.
pub fn client() -> reqwest::Client {
    builder().build().unwrap_or_else(|e| panic!("a reqwest client builds: {e}"))
}

/// A builder, for a client with settings of its own.
pub fn builder() -> reqwest::ClientBuilder {
    herald_egress::install_ring_provider();
    reqwest::Client::builder()
}
