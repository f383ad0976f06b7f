//! Wake-ups between processes over `LISTEN`/`NOTIFY`: after a commit a writer sends one coalesced
//! `NOTIFY` (from outside its transaction: one inside would serialise committing writers on the
//! global notification lock), carrying no payload; a waiter `LISTEN`s on a connection of its own
//! and reads the tables to find out. Polling covers a lost one.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

/// One `LISTEN` channel: its notifier and its waiter.
#[derive(Debug)]
pub(super) struct Wakeup {
    channel: &'static str,
    /// Where `NOTIFY` goes out (the store's pool).
    pool: PgPool,
    /// The waiter's connection: `LISTEN` holds it for good, so it has a pool of its own, opened
    /// on first wait.
    listener_pool: PgPool,
    /// A coalesced `NOTIFY` is on its way.
    pending: Arc<AtomicBool>,
    listener: tokio::sync::Mutex<Option<PgListener>>,
}

impl Wakeup {
    pub(super) fn new(channel: &'static str, pool: PgPool, options: PgConnectOptions) -> Self {
        let listener_pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
        Self { channel, pool, listener_pool, pending: Arc::default(), listener: tokio::sync::Mutex::new(None) }
    }

    /// Sends one `NOTIFY` for any number of commits that happen before it goes out. The flag is
    /// cleared before sending, so a commit after the clear sends (or joins) a later notify.
    pub(super) fn wake(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, pending, channel) = (self.pool.clone(), self.pending.clone(), self.channel);
        tokio::spawn(async move {
            pending.store(false, Ordering::Release);
            if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(&pool).await {
                tracing::debug!(channel, error = %e, "notify failed; waiters fall back to polling");
            }
        });
    }

    /// Waits for a `NOTIFY` on the channel, or `timeout`.
    pub(super) async fn wait(&self, timeout: Duration) {
        let mut listener = self.listener.lock().await;
        if listener.is_none() {
            match PgListener::connect_with(&self.listener_pool).await {
                Ok(mut new) => match new.listen(self.channel).await {
                    Ok(()) => *listener = Some(new),
                    Err(e) => tracing::debug!(channel = self.channel, error = %e, "LISTEN failed; polling"),
                },
                Err(e) => tracing::debug!(channel = self.channel, error = %e, "no LISTEN connection; polling"),
            }
        }
        match listener.as_mut() {
            Some(l) => {
                if let Ok(Err(e)) = tokio::time::timeout(timeout, l.recv()).await {
                    tracing::debug!(channel = self.channel, error = %e, "LISTEN connection lost; reconnecting next time");
                    *listener = None;
                }
            }
            None => tokio::time::sleep(timeout).await,
        }
    }

    /// Lets go of the `LISTEN` connection. A waiter on it is woken by the pool's close event.
    pub(super) async fn close(&self) {
        let drop_listener = async {
            self.listener.lock().await.take();
        };
        tokio::join!(self.listener_pool.close(), drop_listener);
    }
}
