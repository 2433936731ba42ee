//! Message pages in the Messages database, with the reference's properties (Message ID, Direction, From,
//! To, Content, Status, …) and its data bugs fixed: every recipient in `To`, the workspace's phone number
//! (not its `PN…` id) in `OpenPhone Number`, the conversation id, and statuses applied in order.

use serde_json::{json, Map, Value};

use super::calls::Names;
use super::canvas_backlink;
use super::canvas_relink::canvas_or_retry_later;
use super::map::Kind;
use super::message_media::MessageMedia;
use super::{Section, WriteError, Writer};
use crate::contacts;
use crate::domain::{Direction, MessageStatus, E164};
use crate::notion::properties as p;
use crate::openphone::types::Message;
use crate::phone_numbers;

/// The rank of a message's status ([`MessageStatus::rank`]); a message without one ranks lowest.
pub fn status_rank(status: Option<&MessageStatus>) -> i64 {
    status.map_or(0, MessageStatus::rank)
}

/// Most other parties of a group text looked up in the Canvas per message.
const MAX_LINKED_PARTIES: usize = 10;

/// The other parties of a message, once each: everyone on it but the workspace's own number.
fn other_parties(from: &[String], to: &[String], own: Option<&str>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    from.iter()
        .chain(to)
        .filter(|n| Some(n.as_str()) != own)
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect()
}

/// Numbers as E.164 where they parse, as given otherwise (a short code stays a short code).
fn normalized(numbers: &[String]) -> Vec<String> {
    numbers
        .iter()
        .map(|n| E164::parse(n).map_or_else(|_| n.trim().to_owned(), |e| e.to_string()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// Writes message pages: each event's message onto its one page, with the [`Writer`]'s page primitives
/// ([`Writer::messages`] makes one).
pub struct MessagePages<'w> {
    writer: &'w Writer<'w>,
}

impl<'w> MessagePages<'w> {
    pub(super) fn new(writer: &'w Writer<'w>) -> Self {
        Self { writer }
    }

    /// The copies and links of the messages' pictures and files.
    pub fn media(&self) -> MessageMedia<'w> {
        MessageMedia::new(self.writer)
    }

    /// Creates or updates the page of `message`.
    pub async fn upsert(&self, message: &Message) -> Result<String, WriteError> {
        if message.id.trim().is_empty() {
            return Err(WriteError::BadData("message without an id".into()));
        }
        let outgoing = message.direction == Some(Direction::Outgoing);
        let from = message
            .from
            .as_deref()
            .map(|f| normalized(&[f.to_owned()]))
            .unwrap_or_default();
        let to = normalized(&message.to);
        // The stored list gives the number of a PN id; without it the direction says which side is ours
        // (no OpenPhone request is spent on a message).
        let workspace_number = match message.phone_number_id.as_deref() {
            Some(id) => phone_numbers::find(self.writer.platform, id)?.map(|k| k.number),
            None => None,
        }
        .or_else(|| {
            if outgoing {
                from.first().cloned()
            } else {
                to.first().cloned()
            }
        });
        let others = other_parties(&from, &to, workspace_number.as_deref());
        // Every other party of a group text is linked to its record. A Canvas problem costs the page its
        // relation for now, never the page (see `canvas_relink`).
        let mut found = Vec::new();
        for number in others.iter().take(MAX_LINKED_PARTIES) {
            let lookup = self.writer.canvas().link_phone(number).await;
            let lookup = lookup.map(|found| found.page_id).map_err(WriteError::from);
            if let Some(page) = canvas_or_retry_later(
                self.writer.platform,
                Kind::Message,
                &message.id,
                Some(number),
                lookup,
            )? {
                found.push((number.as_str(), page));
            }
        }
        let found: Vec<(&str, &str)> = found.iter().map(|(n, p)| (*n, p.as_str())).collect();
        // The numbers are kept so a Canvas record added later links this page (see `canvas_backlink`).
        let linked = canvas_backlink::record_numbers(
            self.writer.platform,
            Kind::Message,
            &message.id,
            &others,
            &found,
        )?;
        let canvas: Vec<&str> = linked.relation.iter().map(String::as_str).collect();
        let names = Names {
            contact: (!others.is_empty()).then_some(
                contacts::party_names(self.writer.platform, self.writer.openphone, &others).await,
            ),
            handled_by: message
                .user_id
                .as_deref()
                .map(|user| contacts::user_name(self.writer.platform, None, user))
                .transpose()?,
        };
        let icon = p::emoji_icon(p::icons::TEXT);
        let rank = status_rank(message.status.as_ref());
        let media = self.media().copy(message).await;

        let (page_id, created) = self
            .writer
            .ensure_page(
                Kind::Message,
                &message.id,
                message.phone_number_id.as_deref(),
                message.created_at.as_deref(),
                Some(&icon),
                || {
                    let mut props = self.properties(
                        message,
                        &from,
                        &to,
                        workspace_number.as_deref(),
                        &canvas,
                        &names,
                    );
                    if let Some(props) = props.as_object_mut() {
                        props.extend(media.properties(message));
                    }
                    let children = self.media().children_for_create(&message.id, &media)?;
                    Ok((props, children))
                },
            )
            .await?;
        let newest = self
            .writer
            .map
            .advance_status(Kind::Message, &message.id, rank)?;
        if created {
            if let Some(first) = canvas.first() {
                self.writer
                    .map
                    .set_canvas(Kind::Message, &message.id, first)?;
            }
            self.append_long_text(message, &page_id).await?;
            return self.media().append(message, page_id, created, media).await;
        }
        let mut update = Map::new();
        if newest {
            update.insert(
                "Status".into(),
                p::select(message.status.as_ref().map(MessageStatus::as_str)),
            );
            if let Some(updated) = message.updated_at.as_deref() {
                update.insert("Updated At".into(), p::date(Some(updated)));
            }
        }
        if let Some(text) = message.text.as_deref() {
            update.insert("Content".into(), p::rich_text(text));
        }
        update.extend(media.properties(message));
        if linked.grew {
            update.insert("Canvas".into(), p::relation(&canvas));
        }
        if !update.is_empty() {
            self.writer
                .update_page(Kind::Message, &message.id, &page_id, update)
                .await?;
        }
        if let Some(first) = canvas.first() {
            self.writer
                .map
                .set_canvas(Kind::Message, &message.id, first)?;
        }
        self.append_long_text(message, &page_id).await?;
        self.media().append(message, page_id, created, media).await
    }

    /// A text longer than the `Content` property holds goes into the page body too, whole, once.
    async fn append_long_text(&self, message: &Message, page_id: &str) -> Result<(), WriteError> {
        let Some(text) = message.text.as_deref().filter(|t| !p::fits_in_property(t)) else {
            return Ok(());
        };
        let section = Section {
            name: "content",
            title: "Message",
            body: p::paragraphs(text),
        };
        self.writer
            .append_sections(Kind::Message, &message.id, page_id, &[section])
            .await
    }

    fn properties(
        &self,
        message: &Message,
        from: &[String],
        to: &[String],
        workspace_number: Option<&str>,
        canvas: &[&str],
        names: &Names,
    ) -> Value {
        let media: Vec<&str> = message
            .media
            .iter()
            .filter_map(|m| m.url.as_deref())
            .collect();
        let now = chrono::DateTime::from_timestamp_millis(self.writer.platform.clock.now_ms())
            .unwrap_or_default()
            .to_rfc3339();
        let raw = serde_json::to_string_pretty(&json!({
            "id": message.id, "direction": message.direction, "status": message.status,
            "from": from, "to": to, "phoneNumberId": message.phone_number_id, "userId": message.user_id,
            "conversationId": message.conversation_id, "createdAt": message.created_at,
            "updatedAt": message.updated_at, "media": media,
        }))
        .expect("JSON values serialize");
        json!({
            "Message ID": p::title(&message.id),
            "Direction": p::select(message.direction.as_ref().map(Direction::as_str)),
            "From": p::phone_number(from.first().map(String::as_str)),
            "To": p::phone_number(Some(&p::whole_numbers(to))),
            "Content": p::rich_text(message.text.as_deref().unwrap_or_default()),
            "Status": p::select(message.status.as_ref().map(MessageStatus::as_str)),
            "OpenPhone Number": p::rich_text(workspace_number.unwrap_or_default()),
            "Phone Number ID": p::rich_text(message.phone_number_id.as_deref().unwrap_or_default()),
            "User ID": p::rich_text(message.user_id.as_deref().unwrap_or_default()),
            "Created At": p::date(message.created_at.as_deref()),
            "Updated At": p::date(message.updated_at.as_deref().or(message.created_at.as_deref())),
            "Conversation ID": p::rich_text(message.conversation_id.as_deref().unwrap_or_default()),
            "Canvas": p::relation(canvas),
            "Contact": p::rich_text(names.contact.as_deref().unwrap_or_default()),
            "Handled By": p::rich_text(names.handled_by.as_deref().unwrap_or_default()),
            "Raw Data": p::rich_text(&raw),
            "Synced At": p::date(Some(&now)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_ranked_so_late_events_cannot_go_back() {
        let rank = |status: &str| status_rank(Some(&MessageStatus::from(status)));
        assert!(rank("delivered") > rank("sent"));
        assert!(rank("sent") > rank("queued"));
        assert_eq!(rank("received"), rank("sent"));
        assert_eq!(rank("undelivered"), rank("delivered"));
        assert_eq!(rank("failed"), rank("delivered"));
        assert_eq!(rank("a-status-openphone-adds"), rank("queued"));
        assert_eq!(status_rank(None), 0);
    }

    #[test]
    fn numbers_are_normalized_but_short_codes_kept() {
        assert_eq!(
            normalized(&["(555) 555-0123".into(), "262966".into(), " ".into()]),
            vec!["+15555550123", "262966"]
        );
    }
}
