//! A delivery's acker: it takes the right to settle (the consumer is there, the deadline has not
//! passed) and runs a settle script on the entry, which does nothing once another consumer holds it.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use async_trait::async_trait;
use herald_core::broker::{Acker, BrokerError};
use redis::Script;
use tokio::time::Instant;

use super::{
    CLAIMABLE_NOW_MS, GROUP, Held, State, classify,
    scripts::{ACK_SCRIPT, NACK_LATER_SCRIPT, NACK_NOW_SCRIPT},
};
use crate::error::AdapterError;

impl State {
    /// Runs a settle `script` on the entry `id`.
    async fn settle(&self, script: &Script, id: &str, extra: &[&[u8]]) -> Result<bool, BrokerError> {
        let mut connection = self.shared.commands()?;
        let mut call = script.key(&self.stream);
        call.key(&self.delayed).arg(GROUP).arg(id).arg(&self.name);
        for arg in extra {
            call.arg(*arg);
        }
        let done: i64 = call.invoke_async(&mut connection).await.map_err(classify)?;
        Ok(done == 1)
    }
}

pub(super) struct RedisAcker {
    pub(super) state: Arc<State>,
    pub(super) number: u64,
    pub(super) id: String,
    pub(super) frame: Vec<u8>,
}

impl RedisAcker {
    /// Takes the right to settle: the consumer is still there and the deadline has not passed.
    /// The caller keeps the prefetch slot until it has settled, so the consumer reads nothing
    /// new before a `nack(None)` is recorded.
    fn take_lease(&self) -> Result<Held, BrokerError> {
        let held = self.state.held.lock().remove(&self.number);
        match held {
            Some(held) if Instant::now() < held.expires && !self.state.released.load(Ordering::Acquire) => Ok(held),
            _ => Err(AdapterError::LeaseLost.into()),
        }
    }
}

impl Drop for RedisAcker {
    fn drop(&mut self) {
        // Unsettled, it is left to its ack deadline; its prefetch slot is free again.
        self.state.held.lock().remove(&self.number);
    }
}

#[async_trait]
impl Acker for RedisAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        let _slot = self.take_lease()?;
        if self.state.settle(&ACK_SCRIPT, &self.id, &[]).await? { Ok(()) } else { Err(AdapterError::LeaseLost.into()) }
    }

    async fn nack(self: Box<Self>, redeliver_after: Option<Duration>) -> Result<(), BrokerError> {
        let _slot = self.take_lease()?;
        let settled = match redeliver_after.filter(|delay| !delay.is_zero()) {
            None => {
                let idle = CLAIMABLE_NOW_MS.to_string();
                let settled = self.state.settle(&NACK_NOW_SCRIPT, &self.id, &[idle.as_bytes()]).await?;
                if settled {
                    self.state.nacked.lock().push(self.id.clone());
                }
                settled
            }
            Some(delay) => {
                let delay = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).to_string();
                self.state.settle(&NACK_LATER_SCRIPT, &self.id, &[delay.as_bytes(), &self.frame]).await?
            }
        };
        if settled { Ok(()) } else { Err(AdapterError::LeaseLost.into()) }
    }
}
