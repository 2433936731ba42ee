//! The first sync of a number whose 140 texts predate the app, 14 of them with pages an earlier tool made
//! (`POST /admin/sync`, through the built components): Notion requests per item and items per minute,
//! with the app keeping to its own Notion budget of 3 requests/s (the servers do not rate limit).

use std::time::{Duration, Instant};

use anyhow::ensure;
use chrono::Utc;
use e2e::app::Runner;
use e2e::backlog::{pages_among, seed_texts, start_sync, synced_after};
use serde_json::json;

use super::{start, Table};

/// Texts that predate the app.
const ITEMS: usize = 140;
/// Of which an earlier tool made pages: one in ten.
const EARLIER_PAGES_EVERY: usize = 10;

pub async fn backfill(table: &mut Table, runner: Runner, label: &str) -> anyhow::Result<()> {
    let (app, line) = start(runner, false).await?;
    // An hour old: older than the app's database, so each may have a page from an earlier tool.
    let items = seed_texts(
        &app.openphone,
        &line,
        ITEMS,
        5,
        Utc::now() - chrono::Duration::hours(1),
    );
    for id in items.iter().step_by(EARLIER_PAGES_EVERY) {
        app.notion.insert_page(
            &app.messages_ds,
            json!({ "Message ID": { "title": [{ "text": { "content": id } }] } }),
        )?;
    }
    app.notion.reset_counters();
    let started = Instant::now();
    let asked = start_sync(&app, &line).await?;
    synced_after(&app, &line, asked, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    ensure!(
        pages_among(&app, &items) == ITEMS && app.notion.pages(&app.messages_ds).len() == ITEMS,
        "the backfill did not leave one page per text"
    );
    let requests = app.notion.total_requests();
    let queries = app.notion.request_count("POST /v1/data_sources/{id}/query");
    let per_item = requests as f64 / ITEMS as f64;
    let verdict = if per_item <= 1.1 {
        "meets ≤ 1.1"
    } else {
        "MISSES ≤ 1.1"
    };
    table.add(
        format!("backfill ({label}): Notion requests per item"),
        format!("{per_item:.2} ({requests} for {ITEMS})"),
        format!(
            "{ITEMS} texts older than the app, {} with earlier pages; {queries} queries (bulk lookups and Canvas); {verdict}",
            ITEMS / EARLIER_PAGES_EVERY
        ),
    );
    table.add(
        format!("backfill ({label}): items per minute"),
        format!("{:.0}", ITEMS as f64 / elapsed.as_secs_f64() * 60.0),
        format!(
            "{:.1} s from POST /admin/sync to the number's pass complete; the bound is 180 requests/min ÷ requests per item = {:.0}",
            elapsed.as_secs_f64(),
            180.0 / per_item
        ),
    );
    Ok(())
}
