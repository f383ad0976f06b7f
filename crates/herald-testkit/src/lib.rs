//! Herald's test kit: backends provisioned per test, conformance suites written once for every
//! adapter, and a spawner for the real application. The crate's `tests/it` holds the system's
//! integration tests, built as one binary.

// A test kit: a broken expectation is a failed test, and the message says which.
#![allow(clippy::expect_used)]

pub mod app;
pub mod backend;
pub mod broker_suite;
pub mod campaign_suite;
pub mod cluster;
pub mod connect_proxy;
pub mod delivery_suite;
pub mod files_suite;
pub mod h2_server;
pub mod http;
pub mod mock_provider;
pub mod node;
pub mod oidc_provider;
pub mod processes;
pub mod proxy;
pub mod realtime_suite;
pub mod redis_server;
pub mod relay_suite;
pub mod s3;
pub mod smtp;
pub mod store_suite;
pub mod test_env;
pub mod tls;
pub mod ws_client;

pub use app::TestApp;
pub use backend::{Backend, TestStore};
pub use test_env::{backend_url, require_all};
