//! Domain types parsed once at the edge: a value of these types is known to be well formed.

use std::fmt;

/// Why an identifier or number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a phone number we can put in E.164 form.
    #[error("{0:?} is not a phone number in E.164 form (+ country code and 8 to 15 digits)")]
    PhoneNumber(String),
    /// Not an id of the expected kind.
    #[error("{kind} {value:?} is not valid: {why}")]
    Id {
        /// Which id.
        kind: &'static str,
        /// The value, shortened.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// A phone number in E.164 form (`+` and 8–15 digits). Formatting people type (spaces, dashes, dots,
/// parentheses) is accepted; ten-digit numbers without a country code are taken as North American.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses a phone number.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let refuse = || ParseError::PhoneNumber(shorten(raw));
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.len() > 40 {
            return Err(refuse());
        }
        let has_plus = trimmed.starts_with('+');
        let body = if has_plus { &trimmed[1..] } else { trimmed };
        let mut digits = String::with_capacity(16);
        for c in body.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(refuse()),
            }
        }
        let digits = match (has_plus, digits.len()) {
            (true, 8..=15) if !digits.starts_with('0') => digits,
            (false, 10) if !digits.starts_with(['0', '1']) => format!("1{digits}"),
            (false, 11) if digits.starts_with('1') => digits,
            _ => return Err(refuse()),
        };
        Ok(Self(format!("+{digits}")))
    }

    /// The number, e.g. `+15555550123`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits without the `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// For North American numbers, the ten national digits.
    pub fn nanp_national(&self) -> Option<&str> {
        let d = self.digits();
        (d.len() == 11 && d.starts_with('1')).then(|| &d[1..])
    }

    /// How a person would write it: `(555) 555-0123` for North American numbers, E.164 otherwise.
    pub fn formatted(&self) -> String {
        match self.nanp_national() {
            Some(n) => format!("({}) {}-{}", &n[..3], &n[3..6], &n[6..]),
            None => self.0.clone(),
        }
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn shorten(raw: &str) -> String {
    raw.chars().take(40).collect()
}

fn parse_id(kind: &'static str, raw: &str, prefixes: &[&str]) -> Result<String, ParseError> {
    let err = |why| ParseError::Id {
        kind,
        value: shorten(raw),
        why,
    };
    if raw.is_empty() {
        return Err(err("empty"));
    }
    if raw.len() > 128 {
        return Err(err("longer than 128 characters"));
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(err("only letters, digits, '_', '-' and '.' are allowed"));
    }
    if !prefixes.is_empty() && !prefixes.iter().any(|p| raw.starts_with(p)) {
        return Err(err("wrong prefix"));
    }
    Ok(raw.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, [$($prefix:literal),*]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses and checks the id.
            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                parse_id($kind, raw, &[$($prefix),*]).map(Self)
            }

            /// The id.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A webhook event id: OpenPhone's `EV…`, or a Standard Webhooks `webhook-id` (`msg_…`).
    EventId, "event id", []
);
id_type!(
    /// A call id (`AC…`). Messages share the prefix, so the prefix says nothing about the kind.
    CallId, "call id", ["AC"]
);
id_type!(
    /// A message id (`AC…`).
    MessageId, "message id", ["AC"]
);
id_type!(
    /// A workspace phone number id (`PN…`).
    PhoneNumberId, "phone number id", ["PN"]
);

/// An ISO-8601 time (any offset), as OpenPhone and Notion send them, as epoch milliseconds.
pub fn parse_iso(raw: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The webhook event types the sync processes. Everything else is stored as `skipped` (intake's
/// `Disposition`), so a type OpenPhone adds later still arrives and shows in `/stats`.
///
/// Quo's 2026 types: `call.voicemail.completed` carries the voicemail the sync copies, and `call.missed`
/// is a finished call (the periodic sync would find it anyway), so both are processed;
/// `call.answered` and `call.forwarded` describe a call still in progress, like `call.ringing`, and are
/// skipped — the call is synced when it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `call.completed`
    CallCompleted,
    /// `call.recording.completed`
    CallRecordingCompleted,
    /// `call.transcript.completed` (also sent as `callTranscript`, the type Quo's webhook guide shows)
    CallTranscriptCompleted,
    /// `call.summary.completed` (also sent as `callSummary` in one of OpenPhone's samples)
    CallSummaryCompleted,
    /// `call.voicemail.completed` (Quo 2026)
    CallVoicemailCompleted,
    /// `call.missed` (Quo 2026)
    CallMissed,
    /// `message.received`
    MessageReceived,
    /// `message.delivered`
    MessageDelivered,
}

impl EventType {
    /// Every processed type.
    pub const ALL: [EventType; 8] = [
        EventType::CallCompleted,
        EventType::CallRecordingCompleted,
        EventType::CallTranscriptCompleted,
        EventType::CallSummaryCompleted,
        EventType::CallVoicemailCompleted,
        EventType::CallMissed,
        EventType::MessageReceived,
        EventType::MessageDelivered,
    ];

    /// The type named `raw`, aliases included; `None` for a type the sync does not process.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "callSummary" => Some(EventType::CallSummaryCompleted),
            "callTranscript" => Some(EventType::CallTranscriptCompleted),
            _ => Self::ALL.into_iter().find(|t| t.as_str() == raw),
        }
    }

    /// The canonical name, as stored in the queue's `type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CallCompleted => "call.completed",
            EventType::CallRecordingCompleted => "call.recording.completed",
            EventType::CallTranscriptCompleted => "call.transcript.completed",
            EventType::CallSummaryCompleted => "call.summary.completed",
            EventType::CallVoicemailCompleted => "call.voicemail.completed",
            EventType::CallMissed => "call.missed",
            EventType::MessageReceived => "message.received",
            EventType::MessageDelivered => "message.delivered",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A closed list of the values of an OpenPhone string field this app acts on, plus `Other` for any value
/// OpenPhone sends that it does not know (OpenPhone adds values, and an unknown one must not cost the
/// item): parsed once where the payload is read, written back as sent (`as_str`, serde).
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A value this app does not know, as sent.
            Other(String),
        }

        impl $name {
            /// The value as OpenPhone sends it, and as it is shown and stored.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(raw) => raw,
                }
            }
        }

        impl From<&str> for $name {
            fn from(raw: &str) -> Self {
                match raw {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;

            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Ok(raw.into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Ok(Self::from(&*raw))
            }
        }
    };
}

vocabulary!(
    /// Which way a call or text went.
    Direction {
        /// To the workspace.
        Incoming = "incoming",
        /// From the workspace.
        Outgoing = "outgoing",
    }
);

vocabulary!(
    /// Where a call is in its life.
    CallStatus {
        /// Placed, not ringing yet.
        Queued = "queued",
        /// Placed, not ringing yet.
        Initiated = "initiated",
        /// Ringing.
        Ringing = "ringing",
        /// Someone is talking.
        InProgress = "in-progress",
        /// Taken (Quo 2026 `call.answered`).
        Answered = "answered",
        /// Sent on to another number.
        Forwarded = "forwarded",
        /// Over, after a conversation or a voicemail.
        Completed = "completed",
        /// Over, nobody took it.
        Missed = "missed",
        /// Over, nobody took it.
        NoAnswer = "no-answer",
        /// Over, the line was busy.
        Busy = "busy",
        /// Over, it failed.
        Failed = "failed",
        /// Over, the caller hung up first.
        Canceled = "canceled",
        /// Over, the caller gave up waiting.
        Abandoned = "abandoned",
    }
);

impl CallStatus {
    /// Order of call statuses: a later event with a lower rank (a `call.answered` drained after the call
    /// completed) does not set the status back. Stored in `notion_pages.status_rank`.
    pub fn rank(&self) -> i64 {
        use CallStatus::*;
        match self {
            Queued | Initiated | Ringing => 1,
            InProgress | Answered | Forwarded => 2,
            Completed | Missed | NoAnswer | Busy | Failed | Canceled | Abandoned => 3,
            Other(_) => 0,
        }
    }

    /// Whether the call has ended, so its metadata will not change any more (a forwarded call is over
    /// for this number).
    pub fn is_final(&self) -> bool {
        use CallStatus::*;
        match self {
            Completed | Busy | Failed | NoAnswer | Canceled | Missed | Forwarded | Abandoned => {
                true
            }
            Queued | Initiated | Ringing | InProgress | Answered | Other(_) => false,
        }
    }

    /// Whether the call rang out without anyone taking it.
    pub fn unanswered(&self) -> bool {
        use CallStatus::*;
        match self {
            Missed | NoAnswer | Busy | Failed | Canceled | Abandoned => true,
            Queued | Initiated | Ringing | InProgress | Answered | Forwarded | Completed
            | Other(_) => false,
        }
    }
}

vocabulary!(
    /// Where a text is on its way.
    MessageStatus {
        /// Waiting to be sent.
        Queued = "queued",
        /// Being sent.
        Sending = "sending",
        /// Handed to the carrier.
        Sent = "sent",
        /// Received by the workspace.
        Received = "received",
        /// Delivered to the other party.
        Delivered = "delivered",
        /// The carrier could not deliver it.
        Undelivered = "undelivered",
        /// Sending failed.
        Failed = "failed",
    }
);

impl MessageStatus {
    /// Order of message statuses: a later event with a lower rank is not written over a higher one.
    /// Stored in `notion_pages.status_rank`.
    pub fn rank(&self) -> i64 {
        use MessageStatus::*;
        match self {
            Queued | Sending | Other(_) => 0,
            Sent | Received => 1,
            Delivered | Undelivered | Failed => 2,
        }
    }
}

vocabulary!(
    /// How far OpenPhone is with something it makes after a call: a transcript, a summary, a recording
    /// segment, a voicemail.
    ProcessingStatus {
        /// There is none and will be none (no plan, too short).
        Absent = "absent",
        /// Being made.
        InProgress = "in-progress",
        /// Being made.
        Processing = "processing",
        /// Waiting to be made.
        Queued = "queued",
        /// A recording paused mid-call.
        Paused = "paused",
        /// A recording being stopped.
        Stopping = "stopping",
        /// Done.
        Completed = "completed",
        /// Will not be made.
        Failed = "failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_accepts_what_people_type() {
        for raw in [
            "+15555550123",
            "5555550123",
            "15555550123",
            "(555) 555-0123",
            "555.555.0123",
            "555-555-0123",
            "+1 555 555 0123",
        ] {
            assert_eq!(E164::parse(raw).unwrap().as_str(), "+15555550123", "{raw}");
        }
        assert_eq!(
            E164::parse("+442071838750").unwrap().as_str(),
            "+442071838750"
        );
    }

    #[test]
    fn e164_refuses_what_is_not_a_number() {
        for raw in [
            "",
            "+",
            "12345",
            "555-0123",
            "+0123456789",
            "call me",
            "+1555555012x",
            "0555550123",
            "+1234567890123456",
        ] {
            assert!(E164::parse(raw).is_err(), "{raw} was accepted");
        }
        let long = "9".repeat(200);
        let err = E164::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 150, "the error echoes the whole input: {err}");
    }

    #[test]
    fn e164_formats_north_american_numbers() {
        let n = E164::parse("+15555550123").unwrap();
        assert_eq!(n.formatted(), "(555) 555-0123");
        assert_eq!(n.nanp_national(), Some("5555550123"));
        assert_eq!(
            E164::parse("+442071838750").unwrap().formatted(),
            "+442071838750"
        );
    }

    #[test]
    fn ids_check_prefix_and_characters() {
        assert!(CallId::parse("ACbaee66e137f0467dbed5ad4bc8d60800").is_ok());
        assert!(CallId::parse("PN123").is_err());
        assert!(PhoneNumberId::parse("PNtoDbDhuz").is_ok());
        assert!(EventId::parse("msg_2Lh9KRb0pzN4LePd3XiA4xdg8eJ").is_ok());
        assert!(EventId::parse("EV1 2").is_err());
        assert!(EventId::parse("../etc/passwd").is_err());
        assert!(EventId::parse(&"E".repeat(129)).is_err());
    }

    #[test]
    fn vocabularies_keep_unknown_values_as_sent() {
        let status: CallStatus = serde_json::from_value(serde_json::json!("no-answer")).unwrap();
        assert_eq!(status, CallStatus::NoAnswer);
        let new: CallStatus = serde_json::from_value(serde_json::json!("transferred")).unwrap();
        assert_eq!(new, CallStatus::Other("transferred".into()));
        assert_eq!(serde_json::to_value(&new).unwrap(), "transferred");
        assert_eq!(new.rank(), 0);
        assert!(!new.is_final());
        assert_eq!(
            "in-progress".parse::<ProcessingStatus>(),
            Ok(ProcessingStatus::InProgress)
        );
        assert_eq!(Direction::from("outgoing").as_str(), "outgoing");
    }

    #[test]
    fn event_types_keep_their_stored_names() {
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
        }
        assert_eq!(
            EventType::parse("callTranscript"),
            Some(EventType::CallTranscriptCompleted)
        );
        assert_eq!(EventType::parse("call.ringing"), None);
    }
}
