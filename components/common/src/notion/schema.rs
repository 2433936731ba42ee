//! The properties the sync writes, by database, with their Notion types: the reference implementation's
//! Calls and Messages schemas (so existing workspaces keep working) and the Canvas properties it reads.
//! The schema check (`/admin/notion/check`) compares a data source against these, and test servers build
//! their databases from them.

/// Calls database: one page per call.
pub const CALLS: &[(&str, &str)] = &[
    ("Call ID", "title"),
    ("Direction", "select"),
    ("Status", "select"),
    ("Duration", "number"),
    ("Participants", "rich_text"),
    ("Contact", "rich_text"),
    ("Handled By", "rich_text"),
    ("OpenPhone User", "rich_text"),
    ("Phone Number Used", "rich_text"),
    ("Phone Number ID", "rich_text"),
    ("Created At", "date"),
    ("Answered At", "date"),
    ("Completed At", "date"),
    ("Has Recording", "checkbox"),
    ("Recording URL", "url"),
    ("Recording Duration", "number"),
    ("Has Transcript", "checkbox"),
    ("Transcript", "rich_text"),
    ("Transcript Status", "select"),
    ("Has Summary", "checkbox"),
    ("Summary", "rich_text"),
    ("Next Steps", "rich_text"),
    ("Has Voicemail", "checkbox"),
    ("Voicemail URL", "url"),
    ("Voicemail Transcript", "rich_text"),
    ("Call Route", "rich_text"),
    ("Forwarded From", "rich_text"),
    ("Forwarded To", "rich_text"),
    ("Raw Data", "rich_text"),
    ("Canvas", "relation"),
    ("Synced At", "date"),
    ("Last Updated", "date"),
];

/// Messages database: one page per message.
pub const MESSAGES: &[(&str, &str)] = &[
    ("Message ID", "title"),
    ("Direction", "select"),
    ("From", "phone_number"),
    ("To", "phone_number"),
    ("Content", "rich_text"),
    ("Contact", "rich_text"),
    ("Handled By", "rich_text"),
    ("Status", "select"),
    ("OpenPhone Number", "rich_text"),
    ("Phone Number ID", "rich_text"),
    ("User ID", "rich_text"),
    ("Created At", "date"),
    ("Updated At", "date"),
    ("Has Media", "checkbox"),
    ("Media URLs", "rich_text"),
    ("Conversation ID", "rich_text"),
    ("Canvas", "relation"),
    ("Raw Data", "rich_text"),
    ("Synced At", "date"),
];

/// Canvas database: the properties lookups read (`Phone` may also be `rich_text` in older workspaces).
pub const CANVAS: &[(&str, &str)] = &[
    ("Name", "title"),
    ("Phone", "phone_number"),
    ("Email", "email"),
];

/// The properties a data source has, by name, with their Notion types, as `GET /v1/data_sources/{id}`
/// answers. Writes are fitted to it ([`DataSourceSchema::fit`]), so a database the sync did not make
/// (a fresh one titled "Name", one without a Canvas relation) takes what it can hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSourceSchema {
    /// Property name → type (`title`, `rich_text`, `relation`, …).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl DataSourceSchema {
    /// The schema in a `GET /v1/data_sources/{id}` answer.
    pub fn from_data_source(data_source: &serde_json::Value) -> Self {
        let properties = data_source["properties"]
            .as_object()
            .map(|props| {
                props
                    .iter()
                    .filter_map(|(name, p)| Some((name.clone(), p["type"].as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Self { properties }
    }

    /// The name of the title property (every data source has exactly one).
    pub fn title_property(&self) -> Option<&str> {
        self.properties
            .iter()
            .find(|(_, kind)| kind.as_str() == "title")
            .map(|(name, _)| name.as_str())
    }

    /// `properties` (name → Notion property value) as this data source can take them: the value of the
    /// title goes under the data source's own title name, and a property the data source lacks, or has
    /// with another type, is left out (named in the returned list, for the logs).
    pub fn fit(
        &self,
        properties: serde_json::Map<String, serde_json::Value>,
    ) -> (serde_json::Map<String, serde_json::Value>, Vec<String>) {
        let mut fitted = serde_json::Map::new();
        let mut dropped = Vec::new();
        for (name, value) in properties {
            let kind = value
                .as_object()
                .and_then(|v| v.keys().find(|k| k.as_str() != "type"))
                .cloned()
                .unwrap_or_default();
            if kind == "title" {
                match self.title_property() {
                    Some(title) => {
                        fitted.insert(title.to_owned(), value);
                    }
                    None => dropped.push(name),
                }
                continue;
            }
            if self.properties.get(&name) == Some(&kind) {
                fitted.insert(name, value);
            } else {
                dropped.push(name);
            }
        }
        (fitted, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_write_fits_the_data_source_it_goes_to() {
        let schema = DataSourceSchema::from_data_source(&json!({ "properties": {
            "Name": { "id": "title", "type": "title", "title": {} },
            "Content": { "id": "a", "type": "rich_text", "rich_text": {} },
            "Status": { "id": "b", "type": "rich_text", "rich_text": {} },
        }}));
        assert_eq!(schema.title_property(), Some("Name"));
        let write = json!({
            "Message ID": { "title": [{ "text": { "content": "AC1" } }] },
            "Content": { "rich_text": [] },
            "Status": { "select": { "name": "received" } },
            "Canvas": { "relation": [] },
        });
        let (fitted, mut dropped) = schema.fit(write.as_object().unwrap().clone());
        assert_eq!(fitted["Name"]["title"][0]["text"]["content"], "AC1");
        assert!(fitted.contains_key("Content"));
        dropped.sort();
        assert_eq!(dropped, ["Canvas", "Status"], "absent, and of another type");
    }

    #[test]
    fn each_database_has_exactly_one_title_and_unique_names() {
        for schema in [CALLS, MESSAGES, CANVAS] {
            assert_eq!(schema.iter().filter(|(_, t)| *t == "title").count(), 1);
            let mut names: Vec<&str> = schema.iter().map(|(n, _)| *n).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), schema.len());
        }
    }
}
