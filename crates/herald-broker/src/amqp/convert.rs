//! Messages to AMQP properties and back: the id in `message_id`, headers as long strings in the
//! headers table, persistent delivery mode.

use std::collections::BTreeMap;

use herald_core::broker::Message;
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString},
};
use uuid::Uuid;

use crate::error::AdapterError;

/// `x-death` and friends, added by RabbitMQ when a message went through a delay queue.
const DEAD_LETTER_HEADERS: [&str; 5] =
    ["x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason", "x-last-death-reason"];

/// Properties carrying `message`'s id and headers, persistent.
pub(super) fn properties(message: &Message) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in &message.headers {
        headers.insert(name.as_str().into(), AMQPValue::LongString(LongString::from(value.as_str())));
    }
    BasicProperties::default()
        .with_message_id(message.id.to_string().into())
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// The message in a delivery, and whether it came back through a delay queue (a redelivery that
/// RabbitMQ does not flag as one).
pub(super) fn message(properties: &BasicProperties, payload: Vec<u8>) -> Result<(Message, bool), AdapterError> {
    let id = properties
        .message_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
        .ok_or_else(|| AdapterError::MissingId(format!("{:?}", properties.message_id())))?;
    let mut headers = BTreeMap::new();
    let mut dead_lettered = false;
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            let name = name.as_str();
            if DEAD_LETTER_HEADERS.contains(&name) || name.starts_with("x-last-death-") {
                dead_lettered |= name == "x-death";
                continue;
            }
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                // Only string headers are ours; anything else was added by someone else.
                _ => continue,
            };
            headers.insert(name.to_owned(), text);
        }
    }
    Ok((Message { id, headers, payload }, dead_lettered))
}

/// A delay rounded up to two significant digits of milliseconds (1234 ms -> 1300 ms), so that
/// back-off with jitter shares a bounded number of delay queues and never redelivers early.
pub(super) fn delay_bucket_ms(delay: std::time::Duration) -> u64 {
    let ms = u64::try_from(delay.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX).max(1);
    let mut unit = 1u64;
    while ms / unit >= 100 {
        unit = unit.saturating_mul(10);
    }
    ms.div_ceil(unit).saturating_mul(unit)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn delays_round_up_to_two_significant_digits() {
        assert_eq!(delay_bucket_ms(Duration::ZERO), 1);
        assert_eq!(delay_bucket_ms(Duration::from_millis(87)), 87);
        assert_eq!(delay_bucket_ms(Duration::from_millis(1234)), 1300);
        assert_eq!(delay_bucket_ms(Duration::from_millis(1300)), 1300);
        assert_eq!(delay_bucket_ms(Duration::from_micros(100_500)), 110);
        assert_eq!(delay_bucket_ms(Duration::from_secs(3600)), 3_600_000);
    }

    #[test]
    fn ids_and_headers_round_trip() {
        let message =
            Message::new(Uuid::now_v7(), b"x".to_vec()).with_header("traceparent", "00-ab").with_header("E", "");
        let (back, dead_lettered) = super::message(&properties(&message), b"x".to_vec()).expect("convert");
        assert_eq!(back, message);
        assert!(!dead_lettered);
    }
}
