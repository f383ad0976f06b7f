//! `herald-bench broadcast`: the broker's topic path alone, as the relay and the gateways use it.
//! One connection broadcasts a batch every 10 ms; another, subscribed, receives it. Per batch:
//! how long the broadcast took (until the broker accepted all of it) and how long until the
//! subscriber had the batch's last message.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use herald_core::broker::{BrokerError, Message};
use uuid::Uuid;

use crate::percentile_ms;
use herald::{app, config::Config};

/// The topic the benchmark uses (under the configured namespace).
const TOPIC: &str = "bench.broadcast";

/// What it measured, in microseconds, sorted.
#[derive(Debug)]
pub struct BroadcastReport {
    pub batch: usize,
    publish: Vec<u64>,
    received: Vec<u64>,
}

impl BroadcastReport {
    pub fn print(&self, config: &Config) {
        let line = |what: &str, sorted: &[u64]| {
            println!(
                "{what} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                percentile_ms(sorted, 0.5),
                percentile_ms(sorted, 0.99),
                percentile_ms(sorted, 1.0)
            );
        };
        println!("broker     {}", config.broker_url);
        println!("batches    {} of {} messages, one every 10 ms", self.publish.len(), self.batch);
        line("broadcast ", &self.publish);
        line("received  ", &self.received);
    }
}

/// Runs the benchmark against the configured broker (use a scratch namespace).
pub async fn broadcast(config: &Config, batch: usize, batches: usize) -> anyhow::Result<BroadcastReport> {
    if batch == 0 || batches == 0 {
        bail!("--batch and --batches must be at least 1");
    }
    let metrics = std::sync::Arc::new(herald_core::metrics::Metrics::default());
    let publisher = app::open_broker(config, &metrics).await?;
    // A second connection, as a gateway has its own; the in-process broker is one per process.
    let subscriber = match config.broker_url {
        herald_broker::BrokerUrl::Memory => publisher.clone(),
        _ => app::open_broker(config, &metrics).await?,
    };
    let mut subscription = subscriber.subscribe(TOPIC).await.context("subscribing")?;
    let (mut publish, mut received) = (Vec::with_capacity(batches), Vec::with_capacity(batches));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..batches {
        tick.tick().await;
        let messages: Vec<Message> = (0..batch).map(|_| Message::new(Uuid::now_v7(), vec![0; 200])).collect();
        let last = messages[batch - 1].id;
        let started = Instant::now();
        publisher.broadcast_all(TOPIC, messages).await.context("broadcasting")?;
        publish.push(started.elapsed().as_micros() as u64);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await;
            match next.context("no broadcast for 10 s")? {
                Ok(message) if message.id == last => break,
                Ok(_) => {}
                Err(BrokerError::Interrupted) => bail!("the subscription was interrupted; run again"),
                Err(error) => return Err(error).context("receiving"),
            }
        }
        received.push(started.elapsed().as_micros() as u64);
    }
    publisher.close().await;
    subscriber.close().await;
    publish.sort_unstable();
    received.sort_unstable();
    Ok(BroadcastReport { batch, publish, received })
}
