//! The gRPC transport: `herald.calendar.v1.CalendarService` (tonic) over the command registry,
//! with server reflection.
//!
//! The service never touches the store. Each method turns its proto request into the JSON input
//! of an `events.*` command, runs it through [`Herald::call`] as REST and NATS do (same access
//! rules, schema validation and errors), and turns the JSON output back into proto messages,
//! which are separate from the domain types. Errors become a `tonic::Status` once, in
//! [`GrpcError`].

use std::sync::Arc;

use herald_core::Herald;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod convert;
mod error;
pub mod pb;
mod service;

pub use error::GrpcError;
pub use service::Calendar;

/// The fully-qualified name of the calendar service.
pub const SERVICE_NAME: &str = "herald.calendar.v1.CalendarService";

/// Why the gRPC server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The embedded descriptor set was refused by the reflection service (a build defect).
    #[error("building the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the calendar service and server reflection (v1 and v1alpha) on `listener` until
/// `shutdown` is cancelled; then it stops accepting and waits for calls in flight.
pub async fn serve(listener: TcpListener, herald: Arc<Herald>, shutdown: CancellationToken) -> Result<(), ServeError> {
    let addr = listener.local_addr().map(|addr| addr.to_string()).unwrap_or_default();
    let reflection =
        || tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET);
    let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::info!(%addr, service = SERVICE_NAME, "serving gRPC");
    tonic::transport::Server::builder()
        .add_service(Calendar::new(herald).into_server())
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    tracing::info!("stopped serving gRPC");
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn the_descriptor_set_holds_the_service_and_the_well_known_types_it_imports() {
        let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("a descriptor set");
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        for file in
            ["google/protobuf/duration.proto", "google/protobuf/timestamp.proto", "herald/calendar/v1/calendar.proto"]
        {
            assert!(names.contains(&file), "{file} missing from {names:?}");
        }
        let calendar = set.file.iter().find(|f| f.package() == "herald.calendar.v1").expect("calendar file");
        let service = calendar.service.first().expect("a service");
        assert_eq!(format!("{}.{}", calendar.package(), service.name()), SERVICE_NAME);
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(
            methods,
            [
                "CreateEvent",
                "GetEvent",
                "UpdateEvent",
                "DeleteEvent",
                "ListDayEvents",
                "ListWeekEvents",
                "ListMonthEvents"
            ]
        );
        // Comments travel with it, for `grpcurl describe` and friends.
        assert!(calendar.source_code_info.as_ref().is_some_and(|info| !info.location.is_empty()));
    }
}
