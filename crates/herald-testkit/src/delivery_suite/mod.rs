//! The delivery pipeline's suite, written once and run over every store and broker: the real
//! scheduler and sender, the real mock provider over loopback, and a paused clock for every
//! schedule (retries, deadlines, the breaker), so nothing waits on a sleep.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
use chrono::{DateTime, TimeZone, Utc};
use herald_core::{
    broker::Message,
    clock::{Clock, ManualClock},
    delivery::{
        BreakerConfig, Channel, DELIVERY_QUEUE, Delivery, DeliveryId, DeliveryStatus, NewDelivery, RetryPolicy,
    },
    metrics::Metrics,
    net::{Destinations, Resolve},
    store::Store,
};
use herald_workers::{
    channels::{Channels, ProviderConfig, SIGNATURE_HEADER, WebhookConfig, verify},
    email::{EmailChannel, EmailConfig},
    scheduler::{PeriodicJob, Scheduler, SchedulerOptions},
    sender::{Rate, Sender, SenderOptions},
};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    broker_suite::TestBroker,
    mock_provider::{Malformed, MockProvider, Reply},
    smtp::{SmtpServer, SmtpTls},
};

mod calendar;
mod channels;
mod claims;
mod notices;
pub use calendar::*;
pub use channels::*;
pub use claims::*;
pub use notices::*;

const TOKEN: &str = "provider-token";
const WEBHOOK_SECRET: &str = "a-webhook-secret-of-at-least-32-bytes";
/// The one login the test mail server accepts.
const SMTP_LOGIN: (&str, &str) = ("mailer", "mail-password");

/// Webhook destinations for the suite: its receivers listen on loopback, which an operator
/// would have to allow; names do not resolve (the suite uses none).
fn loopback_destinations() -> Destinations {
    Destinations::new("127.0.0.0/8".parse().expect("network"), Arc::new(NoNames))
}

#[derive(Debug)]
struct NoNames;

#[async_trait::async_trait]
impl Resolve for NoNames {
    async fn resolve(&self, host: &str, _port: u16) -> std::io::Result<Vec<std::net::IpAddr>> {
        Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: the delivery suite resolves no names")))
    }
}

/// The instant every test's clock starts at.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap()
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

/// A store, a broker, a paused clock, the mock provider, a scheduler and senders.
#[derive(Debug)]
pub struct Pipeline {
    pub store: Arc<dyn Store>,
    pub broker: Arc<dyn herald_core::broker::Broker>,
    pub clock: Arc<ManualClock>,
    pub metrics: Arc<Metrics>,
    pub provider: MockProvider,
    /// The mail server of the email channel (plain, with a login).
    pub smtp: SmtpServer,
    pub scheduler: Scheduler,
    webhook_secret: Option<String>,
}

/// A sender running in the background.
#[derive(Debug)]
pub struct Running {
    pub sender: Sender,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops it gracefully: in-flight deliveries finish and are recorded.
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("sender task");
    }

    /// Kills it: the task is dropped wherever it is, as a crashed process would be.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

impl Pipeline {
    pub async fn new(store: Arc<dyn Store>, broker: &TestBroker) -> Self {
        let options = SchedulerOptions { batch: 100, lease: Duration::from_secs(120), ..SchedulerOptions::default() };
        Self::with_scheduler(store, broker, options).await
    }

    pub async fn with_scheduler(store: Arc<dyn Store>, broker: &TestBroker, options: SchedulerOptions) -> Self {
        let clock = Arc::new(ManualClock::new(t0()));
        let metrics = Arc::new(Metrics::default());
        let scheduler = Scheduler::new(store.clone(), broker.broker.clone(), clock.clone(), metrics.clone(), options);
        Self {
            store,
            broker: broker.broker.clone(),
            clock,
            metrics,
            provider: MockProvider::start(TOKEN).await,
            smtp: SmtpServer::start(SmtpTls::None, Some(SMTP_LOGIN)).await,
            scheduler,
            webhook_secret: Some(WEBHOOK_SECRET.to_owned()),
        }
    }

    /// Sender options for tests: no jitter, a breaker that only opens when a test wants it.
    pub fn options() -> SenderOptions {
        SenderOptions {
            concurrency: 8,
            ack_deadline: Duration::from_secs(5),
            policy: RetryPolicy::default(),
            breaker: BreakerConfig { failure_threshold: 1000, ..BreakerConfig::default() },
            ..SenderOptions::default()
        }
    }

    pub fn sender(&self, options: SenderOptions) -> Sender {
        let (timeout, answer_limit) = (Duration::from_secs(2), 64 << 10);
        let provider = ProviderConfig { url: self.provider.base_url(), token: TOKEN.into(), timeout, answer_limit };
        let webhook = WebhookConfig { secret: self.webhook_secret.clone().map(Into::into), timeout, answer_limit };
        Sender::new(
            self.store.clone(),
            self.broker.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            Channels::new(&herald_egress::Egress::system(), Some(provider), webhook, loopback_destinations())
                .with_email(self.email_channel()),
            options,
        )
    }

    /// The email channel to [`Pipeline::smtp`], with its login.
    pub fn email_channel(&self) -> EmailChannel {
        let (user, password) = SMTP_LOGIN;
        let url = format!("smtp://{user}:{password}@127.0.0.1:{}?tls=none", self.smtp.addr.port());
        let config = EmailConfig {
            url: url.parse().expect("SMTP URL"),
            from: "Herald <noreply@herald.test>".parse().expect("From"),
            timeout: Duration::from_secs(5),
            extra_roots: Vec::new(),
        };
        EmailChannel::new(&config).expect("email channel")
    }

    pub fn spawn(&self, options: SenderOptions) -> Running {
        let sender = self.sender(options);
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (sender, stop) = (sender.clone(), stop.clone());
            async move { sender.run(stop).await }
        });
        Running { sender, stop, task }
    }

    /// Stores one delivery due now; returns its id.
    pub async fn create(
        &self,
        channel: Channel,
        recipient: &str,
        payload: serde_json::Value,
        deadline: Option<DateTime<Utc>>,
    ) -> DeliveryId {
        let id = DeliveryId::new();
        let delivery = NewDelivery {
            id,
            kind: "test.message".into(),
            source_key: format!("test:{id}"),
            recipient: recipient.into(),
            channel,
            payload,
            source_id: None,
            recipient_id: None,
            next_attempt_at: self.clock.now(),
            deadline,
            created_at: self.clock.now(),
            trace_context: None,
        };
        assert_eq!(self.store.create_deliveries(&[delivery]).await.expect("create"), 1);
        id
    }

    /// `n` provider deliveries due now.
    pub async fn sms(&self, n: usize) -> Vec<DeliveryId> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(
                self.create(Channel::Provider, &format!("7900{i:07}"), json!({"text": format!("hello {i}")}), None)
                    .await,
            );
        }
        ids
    }

    pub async fn get(&self, id: DeliveryId) -> Delivery {
        self.store.delivery(id).await.expect("read").expect("stored")
    }

    /// Waits until no delivery in `ids` is `sending` (its outcome is recorded); returns them.
    pub async fn settled(&self, ids: &[DeliveryId]) -> Vec<Delivery> {
        self.wait_until(ids, "settled", Duration::from_secs(30), |s| s != DeliveryStatus::Sending).await
    }

    /// Waits until every delivery in `ids` has `status`.
    pub async fn all_become(&self, ids: &[DeliveryId], status: DeliveryStatus) -> Vec<Delivery> {
        self.wait_until(ids, status.as_str(), Duration::from_secs(60), |s| s == status).await
    }

    /// Reads `ids` until every status satisfies `done`, failing after `timeout`; returns them.
    async fn wait_until(
        &self,
        ids: &[DeliveryId],
        what: &str,
        timeout: Duration,
        done: impl Fn(DeliveryStatus) -> bool,
    ) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut all = Vec::new();
            for id in ids {
                all.push(self.get(*id).await);
            }
            if all.iter().all(|d| done(d.status)) {
                return all;
            }
            let statuses: Vec<_> = all.iter().map(|d| d.status.as_str()).collect();
            assert!(tokio::time::Instant::now() < deadline, "not all {what} after {timeout:?}: {statuses:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One scheduler pass; how many deliveries it queued.
    pub async fn tick(&self) -> usize {
        self.scheduler.tick().await.expect("scheduler pass").queued
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by.to_std().expect("forward"));
    }

    pub async fn finish(self) {
        self.provider.stop().await;
    }
}

fn transient(status: u16) -> Reply {
    Reply::Answer { status, body: Bytes::from_static(b"{}"), headers: Vec::new() }
}

/// 503, 503, then a 429 asking for 30 s: the waits are 1 s, 2 s, then 30 s (the provider asked
/// for more than the policy's 4 s), and nothing is claimed a microsecond early.
pub async fn the_retry_schedule_is_honoured_on_a_paused_clock(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let sender = p.spawn(Pipeline::options());
    let id = p.sms(1).await[0];
    p.provider.then(transient(503));
    p.provider.then(transient(503));
    p.provider.then(Reply::Answer {
        status: 429,
        body: Bytes::new(),
        headers: vec![("Retry-After".into(), "30".into())],
    });

    let mut expected_at = t0();
    for (attempt, wait, error) in [(1, 1, "HTTP 503"), (2, 2, "HTTP 503"), (3, 30, "HTTP 429")] {
        assert_eq!(p.tick().await, 1, "attempt {attempt} is due");
        let d = &p.settled(&[id]).await[0];
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, attempt));
        assert!(d.last_error.as_deref().is_some_and(|e| e.contains(error)), "{:?}", d.last_error);
        expected_at += secs(wait);
        assert_eq!(d.next_attempt_at, expected_at, "attempt {attempt} waits {wait}s");
        p.clock.set(expected_at - chrono::Duration::microseconds(1));
        assert_eq!(p.tick().await, 0, "not a microsecond early");
        p.clock.set(expected_at);
    }
    assert_eq!(p.tick().await, 1);
    let d = &p.settled(&[id]).await[0];
    assert_eq!((d.status, d.attempts, d.sent_at), (DeliveryStatus::Sent, 4, Some(expected_at)));
    assert_eq!(p.provider.received(d.number as u64), 4);
    assert_eq!(p.provider.accepted(d.number as u64).map(|a| a.times), Some(1));
    sender.stop().await;
    p.finish().await;
}

/// A 4xx is final at once; a delivery whose next attempt would pass its deadline expires; one
/// already past it expires without a call; a bad recipient fails without a call.
pub async fn client_errors_are_final_and_deadlines_expire(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let sender = p.spawn(Pipeline::options());

    let rejected = p.sms(1).await[0];
    p.provider.then(transient(400));
    p.tick().await;
    let d = &p.settled(&[rejected]).await[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 1));
    assert!(d.last_error.as_deref().is_some_and(|e| e.contains("HTTP 400")), "{:?}", d.last_error);

    let deadline = t0() + chrono::Duration::milliseconds(2500);
    let late = p.create(Channel::Provider, "79001234567", json!({"text": "late"}), Some(deadline)).await;
    p.provider.then(transient(500));
    p.provider.then(transient(500));
    p.tick().await;
    assert_eq!(p.settled(&[late]).await[0].status, DeliveryStatus::Pending, "1 s later is inside the deadline");
    p.advance(secs(1));
    p.tick().await;
    let d = &p.settled(&[late]).await[0];
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Expired, 2), "2 s more would pass the deadline");
    assert!(d.last_error.as_deref().is_some_and(|e| e.contains("deadline")), "{:?}", d.last_error);

    let already = p.create(Channel::Provider, "79001234568", json!({"text": "too late"}), Some(p.clock.now())).await;
    let bad_phone = p.create(Channel::Provider, "+7 900", json!({"text": "x"}), None).await;
    let no_text = p.create(Channel::Provider, "79001234569", json!({}), None).await;
    p.tick().await;
    let [already, bad_phone, no_text] =
        <[Delivery; 3]>::try_from(p.settled(&[already, bad_phone, no_text]).await).expect("3");
    assert_eq!((already.status, already.attempts), (DeliveryStatus::Expired, 0));
    assert_eq!((bad_phone.status, bad_phone.attempts), (DeliveryStatus::Failed, 1), "{:?}", bad_phone.last_error);
    assert_eq!(no_text.status, DeliveryStatus::Failed, "{:?}", no_text.last_error);
    for d in [&already, &bad_phone, &no_text] {
        assert_eq!(p.provider.received(d.number as u64), 0, "no call for {:?}", d.last_error);
    }
    sender.stop().await;
    p.finish().await;
}

/// During an outage the breaker opens after its threshold; what is due meanwhile is deferred to
/// the probe without spending attempts; after recovery everything is sent, once.
pub async fn the_breaker_opens_defers_and_recovers(store: Arc<dyn Store>, broker: &TestBroker) {
    let p = Pipeline::new(store, broker).await;
    let mut options = Pipeline::options();
    options.concurrency = 1;
    options.breaker =
        BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(30), ..BreakerConfig::default() };
    let sender = p.spawn(options);
    let ids = p.sms(10).await;
    p.provider.outage(true);

    assert_eq!(p.tick().await, 10);
    let all = p.settled(&ids).await;
    assert_eq!(p.provider.stats().requests, 3, "the breaker opened after 3 failures");
    let tried: Vec<_> = all.iter().filter(|d| d.attempts == 1).collect();
    let deferred: Vec<_> = all.iter().filter(|d| d.attempts == 0).collect();
    assert_eq!((tried.len(), deferred.len()), (3, 7));
    assert!(all.iter().all(|d| d.status == DeliveryStatus::Pending));
    assert!(deferred.iter().all(|d| d.next_attempt_at == t0() + secs(30)), "deferred to the probe");
    assert_eq!(
        sender.sender.breaker_state(Channel::Provider),
        herald_core::delivery::BreakerState::Open { until: t0() + secs(30) }
    );
    assert!(p.metrics.encode().contains(r#"herald_delivery_breaker_state{channel="provider"} 1"#));

    // The retries fall due while it is still open: deferred again, no attempt spent.
    p.advance(secs(1));
    assert_eq!(p.tick().await, 3);
    let retried = p.settled(&tried.iter().map(|d| d.id).collect::<Vec<_>>()).await;
    assert!(retried.iter().all(|d| d.attempts == 1 && d.next_attempt_at == t0() + secs(30)));
    assert_eq!(p.provider.stats().requests, 3);

    // Several minutes of outage in all, then the provider recovers and the probe succeeds.
    p.provider.outage(false);
    p.clock.set(t0() + secs(30));
    assert_eq!(p.tick().await, 10);
    let all = p.all_become(&ids, DeliveryStatus::Sent).await;
    assert_eq!(p.provider.stats().distinct_accepted, 10);
    assert!(p.provider.accepted_messages().iter().all(|a| a.times == 1), "each sent once");
    assert_eq!(all.iter().map(|d| d.attempts).sum::<u32>(), 13, "3 failed attempts + 10 sends");
    assert_eq!(sender.sender.breaker_state(Channel::Provider), herald_core::delivery::BreakerState::Closed);
    sender.stop().await;
    p.finish().await;
}
