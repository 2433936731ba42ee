//! Call pages in the Calls database. Each event of a call (completed, recording, transcript, summary,
//! voicemail) brings some facts; the page gets exactly those, so events in any order build the same page
//! and nothing known is blanked by an event that does not know it. Transcript, summary, next steps,
//! recordings and voicemail also go into the page body, each section appended once.

use serde_json::{json, Map, Value};

use super::call_media::CallMedia;
use super::canvas_backlink;
use super::canvas_relink::canvas_or_retry_later;
use super::map::Kind;
use super::{split_for_create, Section, WriteError, Writer};
use crate::canvas::Source;
use crate::contacts;
use crate::domain::{CallStatus, Direction, ProcessingStatus, E164};
use crate::notion::properties as p;
use crate::openphone::types::{
    Call, DialogueSegment, PhoneNumberUser, Recording, Summary, Transcript, Voicemail,
};
use crate::pending::{self, Needs};
use crate::phone_numbers::{self, KnownNumber};

/// A recording segment to link.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingLink {
    /// Where the audio is.
    pub url: String,
    /// MIME type, when OpenPhone says.
    pub content_type: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
}

impl RecordingLink {
    /// The link of a segment OpenPhone lists, if it has a URL.
    pub fn from_recording(recording: &Recording) -> Option<Self> {
        Some(Self {
            url: recording.url.clone().filter(|u| !u.is_empty())?,
            content_type: recording.content_type.clone(),
            duration: recording.duration,
        })
    }

    /// The links of the segments OpenPhone lists that are completed (or do not say) and have a URL, in
    /// order.
    pub fn completed(segments: &[Recording]) -> Vec<Self> {
        segments
            .iter()
            .filter(|r| {
                r.status
                    .as_ref()
                    .is_none_or(|s| *s == ProcessingStatus::Completed)
            })
            .filter_map(Self::from_recording)
            .collect()
    }
}

/// A voicemail to link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoicemailLink {
    /// Where the audio is.
    pub url: Option<String>,
    /// OpenPhone's transcription.
    pub transcript: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
}

impl VoicemailLink {
    /// The link of a voicemail as a webhook or REST gives it (its audio in either shape).
    pub fn from_voicemail(voicemail: &Voicemail) -> Self {
        Self {
            url: voicemail.audio_url().map(String::from),
            transcript: voicemail.transcript.clone(),
            duration: voicemail.duration,
        }
    }
}

/// What one event knows about a call.
#[derive(Debug, Clone, Default)]
pub struct CallFacts {
    /// `AC…`.
    pub call_id: String,
    /// `PN…`, when known.
    pub phone_number_id: Option<String>,
    /// The call's metadata.
    pub call: Option<Call>,
    /// Every recording segment, in order.
    pub recordings: Option<Vec<RecordingLink>>,
    /// The transcript.
    pub transcript: Option<Transcript>,
    /// The summary and next steps.
    pub summary: Option<Summary>,
    /// The voicemail.
    pub voicemail: Option<VoicemailLink>,
    /// When the call was made (ISO-8601), when `call` is not known: dates the media's storage keys.
    pub call_created_at: Option<String>,
    /// Some media could not be copied yet: link what we have in the properties, but leave the body's
    /// Recordings and Voicemail sections for the retry that has our copies.
    pub media_pending: bool,
}

/// Whether a call with `status` rang out without anyone taking it.
fn unanswered(status: Option<&CallStatus>) -> bool {
    status.is_some_and(CallStatus::unanswered)
}

/// The icon of a call page: a voicemail, a missed call, or the direction; `None` when these facts say
/// none of that (a transcript event), so the page keeps its icon.
fn call_icon(call: Option<&Call>, has_voicemail: bool) -> Option<&'static str> {
    if has_voicemail {
        return Some(p::icons::VOICEMAIL);
    }
    let call = call?;
    if unanswered(call.status.as_ref()) {
        return Some(p::icons::MISSED_CALL);
    }
    match call.direction.as_ref()? {
        Direction::Incoming => Some(p::icons::INCOMING_CALL),
        Direction::Outgoing => Some(p::icons::OUTGOING_CALL),
        Direction::Other(_) => None,
    }
}

/// The workspace user who handled a call: who answered it or placed it; the call's user when the payload
/// does not say (a legacy one) and the call was placed or answered. `None` for a call nobody took (a
/// legacy voicemail is `completed` but was never answered).
fn handler_of(call: &Call) -> Option<&str> {
    let taken = call.direction == Some(Direction::Outgoing) || call.answered_at.is_some();
    call.answered_by
        .as_deref()
        .or(call.initiated_by.as_deref())
        .or_else(|| {
            (taken && !unanswered(call.status.as_ref()))
                .then_some(call.user_id.as_deref())
                .flatten()
        })
}

/// Who a page names: the other parties, and the workspace user who handled the item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    /// The other parties, by contact name or formatted number.
    pub contact: Option<String>,
    /// The workspace user, by name.
    pub handled_by: Option<String>,
}

fn fmt_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// One transcript line: `[m:ss] Speaker: text`; the speaker is the workspace user's name or the external
/// party's number.
pub fn transcript_line(segment: &DialogueSegment, users: &[PhoneNumberUser]) -> String {
    let speaker = match (&segment.user_id, &segment.identifier) {
        (Some(user), _) => users
            .iter()
            .find(|u| &u.id == user)
            .map(PhoneNumberUser::display_name)
            .unwrap_or_else(|| "Workspace user".to_owned()),
        (None, Some(number)) => {
            E164::parse(number).map_or_else(|_| number.clone(), |n| n.to_string())
        }
        (None, None) => "Unknown".to_owned(),
    };
    let at = segment
        .start
        .map(fmt_duration)
        .unwrap_or_else(|| "--:--".into());
    format!("[{at}] {speaker}: {}", segment.content.trim())
}

impl CallFacts {
    /// What a page write of these facts delivered, i.e. what to clear with [`pending::satisfied`] once it
    /// succeeded.
    /// Media whose copy to object storage is still pending is not delivered yet.
    pub fn delivered(&self) -> Needs {
        let facts = self;
        let mut delivered = Needs::NONE;
        if facts.call.as_ref().is_some_and(pending::is_final) {
            delivered = delivered.with(Needs::CALL);
        }
        let media = !facts.media_pending;
        if media && facts.recordings.as_ref().is_some_and(|r| !r.is_empty()) {
            delivered = delivered.with(Needs::RECORDING);
        }
        if facts
            .transcript
            .as_ref()
            .is_some_and(|t| t.status == Some(ProcessingStatus::Completed))
        {
            delivered = delivered.with(Needs::TRANSCRIPT);
        }
        if facts.summary.as_ref().is_some_and(|s| {
            s.status
                .as_ref()
                .is_none_or(|status| *status == ProcessingStatus::Completed)
        }) {
            delivered = delivered.with(Needs::SUMMARY);
        }
        if media && facts.voicemail.as_ref().is_some_and(|v| v.url.is_some()) {
            delivered = delivered.with(Needs::VOICEMAIL);
        }
        delivered
    }

    fn sections(&self, users: &[PhoneNumberUser]) -> Vec<Section> {
        let mut sections = Vec::new();
        if let Some(recordings) = self
            .recordings
            .as_ref()
            .filter(|r| !r.is_empty() && !self.media_pending)
        {
            let body = recordings
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let label = match r.duration {
                        Some(d) => format!("Recording {} ({})", i + 1, fmt_duration(d)),
                        None => format!("Recording {}", i + 1),
                    };
                    p::link_paragraph(&label, &r.url)
                })
                .collect();
            sections.push(Section {
                name: "recordings",
                title: "Recordings",
                body,
            });
        }
        if let Some(voicemail) = self.voicemail.as_ref().filter(|_| !self.media_pending) {
            let mut body = Vec::new();
            if let Some(url) = &voicemail.url {
                body.push(p::link_paragraph("Voicemail recording", url));
            }
            if let Some(text) = voicemail
                .transcript
                .as_deref()
                .filter(|t| !t.trim().is_empty())
            {
                body.extend(p::paragraphs(text));
            }
            if !body.is_empty() {
                sections.push(Section {
                    name: "voicemail",
                    title: "Voicemail",
                    body,
                });
            }
        }
        if let Some(summary) = &self.summary {
            let points = summary.summary.clone().unwrap_or_default();
            if !points.is_empty() {
                let body = points.iter().flat_map(|s| p::bullets(s)).collect();
                sections.push(Section {
                    name: "summary",
                    title: "Summary",
                    body,
                });
            }
            let steps = summary.next_steps.clone().unwrap_or_default();
            if !steps.is_empty() {
                let body = steps.iter().flat_map(|s| p::bullets(s)).collect();
                sections.push(Section {
                    name: "next_steps",
                    title: "Next steps",
                    body,
                });
            }
        }
        if let Some(dialogue) = self
            .transcript
            .as_ref()
            .and_then(|t| t.dialogue.as_ref())
            .filter(|d| !d.is_empty())
        {
            let body = dialogue
                .iter()
                .flat_map(|s| p::paragraphs(&transcript_line(s, users)))
                .collect();
            sections.push(Section {
                name: "transcript",
                title: "Transcript",
                body,
            });
        }
        sections
    }

    /// The properties these facts set; nothing else is touched.
    fn properties(
        &self,
        workspace: Option<&KnownNumber>,
        stored_media: (&[String], Option<&str>),
        canvas: &[&str],
        names: &Names,
        now: &str,
    ) -> Map<String, Value> {
        let mut props = Map::new();
        if let Some(contact) = names.contact.as_deref().filter(|c| !c.is_empty()) {
            props.insert("Contact".into(), p::rich_text(contact));
        }
        if let Some(user) = names.handled_by.as_deref() {
            props.insert("Handled By".into(), p::rich_text(user));
        }
        let users = workspace.map(|w| w.users.as_slice()).unwrap_or_default();
        props.insert("Last Updated".into(), p::date(Some(now)));
        if let Some(call) = &self.call {
            // Only what this payload carries: a legacy (app-created) call object has no duration, route
            // or forwarding, and writing those as empty would blank what a richer event wrote.
            if let Some(direction) = &call.direction {
                props.insert("Direction".into(), p::select(Some(direction.as_str())));
            }
            if let Some(status) = &call.status {
                props.insert("Status".into(), p::select(Some(status.as_str())));
            }
            if let Some(duration) = call.duration {
                props.insert("Duration".into(), p::number(Some(duration)));
            }
            let participants = participants(call, workspace.map(|w| w.number.as_str()));
            if !participants.is_empty() {
                props.insert(
                    "Participants".into(),
                    p::rich_text(&participants.join(", ")),
                );
            }
            if let Some(id) = call.user_id.as_deref() {
                let user = users
                    .iter()
                    .find(|u| u.id == id)
                    .map_or_else(|| id.to_owned(), PhoneNumberUser::display_name);
                props.insert("OpenPhone User".into(), p::rich_text(&user));
            }
            if let Some(w) = workspace {
                props.insert("Phone Number Used".into(), p::rich_text(&w.number));
            }
            for (property, value) in [
                ("Created At", &call.created_at),
                ("Answered At", &call.answered_at),
                ("Completed At", &call.completed_at),
            ] {
                if let Some(at) = value.as_deref() {
                    props.insert(property.into(), p::date(Some(at)));
                }
            }
            for (property, value) in [
                ("Call Route", &call.call_route),
                ("Forwarded From", &call.forwarded_from),
                ("Forwarded To", &call.forwarded_to),
            ] {
                if let Some(text) = value.as_deref() {
                    props.insert(property.into(), p::rich_text(text));
                }
            }
            // The raw record of a complete call (REST, v4, or legacy filled in from REST) only: a
            // recording event's partial call object must not replace it.
            if call.duration.is_some() {
                let raw = json!({
                    "id": call.id, "direction": call.direction, "status": call.status, "duration": call.duration,
                    "participants": participants, "phoneNumberId": call.phone_number_id, "userId": call.user_id,
                    "createdAt": call.created_at, "answeredAt": call.answered_at, "completedAt": call.completed_at,
                    "callRoute": call.call_route, "conversationId": call.conversation_id,
                });
                props.insert(
                    "Raw Data".into(),
                    p::rich_text(&serde_json::to_string_pretty(&raw).expect("serializes")),
                );
            }
        }
        if let Some(id) = &self.phone_number_id {
            props.insert("Phone Number ID".into(), p::rich_text(id));
        }
        if let Some(recordings) = self.recordings.as_ref().filter(|r| !r.is_empty()) {
            // Our storage's link wins over OpenPhone's, whichever event comes later.
            let first = stored_media
                .0
                .first()
                .map(String::as_str)
                .unwrap_or(&recordings[0].url);
            props.insert("Has Recording".into(), p::checkbox(true));
            props.insert("Recording URL".into(), p::url(Some(first)));
            props.insert(
                "Recording Duration".into(),
                p::number(recordings[0].duration.filter(|d| *d > 0.0)),
            );
        }
        if let Some(voicemail) = &self.voicemail {
            let url = stored_media.1.or(voicemail.url.as_deref());
            props.insert("Has Voicemail".into(), p::checkbox(true));
            props.insert("Voicemail URL".into(), p::url(url));
            if let Some(t) = &voicemail.transcript {
                props.insert("Voicemail Transcript".into(), p::rich_text(t));
            }
        }
        if let Some(transcript) = &self.transcript {
            let completed = transcript.status == Some(ProcessingStatus::Completed);
            let text = transcript
                .dialogue
                .iter()
                .flatten()
                .map(|s| transcript_line(s, users))
                .collect::<Vec<_>>()
                .join("\n");
            props.insert(
                "Has Transcript".into(),
                p::checkbox(completed && !text.is_empty()),
            );
            props.insert("Transcript".into(), p::rich_text(&text));
            props.insert(
                "Transcript Status".into(),
                p::select(transcript.status.as_ref().map(ProcessingStatus::as_str)),
            );
        }
        if let Some(summary) = &self.summary {
            let completed = summary
                .status
                .as_ref()
                .is_none_or(|s| *s == ProcessingStatus::Completed);
            let points = summary.summary.clone().unwrap_or_default();
            props.insert(
                "Has Summary".into(),
                p::checkbox(completed && !points.is_empty()),
            );
            props.insert("Summary".into(), p::rich_text(&points.join("\n\n")));
            props.insert(
                "Next Steps".into(),
                p::rich_text(&summary.next_steps.clone().unwrap_or_default().join("\n")),
            );
        }
        if !canvas.is_empty() {
            props.insert("Canvas".into(), p::relation(canvas));
        }
        props
    }
}

/// The call's other parties in E.164: `participants` (v4, REST) or `from`/`to` (legacy), without the
/// workspace's own number.
fn participants(call: &Call, own: Option<&str>) -> Vec<String> {
    let mut all: Vec<String> = call
        .participants
        .iter()
        .chain(call.from.iter())
        .chain(call.to.iter())
        .map(|n| E164::parse(n).map_or_else(|_| n.trim().to_owned(), |e| e.to_string()))
        .filter(|n| !n.is_empty() && Some(n.as_str()) != own)
        .collect();
    let mut seen = std::collections::HashSet::new();
    all.retain(|n| seen.insert(n.clone()));
    all
}

/// Writes call pages: each event's [`CallFacts`] onto its call's one page, with the [`Writer`]'s page
/// primitives ([`Writer::calls`] makes one).
pub struct CallPages<'w> {
    writer: &'w Writer<'w>,
}

impl<'w> CallPages<'w> {
    pub(super) fn new(writer: &'w Writer<'w>) -> Self {
        Self { writer }
    }

    /// The copies and links of the calls' recordings and voicemails.
    pub fn media(&self) -> CallMedia<'w> {
        CallMedia::new(self.writer)
    }

    /// Writes what `facts` know about a call to its page, creating the page if this is the first event.
    /// Recordings and the voicemail are copied to object storage first (when the writer has it) and
    /// linked there; a copy that failed is reported after the page is written with OpenPhone's link, so
    /// the event is retried and the page is complete meanwhile.
    pub async fn apply(&self, facts: &CallFacts) -> Result<String, WriteError> {
        if facts.call_id.trim().is_empty() {
            return Err(WriteError::BadData("call event without a call id".into()));
        }
        let (facts, copy_error) = self.media().copy(facts).await;
        let page_id = self.write(&facts).await?;
        // What the page now has is no longer awaited by the periodic re-check.
        pending::satisfied(self.writer.platform, &facts.call_id, facts.delivered())?;
        match copy_error {
            Some(e) => Err(e.into()),
            None => Ok(page_id),
        }
    }

    /// Records what OpenPhone should still produce for a finished call that a webhook brought (a
    /// transcript, a summary, …), minus what the page already has, so the periodic work asks for it if its
    /// webhook never comes. (The backfill keeps its own account.)
    pub(super) fn await_the_rest(&self, facts: &CallFacts) -> Result<(), WriteError> {
        let Some(call) = &facts.call else {
            return Ok(());
        };
        let row = self
            .writer
            .map
            .get(Kind::Call, &facts.call_id)?
            .unwrap_or_default();
        let mut present = facts.delivered();
        for (section, need) in [
            ("recordings", Needs::RECORDING),
            ("transcript", Needs::TRANSCRIPT),
            ("summary", Needs::SUMMARY),
            ("voicemail", Needs::VOICEMAIL),
        ] {
            if row.section_done(section) {
                present = present.with(need);
            }
        }
        let now = self.writer.platform.clock.now_ms();
        let created = call
            .created_at
            .as_deref()
            .and_then(crate::domain::parse_iso)
            .unwrap_or(now);
        let number = call
            .phone_number_id
            .as_deref()
            .or(facts.phone_number_id.as_deref())
            .unwrap_or_default();
        let needs = Needs::expected(call).without(present);
        pending::record_needs(
            self.writer.platform,
            &facts.call_id,
            number,
            created,
            needs,
            pending::first_check_at(now, needs),
        )?;
        Ok(())
    }

    async fn write(&self, facts: &CallFacts) -> Result<String, WriteError> {
        let row = self
            .writer
            .map
            .get(Kind::Call, &facts.call_id)?
            .unwrap_or_default();
        // Transcript and summary events name no number: the page map knows it from the call's other
        // events, so their speakers get names too.
        let phone_number_id = facts
            .phone_number_id
            .clone()
            .or_else(|| facts.call.as_ref().and_then(|c| c.phone_number_id.clone()))
            .or_else(|| row.phone_number_id.clone());
        let workspace = match &phone_number_id {
            Some(id) => {
                phone_numbers::resolve(self.writer.platform, self.writer.openphone, id).await?
            }
            None => None,
        };
        let users = workspace
            .as_ref()
            .map(|w| w.users.clone())
            .unwrap_or_default();
        let own = workspace.as_ref().map(|w| w.number.as_str());
        let others = facts
            .call
            .as_ref()
            .map(|call| participants(call, own))
            .unwrap_or_default();
        // A Canvas problem costs the page its relation for now, never the page (see `canvas_relink`).
        let canvas = match (&facts.call, &row.canvas_page_id) {
            (Some(call), None) => {
                let lookup = self.find_canvas(call, workspace.as_ref()).await;
                let first = others.first().map(String::as_str);
                canvas_or_retry_later(
                    self.writer.platform,
                    Kind::Call,
                    &facts.call_id,
                    first,
                    lookup,
                )?
            }
            _ => None,
        };
        // The numbers are kept so a Canvas record added later links this page (see `canvas_backlink`).
        let found = canvas.as_ref().and_then(|(number, page)| {
            let page = page.as_deref()?;
            Some((number.as_str(), page))
        });
        let linked = canvas_backlink::record_numbers(
            self.writer.platform,
            Kind::Call,
            &facts.call_id,
            &others,
            found.as_slice(),
        )?;
        let names = match &facts.call {
            Some(call) => Names {
                contact: (!others.is_empty()).then_some(
                    contacts::party_names(self.writer.platform, self.writer.openphone, &others)
                        .await,
                ),
                handled_by: handler_of(call)
                    .map(|user| contacts::user_name(self.writer.platform, workspace.as_ref(), user))
                    .transpose()?,
            },
            None => Names::default(),
        };
        let has_voicemail = facts.voicemail.is_some()
            || row.voicemail_url.is_some()
            || row.section_done("voicemail");
        let icon = call_icon(facts.call.as_ref(), has_voicemail).map(p::emoji_icon);
        let now = chrono::DateTime::from_timestamp_millis(self.writer.platform.clock.now_ms())
            .unwrap_or_default()
            .to_rfc3339();
        let stored = (row.recording_urls.as_slice(), row.voicemail_url.as_deref());
        let linked: Vec<&str> = match found {
            Some(_) => linked.relation.iter().map(String::as_str).collect(),
            None => Vec::new(),
        };
        let mut props = facts.properties(workspace.as_ref(), stored, &linked, &names, &now);
        let sections = facts.sections(&users);
        let created_at = facts.call.as_ref().and_then(|c| c.created_at.clone());

        let mut included = Vec::new();
        let (page_id, created) = self
            .writer
            .ensure_page(
                Kind::Call,
                &facts.call_id,
                phone_number_id.as_deref(),
                created_at.as_deref(),
                icon.as_ref(),
                || {
                    let mut new_props = props.clone();
                    new_props.insert("Call ID".into(), p::title(&facts.call_id));
                    new_props.insert("Synced At".into(), p::date(Some(&now)));
                    let (children, names) = split_for_create(&sections);
                    // Sections sent with the create are in flight until it answers: if its outcome is
                    // unknown, the next attempt reads the page instead of appending them again.
                    self.writer
                        .map
                        .mark_sections(Kind::Call, &facts.call_id, &names, false)?;
                    included = names;
                    Ok((Value::Object(new_props), children))
                },
            )
            .await?;
        let status = facts.call.as_ref().and_then(|c| c.status.as_ref());
        let newest = match status {
            Some(status) => {
                self.writer
                    .map
                    .advance_status(Kind::Call, &facts.call_id, status.rank())?
            }
            None => false,
        };
        if created {
            self.writer
                .map
                .mark_sections(Kind::Call, &facts.call_id, &included, true)?;
        } else {
            props.remove("Synced At");
            if !newest {
                props.remove("Status");
            }
            // An older event's kind (a late `call.answered`) must not replace a newer one's icon.
            let icon = icon.filter(|_| newest || has_voicemail);
            self.writer
                .update_page_and_icon(Kind::Call, &facts.call_id, &page_id, props, icon.as_ref())
                .await?;
        }
        if let Some((_, page)) = found {
            self.writer
                .map
                .set_canvas(Kind::Call, &facts.call_id, page)?;
        }
        self.writer
            .append_sections(Kind::Call, &facts.call_id, &page_id, &sections)
            .await?;
        Ok(page_id)
    }

    /// The Canvas record of the first participant that has one, with that participant's number.
    async fn find_canvas(
        &self,
        call: &Call,
        workspace: Option<&KnownNumber>,
    ) -> Result<Option<(String, Option<String>)>, WriteError> {
        let canvas = self.writer.canvas();
        let mut first_miss = None;
        for number in participants(call, workspace.map(|w| w.number.as_str())) {
            let found = canvas.by_phone(&number).await?;
            if found.page_id.is_some() {
                return Ok(Some((number, found.page_id)));
            }
            if found.source != Source::Skipped {
                first_miss.get_or_insert((number, found));
            }
        }
        // No participant has a record: the first one gets a new record, when that is on.
        match first_miss {
            Some((number, miss)) => Ok(Some((
                number,
                canvas.create_if_unknown(miss).await?.page_id,
            ))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_lines_name_users_and_numbers() {
        let users = vec![PhoneNumberUser {
            id: "US1".into(),
            first_name: Some("Jacob".into()),
            ..Default::default()
        }];
        let ours = DialogueSegment {
            content: " Thanks for calling ".into(),
            start: Some(0.0),
            user_id: Some("US1".into()),
            ..Default::default()
        };
        let theirs = DialogueSegment {
            content: "Hi".into(),
            start: Some(63.4),
            identifier: Some("5555550123".into()),
            ..Default::default()
        };
        assert_eq!(
            transcript_line(&ours, &users),
            "[0:00] Jacob: Thanks for calling"
        );
        assert_eq!(transcript_line(&theirs, &users), "[1:03] +15555550123: Hi");
    }

    #[test]
    fn participants_exclude_the_workspace_number_and_repeat_nobody() {
        let call = Call {
            id: "AC1".into(),
            from: Some("+15555550123".into()),
            to: vec!["+13365550100".into()],
            participants: vec!["+15555550123".into()],
            ..Default::default()
        };
        assert_eq!(
            participants(&call, Some("+13365550100")),
            vec!["+15555550123"]
        );
    }

    #[test]
    fn facts_set_only_their_own_properties() {
        let facts = CallFacts {
            call_id: "AC1".into(),
            transcript: Some(Transcript {
                status: Some("completed".into()),
                dialogue: Some(vec![]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let props = facts.properties(
            None,
            (&[], None),
            &[],
            &Names::default(),
            "2025-10-20T00:00:00Z",
        );
        assert!(props.contains_key("Transcript Status"));
        for untouched in [
            "Status",
            "Recording URL",
            "Summary",
            "Voicemail URL",
            "Canvas",
            "Duration",
            "Contact",
            "Handled By",
        ] {
            assert!(
                !props.contains_key(untouched),
                "{untouched} would be blanked"
            );
        }
    }

    #[test]
    fn icons_tell_voicemails_missed_calls_and_directions_apart() {
        let call = |direction: &str, status: &str| Call {
            id: "AC1".into(),
            direction: Some(direction.into()),
            status: Some(status.into()),
            ..Default::default()
        };
        let incoming = call("incoming", "completed");
        assert_eq!(
            call_icon(Some(&incoming), false),
            Some(p::icons::INCOMING_CALL)
        );
        let outgoing = call("outgoing", "completed");
        assert_eq!(
            call_icon(Some(&outgoing), false),
            Some(p::icons::OUTGOING_CALL)
        );
        let missed = call("incoming", "no-answer");
        assert_eq!(call_icon(Some(&missed), false), Some(p::icons::MISSED_CALL));
        assert_eq!(call_icon(Some(&missed), true), Some(p::icons::VOICEMAIL));
        assert_eq!(call_icon(None, false), None, "a transcript keeps the icon");
    }

    #[test]
    fn the_handler_is_who_answered_or_placed_the_call_and_nobody_for_a_missed_one() {
        let answered = Call {
            id: "AC1".into(),
            user_id: Some("USowner".into()),
            answered_by: Some("USanswer".into()),
            status: Some("completed".into()),
            ..Default::default()
        };
        assert_eq!(handler_of(&answered), Some("USanswer"));
        let legacy = Call {
            answered_by: None,
            answered_at: Some("2025-10-20T19:22:00Z".into()),
            ..answered.clone()
        };
        assert_eq!(handler_of(&legacy), Some("USowner"));
        let missed = Call {
            status: Some("missed".into()),
            ..legacy.clone()
        };
        assert_eq!(handler_of(&missed), None);
        let voicemail = Call {
            answered_at: None,
            ..legacy
        };
        assert_eq!(handler_of(&voicemail), None, "completed, never answered");
    }

    #[test]
    fn names_go_to_contact_and_handled_by() {
        let facts = CallFacts {
            call_id: "AC1".into(),
            ..Default::default()
        };
        let names = Names {
            contact: Some("Olive Owner (Acme Funding)".into()),
            handled_by: Some("Jacob Smith".into()),
        };
        let props = facts.properties(None, (&[], None), &[], &names, "now");
        assert_eq!(
            props["Contact"]["rich_text"][0]["text"]["content"],
            "Olive Owner (Acme Funding)"
        );
        assert_eq!(
            props["Handled By"]["rich_text"][0]["text"]["content"],
            "Jacob Smith"
        );
    }

    #[test]
    fn stored_recording_links_win_over_openphone_urls() {
        let facts = CallFacts {
            call_id: "AC1".into(),
            recordings: Some(vec![RecordingLink {
                url: "https://storage.googleapis.com/x.mp3".into(),
                content_type: None,
                duration: Some(10.0),
            }]),
            ..Default::default()
        };
        let ours = vec!["https://recordings.example.com/recordings/AC1-1.mp3".to_owned()];
        let props = facts.properties(None, (&ours, None), &[], &Names::default(), "now");
        assert_eq!(props["Recording URL"]["url"], ours[0]);
    }

    #[test]
    fn every_segment_is_linked_in_the_body() {
        let facts = CallFacts {
            call_id: "AC1".into(),
            recordings: Some(vec![
                RecordingLink {
                    url: "https://a/1.mp3".into(),
                    content_type: None,
                    duration: Some(61.0),
                },
                RecordingLink {
                    url: "https://a/2.mp3".into(),
                    content_type: None,
                    duration: None,
                },
            ]),
            ..Default::default()
        };
        let sections = facts.sections(&[]);
        assert_eq!(sections[0].name, "recordings");
        assert_eq!(sections[0].body.len(), 2);
        assert_eq!(p::block_text(&sections[0].body[0]), "Recording 1 (1:01)");
    }

    #[test]
    fn deliveries_are_read_from_what_a_write_carries() {
        let facts = CallFacts {
            call_id: "AC1".into(),
            transcript: Some(Transcript {
                status: Some("in-progress".into()),
                ..Transcript::default()
            }),
            summary: Some(Summary {
                status: Some(ProcessingStatus::Completed),
                ..Summary::default()
            }),
            recordings: Some(vec![]),
            ..CallFacts::default()
        };
        assert_eq!(facts.delivered(), Needs::SUMMARY);
        let voicemail = Some(VoicemailLink {
            url: Some("https://x/vm.mp3".into()),
            ..VoicemailLink::default()
        });
        let copied = CallFacts {
            call_id: "AC1".into(),
            voicemail,
            ..CallFacts::default()
        };
        assert_eq!(copied.delivered(), Needs::VOICEMAIL);
        let not_copied = CallFacts {
            media_pending: true,
            ..copied
        };
        assert_eq!(not_copied.delivered(), Needs::NONE);
    }
}
