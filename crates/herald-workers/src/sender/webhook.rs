//! The webhook channel's call from the sender: the recipient's signing keys read first.

use chrono::{DateTime, Utc};
use herald_core::{
    delivery::{Attempt, DeliveryJob, Failure},
    user::UserId,
};

use super::Sender;

impl Sender {
    /// Calls the recipient's webhook, signed with the keys their webhook has now.
    pub(super) async fn webhook(&self, job: &DeliveryJob, now: DateTime<Utc>) -> Attempt {
        let keys = match job.recipient_id {
            None => None,
            Some(user) => match self.0.store.webhook_keys(UserId(user), now).await {
                Ok(keys) => keys,
                Err(error) => {
                    tracing::warn!(delivery = %job.id, %error, "could not read a webhook's secret; retried");
                    return Err(Failure::Connection);
                }
            },
        };
        self.0.channels.webhook(job, keys.as_ref(), now).await
    }
}
