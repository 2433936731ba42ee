//! OpenPhone webhook deliveries for tests: payload builders (the fixtures of openphone-api.md §6.3) and
//! the two signature schemes, implemented here independently of the app so a bug in the app's verifier
//! is caught rather than mirrored.
//!
//! * Legacy (`openphone-signature: hmac;1;<ts-ms>;<base64>`): HMAC-SHA256 over `<ts>.<raw body>` with the
//!   base64-decoded signing key.
//! * Standard Webhooks (`webhook-id`, `webhook-timestamp` in seconds, `webhook-signature: v1,<base64>`):
//!   HMAC-SHA256 over `<id>.<ts>.<raw body>` with the key after `whsec_`, base64-decoded.

use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

fn hmac_sha256_base64(key: &[u8], parts: &[&[u8]]) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).context("building the HMAC-SHA256 key")?;
    for part in parts {
        mac.update(part);
    }
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `openphone-signature` header value for `body`, signed at `timestamp_ms` with the webhook's
/// base64 signing key (as `POST /v1/webhooks/*` returns it in `key`).
pub fn legacy_signature(key_base64: &str, timestamp_ms: i64, body: &[u8]) -> Result<String> {
    let key = STANDARD
        .decode(key_base64.trim())
        .context("the legacy signing key is not base64")?;
    let timestamp = timestamp_ms.to_string();
    let digest = hmac_sha256_base64(&key, &[timestamp.as_bytes(), b".", body])?;
    Ok(format!("hmac;1;{timestamp};{digest}"))
}

/// The `webhook-signature` header value (`v1,<base64>`) of the Standard Webhooks scheme. `secret` may
/// carry the `whsec_` prefix.
pub fn standard_signature(
    secret: &str,
    message_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Result<String> {
    let secret = secret.trim();
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .context("the Standard Webhooks secret is not base64 after `whsec_`")?;
    let timestamp = timestamp_secs.to_string();
    let digest = hmac_sha256_base64(
        &key,
        &[
            message_id.as_bytes(),
            b".",
            timestamp.as_bytes(),
            b".",
            body,
        ],
    )?;
    Ok(format!("v1,{digest}"))
}

/// A webhook request as OpenPhone would send it: headers and the exact body bytes that were signed.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedDelivery {
    /// Header names (lower case) and values, `content-type` included.
    pub headers: Vec<(String, String)>,
    /// The raw body; the signature covers exactly these bytes.
    pub body: Vec<u8>,
}

impl SignedDelivery {
    /// `payload` serialized compactly and signed with the legacy scheme at `timestamp_ms`.
    pub fn legacy(key_base64: &str, timestamp_ms: i64, payload: &Value) -> Result<Self> {
        let body = serde_json::to_vec(payload).context("serializing the webhook payload")?;
        let signature = legacy_signature(key_base64, timestamp_ms, &body)?;
        Ok(Self {
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("openphone-signature".into(), signature),
            ],
            body,
        })
    }

    /// `payload` serialized compactly and signed with the Standard Webhooks scheme.
    pub fn standard(
        secret: &str,
        message_id: &str,
        timestamp_secs: i64,
        payload: &Value,
    ) -> Result<Self> {
        let body = serde_json::to_vec(payload).context("serializing the webhook payload")?;
        let signature = standard_signature(secret, message_id, timestamp_secs, &body)?;
        Ok(Self {
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("webhook-id".into(), message_id.into()),
                ("webhook-timestamp".into(), timestamp_secs.to_string()),
                ("webhook-signature".into(), signature),
            ],
            body,
        })
    }

    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn opt_time(at: &Option<DateTime<Utc>>) -> Value {
    at.as_ref()
        .map_or(Value::Null, |at| Value::String(time(at)))
}

fn parse(at: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(at) {
        Ok(at) => at.with_timezone(&Utc),
        Err(err) => panic!("fixture timestamp {at:?} is not RFC 3339: {err}"),
    }
}

fn envelope(
    event_id: &str,
    api_version: &str,
    created_at: &DateTime<Utc>,
    event_type: &str,
    object: Value,
) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "apiVersion": api_version,
        "createdAt": time(created_at),
        "type": event_type,
        "data": { "object": object },
    })
}

/// A media file inside a legacy call or message payload (`media[]`, `voicemail`).
#[derive(Clone, Debug, PartialEq)]
pub struct MediaFixture {
    /// Download URL (point it at [`crate::OpenPhoneServer::media_url`] in tests).
    pub url: String,
    /// MIME type, e.g. `audio/mpeg`.
    pub content_type: String,
    /// Seconds, for audio.
    pub duration: Option<u32>,
}

impl MediaFixture {
    fn to_json(&self) -> Value {
        let mut media = json!({ "url": self.url, "type": self.content_type });
        if let Some(duration) = self.duration {
            media["duration"] = json!(duration);
        }
        media
    }
}

/// One call, rendered as any of the call events. Defaults are the values of openphone-api.md §6.3.
#[derive(Clone, Debug, PartialEq)]
pub struct CallFixture {
    /// The event id (`EV…`): the app's idempotency key.
    pub event_id: String,
    /// When the event was created.
    pub event_created_at: DateTime<Utc>,
    /// `AC…`.
    pub call_id: String,
    /// `PN…` of the workspace number.
    pub phone_number_id: String,
    /// The workspace number, E.164.
    pub our_number: String,
    /// The other party, E.164.
    pub other_number: String,
    /// `incoming` or `outgoing`.
    pub direction: String,
    /// `completed`, `no-answer`, `missed`, …
    pub status: String,
    /// `US…`.
    pub user_id: String,
    /// `CN…` (legacy payloads only).
    pub conversation_id: String,
    /// When the call started.
    pub created_at: DateTime<Utc>,
    /// When it was answered, if it was.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// Recording segments (legacy payloads carry them in `media[]`).
    pub media: Vec<MediaFixture>,
    /// The voicemail, for an unanswered incoming call (legacy payloads).
    pub voicemail: Option<MediaFixture>,
}

impl CallFixture {
    /// The unanswered incoming call with a voicemail of §6.3.
    pub fn example() -> Self {
        Self {
            event_id: "EVd39d3c8d6f244d21a9131de4fc9350d0".into(),
            event_created_at: parse("2025-10-20T19:22:25.427Z"),
            call_id: "AC5b0e2c9d1f2a4e6b8c7d9e0f1a2b3c4d".into(),
            phone_number_id: "PNtoDbDhuz".into(),
            our_number: "+13365550100".into(),
            other_number: "+15555550123".into(),
            direction: "incoming".into(),
            status: "completed".into(),
            user_id: "USu5AsEHuQ".into(),
            conversation_id: "CN78ba0373683c48fd8fd96bc836c51f79".into(),
            created_at: parse("2025-10-20T19:21:59.545Z"),
            answered_at: None,
            completed_at: Some(parse("2025-10-20T19:22:19.000Z")),
            media: Vec::new(),
            voicemail: Some(MediaFixture {
                url: "https://storage.googleapis.com/opstatics/voicemail.mp3".into(),
                content_type: "audio/mpeg".into(),
                duration: Some(17),
            }),
        }
    }

    /// The same call with a different call id and event id.
    pub fn with_ids(mut self, call_id: &str, event_id: &str) -> Self {
        self.call_id = call_id.into();
        self.event_id = event_id.into();
        self
    }

    fn legacy_object(&self) -> Value {
        let (from, to) = if self.direction == "outgoing" {
            (&self.our_number, &self.other_number)
        } else {
            (&self.other_number, &self.our_number)
        };
        json!({
            "id": self.call_id,
            "object": "call",
            "from": from,
            "to": to,
            "direction": self.direction,
            "media": self.media.iter().map(MediaFixture::to_json).collect::<Vec<_>>(),
            "voicemail": self.voicemail.as_ref().map_or(Value::Null, MediaFixture::to_json),
            "status": self.status,
            "createdAt": time(&self.created_at),
            "answeredAt": opt_time(&self.answered_at),
            "completedAt": opt_time(&self.completed_at),
            "userId": self.user_id,
            "phoneNumberId": self.phone_number_id,
            "conversationId": self.conversation_id,
        })
    }

    /// `call.completed` as an app-created (legacy, `apiVersion: v2`) webhook sends it.
    pub fn call_completed_v2(&self) -> Value {
        envelope(
            &self.event_id,
            "v2",
            &self.event_created_at,
            "call.completed",
            self.legacy_object(),
        )
    }

    /// `call.completed` as an API-created webhook (`apiVersion: v4`) sends it: the REST call shape with
    /// `participants[]` and no `media`/`voicemail`.
    pub fn call_completed_v4(&self) -> Value {
        let duration = match (self.answered_at, self.completed_at) {
            (Some(answered), Some(completed)) => (completed - answered).num_seconds().max(0),
            _ => 0,
        };
        let answered_by = if self.direction == "incoming" && self.answered_at.is_some() {
            json!(self.user_id)
        } else {
            Value::Null
        };
        let initiated_by = if self.direction == "outgoing" {
            json!(self.user_id)
        } else {
            Value::Null
        };
        let object = json!({
            "id": self.call_id,
            "object": "call",
            "direction": self.direction,
            "status": self.status,
            "createdAt": time(&self.created_at),
            "answeredAt": opt_time(&self.answered_at),
            "completedAt": opt_time(&self.completed_at),
            "updatedAt": opt_time(&self.completed_at),
            "duration": duration,
            "answeredBy": answered_by,
            "initiatedBy": initiated_by,
            "forwardedFrom": null,
            "forwardedTo": null,
            "callRoute": "phone-number",
            "aiHandled": null,
            "phoneNumberId": self.phone_number_id,
            "participants": [self.other_number],
            "userId": self.user_id,
        });
        envelope(
            &self.event_id,
            "v4",
            &self.event_created_at,
            "call.completed",
            object,
        )
    }

    /// `call.recording.completed` (legacy shape: the recording segments are in `media[]`).
    pub fn call_recording_completed(&self) -> Value {
        envelope(
            &self.event_id,
            "v2",
            &self.event_created_at,
            "call.recording.completed",
            self.legacy_object(),
        )
    }
}

/// A `call.summary.completed` event. Defaults are the values of openphone-api.md §6.3.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryFixture {
    /// `EV…`.
    pub event_id: String,
    /// When the event was created.
    pub event_created_at: DateTime<Utc>,
    /// The call it summarizes (summary events carry `callId`, not `id`).
    pub call_id: String,
    /// `completed`, `in-progress`, `absent`, `failed`.
    pub status: String,
    /// Summary lines.
    pub summary: Vec<String>,
    /// Next-step lines.
    pub next_steps: Vec<String>,
}

impl SummaryFixture {
    /// The example of §6.3.
    pub fn example() -> Self {
        Self {
            event_id: "EV1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f".into(),
            event_created_at: parse("2025-10-20T19:36:30.000Z"),
            call_id: "ACbaee66e137f0467dbed5ad4bc8d60800".into(),
            status: "completed".into(),
            summary: vec![
                "Merchant asked about the funding offer.".into(),
                "Agreed to send bank statements.".into(),
            ],
            next_steps: vec![
                "Email document checklist.".into(),
                "Follow up Thursday.".into(),
            ],
        }
    }

    /// The event payload.
    pub fn to_event(&self) -> Value {
        envelope(
            &self.event_id,
            "v4",
            &self.event_created_at,
            "call.summary.completed",
            json!({
                "object": "callSummary",
                "callId": self.call_id,
                "status": self.status,
                "summary": self.summary,
                "nextSteps": self.next_steps,
                "jobs": [],
            }),
        )
    }
}

/// One line of a transcript.
#[derive(Clone, Debug, PartialEq)]
pub struct DialogueFixture {
    /// What was said.
    pub content: String,
    /// Start, seconds from the beginning of the call.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// E.164 of an external speaker.
    pub identifier: Option<String>,
    /// `US…` of a workspace user who spoke.
    pub user_id: Option<String>,
}

/// A `call.transcript.completed` event. Defaults are the values of openphone-api.md §6.3.
#[derive(Clone, Debug, PartialEq)]
pub struct TranscriptFixture {
    /// `EV…`.
    pub event_id: String,
    /// When the event was created.
    pub event_created_at: DateTime<Utc>,
    /// The call (`callId`).
    pub call_id: String,
    /// When the transcript was made.
    pub created_at: DateTime<Utc>,
    /// Seconds, may be fractional.
    pub duration: f64,
    /// `completed`, …
    pub status: String,
    /// The dialogue, in order.
    pub dialogue: Vec<DialogueFixture>,
}

impl TranscriptFixture {
    /// The example of §6.3.
    pub fn example() -> Self {
        Self {
            event_id: "EV2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a".into(),
            event_created_at: parse("2025-10-20T19:36:40.000Z"),
            call_id: "ACbaee66e137f0467dbed5ad4bc8d60800".into(),
            created_at: parse("2025-10-20T19:30:50.000Z"),
            duration: 112.4,
            status: "completed".into(),
            dialogue: vec![
                DialogueFixture {
                    content: "Thanks for calling, this is Jacob.".into(),
                    start: 0.0,
                    end: 2.7,
                    identifier: None,
                    user_id: Some("USu5AsEHuQ".into()),
                },
                DialogueFixture {
                    content: "Hi, I'm calling about the offer you sent.".into(),
                    start: 3.1,
                    end: 6.0,
                    identifier: Some("+15555550123".into()),
                    user_id: None,
                },
            ],
        }
    }

    /// A transcript of `lines` alternating speakers, each line `line_len` characters long: for tests of
    /// chunking long transcripts into Notion's limits.
    pub fn long(call_id: &str, event_id: &str, lines: usize, line_len: usize) -> Self {
        let dialogue = (0..lines)
            .map(|i| {
                let prefix = format!("line {i}: ");
                let filler = "x".repeat(line_len.saturating_sub(prefix.len()));
                DialogueFixture {
                    content: format!("{prefix}{filler}"),
                    start: i as f64 * 5.0,
                    end: i as f64 * 5.0 + 4.5,
                    identifier: (i % 2 == 1).then(|| "+15555550123".to_owned()),
                    user_id: (i % 2 == 0).then(|| "USu5AsEHuQ".to_owned()),
                }
            })
            .collect();
        Self {
            call_id: call_id.into(),
            event_id: event_id.into(),
            duration: lines as f64 * 5.0,
            dialogue,
            ..Self::example()
        }
    }

    /// The event payload.
    pub fn to_event(&self) -> Value {
        let dialogue: Vec<Value> = self
            .dialogue
            .iter()
            .map(|line| {
                json!({
                    "content": line.content,
                    "start": line.start,
                    "end": line.end,
                    "identifier": line.identifier,
                    "userId": line.user_id,
                })
            })
            .collect();
        envelope(
            &self.event_id,
            "v4",
            &self.event_created_at,
            "call.transcript.completed",
            json!({
                "object": "callTranscript",
                "callId": self.call_id,
                "createdAt": time(&self.created_at),
                "duration": self.duration,
                "status": self.status,
                "dialogue": dialogue,
            }),
        )
    }
}

/// A message, rendered as `message.received` or `message.delivered`. Defaults are §6.3's.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageFixture {
    /// `EV…`.
    pub event_id: String,
    /// When the event was created.
    pub event_created_at: DateTime<Utc>,
    /// `AC…` (messages share the prefix with calls).
    pub message_id: String,
    /// Sender, E.164.
    pub from: String,
    /// Recipients, E.164.
    pub to: Vec<String>,
    /// Legacy payloads send `to` as a string (the first recipient); newer ones as an array.
    pub to_as_array: bool,
    /// The text.
    pub body: String,
    /// Newer payloads name the text `text` instead of `body`.
    pub text_field: bool,
    /// MMS attachments.
    pub media: Vec<MediaFixture>,
    /// `US…`.
    pub user_id: String,
    /// `PN…`.
    pub phone_number_id: String,
    /// `CN…`.
    pub conversation_id: String,
    /// When the message was sent.
    pub created_at: DateTime<Utc>,
}

impl MessageFixture {
    /// The inbound MMS of §6.3.
    pub fn example() -> Self {
        Self {
            event_id: "EVc67ec998b35c41d388af50799aeeba3e".into(),
            event_created_at: parse("2025-10-20T16:55:52.557Z"),
            message_id: "AC24a8b8321c4f4cf2be110f4250793d51".into(),
            from: "+15555550123".into(),
            to: vec!["+13365550100".into()],
            to_as_array: false,
            body: "Sending the statements now".into(),
            text_field: false,
            media: vec![MediaFixture {
                url: "https://storage.googleapis.com/opstatics/statement.jpg".into(),
                content_type: "image/jpeg".into(),
                duration: None,
            }],
            user_id: "USu5AsEHuQ".into(),
            phone_number_id: "PNtoDbDhuz".into(),
            conversation_id: "CN78ba0373683c48fd8fd96bc836c51f79".into(),
            created_at: parse("2025-10-20T16:55:52.420Z"),
        }
    }

    /// An outbound message from `our_number` to every number of `to` (a group text when several).
    pub fn outgoing(our_number: &str, to: &[&str]) -> Self {
        Self {
            from: our_number.into(),
            to: to.iter().map(|n| (*n).to_owned()).collect(),
            to_as_array: true,
            media: Vec::new(),
            event_created_at: parse("2025-10-20T16:55:53.557Z"),
            ..Self::example()
        }
    }

    fn object(&self, direction: &str, status: &str) -> Value {
        let to = if self.to_as_array {
            json!(self.to)
        } else {
            json!(self.to.first())
        };
        let mut object = json!({
            "id": self.message_id,
            "object": "message",
            "from": self.from,
            "to": to,
            "direction": direction,
            "media": self.media.iter().map(MediaFixture::to_json).collect::<Vec<_>>(),
            "status": status,
            "createdAt": time(&self.created_at),
            "userId": self.user_id,
            "phoneNumberId": self.phone_number_id,
            "conversationId": self.conversation_id,
        });
        object[if self.text_field { "text" } else { "body" }] = json!(self.body);
        object
    }

    /// `message.received` (incoming).
    pub fn message_received(&self) -> Value {
        envelope(
            &self.event_id,
            "v2",
            &self.event_created_at,
            "message.received",
            self.object("incoming", "received"),
        )
    }

    /// `message.delivered` (outgoing).
    pub fn message_delivered(&self) -> Value {
        envelope(
            &self.event_id,
            "v2",
            &self.event_created_at,
            "message.delivered",
            self.object("outgoing", "delivered"),
        )
    }
}
