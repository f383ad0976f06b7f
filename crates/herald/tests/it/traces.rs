//! Traces: `herald serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` set exports one trace per request
//! that runs through the relay to the gateway and through the scheduler to the sender, as an
//! in-process OTLP collector receives it; gRPC and NATS commands continue their caller's trace.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::header, response::IntoResponse, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
};
use prost::Message as _;
use serde_json::json;

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
    attributes: HashMap<String, String>,
    resource: HashMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// Accepts OTLP/HTTP protobuf trace exports on `/v1/traces` and keeps their spans.
#[derive(Debug, Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

impl Collector {
    /// Serves on a free loopback port; returns the base URL (the exporter appends `/v1/traces`).
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new().route("/v1/traces", post(export)).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Serves behind TLS on a free loopback port, with a self-signed certificate for
    /// `localhost`; returns the base URL and the certificate (PEM), for `HERALD_HTTP_CA_FILE`.
    async fn start_tls(&self) -> (String, String, herald_testkit::tls::TlsFront) {
        let plain = self.start().await;
        let upstream = plain.trim_start_matches("http://").parse().expect("the collector's address");
        let cert = herald_testkit::tls::ServerCert::self_signed(&["localhost"]);
        let front = herald_testkit::tls::TlsFront::start(upstream, &cert).await;
        (format!("https://localhost:{}", front.addr.port()), cert.pem, front)
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

async fn export(State(collector): State<Collector>, body: Bytes) -> impl IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut spans = collector.0.lock().unwrap_or_else(PoisonError::into_inner);
    for resource_spans in request.resource_spans {
        let resource = attributes(resource_spans.resource.as_ref().map(|r| &r.attributes[..]).unwrap_or_default());
        for span in resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans) {
            spans.push(Span {
                name: span.name,
                trace_id: hex::encode(span.trace_id),
                span_id: hex::encode(span.span_id),
                parent_id: hex::encode(span.parent_span_id),
                attributes: attributes(&span.attributes),
                resource: resource.clone(),
            });
        }
    }
    ([(header::CONTENT_TYPE, "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
}

/// The span named `name` whose parent is `parent`.
fn child<'a>(spans: &'a [Span], parent: &Span, name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.trace_id == parent.trace_id && s.parent_id == parent.span_id && s.name == name)
        .unwrap_or_else(|| panic!("no {name} span under {}: {spans:#?}", parent.name))
}

#[tokio::test]
async fn one_trace_runs_from_the_request_through_the_relay_and_the_sender() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("HERALD_SCHEDULER_INTERVAL", "50ms"),
        ("HERALD_RELAY_POLL_INTERVAL", "50ms"),
    ];
    let (_child, addr, lines, _) = super::serve(dir.path(), &env);
    // Keep reading the log so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));

    let client = crate::http();
    let base = format!("http://{addr}/api/v1");
    let token = super::register_ada(&client, &base).await;
    // Its reminder is due at once: the scheduler claims it, the sender publishes it, the router
    // routes it to the owner's channel, and the relay and the gateway carry that on.
    let starts_at = (chrono::Utc::now() + chrono::Duration::seconds(61)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let event = json!({"title": "Call", "starts_at": starts_at, "duration": 600, "remind_before": 60});
    let created = client.post(format!("{base}/events")).bearer_auth(&token).json(&event).send().await.expect("create");
    assert_eq!(created.status(), 201);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (spans, request) = loop {
        let spans = collector.spans();
        let request = spans.iter().find(|s| s.name == "POST /api/v1/events").cloned();
        let complete = request.as_ref().is_some_and(|r| {
            let of_trace = |name: &str| spans.iter().filter(|s| s.trace_id == r.trace_id && s.name == name).count();
            of_trace("gateway.fanout") >= 2 && of_trace("sender.deliver") >= 3
        });
        if let (true, Some(request)) = (complete, request) {
            break (spans, request);
        }
        assert!(tokio::time::Instant::now() < deadline, "the trace did not complete: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    assert_eq!(request.resource.get("service.name").map(String::as_str), Some("herald"));
    assert_eq!(request.resource.get("herald.role").map(String::as_str), Some("serve"));
    assert_eq!(
        (request.attr("http.route"), request.attr("http.response.status_code")),
        (Some("/api/v1/events"), Some("201"))
    );
    assert_eq!(request.parent_id, "", "the request starts the trace");
    let command = child(&spans, &request, "events.create");
    assert_eq!(child(&spans, command, "create_calendar_event").attr("db.operation"), Some("create_calendar_event"));
    // The event.created change: written by the command, published by the relay, fanned out.
    let publish = child(&spans, command, "relay.publish");
    assert_eq!(publish.attr("event.kind"), Some("event.created"));
    child(&spans, publish, "gateway.fanout");
    // The reminder: created by the command, sent by the sender on the queue channel.
    let reminder = child(&spans, command, "sender.deliver");
    assert_eq!(reminder.attr("kind"), Some("calendar.reminder"));
    let queued = child(&spans, reminder, "channel.call");
    assert_eq!(queued.attr("channel"), Some("queue"));
    // The notification it queued: routed to the owner, written to their channel, relayed, fanned out.
    let route = child(&spans, queued, "notification.route");
    let realtime = spans
        .iter()
        .filter(|s| s.parent_id == route.span_id && s.name == "sender.deliver")
        .map(|d| child(&spans, d, "channel.call"))
        .find(|call| call.attr("channel") == Some("realtime"))
        .expect("the realtime delivery under the router");
    let relayed = child(&spans, realtime, "relay.publish");
    assert_eq!(relayed.attr("event.kind"), Some("event.reminder"));
    child(&spans, relayed, "gateway.fanout");
}

/// Spans reach a collector over `https://` through the one outbound client, trusting the
/// operator's CA file.
#[tokio::test]
async fn spans_reach_an_https_collector_trusted_through_the_ca_file() {
    let collector = Collector::default();
    let (endpoint, certificate, _front) = collector.start_tls().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("collector-ca.pem");
    std::fs::write(&ca, certificate).expect("write the CA file");
    let ca = ca.display().to_string();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("HERALD_HTTP_CA_FILE", ca.as_str()),
    ];
    let (_child, addr, lines, _) = super::serve(dir.path(), &env);
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let client = crate::http();
    let base = format!("http://{addr}/api/v1");
    super::register_ada(&client, &base).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !collector.spans().iter().any(|s| s.name == "POST /api/v1/auth/register") {
        assert!(tokio::time::Instant::now() < deadline, "no span came over TLS: {:#?}", collector.spans());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gRPC call and a NATS command request that carry a `traceparent` are served in spans that
/// continue the caller's trace, with the command's span under them.
#[tokio::test]
async fn grpc_and_nats_commands_continue_the_callers_trace() {
    const GRPC_PARENT: (&str, &str) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    const NATS_PARENT: (&str, &str) = ("5bf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b8");
    let Ok(nats) = std::env::var("HERALD_TEST_NATS_URL") else {
        eprintln!("SKIPPED grpc_and_nats_commands_continue_the_callers_trace: HERALD_TEST_NATS_URL is not set");
        assert!(std::env::var("HERALD_TEST_REQUIRE_ALL").as_deref() != Ok("1"), "NATS is required");
        return;
    };
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let namespace = format!("t_traces_{}", uuid::Uuid::now_v7().simple());
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("HERALD_BROKER_URL", nats.as_str()),
        ("HERALD_BROKER_NAMESPACE", namespace.as_str()),
    ];
    let (_child, addr, lines, logs) = super::serve(dir.path(), &env);
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let grpc = logs.last().and_then(|l| l["grpc_addr"].as_str()).expect("grpc_addr").to_owned();
    let token = super::register_ada(&crate::http(), &format!("http://{addr}/api/v1")).await;
    let traceparent = |(trace, span): (&str, &str)| format!("00-{trace}-{span}-01");

    let mut calendar =
        herald_grpc::pb::calendar_service_client::CalendarServiceClient::connect(format!("http://{grpc}"))
            .await
            .expect("connect to gRPC");
    let mut request = tonic::Request::new(herald_grpc::pb::GetEventRequest { id: uuid::Uuid::now_v7().to_string() });
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
    metadata.insert("traceparent", traceparent(GRPC_PARENT).parse().expect("metadata"));
    let missing = calendar.get_event(request).await.expect_err("no such event");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let client = async_nats::connect(&nats).await.expect("connect to NATS");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {token}").as_str());
    headers.insert("traceparent", traceparent(NATS_PARENT).as_str());
    let subject = format!("{namespace}.cmd.users.me");
    // The command transport subscribes beside the HTTP server: ask until it answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let reply = loop {
        match client.request_with_headers(subject.clone(), headers.clone(), "".into()).await {
            Ok(reply) => break reply,
            Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
                assert!(tokio::time::Instant::now() < deadline, "the NATS command transport never answered");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("users.me over NATS: {error}"),
        }
    };
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(body["ok"], true, "{body}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (spans, served, requested) = loop {
        let spans = collector.spans();
        let under = |(trace, span): (&str, &str)| {
            spans.iter().find(|s| s.trace_id == trace && s.parent_id == span && s.span_id != span).cloned()
        };
        let (served, requested) = (under(GRPC_PARENT), under(NATS_PARENT));
        let commands_in = |parent: &Option<Span>, name: &str| {
            parent.as_ref().is_some_and(|p| spans.iter().any(|s| s.parent_id == p.span_id && s.name == name))
        };
        if commands_in(&served, "events.get") && commands_in(&requested, "users.me") {
            break (spans.clone(), served.expect("gRPC span"), requested.expect("NATS span"));
        }
        assert!(tokio::time::Instant::now() < deadline, "the callers' traces did not arrive: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(served.name, "herald.calendar.v1.CalendarService/GetEvent");
    assert_eq!((served.attr("rpc.system"), served.attr("rpc.method")), (Some("grpc"), Some("GetEvent")));
    child(&spans, &served, "events.get");
    assert_eq!(requested.name, subject);
    assert_eq!(requested.attr("messaging.system"), Some("nats"));
    child(&spans, &requested, "users.me");
}
