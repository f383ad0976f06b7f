//! OpenTelemetry traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set,
//! Herald's spans are exported over OTLP/HTTP (protobuf) in batches from a tokio task, through
//! the one outbound client (`herald-egress`: `https://` with the system roots and
//! `HERALD_HTTP_CA_FILE`, or `http://`). Unset, nothing is installed and the trace-only spans are
//! never created.
//!
//! The other standard `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, compression) apply as
//! the exporter reads them, and `OTEL_BSP_*` tune the batches. The resource is
//! `service.name=herald` and `herald.role=<role>`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithHttpConfig as _};
use opentelemetry_sdk::{
    Resource, runtime,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use tracing::{Level, Subscriber};
use tracing_subscriber::{Layer, filter::Targets, registry::LookupSpan};

/// The variables that turn traces on, the generic one first.
pub const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"];

/// An installed span exporter; [`Telemetry::shutdown`] flushes what is left.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// The exporter the environment asks for, or `None` when no endpoint variable is set.
    /// Must be called within a tokio runtime (the batch exporter runs as a task).
    pub fn from_env(
        env: &BTreeMap<String, String>,
        role: &str,
        client: herald_egress::reqwest::Client,
    ) -> anyhow::Result<Option<Self>> {
        if !ENDPOINT_VARS.iter().any(|var| env.get(*var).is_some_and(|v| !v.trim().is_empty())) {
            return Ok(None);
        }
        let exporter = SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .build()
            .context("configuring the OTLP span exporter")?;
        let resource = Resource::builder()
            .with_service_name("herald")
            .with_attribute(KeyValue::new("herald.role", role.to_owned()))
            .build();
        let batches = BatchSpanProcessor::builder(exporter, runtime::Tokio).build();
        let provider = SdkTracerProvider::builder().with_resource(resource).with_span_processor(batches).build();
        Ok(Some(Self { provider }))
    }

    /// The layer that turns Herald's spans (targets `herald*`, level info and above) into
    /// OpenTelemetry spans. It makes the entered span the current OpenTelemetry context, which
    /// is what [`herald_core::trace`] reads and continues.
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let tracer = self.provider.tracer("herald");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(Targets::new().with_target("herald", Level::INFO))
    }

    /// Exports every finished span, then stops the exporter.
    pub async fn shutdown(self) {
        // The provider waits for its export task synchronously: wait off the runtime's threads.
        let provider = self.provider;
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(err)) = stopped {
            tracing::warn!(error = %err, "could not flush the last spans");
        }
    }
}
