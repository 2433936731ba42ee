//! OpenPhone v1 resources as the API returns them (openphone-api.md §4), with constructors that fill the
//! fields a test does not care about.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

/// A fixed instant used as the default timestamp, so seeded state is deterministic.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).unwrap_or_default() // 2025-01-01T00:00:00Z
}

/// A workspace user as listed inside a phone number.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumberUser {
    /// `US…`.
    pub id: String,
    /// Email address.
    pub email: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// `GR…`.
    pub group_id: String,
}

impl PhoneNumberUser {
    /// A `member` `id` (`US…`) with `email`, in the main group: a colleague to add to a shared number's
    /// `users`.
    pub fn member(id: &str, email: &str) -> Self {
        Self {
            id: id.into(),
            email: email.into(),
            first_name: None,
            last_name: None,
            role: "member".into(),
            group_id: "GRmain".into(),
        }
    }
}

/// `GET /v1/phone-numbers` item.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneNumber {
    /// `PN…`.
    pub id: String,
    /// `GR…`.
    pub group_id: String,
    /// Port request, if being ported.
    pub port_request_id: Option<String>,
    /// e.g. `(336) 555-0100`.
    pub formatted_number: Option<String>,
    /// Forwarding number.
    pub forward: Option<String>,
    /// Display name.
    pub name: String,
    /// E.164.
    pub number: String,
    /// Porting status.
    pub porting_status: Option<String>,
    /// Emoji.
    pub symbol: Option<String>,
    /// Users with access to the number.
    pub users: Vec<PhoneNumberUser>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// Calling and messaging restrictions.
    pub restrictions: Value,
}

impl PhoneNumber {
    /// A number `id` (`PN…`) with E.164 `number` and one user, the workspace owner `USowner`.
    pub fn new(id: &str, number: &str) -> Self {
        let unrestricted =
            json!({ "CA": "unrestricted", "Intl": "unrestricted", "US": "unrestricted" });
        Self {
            id: id.into(),
            group_id: "GRmain".into(),
            port_request_id: None,
            formatted_number: None,
            forward: None,
            name: format!("Line {number}"),
            number: number.into(),
            porting_status: None,
            symbol: None,
            users: vec![PhoneNumberUser {
                id: "USowner".into(),
                email: "owner@example.com".into(),
                first_name: Some("Olive".into()),
                last_name: Some("Owner".into()),
                role: "owner".into(),
                group_id: "GRmain".into(),
            }],
            created_at: epoch(),
            updated_at: epoch(),
            restrictions: json!({ "calling": unrestricted, "messaging": unrestricted }),
        }
    }
}

/// `GET /v1/users` item.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// `US…`.
    pub id: String,
    /// Email address.
    pub email: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Avatar.
    pub picture_url: Option<String>,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// A member `id` with `email`.
    pub fn new(id: &str, email: &str) -> Self {
        Self {
            id: id.into(),
            email: email.into(),
            first_name: None,
            last_name: None,
            picture_url: None,
            role: "member".into(),
            created_at: epoch(),
            updated_at: epoch(),
        }
    }
}

/// `GET /v1/conversations` item.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// `CN…`.
    pub id: String,
    /// `PN…` of the workspace number.
    pub phone_number_id: String,
    /// The other parties, E.164.
    pub participants: Vec<String>,
    /// Display name.
    pub name: Option<String>,
    /// `US…`.
    pub assigned_to: Option<String>,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// Last update (what `updatedAfter`/`updatedBefore` filter on).
    pub updated_at: Option<DateTime<Utc>>,
    /// Deletion time; deleted conversations are what `excludeInactive=true` leaves out.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Last call or message (what the list is ordered by, newest first).
    pub last_activity_at: Option<DateTime<Utc>>,
    /// `AC…` of the last activity.
    pub last_activity_id: Option<String>,
    /// Muted until.
    pub muted_until: Option<DateTime<Utc>>,
    /// Snoozed until.
    pub snoozed_until: Option<DateTime<Utc>>,
}

impl Conversation {
    /// A conversation of `phone_number_id` with `participants`, created, updated and last active at `at`.
    pub fn new(id: &str, phone_number_id: &str, participants: &[&str], at: DateTime<Utc>) -> Self {
        Self {
            id: id.into(),
            phone_number_id: phone_number_id.into(),
            participants: participants.iter().map(|p| (*p).to_owned()).collect(),
            name: None,
            assigned_to: None,
            created_at: Some(at),
            updated_at: Some(at),
            deleted_at: None,
            last_activity_at: Some(at),
            last_activity_id: None,
            muted_until: None,
            snoozed_until: None,
        }
    }
}

/// `GET /v1/calls` item and `GET /v1/calls/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// `AC…`.
    pub id: String,
    /// `PN…`.
    pub phone_number_id: String,
    /// `US…`.
    pub user_id: String,
    /// `incoming` or `outgoing`.
    pub direction: String,
    /// `completed`, `no-answer`, `missed`, …
    pub status: String,
    /// Start.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: Option<DateTime<Utc>>,
    /// Answer time.
    pub answered_at: Option<DateTime<Utc>>,
    /// End.
    pub completed_at: Option<DateTime<Utc>>,
    /// `US…` who answered.
    pub answered_by: Option<String>,
    /// `US…` who called.
    pub initiated_by: Option<String>,
    /// Seconds.
    pub duration: u32,
    /// e.g. `phone-number`.
    pub call_route: Option<String>,
    /// E.164 or `US…`.
    pub forwarded_from: Option<String>,
    /// E.164 or `US…`.
    pub forwarded_to: Option<String>,
    /// e.g. `ai-agent`.
    pub ai_handled: Option<String>,
    /// The other party (E.164); what `participants=` matches.
    pub participants: Vec<String>,
}

impl Call {
    /// A completed incoming call `id` on `phone_number_id` with `participant`, started at `created_at`,
    /// 60 seconds long.
    pub fn new(
        id: &str,
        phone_number_id: &str,
        participant: &str,
        created_at: DateTime<Utc>,
    ) -> Self {
        let answered_at = created_at + chrono::Duration::seconds(5);
        let completed_at = answered_at + chrono::Duration::seconds(60);
        Self {
            id: id.into(),
            phone_number_id: phone_number_id.into(),
            user_id: "USowner".into(),
            direction: "incoming".into(),
            status: "completed".into(),
            created_at,
            updated_at: Some(completed_at),
            answered_at: Some(answered_at),
            completed_at: Some(completed_at),
            answered_by: Some("USowner".into()),
            initiated_by: None,
            duration: 60,
            call_route: Some("phone-number".into()),
            forwarded_from: None,
            forwarded_to: None,
            ai_handled: None,
            participants: vec![participant.into()],
        }
    }
}

/// One segment of `GET /v1/call-recordings/{callId}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// e.g. `CR…`.
    pub id: String,
    /// Seconds.
    pub duration: Option<u32>,
    /// Segment start.
    pub start_time: Option<DateTime<Utc>>,
    /// MIME type, e.g. `audio/mpeg`.
    #[serde(rename = "type")]
    pub content_type: Option<String>,
    /// Download URL.
    pub url: Option<String>,
    /// `completed`, `in-progress`, `processing`, …
    pub status: Option<String>,
}

impl Recording {
    /// A completed segment `id` downloadable at `url`.
    pub fn completed(id: &str, url: &str, content_type: &str, duration: u32) -> Self {
        Self {
            id: id.into(),
            duration: Some(duration),
            start_time: Some(epoch()),
            content_type: Some(content_type.into()),
            url: Some(url.into()),
            status: Some("completed".into()),
        }
    }
}

/// `GET /v1/call-summaries/{callId}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `AC…`.
    pub call_id: String,
    /// `completed`, `in-progress`, `absent`, `failed`.
    pub status: String,
    /// Summary lines.
    pub summary: Option<Vec<String>>,
    /// Next-step lines.
    pub next_steps: Option<Vec<String>>,
    /// AI jobs.
    pub jobs: Option<Value>,
}

/// One line of a transcript.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DialogueSegment {
    /// What was said.
    pub content: String,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// E.164 of an external speaker.
    pub identifier: Option<String>,
    /// `US…` of a workspace speaker.
    pub user_id: Option<String>,
}

/// `GET /v1/call-transcripts/{callId}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcript {
    /// `AC…`.
    pub call_id: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Seconds.
    pub duration: f64,
    /// `completed`, …
    pub status: String,
    /// Lines in order.
    pub dialogue: Option<Vec<DialogueSegment>>,
}

/// `GET /v1/call-voicemails/{callId}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Voicemail {
    /// `VM…`.
    pub id: String,
    /// `completed` or `in-progress`.
    pub status: String,
    /// Seconds.
    pub duration: Option<u32>,
    /// Transcription.
    pub transcript: Option<String>,
    /// Download URL.
    pub recording_url: Option<String>,
}

/// `GET /v1/messages` item and `GET /v1/messages/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// `AC…`.
    pub id: String,
    /// Recipients, E.164.
    pub to: Vec<String>,
    /// Sender, E.164.
    pub from: String,
    /// The text.
    pub text: String,
    /// `PN…`.
    pub phone_number_id: Option<String>,
    /// `incoming` or `outgoing`.
    pub direction: String,
    /// `US…`.
    pub user_id: String,
    /// `queued`, `sent`, `delivered`, `undelivered`.
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

impl Message {
    /// An incoming message `id` from `from` to the workspace number `to` on `phone_number_id`.
    pub fn incoming(
        id: &str,
        phone_number_id: &str,
        from: &str,
        to: &str,
        text: &str,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: id.into(),
            to: vec![to.into()],
            from: from.into(),
            text: text.into(),
            phone_number_id: Some(phone_number_id.into()),
            direction: "incoming".into(),
            user_id: "USowner".into(),
            status: "received".into(),
            created_at,
            updated_at: created_at,
        }
    }
}

/// `GET /v1/contacts` item.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Contact id.
    pub id: String,
    /// Caller-chosen id (what `externalIds[]` filters on).
    pub external_id: Option<String>,
    /// Where the contact came from (what `sources[]` filters on).
    pub source: Option<String>,
    /// Link to the source.
    pub source_url: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// `US…`.
    pub created_by_user_id: String,
    /// `{firstName, lastName, company, role, emails[], phoneNumbers[]}`.
    pub default_fields: Value,
    /// Custom fields.
    pub custom_fields: Value,
}

impl Contact {
    /// A contact named `first_name last_name` with the given phone numbers and emails.
    pub fn new(
        id: &str,
        first_name: &str,
        last_name: &str,
        phones: &[&str],
        emails: &[&str],
    ) -> Self {
        let entries = |values: &[&str], kind: &str| -> Vec<Value> {
            values
                .iter()
                .enumerate()
                .map(|(i, value)| json!({ "name": kind, "value": value, "id": format!("{id}-{kind}-{i}") }))
                .collect()
        };
        Self {
            id: id.into(),
            external_id: None,
            source: None,
            source_url: None,
            created_at: epoch(),
            updated_at: epoch(),
            created_by_user_id: "USowner".into(),
            default_fields: json!({
                "firstName": first_name,
                "lastName": last_name,
                "company": null,
                "role": null,
                "emails": entries(emails, "email"),
                "phoneNumbers": entries(phones, "phone"),
            }),
            custom_fields: json!([]),
        }
    }
}

/// A webhook created through `POST /v1/webhooks/{family}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// `WH…`.
    pub id: String,
    /// `US…`.
    pub user_id: String,
    /// `OR…`.
    pub org_id: String,
    /// Label.
    pub label: Option<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Where deliveries go.
    pub url: String,
    /// The base64 signing key (see [`crate::webhooks`]).
    pub key: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// Deletion time.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Subscribed events.
    pub events: Vec<String>,
    /// `PN…` ids or `["*"]`.
    pub resource_ids: Vec<String>,
}
