//! Webhook to page: the time from a text's `202` to its page in Notion, alone and while a sync of the same
//! number writes a backlog of 90 texts (holding the number's lease), with the app keeping to its Notion
//! budget of 3 requests/s.

use std::time::Duration;

use chrono::Utc;
use e2e::app::Runner;
use e2e::backlog::{pages_among, percentile, seed_texts, start_sync, synced_after, webhook_trips};

use super::{start, Table};

/// Texts delivered per case.
const TEXTS: usize = 20;
/// Between two deliveries.
const GAP: Duration = Duration::from_millis(1000);
/// The backlog the concurrent sync writes.
const BACKLOG: usize = 90;

pub async fn webhook_to_page(table: &mut Table, runner: Runner, label: &str) -> anyhow::Result<()> {
    let limit = Duration::from_secs(180);
    let (app, line) = start(runner.clone(), false).await?;
    let mut alone: Vec<Duration> = webhook_trips(&app, &line, "a", TEXTS, GAP, &[], limit)
        .await?
        .iter()
        .map(|t| t.latency)
        .collect();
    add(table, label, "no sync running", &mut alone, None);
    drop(app);

    let (app, line) = start(runner, false).await?;
    let backlog = seed_texts(&app.openphone, &line, BACKLOG, 3, Utc::now());
    let asked = start_sync(&app, &line).await?;
    while pages_among(&app, &backlog) < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trips = webhook_trips(&app, &line, "s", TEXTS, GAP, &backlog, limit).await?;
    let during = trips.iter().filter(|t| t.backlog_pages < BACKLOG).count();
    let mut latencies: Vec<Duration> = trips.iter().map(|t| t.latency).collect();
    add(
        table,
        label,
        &format!("a sync of the same number writing {BACKLOG} texts"),
        &mut latencies,
        Some(during),
    );
    synced_after(&app, &line, asked, limit).await?;
    Ok(())
}

/// One row; `during` is how many texts were written while the sync still had backlog, when one ran.
fn add(
    table: &mut Table,
    label: &str,
    case: &str,
    latencies: &mut [Duration],
    during: Option<usize>,
) {
    let p50 = percentile(latencies, 50);
    let p99 = percentile(latencies, 99);
    let verdict = if p99 < Duration::from_secs(10) {
        "meets p99 < 10 s"
    } else {
        "MISSES p99 < 10 s"
    };
    table.add(
        format!("webhook → page ({label}), {case}"),
        format!(
            "p50 {:.2} s, p99 {:.2} s",
            p50.as_secs_f64(),
            p99.as_secs_f64()
        ),
        match during {
            Some(during) => format!(
                "{} texts, one a second; {during} of them written while the sync still had backlog; {verdict}",
                latencies.len()
            ),
            None => format!("{} texts, one a second; {verdict}", latencies.len()),
        },
    );
}
