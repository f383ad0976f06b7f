//! One message as bytes, the same in a stream entry, a delayed set and a pub/sub payload:
//! a version byte, the 16-byte id, the headers' JSON length (u32, big-endian), the headers as a
//! JSON object, then the payload as is.

use std::collections::BTreeMap;

use herald_core::broker::Message;
use uuid::Uuid;

use crate::error::AdapterError;

const VERSION: u8 = 1;
const FIXED: usize = 1 + 16 + 4;

/// `message` as one frame.
pub(super) fn encode(message: &Message) -> Vec<u8> {
    // A map of strings always serialises.
    let headers = serde_json::to_vec(&message.headers).unwrap_or_else(|_| b"{}".to_vec());
    let mut frame = Vec::with_capacity(FIXED + headers.len() + message.payload.len());
    frame.push(VERSION);
    frame.extend_from_slice(message.id.as_bytes());
    frame.extend_from_slice(&u32::try_from(headers.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&headers);
    frame.extend_from_slice(&message.payload);
    frame
}

/// The message in `frame`; an error for anything Herald did not write.
pub(super) fn decode(frame: &[u8]) -> Result<Message, AdapterError> {
    let bad = |why: &str| AdapterError::MissingId(format!("not a Herald frame: {why}"));
    if frame.len() < FIXED || frame[0] != VERSION {
        return Err(bad("too short or unknown version"));
    }
    let id = Uuid::from_slice(&frame[1..17]).map_err(|_| bad("id"))?;
    let mut length = [0u8; 4];
    length.copy_from_slice(&frame[17..FIXED]);
    let length = u32::from_be_bytes(length) as usize;
    let headers_end = FIXED.checked_add(length).filter(|end| *end <= frame.len()).ok_or_else(|| bad("headers"))?;
    let headers: BTreeMap<String, String> =
        serde_json::from_slice(&frame[FIXED..headers_end]).map_err(|_| bad("headers"))?;
    Ok(Message { id, headers, payload: frame[headers_end..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_anything_else() {
        let message = Message::new(Uuid::now_v7(), vec![0, 1, 2, 255])
            .with_header("traceparent", "00-abc-01")
            .with_header("empty", "");
        let frame = encode(&message);
        assert_eq!(decode(&frame).expect("decode"), message);
        let empty = Message::new(Uuid::now_v7(), Vec::new());
        assert_eq!(decode(&encode(&empty)).expect("decode"), empty);
        for bad in [&b""[..], b"x", &frame[..20], &[2u8; 40][..]] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let mut long = frame.clone();
        long[17..21].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&long).is_err(), "a header length past the end");
    }
}
