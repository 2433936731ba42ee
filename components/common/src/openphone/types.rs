//! OpenPhone resources as the REST API and the webhooks send them. Deserialization is lenient on purpose:
//! app webhooks (v2/v3), API webhooks (v4) and REST responses differ (`body`/`text`, `to` as a string or an
//! array, `media` and `voicemail` only in some), so every field but the id is optional and unknown fields
//! are ignored. An `Option` field a payload leaves out is `None` by serde's own rule; the other fields
//! (lists, text, and those read by a `deserialize_with` function) say `#[serde(default)]`.

use serde::{Deserialize, Deserializer};

use crate::domain::{CallStatus, Direction, MessageStatus, ProcessingStatus};

/// A string or a list of strings (`to` is either, depending on the payload version).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<Option<String>>),
        Null,
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v.into_iter().flatten().collect(),
        Some(OneOrMany::Null) | None => Vec::new(),
    })
}

/// A number that may arrive as an integer, a float or a numeric string.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        F(f64),
        S(String),
    }
    Ok(match Option::<Num>::deserialize(d)? {
        Some(Num::F(f)) => Some(f),
        Some(Num::S(s)) => s.trim().parse().ok(),
        None => None,
    })
}

/// A media attachment or recording in a webhook payload.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    /// Download URL.
    pub url: Option<String>,
    /// MIME type.
    #[serde(default, rename = "type")]
    pub content_type: Option<String>,
    /// Seconds, for audio.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub duration: Option<f64>,
}

/// A voicemail, in a webhook (`url`, `type`, `duration`) or from REST (`recordingUrl`, `transcript`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Voicemail {
    /// Download URL (webhook).
    pub url: Option<String>,
    /// Download URL (REST).
    pub recording_url: Option<String>,
    /// MIME type.
    #[serde(default, rename = "type")]
    pub content_type: Option<String>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub duration: Option<f64>,
    /// Transcription of the voicemail, when OpenPhone made one.
    #[serde(default, alias = "transcription")]
    pub transcript: Option<String>,
    /// `completed` or `in-progress` (REST).
    pub status: Option<ProcessingStatus>,
}

impl Voicemail {
    /// Where the audio is, whichever shape it came in.
    pub fn audio_url(&self) -> Option<&str> {
        self.url
            .as_deref()
            .or(self.recording_url.as_deref())
            .filter(|u| !u.is_empty())
    }
}

/// A call, from any payload version or REST.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// `AC…`.
    pub id: String,
    /// `PN…` of the workspace number.
    pub phone_number_id: Option<String>,
    /// `US…`.
    pub user_id: Option<String>,
    /// `US…` of the user who answered an incoming call (v4 payloads and REST).
    pub answered_by: Option<String>,
    /// `US…` of the user who placed an outgoing call (v4 payloads and REST).
    pub initiated_by: Option<String>,
    /// `incoming` or `outgoing`.
    pub direction: Option<Direction>,
    /// `completed`, `missed`, `no-answer`, …
    pub status: Option<CallStatus>,
    /// Caller (legacy payloads).
    pub from: Option<String>,
    /// Callee(s) (legacy payloads).
    #[serde(default, deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// The other parties (v4 payloads and REST).
    #[serde(default, deserialize_with = "one_or_many")]
    pub participants: Vec<String>,
    /// ISO-8601.
    pub created_at: Option<String>,
    /// ISO-8601.
    pub answered_at: Option<String>,
    /// ISO-8601.
    pub completed_at: Option<String>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub duration: Option<f64>,
    /// e.g. `phone-number`, `phone-menu`.
    pub call_route: Option<String>,
    /// E.164 or `US…`.
    pub forwarded_from: Option<String>,
    /// E.164 or `US…`.
    pub forwarded_to: Option<String>,
    /// `CN…`.
    pub conversation_id: Option<String>,
    /// Recording segments carried by legacy `call.recording.completed` payloads.
    #[serde(default)]
    pub media: Vec<Media>,
    /// Voicemail carried by legacy `call.completed` payloads.
    pub voicemail: Option<Voicemail>,
}

/// A text message, from any payload version or REST.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `AC…` (messages share the prefix with calls).
    pub id: String,
    /// `PN…`.
    pub phone_number_id: Option<String>,
    /// `US…`.
    pub user_id: Option<String>,
    /// `incoming` or `outgoing`.
    pub direction: Option<Direction>,
    /// `received`, `queued`, `sent`, `delivered`, `undelivered`.
    pub status: Option<MessageStatus>,
    /// Sender, E.164.
    pub from: Option<String>,
    /// Every recipient.
    #[serde(default, deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    /// Content (legacy payloads call it `body`, newer ones and REST `text`).
    #[serde(default, alias = "body")]
    pub text: Option<String>,
    /// MMS attachments (webhooks only).
    #[serde(default)]
    pub media: Vec<Media>,
    /// ISO-8601.
    pub created_at: Option<String>,
    /// ISO-8601.
    pub updated_at: Option<String>,
    /// `CN…`.
    pub conversation_id: Option<String>,
}

/// A call's AI summary.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The call.
    pub call_id: Option<String>,
    /// `absent`, `in-progress`, `completed`, `failed`.
    pub status: Option<ProcessingStatus>,
    /// Summary points.
    pub summary: Option<Vec<String>>,
    /// Next steps.
    pub next_steps: Option<Vec<String>>,
}

/// One utterance of a transcript.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DialogueSegment {
    /// What was said.
    #[serde(default)]
    pub content: String,
    /// Seconds from the start.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub start: Option<f64>,
    /// Seconds from the start.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub end: Option<f64>,
    /// E.164 of the speaker, for the external party.
    pub identifier: Option<String>,
    /// `US…` when the speaker is a workspace user.
    pub user_id: Option<String>,
}

/// A call's transcript.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcript {
    /// The call.
    pub call_id: Option<String>,
    /// `absent`, `in-progress`, `completed`, `failed`.
    pub status: Option<ProcessingStatus>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub duration: Option<f64>,
    /// The dialogue, in order.
    pub dialogue: Option<Vec<DialogueSegment>>,
}

/// One recording segment from `GET /v1/call-recordings/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// `CR…`.
    pub id: Option<String>,
    /// Download URL.
    pub url: Option<String>,
    /// MIME type.
    #[serde(default, rename = "type")]
    pub content_type: Option<String>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub duration: Option<f64>,
    /// `completed`, `processing`, …
    pub status: Option<ProcessingStatus>,
}

/// A workspace user attached to a phone number.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumberUser {
    /// `US…`.
    pub id: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Email.
    pub email: Option<String>,
}

impl PhoneNumberUser {
    /// "First Last", or the email, or the id.
    pub fn display_name(&self) -> String {
        let name = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            name
        } else {
            self.email.clone().unwrap_or_else(|| self.id.clone())
        }
    }
}

/// A workspace phone number from `GET /v1/phone-numbers`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumber {
    /// `PN…`.
    pub id: String,
    /// E.164.
    pub number: Option<String>,
    /// Name given in OpenPhone.
    pub name: Option<String>,
    /// Users who share the number.
    #[serde(default)]
    pub users: Vec<PhoneNumberUser>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn legacy_and_v4_calls_both_parse() {
        let legacy: Call = serde_json::from_value(json!({
            "id": "AC1", "object": "call", "from": "+15555550123", "to": "+13365550100",
            "direction": "incoming", "media": [], "status": "completed",
            "voicemail": { "url": "https://storage.googleapis.com/x.mp3", "type": "audio/mpeg", "duration": 17 },
            "createdAt": "2025-10-20T19:21:59.545Z", "answeredAt": null, "phoneNumberId": "PN1"
        }))
        .unwrap();
        assert_eq!(legacy.to, vec!["+13365550100"]);
        assert_eq!(
            legacy.voicemail.unwrap().audio_url(),
            Some("https://storage.googleapis.com/x.mp3")
        );
        let v4: Call = serde_json::from_value(json!({
            "id": "AC2", "direction": "outgoing", "status": "completed", "duration": 333,
            "participants": ["+15555550123"], "forwardedFrom": null, "aiHandled": null, "newField": {"x": 1}
        }))
        .unwrap();
        assert_eq!(v4.participants, vec!["+15555550123"]);
        assert_eq!(v4.duration, Some(333.0));
        assert!(v4.to.is_empty());
    }

    #[test]
    fn messages_accept_body_or_text_and_to_as_string_or_array() {
        let legacy: Message = serde_json::from_value(json!({
            "id": "AC3", "from": "+1555", "to": "+1336", "body": "hi",
            "media": [{ "url": "https://x/y.jpg", "type": "image/jpeg" }]
        }))
        .unwrap();
        assert_eq!(legacy.text.as_deref(), Some("hi"));
        assert_eq!(legacy.to, vec!["+1336"]);
        assert_eq!(legacy.media.len(), 1);
        let newer: Message = serde_json::from_value(
            json!({ "id": "AC4", "to": ["+1", "+2", null], "text": "yo", "to2": 1 }),
        )
        .unwrap();
        assert_eq!(newer.to, vec!["+1", "+2"]);
        assert_eq!(newer.text.as_deref(), Some("yo"));
    }

    #[test]
    fn transcripts_tolerate_missing_times_and_string_numbers() {
        let t: Transcript = serde_json::from_value(json!({
            "callId": "AC5", "status": "completed", "duration": "112.4",
            "dialogue": [{ "content": "hello", "identifier": "+1555", "userId": null }]
        }))
        .unwrap();
        let d = &t.dialogue.unwrap()[0];
        assert_eq!(d.start, None);
        assert_eq!(t.duration, Some(112.4));
    }

    #[test]
    fn a_call_without_id_is_refused() {
        assert!(serde_json::from_value::<Call>(json!({ "status": "completed" })).is_err());
    }

    #[test]
    fn user_display_names_fall_back() {
        let u = PhoneNumberUser {
            id: "US1".into(),
            first_name: Some("Jacob".into()),
            ..Default::default()
        };
        assert_eq!(u.display_name(), "Jacob");
        let u = PhoneNumberUser {
            id: "US1".into(),
            email: Some("j@x.com".into()),
            ..Default::default()
        };
        assert_eq!(u.display_name(), "j@x.com");
    }
}
