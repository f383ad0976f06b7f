//! The port to run a command in the process that hosts it (`HERALD_COMMANDS`): implemented by
//! the NATS transport, used by [`crate::hosting::Hosting`].

use async_trait::async_trait;
use serde_json::Value;

use crate::{
    body::{Answer, Body},
    command::Ctx,
    error::ApiError,
};

/// Runs a command in the process that hosts it and answers with that process's answer.
///
/// An implementation answers within a bounded time: `unavailable` when no process hosts the
/// command or the host does not answer in time, never a hang.
#[async_trait]
pub trait Forward: Send + Sync + 'static {
    /// `body` is the caller's byte stream, for a command that reads one; the answer carries the
    /// host's bytes for one that gives them.
    async fn forward(&self, command: &str, cx: &Ctx, input: Value, body: Option<Body>) -> Result<Answer, ApiError>;
}
