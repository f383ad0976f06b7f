//! The backends a test run has, named by URLs in its environment, and what a missing one means:
//! a loud skip, or a failure under `HERALD_TEST_REQUIRE_ALL=1`.

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
