//! The campaign suite, written once and run on every store and broker: clients and mailings over
//! real HTTP, the scheduler's `mailings` job, real senders and the mock provider on loopback, on a
//! paused clock so that start times, ends and send windows are exact.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, TimeZone as _, Utc};
use herald_core::{
    Herald, Services,
    auth::TokenIssuer,
    clock::Clock as _,
    delivery::BreakerConfig,
    identity::Identity,
    user::{Role, UserId},
};
use herald_http::HttpOptions;
use herald_workers::{
    mailings::MailingsJob,
    scheduler::{PeriodicJob as _, Scheduler, SchedulerOptions},
    sender::SenderOptions,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    app::{Reply, TestApp},
    broker_suite::TestBroker,
    delivery_suite::{Pipeline, Running},
};

mod reports;
mod timing;
pub use reports::*;
pub use timing::*;

/// The instant every test's clock starts at: 09:00 UTC, which is 12:00 in Moscow, 19:00 in
/// Vladivostok and 04:00 in New York.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 instant")
}

/// The delivery pipeline of [`Pipeline`] plus Herald's HTTP API over the same store, broker and
/// paused clock, and the `mailings` job.
#[derive(Debug)]
pub struct Campaign {
    pub pipe: Pipeline,
    pub scheduler: Scheduler,
    pub job: MailingsJob,
    herald: Arc<Herald>,
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
    _files: tempfile::TempDir,
    /// The accounts [`Campaign::token`] made.
    accounts: parking_lot::Mutex<Vec<UserId>>,
}

impl Campaign {
    pub async fn new(store: Arc<dyn herald_core::store::Store>, broker: &TestBroker, batch: u32) -> Self {
        let pipe = Pipeline::new(store, broker).await;
        let files = tempfile::tempdir().expect("temp dir");
        let herald = Arc::new(Herald::new(Services {
            store: pipe.store.clone(),
            broker: pipe.broker.clone(),
            files: Arc::new(herald_store::LocalFiles::open(files.path()).await.expect("files")),
            tokens: TokenIssuer::new(&[7; 32], chrono::Duration::days(365)).expect("issuer"),
            passwords: Default::default(),
            throttle: herald_core::throttle::Throttle::new(herald_core::throttle::ThrottleOptions::unlimited()),
            destinations: herald_core::net::Destinations::new(
                "127.0.0.0/8".parse().expect("networks"),
                Arc::new(herald_workers::net::SystemResolver::default()),
            ),
            clock: pipe.clock.clone(),
            metrics: pipe.metrics.clone(),
            max_upload: 1 << 20,
            uploads: herald_core::files::UploadsPerUser::new(4),
            report_zone: "UTC".parse::<herald_core::campaign::TimeZone>().expect("zone").0,
        }));
        let options = HttpOptions {
            body_limit: 1 << 20,
            cors_origins: Vec::new(),
            ready_timeout: Duration::from_secs(2),
            trusted_proxies: Default::default(),
            oidc: None,
            oidc_answer_limit: 1 << 20,
            egress: herald_egress::Egress::system(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        tokio::spawn(herald_http::serve(
            listener,
            herald_http::router(herald.clone(), &options, Default::default()),
            Default::default(),
            stop.clone(),
        ));
        let scheduler = Scheduler::new(
            pipe.store.clone(),
            pipe.broker.clone(),
            pipe.clock.clone(),
            pipe.metrics.clone(),
            SchedulerOptions { batch, lease: Duration::from_secs(120), ..SchedulerOptions::default() },
        );
        let job = MailingsJob::new(pipe.store.clone(), pipe.metrics.clone());
        let http = crate::http::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Self { pipe, scheduler, job, herald, base, http, stop, _files: files, accounts: Default::default() }
    }

    /// A token for a new account with `role`, valid at the paused clock's time.
    pub async fn token(&self, role: Role) -> String {
        let user_id = UserId::new();
        let account = crate::store_suite::new_user(&format!("{user_id}@example.org"), role);
        let account =
            herald_core::user::NewUser { user: herald_core::user::User { id: user_id, ..account.user }, ..account };
        self.pipe.store.create_user(&account).await.expect("create the token's account");
        self.accounts.lock().push(user_id);
        self.herald.services.tokens.issue(Identity { user_id, role }, self.pipe.clock.now()).access_token
    }

    /// Deletes the accounts [`Campaign::token`] made (another administrator must exist).
    pub async fn forget_token_accounts(&self) {
        let accounts = std::mem::take(&mut *self.accounts.lock());
        for user in accounts {
            let gone =
                herald_core::change::ChangeEvent::for_user(user, "test.gone", Value::Null, self.pipe.clock.now());
            self.pipe.store.delete_user(user, &gone, self.pipe.clock.now()).await.expect("delete a token's account");
        }
    }

    pub async fn send(&self, method: Method, path: &str, token: &str, body: Option<&Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        TestApp::reply(req.send().await.expect("request sent")).await
    }

    /// `POST /api/v1/clients/bulk` with `lines` as NDJSON.
    pub async fn bulk(&self, token: &str, lines: &str) -> Reply {
        let req = self
            .http
            .post(format!("{}/api/v1/clients/bulk", self.base))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(lines.to_owned());
        TestApp::reply(req.send().await.expect("request sent")).await
    }

    /// Creates a mailing and returns its id.
    pub async fn mailing(&self, token: &str, body: Value) -> String {
        let reply = self.send(Method::POST, "/api/v1/mailings", token, Some(&body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body["id"].as_str().expect("id").to_owned()
    }

    pub async fn stats(&self, token: &str, mailing: &str) -> Value {
        let reply = self.send(Method::GET, &format!("/api/v1/mailings/{mailing}/stats"), token, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body
    }

    /// Every message of a mailing, following cursors, `limit` per page.
    pub async fn messages(&self, token: &str, mailing: &str, query: &str, limit: u32) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/mailings/{mailing}/messages?limit={limit}{query}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let reply = self.send(Method::GET, &path, token, None).await;
            assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
            all.extend(reply.body["items"].as_array().expect("items").iter().cloned());
            match reply.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return all,
            }
        }
    }

    /// Runs the `mailings` job once at the paused clock's time.
    pub async fn run_job(&self) -> String {
        self.job.run(self.pipe.clock.now()).await.expect("mailings job")
    }

    /// Scheduler passes until one queues nothing; how many were queued in all.
    pub async fn drain(&self) -> usize {
        let mut queued = 0;
        loop {
            let pass = self.scheduler.tick().await.expect("scheduler pass");
            queued += pass.queued;
            if pass.queued == 0 {
                return queued;
            }
        }
    }

    /// Waits until the mailing has no message pending in `sending` (every queued one reported).
    pub async fn settle(&self, token: &str, mailing: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let stats = self.stats(token, mailing).await;
            if stats["messages"]["sending"] == 0 {
                return stats;
            }
            assert!(tokio::time::Instant::now() < deadline, "messages stayed sending: {stats}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn spawn_sender(&self, options: SenderOptions) -> Running {
        self.pipe.spawn(options)
    }

    pub async fn finish(self) {
        self.stop.cancel();
        self.pipe.finish().await;
    }
}

/// Clients, one per line: phone, tag and zone.
fn ndjson(clients: &[(&str, &str, &str)]) -> String {
    clients
        .iter()
        .map(|(phone, tag, tz)| format!("{}\n", json!({"phone": phone, "tag": tag, "timezone": tz})))
        .collect()
}

/// The phones the provider accepted a text for, sorted.
fn accepted_phones(pipe: &Pipeline, text: &str) -> Vec<String> {
    let mut phones: Vec<String> =
        pipe.provider.accepted_messages().into_iter().filter(|m| m.text == text).map(|m| m.phone.to_string()).collect();
    phones.sort();
    phones
}

fn counts(stats: &Value) -> BTreeMap<String, u64> {
    let messages = stats["messages"].as_object().expect("counts");
    messages.iter().map(|(k, v)| (k.clone(), v.as_u64().expect("count"))).collect()
}

/// Filters by operator code, by tag, and by both pick exactly the matching clients, and each gets
/// its text once.
pub async fn filters_pick_clients_by_code_tag_and_both(store: Arc<dyn herald_core::store::Store>, broker: &TestBroker) {
    let rig = Campaign::new(store, broker, 100).await;
    let admin = rig.token(Role::Admin).await;
    let clients = [
        ("79160000001", "vip", "Europe/Moscow"),
        ("79160000002", "new", "Europe/Moscow"),
        ("79030000003", "vip", "UTC"),
        ("79030000004", "new", "UTC"),
        ("79250000005", "vip", "Asia/Tokyo"),
    ];
    let reply = rig.bulk(&admin, &ndjson(&clients)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["created"], 5, "{:?}", reply.body);
    let end = (t0() + chrono::Duration::days(1)).to_rfc3339();
    let start = t0().to_rfc3339();
    let by_code = rig
        .mailing(
            &admin,
            json!({"start_at": start, "end_at": end, "text": "by code", "filter": {"operator_codes": ["916"]}}),
        )
        .await;
    let by_tag = rig
        .mailing(&admin, json!({"start_at": start, "end_at": end, "text": "by tag", "filter": {"tags": ["vip"]}}))
        .await;
    let by_both = rig
        .mailing(
            &admin,
            json!({"start_at": start, "end_at": end, "text": "by both", "filter": {"operator_codes": ["903", "925"], "tags": ["vip"]}}),
        )
        .await;
    let everyone = rig.mailing(&admin, json!({"start_at": start, "end_at": end, "text": "everyone"})).await;
    for (mailing, n) in [(&by_code, 2), (&by_tag, 3), (&by_both, 2), (&everyone, 5)] {
        let stats = rig.stats(&admin, mailing).await;
        assert_eq!(stats["mailing"]["status"], "running", "{stats}");
        assert_eq!(stats["messages"]["total"], n, "{stats}");
        assert_eq!(stats["messages"]["pending"], n, "{stats}");
    }

    let sender = rig.spawn_sender(Pipeline::options());
    assert_eq!(rig.drain().await, 12);
    for mailing in [&by_code, &by_tag, &by_both, &everyone] {
        let stats = rig.settle(&admin, mailing).await;
        assert_eq!(stats["messages"]["sent"], stats["messages"]["total"], "{stats}");
    }
    assert_eq!(accepted_phones(&rig.pipe, "by code"), ["79160000001", "79160000002"]);
    assert_eq!(accepted_phones(&rig.pipe, "by tag"), ["79030000003", "79160000001", "79250000005"]);
    assert_eq!(accepted_phones(&rig.pipe, "by both"), ["79030000003", "79250000005"]);
    assert_eq!(accepted_phones(&rig.pipe, "everyone").len(), 5);
    assert!(rig.pipe.provider.accepted_messages().iter().all(|m| m.times == 1), "a text was sent twice");

    // Every message names its mailing and client; drained mailings finish.
    let messages = rig.messages(&admin, &by_tag, "", 2).await;
    assert_eq!(messages.len(), 3);
    assert!(messages.iter().all(|m| m["mailing_id"] == by_tag.as_str() && m["client_id"].is_string()));
    assert!(messages.iter().all(|m| m["status"] == "sent" && m["attempts"] == 1 && m["sent_at"].is_string()));
    assert_eq!(rig.run_job().await, "0 started, 4 finished");
    assert_eq!(rig.stats(&admin, &everyone).await["mailing"]["status"], "finished");
    let metrics = rig.pipe.metrics.encode();
    assert!(metrics.contains("herald_mailings_finished_total 4"), "{metrics}");
    assert!(metrics.contains("herald_mailings_started_total 4"), "{metrics}");
    sender.stop().await;
    rig.finish().await;
}

/// Bad input gets field errors, a non-admin is refused, cancelling stops what is pending, and
/// a bulk import reports each bad line by number.
pub async fn bad_input_is_refused_and_cancelling_stops_what_is_pending(
    store: Arc<dyn herald_core::store::Store>,
    broker: &TestBroker,
) {
    let rig = Campaign::new(store, broker, 100).await;
    let admin = rig.token(Role::Admin).await;
    let user = rig.token(Role::User).await;
    let ok = json!({"phone": "79161234567", "timezone": "Europe/Moscow"});
    let reply = rig.send(Method::POST, "/api/v1/clients", &user, Some(&ok)).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let reply = rig.send(Method::GET, "/api/v1/mailings/stats", &user, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(rig.bulk(&user, &ndjson(&[("79161234567", "", "UTC")])).await.status, StatusCode::FORBIDDEN);

    for (body, field) in [
        (json!({"phone": "89161234567"}), "phone"),
        (json!({"phone": "7916123456"}), "phone"),
        (json!({"phone": "79161234567", "timezone": "Mars/Olympus"}), "timezone"),
        (json!({"phone": "79161234567", "operator_code": "91"}), "operator_code"),
        (json!({"phone": "79161234567", "extra": 1}), "extra"),
    ] {
        let reply = rig.send(Method::POST, "/api/v1/clients", &admin, Some(&body)).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
        assert!(reply.fields().contains(&field.to_owned()), "{body}: {:?}", reply.body);
    }
    // Three bad fields, three field errors in one answer: the schema's (phone, tag) and the typed
    // check's (time zone) together, so a form needs one round trip.
    let three = json!({"phone": "89161234567", "timezone": "Mars/Olympus", "tag": "x".repeat(65)});
    let reply = rig.send(Method::POST, "/api/v1/clients", &admin, Some(&three)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = reply.fields();
    fields.sort();
    assert_eq!(fields, ["phone", "tag", "timezone"], "{:?}", reply.body);
    let created = rig.send(Method::POST, "/api/v1/clients", &admin, Some(&ok)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["operator_code"], "916");
    let again = rig.send(Method::POST, "/api/v1/clients", &admin, Some(&ok)).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "conflict"));

    let start = t0().to_rfc3339();
    let end = (t0() + chrono::Duration::hours(1)).to_rfc3339();
    for (body, field) in [
        (json!({"start_at": end, "end_at": start, "text": "x"}), "end_at"),
        (json!({"start_at": start, "end_at": end, "text": ""}), "text"),
        (
            json!({"start_at": start, "end_at": end, "text": "x", "window": {"from": "25:00", "to": "21:00"}}),
            "window.from",
        ),
        (json!({"start_at": start, "end_at": end, "text": "x", "filter": {"regions": ["msk"]}}), "filter.regions"),
        (
            json!({"start_at": start, "end_at": end, "text": "x", "filter": {"operator_codes": ["9161"]}}),
            "filter.operator_codes[0]",
        ),
        (json!({"start_at": "yesterday", "end_at": end, "text": "x"}), "start_at"),
    ] {
        let reply = rig.send(Method::POST, "/api/v1/mailings", &admin, Some(&body)).await;
        assert_eq!((reply.status, reply.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"), "{body}");
        let fields = reply.fields();
        assert!(
            fields.iter().any(|f| f.starts_with(field.split('[').next().unwrap_or(field))),
            "{body}: {:?}",
            reply.body
        );
    }
    let listed = rig.send(Method::GET, "/api/v1/mailings", &admin, None).await;
    assert_eq!(listed.body["items"], json!([]), "a refused mailing was stored");

    // A bulk import stores the good lines and reports the bad ones by number.
    let lines = "{\"phone\": \"79160000001\"}\n\
                 not json\n\
                 {\"phone\": \"79160000002\", \"timezone\": \"Nowhere/City\"}\n\
                 \n\
                 {\"phone\": \"79161234567\"}\n\
                 {\"phone\": \"79160000003\", \"tag\": \"vip\"}\r\n";
    let long = format!("{{\"phone\": \"79160000004\", \"tag\": \"{}\"}}\n", "x".repeat(5000));
    let reply = rig.bulk(&admin, &format!("{lines}{long}{{\"phone\": \"79160000005\"}}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!((reply.body["created"].as_u64(), reply.body["failed"].as_u64()), (Some(3), Some(4)), "{:?}", reply.body);
    let lines: Vec<u64> =
        reply.body["errors"].as_array().expect("errors").iter().filter_map(|e| e["line"].as_u64()).collect();
    assert_eq!(lines, [2, 3, 5, 7], "{:?}", reply.body);
    assert!(reply.body["errors"][1]["message"].as_str().is_some_and(|m| m.contains("timezone")), "{:?}", reply.body);
    let wrong_type = rig.bulk(&admin, "").await;
    assert_eq!(wrong_type.body["created"], 0);
    let req =
        crate::http::client().post(format!("{}/api/v1/clients/bulk", rig.base)).bearer_auth(&admin).json(&json!([ok]));
    let reply = TestApp::reply(req.send().await.expect("sent")).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));

    // Cancelling a running mailing cancels what is pending; a finished one cannot be cancelled.
    let mailing = rig.mailing(&admin, json!({"start_at": start, "end_at": end, "text": "to cancel"})).await;
    assert_eq!(rig.stats(&admin, &mailing).await["messages"]["pending"], 4);
    let reply = rig.send(Method::DELETE, &format!("/api/v1/mailings/{mailing}"), &admin, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    let stats = rig.stats(&admin, &mailing).await;
    assert_eq!(
        (stats["mailing"]["status"].as_str(), stats["messages"]["cancelled"].as_u64()),
        (Some("cancelled"), Some(4))
    );
    assert_eq!(rig.drain().await, 0, "a cancelled message was claimed");
    let reply =
        rig.send(Method::PATCH, &format!("/api/v1/mailings/{mailing}"), &admin, Some(&json!({"text": "y"}))).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    let reply = rig.send(Method::GET, &format!("/api/v1/mailings/{}/stats", uuid::Uuid::now_v7()), &admin, None).await;
    assert_eq!((reply.status, reply.code()), (StatusCode::NOT_FOUND, "not_found"));
    rig.finish().await;
}

/// A mailing larger than its first chunk: the create call makes the first messages and returns,
/// the scheduler makes the rest chunk by chunk while the first are sent, it is not finished
/// until every client's message was made, and every client is texted exactly once.
pub async fn a_large_mailing_is_made_in_chunks_while_it_sends(
    store: Arc<dyn herald_core::store::Store>,
    broker: &TestBroker,
) {
    let rig = Campaign::new(store, broker, 500).await;
    let admin = rig.token(Role::Admin).await;
    let total = herald_core::commands::mailings::FIRST_CHUNK as usize * 2 + 500;
    let phones: Vec<String> = (0..total).map(|i| format!("7916{i:07}")).collect();
    let clients: Vec<(&str, &str, &str)> = phones.iter().map(|p| (p.as_str(), "vip", "Europe/Moscow")).collect();
    let reply = rig.bulk(&admin, &ndjson(&clients)).await;
    assert_eq!(reply.body["created"], total, "{:?}", reply.body);
    let end = (t0() + chrono::Duration::days(1)).to_rfc3339();
    let mailing = rig.mailing(&admin, json!({"start_at": t0().to_rfc3339(), "end_at": end, "text": "big"})).await;
    let stats = rig.stats(&admin, &mailing).await;
    assert_eq!(stats["messages"]["total"], herald_core::commands::mailings::FIRST_CHUNK, "the first chunk: {stats}");

    // The first chunk goes out before the rest is made.
    let sender = rig.spawn_sender(Pipeline::options());
    rig.drain().await;
    rig.settle(&admin, &mailing).await;
    assert_eq!(rig.run_job().await, "", "nothing started or finished while messages are to be made");
    let mut made = 0;
    while let Some(chunk) = rig.scheduler.materialize().await.expect("materialize") {
        made += chunk;
    }
    assert_eq!(made as usize, total - herald_core::commands::mailings::FIRST_CHUNK as usize);
    rig.drain().await;
    let stats = rig.settle(&admin, &mailing).await;
    assert_eq!(
        (stats["messages"]["total"].as_u64(), stats["messages"]["sent"].as_u64()),
        (Some(total as u64), Some(total as u64))
    );
    let texted = accepted_phones(&rig.pipe, "big");
    assert_eq!(texted.len(), total);
    assert!(rig.pipe.provider.accepted_messages().iter().all(|m| m.times == 1), "a text was sent twice");
    assert_eq!(rig.run_job().await, "0 started, 1 finished");
    sender.stop().await;
    rig.finish().await;
}
