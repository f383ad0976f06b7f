//! Logs to stderr: pretty on a terminal, one JSON object per line otherwise; beside them, when
//! configured, the OpenTelemetry span exporter (see [`crate::telemetry`]).

use std::io::IsTerminal as _;

use tracing_subscriber::{EnvFilter, Layer as _, fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use crate::{
    config::{LogFilter, LogFormat},
    telemetry::Telemetry,
};

/// Installs the global subscriber. Call once, from `main`.
pub fn init(format: LogFormat, filter: &LogFilter, telemetry: Option<&Telemetry>) {
    let filter = EnvFilter::try_new(&filter.0).unwrap_or_else(|_| EnvFilter::new("info"));
    // Spans that exist for traces only stay out of the logs, so a log line keeps its request or
    // delivery span.
    let filter = match format!("{}=off", herald_core::trace::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let logs = fmt::layer().with_writer(std::io::stderr);
    let logs = if json {
        logs.json().flatten_event(true).with_current_span(true).with_span_list(false).with_filter(filter).boxed()
    } else {
        logs.compact().with_filter(filter).boxed()
    };
    tracing_subscriber::registry().with(logs).with(telemetry.map(Telemetry::layer)).init();
}
