//! Where commands run: the groups this process hosts (`HERALD_COMMANDS`), the way to the others
//! (forwarded over NATS request-reply), and the NATS command transport that answers for the groups
//! hosted here.

use std::{sync::Arc, time::Duration};

use herald_broker::BrokerUrl;
use herald_core::{Herald, health::Readiness, hosting::Hosting};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::config::Config;

/// The configured hosting: every command here, or the named groups here and the others forwarded
/// over NATS. A subset needs NATS as the broker, so it is refused at start without it.
pub async fn hosting(config: &Config) -> anyhow::Result<Hosting> {
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
    let forward =
        herald_broker::NatsForward::connect(url, &config.broker_namespace.0, config.command_forward_timeout.0)
            .await
            .map_err(|e| anyhow::anyhow!("connecting the command forwarder to NATS: {e}"))?;
    tracing::info!(groups = %hosted, "hosting some command groups; forwarding the others over NATS");
    Ok(Hosting { hosted, forward: Some(Arc::new(forward)) })
}

/// With NATS as the broker, answers the hosted commands over NATS request-reply
/// (`<namespace>.cmd.<command>`) until `stop`; registered as `nats_commands` in `readiness` (so
/// `/readyz` says 503 until it serves), and a failed start is tried again. Without NATS there is
/// nothing to serve and nothing is registered.
pub fn serve_nats_commands(
    config: &Config,
    herald: Arc<Herald>,
    readiness: &Readiness,
    workers: &TaskTracker,
    stop: CancellationToken,
) {
    let BrokerUrl::Nats(url) = &config.broker_url else { return };
    let ready = readiness.register("nats_commands");
    let (url, namespace) = (url.clone(), config.broker_namespace.0.clone());
    workers.spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match herald_broker::nats_commands::serve(&url, &namespace, herald.clone(), ready.clone(), stop.clone())
                .await
            {
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
}
