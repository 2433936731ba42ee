//! A call page's media links: recordings and voicemails are copied to object storage before the page is
//! written, so Notion links our copy, never OpenPhone's short-lived URL once the copy exists; renewed
//! links of our copies are put back on the page.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::calls::{CallFacts, RecordingLink};
use super::map::Kind;
use super::{WriteError, Writer};
use crate::notion::properties as p;
use crate::outbound::Failure;
use crate::storage::media::{CallLinks, MediaError, MediaSource, StoredMedia};

/// A call page's recordings and voicemail: copied before the page is written, relinked when their links
/// are renewed ([`super::calls::CallPages::media`]).
pub struct CallMedia<'w> {
    writer: &'w Writer<'w>,
}

impl<'w> CallMedia<'w> {
    pub(super) fn new(writer: &'w Writer<'w>) -> Self {
        Self { writer }
    }

    /// `facts` with every copyable media link replaced by our copy's, and the first copy failure worth
    /// retrying (the link stays OpenPhone's meanwhile, and `media_pending` keeps the body sections for the
    /// retry). A segment OpenPhone no longer has is dropped; a link not on the media host is kept as is.
    pub(super) async fn copy(&self, facts: &CallFacts) -> (CallFacts, Option<MediaError>) {
        let mut facts = facts.clone();
        let Some(media) = &self.writer.media else {
            return (facts, None);
        };
        let created = facts
            .call
            .as_ref()
            .and_then(|c| c.created_at.clone())
            .or_else(|| facts.call_created_at.clone())
            .and_then(|c| DateTime::parse_from_rfc3339(&c).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let mut first_error: Option<MediaError> = None;
        let mut keep_error = |e: MediaError, what: &str| {
            tracing::warn!(call_id = %facts.call_id, error = %e, "{what} not copied");
            if e.is_transient() && first_error.is_none() {
                first_error = Some(e);
            }
        };

        if let Some(recordings) = facts.recordings.take() {
            let sources: Vec<MediaSource> = recordings
                .iter()
                .map(|r| MediaSource {
                    url: r.url.clone(),
                    content_type: r.content_type.clone(),
                    duration: r.duration,
                })
                .collect();
            let mut links = Vec::with_capacity(recordings.len());
            let mut stored = Vec::new();
            let results = media
                .copy_recordings(&facts.call_id, created, &sources)
                .await;
            for (result, link) in results.into_iter().zip(recordings) {
                match result {
                    Ok(StoredMedia::Stored(object)) => {
                        stored.push(object.url.clone());
                        links.push(RecordingLink {
                            url: object.url,
                            ..link
                        });
                    }
                    Ok(StoredMedia::Gone { .. } | StoredMedia::Retired { .. }) => {}
                    Err(MediaError::NotOnMediaHost { .. }) => links.push(link),
                    Err(e) => {
                        keep_error(e, "recording");
                        links.push(link);
                    }
                }
            }
            if let Err(e) = self
                .writer
                .map
                .set_media_urls(&facts.call_id, &stored, None)
            {
                tracing::warn!(error = %format!("{e:#}"), "could not record the stored links");
            }
            facts.recordings = Some(links);
        }

        if let Some(voicemail) = facts.voicemail.as_mut() {
            if let Some(url) = voicemail.url.clone() {
                let source = MediaSource {
                    url,
                    content_type: None,
                    duration: voicemail.duration,
                };
                match media.copy_voicemail(&facts.call_id, created, &source).await {
                    Ok(StoredMedia::Stored(object)) => {
                        if let Err(e) =
                            self.writer
                                .map
                                .set_media_urls(&facts.call_id, &[], Some(&object.url))
                        {
                            tracing::warn!(error = %format!("{e:#}"), "could not record the stored link");
                        }
                        voicemail.url = Some(object.url);
                    }
                    Ok(StoredMedia::Gone { .. } | StoredMedia::Retired { .. }) => {
                        voicemail.url = None
                    }
                    Err(MediaError::NotOnMediaHost { .. }) => {}
                    Err(e) => keep_error(e, "voicemail"),
                }
            }
        }
        facts.media_pending = first_error.is_some();
        (facts, first_error)
    }

    /// Puts renewed media links on a call's page: the `Recording URL` and `Voicemail URL` properties and
    /// the links in the body's Recordings and Voicemail sections (blocks whose link already matches are
    /// left alone). A call without a page yet needs nothing.
    pub async fn relink(&self, links: &CallLinks) -> Result<(), WriteError> {
        let Some(page_id) = self.writer.page_of(Kind::Call, &links.call_id)? else {
            return Ok(());
        };
        let mut props = Map::new();
        if let Some((_, first)) = links.recordings.first() {
            props.insert("Recording URL".into(), p::url(Some(first)));
        }
        if let Some(voicemail) = &links.voicemail {
            props.insert("Voicemail URL".into(), p::url(Some(voicemail)));
        }
        if !props.is_empty() {
            self.writer
                .update_page(Kind::Call, &links.call_id, &page_id, props)
                .await?;
        }
        let children = self.writer.notion.children(&page_id).await?;
        let recording_urls: Vec<&str> = links
            .recordings
            .iter()
            .map(|(_, url)| url.as_str())
            .collect();
        let voicemail_urls: Vec<&str> = links.voicemail.iter().map(String::as_str).collect();
        for (title, urls) in [
            ("Recordings", recording_urls),
            ("Voicemail", voicemail_urls),
        ] {
            for (block, url) in section_links(&children, title).into_iter().zip(urls) {
                if link_of(block) == Some(url) {
                    continue;
                }
                let id = block["id"].as_str().unwrap_or_default();
                let label = p::block_text(block);
                let content =
                    json!({ "paragraph": p::link_paragraph(&label, url)["paragraph"].clone() });
                self.writer.check_lease()?;
                self.writer.notion.update_block(id, &content).await?;
            }
        }
        let recordings: Vec<String> = links
            .recordings
            .iter()
            .map(|(_, url)| url.clone())
            .collect();
        self.writer
            .map
            .set_media_urls(&links.call_id, &recordings, links.voicemail.as_deref())?;
        Ok(())
    }
}

/// The paragraphs with a link in the body section titled `title`, in order.
fn section_links<'v>(children: &'v [Value], title: &str) -> Vec<&'v Value> {
    let Some(start) = children
        .iter()
        .position(|b| b["type"] == "heading_2" && p::block_text(b) == title)
    else {
        return Vec::new();
    };
    children[start + 1..]
        .iter()
        .take_while(|b| b["type"] != "heading_2")
        .filter(|b| link_of(b).is_some())
        .collect()
}

fn link_of(block: &Value) -> Option<&str> {
    let item = &block["paragraph"]["rich_text"][0];
    item["text"]["link"]["url"]
        .as_str()
        .or_else(|| item["href"].as_str())
}
