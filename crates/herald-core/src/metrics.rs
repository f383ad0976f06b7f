//! Prometheus metrics: one registry per process, passed down (no global recorder). Each role
//! registers the families it updates; `/metrics` encodes them all.

use std::{fmt, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The matched route template (`/api/v1/tasks/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
}

/// Labels of a request's route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Labels of a delivery channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

/// Labels of a delivery's outcome on a channel: `sent`, `retry`, `deferred`, `failed`, `expired`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub channel: String,
    pub outcome: String,
}

/// Labels of a periodic job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
    pub result: String,
}

/// Labels of a message status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// Labels of one mailing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MailingLabels {
    pub mailing_id: String,
}

/// Labels of a broker message dropped because its signature did not check out: `unsigned` (no
/// signature header) or `bad_signature` (a malformed signature, or one made with another key or
/// over other contents).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectionLabels {
    pub reason: String,
}

/// Labels of a record a worker could not handle: the worker and a reason from a fixed set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ItemFailureLabels {
    pub worker: String,
    pub reason: String,
}

/// Every metric Herald exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_seconds: Family<RouteLabels, Histogram>,
    pub files_collected: Counter,
    pub files_collector_errors: Counter,
    pub relay_published: Counter,
    pub relay_errors: Counter,
    pub outbox_lag_seconds: Gauge<f64, AtomicU64>,
    pub deliveries: Family<OutcomeLabels, Counter>,
    pub delivery_attempts: Family<ChannelLabels, Counter>,
    pub delivery_send_seconds: Family<ChannelLabels, Histogram>,
    pub delivery_breaker_state: Family<ChannelLabels, Gauge>,
    pub delivery_rate_limit: Family<ChannelLabels, Gauge<f64, AtomicU64>>,
    pub deliveries_due: Gauge,
    pub deliveries_claimed: Counter,
    pub deliveries_rescued: Counter,
    pub scheduler_errors: Counter,
    /// Records a worker could not handle (each backed off, then quarantined), by worker and reason.
    pub worker_item_failures: Family<ItemFailureLabels, Counter>,
    pub sender_errors: Counter,
    pub sender_concurrency: Gauge,
    pub jobs: Family<JobLabels, Counter>,
    pub mailing_messages: Family<StatusLabels, Gauge>,
    pub mailing_progress: Family<MailingLabels, Gauge<f64, AtomicU64>>,
    pub mailings_started: Counter,
    pub mailings_finished: Counter,
    pub broker_rejected_messages: Family<RejectionLabels, Counter>,
    pub forward_rejected_messages: Family<RejectionLabels, Counter>,
    /// Tasks alive in the process's async runtime, set when the metrics are scraped.
    pub runtime_alive_tasks: Gauge,
    pub realtime: RealtimeMetrics,
    pub notices: NoticeMetrics,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            http_requests.clone(),
        );
        let http_request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0])
        });
        registry.register("http_request_seconds", "HTTP request latency, by route", http_request_seconds.clone());
        let files_collected = Counter::default();
        registry.register(
            "files_collected",
            "Orphaned attachment files removed by the collector",
            files_collected.clone(),
        );
        let files_collector_errors = Counter::default();
        registry.register(
            "files_collector_errors",
            "Collector passes or removals that failed",
            files_collector_errors.clone(),
        );
        let relay_published = Counter::default();
        registry.register("relay_published", "Outbox events published to the broker", relay_published.clone());
        let relay_errors = Counter::default();
        registry.register("relay_errors", "Relay passes that failed (store or broker)", relay_errors.clone());
        let outbox_lag_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "outbox_lag_seconds",
            "Age of the oldest unpublished outbox event (0 when none)",
            outbox_lag_seconds.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery outcomes by channel: sent, retry, deferred (breaker open, no attempt spent), failed, expired",
            deliveries.clone(),
        );
        let delivery_attempts = Family::<ChannelLabels, Counter>::default();
        registry.register("delivery_attempts", "Channel calls made, by channel", delivery_attempts.clone());
        let delivery_send_seconds = Family::<ChannelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        registry.register("delivery_send_seconds", "Channel call latency, by channel", delivery_send_seconds.clone());
        let delivery_breaker_state = Family::<ChannelLabels, Gauge>::default();
        registry.register(
            "delivery_breaker_state",
            "Circuit breaker per channel in this sender: 0 closed, 1 open, 2 half-open",
            delivery_breaker_state.clone(),
        );
        let delivery_rate_limit = Family::<ChannelLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "delivery_rate_limit",
            "Calls per second this sender allows per channel (absent: unlimited)",
            delivery_rate_limit.clone(),
        );
        let deliveries_due = Gauge::default();
        registry.register(
            "deliveries_due",
            "Pending deliveries whose attempt is due (the queue depth the scheduler sees)",
            deliveries_due.clone(),
        );
        let deliveries_claimed = Counter::default();
        registry.register(
            "deliveries_claimed",
            "Deliveries claimed and queued for senders",
            deliveries_claimed.clone(),
        );
        let deliveries_rescued = Counter::default();
        registry.register(
            "deliveries_rescued",
            "Claims whose lease lapsed (a sender died or stalled), returned to pending",
            deliveries_rescued.clone(),
        );
        let scheduler_errors = Counter::default();
        registry.register("scheduler_errors", "Scheduler passes that failed", scheduler_errors.clone());
        let worker_item_failures = Family::<ItemFailureLabels, Counter>::default();
        registry.register(
            "worker_item_failures",
            "Records a worker could not handle, by worker (escalation, scheduler, sender, router, relay) and reason \
             (unreadable, conflict, refused, failing); each is backed off, then quarantined",
            worker_item_failures.clone(),
        );
        let sender_errors = Counter::default();
        registry.register(
            "sender_errors",
            "Sender failures outside a channel call (bad queue message, store or broker error)",
            sender_errors.clone(),
        );
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register("jobs", "Periodic job runs by job and result (ok, error)", jobs.clone());
        let mailing_messages = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "mailing_messages",
            "Messages of running mailings by status (pending, sending, sent, failed, expired, cancelled)",
            mailing_messages.clone(),
        );
        let mailing_progress = Family::<MailingLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "mailing_progress",
            "Share of a running mailing's messages that are final (0 to 1), by mailing",
            mailing_progress.clone(),
        );
        let mailings_started = Counter::default();
        registry.register("mailings_started", "Mailings started (their messages created)", mailings_started.clone());
        let mailings_finished = Counter::default();
        registry.register(
            "mailings_finished",
            "Mailings finished (no message left pending or sending)",
            mailings_finished.clone(),
        );
        let broker_rejected_messages = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "broker_rejected_messages",
            "Broker messages dropped on receipt because their signature is missing (unsigned) or wrong (bad_signature)",
            broker_rejected_messages.clone(),
        );
        let forward_rejected_messages = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "forward_rejected_messages",
            "Forwarded command messages dropped: unopenable, stale, replayed, replay_cache_full (requests) or bad_reply",
            forward_rejected_messages.clone(),
        );
        let runtime_alive_tasks = Gauge::default();
        registry.register(
            "runtime_alive_tasks",
            "Tasks alive in the async runtime (spawned and not finished), read at each scrape",
            runtime_alive_tasks.clone(),
        );
        let sender_concurrency = Gauge::default();
        registry.register(
            "sender_concurrency",
            "Deliveries this process's sender keeps in flight now (adapted to the channels' call times and failures)",
            sender_concurrency.clone(),
        );
        let realtime = RealtimeMetrics::register(&mut registry);
        let notices = NoticeMetrics::register(&mut registry);
        Self {
            notices,
            broker_rejected_messages,
            forward_rejected_messages,
            runtime_alive_tasks,
            mailing_messages,
            mailing_progress,
            mailings_started,
            mailings_finished,
            registry,
            deliveries,
            delivery_attempts,
            delivery_send_seconds,
            delivery_breaker_state,
            delivery_rate_limit,
            deliveries_due,
            deliveries_claimed,
            deliveries_rescued,
            scheduler_errors,
            worker_item_failures,
            sender_errors,
            sender_concurrency,
            jobs,
            http_requests,
            http_request_seconds,
            files_collected,
            files_collector_errors,
            relay_published,
            relay_errors,
            outbox_lag_seconds,
            realtime,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Labels of a subscription's start: `recovered` (the gap since the session's position was
/// filled), `fresh` (no position known) or `lost` (the gap was no longer in the stream).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SubscribeLabels {
    pub result: String,
}

/// A notice step's channel and the status it moved to.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub channel: String,
    pub status: String,
}

/// Notices: how many reached each status, what their steps came to, how soon people answer.
#[derive(Debug, Clone)]
pub struct NoticeMetrics {
    /// Notices by the status they reached: `pending` when made, then `acknowledged`,
    /// `delivered`, `expired` or `failed`.
    pub notices: Family<StatusLabels, Counter>,
    pub steps: Family<StepLabels, Counter>,
    pub ack_seconds: Histogram,
}

impl NoticeMetrics {
    fn register(registry: &mut Registry) -> Self {
        let notices = Family::<StatusLabels, Counter>::default();
        registry.register(
            "notices",
            "Notices by the status they reached (pending when made; acknowledged, delivered, expired, failed)",
            notices.clone(),
        );
        let steps = Family::<StepLabels, Counter>::default();
        registry.register("notice_steps", "Notice steps by channel and the status they moved to", steps.clone());
        let ack_seconds = Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4.0 * 3600.0, 86400.0]);
        registry.register(
            "notice_ack_seconds",
            "Time from a notice being made to its acknowledgement",
            ack_seconds.clone(),
        );
        Self { notices, steps, ack_seconds }
    }

    /// Counts a notice reaching `status`.
    pub fn reached(&self, status: crate::notice::NoticeStatus) {
        self.notices.get_or_create(&StatusLabels { status: status.as_str().to_owned() }).inc();
    }

    /// Counts acknowledged notices and observes how long each took, as of `now`.
    pub fn acknowledged(&self, acked: &[crate::notice::Acknowledged], now: chrono::DateTime<chrono::Utc>) {
        for a in acked {
            self.reached(crate::notice::NoticeStatus::Acknowledged);
            self.ack_seconds.observe((now - a.created_at).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }

    /// Counts a step moving to `status`.
    pub fn step(&self, channel: crate::notify::NoticeChannel, status: crate::notice::StepStatus) {
        let labels = StepLabels { channel: channel.as_str().to_owned(), status: status.as_str().to_owned() };
        self.steps.get_or_create(&labels).inc();
    }

    /// Counts what an escalation pass did.
    pub fn escalated(&self, pass: &crate::notice::Escalation) {
        for (channel, status) in &pass.steps {
            self.step(*channel, *status);
        }
        for status in &pass.settled {
            self.reached(*status);
        }
    }
}

/// The real-time gateway's metrics (`herald_realtime_*`).
#[derive(Debug, Clone)]
pub struct RealtimeMetrics {
    pub sessions: Gauge,
    pub subscriptions: Family<SubscribeLabels, Counter>,
    pub events_sent: Counter,
    pub redeliveries: Counter,
    pub acks: Counter,
    pub slow_disconnects: Counter,
    pub fanout_received: Counter,
    pub ack_seconds: Histogram,
}

impl RealtimeMetrics {
    fn register(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("realtime");
        let sessions = Gauge::default();
        r.register("sessions", "Open real-time sessions (Socket.io and WebSocket) on this gateway", sessions.clone());
        let subscriptions = Family::<SubscribeLabels, Counter>::default();
        r.register(
            "subscriptions",
            "Channel subscriptions by result: recovered (gap filled), fresh (no position), lost (gap past retention)",
            subscriptions.clone(),
        );
        let events_sent = Counter::default();
        r.register("events_sent", "Events sent to sessions, live and replayed", events_sent.clone());
        let redeliveries = Counter::default();
        r.register(
            "redeliveries",
            "Events replayed from the stream to a resuming session (sent before or missed live)",
            redeliveries.clone(),
        );
        let acks = Counter::default();
        r.register("acks", "Acknowledgements that moved a session's cursor forward", acks.clone());
        let slow_disconnects = Counter::default();
        r.register(
            "slow_disconnects",
            "Sessions disconnected because their outgoing buffer was full",
            slow_disconnects.clone(),
        );
        let fanout_received = Counter::default();
        r.register("fanout_received", "Live events this gateway received from the broker", fanout_received.clone());
        let ack_seconds = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]);
        r.register(
            "ack_seconds",
            "Commit-to-acknowledgement latency: from the event's commit to the client's ack",
            ack_seconds.clone(),
        );
        Self {
            sessions,
            subscriptions,
            events_sent,
            redeliveries,
            acks,
            slow_disconnects,
            fanout_received,
            ack_seconds,
        }
    }
}
