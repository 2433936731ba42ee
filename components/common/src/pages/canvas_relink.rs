//! Canvas relations that could not be set when a page was written. A Canvas problem — the database
//! unshared or renamed, a `Phone` property of an unexpected type, Notion failing the lookup — never costs
//! the call or message its page: the page is written without the relation, the miss is recorded in
//! `canvas_relinks`, and every tick retries what is due (5 minutes, doubling, at most 6 hours apart) until
//! the lookup answers. A lookup that answers "no record" ends the retry: there is nothing to link.

use serde_json::Map;

use super::map::Kind;
use super::{PageSettings, WriteError, Writer};
use crate::configuration::Settings;
use crate::notion::properties as p;
use crate::notion::Notion;
use crate::openphone::OpenPhone;
use crate::platform::Platform;

/// Due relinks handled per tick: each costs a lookup and an update.
const PER_TICK: u32 = 20;
/// The first retry after this long.
const FIRST_RETRY_MS: i64 = 5 * 60_000;
/// Retries are at most this far apart.
const LONGEST_WAIT_MS: i64 = 6 * 60 * 60_000;

/// Records that the page of `kind`/`openphone_id` lacks the Canvas record of `number` because the lookup
/// failed with `error`. Logged, never returned: the page itself was written.
pub fn record_failure(
    platform: &Platform,
    kind: Kind,
    openphone_id: &str,
    number: &str,
    error: &str,
) {
    tracing::warn!(
        openphone_id,
        error,
        "Canvas lookup failed; the page is written without its relation, retried later"
    );
    let now = platform.clock.now_ms();
    let recorded = platform.sql.execute(
        "INSERT INTO canvas_relinks (kind, openphone_id, number, last_error, next_try_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (kind, openphone_id) DO UPDATE SET last_error = excluded.last_error",
        &[
            kind.as_str().into(),
            openphone_id.into(),
            number.into(),
            error.into(),
            (now + FIRST_RETRY_MS).into(),
            now.into(),
        ],
    );
    if let Err(e) = recorded {
        tracing::error!(error = %format!("{e:#}"), "could not record the missing Canvas relation");
    }
}

/// Pages still waiting for their Canvas relation (for `/stats`).
pub fn waiting(platform: &Platform) -> anyhow::Result<i64> {
    let rows = platform
        .sql
        .execute("SELECT count(*) AS n FROM canvas_relinks", &[])?;
    rows.first().map_or(Ok(0), |r| r.i64("n"))
}

/// What a retry round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelinkReport {
    /// Relations set.
    pub linked: u32,
    /// Lookups that found no record: nothing to link.
    pub no_record: u32,
    /// Lookups or updates that failed again.
    pub failed: u32,
}

/// Retries the due relinks with the app's configuration (one tick's worth); `None` when none was due.
pub async fn retry_due(
    platform: &Platform,
    settings: &Settings,
) -> anyhow::Result<Option<RelinkReport>> {
    if due(platform)?.is_empty() {
        return Ok(None);
    }
    let settings = PageSettings::load(settings)?;
    let notion = Notion::new(platform, &settings.notion);
    let openphone = OpenPhone::new(platform, &settings.openphone);
    let writer = Writer::new(platform, &notion, &openphone, &settings);
    retry_due_with(&writer).await.map(Some)
}

fn due(platform: &Platform) -> anyhow::Result<crate::platform::Rows> {
    platform.sql.execute(
        "SELECT kind, openphone_id, number, attempts FROM canvas_relinks WHERE next_try_at <= ?1
         ORDER BY next_try_at LIMIT ?2",
        &[platform.clock.now_ms().into(), PER_TICK.into()],
    )
}

/// Retries the due relinks through `writer`.
pub async fn retry_due_with(writer: &Writer<'_>) -> anyhow::Result<RelinkReport> {
    let platform = writer.platform;
    let mut report = RelinkReport::default();
    for row in due(platform)?.iter() {
        let kind = match row.str("kind")? {
            "call" => Kind::Call,
            _ => Kind::Message,
        };
        let openphone_id = row.str("openphone_id")?;
        let attempts = row.i64("attempts")?;
        match relink(writer, kind, openphone_id, row.str("number")?).await {
            Ok(linked) => {
                if linked {
                    report.linked += 1;
                } else {
                    report.no_record += 1;
                }
                platform.sql.execute(
                    "DELETE FROM canvas_relinks WHERE kind = ?1 AND openphone_id = ?2",
                    &[kind.as_str().into(), openphone_id.into()],
                )?;
            }
            Err(e) => {
                report.failed += 1;
                let wait = (FIRST_RETRY_MS << attempts.clamp(0, 10)).min(LONGEST_WAIT_MS);
                platform.sql.execute(
                    "UPDATE canvas_relinks SET attempts = attempts + 1, next_try_at = ?3, last_error = ?4
                     WHERE kind = ?1 AND openphone_id = ?2",
                    &[
                        kind.as_str().into(),
                        openphone_id.into(),
                        (platform.clock.now_ms() + wait).into(),
                        e.to_string().into(),
                    ],
                )?;
            }
        }
    }
    Ok(report)
}

/// The Canvas record a `lookup` for the page of `kind`/`openphone_id` found; when it failed for any
/// reason but another worker creating the record, none for now, with the miss on `number` recorded for
/// the tick to retry.
pub(super) fn canvas_or_retry_later<T>(
    platform: &Platform,
    kind: Kind,
    openphone_id: &str,
    number: Option<&str>,
    lookup: Result<Option<T>, WriteError>,
) -> Result<Option<T>, WriteError> {
    match lookup {
        Err(WriteError::Busy) => Err(WriteError::Busy),
        Err(e) => {
            if let Some(number) = number {
                record_failure(platform, kind, openphone_id, number, &e.to_string());
            }
            Ok(None)
        }
        found => found,
    }
}

/// Looks up the Canvas record of `number` and sets it as the relation of the page of
/// `kind`/`openphone_id`: `Ok(true)` when linked, `Ok(false)` when there is no record (or no page).
async fn relink(
    writer: &Writer<'_>,
    kind: Kind,
    openphone_id: &str,
    number: &str,
) -> Result<bool, WriteError> {
    let Some(page_id) = writer.page_of(kind, openphone_id)? else {
        return Ok(false);
    };
    let Some(canvas) = writer.canvas().link_phone(number).await?.page_id else {
        return Ok(false);
    };
    // The relation keeps the records of the page's other numbers (a group text).
    let linked = super::canvas_backlink::record_numbers(
        writer.platform,
        kind,
        openphone_id,
        &[number.to_owned()],
        &[(number, canvas.as_str())],
    )?;
    let relation: Vec<&str> = linked.relation.iter().map(String::as_str).collect();
    let mut props = Map::new();
    props.insert("Canvas".into(), p::relation(&relation));
    writer
        .update_page(kind, openphone_id, &page_id, props)
        .await?;
    writer.map.set_canvas(kind, openphone_id, &canvas)?;
    Ok(true)
}
