//! Forwarded commands on NATS with `HERALD_BROKER_SIGNING_KEY` set, as an attacker on the NATS
//! server sees them: two `herald api` processes (one hosting `auth` and `users`, the other the
//! rest and forwarding those), and a plain NATS client without the key that reads every subject,
//! answers forwarded requests first, replays them and sends stale ones.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::{HeaderMap, Message};
use futures::StreamExt as _;
use herald_broker::{ForwardKey, SealWay, now_ms};
use serde_json::{Value, json};

use super::{
    Served, serve_role,
    split::{nats_or_skip, wait_ready},
};

const SIGNING_KEY: &str = "the deployment's broker signing key, 32+ bytes";

/// A front process forwarding `auth` and `users` to a back process that hosts them.
struct Pair {
    _front: Served,
    _back: Served,
    front: String,
    back: String,
    namespace: String,
    _dir: tempfile::TempDir,
}

async fn pair(nats: &str, prefix: &str, extra: &[(&'static str, &'static str)]) -> Pair {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}/herald.db", dir.path().display());
    let namespace = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let common = [
        ("HERALD_BROKER_URL", nats),
        ("HERALD_BROKER_NAMESPACE", namespace.as_str()),
        ("HERALD_STORE_URL", store.as_str()),
        ("HERALD_JWT_SECRET", "a shared secret of at least thirty-two bytes"),
        ("HERALD_BROKER_SIGNING_KEY", SIGNING_KEY),
        ("HERALD_COMMAND_FORWARD_TIMEOUT", "5s"),
    ];
    let with = |groups: &'static str| {
        let mut env = common.to_vec();
        env.extend_from_slice(extra);
        env.push(("HERALD_COMMANDS", groups));
        env
    };
    let (front_proc, front, _, _) =
        serve_role("api", &dir.path().join("front"), &with("tasks,attachments,clients,mailings,events,rooms"));
    let (back_proc, back, _, _) = serve_role("api", &dir.path().join("back"), &with("auth,users"));
    wait_ready(&front).await;
    wait_ready(&back).await;
    Pair { _front: front_proc, _back: back_proc, front, back, namespace, _dir: dir }
}

/// A user of its own, registered and logged in through the front (both forwarded); her
/// credentials and access token.
async fn sign_in(http: &reqwest::Client, front: &str) -> (String, String, String) {
    let base = format!("http://{front}/api/v1");
    let email = format!("sealed-{}@example.org", uuid::Uuid::now_v7().simple());
    let password = format!("pw-{}", uuid::Uuid::now_v7().simple());
    let register = json!({"email": email, "password": password, "name": "Sealed"});
    let status = http.post(format!("{base}/auth/register")).json(&register).send().await.expect("register").status();
    assert_eq!(status, 201, "registered through the forwarder");
    let login = json!({"email": email, "password": password});
    let login = http.post(format!("{base}/auth/login")).json(&login).send().await.expect("login");
    let login: Value = login.json().await.expect("json");
    let token = login["access_token"].as_str().unwrap_or_else(|| panic!("{login}")).to_owned();
    (email, password, token)
}

/// `herald_forward_rejected_messages_total{reason}` of the process at `addr`.
async fn rejected(addr: &str, reason: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.expect("metrics").text().await.expect("text");
    let series = format!("herald_forward_rejected_messages_total{{reason=\"{reason}\"}} ");
    let line = text.lines().find_map(|l| l.strip_prefix(&series)).unwrap_or_else(|| panic!("no {series} in {text}"));
    line.trim().parse().expect("a count")
}

/// Every byte of a message a reader of the subject sees: subject, reply subject, headers, payload.
fn wire_bytes(message: &Message) -> Vec<u8> {
    let mut bytes = message.subject.as_bytes().to_vec();
    bytes.extend_from_slice(message.reply.as_ref().map_or(&b""[..], |r| r.as_bytes()));
    for (name, values) in message.headers.iter().flat_map(HeaderMap::iter) {
        bytes.extend_from_slice(AsRef::<[u8]>::as_ref(name));
        values.iter().for_each(|v| bytes.extend_from_slice(v.as_str().as_bytes()));
    }
    bytes.extend_from_slice(&message.payload);
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A forwarded login and `users.me` show a reader of every subject no email, password or token;
/// a forged reply it sends to the caller's inbox is ignored and the caller gets the host's
/// answer; the public `<ns>.cmd.*` API answers as before (in the clear, by design).
#[tokio::test]
async fn forwarded_commands_are_sealed_and_forged_replies_ignored() {
    let Some(nats) = nats_or_skip("forwarded_commands_are_sealed_and_forged_replies_ignored") else { return };
    let pair = pair(&nats, "t_seal", &[]).await;
    let attacker = async_nats::connect(&nats).await.expect("attacker connects");
    // Everything on the server, as it happens.
    let seen: Arc<Mutex<Vec<Message>>> = Arc::default();
    let mut everything = attacker.subscribe(">").await.expect("subscribe >");
    let sniffer = tokio::spawn({
        let seen = seen.clone();
        async move {
            while let Some(message) = everything.next().await {
                seen.lock().expect("lock").push(message);
            }
        }
    });
    // Answers every forwarded `users.me` at once, with a forged admin and with noise.
    let mut requests = attacker.subscribe(format!("{}.fwd.users.me", pair.namespace)).await.expect("subscribe");
    let forger = tokio::spawn({
        let attacker = attacker.clone();
        async move {
            while let Some(request) = requests.next().await {
                let Some(inbox) = request.reply else { continue };
                let forged =
                    json!({"ok": true, "output": {"id": "forged", "email": "mallory@example.org", "role": "admin"}});
                let mut headers = HeaderMap::new();
                headers.insert("Herald-Status", "200");
                let body = serde_json::to_vec(&forged).expect("json").into();
                attacker.publish_with_headers(inbox.clone(), headers, body).await.expect("forge");
                attacker.publish(inbox, request.payload).await.expect("echo the request as its reply");
                attacker.flush().await.expect("flush");
            }
        }
    });
    attacker.flush().await.expect("subscriptions in place");

    let http = crate::http();
    let (email, password, token) = sign_in(&http, &pair.front).await;
    let me = http.get(format!("http://{}/api/v1/me", pair.front)).bearer_auth(&token).send().await.expect("me");
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.expect("json");
    assert_eq!((me["email"].as_str(), me["role"].as_str()), (Some(email.as_str()), Some("user")), "{me}");
    assert!(rejected(&pair.front, "bad_reply").await >= 2, "the forged replies reached the caller and were dropped");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let captured: Vec<Message> = seen.lock().expect("lock").drain(..).collect();
    let on = |command: &str| {
        let subject = format!("{}.fwd.{command}", pair.namespace);
        captured.iter().filter(|m| m.subject.as_str() == subject).count()
    };
    assert!(on("auth.register") >= 1 && on("auth.login") >= 1 && on("users.me") >= 1, "the reader saw the calls");
    assert_eq!(on("users.me"), 1, "one forwarded users.me");
    for message in &captured {
        let bytes = wire_bytes(message);
        for secret in [email.as_str(), password.as_str(), token.as_str()] {
            assert!(!contains(&bytes, secret), "{secret} readable on {}", message.subject);
        }
    }

    // The public command API: the host answers a NATS client's request in the clear, as before.
    let mut headers = HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {token}").as_str());
    let subject = format!("{}.cmd.users.me", pair.namespace);
    let answer = attacker.request_with_headers(subject, headers, "{}".into()).await.expect("public users.me");
    let answer: Value = serde_json::from_slice(&answer.payload).expect("json");
    assert_eq!((answer["ok"].as_bool(), answer["output"]["email"].as_str()), (Some(true), Some(email.as_str())));
    sniffer.abort();
    forger.abort();
}

/// A captured forwarded request published again, to its own inbox or another, runs nothing; nor
/// does a request sealed with the key but stamped outside the replay window, either way; a fresh
/// one sealed the same way is answered.
#[tokio::test]
async fn replayed_and_stale_forwarded_requests_are_dropped() {
    let Some(nats) = nats_or_skip("replayed_and_stale_forwarded_requests_are_dropped") else { return };
    let pair = pair(&nats, "t_replay", &[]).await;
    let attacker = async_nats::connect(&nats).await.expect("attacker connects");
    let subject = format!("{}.fwd.users.me", pair.namespace);
    let mut requests = attacker.subscribe(subject.clone()).await.expect("subscribe");
    attacker.flush().await.expect("subscribed");
    let http = crate::http();
    let (email, _, token) = sign_in(&http, &pair.front).await;
    let me = http.get(format!("http://{}/api/v1/me", pair.front)).bearer_auth(&token).send().await.expect("me");
    assert_eq!(me.status(), 200);
    let captured = tokio::time::timeout(Duration::from_secs(5), requests.next()).await.expect("seen").expect("one");
    let original_inbox = captured.reply.clone().expect("a reply subject");

    let key = ForwardKey::derive(SIGNING_KEY.as_bytes()).expect("key");
    let sealed = |inbox: &str, at: i64| {
        let mut headers = HeaderMap::new();
        headers.insert("Authorization", format!("Bearer {token}").as_str());
        key.seal(SealWay::Request, &subject, inbox, key.request_id(), at, &headers, b"{}")
    };
    // A request sealed now is answered, sealed for it: the host takes what the test seals.
    let inbox = attacker.new_inbox();
    let mut answers = attacker.subscribe(inbox.clone()).await.expect("subscribe");
    attacker.publish_with_reply(subject.clone(), inbox.clone(), sealed(&inbox, now_ms())).await.expect("publish");
    let answer = tokio::time::timeout(Duration::from_secs(5), answers.next()).await.expect("answered").expect("one");
    let opened = key.open(SealWay::Reply, &inbox, "", &answer.payload).expect("a reply sealed for this request");
    let output: Value = serde_json::from_slice(&opened.payload).expect("json");
    assert_eq!(output["output"]["email"].as_str(), Some(email.as_str()), "{output}");

    // Then nothing answers on the attacker's inboxes, nor on the caller's own (it stopped listening).
    let prefix = attacker.new_inbox();
    let mut theirs = attacker.subscribe(format!("{prefix}.>")).await.expect("subscribe");
    let mut callers = attacker.subscribe(original_inbox.clone()).await.expect("subscribe");
    attacker.flush().await.expect("subscribed");
    let counts = || async {
        let back = &pair.back;
        (rejected(back, "replayed").await, rejected(back, "unopenable").await, rejected(back, "stale").await)
    };
    let before = counts().await;
    // The captured request again, as it was; and to another inbox.
    attacker.publish_with_reply(subject.clone(), original_inbox, captured.payload.clone()).await.expect("replay");
    let elsewhere = format!("{prefix}.replay");
    attacker.publish_with_reply(subject.clone(), elsewhere, captured.payload).await.expect("replay elsewhere");
    // Sealed with the key, a minute in the past and in the future (the window is 30 s).
    for (name, at) in [("past", now_ms() - 60_000), ("future", now_ms() + 60_000)] {
        let inbox = format!("{prefix}.{name}");
        attacker.publish_with_reply(subject.clone(), inbox.clone(), sealed(&inbox, at)).await.expect("stale");
    }
    attacker.flush().await.expect("sent");
    let quiet = async {
        tokio::select! {
            message = theirs.next() => panic!("answered: {:?}", message.map(|m| m.subject)),
            message = callers.next() => panic!("the replay answered: {:?}", message.map(|m| m.subject)),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    quiet.await;
    let after = counts().await;
    assert_eq!((after.0 - before.0, after.1 - before.1, after.2 - before.2), (1, 1, 2), "replayed, unopenable, stale");
}

/// The host's cache of request ids is bounded: with room for one id, a second forwarded call while
/// the first id is inside the window is refused at once with 503 (no id is forgotten early), and
/// once the first id has left the window calls go through again.
#[tokio::test]
async fn a_full_replay_cache_refuses_rather_than_forgets() {
    let Some(nats) = nats_or_skip("a_full_replay_cache_refuses_rather_than_forgets") else { return };
    let extra = [("HERALD_FORWARD_REPLAY_IDS", "1"), ("HERALD_FORWARD_REPLAY_WINDOW", "1s")];
    let pair = pair(&nats, "t_full", &extra).await;
    let http = crate::http();
    let base = format!("http://{}/api/v1", pair.front);
    let login = json!({"email": "nobody@example.org", "password": "not a password"});
    let call = || async {
        let response = http.post(format!("{base}/auth/login")).json(&login).send().await.expect("login");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("problem")["code"].as_str().map(str::to_owned))
    };
    assert_eq!(call().await, (401, Some("invalid_credentials".into())), "the first id fills the cache");
    let started = std::time::Instant::now();
    assert_eq!(call().await, (503, Some("unavailable".into())), "refused while the first id is live");
    assert!(started.elapsed() < Duration::from_secs(3), "refused at once, not after the forward timeout");
    assert_eq!(rejected(&pair.back, "replay_cache_full").await, 1);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(call().await, (401, Some("invalid_credentials".into())), "the first id left the window");
}
