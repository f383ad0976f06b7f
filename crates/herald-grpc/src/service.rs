//! `CalendarService`: each method authenticates the caller from the `authorization` metadata and
//! runs one `events.*` command through the registry, in a server span that continues the caller's
//! trace when the metadata carries a W3C `traceparent`.

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures::FutureExt as _;
use herald_core::{
    Herald,
    calendar::Period,
    error::{ApiError, ErrorCode},
    trace,
    trace::TRACEPARENT_HEADER,
};
use serde_json::Value;
use tokio::time::Instant;
use tonic::{Request, Response, Status, metadata::MetadataMap};
use tracing::Instrument as _;

use crate::{
    convert,
    error::{GrpcError, grpc_code},
    pb::{self, calendar_service_server::CalendarServiceServer},
};

/// The calendar service over the command registry of one [`Herald`].
#[derive(Debug, Clone)]
pub struct Calendar {
    herald: Arc<Herald>,
}

impl Calendar {
    pub fn new(herald: Arc<Herald>) -> Self {
        Self { herald }
    }

    /// The service ready to add to a tonic server.
    pub fn into_server(self) -> CalendarServiceServer<Self> {
        CalendarServiceServer::new(self)
    }

    /// Runs `command` for the caller `metadata` names, and logs one line about the call.
    async fn run(
        &self,
        method: &'static str,
        metadata: &MetadataMap,
        command: &str,
        input: Value,
    ) -> Result<Value, Status> {
        let started = Instant::now();
        let parent = metadata.get(TRACEPARENT_HEADER).and_then(|v| v.to_str().ok());
        let span = trace::child_of(parent, || {
            tracing::info_span!(
                "grpc",
                otel.name = format!("herald.calendar.v1.CalendarService/{method}"),
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.method = method,
            )
        });
        let result = self.call(metadata, command, input).instrument(span.clone()).await;
        let _entered = span.enter();
        let latency_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::info!(method, latency_ms, "gRPC call answered"),
            Err(err) if err.is_server_error() => {
                let grpc = grpc_code(err);
                tracing::error!(method, ?grpc, latency_ms, error = %err.cause_chain(), "gRPC call failed");
            }
            Err(err) => {
                let grpc = grpc_code(err);
                tracing::info!(method, ?grpc, code = %err.code(), latency_ms, "gRPC call refused");
            }
        }
        result.map_err(|err| GrpcError(err).into())
    }

    async fn call(&self, metadata: &MetadataMap, command: &str, input: Value) -> Result<Value, ApiError> {
        // The caller first, as REST does: a bad token is refused before the input is looked at.
        let cx = self.herald.authenticate(metadata.get("authorization").map(|v| v.as_bytes())).await?;
        AssertUnwindSafe(self.herald.call(cx, command, input))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ApiError::new(ErrorCode::Internal, "the command panicked")))
    }

    async fn list(
        &self,
        method: &'static str,
        period: Period,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (metadata, _, req) = req.into_parts();
        let output = self.run(method, &metadata, "events.list", convert::list_input(period, req)).await?;
        answer(convert::list_output(output))
    }
}

/// A converted output as a response, or the conversion's (internal) error as a status.
fn answer<T>(converted: Result<T, ApiError>) -> Result<Response<T>, Status> {
    match converted {
        Ok(message) => Ok(Response::new(message)),
        Err(err) => {
            tracing::error!(error = %err.cause_chain(), "gRPC output conversion failed");
            Err(GrpcError(err).into())
        }
    }
}

#[tonic::async_trait]
impl pb::calendar_service_server::CalendarService for Calendar {
    async fn create_event(&self, req: Request<pb::CreateEventRequest>) -> Result<Response<pb::Event>, Status> {
        let (metadata, _, req) = req.into_parts();
        let output = self.run("CreateEvent", &metadata, "events.create", convert::create_input(req)).await?;
        answer(convert::event_output(output))
    }

    async fn get_event(&self, req: Request<pb::GetEventRequest>) -> Result<Response<pb::Event>, Status> {
        let (metadata, _, req) = req.into_parts();
        let output = self.run("GetEvent", &metadata, "events.get", convert::id_input(req.id)).await?;
        answer(convert::event_output(output))
    }

    async fn update_event(&self, req: Request<pb::UpdateEventRequest>) -> Result<Response<pb::Event>, Status> {
        let (metadata, _, req) = req.into_parts();
        let output = self.run("UpdateEvent", &metadata, "events.update", convert::update_input(req)).await?;
        answer(convert::event_output(output))
    }

    async fn delete_event(
        &self,
        req: Request<pb::DeleteEventRequest>,
    ) -> Result<Response<pb::DeleteEventResponse>, Status> {
        let (metadata, _, req) = req.into_parts();
        self.run("DeleteEvent", &metadata, "events.delete", convert::id_input(req.id)).await?;
        Ok(Response::new(pb::DeleteEventResponse {}))
    }

    async fn list_day_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.list("ListDayEvents", Period::Day, req).await
    }

    async fn list_week_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.list("ListWeekEvents", Period::Week, req).await
    }

    async fn list_month_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.list("ListMonthEvents", Period::Month, req).await
    }
}
