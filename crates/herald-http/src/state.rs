//! [`AppState`]: what every REST handler can reach.

use std::sync::Arc;

use herald_core::{Herald, net::Networks};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub herald: Arc<Herald>,
    /// Largest JSON body accepted, in bytes: a larger declared `Content-Length` is refused unread.
    pub body_limit: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Networks,
}
