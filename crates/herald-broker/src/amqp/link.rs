//! The AMQP connection and what hangs off it: the confirming publish channel, the names declared
//! on it, and the supervisor that replaces the connection when it drops.

use parking_lot::{Mutex, MutexGuard};
use std::{
    collections::{BTreeSet, HashSet},
    future::Future as _,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use futures::StreamExt as _;
use herald_core::broker::{BrokerError, Message};
use lapin::{
    Channel, Connection, ConnectionProperties, Event, ExchangeKind,
    options::{
        ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString},
};
use tokio::{sync::watch, time::timeout};
use tokio_util::sync::CancellationToken;

use super::{convert, publish_options};
use crate::error::{AdapterError, other, unavailable};

/// What every handle of one broker shares.
pub(super) struct Shared {
    url: String,
    pub(super) namespace: String,
    pub(super) reconnect_wait: Duration,
    pub(super) shutdown: CancellationToken,
    link: watch::Sender<Option<Arc<Link>>>,
    topology: Mutex<Topology>,
}

/// Names declared through this broker, re-declared after a reconnect and deleted by
/// `delete_declared`.
#[derive(Default)]
struct Topology {
    queues: BTreeSet<String>,
    exchanges: BTreeSet<String>,
    /// Delay queues expire by themselves; remembered only for `delete_declared`.
    delay_queues: BTreeSet<String>,
}

/// One live connection.
pub(super) struct Link {
    pub(super) generation: u64,
    pub(super) connection: Connection,
    /// Shared by every publish; in confirm mode.
    pub(super) publisher: Channel,
    declared: Mutex<HashSet<String>>,
}

impl Shared {
    pub(super) fn new(
        url: String,
        namespace: String,
        reconnect_wait: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            url,
            namespace,
            reconnect_wait,
            shutdown,
            link: watch::Sender::new(None),
            topology: Mutex::default(),
        })
    }

    /// `ns:queue` (`:` never appears in port names, so nothing collides with the delay queues).
    pub(super) fn queue_name(&self, queue: &str) -> String {
        format!("{}:{queue}", self.namespace)
    }

    pub(super) fn exchange_name(&self, topic: &str) -> String {
        format!("{}:topic:{topic}", self.namespace)
    }

    fn topology(&self) -> MutexGuard<'_, Topology> {
        self.topology.lock()
    }

    pub(super) fn install(&self, link: Arc<Link>) {
        self.link.send_replace(Some(link));
    }

    pub(super) fn current(&self) -> Option<Arc<Link>> {
        self.link.borrow().clone()
    }

    /// The live connection, waiting up to `reconnect_wait` for one.
    pub(super) async fn link(&self) -> Result<Arc<Link>, BrokerError> {
        if self.shutdown.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        match timeout(self.reconnect_wait, self.next_link(0)).await {
            Ok(link) => link,
            Err(_) => Err(AdapterError::Timeout(self.reconnect_wait, "waiting for RabbitMQ to come back").into()),
        }
    }

    /// A live connection of a generation above `after`, waiting as long as it takes.
    pub(super) async fn next_link(&self, after: u64) -> Result<Arc<Link>, BrokerError> {
        let mut rx = self.link.subscribe();
        let wait = rx.wait_for(|link| link.as_ref().is_some_and(|l| l.generation > after));
        tokio::select! {
            () = self.shutdown.cancelled() => Err(BrokerError::Closed),
            found = wait => match found {
                Ok(link) => link.clone().ok_or(BrokerError::Closed),
                Err(_) => Err(BrokerError::Closed),
            },
        }
    }
}

impl Link {
    /// Connects, opens the publish channel and re-declares what the broker declared before.
    pub(super) async fn open(shared: &Shared, generation: u64) -> Result<Arc<Self>, BrokerError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("herald {}", shared.namespace)));
        let connect = Connection::connect(&shared.url, properties);
        let connection = match timeout(shared.reconnect_wait, connect).await {
            Ok(connection) => connection.map_err(unavailable)?,
            Err(_) => return Err(AdapterError::Timeout(shared.reconnect_wait, "connecting to RabbitMQ").into()),
        };
        let publisher = connection.create_channel().await.map_err(unavailable)?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(unavailable)?;
        let link = Arc::new(Self { generation, connection, publisher, declared: Mutex::default() });
        let (queues, exchanges) = {
            let topology = shared.topology();
            (topology.queues.clone(), topology.exchanges.clone())
        };
        for queue in &queues {
            link.declare_queue(shared, queue).await?;
        }
        for exchange in &exchanges {
            link.declare_exchange(shared, exchange).await?;
        }
        Ok(link)
    }

    fn declared(&self) -> MutexGuard<'_, HashSet<String>> {
        self.declared.lock()
    }

    /// Declares the durable queue `name` once per connection.
    pub(super) async fn declare_queue(&self, shared: &Shared, name: &str) -> Result<(), BrokerError> {
        if self.declared().contains(name) {
            return Ok(());
        }
        self.publisher
            .queue_declare(name.into(), QueueDeclareOptions::durable(), FieldTable::default())
            .await
            .map_err(other)?;
        self.declared().insert(name.to_owned());
        shared.topology().queues.insert(name.to_owned());
        Ok(())
    }

    /// Declares the durable fanout exchange `name` once per connection.
    pub(super) async fn declare_exchange(&self, shared: &Shared, name: &str) -> Result<(), BrokerError> {
        if self.declared().contains(name) {
            return Ok(());
        }
        let options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        self.publisher
            .exchange_declare(name.into(), ExchangeKind::Fanout, options, FieldTable::default())
            .await
            .map_err(other)?;
        self.declared().insert(name.to_owned());
        shared.topology().exchanges.insert(name.to_owned());
        Ok(())
    }

    /// Declares the delay queue holding messages for `delay_ms` before they dead-letter back to
    /// `main`. One queue per delay value, so a queue-wide TTL expires its messages in order and
    /// a long delay never holds up a short one (per-message TTLs only expire at the head).
    /// It deletes itself once unused for a while longer than its delay.
    pub(super) async fn declare_delay_queue(
        &self,
        shared: &Shared,
        main: &str,
        delay_ms: u64,
    ) -> Result<String, BrokerError> {
        let name = format!("{main}:delay:{delay_ms}");
        let mut arguments = FieldTable::default();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(i64::try_from(delay_ms).unwrap_or(i64::MAX)));
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(main.into()));
        let expires = delay_ms.saturating_mul(2).saturating_add(60_000);
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(i64::try_from(expires).unwrap_or(i64::MAX)));
        // Declared on every use: it may have expired since, and x-expires counts from the last use.
        self.publisher
            .queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), arguments)
            .await
            .map_err(other)?;
        shared.topology().delay_queues.insert(name.clone());
        Ok(name)
    }

    /// Publishes every message, then waits for all confirms (one pipeline, not one round trip each).
    pub(super) async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        messages: &[Message],
    ) -> Result<(), BrokerError> {
        // lapin queues a publish's frames (and numbers it for confirms) when its future is first
        // polled, then waits until its I/O loop has written them. Polling every publish once, in
        // order, before awaiting any puts the batch on the wire in one go instead of one I/O
        // round per message, and keeps the order.
        let mut publishes: Vec<_> = messages
            .iter()
            .map(|message| {
                Box::pin(self.publisher.basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    publish_options(mandatory),
                    &message.payload,
                    convert::properties(message),
                ))
            })
            .collect();
        let started: Vec<_> = std::future::poll_fn(|cx| {
            Poll::Ready(
                publishes
                    .iter_mut()
                    .map(|publish| match publish.as_mut().poll(cx) {
                        Poll::Ready(sent) => Some(sent),
                        Poll::Pending => None,
                    })
                    .collect(),
            )
        })
        .await;
        let mut confirms = Vec::with_capacity(messages.len());
        for (publish, sent) in publishes.into_iter().zip(started) {
            let sent = match sent {
                Some(sent) => sent,
                None => publish.await,
            };
            confirms.push(sent.map_err(unavailable)?);
        }
        for confirm in confirms {
            let confirmation = confirm.await.map_err(unavailable)?;
            if confirmation.is_nack() {
                return Err(unavailable(AdapterError::Refused("RabbitMQ nacked the publish".into())));
            }
            if let Some(returned) = confirmation.take_message() {
                let reason = format!("{} ({})", returned.reply_text, returned.reply_code);
                return Err(AdapterError::Refused(reason).into());
            }
        }
        Ok(())
    }

    /// Deletes what the broker declared, each on a channel of its own (a failed delete closes it).
    pub(super) async fn delete_declared(&self, shared: &Shared) -> Result<(), BrokerError> {
        let (queues, exchanges) = {
            let mut topology = shared.topology();
            let mut queues = std::mem::take(&mut topology.queues);
            queues.append(&mut topology.delay_queues);
            (queues, std::mem::take(&mut topology.exchanges))
        };
        self.declared().clear();
        for queue in queues {
            let channel = self.connection.create_channel().await.map_err(unavailable)?;
            channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.ok();
            channel.close(200, "deleted".into()).await.ok();
        }
        for exchange in exchanges {
            let channel = self.connection.create_channel().await.map_err(unavailable)?;
            channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await.ok();
            channel.close(200, "deleted".into()).await.ok();
        }
        Ok(())
    }

    /// Resolves when the connection has failed.
    async fn broken(&self) {
        let mut events = self.connection.events_listener();
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Event::Error(error)) => {
                        tracing::warn!(%error, "RabbitMQ connection failed");
                        return;
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = check.tick() => {
                    let status = self.connection.status();
                    if status.errored() || status.closed() {
                        return;
                    }
                }
            }
        }
    }
}

/// Watches the live connection and replaces it when it fails, with capped exponential back-off,
/// until the broker is closed.
pub(super) async fn supervise(shared: Arc<Shared>, mut link: Arc<Link>) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = link.broken() => {}
        }
        shared.link.send_replace(None);
        let generation = link.generation + 1;
        let mut backoff = Duration::from_millis(100);
        link = loop {
            let attempt = tokio::select! {
                () = shared.shutdown.cancelled() => return,
                attempt = Link::open(&shared, generation) => attempt,
            };
            match attempt {
                Ok(link) => break link,
                Err(error) => {
                    tracing::warn!(error = %crate::error::chain(&error), ?backoff, "reconnecting to RabbitMQ");
                    tokio::select! {
                        () = shared.shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        tracing::info!(generation, "reconnected to RabbitMQ");
        shared.install(Arc::clone(&link));
    }
}

/// What a consumer or subscription task runs on: a channel and its delivery stream.
pub(super) type Started = (Channel, lapin::Consumer);

/// Starts, or after a lost connection restarts, what a consumer or subscription task consumes.
/// The first outcome goes to `ready` (the caller still waiting in its constructor), which ends the
/// task on failure; later failures back off and try the next connection. `None` when the task
/// should end: the broker closed, or the first start failed.
pub(super) async fn restart<F, Fut>(
    shared: &Shared,
    ready: &mut Option<tokio::sync::oneshot::Sender<Result<(), BrokerError>>>,
    backoff: &mut Duration,
    what: &str,
    name: &str,
    mut start: F,
) -> Option<Started>
where
    F: FnMut(Arc<Link>) -> Fut,
    Fut: std::future::Future<Output = Result<Started, BrokerError>>,
{
    loop {
        let link = if ready.is_some() { shared.link().await } else { shared.next_link(0).await };
        let started = match link {
            Ok(link) => start(link).await,
            Err(error) => Err(error),
        };
        match started {
            Ok(started) => {
                if let Some(ready) = ready.take() {
                    ready.send(Ok(())).ok();
                }
                *backoff = Duration::from_millis(50);
                return Some(started);
            }
            Err(error) => {
                if let Some(ready) = ready.take() {
                    ready.send(Err(error)).ok();
                    return None;
                }
                if matches!(error, BrokerError::Closed) {
                    return None;
                }
                tracing::debug!(error = %crate::error::chain(&error), name, "AMQP {what} restarting");
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
