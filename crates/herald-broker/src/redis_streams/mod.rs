//! [`RedisBroker`]: the Broker port on Redis (7.0 or later) through the `redis` crate.
//!
//! - **Work queues** are streams (`<ns>:q:<queue>`) read by one consumer group (`herald`). Each
//!   [`Broker::consume`] is a named consumer of the group; what it reads stays in the group's
//!   pending list until acked (`XACK` + `XDEL`). Consumers take back, with `XAUTOCLAIM`, what has
//!   been pending longer than their ack deadline: a dead consumer's messages come back that way,
//!   and a dropped consumer makes all it holds claimable at once. `nack(None)` makes the entry
//!   claimable at once (and the same consumer takes it back first); `nack(Some(d))` moves it to a sorted set
//!   (`<ns>:qd:<queue>`, scored by when it is due) that consumers move back into the stream.
//!   Every settle checks, in one script, that this consumer still holds the entry.
//! - **De-duplication**: an enqueue script appends only when the message id was not seen on the
//!   queue within [`DEDUPE_WINDOW`] (`SET NX PX`), as JetStream's duplicate window does.
//! - **Topics** are pub/sub channels (`<ns>:t:<topic>`), one connection per subscription. After a
//!   dropped connection the subscription subscribes again and says `Interrupted`; a subscriber
//!   that falls more than [`subscription::BUFFER`] behind loses broadcasts and is told the same.
//! - **Durability** is Redis's own: a publish returns once Redis has the message in memory; with
//!   `appendonly yes` (and `appendfsync everysec`, the default) it survives a restart.
//!
//! Commands share one multiplexed connection that reconnects by itself; each consumer blocks on a
//! connection of its own.

mod consumer;
mod frame;
mod subscription;

use std::{
    fmt,
    sync::{Arc, LazyLock},
    time::Duration,
};

use async_trait::async_trait;
use herald_core::broker::{Broker, BrokerError, ConsumeOptions, Message, QueueConsumer, Subscription};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

use crate::{
    error::{AdapterError, other, unavailable},
    names::{check_name, check_namespace},
};

/// How long an enqueued message id is remembered to drop a second copy.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(120);
/// The consumer group every queue is read by.
const GROUP: &str = "herald";
/// Longest wait for one command's answer on the shared connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages per enqueue script call.
const ENQUEUE_BATCH: usize = 500;

/// Appends `(id, frame)` pairs to the stream `KEYS[1]`, skipping ids seen within the window.
/// `ARGV[1]`: the de-duplication key prefix; `ARGV[2]`: the window in ms.
const ENQUEUE: &str = r"
local added = 0
for i = 3, #ARGV, 2 do
  if redis.call('SET', ARGV[1] .. ARGV[i], '1', 'NX', 'PX', ARGV[2]) then
    redis.call('XADD', KEYS[1], '*', 'm', ARGV[i + 1])
    added = added + 1
  end
end
return added
";

static ENQUEUE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ENQUEUE));

/// Redis through one shared connection (and one per consumer and subscription).
pub struct RedisBroker {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker").field("namespace", &self.shared.namespace).finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    client: redis::Client,
    commands: ConnectionManager,
    namespace: String,
    closed: CancellationToken,
}

impl Shared {
    fn queue_key(&self, queue: &str) -> String {
        format!("{}:q:{queue}", self.namespace)
    }

    fn delayed_key(&self, queue: &str) -> String {
        format!("{}:qd:{queue}", self.namespace)
    }

    fn dedupe_prefix(&self, queue: &str) -> String {
        format!("{}:qid:{queue}:", self.namespace)
    }

    fn channel(&self, topic: &str) -> String {
        format!("{}:t:{topic}", self.namespace)
    }

    fn check_open(&self) -> Result<(), BrokerError> {
        if self.closed.is_cancelled() { Err(BrokerError::Closed) } else { Ok(()) }
    }

    /// A clone of the shared, reconnecting connection.
    fn commands(&self) -> Result<ConnectionManager, BrokerError> {
        self.check_open()?;
        Ok(self.commands.clone())
    }

    /// Creates the queue's stream and group when missing (from the start of the stream, so what
    /// was enqueued before the first consumer is read).
    async fn ensure_group(&self, stream: &str) -> Result<(), BrokerError> {
        let mut connection = self.commands()?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(error) => Err(classify(error)),
        }
    }
}

/// A connection of its own to `client`'s server that reconnects by itself, answering within
/// `response_timeout`; `Unavailable` when Redis cannot be reached now.
async fn connect_manager(client: &redis::Client, response_timeout: Duration) -> Result<ConnectionManager, BrokerError> {
    let config = manager_config(response_timeout);
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, client.get_connection_manager_with_config(config)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(classify(error)),
        Err(_) => Err(AdapterError::Timeout(CONNECT_TIMEOUT * 2, "connecting to Redis").into()),
    }
}

fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2))
}

/// Connection failures, timeouts and a server that is starting or failing over are retryable;
/// anything else is not.
pub(crate) fn classify(error: redis::RedisError) -> BrokerError {
    let retryable_code = matches!(error.code(), Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "READONLY"));
    if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || retryable_code
    {
        unavailable(error)
    } else {
        other(error)
    }
}

/// Header names are ASCII tokens without `:`, values have no CR or LF (the port's rule, so that a
/// message that travels on Redis could travel on any broker).
fn check_headers(message: &Message) -> Result<(), BrokerError> {
    for (name, value) in &message.headers {
        let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !token || value.contains(['\r', '\n']) {
            return Err(AdapterError::InvalidHeader(name.clone()).into());
        }
    }
    Ok(())
}

impl RedisBroker {
    /// Connects to `url` (`redis://[user:password@]host:port/db` or `rediss://…` for TLS); every
    /// key and channel is prefixed with `namespace`. Fails with `Unavailable` when Redis cannot be
    /// reached now.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, BrokerError> {
        check_namespace(namespace)?;
        let client = redis::Client::open(url).map_err(|error| other(AdapterError::Refused(error.to_string())))?;
        let commands = connect_manager(&client, RESPONSE_TIMEOUT).await?;
        let shared =
            Arc::new(Shared { client, commands, namespace: namespace.to_owned(), closed: CancellationToken::new() });
        // The manager has connected (and authenticated, and selected the database) by now.
        Ok(Self { shared })
    }

    /// Deletes every key in this broker's namespace. Tests call it to leave nothing behind;
    /// deployments never need to.
    pub async fn delete_namespace(&self) -> Result<(), BrokerError> {
        let mut connection = self.shared.commands.clone();
        let pattern = format!("{}:*", self.shared.namespace);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(classify)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(&keys).query_async::<()>(&mut connection).await.map_err(classify)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn enqueue(&self, queue: &str, message: Message) -> Result<(), BrokerError> {
        self.enqueue_all(queue, vec![message]).await
    }

    async fn enqueue_all(&self, queue: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        check_name(queue)?;
        messages.iter().try_for_each(check_headers)?;
        let mut connection = self.shared.commands()?;
        let (stream, prefix) = (self.shared.queue_key(queue), self.shared.dedupe_prefix(queue));
        let window = u64::try_from(DEDUPE_WINDOW.as_millis()).unwrap_or(u64::MAX);
        for batch in messages.chunks(ENQUEUE_BATCH) {
            let mut call = ENQUEUE_SCRIPT.key(&stream);
            call.arg(&prefix).arg(window);
            for message in batch {
                call.arg(message.id.simple().to_string()).arg(frame::encode(message));
            }
            call.invoke_async::<i64>(&mut connection).await.map_err(classify)?;
        }
        Ok(())
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Box<dyn QueueConsumer>, BrokerError> {
        check_name(queue)?;
        self.shared.check_open()?;
        let stream = self.shared.queue_key(queue);
        self.shared.ensure_group(&stream).await?;
        let consumer = consumer::RedisConsumer::start(Arc::clone(&self.shared), queue, options).await?;
        Ok(Box::new(consumer))
    }

    async fn broadcast(&self, topic: &str, message: Message) -> Result<(), BrokerError> {
        self.broadcast_all(topic, vec![message]).await
    }

    async fn broadcast_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BrokerError> {
        check_name(topic)?;
        messages.iter().try_for_each(check_headers)?;
        let mut connection = self.shared.commands()?;
        let channel = self.shared.channel(topic);
        let mut pipe = redis::pipe();
        for message in &messages {
            pipe.cmd("PUBLISH").arg(&channel).arg(frame::encode(message)).ignore();
        }
        pipe.query_async::<()>(&mut connection).await.map_err(classify)
    }

    async fn subscribe(&self, topic: &str) -> Result<Box<dyn Subscription>, BrokerError> {
        check_name(topic)?;
        self.shared.check_open()?;
        Ok(Box::new(subscription::RedisSubscription::start(Arc::clone(&self.shared), topic).await?))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let mut connection = self.shared.commands()?;
        redis::cmd("PING").query_async::<()>(&mut connection).await.map_err(classify)
    }

    async fn close(&self) {
        self.shared.closed.cancel();
    }
}
