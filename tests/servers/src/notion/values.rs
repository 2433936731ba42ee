//! Property schemas and property values: request shapes in, Notion's response shapes out, with the size
//! limits of notion-api.md §7.
//!
//! Lengths are counted in UTF-16 code units, as Notion's validator (JavaScript `length`) counts them: a
//! 2000-character chunk of emoji is 4000 units and is refused, which a client that chunks by Rust `char`
//! must handle.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::error::NotionError;

/// Limits of notion-api.md §7.
pub(crate) const MAX_TEXT: usize = 2000;
pub(crate) const MAX_ARRAY: usize = 100;
const MAX_URL: usize = 2000;
const MAX_EMAIL: usize = 200;
const MAX_PHONE: usize = 200;
const MAX_EQUATION: usize = 1000;
/// Relations in page objects returned by the API (notion-api.md §3, N7).
pub(crate) const READ_RELATION_CAP: usize = 25;

/// The property types this server models.
pub(crate) const KINDS: &[&str] = &[
    "title",
    "rich_text",
    "number",
    "select",
    "multi_select",
    "status",
    "date",
    "checkbox",
    "url",
    "email",
    "phone_number",
    "relation",
    "files",
];

/// One property of a data source's schema.
#[derive(Clone, Debug)]
pub(crate) struct Property {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: String,
    /// The type's configuration as Notion returns it (`{options: […]}`, `{data_source_id, …}`, `{}`).
    pub(crate) config: Value,
}

impl Property {
    pub(crate) fn render(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "type": self.kind,
            "description": null,
            (self.kind.clone()): self.config,
        })
    }

    pub(crate) fn options(&self) -> &[Value] {
        self.config["options"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The value of an unset property, as Notion returns it.
    pub(crate) fn empty(&self) -> Value {
        match self.kind.as_str() {
            "title" | "rich_text" | "multi_select" | "relation" | "files" => json!([]),
            "checkbox" => json!(false),
            _ => Value::Null,
        }
    }

    /// `{id, type, <type>: value}` (plus `has_more` for relations, capped at 25 when `cap`).
    pub(crate) fn render_value(&self, value: Option<&Value>, cap: bool) -> Value {
        let value = value.cloned().unwrap_or_else(|| self.empty());
        let mut rendered = json!({ "id": self.id, "type": self.kind });
        if self.kind == "relation" {
            let all = value.as_array().cloned().unwrap_or_default();
            let has_more = cap && all.len() > READ_RELATION_CAP;
            let shown: Vec<Value> = if has_more {
                all[..READ_RELATION_CAP].to_vec()
            } else {
                all
            };
            rendered["relation"] = Value::Array(shown);
            rendered["has_more"] = json!(has_more);
        } else {
            rendered[self.kind.as_str()] = value;
        }
        rendered
    }
}

/// A select option id derived from the property and the name, so auto-created options get the same id
/// in every run.
pub(crate) fn option_id(property_id: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{property_id}\0{name}").as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

fn check_len(text: &str, max: usize, path: &str) -> Result<(), NotionError> {
    let len = utf16_len(text);
    if len > max {
        return Err(NotionError::too_long(path, max, len));
    }
    Ok(())
}

pub(crate) fn object<'a>(
    value: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, NotionError> {
    value.as_object().ok_or_else(|| {
        NotionError::validation(format!(
            "body failed validation: {path} should be an object, instead was `{value}`."
        ))
    })
}

pub(crate) fn only_keys(
    map: &Map<String, Value>,
    allowed: &[&str],
    path: &str,
) -> Result<(), NotionError> {
    match map.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(NotionError::validation(format!(
            "body failed validation: {path}.{key} should be not present, instead was `{}`.",
            map[key]
        ))),
        None => Ok(()),
    }
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, NotionError> {
    value.as_str().ok_or_else(|| {
        NotionError::validation(format!(
            "body failed validation: {path} should be a string, instead was `{value}`."
        ))
    })
}

fn array<'a>(value: &'a Value, path: &str) -> Result<&'a Vec<Value>, NotionError> {
    let items = value.as_array().ok_or_else(|| {
        NotionError::validation(format!(
            "body failed validation: {path} should be an array, instead was `{value}`."
        ))
    })?;
    if items.len() > MAX_ARRAY {
        return Err(NotionError::too_long(path, MAX_ARRAY, items.len()));
    }
    Ok(items)
}

/// A rich-text array (request shape) in response shape.
pub(crate) fn rich_text(value: &Value, path: &str) -> Result<Value, NotionError> {
    let items = array(value, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let fields = object(item, &path)?;
        only_keys(
            fields,
            &[
                "type",
                "text",
                "equation",
                "mention",
                "annotations",
                "plain_text",
                "href",
            ],
            &path,
        )?;
        let annotations = annotations(fields.get("annotations"), &format!("{path}.annotations"))?;
        let kind = match fields.get("type") {
            Some(kind) => string(kind, &format!("{path}.type"))?,
            None if fields.contains_key("equation") => "equation",
            None if fields.contains_key("mention") => "mention",
            None => "text",
        };
        match kind {
            "text" => {
                let text = object(
                    fields.get("text").unwrap_or(&Value::Null),
                    &format!("{path}.text"),
                )?;
                only_keys(text, &["content", "link"], &format!("{path}.text"))?;
                let content = string(
                    text.get("content").unwrap_or(&Value::Null),
                    &format!("{path}.text.content"),
                )?;
                check_len(content, MAX_TEXT, &format!("{path}.text.content"))?;
                let link = match text.get("link") {
                    None | Some(Value::Null) => Value::Null,
                    Some(link) => {
                        let link_path = format!("{path}.text.link");
                        let link = object(link, &link_path)?;
                        only_keys(link, &["url"], &link_path)?;
                        let url = string(link.get("url").unwrap_or(&Value::Null), &format!("{link_path}.url"))?;
                        check_len(url, MAX_URL, &format!("{link_path}.url"))?;
                        json!({ "url": url })
                    }
                };
                out.push(json!({
                    "type": "text",
                    "text": { "content": content, "link": link },
                    "annotations": annotations,
                    "plain_text": content,
                    "href": link.get("url").cloned().unwrap_or(Value::Null),
                }));
            }
            "equation" => {
                let equation = object(
                    fields.get("equation").unwrap_or(&Value::Null),
                    &format!("{path}.equation"),
                )?;
                let expression = string(
                    equation.get("expression").unwrap_or(&Value::Null),
                    &format!("{path}.equation.expression"),
                )?;
                check_len(expression, MAX_EQUATION, &format!("{path}.equation.expression"))?;
                out.push(json!({
                    "type": "equation",
                    "equation": { "expression": expression },
                    "annotations": annotations,
                    "plain_text": expression,
                    "href": null,
                }));
            }
            "mention" => return Err(NotionError::unsupported("a mention in rich text")),
            other => {
                return Err(NotionError::validation(format!(
                    "body failed validation: {path}.type should be `text`, `mention` or `equation`, instead was `\"{other}\"`."
                )))
            }
        }
    }
    Ok(Value::Array(out))
}

fn annotations(value: Option<&Value>, path: &str) -> Result<Value, NotionError> {
    let mut out = json!({
        "bold": false, "italic": false, "strikethrough": false, "underline": false, "code": false,
        "color": "default",
    });
    let Some(value) = value else {
        return Ok(out);
    };
    let fields = object(value, path)?;
    only_keys(
        fields,
        &[
            "bold",
            "italic",
            "strikethrough",
            "underline",
            "code",
            "color",
        ],
        path,
    )?;
    for (key, value) in fields {
        let valid = if key == "color" {
            value.is_string()
        } else {
            value.is_boolean()
        };
        if !valid {
            return Err(NotionError::validation(format!(
                "body failed validation: {path}.{key} has the wrong type: `{value}`."
            )));
        }
        out[key.as_str()] = value.clone();
    }
    Ok(out)
}

/// The plain text of a rich-text array (response shape).
pub(crate) fn plain_text(rich_text: &Value) -> String {
    rich_text
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["plain_text"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// A property's configuration from a schema request (`{"select": {"options": […]}}`), checked and in
/// response shape. `relation_target` resolves a data source id to its database id.
pub(crate) fn property_config(
    name: &str,
    request: &Value,
    property_id: &str,
    relation_target: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Value), NotionError> {
    let path = format!("body.properties.{name}");
    let fields = object(request, &path)?;
    let kinds: Vec<&String> = fields
        .keys()
        .filter(|key| !matches!(key.as_str(), "type" | "description" | "name" | "id"))
        .collect();
    let [kind] = kinds.as_slice() else {
        return Err(NotionError::validation(format!(
            "body failed validation: {path} should define exactly one property type, instead had {kinds:?}."
        )));
    };
    let kind = kind.as_str();
    if !KINDS.contains(&kind) {
        return Err(NotionError::unsupported(&format!("property type `{kind}`")));
    }
    if let Some(declared) = fields.get("type") {
        if declared.as_str() != Some(kind) {
            return Err(NotionError::validation(format!(
                "body failed validation: {path}.type `{declared}` does not match the configuration key `{kind}`."
            )));
        }
    }
    if let Some(new_name) = fields.get("name") {
        if new_name.as_str() != Some(name) {
            return Err(NotionError::unsupported("renaming a property"));
        }
    }
    let inner = &fields[kind];
    let inner_path = format!("{path}.{kind}");
    let inner_fields = object(inner, &inner_path)?;
    let config = match kind {
        "select" | "multi_select" | "status" => {
            only_keys(inner_fields, &["options"], &inner_path)?;
            let mut options = Vec::new();
            if let Some(requested) = inner_fields.get("options") {
                for (i, option) in array(requested, &format!("{inner_path}.options"))?
                    .iter()
                    .enumerate()
                {
                    let option_path = format!("{inner_path}.options[{i}]");
                    let option = object(option, &option_path)?;
                    only_keys(
                        option,
                        &["name", "color", "description", "id"],
                        &option_path,
                    )?;
                    let option_name = select_name(
                        option.get("name").unwrap_or(&Value::Null),
                        &format!("{option_path}.name"),
                    )?;
                    options.push(json!({
                        "id": option_id(property_id, option_name),
                        "name": option_name,
                        "color": option.get("color").and_then(Value::as_str).unwrap_or("default"),
                        "description": null,
                    }));
                }
            }
            json!({ "options": options })
        }
        "relation" => {
            only_keys(
                inner_fields,
                &["data_source_id", "type", "single_property", "dual_property"],
                &inner_path,
            )?;
            let target = string(
                inner_fields.get("data_source_id").unwrap_or(&Value::Null),
                &format!("{inner_path}.data_source_id"),
            )?;
            let target = super::normalize_id(target).ok_or_else(|| {
                NotionError::validation(format!(
                    "{inner_path}.data_source_id should be a valid uuid"
                ))
            })?;
            let database_id = relation_target(&target)
                .ok_or_else(|| NotionError::not_found("data source", &target))?;
            if inner_fields.contains_key("dual_property") {
                return Err(NotionError::unsupported("a dual_property relation"));
            }
            json!({
                "data_source_id": target,
                "database_id": database_id,
                "type": "single_property",
                "single_property": {},
            })
        }
        "number" => {
            only_keys(inner_fields, &["format"], &inner_path)?;
            json!({ "format": inner_fields.get("format").and_then(Value::as_str).unwrap_or("number") })
        }
        _ => {
            only_keys(inner_fields, &[], &inner_path)?;
            json!({})
        }
    };
    Ok((kind.to_owned(), config))
}

fn select_name<'a>(value: &'a Value, path: &str) -> Result<&'a str, NotionError> {
    let name = string(value, path)?;
    if name.contains(',') {
        return Err(NotionError::validation(format!(
            "body failed validation: {path} cannot contain commas, instead was `\"{name}\"`."
        )));
    }
    check_len(name, 100, path)?;
    Ok(name)
}

/// A property value checked against its property and turned into the stored (response) value.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) value: Value,
    /// Select or multi-select option names the write introduces (Notion creates them).
    pub(crate) new_options: Vec<String>,
}

/// Checks a property value of a page create or update (request shape) and converts it.
/// `relation_ok(page_id)` says whether the page exists in the relation's target data source.
pub(crate) fn property_value(
    property: &Property,
    request: &Value,
    relation_ok: &dyn Fn(&str) -> bool,
) -> Result<Written, NotionError> {
    let name = &property.name;
    let kind = property.kind.as_str();
    let path = format!("body.properties.{name}");
    let fields = object(request, &path)?;
    let Some(value) = fields.get(kind) else {
        return Err(NotionError::validation(format!(
            "{name} is expected to be {kind}."
        )));
    };
    if fields
        .get("type")
        .is_some_and(|declared| declared.as_str() != Some(kind))
    {
        return Err(NotionError::validation(format!(
            "{name} is expected to be {kind}."
        )));
    }
    // A value read from a page (`{id, type, <type>, has_more}`) may be written back as it is.
    only_keys(fields, &[kind, "type", "id", "has_more"], &path)?;
    let path = format!("{path}.{kind}");
    let mut new_options = Vec::new();
    let value = match kind {
        "title" | "rich_text" => rich_text(value, &path)?,
        "number" => match value {
            Value::Null | Value::Number(_) => value.clone(),
            _ => return Err(NotionError::validation(format!("body failed validation: {path} should be a number or `null`, instead was `{value}`."))),
        },
        "checkbox" => match value {
            Value::Bool(_) => value.clone(),
            _ => return Err(NotionError::validation(format!("body failed validation: {path} should be a boolean, instead was `{value}`."))),
        },
        "url" | "email" | "phone_number" => match value {
            Value::Null => Value::Null,
            _ => {
                let text = string(value, &path)?;
                let max = match kind {
                    "url" => MAX_URL,
                    "email" => MAX_EMAIL,
                    _ => MAX_PHONE,
                };
                check_len(text, max, &path)?;
                value.clone()
            }
        },
        "select" | "status" => match value {
            Value::Null => Value::Null,
            _ => {
                let (option, new) = option(property, value, &path)?;
                if new && kind == "status" {
                    return Err(NotionError::validation(format!(
                        "Invalid status option. Status option \"{}\" does not exist for {name}.",
                        option["name"].as_str().unwrap_or_default()
                    )));
                }
                if new {
                    new_options.push(option["name"].as_str().unwrap_or_default().to_owned());
                }
                option
            }
        },
        "multi_select" => {
            let mut chosen = Vec::new();
            for (i, item) in array(value, &path)?.iter().enumerate() {
                let (option, new) = option(property, item, &format!("{path}[{i}]"))?;
                if new {
                    new_options.push(option["name"].as_str().unwrap_or_default().to_owned());
                }
                chosen.push(option);
            }
            Value::Array(chosen)
        }
        "date" => date(value, &path)?,
        "relation" => {
            let mut ids: Vec<Value> = Vec::new();
            for (i, item) in array(value, &path)?.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                let item = object(item, &item_path)?;
                let raw = string(item.get("id").unwrap_or(&Value::Null), &format!("{item_path}.id"))?;
                let id = super::normalize_id(raw).ok_or_else(|| {
                    NotionError::validation(format!("body failed validation: {item_path}.id should be a valid uuid, instead was `\"{raw}\"`."))
                })?;
                if !relation_ok(&id) {
                    return Err(NotionError::validation(format!(
                        "Relation {name}: page {id} does not exist in the related data source or is not shared with the integration."
                    )));
                }
                if !ids.iter().any(|seen| seen["id"] == id.as_str()) {
                    ids.push(json!({ "id": id }));
                }
            }
            Value::Array(ids)
        }
        "files" => {
            let mut files = Vec::new();
            for (i, item) in array(value, &path)?.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                let file = object(item, &item_path)?;
                only_keys(file, &["name", "type", "external", "file"], &item_path)?;
                if file.contains_key("file") || file.get("type").and_then(Value::as_str) == Some("file") {
                    return Err(NotionError::unsupported("a Notion-hosted file (use `external`)"));
                }
                let file_name = string(file.get("name").unwrap_or(&Value::Null), &format!("{item_path}.name"))?;
                check_len(file_name, 100, &format!("{item_path}.name"))?;
                let external = object(file.get("external").unwrap_or(&Value::Null), &format!("{item_path}.external"))?;
                let url = string(external.get("url").unwrap_or(&Value::Null), &format!("{item_path}.external.url"))?;
                check_len(url, MAX_URL, &format!("{item_path}.external.url"))?;
                files.push(json!({ "name": file_name, "type": "external", "external": { "url": url } }));
            }
            Value::Array(files)
        }
        other => return Err(NotionError::unsupported(&format!("writing a `{other}` property"))),
    };
    Ok(Written { value, new_options })
}

/// A select option chosen by `{name}` or `{id}`; `true` when the name is new (and will be created).
fn option(property: &Property, value: &Value, path: &str) -> Result<(Value, bool), NotionError> {
    let fields = object(value, path)?;
    only_keys(fields, &["name", "id", "color", "description"], path)?;
    if let Some(id) = fields.get("id") {
        let id = string(id, &format!("{path}.id"))?;
        return property
            .options()
            .iter()
            .find(|option| option["id"] == id)
            .map(|option| {
                (
                    json!({ "id": option["id"], "name": option["name"], "color": option["color"] }),
                    false,
                )
            })
            .ok_or_else(|| {
                NotionError::validation(format!(
                    "Select option with id {id} does not exist for {}.",
                    property.name
                ))
            });
    }
    let name = select_name(
        fields.get("name").unwrap_or(&Value::Null),
        &format!("{path}.name"),
    )?;
    match property
        .options()
        .iter()
        .find(|option| option["name"] == name)
    {
        Some(option) => Ok((
            json!({ "id": option["id"], "name": name, "color": option["color"] }),
            false,
        )),
        None => Ok((
            json!({ "id": option_id(&property.id, name), "name": name, "color": "default" }),
            true,
        )),
    }
}

/// A date value `{start, end?, time_zone?}`; start and end must be ISO 8601 dates or date-times.
fn date(value: &Value, path: &str) -> Result<Value, NotionError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let fields = object(value, path)?;
    only_keys(fields, &["start", "end", "time_zone"], path)?;
    let time_zone = match fields.get("time_zone") {
        None | Some(Value::Null) => Value::Null,
        Some(zone) => json!(string(zone, &format!("{path}.time_zone"))?),
    };
    let zoned = !time_zone.is_null();
    let start = normalize_date(
        string(
            fields.get("start").unwrap_or(&Value::Null),
            &format!("{path}.start"),
        )?,
        zoned,
        &format!("{path}.start"),
    )?;
    let end = match fields.get("end") {
        None | Some(Value::Null) => Value::Null,
        Some(end) => json!(normalize_date(
            string(end, &format!("{path}.end"))?,
            zoned,
            &format!("{path}.end")
        )?),
    };
    Ok(json!({ "start": start, "end": end, "time_zone": time_zone }))
}

/// Notion answers date-times as `2025-10-20T19:21:59.545+00:00` whatever the request's spelling, so a
/// client comparing what it wrote with what it reads must parse, not compare strings. A date-time without
/// an offset is UTC, unless the value names a `time_zone`, which then gives its meaning.
fn normalize_date(raw: &str, zoned: bool, path: &str) -> Result<String, NotionError> {
    if chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_ok() {
        return Ok(raw.to_owned());
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(at.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string());
    }
    if let Ok(at) = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f") {
        let offset = if zoned { "" } else { "+00:00" };
        return Ok(format!("{}{offset}", at.format("%Y-%m-%dT%H:%M:%S%.3f")));
    }
    Err(NotionError::validation(format!(
        "body failed validation: {path} should be a valid ISO 8601 date string, instead was `\"{raw}\"`."
    )))
}
