//! A competing consumer of one AMQP queue. A task owns the channel and follows the connection
//! through reconnects; each delivery carries a lease that nack-requeues it when the consumer's own
//! ack deadline passes (RabbitMQ's `consumer_timeout` is server-wide and far too long).

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::StreamExt as _;
use herald_core::broker::{Acker, BrokerError, ConsumeOptions, QueueConsumer, QueueMessage};
use lapin::{
    Channel,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    convert,
    link::{Shared, restart},
};
use crate::{
    error::{AdapterError, unavailable},
    lease::Lease,
};

/// The handle: deliveries arrive on a channel fed by the consuming task.
pub(super) struct AmqpConsumer {
    rx: mpsc::Receiver<QueueMessage>,
    queue: String,
}

impl fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConsumer").field("queue", &self.queue).finish_non_exhaustive()
    }
}

impl AmqpConsumer {
    /// Starts consuming; returns once the first `basic.consume` succeeded (or failed).
    pub(super) async fn start(shared: Arc<Shared>, queue: &str, options: ConsumeOptions) -> Result<Self, BrokerError> {
        let name = shared.queue_name(queue);
        let (tx, rx) = mpsc::channel(usize::from(options.prefetch.max(1)));
        let (ready_tx, ready_rx) = oneshot::channel();
        let wait = shared.reconnect_wait;
        tokio::spawn(run(shared, name.clone(), options, tx, ready_tx));
        match tokio::time::timeout(wait * 2, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(Self { rx, queue: name }),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(BrokerError::Closed),
            Err(_) => Err(AdapterError::Timeout(wait * 2, "starting an AMQP consumer").into()),
        }
    }
}

#[async_trait]
impl QueueConsumer for AmqpConsumer {
    async fn next(&mut self) -> Result<QueueMessage, BrokerError> {
        self.rx.recv().await.ok_or(BrokerError::Closed)
    }
}

/// Consumes on every connection in turn until the handle is dropped or the broker closed.
async fn run(
    shared: Arc<Shared>,
    queue: String,
    options: ConsumeOptions,
    tx: mpsc::Sender<QueueMessage>,
    ready: oneshot::Sender<Result<(), BrokerError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    loop {
        let (shared_ref, queue_ref) = (&*shared, &queue);
        let Some((channel, mut consumer)) =
            restart(shared_ref, &mut ready, &mut backoff, "consumer", queue_ref, |link| async move {
                start_consumer(shared_ref, &link, queue_ref, options).await
            })
            .await
        else {
            return;
        };
        loop {
            let next = tokio::select! {
                () = tx.closed() => {
                    // Closing the channel requeues whatever this consumer still holds.
                    channel.close(200, "consumer dropped".into()).await.ok();
                    return;
                }
                () = shared.shutdown.cancelled() => return,
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    if let Some(delivery) = wrap(&shared, &queue, options, delivery).await
                        && tx.send(delivery).await.is_err()
                    {
                        channel.close(200, "consumer dropped".into()).await.ok();
                        return;
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, %queue, "AMQP consumer interrupted");
                    break;
                }
                None => break,
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn start_consumer(
    shared: &Shared,
    link: &super::link::Link,
    queue: &str,
    options: ConsumeOptions,
) -> Result<(Channel, lapin::Consumer), BrokerError> {
    link.declare_queue(shared, queue).await?;
    let channel = link.connection.create_channel().await.map_err(unavailable)?;
    channel.basic_qos(options.prefetch.max(1), BasicQosOptions::default()).await.map_err(unavailable)?;
    let consumer = channel
        .basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(unavailable)?;
    Ok((channel, consumer))
}

/// Wraps a lapin delivery with its lease; a message that is not ours is dead-lettered (dropped).
async fn wrap(
    shared: &Arc<Shared>,
    queue: &str,
    options: ConsumeOptions,
    delivery: lapin::message::Delivery,
) -> Option<QueueMessage> {
    let acker = delivery.acker;
    let (message, dead_lettered) = match convert::message(&delivery.properties, delivery.data) {
        Ok(converted) => converted,
        Err(error) => {
            tracing::warn!(%error, %queue, "dropping a message Herald did not publish");
            acker.nack(BasicNackOptions { requeue: false, ..BasicNackOptions::default() }).await.ok();
            return None;
        }
    };
    let lease = Lease::start(options.ack_deadline, {
        let acker = acker.clone();
        async move {
            acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await.ok();
        }
    });
    let settle =
        AmqpAcker { acker, lease, shared: Arc::clone(shared), queue: queue.to_owned(), message: message.clone() };
    Some(QueueMessage::new(message, delivery.redelivered || dead_lettered, Box::new(settle)))
}

struct AmqpAcker {
    acker: lapin::Acker,
    lease: Arc<Lease>,
    shared: Arc<Shared>,
    queue: String,
    /// Kept to republish it into a delay queue on `nack(Some(delay))`.
    message: herald_core::broker::Message,
}

impl AmqpAcker {
    fn take(&self) -> Result<(), BrokerError> {
        if self.lease.settle() { Ok(()) } else { Err(AdapterError::LeaseLost.into()) }
    }

    async fn requeue(&self) -> Result<(), BrokerError> {
        settled(self.acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await)
    }
}

/// lapin answers `Ok(false)` for an acker of a closed channel: the message is back in the queue.
fn settled(result: lapin::Result<bool>) -> Result<(), BrokerError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(AdapterError::LeaseLost.into()),
    }
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.take()?;
        settled(self.acker.ack(BasicAckOptions::default()).await)
    }

    async fn nack(self: Box<Self>, redeliver_after: Option<Duration>) -> Result<(), BrokerError> {
        self.take()?;
        let Some(delay) = redeliver_after.filter(|d| !d.is_zero()) else { return self.requeue().await };
        // Copy into the delay queue first, then ack: a crash in between duplicates, never loses.
        let copied = async {
            let link = self.shared.link().await?;
            let delay_queue =
                link.declare_delay_queue(&self.shared, &self.queue, convert::delay_bucket_ms(delay)).await?;
            link.publish_confirmed("", &delay_queue, true, std::slice::from_ref(&self.message)).await
        }
        .await;
        match copied {
            Ok(()) => settled(self.acker.ack(BasicAckOptions::default()).await),
            Err(error) => {
                // Redelivering at once breaks the delay but keeps the message.
                self.requeue().await.ok();
                Err(error)
            }
        }
    }
}
