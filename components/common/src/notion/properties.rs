//! Notion property values and blocks, built within Notion's request limits: a rich-text item holds at
//! most 2000 characters (counted in UTF-16 units, as Notion counts them), an array at most 100 items.

use serde_json::{json, Value};

/// Most characters in one rich-text item.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most items in one array (rich text, blocks per request, relations).
pub const MAX_ITEMS: usize = 100;
/// Longest URL Notion accepts.
pub const MAX_URL_CHARS: usize = 2000;
/// Longest phone number / email Notion accepts.
pub const MAX_SHORT_TEXT_CHARS: usize = 200;

/// Splits `text` into pieces of at most `MAX_TEXT_CHARS` UTF-16 units, never inside a character.
pub fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut units = 0;
    for (i, c) in text.char_indices() {
        let len = c.len_utf16();
        if units + len > MAX_TEXT_CHARS {
            out.push(&text[start..i]);
            start = i;
            units = 0;
        }
        units += len;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn text_item(content: &str) -> Value {
    json!({ "type": "text", "text": { "content": content } })
}

/// Rich-text items for `text`: one per 2000-character chunk, at most 100. Text past 200,000 characters is
/// cut with a marker saying so (the page body keeps the whole text).
pub fn rich_text_items(text: &str) -> Vec<Value> {
    let pieces = chunks(text);
    if pieces.len() <= MAX_ITEMS {
        return pieces.into_iter().map(text_item).collect();
    }
    let mut items: Vec<Value> = pieces[..MAX_ITEMS - 1]
        .iter()
        .map(|p| text_item(p))
        .collect();
    items.push(text_item("… (cut here: the full text is in the page body)"));
    items
}

/// Whether `text` fits in a rich-text property whole (at most 100 items of 2000 characters).
pub fn fits_in_property(text: &str) -> bool {
    chunks(text).len() <= MAX_ITEMS
}

/// Phone numbers joined with `, `, as many whole numbers as fit in a `phone_number` property: a number
/// cut in the middle would look like another, real number.
pub fn whole_numbers(numbers: &[String]) -> String {
    let mut joined = String::new();
    for number in numbers {
        let separator = if joined.is_empty() { "" } else { ", " };
        if joined.encode_utf16().count() + separator.len() + number.encode_utf16().count()
            > MAX_SHORT_TEXT_CHARS
        {
            break;
        }
        joined.push_str(separator);
        joined.push_str(number);
    }
    joined
}

/// A `title` value.
pub fn title(text: &str) -> Value {
    json!({ "title": rich_text_items(text) })
}

/// A `rich_text` value (empty text clears it).
pub fn rich_text(text: &str) -> Value {
    json!({ "rich_text": rich_text_items(text) })
}

/// A `number` value.
pub fn number(value: Option<f64>) -> Value {
    json!({ "number": value })
}

/// A `select` value; `None` clears. Notion refuses commas in option names.
pub fn select(name: Option<&str>) -> Value {
    match name
        .map(|n| n.replace(',', " "))
        .filter(|n| !n.trim().is_empty())
    {
        Some(n) => json!({ "select": { "name": n.chars().take(100).collect::<String>() } }),
        None => json!({ "select": null }),
    }
}

/// A `date` value from an ISO-8601 timestamp; `None` clears.
pub fn date(start: Option<&str>) -> Value {
    match start.filter(|s| !s.is_empty()) {
        Some(s) => json!({ "date": { "start": s } }),
        None => json!({ "date": null }),
    }
}

/// A `checkbox` value.
pub fn checkbox(value: bool) -> Value {
    json!({ "checkbox": value })
}

/// A `url` value; `None` (or one too long for Notion) clears.
pub fn url(value: Option<&str>) -> Value {
    match value.filter(|u| !u.is_empty() && u.encode_utf16().count() <= MAX_URL_CHARS) {
        Some(u) => json!({ "url": u }),
        None => json!({ "url": null }),
    }
}

/// A `phone_number` value (Notion enforces no format; we write E.164 joined with `, `).
pub fn phone_number(value: Option<&str>) -> Value {
    match value.filter(|v| !v.is_empty()) {
        Some(v) => json!({ "phone_number": truncate(v, MAX_SHORT_TEXT_CHARS) }),
        None => json!({ "phone_number": null }),
    }
}

/// A `relation` value with at most 100 pages (the array replaces the whole value).
pub fn relation(page_ids: &[&str]) -> Value {
    json!({ "relation": page_ids.iter().take(MAX_ITEMS).map(|id| json!({ "id": id })).collect::<Vec<_>>() })
}

/// A page icon of one emoji, as Notion's examples send it (`type` left out: `PATCH /v1/pages` takes only
/// `emoji`).
pub fn emoji_icon(emoji: &str) -> Value {
    json!({ "emoji": emoji })
}

/// The icons that tell pages apart in a database view at a glance.
pub mod icons {
    /// A call someone answered that came in.
    pub const INCOMING_CALL: &str = "📲";
    /// A call the workspace placed.
    pub const OUTGOING_CALL: &str = "📞";
    /// A call nobody answered (missed, no answer, busy, abandoned, …).
    pub const MISSED_CALL: &str = "📵";
    /// A call that left a voicemail.
    pub const VOICEMAIL: &str = "📼";
    /// A text message.
    pub const TEXT: &str = "💬";
}

fn truncate(s: &str, max_units: usize) -> String {
    let mut units = 0;
    s.chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= max_units
        })
        .collect()
}

/// A `heading_2` block.
pub fn heading(text: &str) -> Value {
    json!({ "object": "block", "type": "heading_2", "heading_2": { "rich_text": rich_text_items(&truncate(text, MAX_TEXT_CHARS)) } })
}

/// Paragraph blocks holding `text` whole: one block per 100 × 2000 characters.
pub fn paragraphs(text: &str) -> Vec<Value> {
    block_run("paragraph", text)
}

/// Bulleted list items holding `text` whole.
pub fn bullets(text: &str) -> Vec<Value> {
    block_run("bulleted_list_item", text)
}

fn block_run(kind: &str, text: &str) -> Vec<Value> {
    let pieces = chunks(text);
    if pieces.is_empty() {
        return vec![json!({ "object": "block", "type": kind, kind: { "rich_text": [] } })];
    }
    pieces
        .chunks(MAX_ITEMS)
        .map(|group| {
            let items: Vec<Value> = group.iter().map(|p| text_item(p)).collect();
            json!({ "object": "block", "type": kind, kind: { "rich_text": items } })
        })
        .collect()
}

/// A paragraph with a link.
pub fn link_paragraph(label: &str, href: &str) -> Value {
    json!({ "object": "block", "type": "paragraph", "paragraph": { "rich_text": [
        { "type": "text", "text": { "content": truncate(label, MAX_TEXT_CHARS), "link": { "url": href } } }
    ] } })
}

/// The plain text of a block's rich text (for reading back what was appended).
pub fn block_text(block: &Value) -> String {
    let kind = block["type"].as_str().unwrap_or_default();
    block[kind]["rich_text"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    i["plain_text"]
                        .as_str()
                        .or_else(|| i["text"]["content"].as_str())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_limit_in_utf16_units_and_never_split_a_character() {
        let text = "😀".repeat(1500); // 3000 UTF-16 units
        let pieces = chunks(&text);
        assert_eq!(pieces.len(), 2);
        assert!(pieces
            .iter()
            .all(|p| p.encode_utf16().count() <= MAX_TEXT_CHARS));
        assert_eq!(pieces.concat(), text);
        assert!(chunks("").is_empty());
    }

    #[test]
    fn rich_text_over_200k_is_cut_with_a_marker() {
        let items = rich_text_items(&"a".repeat(250_000));
        assert_eq!(items.len(), MAX_ITEMS);
        assert!(items[99]["text"]["content"]
            .as_str()
            .unwrap()
            .contains("full text is in the page body"));
        assert_eq!(rich_text_items(&"b".repeat(4001)).len(), 3);
    }

    #[test]
    fn paragraphs_keep_everything_in_blocks_of_100_items() {
        let text = "c".repeat(2000 * 150 + 5);
        let blocks = paragraphs(&text);
        assert_eq!(blocks.len(), 2);
        let total: String = blocks.iter().map(block_text).collect();
        assert_eq!(total, text);
    }

    #[test]
    fn phone_lists_keep_whole_numbers_only() {
        let numbers: Vec<String> = (0..100).map(|i| format!("+1555555{i:04}")).collect();
        let joined = whole_numbers(&numbers);
        assert!(joined.len() <= MAX_SHORT_TEXT_CHARS);
        assert!(numbers.join(", ").starts_with(&joined));
        assert!(
            joined.ends_with(&numbers[joined.split(", ").count() - 1]),
            "{joined}"
        );
        assert_eq!(whole_numbers(&numbers[..2]), "+15555550000, +15555550001");
    }

    #[test]
    fn values_clear_with_null_and_respect_limits() {
        assert_eq!(select(Some("a,b")), json!({ "select": { "name": "a b" } }));
        assert_eq!(select(None), json!({ "select": null }));
        assert_eq!(url(Some(&"h".repeat(2001))), json!({ "url": null }));
        assert_eq!(date(Some("")), json!({ "date": null }));
        assert_eq!(
            phone_number(Some(&"1".repeat(300)))["phone_number"]
                .as_str()
                .unwrap()
                .len(),
            200
        );
        let ids: Vec<String> = (0..150).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(relation(&refs)["relation"].as_array().unwrap().len(), 100);
    }
}
