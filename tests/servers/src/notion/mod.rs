//! [`NotionServer`]: Notion's API at `Notion-Version: 2025-09-03` (notion-api.md), with its rules.
//!
//! Rules enforced: `Notion-Version` on every request (missing → `400 missing_version`; any other version
//! → `400 invalid_request`, since only 2025-09-03 semantics are modelled), `Authorization: Bearer`,
//! databases vs data sources (a database id on a data-source endpoint is `404 object_not_found`, as is
//! anything not shared), `data_source_id` page parents, property values checked against the schema with
//! Notion's size limits, block-children limits, query filter semantics and pagination, about 3 requests
//! per second (a token bucket), and injectable faults including "applied but failed" writes.
//!
//! Deliberate choices where the real service is looser or unknown: `PATCH /v1/data_sources/{id}` adds
//! properties and select options but refuses to change a property's type, rename or delete one (the app
//! must never do that to a user's workspace); text filters are case-sensitive; the whole body limit is
//! 500 000 bytes; unknown body keys are refused.

mod blocks;
mod error;
mod handlers;
mod openapi;
mod query;
mod schema;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

pub use schema::Schema;

use crate::faults::{FaultRule, Faults};
use crate::runtime::Running;
use crate::stats::{RequestStats, TokenBucket};
use blocks::NewBlock;
use error::NotionError;
use values::Property;

/// The only `Notion-Version` this server speaks.
pub const NOTION_VERSION: &str = "2025-09-03";

/// The id of the integration's bot user (`created_by`, `GET /v1/users/me`).
const BOT_ID: &str = "b0b0b0b0-0000-4000-8000-000000000001";

/// Notion's rate limit as a token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Bucket size: how many requests may arrive at once after a quiet period.
    pub burst: u32,
    /// Refill rate: the sustained requests per second.
    pub per_second: f64,
}

impl RateLimit {
    /// "An average of 3 requests per second, short bursts allowed": burst 10, refill 3/s.
    pub const NOTION: Self = Self {
        burst: 10,
        per_second: 3.0,
    };
}

/// One request as the server saw it, for assertions on what the app sent.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedRequest {
    /// `GET`, `POST`, `PATCH`.
    pub method: String,
    /// The request path, e.g. `/v1/pages/…`.
    pub path: String,
    /// Method and route template, e.g. `POST /v1/data_sources/{id}/query`.
    pub endpoint: String,
    /// The status answered (0 if the client went away before the answer).
    pub status: u16,
    /// The JSON body, if there was one and it parsed.
    pub body: Option<Value>,
}

#[derive(Debug)]
struct Database {
    id: String,
    title: String,
    data_sources: Vec<String>,
    created: DateTime<Utc>,
}

#[derive(Debug)]
struct DataSource {
    id: String,
    database_id: String,
    name: String,
    properties: Vec<Property>,
    created: DateTime<Utc>,
}

impl DataSource {
    fn property(&self, name_or_id: &str) -> Option<&Property> {
        self.properties
            .iter()
            .find(|p| p.name == name_or_id || p.id == name_or_id)
    }
}

/// A page (a row of a data source).
#[derive(Debug)]
pub(crate) struct Page {
    id: String,
    data_source_id: String,
    /// Creation order, finer than `created` (which Notion reports to the minute).
    pub(crate) seq: u64,
    /// Order of the last edit.
    pub(crate) edited_seq: u64,
    pub(crate) created: DateTime<Utc>,
    pub(crate) edited: DateTime<Utc>,
    archived: bool,
    /// Property id → value in response shape.
    pub(crate) values: BTreeMap<String, Value>,
    children: Vec<String>,
    icon: Value,
    cover: Value,
}

#[derive(Debug)]
struct Block {
    id: String,
    parent: String,
    parent_is_page: bool,
    kind: String,
    data: Value,
    children: Vec<String>,
    created: DateTime<Utc>,
}

#[derive(Debug)]
struct NotionState {
    token: String,
    rng: ChaCha8Rng,
    seq: u64,
    databases: BTreeMap<String, Database>,
    data_sources: BTreeMap<String, DataSource>,
    pages: BTreeMap<String, Page>,
    blocks: BTreeMap<String, Block>,
    /// Databases not shared with the integration: they, their data sources and pages are 404.
    unshared: BTreeSet<String>,
    stats: RequestStats,
    bucket: TokenBucket,
    rate_limited: u64,
    faults: Faults,
    log: Vec<LoggedRequest>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<NotionState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, NotionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `8-4-4-4-12` lower-case form of a Notion id given with or without dashes; `None` if it is not one.
pub(crate) fn normalize_id(raw: &str) -> Option<String> {
    let hex: String = raw.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// Notion reports `created_time` and `last_edited_time` to the minute.
pub(crate) fn minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

fn timestamp(at: DateTime<Utc>) -> String {
    minute(at).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn text_array(text: &str) -> Value {
    json!([{
        "type": "text",
        "text": { "content": text, "link": null },
        "annotations": { "bold": false, "italic": false, "strikethrough": false, "underline": false, "code": false, "color": "default" },
        "plain_text": text,
        "href": null,
    }])
}

fn notion_url(id: &str) -> String {
    format!("https://www.notion.so/{}", id.replace('-', ""))
}

impl NotionState {
    fn new_id(&mut self) -> String {
        let mut bytes: [u8; 16] = self.rng.gen();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        normalize_id(&hex).unwrap_or(hex)
    }

    fn new_property_id(&mut self) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        // Real property ids are short and often URL-encoded (`%3AUPp`); keeping the `%3A` makes a client
        // that puts them into URLs or compares them decoded show its bug here.
        let tail: String = (0..4)
            .map(|_| CHARS[self.rng.gen_range(0..CHARS.len())] as char)
            .collect();
        format!("%3A{tail}")
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn database(&self, id: &str) -> Result<&Database, NotionError> {
        self.databases
            .get(id)
            .filter(|db| !self.unshared.contains(&db.id))
            .ok_or_else(|| NotionError::not_found("database", id))
    }

    fn data_source(&self, id: &str) -> Result<&DataSource, NotionError> {
        self.data_sources
            .get(id)
            .filter(|ds| !self.unshared.contains(&ds.database_id))
            .ok_or_else(|| NotionError::not_found("data source", id))
    }

    fn page(&self, id: &str) -> Result<&Page, NotionError> {
        self.pages
            .get(id)
            .filter(|page| self.data_source(&page.data_source_id).is_ok())
            .ok_or_else(|| NotionError::not_found("page", id))
    }

    /// The page a block belongs to (the block itself if it is a page).
    fn owning_page(&self, id: &str) -> Option<&Page> {
        let mut current = id.to_owned();
        loop {
            if let Some(page) = self.pages.get(&current) {
                return Some(page);
            }
            current = self.blocks.get(&current)?.parent.clone();
        }
    }

    fn render_database(&self, db: &Database) -> Value {
        let sources: Vec<Value> = db
            .data_sources
            .iter()
            .filter_map(|id| self.data_sources.get(id))
            .map(|ds| json!({ "id": ds.id, "name": ds.name }))
            .collect();
        json!({
            "object": "database",
            "id": db.id,
            "title": text_array(&db.title),
            "description": [],
            "icon": null,
            "cover": null,
            "parent": { "type": "workspace", "workspace": true },
            "is_inline": false,
            "in_trash": false,
            "is_locked": false,
            "created_time": timestamp(db.created),
            "last_edited_time": timestamp(db.created),
            "data_sources": sources,
            "url": notion_url(&db.id),
            "public_url": null,
        })
    }

    fn render_data_source(&self, ds: &DataSource) -> Value {
        let properties: serde_json::Map<String, Value> = ds
            .properties
            .iter()
            .map(|p| (p.name.clone(), p.render()))
            .collect();
        json!({
            "object": "data_source",
            "id": ds.id,
            "title": text_array(&ds.name),
            "description": [],
            "properties": properties,
            "parent": { "type": "database_id", "database_id": ds.database_id },
            "database_parent": { "type": "workspace", "workspace": true },
            "created_time": timestamp(ds.created),
            "last_edited_time": timestamp(ds.created),
            "archived": false,
            "in_trash": false,
            "icon": null,
            "cover": null,
            "url": notion_url(&ds.id),
        })
    }

    /// A page object; `cap` applies the read-side limit of 25 relation ids per property.
    fn render_page(&self, page: &Page, cap: bool, only: Option<&[String]>) -> Value {
        let ds = self.data_sources.get(&page.data_source_id);
        let properties: serde_json::Map<String, Value> = ds
            .map(|ds| ds.properties.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|p| only.is_none_or(|only| only.contains(&p.id)))
            .map(|p| (p.name.clone(), p.render_value(page.values.get(&p.id), cap)))
            .collect();
        json!({
            "object": "page",
            "id": page.id,
            "created_time": timestamp(page.created),
            "last_edited_time": timestamp(page.edited),
            "created_by": { "object": "user", "id": BOT_ID },
            "last_edited_by": { "object": "user", "id": BOT_ID },
            "cover": page.cover,
            "icon": page.icon,
            "parent": {
                "type": "data_source_id",
                "data_source_id": page.data_source_id,
                "database_id": ds.map(|ds| ds.database_id.clone()),
            },
            "archived": page.archived,
            "in_trash": page.archived,
            "is_locked": false,
            "properties": properties,
            "url": notion_url(&page.id),
            "public_url": null,
        })
    }

    fn render_block(&self, block: &Block) -> Value {
        let parent = if block.parent_is_page {
            json!({ "type": "page_id", "page_id": block.parent })
        } else {
            json!({ "type": "block_id", "block_id": block.parent })
        };
        json!({
            "object": "block",
            "id": block.id,
            "parent": parent,
            "created_time": timestamp(block.created),
            "last_edited_time": timestamp(block.created),
            "created_by": { "object": "user", "id": BOT_ID },
            "last_edited_by": { "object": "user", "id": BOT_ID },
            "has_children": !block.children.is_empty(),
            "archived": false,
            "in_trash": false,
            "type": block.kind,
            (block.kind.clone()): block.data,
        })
    }

    fn children_of(&self, id: &str) -> Option<&Vec<String>> {
        self.pages
            .get(id)
            .map(|page| &page.children)
            .or_else(|| self.blocks.get(id).map(|block| &block.children))
    }

    /// Adds or extends properties of data source `ds_id` from a `{name: config}` map. All entries are
    /// checked before any is applied.
    fn add_properties(
        &mut self,
        ds_id: &str,
        requested: &Value,
        via_api: bool,
    ) -> Result<(), NotionError> {
        let requested = values::object(requested, "body.properties")?;
        let mut planned: Vec<(Option<usize>, Property)> = Vec::new();
        for (name, config) in requested {
            if config.is_null() {
                return Err(NotionError::unsupported("deleting a property"));
            }
            let ds = self.data_source(ds_id)?;
            let existing = ds
                .properties
                .iter()
                .position(|p| p.name == *name || p.id == *name);
            // `{"Old name": {"name": "New name"}}` renames a property, keeping its type and values.
            if let Some(new_name) = config
                .as_object()
                .filter(|c| c.len() == 1)
                .and_then(|c| c.get("name"))
            {
                let new_name = new_name.as_str().ok_or_else(|| {
                    NotionError::validation(format!(
                        "body failed validation: body.properties.{name}.name should be a string."
                    ))
                })?;
                let index = existing.ok_or_else(|| {
                    NotionError::validation(format!(
                        "Property \"{name}\" does not exist, so it cannot be renamed."
                    ))
                })?;
                if ds
                    .properties
                    .iter()
                    .enumerate()
                    .any(|(i, p)| i != index && p.name == new_name)
                {
                    return Err(NotionError::validation(format!(
                        "A property named \"{new_name}\" already exists."
                    )));
                }
                let mut renamed = ds.properties[index].clone();
                renamed.name = new_name.to_owned();
                planned.push((Some(index), renamed));
                continue;
            }
            let property_id = match existing {
                Some(index) => ds.properties[index].id.clone(),
                None => self.new_property_id(),
            };
            let ds = self.data_source(ds_id)?;
            let data_sources = &self.data_sources;
            let (kind, config) = values::property_config(name, config, &property_id, &|target| {
                data_sources.get(target).map(|ds| ds.database_id.clone())
            })?;
            match existing {
                Some(index) => {
                    let current = &ds.properties[index];
                    if current.kind != kind {
                        return Err(NotionError::validation(format!(
                            "Refusing to change the type of property \"{}\" from {} to {} (the test server never retypes a property).",
                            current.name, current.kind, kind
                        )));
                    }
                    let mut merged = current.clone();
                    for option in config["options"].as_array().into_iter().flatten() {
                        if !merged.options().iter().any(|o| o["name"] == option["name"]) {
                            if let Some(options) = merged.config["options"].as_array_mut() {
                                options.push(option.clone());
                            }
                        }
                    }
                    planned.push((Some(index), merged));
                }
                None => {
                    if via_api && kind == "status" {
                        return Err(NotionError::validation(
                            "Status properties cannot be created through the API.",
                        ));
                    }
                    let titles = ds.properties.iter().filter(|p| p.kind == "title").count()
                        + planned.iter().filter(|(_, p)| p.kind == "title").count();
                    if kind == "title" && titles > 0 {
                        return Err(NotionError::validation(format!(
                            "A data source has exactly one title property; \"{name}\" would be a second."
                        )));
                    }
                    // Notion gives the title property the fixed id `title`.
                    let id = if kind == "title" {
                        "title".to_owned()
                    } else {
                        property_id
                    };
                    planned.push((
                        None,
                        Property {
                            id,
                            name: name.clone(),
                            kind,
                            config,
                        },
                    ));
                }
            }
        }
        let ds = self
            .data_sources
            .get_mut(ds_id)
            .ok_or_else(|| NotionError::not_found("data source", ds_id))?;
        for (index, property) in planned {
            match index {
                Some(index) => ds.properties[index] = property,
                None => ds.properties.push(property),
            }
        }
        Ok(())
    }

    /// Checks the property values of a create or update against the schema of `ds_id`; nothing is
    /// applied unless all of them pass.
    fn check_values(
        &self,
        ds_id: &str,
        requested: &Value,
    ) -> Result<Vec<(String, values::Written)>, NotionError> {
        let ds = self.data_source(ds_id)?;
        let requested = values::object(requested, "body.properties")?;
        let mut written = Vec::new();
        for (name, value) in requested {
            let property = ds.property(name).ok_or_else(|| {
                NotionError::validation(format!("{name} is not a property that exists."))
            })?;
            let relation_ok = |page_id: &str| {
                self.pages.get(page_id).is_some_and(|page| {
                    !page.archived
                        && property.config["data_source_id"] == page.data_source_id.as_str()
                        && self.data_source(&page.data_source_id).is_ok()
                })
            };
            written.push((
                property.id.clone(),
                values::property_value(property, value, &relation_ok)?,
            ));
        }
        Ok(written)
    }

    /// Applies checked values to a page, creating the select options they introduce.
    fn apply_values(
        &mut self,
        ds_id: &str,
        page_id: &str,
        written: Vec<(String, values::Written)>,
    ) {
        for (property_id, written) in written {
            if let Some(property) = self
                .data_sources
                .get_mut(ds_id)
                .and_then(|ds| ds.properties.iter_mut().find(|p| p.id == property_id))
            {
                for name in written.new_options {
                    if !property
                        .options()
                        .iter()
                        .any(|o| o["name"] == name.as_str())
                    {
                        let option = json!({
                            "id": values::option_id(&property.id, &name),
                            "name": name,
                            "color": "default",
                            "description": null,
                        });
                        if let Some(options) = property.config["options"].as_array_mut() {
                            options.push(option);
                        }
                    }
                }
            }
            if let Some(page) = self.pages.get_mut(page_id) {
                page.values.insert(property_id, written.value);
            }
        }
    }

    fn create_page(
        &mut self,
        ds_id: &str,
        properties: &Value,
        children: &[NewBlock],
    ) -> Result<String, NotionError> {
        let written = self.check_values(ds_id, properties)?;
        let id = self.new_id();
        let seq = self.next_seq();
        let now = Utc::now();
        self.pages.insert(
            id.clone(),
            Page {
                id: id.clone(),
                data_source_id: ds_id.to_owned(),
                seq,
                edited_seq: seq,
                created: now,
                edited: now,
                archived: false,
                values: BTreeMap::new(),
                children: Vec::new(),
                icon: Value::Null,
                cover: Value::Null,
            },
        );
        self.apply_values(ds_id, &id, written);
        self.insert_blocks(&id, true, children, None);
        Ok(id)
    }

    /// Stores `blocks` under `parent` (after child `after`, else at the end); returns the new
    /// top-level ids in order.
    fn insert_blocks(
        &mut self,
        parent: &str,
        parent_is_page: bool,
        blocks: &[NewBlock],
        after: Option<&str>,
    ) -> Vec<String> {
        let now = Utc::now();
        let mut ids = Vec::new();
        for block in blocks {
            let id = self.new_id();
            self.blocks.insert(
                id.clone(),
                Block {
                    id: id.clone(),
                    parent: parent.to_owned(),
                    parent_is_page,
                    kind: block.kind.clone(),
                    data: block.data.clone(),
                    children: Vec::new(),
                    created: now,
                },
            );
            self.insert_blocks(&id, false, &block.children, None);
            ids.push(id);
        }
        let siblings = match self.pages.get_mut(parent) {
            Some(page) => &mut page.children,
            None => match self.blocks.get_mut(parent) {
                Some(block) => &mut block.children,
                None => return ids,
            },
        };
        let at = after
            .and_then(|after| siblings.iter().position(|id| id == after))
            .map_or(siblings.len(), |index| index + 1);
        siblings.splice(at..at, ids.iter().cloned());
        ids
    }

    fn touch(&mut self, page_id: &str) {
        let seq = self.next_seq();
        if let Some(page) = self.pages.get_mut(page_id) {
            page.edited = Utc::now();
            page.edited_seq = seq;
        }
    }
}

/// A local Notion API. Dropping it stops the server.
#[derive(Debug)]
pub struct NotionServer {
    shared: Arc<Shared>,
    running: Running,
}

impl NotionServer {
    /// Starts the server, accepting `Authorization: Bearer <token>`, rate-limited as
    /// [`RateLimit::NOTION`].
    pub fn start(token: &str) -> Result<Self> {
        let limit = RateLimit::NOTION;
        let shared = Arc::new(Shared {
            state: Mutex::new(NotionState {
                token: token.to_owned(),
                rng: ChaCha8Rng::seed_from_u64(0x2025_0903),
                seq: 0,
                databases: BTreeMap::new(),
                data_sources: BTreeMap::new(),
                pages: BTreeMap::new(),
                blocks: BTreeMap::new(),
                unshared: BTreeSet::new(),
                stats: RequestStats::default(),
                bucket: TokenBucket::new(Some((f64::from(limit.burst), limit.per_second))),
                rate_limited: 0,
                faults: Faults::new(0),
                log: Vec::new(),
            }),
        });
        let running = Running::start("notion", handlers::router(shared.clone()))?;
        Ok(Self { shared, running })
    }

    /// The server's routes, to be called in-process (a deterministic simulation drives them without
    /// sockets; the listener keeps running and sees the same state).
    pub fn in_process(&self) -> axum::Router {
        handlers::router(self.shared.clone())
    }

    /// `http://127.0.0.1:<port>` (paths add `/v1/...`), for `notion_api_base`.
    pub fn base_url(&self) -> String {
        self.running.base_url()
    }

    /// The integration token the server accepts.
    pub fn token(&self) -> String {
        self.shared.lock().token.clone()
    }

    /// Creates a database with one data source named like it, with `schema` (which must have exactly
    /// one title property); returns `(database_id, data_source_id)`.
    pub fn create_database(&self, name: &str, schema: &Schema) -> Result<(String, String)> {
        let mut state = self.shared.lock();
        let database_id = state.new_id();
        state.databases.insert(
            database_id.clone(),
            Database {
                id: database_id.clone(),
                title: name.to_owned(),
                data_sources: Vec::new(),
                created: Utc::now(),
            },
        );
        drop(state);
        let data_source_id = self.add_data_source(&database_id, name, schema)?;
        Ok((database_id, data_source_id))
    }

    /// Adds another data source to a database (a multi-source database, where `data_sources[0]` is not
    /// necessarily the one a client wants); returns its id.
    pub fn add_data_source(
        &self,
        database_id: &str,
        name: &str,
        schema: &Schema,
    ) -> Result<String> {
        if schema.title_count() != 1 {
            return Err(anyhow!(
                "the schema of {name:?} needs exactly one title property"
            ));
        }
        let mut state = self.shared.lock();
        let id = state.new_id();
        let database = state
            .databases
            .get_mut(database_id)
            .ok_or_else(|| anyhow!("no database {database_id}"))?;
        database.data_sources.push(id.clone());
        state.data_sources.insert(
            id.clone(),
            DataSource {
                id: id.clone(),
                database_id: database_id.to_owned(),
                name: name.to_owned(),
                properties: Vec::new(),
                created: Utc::now(),
            },
        );
        state
            .add_properties(&id, &schema.to_properties(), false)
            .map_err(|err| anyhow!("{err:?}"))
            .with_context(|| format!("adding the schema of data source {name:?}"))?;
        Ok(id)
    }

    /// Makes a database (and its data sources and pages) invisible to the integration: every request
    /// for it answers `404 object_not_found`, as for a database nobody shared.
    pub fn unshare(&self, database_id: &str) {
        self.shared.lock().unshared.insert(database_id.to_owned());
    }

    /// Shares a database with the integration again (undoes [`NotionServer::unshare`]).
    pub fn share(&self, database_id: &str) {
        self.shared.lock().unshared.remove(database_id);
    }

    /// Creates a page directly (not counted as a request), with the same checks as `POST /v1/pages`;
    /// `properties` is the request-shaped `properties` object. Returns the page id.
    pub fn insert_page(&self, data_source_id: &str, properties: Value) -> Result<String> {
        let mut state = self.shared.lock();
        state
            .create_page(data_source_id, &properties, &[])
            .map_err(|err| anyhow!("{err:?}"))
            .context("seeding a page")
    }

    /// The current schema of a data source (`GET /v1/data_sources/{id}`'s answer).
    pub fn data_source(&self, data_source_id: &str) -> Option<Value> {
        let state = self.shared.lock();
        let ds = state.data_sources.get(data_source_id)?;
        Some(state.render_data_source(ds))
    }

    /// Every page of a data source, archived ones included, oldest first, as page objects (relations
    /// not capped at 25).
    pub fn pages(&self, data_source_id: &str) -> Vec<Value> {
        let state = self.shared.lock();
        let mut pages: Vec<&Page> = state
            .pages
            .values()
            .filter(|page| page.data_source_id == data_source_id)
            .collect();
        pages.sort_by_key(|page| page.seq);
        pages
            .into_iter()
            .map(|page| state.render_page(page, false, None))
            .collect()
    }

    /// One page object (relations not capped).
    pub fn page(&self, page_id: &str) -> Option<Value> {
        let state = self.shared.lock();
        let page = state.pages.get(page_id)?;
        Some(state.render_page(page, false, None))
    }

    /// The children of a page or block, in order, as block objects.
    pub fn blocks(&self, parent_id: &str) -> Vec<Value> {
        let state = self.shared.lock();
        state
            .children_of(parent_id)
            .into_iter()
            .flatten()
            .filter_map(|id| state.blocks.get(id))
            .map(|block| state.render_block(block))
            .collect()
    }

    /// The plain text of each child of a page or block, in order (empty for blocks without text).
    pub fn block_texts(&self, parent_id: &str) -> Vec<String> {
        self.blocks(parent_id)
            .iter()
            .map(|block| {
                let kind = block["type"].as_str().unwrap_or_default();
                values::plain_text(&block[kind]["rich_text"])
            })
            .collect()
    }

    /// Every request so far, in arrival order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Changes the rate limit (`None` turns it off, for tests that are not about it).
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.shared
            .lock()
            .bucket
            .reconfigure(limit.map(|l| (f64::from(l.burst), l.per_second)));
    }

    /// Requests per endpoint (`"POST /v1/pages"`, `"PATCH /v1/blocks/{id}/children"`, …), every
    /// response included.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.lock().stats.per_endpoint()
    }

    /// Requests to one endpoint (method and route template).
    pub fn request_count(&self, endpoint: &str) -> u64 {
        self.request_counts().get(endpoint).copied().unwrap_or(0)
    }

    /// Requests to every endpoint.
    pub fn total_requests(&self) -> u64 {
        self.request_counts().values().sum()
    }

    /// How many requests the rate limit refused with `429 rate_limited` (bucket violations; injected
    /// faults not included).
    pub fn rate_limited_count(&self) -> u64 {
        self.shared.lock().rate_limited
    }

    /// The most authenticated requests within one wall-clock second.
    pub fn max_requests_in_any_second(&self) -> usize {
        self.shared.lock().stats.max_in_wall_clock_second()
    }

    /// The most authenticated requests within any sliding 1-second interval.
    pub fn max_requests_in_sliding_second(&self) -> usize {
        self.shared.lock().stats.max_in_sliding_second()
    }

    /// Forgets counters and the request log (not the data).
    pub fn reset_counters(&self) {
        let mut state = self.shared.lock();
        state.stats.reset();
        state.rate_limited = 0;
        state.log.clear();
    }

    /// Arms a fault (see [`FaultRule`]); write endpoints for the "applied" faults are `POST /v1/pages`,
    /// `PATCH /v1/pages/{id}`, `PATCH /v1/blocks/{id}/children` and `PATCH /v1/data_sources/{id}`.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().faults.add(rule);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Reseeds the RNG that decides [`FaultRule::fraction`] faults.
    pub fn set_fault_seed(&self, seed: u64) {
        self.shared.lock().faults.reseed(seed);
    }

    /// How many injected faults fired.
    pub fn faults_triggered(&self) -> u64 {
        self.shared.lock().faults.triggered()
    }
}

/// The text of a property value of a page object (`page["properties"][name]`): the plain text of a
/// title or rich text, the string of a url/email/phone number, the name of a select; `None` otherwise.
pub fn property_text(property: &Value) -> Option<String> {
    let kind = property["type"].as_str()?;
    let value = &property[kind];
    match kind {
        "title" | "rich_text" => Some(values::plain_text(value)),
        "select" | "status" => value["name"].as_str().map(str::to_owned),
        _ => value.as_str().map(str::to_owned),
    }
}
