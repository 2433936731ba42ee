//! A number's backlog for the periodic sync — texts already in OpenPhone that Notion lacks — and the time
//! from a webhook's `202` to its page while that backlog is being synced: shared by the `sync` suite and
//! the benchmark's latency and backfill rows.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use test_servers::notion::property_text;
use test_servers::openphone::model::{Conversation, Message};
use test_servers::OpenPhoneServer;

use crate::app::TestApp;
use crate::workload::{contact, Line, MessageScript};

/// Puts `n` incoming texts on `line` into OpenPhone, from `conversations` people (contacts 100 and up),
/// one a minute ending at `end`; returns their ids (`ACbl…`).
pub fn seed_texts(
    openphone: &OpenPhoneServer,
    line: &Line,
    n: usize,
    conversations: usize,
    end: DateTime<Utc>,
) -> Vec<String> {
    let conversations = conversations.max(1);
    let mut ids = Vec::with_capacity(n);
    let mut last = vec![None; conversations];
    for i in 0..n {
        let c = i % conversations;
        let at = end - chrono::Duration::minutes((n - i) as i64);
        let id = format!("ACbl{i:05}");
        openphone.add_message(Message::incoming(
            &id,
            &line.id,
            &contact(100 + c),
            &line.number,
            &format!("Backlog text {i}"),
            at,
        ));
        last[c] = Some(at);
        ids.push(id);
    }
    for (c, at) in last.into_iter().enumerate() {
        let Some(at) = at else { continue };
        let other = contact(100 + c);
        let mut conversation =
            Conversation::new(&format!("CNbl{c:04}"), &line.id, &[other.as_str()], at);
        conversation.updated_at = Some(at);
        conversation.last_activity_at = Some(at);
        openphone.add_conversation(conversation);
    }
    ids
}

/// How many pages of the Messages database have a `Message ID` in `ids`.
pub fn pages_among(app: &TestApp, ids: &[String]) -> usize {
    app.notion
        .pages(&app.messages_ds)
        .iter()
        .filter_map(|p| property_text(&p["properties"]["Message ID"]))
        .filter(|id| ids.contains(id))
        .count()
}

/// Starts the periodic sync of `line` (`POST /admin/sync?phone_number_id=…`); returns when it was
/// asked for. `/stats` gives a number's last finish to the second, so the sync is asked for at the start
/// of a second of its own: a sync that ends after it shows a time at or after the one returned, and one
/// that ended before it (the last `synced_after`'s) an earlier one.
pub async fn start_sync(app: &TestApp, line: &Line) -> anyhow::Result<DateTime<Utc>> {
    let now = Utc::now();
    let asked = now.trunc_subsecs(0) + chrono::Duration::seconds(1);
    tokio::time::sleep((asked - now).to_std().context("the next second is ahead")?).await;
    let response = app
        .admin_post(
            &format!("/admin/sync?phone_number_id={}", line.id),
            &serde_json::json!({}),
        )
        .await;
    ensure!(
        response.status() == 202,
        "/admin/sync answered {}",
        response.status()
    );
    let body: Value = response.json().await.context("/admin/sync answers JSON")?;
    ensure!(body["run_id"].is_string(), "/admin/sync answered {body}");
    Ok(asked)
}

/// Waits until a sync of `line` that started after `since` has completed its pass (as `/stats` shows
/// it: the number's `last_sync_finished_at`). On real Spin the cron trigger may start a periodic sync of
/// its own meanwhile; either one completing counts.
pub async fn synced_after(
    app: &TestApp,
    line: &Line,
    since: DateTime<Utc>,
    limit: Duration,
) -> anyhow::Result<()> {
    let finished = |s: &Value| {
        s["numbers"].as_array().is_some_and(|numbers| {
            numbers.iter().any(|n| {
                n["id"] == line.id.as_str()
                    && n["last_sync_finished_at"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .is_some_and(|t| t >= since)
            })
        })
    };
    let stats = app.stats_when(limit, finished).await;
    ensure!(
        finished(&stats),
        "no sync of {} completed within {limit:?}: {}",
        line.id,
        stats["numbers"]
    );
    Ok(())
}

/// One webhook text's trip: how long from its `202` to its page, and how many backlog pages the sync
/// had written by then.
#[derive(Debug, Clone, Copy)]
pub struct Trip {
    /// From the `202` to the page.
    pub latency: Duration,
    /// Backlog pages when the page appeared.
    pub backlog_pages: usize,
}

/// Delivers `n` new texts on `line` (`ACwh<tag><i>`), one every `gap`, and measures each one's
/// [`Trip`]; `backlog` are the ids the sync is writing meanwhile. Gives up on a text after `limit`.
pub async fn webhook_trips(
    app: &TestApp,
    line: &Line,
    tag: &str,
    n: usize,
    gap: Duration,
    backlog: &[String],
    limit: Duration,
) -> anyhow::Result<Vec<Trip>> {
    let mut sent: Vec<(String, Instant)> = Vec::with_capacity(n);
    let mut trips: Vec<Option<Trip>> = vec![None; n];
    let mut next_send = Instant::now();
    loop {
        if sent.len() < n && Instant::now() >= next_send {
            let id = format!("ACwh{tag}{}", sent.len());
            let event = MessageScript::new(line, &[contact(7)], &id, Utc::now(), false).event();
            let status = app.deliver(&event).await.status();
            ensure!(status == 202, "the webhook answered {status}");
            sent.push((id, Instant::now()));
            next_send = Instant::now() + gap;
        }
        let pages: Vec<String> = app
            .notion
            .pages(&app.messages_ds)
            .iter()
            .filter_map(|p| property_text(&p["properties"]["Message ID"]))
            .collect();
        let backlog_pages = pages.iter().filter(|id| backlog.contains(id)).count();
        for (i, (id, at)) in sent.iter().enumerate() {
            if trips[i].is_none() && pages.contains(id) {
                trips[i] = Some(Trip {
                    latency: at.elapsed(),
                    backlog_pages,
                });
            }
            if trips[i].is_none() && at.elapsed() > limit {
                bail!("{id} had no page {limit:?} after its 202");
            }
        }
        if sent.len() == n && trips.iter().all(Option::is_some) {
            return Ok(trips.into_iter().flatten().collect());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `p`th percentile of `latencies` (sorted here).
pub fn percentile(latencies: &mut [Duration], p: usize) -> Duration {
    latencies.sort();
    let index = (latencies.len() * p / 100).min(latencies.len().saturating_sub(1));
    latencies.get(index).copied().unwrap_or_default()
}
