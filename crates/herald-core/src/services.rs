//! The ports and helpers every command is handed: the application's base, below the commands.

use std::sync::Arc;

use crate::{
    auth::{PasswordHasher, TokenIssuer},
    broker::Broker,
    clock::Clock,
    files::{Files, UploadsPerUser},
    metrics::Metrics,
    net::Destinations,
    store::Store,
    throttle::Throttle,
};

/// The ports and helpers every command may use.
#[derive(Debug)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn Broker>,
    pub files: Arc<dyn Files>,
    pub tokens: TokenIssuer,
    pub passwords: PasswordHasher,
    /// Limits on password checks, per account and per client address.
    pub throttle: Throttle,
    /// Where users may aim outbound requests (webhooks).
    pub destinations: Destinations,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The largest attachment, in bytes (`HERALD_MAX_UPLOAD_SIZE`).
    pub max_upload: u64,
    /// Uploads each user may have in progress (`HERALD_UPLOADS_PER_USER`).
    pub uploads: UploadsPerUser,
    /// The zone whose days the daily report covers (`HERALD_REPORT_TIMEZONE`).
    pub report_zone: chrono_tz::Tz,
}
