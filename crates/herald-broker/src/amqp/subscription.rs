//! A subscription to one AMQP topic: an exclusive, auto-delete, server-named queue bound to the
//! topic's fanout exchange, consumed without acks. After a reconnect the task binds a new queue;
//! what was broadcast in between is lost, as the port allows (topics are not durable), and the
//! subscriber is told so with `Interrupted` once the new queue is bound.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::StreamExt as _;
use herald_core::broker::{BrokerError, Message, Subscription};
use lapin::{
    Channel,
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    convert,
    link::{Link, Shared, restart},
};
use crate::error::{AdapterError, unavailable};

/// Messages a subscriber may fall behind by before the subscription stops reading (and
/// RabbitMQ buffers in its queue instead).
const BUFFER: usize = 1024;

pub(super) struct AmqpSubscription {
    rx: mpsc::Receiver<Result<Message, BrokerError>>,
    exchange: String,
}

impl fmt::Debug for AmqpSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSubscription").field("exchange", &self.exchange).finish_non_exhaustive()
    }
}

impl AmqpSubscription {
    /// Subscribes; returns once the queue is bound, so every later broadcast reaches it.
    pub(super) async fn start(shared: Arc<Shared>, topic: &str) -> Result<Self, BrokerError> {
        let exchange = shared.exchange_name(topic);
        let (tx, rx) = mpsc::channel(BUFFER);
        let (ready_tx, ready_rx) = oneshot::channel();
        let wait = shared.reconnect_wait;
        tokio::spawn(run(shared, exchange.clone(), tx, ready_tx));
        match tokio::time::timeout(wait * 2, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(Self { rx, exchange }),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(BrokerError::Closed),
            Err(_) => Err(AdapterError::Timeout(wait * 2, "subscribing to an AMQP topic").into()),
        }
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Result<Message, BrokerError> {
        self.rx.recv().await.unwrap_or(Err(BrokerError::Closed))
    }
}

async fn run(
    shared: Arc<Shared>,
    exchange: String,
    tx: mpsc::Sender<Result<Message, BrokerError>>,
    ready: oneshot::Sender<Result<(), BrokerError>>,
) {
    let mut ready = Some(ready);
    let mut bound_before = false;
    let mut backoff = Duration::from_millis(50);
    loop {
        let (shared_ref, exchange_ref) = (&*shared, &exchange);
        let Some((channel, mut consumer)) =
            restart(shared_ref, &mut ready, &mut backoff, "subscription", exchange_ref, |link| async move {
                bind(shared_ref, &link, exchange_ref).await
            })
            .await
        else {
            return;
        };
        // Bound again after a drop: everything broadcast from now on arrives; what came in
        // between is gone.
        if std::mem::replace(&mut bound_before, true) && tx.send(Err(BrokerError::Interrupted)).await.is_err() {
            channel.close(200, "subscription dropped".into()).await.ok();
            return;
        }
        loop {
            let next = tokio::select! {
                () = tx.closed() => {
                    // The exclusive queue goes with its channel.
                    channel.close(200, "subscription dropped".into()).await.ok();
                    return;
                }
                () = shared.shutdown.cancelled() => return,
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => match convert::message(&delivery.properties, delivery.data) {
                    Ok((message, _)) => {
                        if tx.send(Ok(message)).await.is_err() {
                            channel.close(200, "subscription dropped".into()).await.ok();
                            return;
                        }
                    }
                    Err(error) => tracing::warn!(%error, %exchange, "dropping a broadcast Herald did not publish"),
                },
                Some(Err(error)) => {
                    tracing::debug!(%error, %exchange, "AMQP subscription interrupted");
                    break;
                }
                None => break,
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn bind(shared: &Shared, link: &Link, exchange: &str) -> Result<(Channel, lapin::Consumer), BrokerError> {
    link.declare_exchange(shared, exchange).await?;
    let channel = link.connection.create_channel().await.map_err(unavailable)?;
    let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
    let queue = channel.queue_declare("".into(), options, FieldTable::default()).await.map_err(unavailable)?;
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    let options = BasicConsumeOptions { no_ack: true, exclusive: true, ..BasicConsumeOptions::default() };
    let consumer = channel
        .basic_consume(queue.name().clone(), "".into(), options, FieldTable::default())
        .await
        .map_err(unavailable)?;
    Ok((channel, consumer))
}
