//! The `herald` binary's library half: configuration, CLI and the wiring of roles. The test kit
//! starts the real application through [`app::start`].

pub mod accounts;
pub mod app;
pub mod backends;
pub mod cli;
pub mod config;
pub mod hosting;
pub mod logging;
pub mod secret;
pub mod telemetry;
