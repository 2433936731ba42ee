//! From a stored webhook event (or a backfilled item wrapped as one) to page writes: the payload is parsed
//! once here, and OpenPhone is asked only for what the payload lacks (a call's recording segments, a v4
//! missed call's voicemail).

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::calls::{CallFacts, RecordingLink, VoicemailLink};
use super::map::Kind;
use super::{WriteError, Writer};
use crate::domain::{Direction, EventType};
use crate::openphone::types::{Call, Message, Summary, Transcript};
use crate::pending;

/// The resource inside an event envelope: `data.object` (v1 webhooks) or `data.resource` (Quo 2026).
fn resource(payload: &Value) -> Option<&Value> {
    let data = payload.get("data")?;
    data.get("object").or_else(|| data.get("resource"))
}

fn parse<T: DeserializeOwned>(payload: &Value, what: &str) -> Result<T, WriteError> {
    let object = resource(payload)
        .ok_or_else(|| WriteError::BadData(format!("{what} event without data.object")))?;
    serde_json::from_value(object.clone()).map_err(|e| WriteError::BadData(format!("{what}: {e}")))
}

fn call_id_of(payload: &Value) -> Option<String> {
    let object = resource(payload)?;
    object
        .get("callId")
        .or_else(|| object.get("id"))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Writes the event `event_type` with body `payload` through `writer`; returns the page written.
pub async fn apply(
    writer: &Writer<'_>,
    event_type: EventType,
    payload: &Value,
) -> Result<String, WriteError> {
    match event_type {
        EventType::MessageReceived | EventType::MessageDelivered => {
            let message: Message = parse(payload, "message")?;
            writer.messages().upsert(&message).await
        }
        EventType::CallCompleted | EventType::CallMissed => {
            let mut call: Call = parse(payload, "call")?;
            // Legacy (app-created) payloads carry no duration, route or forwarding: the REST call
            // has them, and the page should too.
            if call.duration.is_none() && pending::is_final(&call) {
                if let Some(full) = writer.openphone.call(&call.id).await? {
                    fill_missing(&mut call, full);
                }
            }
            let payload_has_voicemail =
                resource(payload).is_some_and(|o| o.get("voicemail").is_some());
            let mut voicemail = call.voicemail.as_ref().map(VoicemailLink::from_voicemail);
            // v4 payloads carry no voicemail: ask for one only where there can be one. A legacy
            // payload's voicemail has the audio but never the transcription, which REST has.
            let unanswered =
                call.answered_at.is_none() && call.direction == Some(Direction::Incoming);
            let lacks_transcript = voicemail.as_ref().is_some_and(|v| v.transcript.is_none());
            if (voicemail.is_none() && !payload_has_voicemail && unanswered) || lacks_transcript {
                if let Some(fetched) = fetch_voicemail(writer, &call.id).await? {
                    voicemail = Some(match voicemail {
                        // Our link stays the payload's when REST has none yet.
                        Some(own) => VoicemailLink {
                            url: fetched.url.or(own.url),
                            transcript: fetched.transcript,
                            duration: fetched.duration.or(own.duration),
                        },
                        None => fetched,
                    });
                }
            }
            let facts = CallFacts {
                call_id: call.id.clone(),
                phone_number_id: call.phone_number_id.clone(),
                voicemail,
                call: Some(call),
                ..Default::default()
            };
            let page_id = writer.calls().apply(&facts).await?;
            writer.calls().await_the_rest(&facts)?;
            Ok(page_id)
        }
        EventType::CallRecordingCompleted => {
            let call: Call = parse(payload, "call")?;
            let mut recordings =
                RecordingLink::completed(&writer.openphone.call_recordings(&call.id).await?);
            if recordings.is_empty() {
                recordings = call
                    .media
                    .iter()
                    .filter_map(|m| {
                        Some(RecordingLink {
                            url: m.url.clone()?,
                            content_type: m.content_type.clone(),
                            duration: m.duration,
                        })
                    })
                    .collect();
            }
            let facts = CallFacts {
                call_id: call.id.clone(),
                phone_number_id: call.phone_number_id.clone(),
                recordings: Some(recordings),
                call: Some(call),
                ..Default::default()
            };
            writer.calls().apply(&facts).await
        }
        EventType::CallTranscriptCompleted => {
            let transcript: Transcript = parse(payload, "transcript")?;
            let facts = CallFacts {
                transcript: Some(transcript),
                ..facts_of_call(writer, payload, "transcript").await?
            };
            writer.calls().apply(&facts).await
        }
        EventType::CallSummaryCompleted => {
            let summary: Summary = parse(payload, "summary")?;
            let facts = CallFacts {
                summary: Some(summary),
                ..facts_of_call(writer, payload, "summary").await?
            };
            writer.calls().apply(&facts).await
        }
        EventType::CallVoicemailCompleted => {
            let call_id = call_id_of(payload)
                .ok_or_else(|| WriteError::BadData("voicemail without callId".into()))?;
            let voicemail = fetch_voicemail(writer, &call_id).await?;
            // The Quo voicemail event carries the call's time, if at all, as the resource's createdAt.
            let call_created_at = resource(payload)
                .and_then(|r| r["createdAt"].as_str())
                .map(String::from);
            let facts = CallFacts {
                call_id,
                voicemail,
                call_created_at,
                ..Default::default()
            };
            writer.calls().apply(&facts).await
        }
    }
}

/// What a transcript's or a summary's event (`what`) says of its call: its id, and the call itself when
/// nothing about it is known yet ([`call_unless_known`]).
async fn facts_of_call(
    writer: &Writer<'_>,
    payload: &Value,
    what: &str,
) -> Result<CallFacts, WriteError> {
    let call_id =
        call_id_of(payload).ok_or_else(|| WriteError::BadData(format!("{what} without callId")))?;
    let call = call_unless_known(writer, &call_id).await?;
    Ok(CallFacts {
        call_id,
        phone_number_id: call.as_ref().and_then(|c| c.phone_number_id.clone()),
        call,
        ..Default::default()
    })
}

/// The call from REST when nothing about it is known yet (a transcript or summary drained before the
/// call's own event): its number names the transcript's speakers, and its metadata fills the page.
/// Costs nothing once any event of the call was written.
async fn call_unless_known(writer: &Writer<'_>, call_id: &str) -> Result<Option<Call>, WriteError> {
    let known = writer
        .map
        .get(Kind::Call, call_id)?
        .is_some_and(|row| row.phone_number_id.is_some());
    if known {
        return Ok(None);
    }
    Ok(writer.openphone.call(call_id).await?)
}

async fn fetch_voicemail(
    writer: &Writer<'_>,
    call_id: &str,
) -> Result<Option<VoicemailLink>, WriteError> {
    Ok(writer
        .openphone
        .call_voicemail(call_id)
        .await?
        .filter(|v| v.audio_url().is_some())
        .map(|v| VoicemailLink::from_voicemail(&v)))
}

/// Fills what `call` (a webhook payload) lacks from `rest` (the same call from the REST API); what the
/// payload says stays.
fn fill_missing(call: &mut Call, rest: Call) {
    fn keep<T>(field: &mut Option<T>, other: Option<T>) {
        if field.is_none() {
            *field = other;
        }
    }
    keep(&mut call.phone_number_id, rest.phone_number_id);
    keep(&mut call.user_id, rest.user_id);
    keep(&mut call.direction, rest.direction);
    keep(&mut call.status, rest.status);
    keep(&mut call.created_at, rest.created_at);
    keep(&mut call.answered_at, rest.answered_at);
    keep(&mut call.completed_at, rest.completed_at);
    keep(&mut call.duration, rest.duration);
    keep(&mut call.call_route, rest.call_route);
    keep(&mut call.forwarded_from, rest.forwarded_from);
    keep(&mut call.forwarded_to, rest.forwarded_to);
    keep(&mut call.conversation_id, rest.conversation_id);
    if call.participants.is_empty() {
        call.participants = rest.participants;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::Failure;
    use serde_json::json;

    #[test]
    fn resources_come_from_object_or_resource() {
        let legacy = json!({ "data": { "object": { "callId": "AC1" } } });
        let quo = json!({ "data": { "resource": { "id": "AC2" } } });
        assert_eq!(call_id_of(&legacy).as_deref(), Some("AC1"));
        assert_eq!(call_id_of(&quo).as_deref(), Some("AC2"));
        assert_eq!(call_id_of(&json!({ "data": {} })), None);
    }

    #[test]
    fn a_legacy_call_is_filled_from_rest_without_losing_what_it_says() {
        let mut legacy: Call = serde_json::from_value(json!({
            "id": "AC1", "from": "+15555550123", "to": "+13365550100", "direction": "incoming",
            "status": "completed", "answeredAt": "2025-10-20T19:28:38.000Z", "phoneNumberId": "PN1"
        }))
        .unwrap();
        let rest: Call = serde_json::from_value(json!({
            "id": "AC1", "direction": "outgoing", "status": "completed", "duration": 112,
            "callRoute": "phone-number", "participants": ["+15555550123"], "phoneNumberId": "PN1"
        }))
        .unwrap();
        fill_missing(&mut legacy, rest);
        assert_eq!(legacy.duration, Some(112.0));
        assert_eq!(legacy.call_route.as_deref(), Some("phone-number"));
        assert_eq!(
            legacy.direction,
            Some(Direction::Incoming),
            "the payload's own value stays"
        );
        assert_eq!(legacy.participants, vec!["+15555550123"]);
    }

    #[test]
    fn malformed_objects_are_bad_data() {
        let err = parse::<Call>(
            &json!({ "data": { "object": { "status": "completed" } } }),
            "call",
        )
        .unwrap_err();
        assert!(matches!(err, WriteError::BadData(_)));
        assert!(!err.is_transient());
    }
}
