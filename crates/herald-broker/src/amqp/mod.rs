//! [`AmqpBroker`]: the Broker port on RabbitMQ through lapin. Durable queues on the default
//! exchange, publisher confirms (pipelined for batches), delayed redelivery through per-delay TTL
//! queues that dead-letter back, topics as fanout exchanges with one exclusive auto-delete queue
//! per subscription. A supervisor task owns the connection and reconnects when it drops;
//! consumers and subscriptions follow it to the new connection.

mod consumer;
mod convert;
mod link;
mod subscription;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use herald_core::broker::{Broker, BrokerError, ConsumeOptions, Message, QueueConsumer, Subscription};
use lapin::{
    ExchangeKind,
    options::{BasicPublishOptions, ExchangeDeclareOptions},
    types::FieldTable,
};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::{
    error::AdapterError,
    names::{check_name, check_namespace},
};
use link::{Link, Shared};

/// How long a publish or a new consumer waits for a lost connection to come back before it fails
/// with `Unavailable`.
pub const DEFAULT_RECONNECT_WAIT: Duration = Duration::from_secs(5);

/// RabbitMQ through one AMQP connection, re-established when it drops.
pub struct AmqpBroker {
    shared: Arc<Shared>,
}

impl fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpBroker").field("namespace", &self.shared.namespace).finish_non_exhaustive()
    }
}

impl AmqpBroker {
    /// Connects to `url` (`amqp://user:pass@host:5672/vhost`); every queue and exchange name is
    /// prefixed with `namespace`. Fails with `Unavailable` when RabbitMQ cannot be reached now.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, BrokerError> {
        Self::connect_with(url, namespace, DEFAULT_RECONNECT_WAIT).await
    }

    /// As [`AmqpBroker::connect`], waiting at most `reconnect_wait` for a lost connection before an
    /// operation fails with `Unavailable`.
    pub async fn connect_with(url: &str, namespace: &str, reconnect_wait: Duration) -> Result<Self, BrokerError> {
        check_namespace(namespace)?;
        let shared = Shared::new(url.to_owned(), namespace.to_owned(), reconnect_wait, CancellationToken::new());
        let first = Link::open(&shared, 1).await?;
        shared.install(first.clone());
        tokio::spawn(link::supervise(Arc::clone(&shared), first));
        Ok(Self { shared })
    }

    /// Deletes every queue and exchange this broker declared (its main queues, delay queues and
    /// topic exchanges). Tests call it to leave nothing behind; deployments never need to.
    pub async fn delete_declared(&self) -> Result<(), BrokerError> {
        let link = self.shared.link().await?;
        link.delete_declared(&self.shared).await
    }

    async fn publish_to_queue(&self, queue: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        check_name(queue)?;
        let name = self.shared.queue_name(queue);
        let link = self.shared.link().await?;
        link.declare_queue(&self.shared, &name).await?;
        link.publish_confirmed("", &name, true, &messages).await
    }

    async fn publish_to_topic(&self, topic: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        check_name(topic)?;
        let name = self.shared.exchange_name(topic);
        let link = self.shared.link().await?;
        link.declare_exchange(&self.shared, &name).await?;
        link.publish_confirmed(&name, "", false, &messages).await
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn enqueue(&self, queue: &str, message: Message) -> Result<(), BrokerError> {
        self.publish_to_queue(queue, vec![message]).await
    }

    async fn enqueue_all(&self, queue: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        self.publish_to_queue(queue, messages).await
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Box<dyn QueueConsumer>, BrokerError> {
        check_name(queue)?;
        let consumer = consumer::AmqpConsumer::start(Arc::clone(&self.shared), queue, options).await?;
        Ok(Box::new(consumer))
    }

    async fn broadcast(&self, topic: &str, message: Message) -> Result<(), BrokerError> {
        self.publish_to_topic(topic, vec![message]).await
    }

    async fn broadcast_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        self.publish_to_topic(topic, messages).await
    }

    async fn subscribe(&self, topic: &str) -> Result<Box<dyn Subscription>, BrokerError> {
        check_name(topic)?;
        let subscription = subscription::AmqpSubscription::start(Arc::clone(&self.shared), topic).await?;
        Ok(Box::new(subscription))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let link = self.shared.link().await?;
        // A passive declare of a built-in exchange is a cheap round trip on the publish channel.
        let probe = link.publisher.exchange_declare(
            "amq.fanout".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        );
        match timeout(self.shared.reconnect_wait, probe).await {
            Ok(result) => result.map_err(crate::error::unavailable),
            Err(_) => Err(AdapterError::Timeout(self.shared.reconnect_wait, "waiting for RabbitMQ to answer").into()),
        }
    }

    async fn close(&self) {
        self.shared.shutdown.cancel();
        if let Some(link) = self.shared.current() {
            link.connection.close(200, "herald closing".into()).await.ok();
        }
    }
}

/// Publish options for one message: mandatory to a queue, so an unroutable message is an error.
fn publish_options(mandatory: bool) -> BasicPublishOptions {
    BasicPublishOptions { mandatory, ..BasicPublishOptions::default() }
}
