//! The HTTP server's limits, as configured.

use herald_http::{pace::BodyLimits, server::ServerLimits};

use super::Config;

impl Config {
    /// The HTTP server's limits: connections, heads, bodies and idle time.
    pub fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            header_timeout: self.http_header_timeout.0,
            idle_timeout: self.http_idle_timeout.0,
            max_connections: self.http_max_connections.0 as usize,
            max_connections_per_address: self.http_max_connections_per_address.0 as usize,
            body: BodyLimits { timeout: self.http_body_timeout.0, min_rate: self.http_body_min_rate.0 },
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    /// `http_body_timeout` is a window as well as a deadline: zero would let a silent upload
    /// spin, and a huge one overflow the clock.
    pub(super) fn check_body_timeout(&self) -> Result<(), String> {
        let timeout = self.http_body_timeout.0;
        if timeout.is_zero() || timeout > std::time::Duration::from_secs(24 * 3600) {
            return Err("must be between 1s and 24h".into());
        }
        Ok(())
    }
}
