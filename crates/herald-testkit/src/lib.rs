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
pub mod delivery_suite;
pub mod files_suite;
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
pub mod ws_client;

pub use app::TestApp;
pub use backend::{Backend, TestStore};

/// Whether every backend must be present (`HERALD_TEST_REQUIRE_ALL=1`, as in CI).
pub fn require_all() -> bool {
    std::env::var("HERALD_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// The URL in `var`, or `None` after saying loudly that the test is skipped. With
/// `HERALD_TEST_REQUIRE_ALL=1` a missing URL fails the test instead.
pub fn backend_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if require_all() => panic!("{var} is not set but HERALD_TEST_REQUIRE_ALL=1: {test} cannot be skipped"),
        _ => {
            eprintln!("SKIPPED {test}: {var} is not set");
            None
        }
    }
}
