//! History that links itself. Every call and message page keeps its other parties' numbers in
//! `page_numbers`, each with the Canvas record it is linked to (none while no record has the number). When
//! a Canvas record appears or gains a phone number after calls and texts with that number happened (a
//! salesperson adds a new customer), the tick links those past pages to it: it reads the Canvas records
//! edited since it last looked (`last_edited_time`, oldest first, one query per tick), and sets the
//! relation of each page whose number is still unlinked, from the page map, without reading the pages.
//! A record's numbers are those typed into its `Phone` and those of the OpenPhone contacts that have its
//! `Email` (from the contacts index, [`crate::contacts::numbers_of_email`]), so a record known only by email
//! links that person's past pages too.
//!
//! Bounded: at most [`MAX_UPDATES`] page updates per tick; the rest waits for the next tick, which asks for
//! the same records again (a number already linked costs nothing). A page's relation is every record its
//! numbers are linked to, so a group text links each participant's record.

use serde_json::{json, Map, Value};

use super::map::Kind;
use super::{PageSettings, WriteError, Writer};
use crate::configuration::Settings;
use crate::domain::E164;
use crate::jobs::JobClaim;
use crate::notion::properties as p;
use crate::notion::Notion;
use crate::openphone::OpenPhone;
use crate::outbound::{ApiError, Failure};
use crate::platform::{Platform, Value as SqlValue};

/// Canvas records read per tick.
const PAGE_SIZE: u32 = 50;
/// Page updates per tick, at most: with the query, a tick spends at most this plus one Notion request.
pub const MAX_UPDATES: u32 = 25;
/// A watch claimed longer ago than this belongs to a dead instance.
const STALE_MS: i64 = 10 * 60_000;
/// The `job_claims` name of the watch.
const JOB: &str = "canvas-backlink";

/// The Canvas relation of a page after its numbers were recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linked {
    /// Every record the page's numbers are linked to, in the order they were linked.
    pub relation: Vec<String>,
    /// Whether this recording added a record to the relation.
    pub grew: bool,
}

/// Records the other parties `numbers` of the page of `kind`/`openphone_id` (those that are phone numbers),
/// with the records `found` for some of them (number, Canvas page); a number's earlier link is kept when
/// none is found now.
pub fn record_numbers(
    platform: &Platform,
    kind: Kind,
    openphone_id: &str,
    numbers: &[String],
    found: &[(&str, &str)],
) -> anyhow::Result<Linked> {
    let before = relation(platform, kind, openphone_id)?;
    let rows: Vec<Value> = numbers
        .iter()
        .filter_map(|n| E164::parse(n).ok())
        .map(|number| {
            let canvas = found
                .iter()
                .find(|(n, _)| E164::parse(n).ok().as_ref() == Some(&number))
                .map(|(_, page)| *page);
            json!({ "number": number.as_str(), "canvas": canvas })
        })
        .collect();
    if !rows.is_empty() {
        // One statement for all numbers; `WHERE true` lets SQLite parse the upsert after a SELECT.
        platform.sql.execute(
            "INSERT INTO page_numbers (kind, openphone_id, number, canvas_page_id)
             SELECT ?1, ?2, json_extract(value, '$.number'), json_extract(value, '$.canvas')
             FROM json_each(?3) WHERE true
             ON CONFLICT (kind, openphone_id, number) DO UPDATE
                 SET canvas_page_id = COALESCE(excluded.canvas_page_id, page_numbers.canvas_page_id)",
            &[
                kind.as_str().into(),
                openphone_id.into(),
                Value::Array(rows).to_string().into(),
            ],
        )?;
    }
    let after = relation(platform, kind, openphone_id)?;
    Ok(Linked {
        grew: after.iter().any(|page| !before.contains(page)),
        relation: after,
    })
}

/// The records the numbers of the page of `kind`/`openphone_id` are linked to, each once.
pub fn relation(
    platform: &Platform,
    kind: Kind,
    openphone_id: &str,
) -> anyhow::Result<Vec<String>> {
    let rows = platform.sql.execute(
        "SELECT canvas_page_id FROM page_numbers
         WHERE kind = ?1 AND openphone_id = ?2 AND canvas_page_id IS NOT NULL
         GROUP BY canvas_page_id ORDER BY MIN(rowid)",
        &[kind.as_str().into(), openphone_id.into()],
    )?;
    rows.iter()
        .map(|row| Ok(row.str("canvas_page_id")?.to_owned()))
        .collect()
}

/// What one look at the Canvas did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BacklinkReport {
    /// Canvas records read.
    pub records: u32,
    /// Past pages linked to a record.
    pub linked: u32,
    /// Page updates that failed (retried next tick when the failure is transient).
    pub failed: u32,
}

/// Links past pages to the Canvas records edited since the last look, with the app's configuration (one
/// tick's worth); `None` when there is no Canvas database, another instance is looking, or no record was
/// read.
pub async fn run(
    platform: &Platform,
    settings: &Settings,
) -> anyhow::Result<Option<BacklinkReport>> {
    let settings = PageSettings::load(settings)?;
    let Some(canvas_database) = settings.notion.canvas_database_id.as_deref() else {
        return Ok(None);
    };
    let Some(claim) = JobClaim::try_claim(platform, JOB, 0, STALE_MS)? else {
        return Ok(None);
    };
    let notion = Notion::new(platform, &settings.notion);
    let openphone = OpenPhone::new(platform, &settings.openphone);
    let writer = Writer::new(platform, &notion, &openphone, &settings);
    let report = run_with(platform, &notion, &writer, canvas_database).await?;
    claim.finish()?;
    Ok((report.records > 0).then_some(report))
}

/// Where the watch has got to.
#[derive(Debug, Default)]
struct Watch {
    edited_since: Option<String>,
    cursor: Option<String>,
}

fn load_watch(platform: &Platform) -> anyhow::Result<Watch> {
    let rows = platform.sql.execute(
        "SELECT edited_since, cursor FROM canvas_watch WHERE id = 1",
        &[],
    )?;
    rows.first()
        .map(|row| {
            Ok(Watch {
                edited_since: row.opt_str("edited_since")?.map(String::from),
                cursor: row.opt_str("cursor")?.map(String::from),
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

fn save_watch(platform: &Platform, watch: &Watch) -> anyhow::Result<()> {
    platform.sql.execute(
        "INSERT INTO canvas_watch (id, edited_since, cursor, updated_at) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET edited_since = excluded.edited_since, cursor = excluded.cursor,
             updated_at = excluded.updated_at",
        &[
            SqlValue::from(watch.edited_since.clone()),
            SqlValue::from(watch.cursor.clone()),
            platform.clock.now_ms().into(),
        ],
    )?;
    Ok(())
}

/// The text of a record's property `name` when it is a `phone_number`, `email` or text property (a
/// workspace may have typed either column as text).
fn property_text(record: &Value, name: &str) -> String {
    let property = &record["properties"][name];
    match property["type"].as_str() {
        Some(kind @ ("phone_number" | "email")) => {
            property[kind].as_str().unwrap_or_default().to_owned()
        }
        Some("rich_text") => property["rich_text"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["plain_text"].as_str().or(i["text"]["content"].as_str()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// The phone numbers a Canvas record's `Phone` holds (several may be typed into one, separated by commas,
/// semicolons, slashes or new lines).
fn record_numbers_of(record: &Value) -> Vec<E164> {
    let mut numbers: Vec<E164> = property_text(record, "Phone")
        .split([',', ';', '/', '\n'])
        .filter_map(|piece| E164::parse(piece).ok())
        .collect();
    numbers.dedup();
    numbers
}

/// The numbers of a Canvas record: its `Phone` numbers, then those the contacts index maps its `Email` to
/// (several addresses may be typed into one), each once.
fn numbers_of(platform: &Platform, record: &Value) -> anyhow::Result<Vec<E164>> {
    let mut numbers = record_numbers_of(record);
    for email in property_text(record, "Email").split([',', ';', ' ', '\n']) {
        for number in crate::contacts::numbers_of_email(platform, email)? {
            if !numbers.contains(&number) {
                numbers.push(number);
            }
        }
    }
    Ok(numbers)
}

/// Pages of `number` not linked to any record yet, at most `limit`.
fn unlinked_pages(
    platform: &Platform,
    number: &E164,
    limit: u32,
) -> anyhow::Result<Vec<(Kind, String)>> {
    let rows = platform.sql.execute(
        "SELECT kind, openphone_id FROM page_numbers
         WHERE number = ?1 AND canvas_page_id IS NULL ORDER BY rowid LIMIT ?2",
        &[number.as_str().into(), limit.into()],
    )?;
    rows.iter()
        .map(|row| {
            let kind = match row.str("kind")? {
                "call" => Kind::Call,
                _ => Kind::Message,
            };
            Ok((kind, row.str("openphone_id")?.to_owned()))
        })
        .collect()
}

/// One look at the Canvas database `canvas_database` through `writer`.
pub async fn run_with(
    platform: &Platform,
    notion: &Notion<'_>,
    writer: &Writer<'_>,
    canvas_database: &str,
) -> anyhow::Result<BacklinkReport> {
    let mut report = BacklinkReport::default();
    let data_source = notion.data_source_id(canvas_database).await?;
    let mut watch = load_watch(platform)?;
    let filter = watch.edited_since.as_deref().map(|since| {
        json!({ "timestamp": "last_edited_time", "last_edited_time": { "on_or_after": since } })
    });
    let sorts = [json!({ "timestamp": "last_edited_time", "direction": "ascending" })];
    let page = match notion
        .query_sorted(
            &data_source,
            filter.as_ref(),
            &sorts,
            PAGE_SIZE,
            watch.cursor.as_deref(),
        )
        .await
    {
        // A cursor Notion no longer takes: read from the watermark again next time.
        Err(ApiError::Refused { status: 400, .. }) if watch.cursor.is_some() => {
            watch.cursor = None;
            save_watch(platform, &watch)?;
            return Ok(report);
        }
        result => result?,
    };
    let mut budget = MAX_UPDATES;
    let mut complete = true;
    let mut newest = watch.edited_since.clone();
    'records: for record in &page.results {
        let Some(record_id) = record["id"].as_str() else {
            continue;
        };
        report.records += 1;
        for number in numbers_of(platform, record)? {
            let canvas = writer.canvas();
            if canvas.is_own_number(&number) {
                continue;
            }
            // New events of the number link to it from now on, without asking Notion.
            canvas.learn_record(&number, record_id);
            for (kind, openphone_id) in unlinked_pages(platform, &number, budget + 1)? {
                if budget == 0 {
                    complete = false;
                    break 'records;
                }
                budget -= 1;
                match backlink(writer, kind, &openphone_id, &number, record_id).await {
                    Ok(true) => report.linked += 1,
                    Ok(false) => {}
                    Err(e) if e.is_transient() => {
                        report.failed += 1;
                        tracing::warn!(error = %e, "linking a past page to its Canvas record failed; next tick");
                        complete = false;
                        break 'records;
                    }
                    Err(e) => {
                        // Refused for good (the page deleted in Notion, …): not asked again.
                        report.failed += 1;
                        tracing::warn!(error = %e, "a past page could not be linked to its Canvas record");
                        record_numbers(
                            platform,
                            kind,
                            &openphone_id,
                            &[number.as_str().to_owned()],
                            &[(number.as_str(), record_id)],
                        )?;
                    }
                }
            }
        }
        if let Some(edited) = record["last_edited_time"].as_str() {
            if newest.as_deref().is_none_or(|n| n < edited) {
                newest = Some(edited.to_owned());
            }
        }
    }
    // Unfinished: the same records are read again next tick (what was linked is not written twice).
    if complete {
        match page.next_cursor {
            Some(next) => watch.cursor = Some(next),
            None => {
                watch.cursor = None;
                watch.edited_since = newest;
            }
        }
        save_watch(platform, &watch)?;
    }
    Ok(report)
}

/// Adds the Canvas record `record` of `number` to the relation of the page of `kind`/`openphone_id`:
/// `Ok(true)` when a page was updated, `Ok(false)` when there is no page yet (its own write will look
/// the record up).
async fn backlink(
    writer: &Writer<'_>,
    kind: Kind,
    openphone_id: &str,
    number: &E164,
    record: &str,
) -> Result<bool, WriteError> {
    let Some(row) = writer.map.get(kind, openphone_id)? else {
        return Ok(false);
    };
    let Some(page_id) = row.page_id else {
        return Ok(false);
    };
    if writer.map.is_gone(kind, openphone_id)? {
        return Err(WriteError::PageGone { page_id });
    }
    let mut relation = relation(writer.platform, kind, openphone_id)?;
    if !relation.iter().any(|r| r == record) {
        relation.push(record.to_owned());
    }
    let ids: Vec<&str> = relation.iter().map(String::as_str).collect();
    let mut props = Map::new();
    props.insert("Canvas".into(), p::relation(&ids));
    writer
        .update_page(kind, openphone_id, &page_id, props)
        .await?;
    // Only once Notion has it: a failed update leaves the number unlinked, for the next tick.
    record_numbers(
        writer.platform,
        kind,
        openphone_id,
        &[number.as_str().to_owned()],
        &[(number.as_str(), record)],
    )?;
    if row.canvas_page_id.is_none() {
        writer.map.set_canvas(kind, openphone_id, record)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_may_hold_several_numbers_in_any_format() {
        let record = json!({ "properties": { "Phone": { "type": "rich_text", "rich_text": [
            { "plain_text": "(555) 555-0123, +1 555 555 0124; n/a" }
        ] } } });
        let numbers: Vec<String> = record_numbers_of(&record)
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        assert_eq!(numbers, ["+15555550123", "+15555550124"]);
        let none =
            json!({ "properties": { "Phone": { "type": "phone_number", "phone_number": null } } });
        assert!(record_numbers_of(&none).is_empty());
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod store_tests {
    use super::*;
    use crate::testing::migrated_platform;

    #[tokio::test]
    async fn a_group_texts_relation_is_every_participants_record_and_links_stick() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let numbers = vec!["+15555550123".to_owned(), "+15555550124".to_owned()];
        let first = record_numbers(&platform, Kind::Message, "AC1", &numbers, &[]).unwrap();
        assert_eq!(first, Linked::default());
        let a = record_numbers(
            &platform,
            Kind::Message,
            "AC1",
            &numbers[..1],
            &[("+15555550123", "canvas-a")],
        )
        .unwrap();
        assert!(a.grew);
        let b = record_numbers(
            &platform,
            Kind::Message,
            "AC1",
            &numbers,
            &[("+15555550124", "canvas-b")],
        )
        .unwrap();
        assert_eq!(b.relation, ["canvas-a", "canvas-b"], "a's link is kept");
        assert!(b.grew);
        let again = record_numbers(&platform, Kind::Message, "AC1", &numbers, &[]).unwrap();
        assert!(!again.grew);
        assert_eq!(
            unlinked_pages(&platform, &E164::parse("+15555550124").unwrap(), 10).unwrap(),
            []
        );
    }

    #[tokio::test]
    async fn a_records_email_brings_the_numbers_of_that_contact() {
        let (_dir, platform, _clock) = migrated_platform().await;
        platform
            .sql
            .execute(
                "INSERT INTO contact_emails (email, phone, contact_id, refreshed_at) VALUES
                     ('carla@example.com', '+15555550177', 'CT1', 1),
                     ('carla@example.com', '+15555550123', 'CT1', 1),
                     ('other@example.com', '+15555550150', 'CT2', 1)",
                &[],
            )
            .unwrap();
        let numbers = |record: Value| -> Vec<String> {
            numbers_of(&platform, &record)
                .unwrap()
                .iter()
                .map(|n| n.as_str().to_owned())
                .collect()
        };
        let email_only = json!({ "properties": {
            "Phone": { "type": "phone_number", "phone_number": null },
            "Email": { "type": "email", "email": "Carla@Example.com" },
        } });
        assert_eq!(numbers(email_only), ["+15555550123", "+15555550177"]);
        let both = json!({ "properties": {
            "Phone": { "type": "phone_number", "phone_number": "(555) 555-0177" },
            "Email": { "type": "email", "email": "carla@example.com" },
        } });
        assert_eq!(numbers(both), ["+15555550177", "+15555550123"], "each once");
        let unknown = json!({ "properties": {
            "Email": { "type": "email", "email": "stranger@example.com" },
        } });
        assert!(numbers(unknown).is_empty());
    }
}
