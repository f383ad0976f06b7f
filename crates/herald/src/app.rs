//! Wiring: opens the backends named by the configuration and starts the roles on them.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use herald_core::{
    Herald, Services,
    auth::{PasswordHasher, TokenIssuer},
    broker::Broker,
    clock::{Clock, SystemClock},
    delivery::{BreakerConfig, Channel, RetryPolicy},
    files::Files,
    metrics::Metrics,
    net::{Destinations, Resolve},
    realtime::{Engine, EngineOptions},
    store::Store,
    throttle::{Throttle, ThrottleOptions},
};
use herald_http::{HttpOptions, Probes};
use herald_workers::{
    calendar::ReminderRouter,
    channels::{Channels, ProviderConfig, WebhookConfig},
    collector::FileCollector,
    mailings::MailingsJob,
    relay::{Relay, RelayOptions},
    reports::DailyReportJob,
    retention::RetentionJob,
    scheduler::{Scheduler, SchedulerOptions},
    sender::{Rate, Sender, SenderOptions},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use crate::backends::{create_private_dir, open_broker, open_files, open_store};
use crate::{config::Config, hosting, secret};

/// The outbox relay over the configured store and broker.
pub fn relay(config: &Config, store: Arc<dyn Store>, broker: Arc<dyn Broker>, metrics: Arc<Metrics>) -> Relay {
    let options = RelayOptions {
        batch: config.relay_batch.0,
        poll_interval: config.relay_poll_interval.0,
        retention: config.outbox_retention.0,
        channel_max_events: config.channel_max_events.0,
        ..RelayOptions::default()
    };
    Relay::new(store, broker, metrics, options)
}

/// The scheduler's settings.
pub fn scheduler_options(config: &Config) -> SchedulerOptions {
    SchedulerOptions {
        batch: config.scheduler_batch.0,
        jobs_per_message: config.scheduler_jobs_per_message.0 as usize,
        max_claimed: u64::from(config.scheduler_max_claimed.0),
        lease: config.delivery_lease.0,
        interval: config.scheduler_interval.0,
        ..SchedulerOptions::default()
    }
}

/// The delivery scheduler over the configured store and broker, with the periodic jobs.
pub fn scheduler(
    config: &Config,
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Scheduler {
    let mailings = Arc::new(MailingsJob::new(store.clone(), metrics.clone()));
    let retention = Arc::new(RetentionJob::events(store.clone(), config.event_retention.0));
    let notices = Arc::new(RetentionJob::notices(store.clone(), config.notice_retention.0));
    // Held records that stopped failing a day ago are forgotten, on the notices' schedule (hourly).
    let held = Arc::new(RetentionJob::held(store.clone(), std::time::Duration::from_secs(24 * 3600)));
    let report = Arc::new(DailyReportJob::new(store.clone(), config.report_timezone, config.smtp_url.0.is_some()));
    Scheduler::new(store, broker, clock, metrics, scheduler_options(config))
        .with_job(mailings, config.mailings_schedule.clone())
        .with_job(report, config.report_schedule.clone())
        .with_job(retention, config.event_retention_schedule.clone())
        .with_job(notices, config.notice_retention_schedule.clone())
        .with_job(held, config.notice_retention_schedule.clone())
}

/// The router of calendar reminders: `notifications` queue → deliveries to their owner.
pub fn reminder_router(
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> ReminderRouter {
    ReminderRouter::new(store, broker, clock, metrics)
}

/// The sender's settings.
pub fn sender_options(config: &Config) -> SenderOptions {
    let mut rates = HashMap::new();
    for (channel, rate) in [(Channel::Provider, config.provider_rate), (Channel::Webhook, config.webhook_rate)] {
        if let Some(per_second) = rate.0 {
            // Bursts of up to one second's worth: a rate of 0.5/s allows one call, then one per 2 s.
            rates.insert(channel, Rate { per_second, burst: per_second.floor().max(1.0) as u32 });
        }
    }
    let call_margin = config.longest_channel_call() + std::time::Duration::from_secs(5);
    SenderOptions {
        concurrency: config.sender_concurrency.0 as usize,
        min_concurrency: (config.sender_min_concurrency.0 as usize).min(config.sender_concurrency.0 as usize),
        // The broker redelivers a message only after its claims lapsed: a live claim is never
        // sent by two senders at once.
        ack_deadline: config.delivery_lease.0 + std::time::Duration::from_secs(30),
        policy: RetryPolicy {
            max_attempts: config.retry_max_attempts.0,
            cap: config.retry_cap.0,
            jitter: config.retry_jitter.0,
            ..RetryPolicy::default()
        },
        breaker: BreakerConfig {
            failure_threshold: config.breaker_threshold.0,
            open_for: config.breaker_open.0,
            ..BreakerConfig::default()
        },
        rates,
        max_hosts: config.webhook_max_hosts.0 as usize,
        call_margin,
        ..SenderOptions::default()
    }
}

/// Where users may aim webhooks, looked up through `resolver`.
pub fn destinations(config: &Config, resolver: Arc<dyn Resolve>) -> Destinations {
    Destinations::new(config.webhook_allowed_networks.clone(), resolver)
}

/// Parts a caller may put in place of the ones the configuration names (tests do).
#[derive(Debug, Clone, Default)]
pub struct Parts {
    /// Resolves the names of outbound destinations; `None` is the system resolver with
    /// `dns_lookup_concurrency` look-ups at once.
    pub resolver: Option<Arc<dyn Resolve>>,
}

impl Parts {
    /// The resolver to use under `config`.
    pub fn resolver(&self, config: &Config) -> Arc<dyn Resolve> {
        self.resolver.clone().unwrap_or_else(|| system_resolver(config))
    }
}

/// The operating system's resolver, bounded as configured.
pub fn system_resolver(config: &Config) -> Arc<dyn Resolve> {
    let concurrency = usize::try_from(config.dns_lookup_concurrency.0).unwrap_or(usize::MAX);
    // As many names as a sender keeps webhook hosts: a deployment's destinations, not more.
    let names = usize::try_from(config.webhook_max_hosts.0).unwrap_or(usize::MAX);
    Arc::new(herald_workers::net::SystemResolver::new(concurrency, names))
}

/// The outbound HTTP setup as configured. Checked when the configuration loaded; only a CA file
/// changed since could fail here, and then the system's roots alone are trusted.
pub fn egress(config: &Config) -> herald_egress::Egress {
    config.egress().unwrap_or_else(|error| {
        tracing::error!(%error, "outbound TLS trusts the system's roots only: the CA file no longer holds");
        herald_egress::Egress::system()
    })
}

/// The channels as configured, calling out through `egress`, with webhooks limited to
/// `destinations`.
pub fn channels(config: &Config, destinations: Destinations, egress: &herald_egress::Egress) -> Channels {
    let provider = config.provider_url.0.as_ref().map(|url| ProviderConfig {
        url: url.0.clone(),
        token: config.provider_token.0.as_ref().map(|t| t.expose().into()).unwrap_or_default(),
        timeout: config.provider_timeout.0,
        answer_limit: usize::try_from(config.provider_answer_limit.0).unwrap_or(usize::MAX),
    });
    let webhook = WebhookConfig {
        secret: config.webhook_secret.0.as_ref().map(|s| s.expose().into()),
        timeout: config.webhook_timeout.0,
        answer_limit: usize::try_from(config.webhook_answer_limit.0).unwrap_or(usize::MAX),
    };
    let channels = Channels::new(egress, provider, webhook, destinations);
    // Checked when the configuration loaded; only a CA file changed since could fail here.
    match config
        .email()
        .map_err(|e| e.message)
        .and_then(|email| email.map(|email| herald_workers::email::EmailChannel::new(&email)).transpose())
    {
        Ok(Some(email)) => channels.with_email(email),
        Ok(None) => channels,
        Err(error) => {
            tracing::error!(%error, "the email channel is off: its settings no longer hold");
            channels
        }
    }
}

/// The delivery sender over the configured store, broker and channels, resolving webhook hosts
/// with the system resolver.
pub fn sender(
    config: &Config,
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Sender {
    let destinations = destinations(config, system_resolver(config));
    sender_with(config, store, broker, clock, metrics, destinations, &egress(config))
}

/// Like [`sender`], with webhooks limited to `destinations` and calls made through `egress`.
pub fn sender_with(
    config: &Config,
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    destinations: Destinations,
    egress: &herald_egress::Egress,
) -> Sender {
    if config.provider_url.0.is_none() {
        tracing::info!(
            "the provider channel is off (HERALD_PROVIDER_URL is unset): provider deliveries fail saying so"
        );
    }
    if config.webhook_secret.0.is_some() {
        tracing::info!(
            "HERALD_WEBHOOK_SECRET is set: webhooks carry the deprecated Herald-Signature beside their own signature"
        );
    }
    if config.smtp_url.0.is_none() {
        tracing::info!("the email channel is off (HERALD_SMTP_URL is unset): email deliveries fail saying so");
    }
    Sender::new(store, broker, clock, metrics, channels(config, destinations, egress), sender_options(config))
}

/// The scheduler of [`scheduler`] with the orphan-file collector among its jobs, every
/// `gc_interval`: it runs under the jobs lease, in `serve` and in a split `herald scheduler`.
pub fn scheduler_with_collector(
    config: &Config,
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    files: Arc<dyn Files>,
) -> Scheduler {
    let gc = collector(config, store.clone(), files, metrics.clone());
    scheduler(config, store, broker, clock, metrics)
        .with_job(Arc::new(gc), herald_core::schedule::Schedule::every(config.gc_interval.0))
}

/// The orphan-file collector over the configured store and files.
pub fn collector(
    config: &Config,
    store: Arc<dyn Store>,
    files: Arc<dyn Files>,
    metrics: Arc<Metrics>,
) -> FileCollector {
    FileCollector { store, files, metrics, grace: config.gc_grace.0 }
}

/// A running Herald and the means to stop it.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
    /// Where the gRPC calendar service listens (not in `herald gateway`).
    pub grpc_addr: Option<SocketAddr>,
    pub herald: Arc<Herald>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    workers: tokio_util::task::TaskTracker,
}

impl Running {
    /// Stops accepting, waits for in-flight requests up to `grace`, then closes the store.
    pub async fn stop(self, grace: std::time::Duration) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let Running { herald, server, workers, .. } = self;
        workers.close();
        let drained = tokio::time::timeout(grace, async {
            let served = server.await;
            workers.wait().await;
            served
        })
        .await;
        herald.services.broker.close().await;
        herald.services.store.close().await;
        match drained {
            Ok(joined) => joined.context("server task panicked")?.context("serving HTTP"),
            Err(_) => {
                tracing::warn!(?grace, "in-flight requests did not finish in time; stopped anyway");
                Ok(())
            }
        }
    }

    /// Resolves when the server stops by itself (it only does on an error).
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        (&mut self.server).await.context("server task panicked")?.context("serving HTTP")
    }
}

/// What one process runs.
#[derive(Debug, Clone, Copy)]
struct Roles {
    /// REST, gRPC and (on NATS) commands over request-reply.
    api: bool,
    /// Socket.io, `/ws` and `/demo`.
    gateway: bool,
    /// Relay, scheduler, sender and collector.
    workers: bool,
}

/// Opens the backends and starts serving HTTP on `config.http_addr` and gRPC on
/// `config.grpc_addr` (port 0 picks a free one), with the gateway and every worker in this
/// process: `herald serve`.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    start_with(config, Parts::default()).await
}

/// Like [`start`], with some parts put in place of the configured ones.
pub async fn start_with(config: &Config, parts: Parts) -> anyhow::Result<Running> {
    start_roles(config, Roles { api: true, gateway: true, workers: true }, parts).await
}

/// Serves the API only (HTTP, gRPC, and commands over NATS): `herald api`, beside separate
/// gateway, relay, scheduler and sender processes.
pub async fn start_api(config: &Config) -> anyhow::Result<Running> {
    start_roles(config, Roles { api: true, gateway: false, workers: false }, Parts::default()).await
}

/// Serves real-time sessions only (Socket.io, `/ws`, `/demo`, and the probes) on
/// `config.http_addr`: `herald gateway`.
pub async fn start_gateway(config: &Config) -> anyhow::Result<Running> {
    start_roles(config, Roles { api: false, gateway: true, workers: false }, Parts::default()).await
}

/// The session engine's settings.
pub fn engine_options(config: &Config) -> EngineOptions {
    EngineOptions {
        session_buffer: usize::try_from(config.session_buffer.0).unwrap_or(usize::MAX),
        session_idle_timeout: config.session_idle_timeout.0,
        sessions_per_user: config.sessions_per_user.0 as usize,
        max_sessions: config.max_sessions.0 as usize,
        subscriptions_per_session: config.subscriptions_per_session.0 as usize,
        calls_in_flight: config.session_calls_in_flight.0 as usize,
        trusted_proxies: config.trusted_proxies.clone(),
        ..EngineOptions::default()
    }
}

async fn start_roles(config: &Config, roles: Roles, parts: Parts) -> anyhow::Result<Running> {
    let store = open_store(config).await?;
    let secret = secret::load_or_generate(config)?;
    let ttl = chrono::Duration::from_std(config.jwt_ttl.0).context("jwt_ttl is too long")?;
    let tokens = TokenIssuer::new(&secret, ttl).map_err(|e| anyhow::anyhow!("JWT secret {e}"))?;
    let files = open_files(config).await?;
    let metrics = Arc::new(Metrics::default());
    let broker = open_broker(config, &metrics).await?;
    let hosting = hosting::hosting(config, &metrics).await?;
    let herald = Arc::new(
        Herald::new(Services {
            store: store.clone(),
            broker: broker.clone(),
            files: files.clone(),
            tokens,
            passwords: PasswordHasher::new(config.password_hash_concurrency.resolve(), config.password_hash_queue.0),
            throttle: Throttle::new(ThrottleOptions {
                per_account: config.auth_account_rate.0,
                per_address: config.auth_address_rate.0,
                lookups_per_account: config.webhook_lookup_rate.0,
                max_keys: config.auth_rate_keys.0 as usize,
            }),
            destinations: destinations(config, parts.resolver(config)),
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
            max_upload: config.max_upload_size.0,
            uploads: herald_core::files::UploadsPerUser::new(config.uploads_per_user.0 as usize),
            report_zone: config.report_timezone.0,
        })
        .with_hosting(hosting),
    );
    // One outbound setup for the process's clients (the system roots are read once).
    let egress = egress(config);
    let options = HttpOptions {
        body_limit: usize::try_from(config.body_limit.0).unwrap_or(usize::MAX),
        cors_origins: config.cors_origins.0.clone(),
        ready_timeout: std::time::Duration::from_secs(2),
        trusted_proxies: config.trusted_proxies.clone(),
        oidc: config.oidc(),
        oidc_answer_limit: usize::try_from(config.oidc_answer_limit.0).unwrap_or(usize::MAX),
        egress: egress.clone(),
    };
    let shutdown = CancellationToken::new();
    let workers = tokio_util::task::TaskTracker::new();
    let readiness = herald_core::health::Readiness::default();
    let mut router = if roles.api {
        herald_http::router(herald.clone(), &options, readiness.clone())
    } else {
        herald_http::admin_router(Probes {
            store: store.clone(),
            broker: broker.clone(),
            metrics: metrics.clone(),
            ready_timeout: options.ready_timeout,
            readiness: readiness.clone(),
        })
    };
    if let Some(dir) = &config.static_dir.0 {
        let statics = herald_http::statics::StaticDir::load(dir.0.clone(), &config.static_cache_control.0)
            .await
            .with_context(|| format!("reading the static directory {}", dir.0.display()))?;
        tracing::info!(dir = %dir.0.display(), files = statics.len(), "serving the static directory at /static/");
        router = router.merge(statics.router());
    }
    if roles.gateway {
        let engine = Engine::new(herald.clone(), engine_options(config), readiness.register("gateway"));
        router = herald_http::gateway::attach(&engine, router);
        let stop = shutdown.clone();
        workers.spawn(async move { engine.run(stop).await });
    }
    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the HTTP server to {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    let server = tokio::spawn(herald_http::serve(listener, router, config.server_limits(), shutdown.clone()));
    let mut grpc_addr = None;
    if roles.api {
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding the gRPC server to {}", config.grpc_addr))?;
        grpc_addr = Some(grpc_listener.local_addr()?);
        // The gRPC calendar service stops with the same token; `stop` waits for its calls in flight.
        let (grpc_herald, stop) = (herald.clone(), shutdown.clone());
        workers.spawn(async move {
            if let Err(err) = herald_grpc::serve(grpc_listener, grpc_herald, stop).await {
                tracing::error!(error = %err, "the gRPC server stopped");
            }
        });
        // Commands answer NATS request-reply too: `<namespace>.cmd.<command>`.
        hosting::serve_nats_commands(config, herald.clone(), &readiness, &workers, shutdown.clone())?;
    }
    if !roles.workers {
        let role = if roles.api { "api" } else { "gateway" };
        let (store, broker) = (&config.store_url, &config.broker_url);
        tracing::info!(role, %http_addr, grpc_addr = grpc_addr.map(tracing::field::display), %store, %broker, "herald is serving");
        return Ok(Running { http_addr, grpc_addr, herald, shutdown, server, workers });
    }
    let relay = relay(config, store.clone(), broker.clone(), metrics.clone());
    let stop = shutdown.clone();
    workers.spawn(async move { relay.run(stop).await });
    let clock = herald.services.clock.clone();
    let scheduler =
        scheduler_with_collector(config, store.clone(), broker.clone(), clock.clone(), metrics.clone(), files);
    let stop = shutdown.clone();
    workers.spawn(async move { scheduler.run(stop).await });
    let router = reminder_router(store.clone(), broker.clone(), clock.clone(), metrics.clone());
    let stop = shutdown.clone();
    workers.spawn(async move { router.run(stop).await });
    // The same destinations as the API checks webhooks against when they are set.
    let destinations = herald.services.destinations.clone();
    let sender = sender_with(config, store.clone(), broker, clock, metrics.clone(), destinations, &egress);
    let stop = shutdown.clone();
    workers.spawn(async move { sender.run(stop).await });
    tracing::info!(%http_addr, grpc_addr = grpc_addr.map(tracing::field::display), store = %config.store_url, broker = %config.broker_url, "herald is serving");
    Ok(Running { http_addr, grpc_addr, herald, shutdown, server, workers })
}
