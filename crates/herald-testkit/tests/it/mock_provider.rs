//! Tests of the mock SMS provider: the contract it enforces, the faults it plays, what it counts.

use std::time::{Duration, Instant};

use herald_testkit::mock_provider::{Malformed, MockProvider, OutageMode, Reply};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "t0ken";
const WAIT: Duration = Duration::from_secs(5);

fn client() -> Client {
    herald_testkit::http::builder().timeout(Duration::from_secs(5)).build().expect("a reqwest client builds")
}

/// Sends message `id` as the contract wants it.
async fn send(client: &Client, mock: &MockProvider, id: u64, text: &str) -> Response {
    client
        .post(mock.send_url(id))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": id, "phone": 4_915_112_345_678_u64, "text": text }))
        .send()
        .await
        .expect("the mock answers")
}

#[tokio::test]
async fn a_valid_request_is_accepted_and_counted() {
    let mock = MockProvider::start(TOKEN).await;
    let client = client();

    let response = send(&client, &mock, 42, "hello").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(body, json!({ "id": 42, "status": "sent" }));

    assert_eq!(mock.received(42), 1);
    assert_eq!(mock.accepted_ids(), vec![42]);
    let accepted = mock.accepted(42).expect("42 was accepted");
    assert_eq!((accepted.phone, accepted.text.as_str(), accepted.times), (4_915_112_345_678, "hello", 1));
    let stats = mock.stats();
    assert_eq!((stats.requests, stats.status(200), stats.distinct_accepted), (1, 1, 1));
    assert!(mock.base_url().starts_with("http://127.0.0.1:"));
    mock.stop().await;
}

#[tokio::test]
async fn requests_that_break_the_contract_are_refused() {
    let mock = MockProvider::start(TOKEN).await;
    let client = client();
    let url = mock.send_url(7);
    let good = json!({ "id": 7, "phone": 33_612_345_678_u64, "text": "hi" });

    let no_token = client.post(&url).json(&good).send().await.expect("answered");
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let wrong_token = client.post(&url).bearer_auth("nope").json(&good).send().await.expect("answered");
    assert_eq!(wrong_token.status(), StatusCode::UNAUTHORIZED);

    let bodies = [
        json!({ "id": 7, "phone": 33_612_345_678_u64 }),
        json!({ "id": "7", "phone": 33_612_345_678_u64, "text": "hi" }),
        json!({ "id": 7, "phone": "+33612345678", "text": "hi" }),
        json!({ "id": 7, "phone": 33_612_345_678_u64, "text": "hi", "extra": true }),
        json!({ "id": 8, "phone": 33_612_345_678_u64, "text": "hi" }),
    ];
    for body in &bodies {
        let response = client.post(&url).bearer_auth(TOKEN).json(body).send().await.expect("answered");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let not_json = client
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"id\": 7,")
        .send()
        .await
        .expect("answered");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let bad_path = client.post(format!("{}/v1/send/abc", mock.base_url())).bearer_auth(TOKEN).json(&good).send();
    assert_eq!(bad_path.await.expect("answered").status(), StatusCode::BAD_REQUEST);

    assert!(mock.accepted_ids().is_empty());
    assert_eq!(mock.received(7), 8, "every request naming id 7 in its path is counted");
    let stats = mock.stats();
    assert_eq!((stats.requests, stats.status(401), stats.status(400)), (9, 2, 7));

    // Still healthy afterwards.
    assert_eq!(send(&client, &mock, 7, "hi").await.status(), StatusCode::OK);
    mock.stop().await;
}

#[tokio::test]
async fn the_failure_rate_is_honoured_and_reproducible() {
    let mock = MockProvider::start(TOKEN).await;
    let client = client();
    mock.set_seed(7);
    mock.set_failure_rate(0.2);

    let mut first_run = Vec::new();
    for id in 0..1000 {
        first_run.push(send(&client, &mock, id, "x").await.status());
    }
    let failed = first_run.iter().filter(|s| **s == StatusCode::INTERNAL_SERVER_ERROR).count();
    assert!((150..=250).contains(&failed), "{failed} of 1000 failed at a rate of 0.2");
    assert_eq!(first_run.len() - failed, mock.accepted_ids().len());

    mock.set_seed(7);
    let mut second_run = Vec::new();
    for id in 0..200 {
        second_run.push(send(&client, &mock, id, "x").await.status());
    }
    assert_eq!(second_run, first_run[..200], "the same seed gives the same faults");
    mock.stop().await;
}

#[tokio::test]
async fn an_outage_answers_503_then_recovers() {
    let mock = MockProvider::start(TOKEN).await;
    let client = client();

    mock.outage(true);
    assert_eq!(send(&client, &mock, 1, "a").await.status(), StatusCode::SERVICE_UNAVAILABLE);
    mock.outage(false);
    assert_eq!(send(&client, &mock, 1, "a").await.status(), StatusCode::OK);

    mock.outage_for(Duration::from_millis(150));
    assert!(mock.in_outage());
    assert_eq!(send(&client, &mock, 2, "b").await.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The window ends by itself: waiting it out is the point of this step.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!mock.in_outage());
    assert_eq!(send(&client, &mock, 2, "b").await.status(), StatusCode::OK);

    assert_eq!((mock.received(1), mock.received(2)), (2, 2));
    assert_eq!(mock.stats().status(503), 2);
    mock.stop().await;
}

#[tokio::test]
async fn an_outage_can_close_or_hang_instead() {
    let mock = MockProvider::start(TOKEN).await;
    let client = client();

    mock.set_outage_mode(OutageMode::Close);
    mock.outage(true);
    let closed = client.post(mock.send_url(1)).bearer_auth(TOKEN).json(&json!({ "id": 1, "phone": 1, "text": "a" }));
    assert!(closed.send().await.is_err(), "the connection is closed without an answer");
    assert_eq!(mock.stats().closed, 1);

    mock.set_outage_mode(OutageMode::Hang(Duration::from_secs(30)));
    let impatient =
        herald_testkit::http::builder().timeout(Duration::from_millis(200)).build().expect("a client builds");
    let hung = impatient.post(mock.send_url(2)).bearer_auth(TOKEN).json(&json!({ "id": 2, "phone": 1, "text": "b" }));
    let error = hung.send().await.expect_err("the request hangs past the client's timeout");
    assert!(error.is_timeout(), "{error}");

    mock.outage(false);
    assert_eq!(send(&client, &mock, 3, "c").await.status(), StatusCode::OK);
    assert_eq!(mock.accepted_ids(), vec![3]);

    // Stopping cuts a hang short instead of waiting it out.
    mock.outage(true);
    let pending = tokio::spawn({
        let request =
            client.post(mock.send_url(4)).bearer_auth(TOKEN).json(&json!({ "id": 4, "phone": 1, "text": "d" }));
        async move { request.send().await.map(|r| r.status()) }
    });
    mock.wait_requests(4, WAIT).await.expect("the hanging request arrives");
    let started = Instant::now();
    mock.stop().await;
    assert!(started.elapsed() < Duration::from_secs(2), "stop took {:?}", started.elapsed());
    let answer = pending.await.expect("the client task ends");
    assert!(answer.is_err() || answer.is_ok_and(|s| s == StatusCode::SERVICE_UNAVAILABLE));
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let mock = MockProvider::start(TOKEN).await;
    let client = client();

    mock.throttle_next(2, 7);
    for _ in 0..2 {
        let response = send(&client, &mock, 1, "a").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "7");
    }
    assert_eq!(send(&client, &mock, 1, "a").await.status(), StatusCode::OK);

    mock.set_throttle_rate(1.0, 3);
    let response = send(&client, &mock, 2, "b").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3");
    mock.heal();
    assert_eq!(send(&client, &mock, 2, "b").await.status(), StatusCode::OK);

    assert_eq!(mock.received(1), 3);
    assert_eq!(mock.accepted(1).expect("1 was accepted").times, 1);
    assert_eq!(mock.stats().status(429), 3);
    mock.stop().await;
}

#[tokio::test]
async fn malformed_and_scripted_answers() {
    let mock = MockProvider::start(TOKEN).await;
    let client = client();

    mock.set_malformed_rate(1.0, Malformed::NotJson);
    let response = send(&client, &mock, 1, "a").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.expect("a body");
    assert!(serde_json::from_slice::<Value>(&body).is_err(), "{body:?} should not be JSON");

    mock.set_malformed_rate(1.0, Malformed::Truncated);
    let response = send(&client, &mock, 2, "b").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.bytes().await.expect("a body");
    assert!(serde_json::from_slice::<Value>(&body).is_err(), "{body:?} should be cut short");

    mock.set_malformed_rate(1.0, Malformed::Teapot);
    assert_eq!(send(&client, &mock, 3, "c").await.status(), StatusCode::IM_A_TEAPOT);
    mock.heal();

    mock.then_answer(202, "queued, maybe", &[("x-mock", "scripted"), ("content-type", "text/plain")]);
    mock.then(Reply::Malformed(Malformed::Teapot));
    let response = send(&client, &mock, 4, "d").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["x-mock"], "scripted");
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.text().await.expect("a body"), "queued, maybe");
    assert_eq!(send(&client, &mock, 4, "d").await.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(send(&client, &mock, 4, "d").await.status(), StatusCode::OK, "the script is used up");

    // A malformed 200 still means sent.
    assert_eq!(mock.accepted_ids(), vec![1, 2, 4]);
    mock.stop().await;
}

#[tokio::test]
async fn duplicates_are_counted_per_id() {
    let mock = MockProvider::start(TOKEN).await;
    let client = client();

    for _ in 0..3 {
        assert_eq!(send(&client, &mock, 5, "same").await.status(), StatusCode::OK);
    }
    send(&client, &mock, 6, "once").await;
    send(&client, &mock, 6, "not the same text").await;

    assert_eq!((mock.received(5), mock.received(6), mock.received(7)), (3, 2, 0));
    assert_eq!(mock.accepted_ids(), vec![5, 6]);
    assert_eq!(mock.accepted(5).expect("5 was accepted").times, 3);
    let six = mock.accepted(6).expect("6 was accepted");
    assert_eq!((six.text.as_str(), six.times), ("once", 2));
    let stats = mock.stats();
    assert_eq!((stats.accepted, stats.distinct_accepted, stats.distinct_received), (5, 2, 2));
    assert_eq!(stats.inconsistent_retries, 1);
    assert_eq!(mock.accepted_messages().len(), 2);

    mock.reset_counts();
    assert_eq!(mock.stats(), Default::default());
    mock.stop().await;
}

#[tokio::test]
async fn waiting_until_n_ids_are_accepted() {
    let mock = MockProvider::start(TOKEN).await;
    mock.set_latency(Duration::from_millis(20), Duration::from_millis(30));
    mock.set_failure_rate(0.3);
    let client = client();
    let base = mock.base_url();

    // A small sender that retries until each of its 20 messages is accepted.
    let sender = tokio::spawn(async move {
        let sends = (0..20_u64).map(|id| {
            let (client, url) = (client.clone(), format!("{base}/v1/send/{id}"));
            async move {
                let body = json!({ "id": id, "phone": 1, "text": "campaign" });
                loop {
                    let sent = client.post(&url).bearer_auth(TOKEN).json(&body).send().await;
                    if sent.is_ok_and(|r| r.status() == StatusCode::OK) {
                        break;
                    }
                }
            }
        });
        futures::future::join_all(sends).await;
    });

    let started = Instant::now();
    mock.wait_accepted(20, WAIT).await.expect("20 messages are accepted");
    assert!(started.elapsed() >= Duration::from_millis(20), "the latency is played");
    assert_eq!(mock.accepted_ids(), (0..20).collect::<Vec<_>>());
    sender.await.expect("the sender ends");

    let timeout = mock.wait_accepted(21, Duration::from_millis(50)).await.expect_err("there is no 21st");
    assert_eq!((timeout.wanted, timeout.reached), (21, 20));
    mock.stop().await;
}

#[tokio::test]
async fn a_stopped_mock_refuses_connections() {
    let mock = MockProvider::start(TOKEN).await;
    let url = mock.send_url(1);
    mock.stop().await;
    let refused = client().post(url).bearer_auth(TOKEN).json(&json!({ "id": 1, "phone": 1, "text": "a" })).send();
    assert!(refused.await.is_err());
}
