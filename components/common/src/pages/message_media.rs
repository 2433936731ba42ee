//! A message page's pictures and files: copied to object storage before the page is written (see
//! [`crate::storage::media`]), then linked in `Has Media` / `Media URLs` and shown in the body's
//! Media section, an image block per picture Notion can show and a file block per anything else.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::map::Kind;
use super::{split_for_create, Section, WriteError, Writer};
use crate::notion::properties as p;
use crate::openphone::types::Message;
use crate::outbound::Failure;
use crate::storage::media::{is_notion_image, MediaError, MediaSource, MessageLinks, StoredMedia};

/// Body section of a message's media (key in `notion_pages.sections`, and heading).
const SECTION: &str = "media";
const TITLE: &str = "Media";

/// What a message's media give its page, once [`MessageMedia::copy`] has copied what it could.
pub(super) struct CopiedMedia {
    /// One link per medium that still exists, in the payload's order: our copy's once it is stored,
    /// OpenPhone's while a copy is pending (or the URL is not on the media host).
    pub(super) links: Vec<String>,
    /// The body's Media section, once no copy is left to retry (`None` too when there is nothing to show).
    pub(super) section: Option<Section>,
    /// The first copy failure worth retrying, reported after the page is written so the event is retried.
    pub(super) error: Option<MediaError>,
}

/// An image block for a picture Notion shows, else a file block; both link `url`.
fn media_block(content_type: Option<&str>, url: &str) -> Value {
    let kind = if content_type.is_some_and(is_notion_image) {
        "image"
    } else {
        "file"
    };
    json!({ "object": "block", "type": kind, kind: { "type": "external", "external": { "url": url } } })
}

/// The external URL of an image or file block.
fn external_url(block: &Value) -> Option<&str> {
    let kind = block["type"].as_str()?;
    matches!(kind, "image" | "file")
        .then(|| block[kind]["external"]["url"].as_str())
        .flatten()
}

/// `url` without its query: a presigned link's path ends with the object's key.
fn path_of(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

impl CopiedMedia {
    /// The media properties of a message page: set only for a message with media, so an event that does
    /// not carry them (a REST backfill) never blanks them.
    pub(super) fn properties(&self, message: &Message) -> Map<String, Value> {
        let mut props = Map::new();
        if !message.media.is_empty() {
            props.insert("Has Media".into(), p::checkbox(true));
            props.insert("Media URLs".into(), p::rich_text(&self.links.join("\n")));
        }
        props
    }
}

/// A message page's pictures and files: copied before the page is written, shown in its Media section,
/// relinked when their links are renewed ([`super::messages::MessagePages::media`]).
pub struct MessageMedia<'w> {
    writer: &'w Writer<'w>,
}

impl<'w> MessageMedia<'w> {
    pub(super) fn new(writer: &'w Writer<'w>) -> Self {
        Self { writer }
    }

    /// Copies `message`'s media (when the writer has object storage) and says what its page gets.
    pub(super) async fn copy(&self, message: &Message) -> CopiedMedia {
        let sources: Vec<MediaSource> = message
            .media
            .iter()
            .filter_map(|m| {
                Some(MediaSource {
                    url: m.url.clone().filter(|u| !u.trim().is_empty())?,
                    content_type: m.content_type.clone(),
                    duration: m.duration,
                })
            })
            .collect();
        let mut media = CopiedMedia {
            links: Vec::new(),
            section: None,
            error: None,
        };
        if sources.is_empty() {
            return media;
        }
        let mut blocks = Vec::new();
        match &self.writer.media {
            // Without storage the page links OpenPhone's files, as a call's page links its recordings.
            None => {
                for source in &sources {
                    media.links.push(source.url.clone());
                    blocks.push(media_block(source.content_type.as_deref(), &source.url));
                }
            }
            Some(copier) => {
                let created = message
                    .created_at
                    .as_deref()
                    .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                    .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
                let results = copier
                    .copy_message_media(&message.id, created, &sources)
                    .await;
                for (result, source) in results.into_iter().zip(&sources) {
                    match result {
                        Ok(StoredMedia::Stored(object)) => {
                            blocks.push(media_block(Some(&object.content_type), &object.url));
                            media.links.push(object.url);
                        }
                        Ok(StoredMedia::Gone { .. } | StoredMedia::Retired { .. }) => {}
                        Err(MediaError::NotOnMediaHost { .. }) => {
                            media.links.push(source.url.clone());
                            blocks.push(media_block(source.content_type.as_deref(), &source.url));
                        }
                        Err(e) => {
                            if e.is_transient() && media.error.is_none() {
                                media.error = Some(e);
                            }
                            media.links.push(source.url.clone());
                        }
                    }
                }
            }
        }
        // The body gets our links only: while a copy is to be retried, the section waits for the retry.
        if media.error.is_none() && !blocks.is_empty() {
            media.section = Some(Section {
                name: SECTION,
                title: TITLE,
                body: blocks,
            });
        }
        media
    }

    /// The children of a new message page: the Media section when it fits in the create request, so a
    /// new message with media still costs one Notion request. It is in flight until the create answers:
    /// after an unknown outcome, the next attempt reads the page instead of appending it again.
    pub(super) fn children_for_create(
        &self,
        message_id: &str,
        media: &CopiedMedia,
    ) -> anyhow::Result<Vec<Value>> {
        let Some(section) = &media.section else {
            return Ok(Vec::new());
        };
        let (children, included) = split_for_create(std::slice::from_ref(section));
        self.writer
            .map
            .mark_sections(Kind::Message, message_id, &included, false)?;
        Ok(children)
    }

    /// Completes the Media section of the message's page (sent with the create when `created`, else
    /// appended, once), then reports a copy failure worth retrying, so the event comes back for the
    /// copies while the page is complete meanwhile.
    pub(super) async fn append(
        &self,
        message: &Message,
        page_id: String,
        created: bool,
        media: CopiedMedia,
    ) -> Result<String, WriteError> {
        if let Some(section) = &media.section {
            let sections = std::slice::from_ref(section);
            if created {
                let (_, included) = split_for_create(sections);
                self.writer
                    .map
                    .mark_sections(Kind::Message, &message.id, &included, true)?;
            }
            self.writer
                .append_sections(Kind::Message, &message.id, &page_id, sections)
                .await?;
        }
        match media.error {
            Some(e) => Err(e.into()),
            None => Ok(page_id),
        }
    }

    /// Puts renewed media links on a message's page: `Media URLs` and the image and file blocks of the
    /// body's Media section (a block whose link already matches is left alone). A message without a page
    /// needs nothing.
    pub async fn relink(&self, links: &MessageLinks) -> Result<(), WriteError> {
        let Some(page_id) = self.writer.page_of(Kind::Message, &links.message_id)? else {
            return Ok(());
        };
        let urls: Vec<&str> = links.media.iter().map(|(_, url)| url.as_str()).collect();
        let mut props = Map::new();
        props.insert("Media URLs".into(), p::rich_text(&urls.join("\n")));
        self.writer
            .update_page(Kind::Message, &links.message_id, &page_id, props)
            .await?;
        let children = self.writer.notion.children(&page_id).await?;
        for block in &children {
            let Some(old) = external_url(block) else {
                continue;
            };
            // Blocks are matched by the object's key at the end of the link's path.
            let Some((_, new)) = links
                .media
                .iter()
                .find(|(key, _)| path_of(old).ends_with(&format!("/{key}")))
            else {
                continue;
            };
            if old == new {
                continue;
            }
            let kind = block["type"].as_str().unwrap_or_default();
            let id = block["id"].as_str().unwrap_or_default();
            let content = json!({ kind: { "type": "external", "external": { "url": new } } });
            self.writer.check_lease()?;
            self.writer.notion.update_block(id, &content).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_notion_shows_are_images_and_the_rest_files() {
        let image = media_block(Some("image/jpeg"), "https://s3.test/b/media/x-1.jpg?sig");
        assert_eq!(image["type"], "image");
        assert_eq!(
            external_url(&image),
            Some("https://s3.test/b/media/x-1.jpg?sig")
        );
        for other in [
            Some("application/pdf"),
            Some("image/webp"),
            Some("video/mp4"),
            None,
        ] {
            assert_eq!(
                media_block(other, "https://x/y")["type"],
                "file",
                "{other:?}"
            );
        }
    }

    #[test]
    fn blocks_are_matched_to_their_object_by_key() {
        let old = "https://s3.test/bucket/media/2026/12/04/AC1-2.pdf?X-Amz-Signature=abc";
        assert!(path_of(old).ends_with("/media/2026/12/04/AC1-2.pdf"));
        assert!(!path_of(old).ends_with("/media/2026/12/04/AC1-1.pdf"));
    }
}
