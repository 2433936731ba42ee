//! Block children of a create or append request: checked against Notion's limits (≤ 100 children per
//! array, two levels of nesting per request, ≤ 1000 blocks per request, rich-text limits) and converted
//! to the response shape.

use serde_json::{json, Map, Value};

use super::error::NotionError;
use super::values::{object, only_keys, rich_text, MAX_ARRAY};

/// Blocks in one request (notion-api.md §7).
const MAX_BLOCKS_PER_REQUEST: usize = 1000;
/// Levels of children one request may carry (top-level blocks are level 1).
const MAX_LEVELS: usize = 2;

const TEXT_BLOCKS: &[&str] = &[
    "paragraph",
    "heading_1",
    "heading_2",
    "heading_3",
    "bulleted_list_item",
    "numbered_list_item",
    "to_do",
    "toggle",
    "quote",
    "callout",
    "code",
];
const MEDIA_BLOCKS: &[&str] = &["audio", "file", "image", "video", "pdf"];
const URL_BLOCKS: &[&str] = &["bookmark", "embed"];
const EMPTY_BLOCKS: &[&str] = &["divider", "table_of_contents", "breadcrumb"];

/// A checked block ready to store: its type, its type data (response shape, without children), and its
/// own children.
#[derive(Debug)]
pub(crate) struct NewBlock {
    pub(crate) kind: String,
    pub(crate) data: Value,
    pub(crate) children: Vec<NewBlock>,
}

/// Checks a `children` array of a request.
pub(crate) fn parse_children(value: &Value, path: &str) -> Result<Vec<NewBlock>, NotionError> {
    let mut count = 0;
    let blocks = parse_level(value, path, 1, &mut count)?;
    if count > MAX_BLOCKS_PER_REQUEST {
        return Err(NotionError::validation(format!(
            "body failed validation: a request may contain at most {MAX_BLOCKS_PER_REQUEST} blocks, instead had {count}."
        )));
    }
    Ok(blocks)
}

fn parse_level(
    value: &Value,
    path: &str,
    level: usize,
    count: &mut usize,
) -> Result<Vec<NewBlock>, NotionError> {
    let items = value.as_array().ok_or_else(|| {
        NotionError::validation(format!(
            "body failed validation: {path} should be an array, instead was `{value}`."
        ))
    })?;
    if items.len() > MAX_ARRAY {
        return Err(NotionError::too_long(path, MAX_ARRAY, items.len()));
    }
    if level > MAX_LEVELS && !items.is_empty() {
        return Err(NotionError::validation(format!(
            "body failed validation: {path} nests blocks more than {MAX_LEVELS} levels deep; append deeper children in a later request."
        )));
    }
    *count += items.len();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_block(item, &format!("{path}[{i}]"), level, count))
        .collect()
}

fn parse_block(
    value: &Value,
    path: &str,
    level: usize,
    count: &mut usize,
) -> Result<NewBlock, NotionError> {
    let fields = object(value, path)?;
    if fields.get("object").is_some_and(|object| object != "block") {
        return Err(NotionError::validation(format!(
            "body failed validation: {path}.object should be `\"block\"`."
        )));
    }
    let kinds: Vec<&String> = fields
        .keys()
        .filter(|key| !matches!(key.as_str(), "object" | "type"))
        .collect();
    let [kind] = kinds.as_slice() else {
        return Err(NotionError::validation(format!(
            "body failed validation: {path} should have exactly one block type, instead had {kinds:?}."
        )));
    };
    let kind = kind.as_str();
    if fields.get("type").is_some_and(|declared| declared != kind) {
        return Err(NotionError::validation(format!(
            "body failed validation: {path}.type does not match the block's `{kind}` data."
        )));
    }
    let data_path = format!("{path}.{kind}");
    let data = object(&fields[kind], &data_path)?;
    let (data, children) = if TEXT_BLOCKS.contains(&kind) {
        text_block(kind, data, &data_path, level, count)?
    } else if MEDIA_BLOCKS.contains(&kind) {
        (media_block(kind, data, &data_path)?, Vec::new())
    } else if URL_BLOCKS.contains(&kind) {
        only_keys(data, &["url", "caption"], &data_path)?;
        let url = data.get("url").and_then(Value::as_str).ok_or_else(|| {
            NotionError::validation(format!(
                "body failed validation: {data_path}.url should be defined."
            ))
        })?;
        check_url(url, &format!("{data_path}.url"))?;
        let caption = rich_text(
            data.get("caption").unwrap_or(&json!([])),
            &format!("{data_path}.caption"),
        )?;
        (json!({ "url": url, "caption": caption }), Vec::new())
    } else if EMPTY_BLOCKS.contains(&kind) {
        only_keys(data, &["color"], &data_path)?;
        (Value::Object(data.clone()), Vec::new())
    } else {
        return Err(NotionError::unsupported(&format!("block type `{kind}`")));
    };
    Ok(NewBlock {
        kind: kind.to_owned(),
        data,
        children,
    })
}

fn text_block(
    kind: &str,
    data: &Map<String, Value>,
    path: &str,
    level: usize,
    count: &mut usize,
) -> Result<(Value, Vec<NewBlock>), NotionError> {
    let mut allowed = vec!["rich_text", "color", "children"];
    match kind {
        "to_do" => allowed.push("checked"),
        "code" => allowed.extend(["language", "caption"]),
        "callout" => allowed.push("icon"),
        "heading_1" | "heading_2" | "heading_3" => allowed.push("is_toggleable"),
        _ => {}
    }
    only_keys(data, &allowed, path)?;
    let text = data.get("rich_text").ok_or_else(|| {
        NotionError::validation(format!(
            "body failed validation: {path}.rich_text should be defined, instead was `undefined`."
        ))
    })?;
    let mut out = json!({
        "rich_text": rich_text(text, &format!("{path}.rich_text"))?,
        "color": data.get("color").and_then(Value::as_str).unwrap_or("default"),
    });
    match kind {
        "to_do" => {
            out["checked"] = json!(data
                .get("checked")
                .and_then(Value::as_bool)
                .unwrap_or(false))
        }
        "code" => {
            out["language"] = json!(data
                .get("language")
                .and_then(Value::as_str)
                .unwrap_or("plain text"));
            out["caption"] = rich_text(
                data.get("caption").unwrap_or(&json!([])),
                &format!("{path}.caption"),
            )?;
        }
        "callout" => out["icon"] = data.get("icon").cloned().unwrap_or(Value::Null),
        "heading_1" | "heading_2" | "heading_3" => {
            out["is_toggleable"] = json!(data
                .get("is_toggleable")
                .and_then(Value::as_bool)
                .unwrap_or(false));
        }
        _ => {}
    }
    let children = match data.get("children") {
        Some(children) => parse_level(children, &format!("{path}.children"), level + 1, count)?,
        None => Vec::new(),
    };
    Ok((out, children))
}

/// An external media block. Notion documents `name` for file blocks only (an image, video, PDF or audio
/// block is named by its URL), and answers a file block with its `name`: the one given, else the last
/// segment of the URL's path.
fn media_block(kind: &str, data: &Map<String, Value>, path: &str) -> Result<Value, NotionError> {
    if kind == "file" {
        only_keys(data, &["type", "external", "caption", "name"], path)?;
    } else {
        only_keys(data, &["type", "external", "caption"], path)?;
    }
    if data.get("type").is_some_and(|kind| kind != "external") {
        return Err(NotionError::unsupported(
            "a media block that is not `external`",
        ));
    }
    let external = object(
        data.get("external").unwrap_or(&Value::Null),
        &format!("{path}.external"),
    )?;
    let url = external.get("url").and_then(Value::as_str).ok_or_else(|| {
        NotionError::validation(format!(
            "body failed validation: {path}.external.url should be defined."
        ))
    })?;
    check_url(url, &format!("{path}.external.url"))?;
    let caption = rich_text(
        data.get("caption").unwrap_or(&json!([])),
        &format!("{path}.caption"),
    )?;
    let mut out = json!({ "type": "external", "external": { "url": url }, "caption": caption });
    if kind == "file" {
        let name = match data.get("name") {
            None => url
                .split(['?', '#'])
                .next()
                .and_then(|u| u.rsplit('/').next())
                .unwrap_or_default()
                .to_owned(),
            Some(Value::String(name)) => name.clone(),
            Some(other) => {
                return Err(NotionError::validation(format!(
                    "body failed validation: {path}.name should be a string, instead was `{other}`."
                )))
            }
        };
        out["name"] = json!(name);
    }
    Ok(out)
}

fn check_url(url: &str, path: &str) -> Result<(), NotionError> {
    let len = super::values::utf16_len(url);
    if len > 2000 {
        return Err(NotionError::too_long(path, 2000, len));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(NotionError::validation(format!(
            "body failed validation: {path} should be a valid URL, instead was `\"{url}\"`."
        )));
    }
    Ok(())
}
