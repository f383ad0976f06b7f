//! Herald's background work. Each worker is a thin loop around a `tick()` that does one pass and
//! reports what it did, so tests drive it one step at a time.

pub mod calendar;
pub mod channels;
pub mod collector;
pub mod email;
pub mod failures;
pub mod mailings;
pub mod net;
pub mod relay;
pub mod reports;
pub mod retention;
pub mod scheduler;
pub mod sender;
