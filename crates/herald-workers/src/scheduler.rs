//! The scheduler: due deliveries → the senders' work queue, lapsed claims → back to pending, and
//! periodic jobs on their schedules.
//!
//! One pass: return the claims whose lease lapsed (their sender died or stalled), then claim due
//! deliveries in batches under a lease and enqueue them, several [`DeliveryJob`]s to a
//! [`JobBatch`] message. Claims are exclusive in the store (`FOR UPDATE SKIP LOCKED` on
//! PostgreSQL), so any number of schedulers run side by side without double claims. A batch the
//! broker refuses is handed back at once rather than left to lapse.
//!
//! Back-pressure: a scheduler claims only while fewer than `max_claimed` deliveries are claimed
//! and unreported, so a mailing of a million messages waits in the store, not in the broker or in
//! a sender's memory, and no claim lapses in a queue that senders cannot drain within the lease.
//!
//! Periodic jobs run on the scheduler holding the `scheduler-jobs` lease, one at a time; a run
//! missed while no scheduler was up is not made up (each job's next run is computed from the time
//! its scheduler took over).

use parking_lot::Mutex;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    broker::{Broker, BrokerError},
    clock::Clock,
    commands::mailings,
    delivery::{DELIVERY_QUEUE, DeliveryJob, DeliveryReport, DeliveryStatus, JobBatch},
    metrics::{JobLabels, Metrics},
    notice,
    quarantine::{FailurePolicy, with_causes},
    schedule::Schedule,
    store::{Store, StoreError},
    trace,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::failures::Failures;

/// The lease the scheduler that runs periodic jobs holds.
pub const JOBS_LEASE: &str = "scheduler-jobs";

/// A periodic job. Jobs must be idempotent: a run cut short by a crash runs again in full.
#[async_trait]
pub trait PeriodicJob: Send + Sync + std::fmt::Debug {
    /// A stable name for logs, metrics and config (`deliveries.prune`).
    fn name(&self) -> &str;

    /// One run at `now`; returns a short summary for the log.
    async fn run(&self, now: DateTime<Utc>) -> Result<String, Box<dyn std::error::Error + Send + Sync>>;
}

/// How a scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Most deliveries claimed per batch.
    pub batch: u32,
    /// Deliveries per work-queue message: a sender checks their claims with one store read and
    /// settles the message once all are reported.
    pub jobs_per_message: usize,
    /// Most deliveries claimed and not yet reported, across every scheduler (0: no bound).
    pub max_claimed: u64,
    /// How long a claim lasts: longer than a sender needs for one delivery (channel timeout,
    /// rate-limit wait and report included), short enough that a dead sender's work is soon retried.
    pub lease: Duration,
    /// Longest wait between passes when the last one found less than a full batch.
    pub interval: Duration,
    /// How long the jobs lease lasts without renewal.
    pub jobs_lease_ttl: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            jobs_per_message: 50,
            max_claimed: 20_000,
            lease: Duration::from_secs(120),
            interval: Duration::from_secs(1),
            jobs_lease_ttl: Duration::from_secs(30),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Lapsed claims returned to pending.
    pub rescued: u64,
    /// Deliveries claimed and enqueued.
    pub queued: usize,
    /// Whether the last batch was full (more may be due).
    pub full: bool,
    /// Whether `max_claimed` held the pass back: senders have enough for now.
    pub capped: bool,
}

/// How soon a scheduler held back by `max_claimed` looks again: senders free room quickly.
const CAPPED_POLL: Duration = Duration::from_millis(50);

/// Why a pass failed; retried by [`Scheduler::run`].
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
}

struct Scheduled {
    job: Arc<dyn PeriodicJob>,
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
}

/// Claims due deliveries for senders and runs periodic jobs.
pub struct Scheduler {
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    options: SchedulerOptions,
    holder: String,
    jobs: Mutex<Vec<Scheduled>>,
    /// When lapsed claims were last looked for: once an interval is enough, leases last minutes.
    rescued_at: Mutex<Option<DateTime<Utc>>>,
    /// Wakes the loop that makes started mailings' messages, when a pass sees one to make.
    materializer: tokio::sync::Notify,
    /// Backs off notices and deliveries that fail.
    failures: Failures,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("options", &self.options).field("holder", &self.holder).finish()
    }
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        broker: Arc<dyn Broker>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        options: SchedulerOptions,
    ) -> Self {
        let failures = Failures::new(store.clone(), metrics.clone(), FailurePolicy::default());
        Self {
            failures,
            store,
            broker,
            clock,
            metrics,
            options,
            holder: Uuid::now_v7().to_string(),
            jobs: Mutex::new(Vec::new()),
            rescued_at: Mutex::new(None),
            materializer: tokio::sync::Notify::new(),
        }
    }

    /// Adds a periodic job on `schedule` (`off` leaves it out).
    pub fn with_job(self, job: Arc<dyn PeriodicJob>, schedule: Schedule) -> Self {
        let next = schedule.next_after(self.clock.now());
        self.jobs.lock().push(Scheduled { job, schedule, next });
        self
    }

    /// The configured jobs and their schedules, for the log at start.
    pub fn job_schedules(&self) -> BTreeMap<String, String> {
        let jobs = self.jobs.lock();
        jobs.iter().map(|s| (s.job.name().to_owned(), s.schedule.to_string())).collect()
    }

    /// Sets how records that fail are backed off and quarantined.
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failures = Failures::new(self.store.clone(), self.metrics.clone(), policy);
        self
    }

    /// One pass: rescue lapsed claims (at most once an interval), then claim and enqueue one batch.
    ///
    /// A record that fails (a notice step that cannot be moved, a delivery row that cannot be
    /// read) is backed off on its own and the pass goes on; a step of the pass that fails on
    /// something other than one record is logged and the other steps still run. Only an
    /// unavailable store or broker fails the pass (it is retried with back-off).
    pub async fn tick(&self) -> Result<Pass, SchedulerError> {
        let now = self.clock.now();
        let rescue = {
            let mut at = self.rescued_at.lock();
            let interval = chrono::Duration::from_std(self.options.interval).unwrap_or(chrono::Duration::MAX);
            let due = at.is_none_or(|at| now - at >= interval);
            if due {
                *at = Some(now);
            }
            due
        };
        let rescued =
            if rescue { self.step("rescue", self.store.rescue_expired_leases(now)).await?.unwrap_or(0) } else { 0 };
        if rescued > 0 {
            self.metrics.deliveries_rescued.inc_by(rescued);
            tracing::info!(rescued, "returned lapsed delivery claims to pending");
        }
        // Mailings whose start has come start now, not at the `mailings` job's next run.
        self.step("start mailings", mailings::start_due(self.store.as_ref(), &self.metrics, now)).await?;
        // A started mailing with messages still to make: the materializing loop makes them, beside
        // the claims (a chunk takes longer than a claim; inline it would slow sending).
        if self
            .step("find mailings to make", self.store.materializing_mailings(1))
            .await?
            .is_some_and(|m| !m.is_empty())
        {
            self.materializer.notify_one();
        }
        // Due notice steps: the deliveries they make are claimed in this same pass.
        let escalated = self
            .step(
                "escalate notices",
                self.store.escalate_notices(now, self.options.batch, &|due| notice::plan(due, now)),
            )
            .await?
            .unwrap_or_default();
        self.failures.record_all(&escalated.failed, now).await;
        if !escalated.steps.is_empty() || !escalated.settled.is_empty() {
            self.metrics.notices.escalated(&escalated);
            tracing::debug!(steps = escalated.steps.len(), settled = escalated.settled.len(), "escalated notices");
        }
        let limit = self.room().await?;
        let capped = limit < self.options.batch;
        if limit == 0 {
            return Ok(Pass { rescued, queued: 0, full: escalated.full, capped });
        }
        let claimed = self.store.claim_due_deliveries(now, limit, self.options.lease).await?;
        self.failures.record_all(&claimed.unreadable, now).await;
        let full = (claimed.deliveries.len() + claimed.unreadable.len()) as u32 >= self.options.batch || escalated.full;
        let jobs: Vec<DeliveryJob> = claimed.deliveries.iter().filter_map(DeliveryJob::of).collect();
        if jobs.is_empty() {
            return Ok(Pass { rescued, queued: 0, full, capped });
        }
        let messages =
            jobs.chunks(self.options.jobs_per_message.max(1)).map(|c| JobBatch::message(c.to_vec())).collect();
        // Its own trace: each delivery's sender span continues the trace that created it instead.
        let span = tracing::info_span!(target: trace::TARGET, "scheduler.enqueue", otel.kind = "producer", claimed = jobs.len());
        if let Err(err) = self.broker.enqueue_all(DELIVERY_QUEUE, messages).instrument(span).await {
            self.hand_back(&jobs, now).await;
            return Err(err.into());
        }
        self.metrics.deliveries_claimed.inc_by(jobs.len() as u64);
        tracing::debug!(count = jobs.len(), "queued due deliveries");
        Ok(Pass { rescued, queued: jobs.len(), full, capped })
    }

    /// Runs one step of a pass: an unavailable store fails the pass; any other error is logged
    /// and counted, and the pass goes on without the step's result.
    async fn step<T>(
        &self,
        name: &'static str,
        step: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<Option<T>, SchedulerError> {
        match step.await {
            Ok(done) => Ok(Some(done)),
            Err(err @ StoreError::Unavailable(_)) => Err(err.into()),
            Err(err) => {
                self.metrics.scheduler_errors.inc();
                tracing::error!(step = name, error = %with_causes(&err), "a scheduler step failed; the pass goes on without it");
                Ok(None)
            }
        }
    }

    /// How many deliveries this pass may claim: a batch, less what `max_claimed` leaves no room for.
    async fn room(&self) -> Result<u32, StoreError> {
        let batch = self.options.batch;
        if self.options.max_claimed == 0 {
            return Ok(batch);
        }
        let claimed = self.store.count_claimed_deliveries().await?;
        let room = self.options.max_claimed.saturating_sub(claimed);
        Ok(u32::try_from(room).unwrap_or(u32::MAX).min(batch))
    }

    /// Returns claims that could not be enqueued to pending, unchanged but for the claim.
    async fn hand_back(&self, jobs: &[DeliveryJob], now: DateTime<Utc>) {
        let reports: Vec<DeliveryReport> = jobs
            .iter()
            .map(|j| DeliveryReport {
                id: herald_core::delivery::DeliveryId(j.id),
                lease_until: j.lease_until,
                status: DeliveryStatus::Pending,
                attempts: j.attempts,
                next_attempt_at: now,
                last_error: None,
                sent_at: None,
                call_time: None,
            })
            .collect();
        if let Err(err) = self.store.record_deliveries(&reports, now).await {
            tracing::warn!(error = %err, "could not hand back unqueued claims; they return when their lease lapses");
        }
    }

    /// Runs the periodic jobs that are due, if this scheduler holds the jobs lease; returns the
    /// names of the jobs run.
    pub async fn run_due_jobs(&self) -> Result<Vec<String>, StoreError> {
        if !self.store.acquire_lease(JOBS_LEASE, &self.holder, self.options.jobs_lease_ttl).await? {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let due: Vec<(usize, Arc<dyn PeriodicJob>)> = {
            let jobs = self.jobs.lock();
            jobs.iter()
                .enumerate()
                .filter(|(_, s)| s.next.is_some_and(|at| at <= now))
                .map(|(i, s)| (i, s.job.clone()))
                .collect()
        };
        let mut ran = Vec::new();
        for (index, job) in due {
            let name = job.name().to_owned();
            let result = match job.run(now).await {
                Ok(summary) => {
                    // A frequent job that found nothing to do says so quietly.
                    if summary.is_empty() {
                        tracing::debug!(job = %name, "periodic job ran");
                    } else {
                        tracing::info!(job = %name, %summary, "periodic job ran");
                    }
                    "ok"
                }
                Err(err) => {
                    tracing::warn!(job = %name, error = %err, "periodic job failed; it runs again at its next time");
                    "error"
                }
            };
            self.metrics.jobs.get_or_create(&JobLabels { job: name.clone(), result: result.into() }).inc();
            let mut jobs = self.jobs.lock();
            let scheduled = &mut jobs[index];
            scheduled.next = scheduled.schedule.next_after(now);
            ran.push(name);
        }
        Ok(ran)
    }

    /// Updates the due-deliveries gauge.
    pub async fn measure_backlog(&self) -> Result<u64, StoreError> {
        let due = self.store.count_due_deliveries(self.clock.now()).await?;
        self.metrics.deliveries_due.set(i64::try_from(due).unwrap_or(i64::MAX));
        Ok(due)
    }

    /// How long to sleep after a pass that left nothing due: until the next delivery or notice
    /// step falls due, at most an interval.
    async fn until_next_due(&self) -> Duration {
        let interval = self.options.interval;
        match self.store.next_due_at().await {
            Ok(Some(at)) => {
                let until = (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
                // Something due but not taken (another scheduler has it): look again shortly.
                until.max(Duration::from_millis(10)).min(interval)
            }
            Ok(None) => interval,
            Err(err) => {
                tracing::debug!(error = %err, "could not read the next due time");
                interval
            }
        }
    }

    /// Makes the next chunk of a started mailing's messages: how many, or `None` when none was
    /// left to make.
    pub async fn materialize(&self) -> Result<Option<u64>, StoreError> {
        mailings::materialize(self.store.as_ref(), self.clock.now(), mailings::CHUNK).await
    }

    /// Makes started mailings' messages chunk after chunk while some are left, else waits to be
    /// woken by a pass (or an interval).
    async fn materialize_loop(&self, shutdown: &CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let wait = match self.materialize().await {
                Ok(None) => self.options.interval,
                Ok(Some(_)) => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Err(err) => {
                    self.metrics.scheduler_errors.inc();
                    tracing::warn!(error = %err, retry_in = ?backoff, "could not make a mailing's messages");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.materializer.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Runs passes until `shutdown`: at once while batches come back full, else every interval
    /// (or sooner, when deliveries become due); beside them, makes started mailings' messages.
    /// Failures are logged, counted and retried with back-off.
    pub async fn run(&self, shutdown: CancellationToken) {
        tokio::join!(self.claim_loop(&shutdown), self.materialize_loop(&shutdown));
    }

    async fn claim_loop(&self, shutdown: &CancellationToken) {
        tracing::info!(jobs = ?self.job_schedules(), "scheduler running");
        let mut backoff = Duration::from_millis(100);
        let mut last_gauge = tokio::time::Instant::now() - Duration::from_secs(60);
        while !shutdown.is_cancelled() {
            let wait = match self.tick().await {
                Ok(pass) => {
                    backoff = Duration::from_millis(100);
                    if pass.full {
                        Duration::ZERO
                    } else if pass.capped {
                        CAPPED_POLL.min(self.options.interval)
                    } else {
                        self.until_next_due().await
                    }
                }
                Err(err) => {
                    self.metrics.scheduler_errors.inc();
                    tracing::warn!(error = %err, retry_in = ?backoff, "scheduler pass failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    wait
                }
            };
            if let Err(err) = self.run_due_jobs().await {
                tracing::warn!(error = %err, "could not run periodic jobs");
            }
            if last_gauge.elapsed() >= Duration::from_secs(5) {
                last_gauge = tokio::time::Instant::now();
                if let Err(err) = self.measure_backlog().await {
                    tracing::debug!(error = %err, "could not count due deliveries");
                }
            }
            if wait > Duration::ZERO {
                // Woken early when deliveries become due (a mailing starts, in any process).
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.store.wait_for_due(wait) => {}
                }
            }
        }
        if let Err(err) = self.store.release_lease(JOBS_LEASE, &self.holder).await {
            tracing::debug!(error = %err, "could not release the jobs lease");
        }
    }
}
