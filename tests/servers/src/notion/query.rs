//! Filters and sorts of `POST /v1/data_sources/{id}/query` (notion-api.md §6).
//!
//! The filter's type key must be the property's type (`{"property": "Phone", "rich_text": …}` on a
//! `phone_number` property is a 400), each condition object holds exactly one operator, and compound
//! filters nest at most two levels. Text comparisons are case-sensitive: Notion does not document its
//! case rules, and a case-sensitive server makes the app normalize what it writes and queries, which is
//! right whichever way the real service behaves.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

use super::error::NotionError;
use super::values::{object, plain_text, Property, MAX_ARRAY};
use super::{normalize_id, Page};

/// How many levels of `and`/`or` a filter may have.
const MAX_COMPOUND_LEVELS: usize = 2;

#[derive(Debug)]
pub(crate) enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Property {
        property: Property,
        condition: Condition,
    },
    Timestamp {
        created: bool,
        condition: Condition,
    },
}

#[derive(Debug)]
pub(crate) enum Condition {
    Text { op: String, value: String },
    Number { op: String, value: f64 },
    Checkbox { equals: bool, value: bool },
    Select { equals: bool, value: String },
    MultiSelect { contains: bool, value: String },
    Date { op: String, value: DateBound },
    Relation { contains: bool, id: String },
    Empty(bool),
}

/// A date in a filter: a whole day (date-only) or an instant.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DateBound {
    Day(NaiveDate),
    Instant(DateTime<Utc>),
}

fn invalid(path: &str, detail: impl std::fmt::Display) -> NotionError {
    NotionError::validation(format!("body failed validation: {path} {detail}"))
}

/// Parses a filter against the data source's `properties`.
pub(crate) fn parse_filter(value: &Value, properties: &[Property]) -> Result<Filter, NotionError> {
    parse(value, properties, 0, "body.filter")
}

fn parse(
    value: &Value,
    properties: &[Property],
    levels: usize,
    path: &str,
) -> Result<Filter, NotionError> {
    let fields = object(value, path)?;
    for compound in ["and", "or"] {
        let Some(items) = fields.get(compound) else {
            continue;
        };
        if fields.len() != 1 {
            return Err(invalid(
                path,
                format!(
                    "should have only `{compound}`, instead had {:?}.",
                    fields.keys().collect::<Vec<_>>()
                ),
            ));
        }
        let levels = levels + 1;
        if levels > MAX_COMPOUND_LEVELS {
            return Err(invalid(
                path,
                format!("nests compound filters more than {MAX_COMPOUND_LEVELS} levels deep."),
            ));
        }
        let items = items
            .as_array()
            .ok_or_else(|| invalid(&format!("{path}.{compound}"), "should be an array."))?;
        if items.len() > MAX_ARRAY {
            return Err(NotionError::too_long(
                &format!("{path}.{compound}"),
                MAX_ARRAY,
                items.len(),
            ));
        }
        let parsed = items
            .iter()
            .enumerate()
            .map(|(i, item)| parse(item, properties, levels, &format!("{path}.{compound}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if compound == "and" {
            Filter::And(parsed)
        } else {
            Filter::Or(parsed)
        });
    }
    if let Some(timestamp) = fields.get("timestamp") {
        let which = timestamp.as_str().unwrap_or_default();
        if !matches!(which, "created_time" | "last_edited_time") {
            return Err(invalid(
                &format!("{path}.timestamp"),
                format!(
                    "should be `created_time` or `last_edited_time`, instead was `{timestamp}`."
                ),
            ));
        }
        let condition = single_key(fields, "timestamp", which, path)?;
        return Ok(Filter::Timestamp {
            created: which == "created_time",
            condition: date_condition(condition, &format!("{path}.{which}"))?,
        });
    }
    let name = fields
        .get("property")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            invalid(
                path,
                "should define `property`, `timestamp`, `and` or `or`.",
            )
        })?;
    let property = properties
        .iter()
        .find(|p| p.name == name || p.id == name)
        .ok_or_else(|| {
            NotionError::validation(format!("Could not find property with name or id: {name}"))
        })?
        .clone();
    let keys: Vec<&String> = fields.keys().filter(|key| *key != "property").collect();
    let [key] = keys.as_slice() else {
        return Err(invalid(
            path,
            format!(
                "should have exactly one filter type besides `property`, instead had {keys:?}."
            ),
        ));
    };
    if **key != property.kind {
        return Err(NotionError::validation(format!(
            "body failed validation: {path}.{key} does not match the type of property \"{}\", which is {}: use `{}`.",
            property.name, property.kind, property.kind
        )));
    }
    let condition_path = format!("{path}.{key}");
    let condition = object(&fields[key.as_str()], &condition_path)?;
    let condition = match property.kind.as_str() {
        "title" | "rich_text" | "url" | "email" | "phone_number" => {
            text_condition(condition, &condition_path)?
        }
        "number" => number_condition(condition, &condition_path)?,
        "checkbox" => {
            let (op, value) = one_operator(condition, &condition_path)?;
            let value = value.as_bool().ok_or_else(|| {
                invalid(&format!("{condition_path}.{op}"), "should be a boolean.")
            })?;
            match op {
                "equals" => Condition::Checkbox {
                    equals: true,
                    value,
                },
                "does_not_equal" => Condition::Checkbox {
                    equals: false,
                    value,
                },
                _ => return Err(unknown_operator(&condition_path, op)),
            }
        }
        "select" | "status" => match one_operator(condition, &condition_path)? {
            (op @ ("equals" | "does_not_equal"), value) => Condition::Select {
                equals: op == "equals",
                value: string(value, &format!("{condition_path}.{op}"))?,
            },
            (op, value) => empty_condition(op, value, &condition_path)?,
        },
        "multi_select" => match one_operator(condition, &condition_path)? {
            (op @ ("contains" | "does_not_contain"), value) => Condition::MultiSelect {
                contains: op == "contains",
                value: string(value, &format!("{condition_path}.{op}"))?,
            },
            (op, value) => empty_condition(op, value, &condition_path)?,
        },
        "date" => date_condition(condition, &condition_path)?,
        "relation" => match one_operator(condition, &condition_path)? {
            (op @ ("contains" | "does_not_contain"), value) => {
                let raw = string(value, &format!("{condition_path}.{op}"))?;
                let id = normalize_id(&raw).ok_or_else(|| {
                    invalid(&format!("{condition_path}.{op}"), "should be a valid uuid.")
                })?;
                Condition::Relation {
                    contains: op == "contains",
                    id,
                }
            }
            (op, value) => empty_condition(op, value, &condition_path)?,
        },
        "files" => {
            let (op, value) = one_operator(condition, &condition_path)?;
            empty_condition(op, value, &condition_path)?
        }
        other => {
            return Err(NotionError::unsupported(&format!(
                "filtering on a `{other}` property"
            )))
        }
    };
    Ok(Filter::Property {
        property,
        condition,
    })
}

fn single_key<'a>(
    fields: &'a Map<String, Value>,
    tag: &str,
    key: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, NotionError> {
    if fields.len() != 2 || !fields.contains_key(key) {
        return Err(invalid(
            path,
            format!("should have `{tag}` and `{key}` only."),
        ));
    }
    object(&fields[key], &format!("{path}.{key}"))
}

fn one_operator<'a>(
    condition: &'a Map<String, Value>,
    path: &str,
) -> Result<(&'a str, &'a Value), NotionError> {
    let mut entries = condition.iter();
    match (entries.next(), entries.next()) {
        (Some((op, value)), None) => Ok((op.as_str(), value)),
        _ => Err(invalid(
            path,
            format!(
                "should have exactly one condition, instead had {}.",
                condition.len()
            ),
        )),
    }
}

fn unknown_operator(path: &str, op: &str) -> NotionError {
    invalid(
        &format!("{path}.{op}"),
        "is not a valid condition for this property type.",
    )
}

fn string(value: &Value, path: &str) -> Result<String, NotionError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(path, format!("should be a string, instead was `{value}`.")))
}

fn empty_condition(op: &str, value: &Value, path: &str) -> Result<Condition, NotionError> {
    match op {
        "is_empty" | "is_not_empty" if value == &Value::Bool(true) => {
            Ok(Condition::Empty(op == "is_empty"))
        }
        "is_empty" | "is_not_empty" => Err(invalid(&format!("{path}.{op}"), "should be `true`.")),
        _ => Err(unknown_operator(path, op)),
    }
}

fn text_condition(condition: &Map<String, Value>, path: &str) -> Result<Condition, NotionError> {
    match one_operator(condition, path)? {
        (
            op @ ("equals" | "does_not_equal" | "contains" | "does_not_contain" | "starts_with"
            | "ends_with"),
            value,
        ) => Ok(Condition::Text {
            op: op.to_owned(),
            value: string(value, &format!("{path}.{op}"))?,
        }),
        (op, value) => empty_condition(op, value, path),
    }
}

fn number_condition(condition: &Map<String, Value>, path: &str) -> Result<Condition, NotionError> {
    match one_operator(condition, path)? {
        (
            op @ ("equals"
            | "does_not_equal"
            | "greater_than"
            | "less_than"
            | "greater_than_or_equal_to"
            | "less_than_or_equal_to"),
            value,
        ) => Ok(Condition::Number {
            op: op.to_owned(),
            value: value
                .as_f64()
                .ok_or_else(|| invalid(&format!("{path}.{op}"), "should be a number."))?,
        }),
        (op, value) => empty_condition(op, value, path),
    }
}

fn date_condition(condition: &Map<String, Value>, path: &str) -> Result<Condition, NotionError> {
    match one_operator(condition, path)? {
        (op @ ("equals" | "before" | "after" | "on_or_before" | "on_or_after"), value) => {
            let raw = string(value, &format!("{path}.{op}"))?;
            let bound = parse_date(&raw).ok_or_else(|| {
                invalid(
                    &format!("{path}.{op}"),
                    format!("should be an ISO 8601 date, instead was `\"{raw}\"`."),
                )
            })?;
            Ok(Condition::Date {
                op: op.to_owned(),
                value: bound,
            })
        }
        (
            op @ ("past_week" | "past_month" | "past_year" | "this_week" | "next_week"
            | "next_month" | "next_year"),
            _,
        ) => Err(NotionError::unsupported(&format!(
            "the relative date filter `{op}`"
        ))),
        (op, value) => empty_condition(op, value, path),
    }
}

/// A date-only string is a day; a date-time without an offset is UTC (notion-api.md §6.1, N11).
fn parse_date(raw: &str) -> Option<DateBound> {
    if let Ok(day) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Some(DateBound::Day(day));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Some(DateBound::Instant(at.with_timezone(&Utc)));
    }
    chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|at| DateBound::Instant(at.and_utc()))
}

/// Whether `page` passes `filter`.
pub(crate) fn matches(filter: &Filter, page: &Page) -> bool {
    match filter {
        Filter::And(items) => items.iter().all(|f| matches(f, page)),
        Filter::Or(items) => items.iter().any(|f| matches(f, page)),
        Filter::Timestamp { created, condition } => {
            let at = if *created { page.created } else { page.edited };
            eval_date(condition, Some(DateBound::Instant(super::minute(at))))
        }
        Filter::Property {
            property,
            condition,
        } => {
            let value = page
                .values
                .get(&property.id)
                .cloned()
                .unwrap_or_else(|| property.empty());
            eval(property, condition, &value)
        }
    }
}

fn text_of(property: &Property, value: &Value) -> String {
    match property.kind.as_str() {
        "title" | "rich_text" => plain_text(value),
        _ => value.as_str().unwrap_or_default().to_owned(),
    }
}

fn is_empty(property: &Property, value: &Value) -> bool {
    match property.kind.as_str() {
        "title" | "rich_text" | "url" | "email" | "phone_number" => {
            text_of(property, value).is_empty()
        }
        "multi_select" | "relation" | "files" => value.as_array().is_none_or(Vec::is_empty),
        "checkbox" => false,
        _ => value.is_null(),
    }
}

fn eval(property: &Property, condition: &Condition, value: &Value) -> bool {
    match condition {
        Condition::Empty(want_empty) => is_empty(property, value) == *want_empty,
        Condition::Text { op, value: wanted } => {
            let text = text_of(property, value);
            match op.as_str() {
                "equals" => text == *wanted,
                "does_not_equal" => text != *wanted,
                "contains" => text.contains(wanted.as_str()),
                "does_not_contain" => !text.contains(wanted.as_str()),
                "starts_with" => text.starts_with(wanted.as_str()),
                _ => text.ends_with(wanted.as_str()),
            }
        }
        Condition::Number { op, value: wanted } => {
            let Some(number) = value.as_f64() else {
                return op == "does_not_equal";
            };
            match op.as_str() {
                "equals" => number == *wanted,
                "does_not_equal" => number != *wanted,
                "greater_than" => number > *wanted,
                "less_than" => number < *wanted,
                "greater_than_or_equal_to" => number >= *wanted,
                _ => number <= *wanted,
            }
        }
        Condition::Checkbox {
            equals,
            value: wanted,
        } => (value.as_bool().unwrap_or(false) == *wanted) == *equals,
        Condition::Select {
            equals,
            value: wanted,
        } => (value["name"].as_str() == Some(wanted.as_str())) == *equals,
        Condition::MultiSelect {
            contains,
            value: wanted,
        } => {
            let found = value
                .as_array()
                .is_some_and(|items| items.iter().any(|o| o["name"] == wanted.as_str()));
            found == *contains
        }
        Condition::Relation { contains, id } => {
            let found = value
                .as_array()
                .is_some_and(|items| items.iter().any(|r| r["id"] == id.as_str()));
            found == *contains
        }
        Condition::Date { .. } => {
            eval_date(condition, value["start"].as_str().and_then(parse_date))
        }
    }
}

fn eval_date(condition: &Condition, actual: Option<DateBound>) -> bool {
    match condition {
        Condition::Empty(want_empty) => actual.is_none() == *want_empty,
        Condition::Date { op, value } => {
            let Some(actual) = actual else {
                return false;
            };
            // A day compares with a day; an instant with an instant (a stored day is its midnight UTC).
            let ordering = match (*value, actual) {
                (DateBound::Day(wanted), actual) => day_of(actual).cmp(&wanted),
                (DateBound::Instant(wanted), actual) => instant_of(actual).cmp(&wanted),
            };
            match op.as_str() {
                "equals" => ordering == Ordering::Equal,
                "before" => ordering == Ordering::Less,
                "after" => ordering == Ordering::Greater,
                "on_or_before" => ordering != Ordering::Greater,
                _ => ordering != Ordering::Less,
            }
        }
        _ => false,
    }
}

fn day_of(bound: DateBound) -> NaiveDate {
    match bound {
        DateBound::Day(day) => day,
        DateBound::Instant(at) => at.date_naive(),
    }
}

fn instant_of(bound: DateBound) -> DateTime<Utc> {
    match bound {
        DateBound::Day(day) => day
            .and_hms_opt(0, 0, 0)
            .map(|at| at.and_utc())
            .unwrap_or_default(),
        DateBound::Instant(at) => at,
    }
}

/// One entry of `sorts`.
#[derive(Debug)]
pub(crate) enum Sort {
    Property {
        property: Property,
        descending: bool,
    },
    Timestamp {
        created: bool,
        descending: bool,
    },
}

pub(crate) fn parse_sorts(
    value: &Value,
    properties: &[Property],
) -> Result<Vec<Sort>, NotionError> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid("body.sorts", "should be an array."))?;
    if items.len() > MAX_ARRAY {
        return Err(NotionError::too_long("body.sorts", MAX_ARRAY, items.len()));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("body.sorts[{i}]");
            let fields = object(item, &path)?;
            super::values::only_keys(fields, &["property", "timestamp", "direction"], &path)?;
            let descending = match fields.get("direction").and_then(Value::as_str) {
                Some("ascending") => false,
                Some("descending") => true,
                _ => return Err(invalid(&format!("{path}.direction"), "should be `ascending` or `descending`.")),
            };
            match (fields.get("property").and_then(Value::as_str), fields.get("timestamp").and_then(Value::as_str)) {
                (Some(name), None) => {
                    let property = properties
                        .iter()
                        .find(|p| p.name == name || p.id == name)
                        .ok_or_else(|| NotionError::validation(format!("Could not find sort property with name or id: {name}")))?
                        .clone();
                    Ok(Sort::Property { property, descending })
                }
                (None, Some(which @ ("created_time" | "last_edited_time"))) => {
                    Ok(Sort::Timestamp { created: which == "created_time", descending })
                }
                _ => Err(invalid(&path, "should have either `property` or `timestamp` (`created_time` or `last_edited_time`).")),
            }
        })
        .collect()
}

#[derive(PartialEq, PartialOrd)]
enum Key {
    Text(String),
    Number(f64),
    Time(DateTime<Utc>),
}

fn sort_key(property: &Property, page: &Page) -> Option<Key> {
    let value = page
        .values
        .get(&property.id)
        .cloned()
        .unwrap_or_else(|| property.empty());
    if is_empty(property, &value) {
        return None;
    }
    match property.kind.as_str() {
        "number" => value.as_f64().map(Key::Number),
        "checkbox" => Some(Key::Number(if value.as_bool() == Some(true) {
            1.0
        } else {
            0.0
        })),
        "date" => value["start"]
            .as_str()
            .and_then(parse_date)
            .map(|d| Key::Time(instant_of(d))),
        "select" | "status" => value["name"]
            .as_str()
            .map(|name| Key::Text(name.to_owned())),
        "multi_select" => value[0]["name"]
            .as_str()
            .map(|name| Key::Text(name.to_owned())),
        _ => Some(Key::Text(text_of(property, &value))),
    }
}

/// Orders pages by `sorts`, empty values last; ties (and no sorts) fall back to newest created first.
pub(crate) fn sort(pages: &mut [&Page], sorts: &[Sort]) {
    pages.sort_by(|a, b| {
        for sort in sorts {
            let ordering = match sort {
                Sort::Timestamp {
                    created,
                    descending,
                } => {
                    let (x, y) = if *created {
                        (a.seq, b.seq)
                    } else {
                        (a.edited_seq, b.edited_seq)
                    };
                    let ordering = x.cmp(&y);
                    if *descending {
                        ordering.reverse()
                    } else {
                        ordering
                    }
                }
                Sort::Property {
                    property,
                    descending,
                } => match (sort_key(property, a), sort_key(property, b)) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(_), None) => Ordering::Less,
                    (Some(x), Some(y)) => {
                        let ordering = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                        if *descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    }
                },
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        b.seq.cmp(&a.seq)
    });
}
