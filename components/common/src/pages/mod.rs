//! Where Notion pages are written: one page per call and per message, created exactly once (see [`map`]),
//! updated with only the fields an event knows (nothing is blanked), body sections appended once each.
//!
//! The [`Writer`] here holds what every page write shares: the clients, the page map, the lease and the
//! Notion page primitives. Each kind of page is written by a small type borrowing it, in its own file:
//! [`calls::CallPages`] (with `call_media.rs`), [`messages::MessagePages`] (with `message_media.rs`).
//! [`events`] turns a webhook event into those writes, [`canvas_relink`] and [`canvas_backlink`] set the
//! Canvas relations a write could not, and [`handler`] is the drain's way in.

mod call_media;
pub mod calls;
pub mod canvas_backlink;
pub mod canvas_relink;
pub mod events;
mod existing;
pub mod handler;
pub use crate::page_map as map;
mod message_media;
pub mod messages;
pub mod settings;

use serde_json::Value;

use crate::canvas::{Canvas, LinkError};
use crate::lease::{Lease, LeaseLost};
use crate::notion::{properties, DataSourceSchema, Notion};
use crate::openphone::OpenPhone;
use crate::outbound::{ApiError, Failure, Transience};
use crate::phone_numbers::ResolveError;
use crate::platform::Platform;
use crate::storage::media::{MediaCopier, MediaError};
use calls::CallPages;
use existing::ExistingPages;
use map::{CreatePlan, Kind, PageMap};
use messages::MessagePages;
pub use settings::PageSettings;

/// Why writing a page did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An API failed; [`Failure::is_transient`] says whether to try again.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Another worker is creating the same page right now.
    #[error("another worker is creating this page; trying again shortly")]
    Busy,
    /// The event cannot be written, ever (missing id, malformed data).
    #[error("bad event data: {0}")]
    BadData(String),
    /// The app's database (SQLite or libSQL) failed.
    #[error("database: {0:#}")]
    Database(#[from] anyhow::Error),
    /// The number's lease passed to another worker before a write: stop, the event comes back.
    #[error(transparent)]
    LeaseLost(#[from] LeaseLost),
    /// A recording or voicemail could not be copied to object storage (the page was written with
    /// OpenPhone's link meanwhile).
    #[error("media copy: {0}")]
    Media(#[from] MediaError),
    /// A person deleted the page or moved it to the trash in Notion: it is left alone, and the event has
    /// nothing more to do.
    #[error("the Notion page {page_id} was deleted or trashed in Notion; left alone")]
    PageGone {
        /// The page.
        page_id: String,
    },
}

impl From<ResolveError> for WriteError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Api(e) => WriteError::Api(e),
            ResolveError::Database(e) => WriteError::Database(e),
        }
    }
}

impl From<LinkError> for WriteError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Api(e) => WriteError::Api(e),
            LinkError::Busy => WriteError::Busy,
            LinkError::Database(e) => WriteError::Database(e),
        }
    }
}

impl Failure for WriteError {
    fn transience(&self) -> Transience {
        match self {
            WriteError::Api(e) => e.transience(),
            WriteError::Media(e) => e.transience(),
            WriteError::Busy => Transience::Transient {
                retry_after_ms: Some(map::UNKNOWN_OUTCOME_SETTLE_MS as u64),
            },
            WriteError::Database(_) | WriteError::LeaseLost(_) => Transience::Transient {
                retry_after_ms: None,
            },
            WriteError::BadData(_) | WriteError::PageGone { .. } => Transience::Permanent,
        }
    }
}

/// What a claimed create found it has to do: nothing (an earlier attempt's page was found), or create a
/// page with these properties and children.
enum Prepared {
    Found(String),
    New(Value, Vec<Value>),
}

/// The title property of a database, which every page is found by; a database without one is refused as
/// Notion would refuse a query on it.
fn title_property(schema: &DataSourceSchema) -> Result<&str, WriteError> {
    schema.title_property().ok_or_else(|| {
        WriteError::Api(ApiError::Refused {
            service: crate::outbound::Service::Notion,
            status: 400,
            detail: "the database has no title property".into(),
        })
    })
}

/// Whether Notion refused a write to a page because a person deleted it (`404`) or moved it to the trash
/// (`400` "Can't edit block that is archived").
fn is_gone(error: &ApiError) -> bool {
    match error {
        ApiError::Refused { status: 404, .. } => true,
        ApiError::Refused {
            status: 400,
            detail,
            ..
        } => {
            detail.contains("archived") || detail.contains("in_trash") || detail.contains("trashed")
        }
        _ => false,
    }
}

/// Everything needed to write pages for one request, and the Notion page primitives every kind of page is
/// written with; a call's or a message's own writes are reached through [`Writer::calls`] and
/// [`Writer::messages`].
pub struct Writer<'a> {
    platform: &'a Platform,
    notion: &'a Notion<'a>,
    openphone: &'a OpenPhone<'a>,
    settings: &'a PageSettings,
    map: PageMap<'a>,
    lease: Option<&'a Lease>,
    media: Option<MediaCopier<'a>>,
    /// The data sources resolved by this writer, so one event's create and updates read them once.
    schemas: std::cell::RefCell<Vec<(Kind, String, DataSourceSchema)>>,
    /// What [`Writer::look_up_existing`] found.
    existing: ExistingPages,
}

impl<'a> Writer<'a> {
    /// A writer over the given clients and settings that links OpenPhone's media and checks no lease;
    /// [`PageSettings::writer`] makes the one the drain and the sync write with.
    pub fn new(
        platform: &'a Platform,
        notion: &'a Notion<'a>,
        openphone: &'a OpenPhone<'a>,
        settings: &'a PageSettings,
    ) -> Self {
        Self {
            platform,
            notion,
            openphone,
            settings,
            map: PageMap::new(platform),
            lease: None,
            media: None,
            schemas: Default::default(),
            existing: ExistingPages::default(),
        }
    }

    /// Copies recordings, voicemails and message media to object storage with `media`, linking our
    /// copies (without it, pages link OpenPhone's URLs).
    pub fn with_media(mut self, media: MediaCopier<'a>) -> Self {
        self.media = Some(media);
        self
    }

    /// Checks `lease` before every write, and stops when it has passed to another worker.
    pub fn under_lease(mut self, lease: &'a Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Writes call pages with this writer.
    pub fn calls(&self) -> CallPages<'_> {
        CallPages::new(self)
    }

    /// Writes message pages with this writer.
    pub fn messages(&self) -> MessagePages<'_> {
        MessagePages::new(self)
    }

    /// The page of item `kind`/`openphone_id`, when it has one.
    fn page_of(&self, kind: Kind, openphone_id: &str) -> Result<Option<String>, WriteError> {
        Ok(self
            .map
            .get(kind, openphone_id)?
            .and_then(|row| row.page_id))
    }

    fn check_lease(&self) -> Result<(), WriteError> {
        match self.lease {
            Some(lease) => Ok(lease.check()?),
            None => Ok(()),
        }
    }

    fn canvas(&self) -> Canvas<'_> {
        let canvas = Canvas::new(
            self.platform,
            self.notion,
            self.settings.notion.canvas_database_id.as_deref(),
            &self.settings.sync.self_phone_numbers,
        );
        if self.settings.sync.canvas_create_unknown {
            canvas.creating_unknown(self.openphone)
        } else {
            canvas
        }
    }

    /// Whether an item created at `created_at` (ISO-8601) is older than the app's database, so a page may
    /// exist from an earlier tool.
    fn predates_app(&self, created_at: Option<&str>) -> anyhow::Result<bool> {
        let Some(created) = created_at.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        else {
            return Ok(false);
        };
        let rows = self.platform.sql.execute(
            "SELECT MIN(applied_at) AS installed_at FROM schema_migrations",
            &[],
        )?;
        let installed = rows
            .first()
            .and_then(|r| r.opt_i64("installed_at").ok().flatten());
        Ok(matches!(installed, Some(at) if created.timestamp_millis() < at))
    }

    /// Finds or creates the page of an item: `Ok((page_id, created))`. `new_page` gives the properties and
    /// children of a new page, and runs just before the create is sent; a new page gets `icon`.
    async fn ensure_page(
        &self,
        kind: Kind,
        openphone_id: &str,
        phone_number_id: Option<&str>,
        created_at: Option<&str>,
        icon: Option<&Value>,
        new_page: impl FnOnce() -> anyhow::Result<(Value, Vec<Value>)>,
    ) -> Result<(String, bool), WriteError> {
        if let Some(page_id) = self.existing.take_found(kind, openphone_id) {
            self.map.record_found(kind, openphone_id, &page_id)?;
        }
        let predates =
            self.predates_app(created_at)? && !self.existing.is_absent(kind, openphone_id);
        // What a create needs is read before the claim, so a failure here leaves no claim to wait out
        // (both are cached: no request once the data source is known).
        let (data_source, schema) = self.schema_of(kind).await?;
        let plan = self
            .map
            .plan_create(kind, openphone_id, phone_number_id, predates)?;
        match plan {
            CreatePlan::Exists(page_id) if self.map.is_gone(kind, openphone_id)? => {
                return Err(WriteError::PageGone { page_id })
            }
            CreatePlan::Exists(page_id) => return Ok((page_id, false)),
            CreatePlan::Busy => return Err(WriteError::Busy),
            CreatePlan::CreateFresh | CreatePlan::QueryThenCreate => {}
        }
        let prepared = async {
            if plan == CreatePlan::QueryThenCreate {
                let title = title_property(&schema)?;
                let filter =
                    serde_json::json!({ "property": title, "title": { "equals": openphone_id } });
                let found = self.notion.query(&data_source, &filter, 1, None).await?;
                if let Some(page_id) = found.results.first().and_then(|p| p["id"].as_str()) {
                    return Ok(Prepared::Found(page_id.to_owned()));
                }
            }
            let (props, children) = new_page()?;
            Ok(Prepared::New(props, children))
        }
        .await;
        let (props, children) = match prepared {
            Ok(Prepared::New(props, children)) => (props, children),
            Ok(Prepared::Found(found)) => {
                return Ok((self.map.record_page(kind, openphone_id, &found)?, false));
            }
            Err(e) => {
                // Nothing was sent: the claim ends, and the next attempt (a retry) queries first.
                self.map.release_claim(kind, openphone_id)?;
                return Err(e);
            }
        };
        let (props, dropped) = schema.fit(props.as_object().cloned().unwrap_or_default());
        if !dropped.is_empty() {
            tracing::debug!(
                ?dropped,
                "properties the database does not have are left out"
            );
        }
        self.check_lease()?;
        match self
            .notion
            .create_page(&data_source, &Value::Object(props), icon, &children)
            .await
        {
            Ok(page_id) => {
                let recorded = self.map.record_page(kind, openphone_id, &page_id)?;
                let created = recorded == page_id;
                Ok((recorded, created))
            }
            Err(e @ ApiError::Refused { .. }) | Err(e @ ApiError::RateLimited { .. }) => {
                if e.status() == Some(400) {
                    // Perhaps refused for a schema that changed since it was cached.
                    self.forget_schema(kind, &data_source);
                }
                // Nothing landed: the claim ends (the next attempt still queries, being a retry).
                self.map.release_claim(kind, openphone_id)?;
                Err(e.into())
            }
            Err(e) => {
                // It may have landed: the next attempt queries for it, after a short settle.
                self.map.end_claim_unknown(kind, openphone_id)?;
                Err(e.into())
            }
        }
    }

    /// Looks up in bulk the pages an earlier tool may have made for `items` (OpenPhone id, `createdAt`),
    /// so a backfill does not query Notion once per item (how: `existing`). `items_from` is the earliest
    /// an item the caller lists may have been created (epoch ms).
    ///
    /// The pages found are used (and recorded in the page map) when their item is written; the items
    /// found absent are created without a query of their own. Only items older than the app and unknown
    /// to the page map are looked up; an item with an earlier attempt of this app still queries for
    /// itself, since that attempt may have landed after this lookup.
    pub async fn look_up_existing(
        &self,
        kind: Kind,
        items: &[(&str, Option<&str>)],
        items_from: i64,
    ) -> Result<(), WriteError> {
        let mut wanted: Vec<(&str, Option<i64>)> = Vec::new();
        for (id, created_at) in items {
            let unknown = !self.existing.knows(kind, id) && self.map.get(kind, id)?.is_none();
            if unknown && !wanted.iter().any(|(w, _)| w == id) && self.predates_app(*created_at)? {
                let created = created_at
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|c| c.timestamp_millis());
                wanted.push((id, created));
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let (data_source, schema) = self.schema_of(kind).await?;
        let title = title_property(&schema)?;
        Ok(self
            .existing
            .look_up(self.notion, kind, &data_source, title, wanted, items_from)
            .await?)
    }

    /// How many items this writer wrote to pages that a bulk lookup found (an earlier tool's).
    pub fn pages_found(&self) -> u32 {
        self.existing.used()
    }

    /// The data source `kind`'s pages go to, and what it has.
    async fn schema_of(&self, kind: Kind) -> Result<(String, DataSourceSchema), WriteError> {
        if let Some((_, data_source, schema)) =
            self.schemas.borrow().iter().find(|(k, _, _)| *k == kind)
        {
            return Ok((data_source.clone(), schema.clone()));
        }
        let database_id = match kind {
            Kind::Call => &self.settings.notion.calls_database_id,
            Kind::Message => &self.settings.notion.messages_database_id,
            // Canvas records are made by `canvas.rs`, never by the writer.
            Kind::Canvas => {
                return Err(WriteError::BadData(
                    "the page writer makes no Canvas records".into(),
                ))
            }
        };
        let data_source = self.notion.data_source_id(database_id).await?;
        let schema = self.notion.schema(&data_source).await?;
        self.schemas
            .borrow_mut()
            .push((kind, data_source.clone(), schema.clone()));
        Ok((data_source, schema))
    }

    /// Drops the data source schema of `kind` here and in the cache: Notion refused a write fitted to it.
    fn forget_schema(&self, kind: Kind, data_source: &str) {
        self.schemas.borrow_mut().retain(|(k, _, _)| *k != kind);
        self.notion.forget_schema(data_source);
    }

    /// Sets `properties` of the existing page `page_id` of item `kind`/`openphone_id`, as far as its
    /// database has them.
    async fn update_page(
        &self,
        kind: Kind,
        openphone_id: &str,
        page_id: &str,
        properties: serde_json::Map<String, Value>,
    ) -> Result<(), WriteError> {
        self.update_page_and_icon(kind, openphone_id, page_id, properties, None)
            .await
    }

    /// [`Writer::update_page`], and sets the page's icon when `icon` is given.
    async fn update_page_and_icon(
        &self,
        kind: Kind,
        openphone_id: &str,
        page_id: &str,
        properties: serde_json::Map<String, Value>,
        icon: Option<&Value>,
    ) -> Result<(), WriteError> {
        let (data_source, schema) = self.schema_of(kind).await?;
        let (properties, dropped) = schema.fit(properties);
        if !dropped.is_empty() {
            tracing::debug!(
                ?dropped,
                "properties the database does not have are left out"
            );
        }
        if properties.is_empty() && icon.is_none() {
            return Ok(());
        }
        self.check_lease()?;
        match self
            .notion
            .update_page(page_id, &Value::Object(properties), icon)
            .await
        {
            Err(e) if e.status() == Some(400) && !is_gone(&e) => {
                self.forget_schema(kind, &data_source);
                Err(e.into())
            }
            Err(e) => Err(self.gone_or(kind, openphone_id, page_id, e).await),
            Ok(()) => Ok(()),
        }
    }

    /// `error` from a write to the page `page_id` of item `kind`/`openphone_id`, as a [`WriteError`]: [`WriteError::PageGone`] (and
    /// recorded) when it says a person deleted or trashed the page. A `404` also answers for every page
    /// of a database the integration lost access to, so it counts as deleted only while the database
    /// itself is still visible (one request, on a `404` only).
    async fn gone_or(
        &self,
        kind: Kind,
        openphone_id: &str,
        page_id: &str,
        error: ApiError,
    ) -> WriteError {
        if !is_gone(&error) {
            return error.into();
        }
        if error.status() == Some(404) {
            let database_visible = match self.schema_of(kind).await {
                Ok((data_source, _)) => self.notion.data_source(&data_source).await.is_ok(),
                Err(_) => false,
            };
            if !database_visible {
                return error.into();
            }
        }
        if let Err(e) = self.map.record_gone(kind, openphone_id, page_id) {
            return WriteError::Database(e);
        }
        WriteError::PageGone {
            page_id: page_id.to_owned(),
        }
    }

    /// Appends body sections not yet on the page, each once: a section is marked in flight before its
    /// blocks are sent, and after an unknown outcome the page's children are read to append only what is
    /// missing.
    async fn append_sections(
        &self,
        kind: Kind,
        openphone_id: &str,
        page_id: &str,
        sections: &[Section],
    ) -> Result<(), WriteError> {
        let row = self.map.get(kind, openphone_id)?.unwrap_or_default();
        let mut existing: Option<Vec<Value>> = None;
        for section in sections {
            if row.section_done(section.name) {
                continue;
            }
            let mut blocks = section.blocks();
            if row.section_in_flight(section.name) {
                if existing.is_none() {
                    existing = Some(self.notion.children(page_id).await?);
                }
                let already =
                    blocks_already_appended(existing.as_deref().unwrap_or_default(), section.title);
                blocks.drain(..already.min(blocks.len()));
            }
            self.map
                .mark_sections(kind, openphone_id, &[section.name], false)?;
            for batch in batches(&blocks) {
                self.check_lease()?;
                if let Err(e) = self.notion.append_children(page_id, batch).await {
                    return Err(self.gone_or(kind, openphone_id, page_id, e).await);
                }
            }
            self.map
                .mark_sections(kind, openphone_id, &[section.name], true)?;
        }
        Ok(())
    }
}

/// Most bytes of blocks per append: Notion refuses requests over 500 KB.
const MAX_APPEND_BYTES: usize = 400_000;

/// `blocks` in appendable runs: at most 100 blocks and [`MAX_APPEND_BYTES`] each, in order.
fn batches(blocks: &[Value]) -> Vec<&[Value]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, block) in blocks.iter().enumerate() {
        let size = block.to_string().len();
        if i > start && (i - start == properties::MAX_ITEMS || bytes + size > MAX_APPEND_BYTES) {
            out.push(&blocks[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < blocks.len() {
        out.push(&blocks[start..]);
    }
    out
}

/// A titled part of a page's body.
#[derive(Debug, Clone)]
pub struct Section {
    /// Key in `notion_pages.sections`.
    pub name: &'static str,
    /// The heading that starts it.
    pub title: &'static str,
    /// The blocks under the heading.
    pub body: Vec<Value>,
}

impl Section {
    /// Heading and body.
    pub fn blocks(&self) -> Vec<Value> {
        let mut blocks = vec![properties::heading(self.title)];
        blocks.extend(self.body.iter().cloned());
        blocks
    }
}

/// How many blocks of the section titled `title` (its heading included) a page already has.
fn blocks_already_appended(children: &[Value], title: &str) -> usize {
    let Some(start) = children
        .iter()
        .position(|b| b["type"] == "heading_2" && properties::block_text(b) == title)
    else {
        return 0;
    };
    1 + children[start + 1..]
        .iter()
        .take_while(|b| b["type"] != "heading_2")
        .count()
}

/// Sections included in a page's create request (up to 100 blocks), and the rest to append after.
fn split_for_create(sections: &[Section]) -> (Vec<Value>, Vec<&'static str>) {
    let mut children = Vec::new();
    let mut included = Vec::new();
    for section in sections {
        let blocks = section.blocks();
        if children.len() + blocks.len() > properties::MAX_ITEMS {
            break;
        }
        children.extend(blocks);
        included.push(section.name);
    }
    (children, included)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(name: &'static str, title: &'static str, n: usize) -> Section {
        Section {
            name,
            title,
            body: (0..n)
                .flat_map(|i| properties::paragraphs(&format!("{title} {i}")))
                .collect(),
        }
    }

    #[test]
    fn resumed_appends_skip_what_the_page_already_has() {
        let transcript = section("transcript", "Transcript", 5);
        let mut page: Vec<Value> = section("summary", "Summary", 2).blocks();
        page.extend(transcript.blocks().into_iter().take(4));
        page.push(json!({ "type": "heading_2", "heading_2": { "rich_text": [{ "plain_text": "Other" }] } }));
        assert_eq!(blocks_already_appended(&page, "Transcript"), 4);
        assert_eq!(blocks_already_appended(&page, "Next steps"), 0);
    }

    #[test]
    fn appends_are_cut_by_count_and_by_size() {
        let small: Vec<Value> = (0..250)
            .flat_map(|i| properties::paragraphs(&format!("line {i}")))
            .collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let big = properties::paragraphs(&"x".repeat(500_000));
        let runs = batches(&big);
        assert!(
            runs.len() >= 2,
            "{} blocks in {} runs",
            big.len(),
            runs.len()
        );
        assert!(runs
            .iter()
            .all(|r| r.iter().map(|b| b.to_string().len()).sum::<usize>() <= MAX_APPEND_BYTES));
        assert_eq!(runs.concat(), big);
    }

    #[test]
    fn create_requests_carry_whole_sections_up_to_100_blocks() {
        let sections = [
            section("summary", "Summary", 3),
            section("transcript", "Transcript", 150),
        ];
        let (children, included) = split_for_create(&sections);
        assert_eq!(included, vec!["summary"]);
        assert_eq!(children.len(), 4);
    }
}
