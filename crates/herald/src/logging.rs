//! Logs to stderr: pretty on a terminal, one JSON object per line otherwise.

use std::io::IsTerminal as _;

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogFilter, LogFormat};

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat, filter: &LogFilter) {
    let filter = EnvFilter::try_new(&filter.0).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
    } else {
        builder.compact().init();
    }
}
