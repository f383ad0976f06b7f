//! A subscription to one topic: a pub/sub connection of its own subscribed to the topic's
//! channel. When the connection drops (or stops answering pings) the task connects and subscribes
//! again, then says `Interrupted`: what was broadcast in between is gone, as the port allows.
//!
//! The `redis` crate reads a pub/sub connection into an unbounded buffer, so the task drains it at
//! once into a bounded one ([`BUFFER`]); a subscriber that falls that far behind loses broadcasts
//! and gets `Interrupted` before the next one it receives.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::StreamExt as _;
use herald_core::broker::{BrokerError, Message, Subscription};
use redis::aio::PubSub;
use tokio::sync::{mpsc, oneshot};

use super::{CONNECT_TIMEOUT, Shared, classify, frame};
use crate::error::{AdapterError, chain};

/// Broadcasts a subscriber may fall behind by before it loses some.
pub(crate) const BUFFER: usize = 4096;
/// How often an idle subscription checks that its connection still answers.
const PING_EVERY: Duration = Duration::from_secs(15);

pub(super) struct RedisSubscription {
    rx: mpsc::Receiver<Result<Message, BrokerError>>,
    channel: String,
}

impl fmt::Debug for RedisSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSubscription").field("channel", &self.channel).finish_non_exhaustive()
    }
}

impl RedisSubscription {
    /// Subscribes; returns once Redis confirmed it, so every later broadcast reaches it.
    pub(super) async fn start(shared: Arc<Shared>, topic: &str) -> Result<Self, BrokerError> {
        let channel = shared.channel(topic);
        let (tx, rx) = mpsc::channel(BUFFER);
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(run(shared, channel.clone(), tx, ready_tx));
        match ready_rx.await {
            Ok(Ok(())) => Ok(Self { rx, channel }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(BrokerError::Closed),
        }
    }
}

#[async_trait]
impl Subscription for RedisSubscription {
    async fn next(&mut self) -> Result<Message, BrokerError> {
        self.rx.recv().await.unwrap_or(Err(BrokerError::Closed))
    }
}

async fn connect(shared: &Shared, channel: &str) -> Result<PubSub, BrokerError> {
    let subscribed = async {
        let mut pubsub = shared.client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, subscribed).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(error)) => Err(classify(error)),
        Err(_) => Err(AdapterError::Timeout(CONNECT_TIMEOUT * 2, "subscribing to a Redis channel").into()),
    }
}

async fn run(
    shared: Arc<Shared>,
    channel: String,
    tx: mpsc::Sender<Result<Message, BrokerError>>,
    ready: oneshot::Sender<Result<(), BrokerError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    // Broadcasts were lost (a reconnect, or the subscriber fell behind): say so before the next.
    let mut lost = false;
    loop {
        let pubsub = tokio::select! {
            () = shared.closed.cancelled() => return,
            () = tx.closed() => return,
            pubsub = connect(&shared, &channel) => pubsub,
        };
        let pubsub = match pubsub {
            Ok(pubsub) => pubsub,
            Err(error) => {
                if let Some(ready) = ready.take() {
                    ready.send(Err(error)).ok();
                    return;
                }
                tracing::debug!(error = %chain(&error), %channel, "Redis subscription could not reconnect");
                tokio::select! {
                    () = shared.closed.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        match ready.take() {
            Some(ready) => {
                if ready.send(Ok(())).is_err() {
                    return;
                }
            }
            None => lost = true,
        }
        if lost && tx.try_send(Err(BrokerError::Interrupted)).is_ok() {
            lost = false;
        }
        let (mut sink, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        loop {
            let received = tokio::select! {
                () = shared.closed.cancelled() => return,
                () = tx.closed() => return,
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        tracing::debug!(%channel, "Redis subscription stopped answering; reconnecting");
                        break;
                    }
                    continue;
                }
                received = messages.next() => received,
            };
            let Some(received) = received else {
                tracing::debug!(%channel, "Redis subscription dropped; reconnecting");
                break;
            };
            let message = match frame::decode(received.get_payload_bytes()) {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, %channel, "dropping a broadcast Herald did not publish");
                    continue;
                }
            };
            if lost {
                match tx.try_send(Err(BrokerError::Interrupted)) {
                    Ok(()) => lost = false,
                    Err(mpsc::error::TrySendError::Full(_)) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            match tx.try_send(Ok(message)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => lost = true,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        lost = true;
        tokio::select! {
            () = shared.closed.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}
