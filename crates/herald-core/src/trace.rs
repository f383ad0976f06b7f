//! Trace context as Herald carries it: a W3C `traceparent` string in outbox rows, delivery rows,
//! delivery jobs and broker message headers, so one trace runs from a request through the relay
//! to the gateway, or through the scheduler to the sender.
//!
//! Core only reads and writes those strings. The spans themselves are `tracing` spans; the binary
//! decides whether they become OpenTelemetry spans (it installs the `tracing-opentelemetry` layer,
//! which makes the entered span the current OpenTelemetry context). Without that layer there is
//! never a current span context: [`current`] returns `None`, and [`child_of`] only parses.
//!
//! Spans that exist for traces only (a command, a store call, a relay publish) use [`TARGET`]: the
//! log output leaves that target out, so log lines keep the request or delivery span they had,
//! and without an exporter those spans are not even created.

use opentelemetry::{
    Context,
    trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState},
};

/// The `tracing` target of spans that exist for traces only.
pub const TARGET: &str = "herald::trace";

/// The W3C trace context header, on broker messages and HTTP and gRPC requests alike.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A span around one store call (`create_calendar_event`, …), for traces only.
pub fn store_span(call: &'static str) -> tracing::Span {
    tracing::info_span!(target: TARGET, "store", otel.name = call, otel.kind = "client", db.operation = call)
}

/// The `traceparent` of the current span, when spans are exported and one is entered.
pub fn current() -> Option<String> {
    let cx = Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// The `traceparent` of `span` (entered for the moment it takes to read it).
pub fn of(span: &tracing::Span) -> Option<String> {
    span.in_scope(current)
}

/// Runs `make`, which creates a span, with the remote span `traceparent` as the current context,
/// so the new span continues that trace. A missing or malformed `traceparent` starts a new one.
pub fn child_of<T>(traceparent: Option<&str>, make: impl FnOnce() -> T) -> T {
    match traceparent.and_then(parse) {
        Some(remote) => {
            let _attached = Context::current().with_remote_span_context(remote).attach();
            make()
        }
        None => make(),
    }
}

/// A W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) as a remote span context.
fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let sc = SpanContext::new(trace, span, flags, true, TraceState::default());
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_traceparent_parses_and_garbage_does_not() {
        let sc = parse(PARENT).expect("parses");
        assert_eq!(sc.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in
            ["", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "01-x-y-01", &PARENT.replace("0af7", "zzzz")]
        {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
        let zero = "00-00000000000000000000000000000000-b7ad6b7169203331-01";
        assert!(parse(zero).is_none(), "an all-zero trace id is invalid");
    }

    #[test]
    fn without_an_exporting_layer_there_is_no_current_context() {
        assert_eq!(current(), None);
        let inside = child_of(Some(PARENT), current);
        assert_eq!(inside.as_deref(), Some(PARENT), "the attached remote context is current inside");
        assert_eq!(current(), None, "and detached after");
    }
}
