//! Finding the Canvas record (customer) of a phone number or email: normalized, one Notion query for
//! every format a person may have typed, cached in SQLite (hits and misses) with a TTL, the workspace's own
//! numbers never matched.
//!
//! With `canvas_create_unknown`, a number no record has gets one ([`Canvas::create_if_unknown`]), named
//! after its OpenPhone contact ([`crate::contacts`]) or else the formatted number, `Phone` in E.164. The
//! record is created once per number however many events arrive at once, with the page map's protocol
//! ([`crate::page_map`], [`Kind::Canvas`] keyed by the E.164 number): the create is
//! claimed with one upsert before it is sent, the page id is written as soon as it is known, a claim left
//! without a page id (a create whose outcome is unknown) makes the next attempt query Notion before
//! creating, and a worker that lost the claim waits for the winner's page id.

use serde_json::{json, Value};

use crate::claims::CLAIM_IN_PROGRESS_MS;
use crate::contacts::{self, ContactError};
use crate::domain::E164;
use crate::metrics;
use crate::notion::{properties as p, Notion};
use crate::openphone::OpenPhone;
use crate::outbound::{ApiError, Service};
use crate::page_map::{Kind, PageMap};
use crate::platform::{Platform, Value as SqlValue};

/// How long a found record is trusted.
const HIT_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long "no record" is trusted (a record may be added any time).
const MISS_TTL_MS: i64 = 3600 * 1000;
/// A record the app created is trusted over a query that misses it for this long: Notion's search may not
/// list a page created moments ago. Later, a miss means someone deleted the record or changed its phone.
const FRESH_RECORD_MS: i64 = CLAIM_IN_PROGRESS_MS;
/// How long a worker that lost the race to create a number's record waits for the winner's page id.
const WAIT_FOR_CREATOR_MS: i64 = 15_000;
const POLL_MS: u64 = 250;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The SQLite cache.
    Cache,
    /// A Notion query.
    Query,
    /// Not looked up: a workspace number, no Canvas database, or not a phone number.
    Skipped,
    /// No record matched, so one was created.
    Created,
}

impl Source {
    /// Name used in `/admin/canvas/lookup`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Query => "query",
            Source::Skipped => "skipped",
            Source::Created => "created",
        }
    }
}

/// The answer of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The Canvas page, if one matches.
    pub page_id: Option<String>,
    /// How it was found.
    pub source: Source,
    /// The normalized key (E.164 or lower-case email), if the input could be normalized.
    pub normalized: Option<String>,
}

impl Lookup {
    /// Not looked up (see [`Source::Skipped`]); `normalized` if the input could be.
    fn skipped(normalized: Option<String>) -> Self {
        Self {
            page_id: None,
            source: Source::Skipped,
            normalized,
        }
    }
}

/// What a lookup matches a Canvas record by.
#[derive(Debug, Clone, Copy)]
enum By {
    /// Its `Phone`, in any format a person may have typed.
    Phone,
    /// Its `Email`.
    Email,
}

impl By {
    /// The name the cache keeps its answers under (`canvas_cache.lookup_type`).
    fn as_str(self) -> &'static str {
        match self {
            By::Phone => "phone",
            By::Email => "email",
        }
    }

    /// The Canvas property matched.
    fn property(self) -> &'static str {
        match self {
            By::Phone => "Phone",
            By::Email => "Email",
        }
    }

    /// The property's Notion type until a refused query teaches the database's own.
    fn default_type(self) -> &'static str {
        match self {
            By::Phone => "phone_number",
            By::Email => "email",
        }
    }
}

/// Why a number could not be linked to a Canvas record.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// An API failed; [`ApiError::is_transient`](crate::outbound::Failure::is_transient) says whether to try again.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Another worker is creating this number's record, or refreshing the contact index: try again shortly.
    #[error("another worker is creating this number's Canvas record; trying again shortly")]
    Busy,
    /// The app's database failed.
    #[error("database: {0:#}")]
    Database(#[from] anyhow::Error),
}

impl From<ContactError> for LinkError {
    fn from(e: ContactError) -> Self {
        match e {
            ContactError::Api(e) => LinkError::Api(e),
            ContactError::Database(e) => LinkError::Database(e),
            ContactError::Refreshing => LinkError::Busy,
        }
    }
}

/// Canvas lookups for one request.
pub struct Canvas<'a> {
    platform: &'a Platform,
    notion: &'a Notion<'a>,
    database_id: Option<&'a str>,
    own_numbers: Vec<E164>,
    /// Set when numbers without a record get one: names come from OpenPhone's contacts.
    create_with: Option<&'a OpenPhone<'a>>,
}

/// What to do once a create is claimed.
enum Prepared {
    /// Notion already has a record with the number.
    Found(String),
    /// Create one with these properties.
    Create {
        data_source: String,
        properties: Value,
    },
}

impl<'a> Canvas<'a> {
    /// Lookups in `database_id` (`None`: Canvas linking is off); `self_numbers` are never matched, nor are
    /// the workspace's OpenPhone numbers known to the database.
    pub fn new(
        platform: &'a Platform,
        notion: &'a Notion<'a>,
        database_id: Option<&'a str>,
        self_numbers: &[E164],
    ) -> Self {
        let mut own_numbers = self_numbers.to_vec();
        if let Ok(rows) = platform
            .sql
            .execute("SELECT number FROM phone_numbers", &[])
        {
            own_numbers.extend(
                rows.iter()
                    .filter_map(|r| r.str("number").ok().and_then(|n| E164::parse(n).ok())),
            );
        }
        Self {
            platform,
            notion,
            database_id,
            own_numbers,
            create_with: None,
        }
    }

    /// Creates a record for a number none matches ([`Canvas::create_if_unknown`]), named after its
    /// contact in `openphone`.
    pub fn creating_unknown(mut self, openphone: &'a OpenPhone<'a>) -> Self {
        self.create_with = Some(openphone);
        self
    }

    /// Whether `number` is one of the workspace's own.
    pub fn is_own_number(&self, number: &E164) -> bool {
        self.own_numbers.contains(number)
    }

    /// The Canvas record of a phone number.
    pub async fn by_phone(&self, raw: &str) -> Result<Lookup, ApiError> {
        let Ok(number) = E164::parse(raw) else {
            return Ok(Lookup::skipped(None));
        };
        if self.database_id.is_none() || self.is_own_number(&number) {
            return Ok(Lookup::skipped(Some(number.as_str().to_owned())));
        }
        let formats = phone_formats(&number);
        self.lookup(By::Phone, number.as_str(), &formats).await
    }

    /// The Canvas record of an email address.
    pub async fn by_email(&self, raw: &str) -> Result<Lookup, ApiError> {
        let email = raw.trim().to_lowercase();
        if !email.contains('@') || email.len() > 200 {
            return Ok(Lookup::skipped(None));
        }
        if self.database_id.is_none() {
            return Ok(Lookup::skipped(Some(email)));
        }
        self.lookup(By::Email, &email, std::slice::from_ref(&email))
            .await
    }

    /// The record whose `by` property is one of `values`, normalized to `key`: from the cache, else
    /// from Notion.
    async fn lookup(&self, by: By, key: &str, values: &[String]) -> Result<Lookup, ApiError> {
        let now = self.platform.clock.now_ms();
        let normalized = Some(key.to_owned());
        let cached = self.platform.sql.execute(
            "UPDATE canvas_cache SET hit_count = hit_count + 1, last_used_at = ?3
             WHERE lookup_type = ?1 AND lookup_key = ?2 AND expires_at > ?3
             RETURNING canvas_id",
            &[by.as_str().into(), key.into(), now.into()],
        );
        if let Ok(rows) = cached {
            if let Some(row) = rows.first() {
                metrics::count(self.platform, "canvas.hit", 1);
                return Ok(Lookup {
                    page_id: row.opt_str("canvas_id").ok().flatten().map(String::from),
                    source: Source::Cache,
                    normalized,
                });
            }
        }
        metrics::count(self.platform, "canvas.miss", 1);
        let page_id = self.query(by, key, values).await?;
        Ok(Lookup {
            page_id,
            source: Source::Query,
            normalized,
        })
    }

    /// Asks Notion for the record whose `by` property equals one of `values`, and caches the answer
    /// under `key`.
    async fn query(
        &self,
        by: By,
        key: &str,
        values: &[String],
    ) -> Result<Option<String>, ApiError> {
        let property = by.property();
        let database_id = self
            .database_id
            .expect("callers check that Canvas linking is on");
        let data_source = self.notion.data_source_id(database_id).await?;
        let filter_type = self.property_type(&data_source, property, by.default_type());
        let filter = or_filter(property, &filter_type, values);
        let found = match self.notion.query(&data_source, &filter, 1, None).await {
            Ok(page) => page,
            // The property's type differs from what we assumed: learn it once, then ask again.
            Err(ApiError::Refused { status: 400, .. }) => {
                let actual = self.learn_property_type(&data_source, property).await?;
                let filter = or_filter(property, &actual, values);
                self.notion.query(&data_source, &filter, 1, None).await?
            }
            Err(e) => return Err(e),
        };
        let page_id = found
            .results
            .first()
            .and_then(|p| p["id"].as_str())
            .map(String::from);
        self.remember(by, key, page_id.as_deref());
        Ok(page_id)
    }

    /// Records that the Canvas record `page_id` has `number`, so the number's next lookup finds it without
    /// asking Notion (the watch over the Canvas saw the record appear or gain the number).
    pub fn learn_record(&self, number: &E164, page_id: &str) {
        self.remember(By::Phone, number.as_str(), Some(page_id));
    }

    /// Caches a lookup's answer (a hit for a day, a miss for an hour).
    fn remember(&self, by: By, key: &str, page_id: Option<&str>) {
        let now = self.platform.clock.now_ms();
        let ttl = if page_id.is_some() {
            HIT_TTL_MS
        } else {
            MISS_TTL_MS
        };
        let stored = self.platform.sql.execute(
            "INSERT INTO canvas_cache (lookup_type, lookup_key, canvas_id, cached_at, expires_at, hit_count, last_used_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?4)
             ON CONFLICT (lookup_type, lookup_key) DO UPDATE SET canvas_id = excluded.canvas_id,
                 cached_at = excluded.cached_at, expires_at = excluded.expires_at, last_used_at = excluded.last_used_at",
            &[by.as_str().into(), key.into(), SqlValue::from(page_id), now.into(), (now + ttl).into()],
        );
        if let Err(e) = stored {
            tracing::warn!(error = %format!("{e:#}"), "could not cache a Canvas lookup");
        }
    }

    /// The Canvas record of a phone number, created when none matches and creating is on
    /// ([`Canvas::creating_unknown`]).
    pub async fn link_phone(&self, raw: &str) -> Result<Lookup, LinkError> {
        let found = self.by_phone(raw).await?;
        self.create_if_unknown(found).await
    }

    /// After `miss`, a [`Canvas::by_phone`] that found nothing: the record created for its number, when
    /// creating is on. Workspace numbers, short codes and anything that is not a phone number were skipped
    /// by the lookup and never get one.
    pub async fn create_if_unknown(&self, miss: Lookup) -> Result<Lookup, LinkError> {
        let (Some(openphone), None, Source::Cache | Source::Query) =
            (self.create_with, &miss.page_id, miss.source)
        else {
            return Ok(miss);
        };
        let Some(number) = miss.normalized.as_deref().and_then(|n| E164::parse(n).ok()) else {
            return Ok(miss);
        };
        let deadline = self.platform.clock.now_ms() + WAIT_FOR_CREATOR_MS;
        loop {
            if let Some(fresh) = self.claim(&number)? {
                // A cached miss may be an hour old, and a claim taken over from a worker that died may
                // have landed: Notion is asked once more before creating in either case.
                let ask_first = !fresh || miss.source == Source::Cache;
                return self.create(openphone, &number, ask_first).await;
            }
            let now = self.platform.clock.now_ms();
            if let Some((page_id, recorded_at)) =
                self.map().recorded(Kind::Canvas, number.as_str())?
            {
                if recorded_at < now - FRESH_RECORD_MS {
                    // Long enough ago for Notion's search to list it, so if a query misses it now,
                    // someone deleted the record or changed its phone in Notion. That choice stands: no
                    // link, and no new record. A cached miss may predate the record (a worker stopped
                    // between recording it and caching it): Notion is asked.
                    if miss.source == Source::Cache {
                        let formats = phone_formats(&number);
                        let page_id = self.query(By::Phone, number.as_str(), &formats).await?;
                        return Ok(Lookup {
                            page_id,
                            source: Source::Query,
                            normalized: miss.normalized,
                        });
                    }
                    return Ok(miss);
                }
                self.remember(By::Phone, number.as_str(), Some(&page_id));
                return Ok(Lookup {
                    page_id: Some(page_id),
                    source: Source::Cache,
                    normalized: miss.normalized,
                });
            }
            if now >= deadline {
                return Err(LinkError::Busy);
            }
            self.platform.clock.sleep_ms(POLL_MS).await;
        }
    }

    /// The page map, which holds the records the app created (kind `canvas`).
    fn map(&self) -> PageMap<'a> {
        PageMap::new(self.platform)
    }

    /// Claims the create of `number`'s record (the page map's claim): `Some(fresh)` when this worker
    /// creates it, `fresh` when no earlier attempt exists (so none can have landed); `None` when another
    /// worker holds the claim or the record exists.
    fn claim(&self, number: &E164) -> anyhow::Result<Option<bool>> {
        self.map().claim_create(Kind::Canvas, number.as_str(), None)
    }

    /// Ends the claim with the page id (the first one recorded stays); from now on every lookup of the
    /// number finds it. Returns the number's record.
    fn record_page(&self, number: &E164, page_id: &str) -> anyhow::Result<String> {
        let recorded = self
            .map()
            .record_page(Kind::Canvas, number.as_str(), page_id)?;
        self.remember(By::Phone, number.as_str(), Some(&recorded));
        Ok(recorded)
    }

    /// Drops the claim of a create that certainly did not land.
    fn release(&self, number: &E164) -> anyhow::Result<()> {
        self.map().release_claim(Kind::Canvas, number.as_str())
    }

    /// Creates `number`'s record under this worker's claim.
    async fn create(
        &self,
        openphone: &OpenPhone<'_>,
        number: &E164,
        ask_first: bool,
    ) -> Result<Lookup, LinkError> {
        let normalized = Some(number.as_str().to_owned());
        let (data_source, properties) = match self.prepare(openphone, number, ask_first).await {
            Ok(Prepared::Found(page_id)) => {
                let page_id = self.record_page(number, &page_id)?;
                return Ok(Lookup {
                    page_id: Some(page_id),
                    source: Source::Query,
                    normalized,
                });
            }
            Ok(Prepared::Create {
                data_source,
                properties,
            }) => (data_source, properties),
            Err(e) => {
                // Nothing was sent to Notion: the next attempt may create without asking first.
                self.release(number)?;
                return Err(e);
            }
        };
        match self
            .notion
            .create_page(&data_source, &properties, None, &[])
            .await
        {
            Ok(page_id) => {
                let page_id = self.record_page(number, &page_id)?;
                metrics::count(self.platform, "canvas.created", 1);
                tracing::info!(page_id = %page_id, "Canvas record created for a new number");
                Ok(Lookup {
                    page_id: Some(page_id),
                    source: Source::Created,
                    normalized,
                })
            }
            Err(e @ (ApiError::Refused { .. } | ApiError::RateLimited { .. })) => {
                self.release(number)?;
                Err(e.into())
            }
            // The create may have landed: the claim stays, so the next attempt asks Notion first.
            Err(e) => Err(e.into()),
        }
    }

    /// Everything before the create: Notion asked first when needed, the contact's name, the database's
    /// title property and the type of its `Phone`.
    async fn prepare(
        &self,
        openphone: &OpenPhone<'_>,
        number: &E164,
        ask_first: bool,
    ) -> Result<Prepared, LinkError> {
        if ask_first {
            let formats = phone_formats(number);
            if let Some(page_id) = self.query(By::Phone, number.as_str(), &formats).await? {
                return Ok(Prepared::Found(page_id));
            }
        }
        let title = contacts::lookup(self.platform, openphone, number)
            .await?
            .and_then(|contact| contact.title())
            .unwrap_or_else(|| number.formatted());
        let database_id = self
            .database_id
            .expect("lookups skip numbers when Canvas linking is off");
        let data_source = self.notion.data_source_id(database_id).await?;
        let schema = self.notion.data_source(&data_source).await?;
        let refused = |detail: &str| ApiError::Refused {
            service: Service::Notion,
            status: 400,
            detail: detail.to_owned(),
        };
        let title_property = schema["properties"]
            .as_object()
            .and_then(|properties| properties.iter().find(|(_, p)| p["type"] == "title"))
            .map(|(name, _)| name.clone())
            .ok_or_else(|| refused("the Canvas database has no title property"))?;
        let phone = match schema["properties"]["Phone"]["type"].as_str() {
            Some("phone_number") => p::phone_number(Some(number.as_str())),
            Some("rich_text") => p::rich_text(number.as_str()),
            _ => {
                return Err(refused(
                    "the Canvas database has no Phone property of type phone_number or text",
                )
                .into())
            }
        };
        let properties = json!({ title_property: p::title(&title), "Phone": phone });
        Ok(Prepared::Create {
            data_source,
            properties,
        })
    }

    fn type_key(data_source: &str, property: &str) -> String {
        format!("notion:property-type:{data_source}:{property}")
    }

    fn property_type(&self, data_source: &str, property: &str, default: &str) -> String {
        self.platform
            .kv
            .get(&Self::type_key(data_source, property))
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_else(|| default.to_owned())
    }

    async fn learn_property_type(
        &self,
        data_source: &str,
        property: &str,
    ) -> Result<String, ApiError> {
        let schema = self.notion.data_source(data_source).await?;
        let kind = schema["properties"][property]["type"]
            .as_str()
            .ok_or_else(|| ApiError::Refused {
                service: crate::outbound::Service::Notion,
                status: 400,
                detail: format!("the Canvas database has no property named {property:?}"),
            })?
            .to_owned();
        if let Err(e) = self
            .platform
            .kv
            .set(&Self::type_key(data_source, property), kind.as_bytes())
        {
            tracing::warn!(error = %format!("{e:#}"), "could not remember a property type");
        }
        Ok(kind)
    }
}

/// The ways a person may have typed `number` into the Canvas.
pub fn phone_formats(number: &E164) -> Vec<String> {
    let mut formats = vec![number.as_str().to_owned(), number.digits().to_owned()];
    if let Some(n) = number.nanp_national() {
        let (a, b, c) = (&n[..3], &n[3..6], &n[6..]);
        formats.extend([
            n.to_owned(),
            format!("{a}-{b}-{c}"),
            format!("{a}.{b}.{c}"),
            format!("({a}) {b}-{c}"),
            format!("{a} {b} {c}"),
            format!("+1 {a}-{b}-{c}"),
            format!("+1 ({a}) {b}-{c}"),
            format!("+1 {a} {b} {c}"),
            format!("1-{a}-{b}-{c}"),
        ]);
    }
    formats
}

fn or_filter(property: &str, filter_type: &str, values: &[String]) -> Value {
    let conditions: Vec<Value> = values
        .iter()
        .map(|v| json!({ "property": property, filter_type: { "equals": v } }))
        .collect();
    json!({ "or": conditions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn north_american_numbers_get_every_common_format() {
        let formats = phone_formats(&E164::parse("+13214436893").unwrap());
        for expected in [
            "+13214436893",
            "13214436893",
            "3214436893",
            "321-443-6893",
            "321.443.6893",
            "(321) 443-6893",
        ] {
            assert!(
                formats.iter().any(|f| f == expected),
                "{expected} missing from {formats:?}"
            );
        }
        let uk = phone_formats(&E164::parse("+442071838750").unwrap());
        assert_eq!(uk, vec!["+442071838750", "442071838750"]);
    }

    #[test]
    fn one_or_filter_covers_every_format() {
        let filter = or_filter("Phone", "phone_number", &["+1".into(), "1".into()]);
        assert_eq!(filter["or"].as_array().unwrap().len(), 2);
        assert_eq!(filter["or"][0]["phone_number"]["equals"], "+1");
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod claim_tests {
    use std::rc::Rc;

    use super::*;
    use crate::configuration::{NotionConfig, Secret};
    use crate::platform::native::ManualClock;
    use crate::testing::{platform_in, T0};

    fn config() -> NotionConfig {
        NotionConfig {
            api_key: Secret::new("unused"),
            api_base: "http://127.0.0.1:9".into(),
            calls_database_id: "calls".into(),
            messages_database_id: "messages".into(),
            canvas_database_id: Some("canvas".into()),
        }
    }

    fn claim_in(dir: &std::path::Path, clock: Rc<ManualClock>, number: &E164) -> bool {
        let platform = platform_in(dir, clock);
        let config = config();
        let notion = Notion::new(&platform, &config);
        let canvas = Canvas::new(&platform, &notion, Some("canvas"), &[]);
        canvas.claim(number).unwrap().is_some()
    }

    #[test]
    fn of_twenty_workers_claiming_one_number_at_once_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(T0));
        futures::executor::block_on(crate::migrations::ensure_checked(&platform_in(
            dir.path(),
            clock,
        )))
        .unwrap();
        let number = E164::parse("+15555550123").unwrap();
        let wins = std::thread::scope(|s| {
            let workers: Vec<_> = (0..20)
                .map(|i| {
                    let (dir, number) = (dir.path(), &number);
                    s.spawn(move || claim_in(dir, Rc::new(ManualClock::at(T0 + i)), number))
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .filter(|won| *won)
                .count()
        });
        assert_eq!(wins, 1);
    }

    #[test]
    fn a_claim_is_taken_over_only_when_its_worker_is_gone_and_never_once_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(T0));
        let platform = platform_in(dir.path(), clock.clone());
        futures::executor::block_on(crate::migrations::ensure_checked(&platform)).unwrap();
        let config = config();
        let notion = Notion::new(&platform, &config);
        let canvas = Canvas::new(&platform, &notion, Some("canvas"), &[]);
        let number = E164::parse("+15555550123").unwrap();
        assert_eq!(canvas.claim(&number).unwrap(), Some(true));
        clock.advance_ms(CLAIM_IN_PROGRESS_MS - 1);
        assert_eq!(canvas.claim(&number).unwrap(), None);
        clock.advance_ms(2);
        assert!(
            canvas.claim(&number).unwrap() == Some(false),
            "a dead worker's claim"
        );
        canvas.record_page(&number, "page-1").unwrap();
        clock.advance_ms(10 * CLAIM_IN_PROGRESS_MS);
        assert_eq!(canvas.claim(&number).unwrap(), None);
        assert_eq!(
            canvas
                .map()
                .recorded(Kind::Canvas, number.as_str())
                .unwrap()
                .map(|(page, _)| page)
                .as_deref(),
            Some("page-1")
        );
    }
}
