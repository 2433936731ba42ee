//! Workloads for the soak test and the benchmarks: the workspace's lines, the people they talk to, and
//! the webhook events of calls and messages, built from `test_servers`' fixtures, with the OpenPhone
//! server set up to serve what the events refer to.

use crate::openphone::model::PhoneNumber;
use crate::webhooks::{
    CallFixture, MediaFixture, MessageFixture, SummaryFixture, TranscriptFixture,
};
use crate::OpenPhoneServer;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// A workspace phone number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// `PN…`.
    pub id: String,
    /// E.164.
    pub number: String,
}

impl Line {
    /// Line `i` (`PNline0000`, `+13365550100`, …), registered on `openphone` so the app can resolve it.
    pub fn register(openphone: &OpenPhoneServer, i: usize) -> Line {
        let line = Line {
            id: format!("PNline{i:04}"),
            number: format!("+1336555{:04}", 100 + i),
        };
        openphone.add_phone_number(PhoneNumber::new(&line.id, &line.number));
        line
    }
}

/// Person `i` (below 9000, so the number stays 11 digits) the workspace talks to, E.164.
pub fn contact(i: usize) -> String {
    format!("+1555555{:04}", 1000 + i)
}

/// Bytes of each generated recording and voicemail.
pub const MEDIA_BYTES: u64 = 24 * 1024;

/// A call and the events OpenPhone sends about it.
#[derive(Clone, Debug)]
pub struct CallScript {
    /// The call, as `call.completed` and `call.recording.completed` carry it.
    pub call: CallFixture,
    /// Its transcript, for an answered call.
    pub transcript: Option<TranscriptFixture>,
    /// Its summary, for an answered call.
    pub summary: Option<SummaryFixture>,
}

impl CallScript {
    /// An incoming call on `line` from `other`, answered, started at `at`, with one recording segment
    /// of [`MEDIA_BYTES`] served by `openphone`, then a transcript and a summary.
    pub fn answered(
        openphone: &OpenPhoneServer,
        line: &Line,
        other: &str,
        call_id: &str,
        at: DateTime<Utc>,
    ) -> Self {
        openphone.add_generated_recording(call_id, MEDIA_BYTES);
        let mut call = Self::base(line, other, call_id, at);
        call.answered_at = Some(at + Duration::seconds(3));
        call.voicemail = None;
        let transcript = TranscriptFixture {
            call_id: call_id.into(),
            event_id: format!("EV{call_id}-transcript"),
            event_created_at: at + Duration::seconds(90),
            created_at: at + Duration::seconds(85),
            ..TranscriptFixture::example()
        };
        let summary = SummaryFixture {
            call_id: call_id.into(),
            event_id: format!("EV{call_id}-summary"),
            event_created_at: at + Duration::seconds(95),
            summary: vec![format!(
                "{other} called {} about order {call_id}.",
                line.number
            )],
            ..SummaryFixture::example()
        };
        Self {
            call,
            transcript: Some(transcript),
            summary: Some(summary),
        }
    }

    /// An incoming call on `line` from `other` that nobody answered, with a voicemail of
    /// [`MEDIA_BYTES`] that the `call.completed` payload links.
    pub fn missed_with_voicemail(
        openphone: &OpenPhoneServer,
        line: &Line,
        other: &str,
        call_id: &str,
        at: DateTime<Utc>,
    ) -> Self {
        let url = openphone.add_generated_media(
            &format!("/voicemails/{call_id}.mp3"),
            "audio/mpeg",
            MEDIA_BYTES,
        );
        let mut call = Self::base(line, other, call_id, at);
        call.answered_at = None;
        call.voicemail = Some(MediaFixture {
            url,
            content_type: "audio/mpeg".into(),
            duration: Some(17),
        });
        Self {
            call,
            transcript: None,
            summary: None,
        }
    }

    fn base(line: &Line, other: &str, call_id: &str, at: DateTime<Utc>) -> CallFixture {
        CallFixture {
            event_id: format!("EV{call_id}-completed"),
            event_created_at: at + Duration::seconds(61),
            call_id: call_id.into(),
            phone_number_id: line.id.clone(),
            our_number: line.number.clone(),
            other_number: other.into(),
            created_at: at,
            completed_at: Some(at + Duration::seconds(60)),
            ..CallFixture::example()
        }
    }

    /// Whether the call has a recording, a transcript and a summary to come.
    pub fn answered_call(&self) -> bool {
        self.transcript.is_some()
    }

    /// Every webhook event of the call, in the order OpenPhone sends them: `call.completed`, then for
    /// an answered call `call.recording.completed`, `call.transcript.completed` and
    /// `call.summary.completed`.
    pub fn events(&self) -> Vec<Value> {
        let mut events = vec![self.call.call_completed_v2()];
        if let (Some(transcript), Some(summary)) = (&self.transcript, &self.summary) {
            let mut recording = self.call.clone();
            recording.event_id = format!("EV{}-recording", self.call.call_id);
            recording.event_created_at = self.call.event_created_at + Duration::seconds(5);
            events.push(recording.call_recording_completed());
            events.push(transcript.to_event());
            events.push(summary.to_event());
        }
        events
    }
}

/// A text and the event OpenPhone sends about it.
#[derive(Clone, Debug)]
pub struct MessageScript {
    /// The message.
    pub message: MessageFixture,
    /// Sent by the workspace (`message.delivered`) rather than received (`message.received`).
    pub outgoing: bool,
}

impl MessageScript {
    /// A text on `line` with `others` (one person, or several for a group text), received from the
    /// first of them or, when `outgoing`, sent to all of them.
    pub fn new(
        line: &Line,
        others: &[String],
        message_id: &str,
        at: DateTime<Utc>,
        outgoing: bool,
    ) -> Self {
        let mut message = if outgoing {
            let to: Vec<&str> = others.iter().map(String::as_str).collect();
            MessageFixture::outgoing(&line.number, &to)
        } else {
            MessageFixture {
                from: others[0].clone(),
                to: vec![line.number.clone()],
                ..MessageFixture::example()
            }
        };
        message.event_id = format!("EV{message_id}");
        message.message_id = message_id.into();
        message.phone_number_id = line.id.clone();
        message.created_at = at;
        message.event_created_at = at + Duration::milliseconds(150);
        message.body = format!("Text {message_id} on {}", line.number);
        message.media = Vec::new();
        Self { message, outgoing }
    }

    /// The webhook event.
    pub fn event(&self) -> Value {
        if self.outgoing {
            self.message.message_delivered()
        } else {
            self.message.message_received()
        }
    }
}
