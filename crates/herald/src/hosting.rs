//! Where commands run: the groups this process hosts (`HERALD_COMMANDS`), the way to the others
//! (forwarded over NATS request-reply), and the NATS command transport that answers for the groups
//! hosted here. Forwarded commands travel on `<namespace>.fwd.*`, sealed with a key derived from
//! `HERALD_BROKER_SIGNING_KEY` when it is set.

use std::{sync::Arc, time::Duration};

use herald_broker::{BrokerUrl, ForwardSealing};
use herald_core::{Herald, health::Readiness, hosting::Hosting, metrics::Metrics};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::config::Config;

/// The configured hosting: every command here, or the named groups here and the others forwarded
/// over NATS. A subset needs NATS as the broker, so it is refused at start without it.
pub async fn hosting(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Hosting> {
    let hosted = config.commands.clone();
    if hosted.is_all() {
        return Ok(Hosting::default());
    }
    let BrokerUrl::Nats(url) = &config.broker_url else {
        anyhow::bail!(
            "HERALD_COMMANDS={hosted} hosts only some command groups; the others are forwarded over NATS, \
             so HERALD_BROKER_URL must be nats://… (it is {})",
            config.broker_url
        );
    };
    let sealing = sealing(config)?;
    if !sealing.is_sealed() {
        tracing::warn!("HERALD_BROKER_SIGNING_KEY is unset: forwarded commands travel over NATS in the clear");
    }
    let (namespace, timeout) = (&config.broker_namespace.0, config.command_forward_timeout.0);
    let forward = herald_broker::NatsForward::connect(url, namespace, timeout, &sealing, metrics.clone())
        .await
        .map_err(|e| anyhow::anyhow!("connecting the command forwarder to NATS: {e}"))?;
    tracing::info!(groups = %hosted, "hosting some command groups; forwarding the others over NATS");
    Ok(Hosting { hosted, forward: Some(Arc::new(forward)) })
}

/// How forwarded commands travel: sealed with a key derived from the broker signing key, if set.
fn sealing(config: &Config) -> anyhow::Result<ForwardSealing> {
    let key = config.broker_signing_key.0.as_ref().map(|key| key.expose().as_bytes());
    let (window, ids) = (config.forward_replay_window.0, config.forward_replay_ids.0 as usize);
    ForwardSealing::new(key, window, ids).map_err(|e| anyhow::anyhow!("HERALD_BROKER_SIGNING_KEY: {e}"))
}

/// With NATS as the broker, answers the hosted commands over NATS request-reply
/// (`<namespace>.cmd.<command>`, and forwarded calls on `<namespace>.fwd.<command>`) until `stop`;
/// registered as `nats_commands` in `readiness` (so `/readyz` says 503 until it serves), and a
/// failed start is tried again. Without NATS there is nothing to serve and nothing is registered.
/// Fails only on a signing key too short to derive the forwarding key from.
pub fn serve_nats_commands(
    config: &Config,
    herald: Arc<Herald>,
    readiness: &Readiness,
    workers: &TaskTracker,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let BrokerUrl::Nats(url) = &config.broker_url else { return Ok(()) };
    let sealing = sealing(config)?;
    let ready = readiness.register("nats_commands");
    let (url, namespace) = (url.clone(), config.broker_namespace.0.clone());
    workers.spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let serving = herald_broker::nats_commands::serve(
                &url,
                &namespace,
                herald.clone(),
                &sealing,
                ready.clone(),
                stop.clone(),
            );
            match serving.await {
                Ok(()) => return,
                Err(err) => tracing::warn!(error = %err, "the NATS command transport could not start; retrying"),
            }
            ready.set(false);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    Ok(())
}
