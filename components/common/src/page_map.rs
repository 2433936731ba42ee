//! The `notion_pages` map: OpenPhone id → Notion page, and the protocol that makes page creation happen
//! once. Notion has no idempotency keys, so:
//!
//! - a create is *claimed* with one upsert before it is sent ("in flight");
//! - the page id is written the moment the create answers;
//! - a claim left without a page id means an earlier attempt may have landed: the next attempt queries
//!   Notion by the OpenPhone id before creating (and only then);
//! - a create refused with a `4xx` landed nowhere, so its claim is dropped.
//!
//! The claim statements are [`crate::claims`]'s, on a table without a holder column: whoever won the
//! claim sends the create, and whichever page is recorded first stays the item's page.
//!
//! It sits beneath both `pages` (calls and messages) and `canvas` (the Canvas records the app creates),
//! which create pages with it.
//!
//! Body sections (transcript, summary, …) are appended once each with the same idea: marked in flight
//! before the append, done after it.

use anyhow::bail;

use crate::claims::{Attempt, Done, Recorded, Stamp, Table, CLAIM_IN_PROGRESS_MS};
use crate::platform::{Platform, Value};

/// What a page is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A call in the Calls database.
    Call,
    /// A message in the Messages database.
    Message,
    /// A Canvas record the app creates for a number no record has (`canvas.rs`), keyed by the E.164
    /// number.
    Canvas,
}

impl Kind {
    /// The name stored in `notion_pages.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Message => "message",
            Kind::Canvas => "canvas",
        }
    }
}

/// After a create whose outcome is unknown (5xx, timeout), how long to give Notion before querying for
/// the page it may have made (its query index lags the write a little).
pub const UNKNOWN_OUTCOME_SETTLE_MS: i64 = 10_000;

/// `notion_pages` as a claims table: a create is claimed until a page is recorded, once.
const PAGES: Table = Table {
    name: "notion_pages",
    key: &["kind", "openphone_id"],
    holder: None,
    stamp: Stamp::ClaimedAt("create_started_at"),
    done: Done::Once("page_id"),
    created: Some("created_at"),
};

/// What the map knows about one OpenPhone item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageRow {
    /// The Notion page, once known.
    pub page_id: Option<String>,
    /// When the current create claim was taken.
    pub create_started_at: Option<i64>,
    /// The Canvas page last written to the relation.
    pub canvas_page_id: Option<String>,
    /// Rank of the last status written (message or call).
    pub status_rank: Option<i64>,
    /// The workspace number the item belongs to, when an event or the backfill said.
    pub phone_number_id: Option<String>,
    /// Body sections: `name` when appended, `name~` while an append's outcome is unknown.
    pub sections: Vec<String>,
    /// Our storage URLs of the recording segments, in order.
    pub recording_urls: Vec<String>,
    /// Our storage URL of the voicemail.
    pub voicemail_url: Option<String>,
}

impl PageRow {
    /// Whether section `name` was appended.
    pub fn section_done(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s == name)
    }

    /// Whether an append of section `name` was sent without a known outcome.
    pub fn section_in_flight(&self, name: &str) -> bool {
        self.sections
            .iter()
            .any(|s| s.strip_suffix('~') == Some(name))
    }
}

/// How to go about creating a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatePlan {
    /// The page exists: update it.
    Exists(String),
    /// No earlier attempt: create without asking Notion first.
    CreateFresh,
    /// An earlier attempt may have landed: query Notion by the OpenPhone id, then create if absent.
    QueryThenCreate,
    /// Another worker's create is in progress: try again later.
    Busy,
}

/// The page map on the app's database.
pub struct PageMap<'a> {
    platform: &'a Platform,
}

impl<'a> PageMap<'a> {
    /// The map.
    pub fn new(platform: &'a Platform) -> Self {
        Self { platform }
    }

    /// The row of an item, if any.
    pub fn get(&self, kind: Kind, openphone_id: &str) -> anyhow::Result<Option<PageRow>> {
        let rows = self.platform.sql.execute(
            "SELECT page_id, create_started_at, canvas_page_id, status_rank, sections, recording_urls, voicemail_url,
                    phone_number_id
             FROM notion_pages WHERE kind = ?1 AND openphone_id = ?2",
            &[kind.as_str().into(), openphone_id.into()],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(PageRow {
            page_id: row.opt_str("page_id")?.map(String::from),
            create_started_at: row.opt_i64("create_started_at")?,
            canvas_page_id: row.opt_str("canvas_page_id")?.map(String::from),
            status_rank: row.opt_i64("status_rank")?,
            phone_number_id: row.opt_str("phone_number_id")?.map(String::from),
            sections: row
                .str("sections")?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            recording_urls: row
                .opt_str("recording_urls")?
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default(),
            voicemail_url: row.opt_str("voicemail_url")?.map(String::from),
        }))
    }

    /// Decides how to create the page of an item, claiming the create when this worker should make it.
    /// `predates_app` says the item may have a page made by an earlier tool.
    pub fn plan_create(
        &self,
        kind: Kind,
        openphone_id: &str,
        phone_number_id: Option<&str>,
        predates_app: bool,
    ) -> anyhow::Result<CreatePlan> {
        if let Some(fresh) = self.claim_create(kind, openphone_id, phone_number_id)? {
            return Ok(if fresh && !predates_app {
                CreatePlan::CreateFresh
            } else {
                CreatePlan::QueryThenCreate
            });
        }
        match self.get(kind, openphone_id)? {
            Some(PageRow {
                page_id: Some(page_id),
                ..
            }) => Ok(CreatePlan::Exists(page_id)),
            _ => Ok(CreatePlan::Busy),
        }
    }

    /// Claims the create of an item's page in one statement: a new item, or one whose claim was
    /// released or is old enough that its worker is gone; never an item with a page. `Some(fresh)` when
    /// this worker won, `fresh` when no earlier attempt can have landed.
    pub fn claim_create(
        &self,
        kind: Kind,
        openphone_id: &str,
        phone_number_id: Option<&str>,
    ) -> anyhow::Result<Option<bool>> {
        let won = PAGES.claim(
            self.platform,
            &Attempt {
                key: &[kind.as_str().into(), openphone_id.into()],
                holder: None,
                stale_ms: CLAIM_IN_PROGRESS_MS,
                interval_ms: 0,
                insert: &[("phone_number_id", Value::from(phone_number_id))],
                set: &[("updated_at", self.platform.clock.now_ms().into())],
            },
        )?;
        Ok(won.map(|won| won.fresh))
    }

    /// The page recorded for an item, with when it was recorded (the row's last update).
    pub fn recorded(
        &self,
        kind: Kind,
        openphone_id: &str,
    ) -> anyhow::Result<Option<(String, i64)>> {
        let rows = self.platform.sql.execute(
            "SELECT page_id, updated_at FROM notion_pages
             WHERE kind = ?1 AND openphone_id = ?2 AND page_id IS NOT NULL",
            &[kind.as_str().into(), openphone_id.into()],
        )?;
        rows.first()
            .map(|row| Ok((row.str("page_id")?.to_owned(), row.i64("updated_at")?)))
            .transpose()
    }

    /// Records the page id learned from a create or a query, ending the claim.
    /// The first page recorded stays the item's page: a create that outlived its claim, while another
    /// worker created and recorded a page, does not overwrite it. Returns the item's page.
    pub fn record_page(
        &self,
        kind: Kind,
        openphone_id: &str,
        page_id: &str,
    ) -> anyhow::Result<String> {
        let rows = PAGES.finish(
            self.platform,
            &[kind.as_str().into(), openphone_id.into()],
            None,
            &[
                ("page_id", Recorded::First(page_id.into())),
                (
                    "updated_at",
                    Recorded::Value(self.platform.clock.now_ms().into()),
                ),
            ],
        )?;
        let recorded = match rows.first() {
            Some(row) => row.str("page_id")?.to_owned(),
            None => page_id.to_owned(),
        };
        if recorded != page_id {
            tracing::warn!(
                kind = kind.as_str(),
                openphone_id,
                page_id,
                recorded,
                "a second page was made for an item; the first one recorded is kept"
            );
        }
        Ok(recorded)
    }

    /// Records the page a lookup in Notion found for an item (made by an earlier tool or an earlier
    /// attempt), unless the map already knows its page.
    pub fn record_found(
        &self,
        kind: Kind,
        openphone_id: &str,
        page_id: &str,
    ) -> anyhow::Result<()> {
        let now = self.platform.clock.now_ms();
        self.platform.sql.execute(
            "INSERT INTO notion_pages (kind, openphone_id, page_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (kind, openphone_id) DO UPDATE SET page_id = excluded.page_id, create_started_at = NULL,
                                                            updated_at = excluded.updated_at
             WHERE notion_pages.page_id IS NULL",
            &[kind.as_str().into(), openphone_id.into(), page_id.into(), now.into()],
        )?;
        Ok(())
    }

    /// Records that a person deleted or trashed the page of an item in Notion: it is left alone from now on.
    pub fn record_gone(&self, kind: Kind, openphone_id: &str, page_id: &str) -> anyhow::Result<()> {
        self.platform.sql.execute(
            "INSERT INTO notion_pages_gone (kind, openphone_id, page_id, seen_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, openphone_id) DO NOTHING",
            &[
                kind.as_str().into(),
                openphone_id.into(),
                page_id.into(),
                self.platform.clock.now_ms().into(),
            ],
        )?;
        Ok(())
    }

    /// How many pages people deleted or trashed in Notion (for `/stats`).
    pub fn gone_count(&self) -> anyhow::Result<i64> {
        let rows = self
            .platform
            .sql
            .execute("SELECT count(*) AS n FROM notion_pages_gone", &[])?;
        rows.first().map_or(Ok(0), |r| r.i64("n"))
    }

    /// Whether the page of an item was deleted or trashed in Notion.
    pub fn is_gone(&self, kind: Kind, openphone_id: &str) -> anyhow::Result<bool> {
        let rows = self.platform.sql.execute(
            "SELECT 1 FROM notion_pages_gone WHERE kind = ?1 AND openphone_id = ?2",
            &[kind.as_str().into(), openphone_id.into()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Ends the claim of a create whose outcome is unknown: the attempt is over, so after a short settle
    /// the next attempt (which queries first, the row being old) need not wait out a live claim.
    pub fn end_claim_unknown(&self, kind: Kind, openphone_id: &str) -> anyhow::Result<()> {
        PAGES.release_after(
            self.platform,
            &[kind.as_str().into(), openphone_id.into()],
            None,
            CLAIM_IN_PROGRESS_MS,
            UNKNOWN_OUTCOME_SETTLE_MS,
        )
    }

    /// Drops the claim of a create that certainly did not land (refused with a `4xx`).
    pub fn release_claim(&self, kind: Kind, openphone_id: &str) -> anyhow::Result<()> {
        PAGES.release(
            self.platform,
            &[kind.as_str().into(), openphone_id.into()],
            None,
        )
    }

    /// Marks sections as in flight (`done = false`) or appended (`done = true`).
    ///
    /// One statement rewrites the list from what the row holds as it runs, rather than from an earlier
    /// read: two workers marking different sections of one page both keep theirs.
    pub fn mark_sections(
        &self,
        kind: Kind,
        openphone_id: &str,
        names: &[&str],
        done: bool,
    ) -> anyhow::Result<()> {
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || n.contains([',', '~']))
        {
            bail!("section name {bad:?} cannot be stored: it is empty or holds ',' or '~'");
        }
        let marks: Vec<String> = names
            .iter()
            .map(|n| if done { n.to_string() } else { format!("{n}~") })
            .collect();
        let mut params: Vec<Value> = vec![
            kind.as_str().into(),
            openphone_id.into(),
            self.platform.clock.now_ms().into(),
            marks.join(",").into(),
        ];
        // Between commas, each name is dropped whether done or in flight (`name~`); the new marks go last.
        let mut kept = "',' || sections || ','".to_owned();
        for name in names {
            params.push(format!(",{name},").into());
            params.push(format!(",{name}~,").into());
            kept = format!(
                "replace(replace({kept}, ?{}, ','), ?{}, ',')",
                params.len() - 1,
                params.len()
            );
        }
        self.platform.sql.execute(
            &format!(
                "UPDATE notion_pages SET sections = trim(trim({kept}, ',') || ',' || ?4, ','), updated_at = ?3
                 WHERE kind = ?1 AND openphone_id = ?2"
            ),
            &params,
        )?;
        Ok(())
    }

    /// Records the Canvas page written to the relation.
    pub fn set_canvas(
        &self,
        kind: Kind,
        openphone_id: &str,
        canvas_page_id: &str,
    ) -> anyhow::Result<()> {
        self.platform.sql.execute(
            "UPDATE notion_pages SET canvas_page_id = ?3 WHERE kind = ?1 AND openphone_id = ?2",
            &[
                kind.as_str().into(),
                openphone_id.into(),
                canvas_page_id.into(),
            ],
        )?;
        Ok(())
    }

    /// Raises the stored status rank of an item to `rank` unless a higher one is stored; `true` when this
    /// status is the newest and should be written (a later event with an earlier status, such as a
    /// `call.answered` drained after `call.completed`, must not set it back).
    pub fn advance_status(
        &self,
        kind: Kind,
        openphone_id: &str,
        rank: i64,
    ) -> anyhow::Result<bool> {
        let rows = self.platform.sql.execute(
            "UPDATE notion_pages SET status_rank = ?3
             WHERE kind = ?1 AND openphone_id = ?2 AND (status_rank IS NULL OR status_rank <= ?3)
             RETURNING status_rank",
            &[kind.as_str().into(), openphone_id.into(), rank.into()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Stores our storage URLs of a call's recordings and voicemail (never replaced by OpenPhone's).
    pub fn set_media_urls(
        &self,
        call_id: &str,
        recording_urls: &[String],
        voicemail_url: Option<&str>,
    ) -> anyhow::Result<()> {
        let recordings = (!recording_urls.is_empty())
            .then(|| serde_json::to_string(recording_urls).expect("strings serialize"));
        self.platform.sql.execute(
            "UPDATE notion_pages SET recording_urls = COALESCE(?2, recording_urls),
                                     voicemail_url = COALESCE(?3, voicemail_url)
             WHERE kind = 'call' AND openphone_id = ?1",
            &[
                call_id.into(),
                Value::from(recordings),
                Value::from(voicemail_url),
            ],
        )?;
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::platform::native::{ManualClock, NativePlatformBuilder};

    async fn platform(dir: &std::path::Path, clock: Rc<ManualClock>) -> Platform {
        let platform = NativePlatformBuilder::new(dir)
            .clock(clock)
            .build()
            .unwrap();
        crate::migrations::ensure_checked(&platform).await.unwrap();
        platform
    }

    #[tokio::test]
    async fn the_first_page_recorded_stays_the_items_page() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(1_000_000));
        let p = platform(dir.path(), clock.clone()).await;
        let map = PageMap::new(&p);
        map.plan_create(Kind::Call, "AC1", Some("PN1"), false)
            .unwrap();
        assert_eq!(
            map.record_page(Kind::Call, "AC1", "page-1").unwrap(),
            "page-1"
        );
        // A slow create that outlived its claim comes back with another page: it does not replace it.
        assert_eq!(
            map.record_page(Kind::Call, "AC1", "page-2").unwrap(),
            "page-1"
        );
        assert_eq!(
            map.get(Kind::Call, "AC1")
                .unwrap()
                .unwrap()
                .page_id
                .as_deref(),
            Some("page-1")
        );
    }

    #[tokio::test]
    async fn the_first_claim_creates_fresh_and_a_second_worker_waits() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(1_000_000));
        let p = platform(dir.path(), clock.clone()).await;
        let map = PageMap::new(&p);
        assert_eq!(
            map.plan_create(Kind::Call, "AC1", Some("PN1"), false)
                .unwrap(),
            CreatePlan::CreateFresh
        );
        clock.advance_ms(1);
        assert_eq!(
            map.plan_create(Kind::Call, "AC1", Some("PN1"), false)
                .unwrap(),
            CreatePlan::Busy
        );
        map.record_page(Kind::Call, "AC1", "page-1").unwrap();
        assert_eq!(
            map.plan_create(Kind::Call, "AC1", None, false).unwrap(),
            CreatePlan::Exists("page-1".into())
        );
    }

    #[tokio::test]
    async fn an_abandoned_claim_makes_the_next_attempt_query_first() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(1_000_000));
        let p = platform(dir.path(), clock.clone()).await;
        let map = PageMap::new(&p);
        assert_eq!(
            map.plan_create(Kind::Message, "AC2", None, false).unwrap(),
            CreatePlan::CreateFresh
        );
        clock.advance_ms(CLAIM_IN_PROGRESS_MS + 1);
        assert_eq!(
            map.plan_create(Kind::Message, "AC2", None, false).unwrap(),
            CreatePlan::QueryThenCreate
        );
    }

    #[tokio::test]
    async fn an_unknown_outcome_waits_a_few_seconds_then_queries() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(1_000_000));
        let p = platform(dir.path(), clock.clone()).await;
        let map = PageMap::new(&p);
        map.plan_create(Kind::Call, "AC9", None, false).unwrap();
        map.end_claim_unknown(Kind::Call, "AC9").unwrap();
        assert_eq!(
            map.plan_create(Kind::Call, "AC9", None, false).unwrap(),
            CreatePlan::Busy
        );
        clock.advance_ms(UNKNOWN_OUTCOME_SETTLE_MS + 1);
        assert_eq!(
            map.plan_create(Kind::Call, "AC9", None, false).unwrap(),
            CreatePlan::QueryThenCreate
        );
    }

    #[tokio::test]
    async fn a_released_claim_is_taken_again_but_still_queries() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(1_000_000));
        let p = platform(dir.path(), clock.clone()).await;
        let map = PageMap::new(&p);
        map.plan_create(Kind::Message, "AC3", None, false).unwrap();
        map.release_claim(Kind::Message, "AC3").unwrap();
        clock.advance_ms(1);
        assert_eq!(
            map.plan_create(Kind::Message, "AC3", None, false).unwrap(),
            CreatePlan::QueryThenCreate
        );
    }

    #[tokio::test]
    async fn items_older_than_the_app_are_looked_up_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = platform(dir.path(), Rc::new(ManualClock::at(5))).await;
        assert_eq!(
            PageMap::new(&p)
                .plan_create(Kind::Call, "AC4", None, true)
                .unwrap(),
            CreatePlan::QueryThenCreate
        );
    }

    #[tokio::test]
    async fn sections_and_status_ranks_are_tracked() {
        let dir = tempfile::tempdir().unwrap();
        let p = platform(dir.path(), Rc::new(ManualClock::at(5))).await;
        let map = PageMap::new(&p);
        map.plan_create(Kind::Message, "AC5", None, false).unwrap();
        map.mark_sections(Kind::Message, "AC5", &["transcript"], false)
            .unwrap();
        let row = map.get(Kind::Message, "AC5").unwrap().unwrap();
        assert!(row.section_in_flight("transcript") && !row.section_done("transcript"));
        map.mark_sections(Kind::Message, "AC5", &["transcript", "summary"], true)
            .unwrap();
        let row = map.get(Kind::Message, "AC5").unwrap().unwrap();
        assert!(row.section_done("transcript") && row.section_done("summary"));
        assert!(!row.section_in_flight("transcript"));
        assert!(map.advance_status(Kind::Message, "AC5", 2).unwrap());
        assert!(
            !map.advance_status(Kind::Message, "AC5", 1).unwrap(),
            "an older status must not win"
        );
        assert!(map.advance_status(Kind::Message, "AC5", 2).unwrap());
    }

    /// The database of `inner`, running `before_update` (once) right before the first update of a page's
    /// sections, as another worker's statement landing in between would.
    struct Interleaved {
        inner: Rc<dyn crate::platform::Sql>,
        before_update: std::cell::RefCell<Option<Box<dyn FnOnce()>>>,
    }

    impl crate::platform::Sql for Interleaved {
        fn execute(
            &self,
            statement: &str,
            params: &[Value],
        ) -> anyhow::Result<crate::platform::Rows> {
            if statement.contains("SET sections") {
                if let Some(other) = self.before_update.borrow_mut().take() {
                    other();
                }
            }
            self.inner.execute(statement, params)
        }
    }

    #[tokio::test]
    async fn two_workers_marking_different_sections_of_one_page_both_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(5));
        let mut p = platform(dir.path(), clock.clone()).await;
        let map = PageMap::new(&p);
        map.plan_create(Kind::Call, "AC6", None, false).unwrap();
        map.mark_sections(Kind::Call, "AC6", &["transcript"], false)
            .unwrap();
        let other = platform(dir.path(), clock.clone()).await;
        p.sql = Rc::new(Interleaved {
            inner: p.sql.clone(),
            before_update: std::cell::RefCell::new(Some(Box::new(move || {
                PageMap::new(&other)
                    .mark_sections(Kind::Call, "AC6", &["summary"], true)
                    .unwrap();
            }))),
        });
        let map = PageMap::new(&p);
        map.mark_sections(Kind::Call, "AC6", &["transcript"], true)
            .unwrap();
        let row = map.get(Kind::Call, "AC6").unwrap().unwrap();
        assert_eq!(row.sections, ["summary", "transcript"].map(String::from));
        // Marking again replaces a section's mark rather than adding one.
        map.mark_sections(Kind::Call, "AC6", &["summary"], false)
            .unwrap();
        let row = map.get(Kind::Call, "AC6").unwrap().unwrap();
        assert_eq!(row.sections, ["transcript", "summary~"].map(String::from));
        assert!(map
            .mark_sections(Kind::Call, "AC6", &["a,b"], true)
            .is_err());
    }
}
