//! The webhook envelope: the few fields intake needs, read once from the verified body. Pure.
//!
//! Both payload generations are accepted: the legacy `{id, type, createdAt, data: {object}}` and Quo's
//! 2026 `{…, data: {resource, context}}`. The resource is joined on by its call id (`callId` in
//! summaries, transcripts and voicemails, else the object's own `id`).

use serde_json::{Map, Value};

use crate::domain::{EventId, EventType, ParseError, PhoneNumberId};

/// What intake does with an event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Queue it for processing.
    Process(EventType),
    /// Store it as `skipped`, with the reason.
    Skip(&'static str),
}

impl Disposition {
    /// The disposition of the type named `raw`.
    pub fn of(raw: &str) -> Self {
        if let Some(event_type) = EventType::parse(raw) {
            return Disposition::Process(event_type);
        }
        Disposition::Skip(match raw {
            "call.ringing" | "call.answered" | "call.forwarded" => {
                "a call still in progress; the call is synced when it completes"
            }
            "contact.updated" | "contact.deleted" => "contacts are not synced",
            _ => "not an event type this app syncs",
        })
    }
}

/// The fields of a webhook body that intake stores next to the raw payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The event id: the body's `id`, else the signed Standard Webhooks `webhook-id`.
    pub id: EventId,
    /// The `type` as sent (at most [`MAX_TYPE_LEN`] characters kept).
    pub raw_type: String,
    /// What to do with it.
    pub disposition: Disposition,
    /// The workspace number the event belongs to (`phoneNumberId`), when the payload names one.
    pub phone_number_id: Option<PhoneNumberId>,
    /// The call or message the event is about (`callId`, else the resource's `id`).
    pub resource_id: Option<String>,
    /// The event's `createdAt` (else the resource's), epoch milliseconds.
    pub created_at_ms: Option<i64>,
}

/// The longest `type` kept; OpenPhone's are under 30 characters.
pub const MAX_TYPE_LEN: usize = 100;

/// Why a verified body is not a usable event (a `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON at all.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("the body is not a JSON object")]
    NotObject,
    /// Neither an `id` nor a `webhook-id` header.
    #[error("the event has no id (expected a string \"id\" field or a webhook-id header)")]
    NoId,
    /// An id that cannot be a key.
    #[error("the event id is not usable: {0}")]
    BadId(ParseError),
    /// No `type`.
    #[error("the event has no \"type\" string")]
    NoType,
}

/// Reads the envelope of `body`. `signed_webhook_id` is the verified `webhook-id`, used when the body
/// has no `id`.
pub fn parse(body: &[u8], signed_webhook_id: Option<&str>) -> Result<Envelope, EnvelopeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let event = value.as_object().ok_or(EnvelopeError::NotObject)?;
    let id = match event.get("id") {
        Some(Value::String(id)) => id.as_str(),
        Some(_) => return Err(EnvelopeError::NoId),
        None => signed_webhook_id.ok_or(EnvelopeError::NoId)?,
    };
    let id = EventId::parse(id).map_err(EnvelopeError::BadId)?;
    let raw_type: String = event
        .get("type")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(EnvelopeError::NoType)?
        .chars()
        .take(MAX_TYPE_LEN)
        .collect();
    let data = event.get("data").and_then(Value::as_object);
    let resource = data.and_then(|d| {
        d.get("object")
            .or_else(|| d.get("resource"))
            .and_then(Value::as_object)
    });
    let context = data
        .and_then(|d| d.get("context"))
        .and_then(Value::as_object);
    let phone_number_id = [resource, context]
        .into_iter()
        .flatten()
        .find_map(|o| text(o, "phoneNumberId"))
        .and_then(|raw| PhoneNumberId::parse(raw).ok());
    let resource_id = resource
        .and_then(|o| text(o, "callId").or_else(|| text(o, "id")))
        .filter(|id| is_plain_id(id))
        .map(str::to_owned);
    let created_at_ms = text(event, "createdAt")
        .or_else(|| resource.and_then(|o| text(o, "createdAt")))
        .and_then(parse_time_ms);
    Ok(Envelope {
        id,
        disposition: Disposition::of(&raw_type),
        raw_type,
        phone_number_id,
        resource_id,
        created_at_ms,
    })
}

fn text<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    object.get(field).and_then(Value::as_str)
}

/// Ids we store and key leases on: short, and nothing but letters, digits, `_`, `-`, `.`.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn parse_time_ms(raw: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_call_event_yields_number_resource_and_time() {
        let body = br#"{"id":"EVd39d","object":"event","apiVersion":"v2","createdAt":"2025-10-20T19:22:25.427Z",
            "type":"call.completed","data":{"object":{"id":"AC5b0e","object":"call","phoneNumberId":"PNtoDbDhuz",
            "createdAt":"2025-10-20T19:21:59.545Z"}}}"#;
        let envelope = parse(body, None).unwrap();
        assert_eq!(envelope.id.as_str(), "EVd39d");
        assert_eq!(
            envelope.disposition,
            Disposition::Process(EventType::CallCompleted)
        );
        assert_eq!(envelope.phone_number_id.unwrap().as_str(), "PNtoDbDhuz");
        assert_eq!(envelope.resource_id.as_deref(), Some("AC5b0e"));
        assert_eq!(envelope.created_at_ms, Some(1_760_988_145_427));
    }

    #[test]
    fn summaries_join_on_call_id_and_the_alias_is_understood() {
        let body = br#"{"id":"EV1c2d","type":"callSummary","createdAt":"2025-10-20T19:36:30.000Z",
            "data":{"object":{"object":"callSummary","callId":"ACbaee","summary":["x"]}}}"#;
        let envelope = parse(body, None).unwrap();
        assert_eq!(
            envelope.disposition,
            Disposition::Process(EventType::CallSummaryCompleted)
        );
        assert_eq!(envelope.resource_id.as_deref(), Some("ACbaee"));
        assert_eq!(envelope.phone_number_id, None);
    }

    #[test]
    fn transcripts_sent_as_call_transcript_are_processed() {
        let body = br#"{"id":"EV2d3e","type":"callTranscript","createdAt":"2025-10-20T19:36:40.000Z",
            "data":{"object":{"object":"callTranscript","callId":"ACbaee","status":"completed","dialogue":[]}}}"#;
        let envelope = parse(body, None).unwrap();
        assert_eq!(
            envelope.disposition,
            Disposition::Process(EventType::CallTranscriptCompleted)
        );
        assert_eq!(envelope.resource_id.as_deref(), Some("ACbaee"));
    }

    #[test]
    fn quo_resource_payloads_and_signed_webhook_ids_are_accepted() {
        let body =
            br#"{"type":"call.voicemail.completed","data":{"resource":{"id":"VM1","callId":"AC9",
            "createdAt":"2026-04-01T10:00:00Z"},"context":{"phoneNumberId":"PN2"}}}"#;
        assert_eq!(parse(body, None), Err(EnvelopeError::NoId));
        let envelope = parse(body, Some("msg_2Lh9KRb0")).unwrap();
        assert_eq!(envelope.id.as_str(), "msg_2Lh9KRb0");
        assert_eq!(
            envelope.disposition,
            Disposition::Process(EventType::CallVoicemailCompleted)
        );
        assert_eq!(envelope.resource_id.as_deref(), Some("AC9"));
        assert_eq!(envelope.phone_number_id.unwrap().as_str(), "PN2");
        assert_eq!(envelope.created_at_ms, Some(1_775_037_600_000));
    }

    #[test]
    fn types_not_synced_are_skipped_with_a_reason() {
        for (raw, reason) in [
            ("call.ringing", "in progress"),
            ("call.answered", "in progress"),
            ("call.forwarded", "in progress"),
            ("contact.updated", "contacts"),
            ("mail.received", "not an event type"),
        ] {
            match Disposition::of(raw) {
                Disposition::Skip(why) => assert!(why.contains(reason), "{raw}: {why}"),
                other => panic!("{raw} gave {other:?}"),
            }
        }
        for event_type in EventType::ALL {
            assert_eq!(
                Disposition::of(event_type.as_str()),
                Disposition::Process(event_type)
            );
        }
    }

    #[test]
    fn unusable_bodies_say_why() {
        assert!(matches!(
            parse(b"not json", None),
            Err(EnvelopeError::NotJson(_))
        ));
        assert_eq!(parse(b"[1,2]", None), Err(EnvelopeError::NotObject));
        assert_eq!(
            parse(br#"{"type":"call.completed"}"#, None),
            Err(EnvelopeError::NoId)
        );
        assert_eq!(
            parse(br#"{"id":7,"type":"call.completed"}"#, Some("msg_1")),
            Err(EnvelopeError::NoId)
        );
        assert!(matches!(
            parse(br#"{"id":"../x","type":"call.completed"}"#, None),
            Err(EnvelopeError::BadId(_))
        ));
        assert_eq!(parse(br#"{"id":"EV1"}"#, None), Err(EnvelopeError::NoType));
        assert_eq!(
            parse(br#"{"id":"EV1","type":"  "}"#, None),
            Err(EnvelopeError::NoType)
        );
    }

    #[test]
    fn odd_ids_and_times_in_the_resource_are_left_out_not_refused() {
        let body = br#"{"id":"EV1","type":"message.received","createdAt":"yesterday",
            "data":{"object":{"id":"AC 1","phoneNumberId":"+1555","createdAt":17}}}"#;
        let envelope = parse(body, None).unwrap();
        assert_eq!(envelope.resource_id, None);
        assert_eq!(envelope.phone_number_id, None);
        assert_eq!(envelope.created_at_ms, None);
    }
}
