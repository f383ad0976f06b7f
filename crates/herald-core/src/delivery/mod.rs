//! Delivery policy as pure logic: classifying a channel's answer, the retry schedule, the per-channel circuit
//! breaker and rate limit. No IO and no clock: the sender passes `now` in and acts on the answers.

pub mod breaker;
pub mod job;
pub mod policy;
pub mod rate;
pub mod window;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use job::{
    Channel, Claimed, DELIVERY_QUEUE, Delivery, DeliveryId, DeliveryJob, DeliveryReport, DeliveryStatus, JobBatch,
    NewDelivery,
};
pub use policy::{Attempt, Decision, FailReason, Failure, RetryPolicy, classify_http, parse_retry_after};
pub use rate::{InvalidRate, TokenBucket};
pub use window::{DailyWindow, LocalTime, SendWindow, ZonedWindow};
