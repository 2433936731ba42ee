//! From a stored webhook event (or a backfilled item wrapped as one) to page writes: the payload is parsed
//! once here, and OpenPhone is asked only for what the payload lacks (a call's recording segments, a v4
//! missed call's voicemail).

use serde::de::DeserializeOwned;
use serde_json::Value;

use chrono::{DateTime, Utc};

use super::calls::{CallFacts, RecordingLink, VoicemailLink};
use super::{WriteError, Writer};
use crate::openphone::types::{Call, Message, Summary, Transcript};
use crate::storage::media::{MediaError, MediaSource, StoredMedia};

/// The resource inside an event envelope: `data.object` (v1 webhooks) or `data.resource` (Quo 2026).
fn resource(payload: &Value) -> Option<&Value> {
    let data = payload.get("data")?;
    data.get("object").or_else(|| data.get("resource"))
}

fn parse<T: DeserializeOwned>(payload: &Value, what: &str) -> Result<T, WriteError> {
    let object = resource(payload).ok_or_else(|| WriteError::BadData(format!("{what} event without data.object")))?;
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

impl Writer<'_> {
    /// Writes the event `event_type` with body `payload`; returns the page written.
    pub async fn apply_event(&self, event_type: &str, payload: &Value) -> Result<String, WriteError> {
        match event_type {
            "message.received" | "message.delivered" => {
                let message: Message = parse(payload, "message")?;
                self.upsert_message(&message).await
            }
            "call.completed" | "call.missed" | "call.answered" | "call.forwarded" => {
                let call: Call = parse(payload, "call")?;
                let payload_has_voicemail = resource(payload).is_some_and(|o| o.get("voicemail").is_some());
                let mut voicemail = call.voicemail.as_ref().map(|v| VoicemailLink {
                    url: v.audio_url().map(String::from),
                    transcript: v.transcript.clone(),
                    duration: v.duration,
                });
                // v4 payloads carry no voicemail: ask for one only where there can be one.
                let unanswered = call.answered_at.is_none() && call.direction.as_deref() == Some("incoming");
                if voicemail.is_none() && !payload_has_voicemail && unanswered {
                    voicemail = self.fetch_voicemail(&call.id).await?;
                }
                let created = call_time(&call);
                let copy_error = match voicemail.as_mut() {
                    Some(v) => self.copy_voicemail(&call.id, created, v).await,
                    None => None,
                };
                let facts = CallFacts {
                    call_id: call.id.clone(),
                    phone_number_id: call.phone_number_id.clone(),
                    voicemail,
                    media_pending: copy_error.is_some(),
                    call: Some(call),
                    ..Default::default()
                };
                self.apply_call_then_report(&facts, copy_error).await
            }
            "call.recording.completed" => {
                let call: Call = parse(payload, "call")?;
                let mut sources: Vec<MediaSource> = self
                    .openphone
                    .call_recordings(&call.id)
                    .await?
                    .into_iter()
                    .filter(|r| r.status.as_deref().is_none_or(|s| s == "completed"))
                    .filter_map(|r| Some(MediaSource { url: r.url?, content_type: r.content_type, duration: r.duration }))
                    .collect();
                if sources.is_empty() {
                    sources = call
                        .media
                        .iter()
                        .filter_map(|m| {
                            Some(MediaSource { url: m.url.clone()?, content_type: m.content_type.clone(), duration: m.duration })
                        })
                        .collect();
                }
                let (recordings, copy_error) = self.copy_recordings(&call.id, call_time(&call), &sources).await;
                let facts = CallFacts {
                    call_id: call.id.clone(),
                    phone_number_id: call.phone_number_id.clone(),
                    recordings: Some(recordings),
                    media_pending: copy_error.is_some(),
                    call: Some(call),
                    ..Default::default()
                };
                self.apply_call_then_report(&facts, copy_error).await
            }
            "call.transcript.completed" => {
                let transcript: Transcript = parse(payload, "transcript")?;
                let call_id = call_id_of(payload).ok_or_else(|| WriteError::BadData("transcript without callId".into()))?;
                self.apply_call(&CallFacts { call_id, transcript: Some(transcript), ..Default::default() })
                    .await
            }
            "call.summary.completed" | "callSummary" => {
                let summary: Summary = parse(payload, "summary")?;
                let call_id = call_id_of(payload).ok_or_else(|| WriteError::BadData("summary without callId".into()))?;
                self.apply_call(&CallFacts { call_id, summary: Some(summary), ..Default::default() })
                    .await
            }
            "call.voicemail.completed" => {
                let call_id = call_id_of(payload).ok_or_else(|| WriteError::BadData("voicemail without callId".into()))?;
                let mut voicemail = self.fetch_voicemail(&call_id).await?;
                // The Quo voicemail event carries the call's time, if at all, as the resource's createdAt.
                let created = resource(payload)
                    .and_then(|r| r["createdAt"].as_str())
                    .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                    .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
                let copy_error = match voicemail.as_mut() {
                    Some(v) => self.copy_voicemail(&call_id, created, v).await,
                    None => None,
                };
                let facts = CallFacts { call_id, voicemail, media_pending: copy_error.is_some(), ..Default::default() };
                self.apply_call_then_report(&facts, copy_error).await
            }
            other => Err(WriteError::BadData(format!("no page is written for {other} events"))),
        }
    }

    /// Writes the page, then reports a media copy that failed: the page has what is known meanwhile, and
    /// the retry links our copy.
    async fn apply_call_then_report(&self, facts: &CallFacts, copy_error: Option<MediaError>) -> Result<String, WriteError> {
        let page_id = self.apply_call(facts).await?;
        match copy_error {
            Some(e) => Err(e.into()),
            None => Ok(page_id),
        }
    }

    /// Copies every recording segment; returns the links for the page (our copy where it is stored,
    /// OpenPhone's URL while it is not, nothing for a segment OpenPhone no longer has) and the first
    /// copy failure worth retrying.
    async fn copy_recordings(
        &self,
        call_id: &str,
        created: DateTime<Utc>,
        sources: &[MediaSource],
    ) -> (Vec<RecordingLink>, Option<MediaError>) {
        let Some(media) = &self.media else {
            let links = sources.iter().map(|s| RecordingLink { url: s.url.clone(), duration: s.duration }).collect();
            return (links, None);
        };
        let mut links = Vec::new();
        let mut first_error = None;
        let mut stored = Vec::new();
        for (result, source) in media.copy_recordings(call_id, created, sources).await.into_iter().zip(sources) {
            match result {
                Ok(StoredMedia::Stored(object)) => {
                    stored.push(object.url.clone());
                    links.push(RecordingLink { url: object.url, duration: source.duration });
                }
                Ok(StoredMedia::Gone { .. }) => {}
                Err(e) => {
                    links.push(RecordingLink { url: source.url.clone(), duration: source.duration });
                    tracing::warn!(call_id, error = %e, "recording not copied");
                    if e.is_transient() && first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Err(e) = self.map.set_media_urls(call_id, &stored, None) {
            tracing::warn!(error = %format!("{e:#}"), "could not record the stored links");
        }
        (links, first_error)
    }

    /// Copies a voicemail and points `voicemail` at our copy; returns a copy failure worth retrying.
    async fn copy_voicemail(&self, call_id: &str, created: DateTime<Utc>, voicemail: &mut VoicemailLink) -> Option<MediaError> {
        let (Some(media), Some(url)) = (&self.media, voicemail.url.clone()) else {
            return None;
        };
        let source = MediaSource { url, content_type: None, duration: voicemail.duration };
        match media.copy_voicemail(call_id, created, &source).await {
            Ok(StoredMedia::Stored(object)) => {
                if let Err(e) = self.map.set_media_urls(call_id, &[], Some(&object.url)) {
                    tracing::warn!(error = %format!("{e:#}"), "could not record the stored link");
                }
                voicemail.url = Some(object.url);
                None
            }
            Ok(StoredMedia::Gone { .. }) => {
                voicemail.url = None;
                None
            }
            Err(e) => {
                tracing::warn!(call_id, error = %e, "voicemail not copied");
                e.is_transient().then_some(e)
            }
        }
    }

    async fn fetch_voicemail(&self, call_id: &str) -> Result<Option<VoicemailLink>, WriteError> {
        Ok(self
            .openphone
            .call_voicemail(call_id)
            .await?
            .filter(|v| v.audio_url().is_some())
            .map(|v| VoicemailLink {
                url: v.audio_url().map(String::from),
                transcript: v.transcript.clone(),
                duration: v.duration,
            }))
    }
}

/// When a call was created, for the date in its media keys.
fn call_time(call: &Call) -> DateTime<Utc> {
    call.created_at
        .as_deref()
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn malformed_objects_are_bad_data() {
        let err = parse::<Call>(&json!({ "data": { "object": { "status": "completed" } } }), "call").unwrap_err();
        assert!(matches!(err, WriteError::BadData(_)));
        assert!(!err.is_transient());
    }
}
