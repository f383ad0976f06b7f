//! The calendar over gRPC, against a real app on every store: a tonic client generated from the
//! same proto sees the commands' answers, codes, field errors and access rules; server
//! reflection serves the service with every type it uses, enough for a client that knows
//! nothing else (the Python one in `tests/grpc_reflection_client.py`).

use chrono::{Duration as Span, Utc};
use herald_core::{
    identity::Identity,
    user::{Role, UserId},
};
use herald_grpc::pb::{
    CreateEventRequest, DeleteEventRequest, Event, GetEventRequest, ListEventsRequest, ListEventsResponse,
    UpdateEventRequest, calendar_service_client::CalendarServiceClient,
};
use herald_testkit::{Backend, TestApp};
use prost::Message as _;
use prost_types::{Duration, FileDescriptorProto, Timestamp};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt as _;

api_tests! {
    events_are_created_read_replaced_and_deleted,
    lists_cover_a_local_day_week_and_month,
    an_overlapping_event_is_refused_as_date_busy,
    bad_input_is_refused_naming_each_field,
    calls_without_a_valid_token_are_unauthenticated,
    another_users_events_do_not_exist_for_them,
    reflection_serves_the_service_and_every_type_it_uses,
}

type Calendar = CalendarServiceClient<Channel>;

async fn calendar(app: &TestApp) -> Calendar {
    CalendarServiceClient::connect(app.grpc_url()).await.expect("connect to the gRPC server")
}

/// A channel to the app's gRPC server (the reflection clients are generated without `connect`).
async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(app.grpc_url()).expect("a URI").connect().await.expect("connect to the gRPC server")
}

/// `message` with `authorization: Bearer <token>`.
fn authed<T>(token: &str, message: T) -> Request<T> {
    with_authorization(&format!("Bearer {token}"), message)
}

fn with_authorization<T>(value: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", value.parse().expect("an ASCII header value"));
    request
}

fn at(rfc3339: &str) -> Timestamp {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339).expect("RFC 3339");
    Timestamp { seconds: at.timestamp(), nanos: 0 }
}

fn secs(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}

fn event(title: &str, starts_at: &str, minutes: i64) -> CreateEventRequest {
    CreateEventRequest {
        title: title.into(),
        starts_at: Some(at(starts_at)),
        duration: Some(secs(minutes * 60)),
        ..Default::default()
    }
}

async fn create(grpc: &mut Calendar, token: &str, request: CreateEventRequest) -> Event {
    let title = request.title.clone();
    grpc.create_event(authed(token, request)).await.unwrap_or_else(|s| panic!("create {title}: {s:?}")).into_inner()
}

/// A refusal as `(gRPC code, Herald code, sorted BadRequest field names)`.
fn refusal(status: &Status) -> (Code, String, Vec<String>) {
    let details = status.get_error_details();
    let reason = details.error_info().map(|info| info.reason.clone()).unwrap_or_default();
    let mut fields: Vec<String> = details
        .bad_request()
        .map(|bad| bad.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    fields.sort();
    (status.code(), reason, fields)
}

fn refused(code: Code, reason: &str) -> (Code, String, Vec<String>) {
    (code, reason.to_owned(), Vec::new())
}

fn invalid(fields: &[&str]) -> (Code, String, Vec<String>) {
    (Code::InvalidArgument, "validation_failed".to_owned(), fields.iter().map(|f| (*f).to_owned()).collect())
}

fn titles(list: &ListEventsResponse) -> Vec<&str> {
    list.events.iter().map(|e| e.title.as_str()).collect()
}

async fn events_are_created_read_replaced_and_deleted(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let mut grpc = calendar(app).await;
    let request = CreateEventRequest {
        description: "daily".into(),
        remind_before: Some(secs(300)),
        ..event("Standup", "2031-03-10T09:00:00Z", 15)
    };
    let created = create(&mut grpc, &token, request).await;
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{created:?}");
    assert_eq!(created.title, "Standup");
    assert_eq!(created.description, "daily");
    assert_eq!(created.starts_at, Some(at("2031-03-10T09:00:00Z")));
    assert_eq!(created.duration, Some(secs(900)));
    assert_eq!(created.ends_at, Some(at("2031-03-10T09:15:00Z")));
    assert_eq!(created.remind_before, Some(secs(300)));
    assert!(created.created_at.is_some() && created.updated_at.is_some(), "{created:?}");

    let id = created.id.clone();
    let got = grpc.get_event(authed(&token, GetEventRequest { id: id.clone() })).await.expect("get").into_inner();
    assert_eq!(got, created);

    // A full replace: the description and reminder left out are cleared.
    let replace = UpdateEventRequest {
        id: id.clone(),
        title: "Standup, later".into(),
        description: String::new(),
        starts_at: Some(at("2031-03-10T10:00:00Z")),
        duration: Some(secs(1800)),
        remind_before: None,
    };
    let updated = grpc.update_event(authed(&token, replace)).await.expect("update").into_inner();
    assert_eq!((updated.id.as_str(), updated.title.as_str()), (id.as_str(), "Standup, later"));
    assert_eq!((updated.description.as_str(), updated.remind_before), ("", None));
    assert_eq!(updated.ends_at, Some(at("2031-03-10T10:30:00Z")));
    assert_eq!(updated.created_at, created.created_at);
    let got = grpc.get_event(authed(&token, GetEventRequest { id: id.clone() })).await.expect("get").into_inner();
    assert_eq!(got, updated);

    grpc.delete_event(authed(&token, DeleteEventRequest { id: id.clone() })).await.expect("delete");
    let gone = grpc.get_event(authed(&token, GetEventRequest { id: id.clone() })).await.expect_err("deleted");
    assert_eq!(refusal(&gone), refused(Code::NotFound, "not_found"));
    let again = grpc.delete_event(authed(&token, DeleteEventRequest { id })).await.expect_err("deleted");
    assert_eq!(again.code(), Code::NotFound);
}

async fn lists_cover_a_local_day_week_and_month(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let mut grpc = calendar(app).await;
    // Tokyo is UTC+9 all year: its 10 March 2031 runs from 09 March 15:00Z to 10 March 15:00Z.
    for (title, starts_at) in [
        ("feb-utc-mar-tokyo", "2031-02-28T16:00:00Z"),
        ("mar-10-tokyo-morning", "2031-03-09T23:00:00Z"),
        ("mar-10-tokyo-night", "2031-03-10T14:00:00Z"),
        ("mar-11-tokyo", "2031-03-10T15:30:00Z"),
        ("mar-20", "2031-03-20T03:00:00Z"),
        ("april", "2031-04-01T02:00:00Z"),
    ] {
        create(&mut grpc, &token, event(title, starts_at, 30)).await;
    }
    let tokyo = || ListEventsRequest { date: "2031-03-10".into(), tz: Some("Asia/Tokyo".into()), ..Default::default() };
    let utc = || ListEventsRequest { date: "2031-03-10".into(), tz: None, ..Default::default() };

    let day = grpc.list_day_events(authed(&token, tokyo())).await.expect("day").into_inner();
    assert_eq!(titles(&day), ["mar-10-tokyo-morning", "mar-10-tokyo-night"]);
    assert_eq!(day.period_start, Some(at("2031-03-09T15:00:00Z")));
    assert_eq!(day.period_end, Some(at("2031-03-10T15:00:00Z")));
    let day = grpc.list_day_events(authed(&token, utc())).await.expect("day").into_inner();
    assert_eq!(titles(&day), ["mar-10-tokyo-night", "mar-11-tokyo"]);
    assert_eq!(day.period_start, Some(at("2031-03-10T00:00:00Z")));

    let week = grpc.list_week_events(authed(&token, tokyo())).await.expect("week").into_inner();
    assert_eq!(titles(&week), ["mar-10-tokyo-morning", "mar-10-tokyo-night", "mar-11-tokyo"]);

    let month = grpc.list_month_events(authed(&token, tokyo())).await.expect("month").into_inner();
    assert_eq!(
        titles(&month),
        ["feb-utc-mar-tokyo", "mar-10-tokyo-morning", "mar-10-tokyo-night", "mar-11-tokyo", "mar-20"]
    );
    assert_eq!(month.period_start, Some(at("2031-02-28T15:00:00Z")));
    assert_eq!(month.period_end, Some(at("2031-03-31T15:00:00Z")));
    let month = grpc.list_month_events(authed(&token, utc())).await.expect("month").into_inner();
    assert_eq!(titles(&month), ["mar-10-tokyo-morning", "mar-10-tokyo-night", "mar-11-tokyo", "mar-20"]);
    // Listed events are whole events.
    let first = &month.events[0];
    assert_eq!((first.starts_at, first.ends_at), (Some(at("2031-03-09T23:00:00Z")), Some(at("2031-03-09T23:30:00Z"))));
}

async fn an_overlapping_event_is_refused_as_date_busy(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let mut grpc = calendar(app).await;
    create(&mut grpc, &token, event("first", "2031-05-01T10:00:00Z", 60)).await;
    let overlap =
        grpc.create_event(authed(&token, event("overlap", "2031-05-01T10:30:00Z", 60))).await.expect_err("busy");
    assert_eq!(refusal(&overlap), refused(Code::AlreadyExists, "date_busy"));
    // Events occupy [start, end): the next one may start where the first ends.
    let next = create(&mut grpc, &token, event("next", "2031-05-01T11:00:00Z", 30)).await;
    let onto_first = UpdateEventRequest {
        id: next.id,
        title: "next".into(),
        starts_at: Some(at("2031-05-01T09:30:00Z")),
        duration: Some(secs(3600)),
        ..Default::default()
    };
    let busy = grpc.update_event(authed(&token, onto_first)).await.expect_err("busy");
    assert_eq!(refusal(&busy), refused(Code::AlreadyExists, "date_busy"));
}

async fn bad_input_is_refused_naming_each_field(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let mut grpc = calendar(app).await;
    let fine = || event("fine", "2031-06-01T10:00:00Z", 30);
    let cases: Vec<(&str, CreateEventRequest, &[&str])> = vec![
        ("negative duration", CreateEventRequest { duration: Some(secs(-60)), ..fine() }, &["duration"]),
        ("zero duration", CreateEventRequest { duration: Some(secs(0)), ..fine() }, &["duration"]),
        (
            "fractional duration",
            CreateEventRequest { duration: Some(Duration { seconds: 1, nanos: 500_000_000 }), ..fine() },
            &["duration"],
        ),
        ("no duration", CreateEventRequest { duration: None, ..fine() }, &["duration"]),
        ("no start", CreateEventRequest { starts_at: None, ..fine() }, &["starts_at"]),
        (
            "invalid start",
            CreateEventRequest { starts_at: Some(Timestamp { seconds: 0, nanos: -1 }), ..fine() },
            &["starts_at"],
        ),
        ("negative reminder", CreateEventRequest { remind_before: Some(secs(-1)), ..fine() }, &["remind_before"]),
        ("long title", CreateEventRequest { title: "x".repeat(201), ..fine() }, &["title"]),
        ("empty title", CreateEventRequest { title: String::new(), ..fine() }, &["title"]),
        (
            "several at once",
            CreateEventRequest { title: "x".repeat(201), duration: Some(secs(-60)), ..fine() },
            &["duration", "title"],
        ),
    ];
    for (case, request, fields) in cases {
        let status = grpc.create_event(authed(&token, request)).await.expect_err(case);
        assert_eq!(refusal(&status), invalid(fields), "{case}: {status:?}");
    }
    // A title of exactly 200 characters is fine.
    create(&mut grpc, &token, CreateEventRequest { title: "x".repeat(200), ..fine() }).await;

    let mars =
        ListEventsRequest { date: "2031-06-01".into(), tz: Some("Mars/Olympus_Mons".into()), ..Default::default() };
    let status = grpc.list_day_events(authed(&token, mars)).await.expect_err("unknown zone");
    assert_eq!(refusal(&status), invalid(&["tz"]), "{status:?}");
    let no_such_day = ListEventsRequest { date: "2031-02-30".into(), tz: None, ..Default::default() };
    let status = grpc.list_week_events(authed(&token, no_such_day)).await.expect_err("bad date");
    assert_eq!(refusal(&status), invalid(&["date"]), "{status:?}");
    // Nothing refused was stored.
    let june = ListEventsRequest { date: "2031-06-01".into(), tz: None, ..Default::default() };
    let month = grpc.list_month_events(authed(&token, june)).await.expect("month").into_inner();
    assert_eq!(month.events.len(), 1, "{month:?}");
}

async fn calls_without_a_valid_token_are_unauthenticated(app: &TestApp) {
    let token = app.user("ada@example.org").await;
    let me = app.get("/api/v1/me", Some(&token)).await;
    let user_id = UserId(me.body["id"].as_str().expect("id").parse().expect("uuid"));
    let mut grpc = calendar(app).await;
    let request = || event("secret meeting", "2031-07-01T10:00:00Z", 30);

    let anonymous = grpc.create_event(Request::new(request())).await.expect_err("no token");
    assert_eq!(refusal(&anonymous), refused(Code::Unauthenticated, "unauthorized"));
    let anonymous = grpc.list_day_events(Request::new(ListEventsRequest::default())).await.expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let expired = app.token_at(Identity { user_id, role: Role::User }, Utc::now() - Span::hours(2));
    let status = grpc.create_event(authed(&expired, request())).await.expect_err("expired");
    assert_eq!(refusal(&status), refused(Code::Unauthenticated, "token_expired"));

    // Same claims, another key: a forgery.
    let forger = herald_core::auth::TokenIssuer::new(&[1u8; 32], Span::hours(1)).expect("issuer");
    let forged = forger.issue(Identity { user_id, role: Role::User }, Utc::now()).access_token;
    for bad in [forged.as_str(), "not.a.token", &format!("{token}x")] {
        let status = grpc.create_event(authed(bad, request())).await.expect_err("forged");
        assert_eq!(refusal(&status), refused(Code::Unauthenticated, "invalid_token"), "{bad:?}");
    }
    for header in ["Basic YTpi", "Bearer", &token] {
        let status = grpc.create_event(with_authorization(header, request())).await.expect_err("malformed");
        assert_eq!(refusal(&status), refused(Code::Unauthenticated, "invalid_token"), "{header:?}");
    }
    // The token is judged before the input: a bad token with bad input is still UNAUTHENTICATED.
    let bad_input = CreateEventRequest { duration: Some(secs(-1)), ..request() };
    let status = grpc.create_event(authed(&forged, bad_input)).await.expect_err("forged");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Nothing was created by the refused calls.
    let day = ListEventsRequest { date: "2031-07-01".into(), tz: None, ..Default::default() };
    let list = grpc.list_day_events(authed(&token, day)).await.expect("list").into_inner();
    assert!(list.events.is_empty(), "{list:?}");
}

async fn another_users_events_do_not_exist_for_them(app: &TestApp) {
    let ada = app.user("ada@example.org").await;
    let bob = app.user("bob@example.org").await;
    let mut grpc = calendar(app).await;
    let adas = create(&mut grpc, &ada, event("ada's", "2031-08-01T10:00:00Z", 60)).await;

    let status = grpc.get_event(authed(&bob, GetEventRequest { id: adas.id.clone() })).await.expect_err("hidden");
    assert_eq!(refusal(&status), refused(Code::NotFound, "not_found"));
    let takeover = UpdateEventRequest { id: adas.id.clone(), ..Default::default() };
    let takeover = UpdateEventRequest {
        title: "bob's now".into(),
        starts_at: adas.starts_at,
        duration: adas.duration,
        ..takeover
    };
    let status = grpc.update_event(authed(&bob, takeover)).await.expect_err("hidden");
    assert_eq!(status.code(), Code::NotFound);
    let status = grpc.delete_event(authed(&bob, DeleteEventRequest { id: adas.id.clone() })).await.expect_err("hidden");
    assert_eq!(status.code(), Code::NotFound);

    // Overlap is per owner: Bob may book the same hour.
    create(&mut grpc, &bob, event("bob's", "2031-08-01T10:30:00Z", 60)).await;
    let day = || ListEventsRequest { date: "2031-08-01".into(), tz: None, ..Default::default() };
    let bobs_day = grpc.list_day_events(authed(&bob, day())).await.expect("list").into_inner();
    assert_eq!(titles(&bobs_day), ["bob's"]);
    let adas_day = grpc.list_day_events(authed(&ada, day())).await.expect("list").into_inner();
    assert_eq!(titles(&adas_day), ["ada's"]);
    let still = grpc.get_event(authed(&ada, GetEventRequest { id: adas.id.clone() })).await.expect("get").into_inner();
    assert_eq!(still, adas);
}

async fn reflection_serves_the_service_and_every_type_it_uses(app: &TestApp) {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel(app).await);
    let ask = |request: MessageRequest| ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(herald_grpc::SERVICE_NAME.into())),
        ask(MessageRequest::FileContainingSymbol("herald.calendar.v1.ListEventsResponse".into())),
        ask(MessageRequest::FileByFilename("google/protobuf/timestamp.proto".into())),
        ask(MessageRequest::FileByFilename("google/protobuf/duration.proto".into())),
    ];
    let count = requests.len();
    let mut answers =
        reflection.server_reflection_info(futures::stream::iter(requests)).await.expect("reflect").into_inner();
    let mut responses = Vec::new();
    while let Some(answer) = answers.message().await.expect("a reflection answer") {
        responses.push(answer.message_response.expect("an answer"));
        if responses.len() == count {
            break;
        }
    }
    let files = |response: &MessageResponse| -> Vec<FileDescriptorProto> {
        let MessageResponse::FileDescriptorResponse(found) = response else { panic!("not files: {response:?}") };
        found
            .file_descriptor_proto
            .iter()
            .map(|raw| FileDescriptorProto::decode(raw.as_slice()).expect("a file"))
            .collect()
    };
    let MessageResponse::ListServicesResponse(listed) = &responses[0] else { panic!("{:?}", responses[0]) };
    let services: Vec<&str> = listed.service.iter().map(|s| s.name.as_str()).collect();
    assert!(services.contains(&herald_grpc::SERVICE_NAME), "{services:?}");
    for (i, name) in [
        (1, "herald/calendar/v1/calendar.proto"),
        (2, "herald/calendar/v1/calendar.proto"),
        (3, "google/protobuf/timestamp.proto"),
        (4, "google/protobuf/duration.proto"),
    ] {
        let names: Vec<String> = files(&responses[i]).iter().map(|f| f.name().to_owned()).collect();
        assert!(names.iter().any(|n| n == name), "answer {i}: {names:?}");
    }
    let calendar =
        files(&responses[1]).into_iter().find(|f| f.name() == "herald/calendar/v1/calendar.proto").expect("calendar");
    assert_eq!(calendar.dependency, ["google/protobuf/duration.proto", "google/protobuf/timestamp.proto"]);

    // The older protocol, which grpcio-reflection speaks, answers too.
    use tonic_reflection::pb::v1alpha as alpha;
    let mut old = alpha::server_reflection_client::ServerReflectionClient::new(channel(app).await);
    let list = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut answers = old.server_reflection_info(futures::stream::iter([list])).await.expect("reflect").into_inner();
    let answer = answers.message().await.expect("an answer").expect("one answer");
    let Some(alpha::server_reflection_response::MessageResponse::ListServicesResponse(listed)) =
        answer.message_response
    else {
        panic!("not a service list");
    };
    assert!(listed.service.iter().any(|s| s.name == herald_grpc::SERVICE_NAME), "{listed:?}");
}

/// A client that knows only reflection (Python: grpcio, grpcio-reflection, protobuf; no stubs, no
/// proto) lists a day's events. `scripts/test` makes the virtualenv and sets
/// `HERALD_TEST_PYTHON` to its interpreter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflection_only_python_client_lists_a_days_events() {
    let test = "a_reflection_only_python_client_lists_a_days_events";
    let Some(python) = herald_testkit::backend_url("HERALD_TEST_PYTHON", test) else { return };
    let app = TestApp::start(Backend::Sqlite, test).await.expect("SQLite always runs");
    let token = app.user("ada@example.org").await;
    let mut grpc = calendar(&app).await;
    let request = CreateEventRequest {
        description: "from Rust".into(),
        ..event("Reflected standup", "2031-09-01T22:30:00Z", 45)
    };
    let created = create(&mut grpc, &token, request).await;
    create(&mut grpc, &token, event("Another day", "2031-09-03T10:00:00Z", 45)).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc_reflection_client.py");
    let addr = app.grpc_addr().to_string();
    // 22:30Z on 1 September is 2 September in Tokyo.
    let output = tokio::process::Command::new(&python)
        .args([script, &addr, &token, "2031-09-02", "--tz", "Asia/Tokyo"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {python} {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python client failed: {}\n{stdout}\n{stderr}", output.status);
    let answer: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let events = answer["events"].as_array().unwrap_or_else(|| panic!("no events: {answer}"));
    assert_eq!(events.len(), 1, "{answer}");
    assert_eq!(events[0]["id"], created.id.as_str(), "{answer}");
    assert_eq!(events[0]["title"], "Reflected standup", "{answer}");
    assert_eq!(events[0]["description"], "from Rust", "{answer}");
    // The well-known types came through reflection too: protobuf's JSON form of each.
    assert_eq!(events[0]["starts_at"], "2031-09-01T22:30:00Z", "{answer}");
    assert_eq!(events[0]["duration"], "2700s", "{answer}");
    assert_eq!(answer["period_start"], "2031-09-01T15:00:00Z", "{answer}");

    // A bad token reaches the script as UNAUTHENTICATED, not as an empty day.
    let output = tokio::process::Command::new(&python)
        .args([script, &addr, "not.a.token", "2031-09-02"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the Python client");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stderr).contains("UNAUTHENTICATED"), "{output:?}");
    app.stop().await;
}
