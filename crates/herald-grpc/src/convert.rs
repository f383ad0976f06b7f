//! Proto requests to the JSON inputs of the `events.*` commands, and their JSON outputs back to
//! proto messages.
//!
//! Inputs are converted faithfully and never judged here: the command's schema does that, so a
//! gRPC client gets the same field errors as REST. A missing timestamp or duration is left out
//! (`is required`); one no JSON value can carry (nanos out of range, a year past 9999) becomes
//! `null` (`must be of type string`/`integer`); a negative duration stays negative and a
//! fractional one stays fractional, both refused by the schema, naming the field.

use chrono::{DateTime, SecondsFormat, Utc};
use herald_core::{calendar::Period, error::ApiError};
use prost_types::{Duration, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::pb;

/// `events.create` input.
pub fn create_input(req: pb::CreateEventRequest) -> Value {
    let mut input = Map::new();
    input.insert("title".into(), req.title.into());
    event_fields(&mut input, req.description, req.starts_at, req.duration, req.remind_before);
    Value::Object(input)
}

/// `events.update` input: a full replace.
pub fn update_input(req: pb::UpdateEventRequest) -> Value {
    let mut input = Map::new();
    input.insert("id".into(), req.id.into());
    input.insert("title".into(), req.title.into());
    event_fields(&mut input, req.description, req.starts_at, req.duration, req.remind_before);
    Value::Object(input)
}

fn event_fields(
    input: &mut Map<String, Value>,
    description: String,
    starts_at: Option<Timestamp>,
    duration: Option<Duration>,
    remind_before: Option<Duration>,
) {
    // Empty is proto3's "not set", and the commands' "none".
    if !description.is_empty() {
        input.insert("description".into(), description.into());
    }
    if let Some(starts_at) = starts_at {
        input.insert("starts_at".into(), timestamp_to_json(&starts_at));
    }
    if let Some(duration) = duration {
        input.insert("duration".into(), duration_to_json(&duration));
    }
    if let Some(remind_before) = remind_before {
        input.insert("remind_before".into(), duration_to_json(&remind_before));
    }
}

/// `events.get` and `events.delete` input.
pub fn id_input(id: String) -> Value {
    json!({ "id": id })
}

/// `events.list` input for one period.
pub fn list_input(period: Period, req: pb::ListEventsRequest) -> Value {
    let mut input = Map::new();
    input.insert("period".into(), period.as_str().into());
    input.insert("date".into(), req.date.into());
    if let Some(tz) = req.tz {
        input.insert("tz".into(), tz.into());
    }
    if let Some(size) = req.page_size {
        input.insert("limit".into(), size.into());
    }
    if !req.page_token.is_empty() {
        input.insert("cursor".into(), req.page_token.into());
    }
    Value::Object(input)
}

/// RFC 3339 in UTC, or `null` for a timestamp outside 0001-01-01..=9999-12-31 or with invalid
/// nanos (no RFC 3339 string names it).
fn timestamp_to_json(ts: &Timestamp) -> Value {
    let Ok(nanos) = u32::try_from(ts.nanos) else { return Value::Null };
    match DateTime::<Utc>::from_timestamp(ts.seconds, nanos) {
        Some(at) if (1..=9999).contains(&chrono::Datelike::year(&at)) && nanos < 1_000_000_000 => {
            at.to_rfc3339_opts(SecondsFormat::AutoSi, true).into()
        }
        _ => Value::Null,
    }
}

/// Whole seconds as an integer; a fractional duration as a fractional number (which the
/// schema's `integer` refuses); `null` for an invalid one (nanos out of range or of the other
/// sign than the seconds).
fn duration_to_json(d: &Duration) -> Value {
    let sign_agrees = d.nanos == 0 || d.seconds == 0 || (d.seconds < 0) == (d.nanos < 0);
    if d.nanos.unsigned_abs() >= 1_000_000_000 || !sign_agrees {
        return Value::Null;
    }
    if d.nanos == 0 {
        return d.seconds.into();
    }
    let seconds = d.seconds as f64 + f64::from(d.nanos) / 1e9;
    // f64 can round `n + 1ns` to `n` for very long durations: keep the fraction visible.
    if seconds.fract() == 0.0 {
        return (seconds + f64::from(d.nanos.signum()) * 0.5).into();
    }
    seconds.into()
}

/// The event as the `events.*` commands answer it (`EventView`). Unknown fields are ignored, so
/// the command may grow without breaking this transport.
#[derive(Debug, Deserialize)]
struct EventView {
    id: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    starts_at: DateTime<Utc>,
    duration: i64,
    ends_at: DateTime<Utc>,
    #[serde(default)]
    remind_before: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// `events.list` output.
#[derive(Debug, Deserialize)]
struct EventList {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    items: Vec<EventView>,
    #[serde(default)]
    next_cursor: Option<String>,
}

impl From<EventView> for pb::Event {
    fn from(view: EventView) -> Self {
        Self {
            id: view.id,
            title: view.title,
            description: view.description.unwrap_or_default(),
            starts_at: Some(timestamp(view.starts_at)),
            duration: Some(seconds(view.duration)),
            ends_at: Some(timestamp(view.ends_at)),
            remind_before: view.remind_before.map(seconds),
            created_at: Some(timestamp(view.created_at)),
            updated_at: Some(timestamp(view.updated_at)),
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> Timestamp {
    // Sub-second nanos of a chrono instant are below 2e9 (leap seconds); proto wants < 1e9.
    let nanos = at.timestamp_subsec_nanos().min(999_999_999);
    Timestamp { seconds: at.timestamp(), nanos: i32::try_from(nanos).unwrap_or(999_999_999) }
}

fn seconds(seconds: i64) -> Duration {
    Duration { seconds, nanos: 0 }
}

/// An output the command promised but did not give is a server defect, not the client's.
fn decode<T: serde::de::DeserializeOwned>(output: Value, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(output)
        .map_err(|err| ApiError::internal(std::io::Error::other(format!("the {what} output does not decode: {err}"))))
}

/// An `EventView` output as a proto event.
pub fn event_output(output: Value) -> Result<pb::Event, ApiError> {
    decode::<EventView>(output, "event").map(pb::Event::from)
}

/// An `events.list` output as a proto list.
pub fn list_output(output: Value) -> Result<pb::ListEventsResponse, ApiError> {
    let list: EventList = decode(output, "event list")?;
    Ok(pb::ListEventsResponse {
        period_start: Some(timestamp(list.from)),
        period_end: Some(timestamp(list.to)),
        events: list.items.into_iter().map(pb::Event::from).collect(),
        next_page_token: list.next_cursor.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    fn dur(seconds: i64, nanos: i32) -> Option<Duration> {
        Some(Duration { seconds, nanos })
    }

    #[test]
    fn a_create_request_becomes_the_commands_input() {
        let req = pb::CreateEventRequest {
            title: "Standup".into(),
            description: "daily".into(),
            starts_at: ts(1_772_359_200, 0),
            duration: dur(900, 0),
            remind_before: dur(300, 0),
        };
        assert_eq!(
            create_input(req),
            json!({
                "title": "Standup",
                "description": "daily",
                "starts_at": "2026-03-01T10:00:00Z",
                "duration": 900,
                "remind_before": 300,
            })
        );
    }

    #[test]
    fn absent_optional_fields_are_left_out() {
        let req = pb::CreateEventRequest { title: "x".into(), ..Default::default() };
        assert_eq!(create_input(req), json!({"title": "x"}));
        let req = pb::UpdateEventRequest {
            id: "0190".into(),
            title: "y".into(),
            starts_at: ts(0, 500_000_000),
            duration: dur(1, 0),
            ..Default::default()
        };
        assert_eq!(
            update_input(req),
            json!({"id": "0190", "title": "y", "starts_at": "1970-01-01T00:00:00.500Z", "duration": 1})
        );
    }

    #[test]
    fn durations_are_converted_without_clamping() {
        assert_eq!(duration_to_json(&Duration { seconds: -60, nanos: 0 }), json!(-60));
        assert_eq!(duration_to_json(&Duration { seconds: 0, nanos: 0 }), json!(0));
        assert_eq!(duration_to_json(&Duration { seconds: i64::MAX, nanos: 0 }), json!(i64::MAX));
        assert_eq!(duration_to_json(&Duration { seconds: 1, nanos: 500_000_000 }), json!(1.5));
        assert_eq!(duration_to_json(&Duration { seconds: -1, nanos: -500_000_000 }), json!(-1.5));
        // A fraction too small for f64 to show still leaves the value fractional.
        let tiny = duration_to_json(&Duration { seconds: 2_678_400_000_000, nanos: 1 });
        assert!(tiny.as_f64().is_some_and(|s| s.fract() != 0.0), "{tiny}");
        assert!(!tiny.is_i64() && !tiny.is_u64(), "{tiny}");
    }

    #[test]
    fn invalid_durations_and_timestamps_become_null() {
        assert_eq!(duration_to_json(&Duration { seconds: 1, nanos: -1 }), Value::Null);
        assert_eq!(duration_to_json(&Duration { seconds: 0, nanos: 1_000_000_000 }), Value::Null);
        assert_eq!(timestamp_to_json(&Timestamp { seconds: 0, nanos: -1 }), Value::Null);
        assert_eq!(timestamp_to_json(&Timestamp { seconds: 0, nanos: 1_000_000_000 }), Value::Null);
        assert_eq!(timestamp_to_json(&Timestamp { seconds: i64::MAX, nanos: 0 }), Value::Null);
        // 10000-01-01T00:00:00Z: past what RFC 3339 can write.
        assert_eq!(timestamp_to_json(&Timestamp { seconds: 253_402_300_800, nanos: 0 }), Value::Null);
        assert_eq!(timestamp_to_json(&Timestamp { seconds: 253_402_300_799, nanos: 0 }), json!("9999-12-31T23:59:59Z"));
        // 0001-01-01T00:00:00Z, the first instant a proto Timestamp may hold.
        assert_eq!(timestamp_to_json(&Timestamp { seconds: -62_135_596_800, nanos: 0 }), json!("0001-01-01T00:00:00Z"));
        assert_eq!(timestamp_to_json(&Timestamp { seconds: -62_135_596_801, nanos: 0 }), Value::Null);
    }

    #[test]
    fn list_requests_name_their_period_and_zone() {
        let req = pb::ListEventsRequest {
            date: "2026-03-10".into(),
            tz: Some("Europe/Moscow".into()),
            page_size: Some(10),
            page_token: "abc".into(),
        };
        assert_eq!(
            list_input(Period::Week, req),
            json!({"period": "week", "date": "2026-03-10", "tz": "Europe/Moscow", "limit": 10, "cursor": "abc"})
        );
        let req = pb::ListEventsRequest { date: "2026-03-10".into(), ..Default::default() };
        assert_eq!(list_input(Period::Month, req), json!({"period": "month", "date": "2026-03-10"}));
        assert_eq!(id_input("abc".into()), json!({"id": "abc"}));
    }

    fn view(remind_before: Value, description: Value) -> Value {
        json!({
            "id": "01900000-0000-7000-8000-000000000000",
            "title": "Standup",
            "description": description,
            "starts_at": "2026-03-01T10:00:00Z",
            "duration": 900,
            "ends_at": "2026-03-01T10:15:00Z",
            "remind_before": remind_before,
            "created_at": "2026-02-01T08:00:00.123456Z",
            "updated_at": "2026-02-01T08:00:00.123456Z",
            "owner_id": "ignored",
        })
    }

    #[test]
    fn an_event_view_becomes_a_proto_event() {
        let event = event_output(view(json!(300), json!("daily"))).expect("decodes");
        assert_eq!(event.id, "01900000-0000-7000-8000-000000000000");
        assert_eq!(event.description, "daily");
        assert_eq!(event.starts_at, ts(1_772_359_200, 0));
        assert_eq!(event.ends_at, ts(1_772_360_100, 0));
        assert_eq!(event.duration, dur(900, 0));
        assert_eq!(event.remind_before, dur(300, 0));
        assert_eq!(event.created_at.map(|t| t.nanos), Some(123_456_000));
        let event = event_output(view(Value::Null, Value::Null)).expect("decodes");
        assert_eq!((event.remind_before, event.description.as_str()), (None, ""));
    }

    #[test]
    fn a_list_output_keeps_its_period_and_order() {
        let output = json!({
            "from": "2026-03-09T21:00:00Z",
            "to": "2026-03-10T21:00:00Z",
            "items": [view(Value::Null, json!("a")), view(json!(0), json!("b"))],
        });
        let list = list_output(output).expect("decodes");
        assert_eq!(list.period_start, ts(1_773_090_000, 0));
        assert_eq!(list.period_end, ts(1_773_176_400, 0));
        let descriptions: Vec<_> = list.events.iter().map(|e| e.description.as_str()).collect();
        assert_eq!(descriptions, ["a", "b"]);
        assert_eq!(list.events[1].remind_before, dur(0, 0));
    }

    #[test]
    fn an_output_that_does_not_decode_is_an_internal_error() {
        let err = event_output(json!({"id": 1})).expect_err("refused");
        assert_eq!(err.code(), herald_core::error::ErrorCode::Internal);
        assert_eq!(err.public_detail(), "");
    }
}
