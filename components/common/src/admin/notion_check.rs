//! `POST /admin/notion/check[?fix=true]`: can the integration see the Calls, Messages and Canvas
//! databases, and do they have every property the sync writes, with the right type? With `fix=true`,
//! missing properties are added through the data-source schema endpoint; nothing is ever deleted or
//! retyped.

use serde_json::{json, Map, Value};

use crate::notion::{schema, Notion};
use crate::outbound::ApiError;

/// The check of one database.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatabaseCheck {
    /// Which database (`calls`, `messages`, `canvas`).
    pub role: &'static str,
    /// Its id, as configured.
    pub database_id: String,
    /// Whether the integration can see it.
    pub visible: bool,
    /// Its data source, when visible.
    pub data_source_id: Option<String>,
    /// Properties the sync writes that it lacks.
    pub missing: Vec<String>,
    /// Properties with another type: `name: expected X, found Y`.
    pub wrong_type: Vec<String>,
    /// Properties added by this run (`fix=true`).
    pub added: Vec<String>,
    /// Properties renamed by this run (`fix=true`): a fresh database's title, "Name", becomes the title the
    /// sync writes (`Name → Call ID`).
    pub renamed: Vec<String>,
    /// What to do about it, in words.
    pub fix: Option<String>,
}

impl DatabaseCheck {
    /// Whether the sync can write this database as it is.
    pub fn ok(&self) -> bool {
        self.visible && self.missing.is_empty() && self.wrong_type.is_empty()
    }
}

/// Types accepted for a property: Canvas lookups also work on text columns.
fn accepted<'a>(role: &str, name: &str, expected: &'a str) -> Vec<&'a str> {
    match (role, name) {
        ("canvas", "Phone") => vec!["phone_number", "rich_text"],
        ("canvas", "Email") => vec!["email", "rich_text"],
        _ => vec![expected],
    }
}

/// The schema to send to add a property of `kind`.
fn property_config(kind: &str, canvas_data_source: Option<&str>) -> Option<Value> {
    Some(match kind {
        "relation" => json!({ "relation": {
            "data_source_id": canvas_data_source?, "type": "single_property", "single_property": {}
        } }),
        "select" => json!({ "select": { "options": [] } }),
        // A data source has exactly one title; a missing one cannot be added, only renamed.
        "title" => return None,
        other => json!({ other: {} }),
    })
}

/// Compares a data source's properties (`{name: {type: …}}`) with what the sync needs.
pub fn compare(
    role: &'static str,
    expected: &[(&str, &str)],
    properties: &Value,
) -> (Vec<String>, Vec<String>) {
    let mut missing = Vec::new();
    let mut wrong_type = Vec::new();
    for (name, kind) in expected {
        let ok_types = accepted(role, name, kind);
        // Any title works for Canvas records (the sync never writes it), whatever its name.
        let found = if *kind == "title" && role == "canvas" {
            properties
                .as_object()
                .and_then(|p| p.values().find(|v| v["type"] == "title"))
                .map(|_| "title")
        } else {
            properties[*name]["type"].as_str()
        };
        match found {
            None => missing.push((*name).to_owned()),
            Some(t) if !ok_types.contains(&t) => wrong_type.push(format!(
                "{name}: expected {}, found {t}",
                ok_types.join(" or ")
            )),
            Some(_) => {}
        }
    }
    (missing, wrong_type)
}

/// Checks (and with `fix`, completes) the three databases.
pub async fn check(
    notion: &Notion<'_>,
    calls: &str,
    messages: &str,
    canvas: Option<&str>,
    fix: bool,
) -> Result<Vec<DatabaseCheck>, ApiError> {
    let mut checks = Vec::new();
    // Canvas first: the relations of the other two point at its data source.
    let mut canvas_data_source = None;
    let targets = [
        ("canvas", canvas, schema::CANVAS),
        ("calls", Some(calls), schema::CALLS),
        ("messages", Some(messages), schema::MESSAGES),
    ];
    for (role, database_id, expected) in targets {
        let Some(database_id) = database_id else {
            continue;
        };
        // The Canvas relation is optional, like the Canvas database: without one it is not expected.
        let expected: Vec<(&str, &str)> = expected
            .iter()
            .copied()
            .filter(|(_, kind)| canvas.is_some() || *kind != "relation")
            .collect();
        let expected = expected.as_slice();
        let mut result = DatabaseCheck {
            role,
            database_id: database_id.to_owned(),
            visible: false,
            data_source_id: None,
            missing: Vec::new(),
            wrong_type: Vec::new(),
            added: Vec::new(),
            renamed: Vec::new(),
            fix: None,
        };
        let data_source = match notion.data_source_id(database_id).await {
            Ok(ds) => ds,
            Err(ApiError::Refused { status: 404, .. })
            | Err(ApiError::Refused { status: 403, .. }) => {
                result.fix = Some(format!(
                    "the integration cannot see database {database_id}: open it in Notion, ⋯ → Connections, and add \
                     your integration (also check the id: it is the 32-hex part of the database URL)"
                ));
                checks.push(result);
                continue;
            }
            Err(e) => return Err(e),
        };
        result.visible = true;
        let source = notion.data_source(&data_source).await?;
        notion.remember_schema(&data_source, &source);
        let (missing, wrong_type) = compare(role, expected, &source["properties"]);
        if role == "canvas" {
            canvas_data_source = Some(data_source.clone());
        }
        if fix && !missing.is_empty() {
            let mut add = Map::new();
            // A data source has exactly one title, which cannot be added: the one it has (a fresh
            // database's "Name") is renamed to the title the sync writes.
            let wanted_title = expected.iter().find(|(_, kind)| *kind == "title");
            let current_title = source["properties"]
                .as_object()
                .and_then(|p| p.iter().find(|(_, v)| v["type"] == "title"))
                .map(|(name, _)| name.clone());
            if let (Some((wanted, _)), Some(current)) = (wanted_title, current_title) {
                if role != "canvas" && missing.iter().any(|m| m == wanted) {
                    add.insert(current.clone(), json!({ "name": wanted }));
                    result.renamed.push(format!("{current} → {wanted}"));
                }
            }
            for name in &missing {
                let kind = expected
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, k)| *k)
                    .unwrap_or("rich_text");
                if let Some(config) = property_config(kind, canvas_data_source.as_deref()) {
                    add.insert(name.clone(), config);
                }
            }
            if !add.is_empty() {
                notion
                    .add_properties(&data_source, &Value::Object(add.clone()))
                    .await?;
                notion.forget_schema(&data_source);
                result.added = add
                    .keys()
                    .filter(|name| missing.contains(name))
                    .cloned()
                    .collect();
            }
            let renamed_to: Vec<&str> = add
                .values()
                .filter_map(|config| config["name"].as_str())
                .collect();
            result.missing = missing
                .into_iter()
                .filter(|m| !add.contains_key(m) && !renamed_to.contains(&m.as_str()))
                .collect();
        } else {
            result.missing = missing;
        }
        result.wrong_type = wrong_type;
        result.fix = if !result.missing.is_empty() && !fix {
            Some("run again with ?fix=true to add the missing properties".into())
        } else if !result.missing.is_empty() {
            Some("some properties cannot be added automatically (a title, or a relation without a Canvas database): add them in Notion".into())
        } else if !result.wrong_type.is_empty() {
            Some(
                "change these properties' types in Notion (the sync never retypes a property)"
                    .into(),
            )
        } else {
            None
        };
        result.data_source_id = Some(data_source);
        checks.push(result);
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_finds_missing_and_mistyped_properties() {
        let properties = json!({
            "Call ID": { "type": "title" },
            "Duration": { "type": "rich_text" },
            "Status": { "type": "select" },
        });
        let (missing, wrong) = compare(
            "calls",
            &[
                ("Call ID", "title"),
                ("Duration", "number"),
                ("Status", "select"),
                ("Summary", "rich_text"),
            ],
            &properties,
        );
        assert_eq!(missing, vec!["Summary"]);
        assert_eq!(wrong, vec!["Duration: expected number, found rich_text"]);
    }

    #[test]
    fn canvas_accepts_text_phone_columns_and_any_title_name() {
        let properties = json!({
            "Merchant": { "type": "title" },
            "Phone": { "type": "rich_text" },
            "Email": { "type": "email" },
        });
        let (missing, wrong) = compare("canvas", schema::CANVAS, &properties);
        assert!(
            missing.is_empty() && wrong.is_empty(),
            "{missing:?} {wrong:?}"
        );
    }

    #[test]
    fn relations_are_added_only_with_a_target() {
        assert!(property_config("relation", None).is_none());
        assert_eq!(
            property_config("relation", Some("ds")).unwrap()["relation"]["data_source_id"],
            "ds"
        );
        assert!(property_config("title", Some("ds")).is_none());
        assert_eq!(
            property_config("checkbox", None).unwrap(),
            json!({ "checkbox": {} })
        );
    }
}
