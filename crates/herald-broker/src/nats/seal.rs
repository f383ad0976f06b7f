//! The envelope of a forwarded command between Herald processes: every request and reply on the
//! `<namespace>.fwd.*` subjects, sealed with an AEAD (ChaCha20-Poly1305, ring) under a key derived
//! with HKDF-SHA256 from `HERALD_BROKER_SIGNING_KEY` (label `herald forward v1`), so the broker
//! signing key itself is never used for two things.
//!
//! An envelope is `version (1) ‖ request id (16) ‖ timestamp (8, unix ms, big-endian) ‖ nonce (12)
//! ‖ ciphertext ‖ tag (16)`. The ciphertext holds every NATS header of the message (`Authorization`,
//! `Herald-Input`, `Herald-Output`, `Herald-Status`, `traceparent`, …) and its payload; the
//! associated data binds whether it is a request or a reply, the subject it is published on, its
//! reply subject, the request id and the timestamp, each length-prefixed. A sealed message moved
//! to another subject or inbox, turned from a request into a reply, or changed in any byte does
//! not open. What stays readable on the wire: the subject (the command's name), the inbox, the
//! sizes and the times.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;
use ring::{
    aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    hkdf,
    rand::{SecureRandom as _, SystemRandom},
};

use crate::signed::{MIN_KEY_LEN, ShortSigningKey};

/// The HKDF label separating this key from every other use of the signing key.
const LABEL: &[u8] = b"herald forward v1";

/// Prefixes the associated data, so an envelope can never be mistaken for another scheme's.
const DOMAIN: &[u8] = b"herald forward v1\0";

/// The first byte of an envelope; a later scheme gets another.
const VERSION: u8 = 1;

/// The bytes an envelope adds before its ciphertext: version, request id, timestamp and nonce.
const HEAD: usize = 1 + 16 + 8 + NONCE_LEN;

/// A forwarded request's id: random, and the key of the host's replay cache.
pub type RequestId = [u8; 16];

/// Which way a sealed message goes: part of what is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Request,
    Reply,
}

/// The key every forwarding process and host of one deployment shares.
pub struct ForwardKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for ForwardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardKey(***)")
    }
}

/// What a sealed message carried, once opened.
#[derive(Debug)]
pub struct Opened {
    pub id: RequestId,
    /// When it was sealed, in unix milliseconds.
    pub timestamp_ms: i64,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// An envelope that did not open: malformed, sealed with another key, or changed in transit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a forwarded message that does not open with this deployment's key")]
pub struct Unopenable;

impl ForwardKey {
    /// Derives the forwarding key from the broker signing key (at least [`MIN_KEY_LEN`] bytes).
    pub fn derive(signing_key: &[u8]) -> Result<Self, ShortSigningKey> {
        if signing_key.len() < MIN_KEY_LEN {
            return Err(ShortSigningKey(signing_key.len()));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(signing_key);
        let okm = prk.expand(&[LABEL], &CHACHA20_POLY1305).map_err(|_| ShortSigningKey(signing_key.len()))?;
        Ok(Self { key: LessSafeKey::new(UnboundKey::from(okm)), random: SystemRandom::new() })
    }

    /// A fresh random request id.
    pub fn request_id(&self) -> RequestId {
        let mut id = [0; 16];
        self.fill(&mut id);
        id
    }

    fn fill(&self, bytes: &mut [u8]) {
        // The system's random source does not fail on the platforms Herald runs on; if it ever
        // did, continuing with predictable bytes would be worse than stopping.
        #[allow(clippy::expect_used)]
        self.random.fill(bytes).expect("the system random source failed");
    }

    /// Seals `headers` and `payload` of a message published on `subject` with reply subject
    /// `reply` (empty for a reply), for request `id`, stamped `timestamp_ms`.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &self,
        way: Way,
        subject: &str,
        reply: &str,
        id: RequestId,
        timestamp_ms: i64,
        headers: &HeaderMap,
        payload: &[u8],
    ) -> Bytes {
        let mut nonce = [0; NONCE_LEN];
        self.fill(&mut nonce);
        let mut envelope = Vec::with_capacity(HEAD + payload.len() + 256);
        envelope.push(VERSION);
        envelope.extend_from_slice(&id);
        envelope.extend_from_slice(&timestamp_ms.to_be_bytes());
        envelope.extend_from_slice(&nonce);
        let mut sealed = plaintext(headers, payload);
        let aad = associated(way, subject, reply, &id, timestamp_ms);
        // Sealing fails only for a message longer than ChaCha20 can encrypt (256 GiB).
        #[allow(clippy::expect_used)]
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed)
            .expect("a forwarded message within ChaCha20's length");
        envelope.extend_from_slice(&sealed);
        envelope.into()
    }

    /// Opens an envelope received on `subject` with reply subject `reply` (empty for a reply).
    pub fn open(&self, way: Way, subject: &str, reply: &str, envelope: &[u8]) -> Result<Opened, Unopenable> {
        if envelope.len() < HEAD || envelope[0] != VERSION {
            return Err(Unopenable);
        }
        let id: RequestId = envelope[1..17].try_into().map_err(|_| Unopenable)?;
        let timestamp_ms = i64::from_be_bytes(envelope[17..25].try_into().map_err(|_| Unopenable)?);
        let nonce = Nonce::try_assume_unique_for_key(&envelope[25..HEAD]).map_err(|_| Unopenable)?;
        let mut sealed = envelope[HEAD..].to_vec();
        let aad = associated(way, subject, reply, &id, timestamp_ms);
        let opened = self.key.open_in_place(nonce, Aad::from(aad), &mut sealed).map_err(|_| Unopenable)?;
        let (headers, payload) = decode(opened).ok_or(Unopenable)?;
        Ok(Opened { id, timestamp_ms, headers, payload })
    }
}

/// Now, in unix milliseconds, as envelopes are stamped.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn associated(way: Way, subject: &str, reply: &str, id: &RequestId, timestamp_ms: i64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DOMAIN.len() + subject.len() + reply.len() + 40);
    aad.extend_from_slice(DOMAIN);
    aad.push(match way {
        Way::Request => b'q',
        Way::Reply => b'r',
    });
    field(&mut aad, subject.as_bytes());
    field(&mut aad, reply.as_bytes());
    aad.extend_from_slice(id);
    aad.extend_from_slice(&timestamp_ms.to_be_bytes());
    aad
}

/// Every header value (names and values length-prefixed, after their count), then the payload.
fn plaintext(headers: &HeaderMap, payload: &[u8]) -> Vec<u8> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .flat_map(|(name, values)| values.iter().map(move |value| (name.as_ref(), value.as_str())))
        .collect();
    let mut out = Vec::with_capacity(payload.len() + 64 * pairs.len() + 4 + 16);
    out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
    for (name, value) in pairs {
        field(&mut out, name.as_bytes());
        field(&mut out, value.as_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn decode(mut rest: &[u8]) -> Option<(HeaderMap, Bytes)> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rest = tail;
        Some(head)
    }
    fn text<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
        let len = u32::from_be_bytes(take(rest, 4)?.try_into().ok()?) as usize;
        std::str::from_utf8(take(rest, len)?).ok()
    }
    let count = u32::from_be_bytes(take(&mut rest, 4)?.try_into().ok()?);
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name: async_nats::HeaderName = text(&mut rest)?.parse().ok()?;
        let value: async_nats::HeaderValue = text(&mut rest)?.parse().ok()?;
        headers.append(name, value);
    }
    Some((headers, Bytes::copy_from_slice(rest)))
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
