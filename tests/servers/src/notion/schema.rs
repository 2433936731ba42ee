//! [`Schema`]: a data source's properties, for seeding databases in tests.

use serde_json::{json, Map, Value};

/// The properties of a data source, built in order:
/// `Schema::new().title("Name").rich_text("Call ID").select("Direction", &["incoming", "outgoing"])`.
///
/// Each property is kept in the request shape of `PATCH /v1/data_sources/{id}` (see
/// [`Schema::to_properties`]), so the same value can seed the server or be sent to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schema {
    properties: Vec<(String, Value)>,
}

impl Schema {
    /// An empty schema.
    pub fn new() -> Self {
        Self::default()
    }

    /// A schema from `(name, type)` pairs (e.g. the app's own list of what it writes); relations point
    /// at the data source `relation_target`.
    ///
    /// # Panics
    /// On a type this builder does not know, or a relation without a target.
    pub fn from_types(properties: &[(&str, &str)], relation_target: Option<&str>) -> Self {
        properties
            .iter()
            .fold(Self::new(), |schema, (name, kind)| match *kind {
                "title" => schema.title(name),
                "rich_text" => schema.rich_text(name),
                "number" => schema.number(name),
                "select" => schema.select(name, &[]),
                "date" => schema.date(name),
                "checkbox" => schema.checkbox(name),
                "url" => schema.url(name),
                "email" => schema.email(name),
                "phone_number" => schema.phone_number(name),
                "files" => schema.files(name),
                "relation" => {
                    schema.relation(name, relation_target.expect("a relation needs a target"))
                }
                other => panic!("Schema::from_types does not know the type {other}"),
            })
    }

    fn with(mut self, name: &str, kind: &str, config: Value) -> Self {
        self.properties
            .push((name.to_owned(), json!({ (kind.to_owned()): config })));
        self
    }

    fn options(names: &[&str]) -> Value {
        json!({ "options": names.iter().map(|name| json!({ "name": name })).collect::<Vec<_>>() })
    }

    /// The title property (exactly one per data source).
    pub fn title(self, name: &str) -> Self {
        self.with(name, "title", json!({}))
    }

    /// A rich-text property.
    pub fn rich_text(self, name: &str) -> Self {
        self.with(name, "rich_text", json!({}))
    }

    /// A number property.
    pub fn number(self, name: &str) -> Self {
        self.with(name, "number", json!({ "format": "number" }))
    }

    /// A select property with these options (writes may add more).
    pub fn select(self, name: &str, options: &[&str]) -> Self {
        self.with(name, "select", Self::options(options))
    }

    /// A multi-select property with these options (writes may add more).
    pub fn multi_select(self, name: &str, options: &[&str]) -> Self {
        self.with(name, "multi_select", Self::options(options))
    }

    /// A status property with these options (writes may not add more; the API cannot create status
    /// properties, but seeding can).
    pub fn status(self, name: &str, options: &[&str]) -> Self {
        self.with(name, "status", Self::options(options))
    }

    /// A date property.
    pub fn date(self, name: &str) -> Self {
        self.with(name, "date", json!({}))
    }

    /// A checkbox property.
    pub fn checkbox(self, name: &str) -> Self {
        self.with(name, "checkbox", json!({}))
    }

    /// A URL property.
    pub fn url(self, name: &str) -> Self {
        self.with(name, "url", json!({}))
    }

    /// An email property.
    pub fn email(self, name: &str) -> Self {
        self.with(name, "email", json!({}))
    }

    /// A phone-number property (a plain string to Notion: no format is enforced).
    pub fn phone_number(self, name: &str) -> Self {
        self.with(name, "phone_number", json!({}))
    }

    /// A one-way relation to the pages of `data_source_id`.
    pub fn relation(self, name: &str, data_source_id: &str) -> Self {
        self.with(
            name,
            "relation",
            json!({ "data_source_id": data_source_id, "type": "single_property", "single_property": {} }),
        )
    }

    /// A files property (external files).
    pub fn files(self, name: &str) -> Self {
        self.with(name, "files", json!({}))
    }

    /// The `properties` object of a `PATCH /v1/data_sources/{id}` request that adds these properties.
    pub fn to_properties(&self) -> Value {
        Value::Object(
            self.properties
                .iter()
                .cloned()
                .collect::<Map<String, Value>>(),
        )
    }

    pub(crate) fn title_count(&self) -> usize {
        self.properties
            .iter()
            .filter(|(_, config)| config.get("title").is_some())
            .count()
    }
}
