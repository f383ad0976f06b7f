//! Seal and open: a round trip, and every covered field changed on its own is refused.

use super::*;

const SUBJECT: &str = "herald.fwd.users.me";
const INBOX: &str = "_INBOX.abc";
const AT: i64 = 1_790_000_000_000;

fn key() -> ForwardKey {
    ForwardKey::derive(b"a deployment key of at least thirty-two bytes").expect("long enough")
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Authorization", "Bearer eyJ.secret.token");
    headers.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    headers.append("Herald-Input", r#"{"a":1}"#);
    headers
}

fn sealed(key: &ForwardKey, id: RequestId) -> Bytes {
    key.seal(Way::Request, SUBJECT, INBOX, id, AT, &headers(), br#"{"email":"ada@example.org","password":"pw"}"#)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_sealed_request_opens_whole_and_shows_nothing() {
    let key = key();
    let id = key.request_id();
    let envelope = sealed(&key, id);
    for secret in [&b"eyJ.secret"[..], b"ada@example.org", b"password", b"Authorization", b"traceparent"] {
        assert!(!contains(&envelope, secret), "{} readable", String::from_utf8_lossy(secret));
    }
    let opened = key.open(Way::Request, SUBJECT, INBOX, &envelope).expect("opens");
    assert_eq!((opened.id, opened.timestamp_ms), (id, AT));
    assert_eq!(opened.payload, &br#"{"email":"ada@example.org","password":"pw"}"#[..]);
    let header = |name: &str| opened.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("Authorization").as_deref(), Some("Bearer eyJ.secret.token"));
    assert_eq!(header("Herald-Input").as_deref(), Some(r#"{"a":1}"#));
    assert!(header("traceparent").is_some());
    assert_ne!(key.request_id(), id, "ids are random");
    assert_ne!(sealed(&key, id), envelope, "nonces are random");
}

#[test]
fn every_covered_field_changed_is_refused() {
    let key = key();
    let id = key.request_id();
    let envelope = sealed(&key, id);
    let open = |way, subject: &str, reply: &str, bytes: &[u8]| key.open(way, subject, reply, bytes).map(drop);
    assert_eq!(open(Way::Request, SUBJECT, INBOX, &envelope), Ok(()));
    assert_eq!(open(Way::Request, "herald.fwd.users.list", INBOX, &envelope), Err(Unopenable), "subject");
    assert_eq!(open(Way::Request, SUBJECT, "_INBOX.other", &envelope), Err(Unopenable), "reply subject");
    assert_eq!(open(Way::Reply, SUBJECT, INBOX, &envelope), Err(Unopenable), "a request as a reply");
    // Each byte of the id, the timestamp, the nonce, the sealed headers, the payload and the tag.
    let flipped = |at: usize| {
        let mut bytes = envelope.to_vec();
        bytes[at] ^= 0x01;
        bytes
    };
    let id_at = 1;
    let timestamp_at = 17 + 7;
    let nonce_at = 25;
    let header_at = HEAD + 10;
    let payload_at = envelope.len() - 16 - 5;
    let tag_at = envelope.len() - 1;
    for (what, at) in [
        ("version", 0),
        ("id", id_at),
        ("timestamp", timestamp_at),
        ("nonce", nonce_at),
        ("header", header_at),
        ("payload", payload_at),
        ("tag", tag_at),
    ] {
        assert_eq!(open(Way::Request, SUBJECT, INBOX, &flipped(at)), Err(Unopenable), "{what} flipped");
    }
    assert_eq!(open(Way::Request, SUBJECT, INBOX, &envelope[..envelope.len() - 1]), Err(Unopenable), "cut");
    assert_eq!(open(Way::Request, SUBJECT, INBOX, &envelope[..HEAD - 1]), Err(Unopenable), "too short");
    assert_eq!(open(Way::Request, SUBJECT, INBOX, b""), Err(Unopenable), "empty");
    assert_eq!(open(Way::Request, SUBJECT, INBOX, br#"{"ok":true}"#), Err(Unopenable), "plaintext");
}

#[test]
fn another_key_opens_nothing_and_short_keys_are_refused() {
    let other = ForwardKey::derive(b"another deployment key, thirty-two bytes+").expect("long enough");
    let envelope = sealed(&key(), [7; 16]);
    assert!(other.open(Way::Request, SUBJECT, INBOX, &envelope).is_err());
    assert!(ForwardKey::derive(b"short").is_err());
    assert_eq!(format!("{:?}", key()), "ForwardKey(***)");
}

#[test]
fn a_reply_is_bound_to_its_inbox_and_request() {
    let key = key();
    let mut headers = HeaderMap::new();
    headers.insert("Herald-Status", "200");
    let reply = key.seal(Way::Reply, INBOX, "", [9; 16], AT, &headers, br#"{"ok":true}"#);
    let opened = key.open(Way::Reply, INBOX, "", &reply).expect("opens");
    assert_eq!(opened.id, [9; 16]);
    assert_eq!(opened.headers.get("Herald-Status").map(|v| v.as_str()), Some("200"));
    assert!(key.open(Way::Reply, "_INBOX.other", "", &reply).is_err(), "another inbox");
    assert!(key.open(Way::Request, INBOX, "", &reply).is_err(), "a reply as a request");
}
