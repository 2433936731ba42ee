//! What `/stats` and the status page report, read from the app's tables in a handful of queries: the
//! queue, the dead letters, each number's sync, the Canvas cache, today's API use against the budgets,
//! recordings, and the current or last periodic run.

use serde::Serialize;

use crate::metrics;
use crate::outbound::Service;
use crate::platform::Platform;

/// Events per queue state.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct QueueDepth {
    /// Waiting (including retries not yet due).
    pub pending: i64,
    /// Being processed.
    pub leased: i64,
    /// Processed.
    pub done: i64,
    /// Stored but not processed (types the sync ignores).
    pub skipped: i64,
    /// Gave up; replayable.
    pub dead: i64,
}

/// A dead event, for the status page.
#[derive(Debug, Serialize, PartialEq)]
pub struct DeadLetter {
    /// Event id.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error.
    pub last_error: Option<String>,
}

/// One workspace number's sync.
#[derive(Debug, Serialize, PartialEq)]
pub struct NumberSync {
    /// `PN…`.
    pub id: String,
    /// E.164.
    pub number: String,
    /// Everything created before this (ISO-8601) is synced.
    pub cursor: Option<String>,
    /// When its last sync finished.
    pub last_sync_finished_at: Option<String>,
    /// Its last sync error.
    pub last_sync_error: Option<String>,
}

/// Requests to one API today.
#[derive(Debug, Serialize, PartialEq)]
pub struct ApiUse {
    /// Requests sent today (UTC).
    pub requests_today: i64,
    /// Requests that failed today.
    pub errors_today: i64,
    /// The shared budget, requests per second (none for object storage).
    pub budget_per_second: Option<i64>,
}

/// The periodic run shown on `/stats`.
#[derive(Debug, Serialize, PartialEq)]
pub struct Run {
    /// Run id.
    pub id: String,
    /// `sync`, `tick`, …
    pub kind: String,
    /// ISO-8601.
    pub started_at: String,
    /// ISO-8601; `None` while running.
    pub finished_at: Option<String>,
    /// Numbers synced.
    pub numbers_done: i64,
    /// API requests made.
    pub requests: i64,
    /// Errors.
    pub errors: i64,
}

/// Everything `/stats` reports.
#[derive(Debug, Serialize, PartialEq)]
pub struct Stats {
    /// Queue depth by state.
    pub queue: QueueDepth,
    /// Dead events (DLQ size).
    pub dlq_size: i64,
    /// The most recent dead events.
    pub dlq_recent: Vec<DeadLetter>,
    /// Age in seconds of the oldest event waiting.
    pub oldest_pending_age_seconds: Option<i64>,
    /// Each workspace number's cursor and last sync.
    pub numbers: Vec<NumberSync>,
    /// Canvas lookups answered from the cache today, as a fraction of all lookups (`None`: no lookup).
    pub canvas_cache_hit_rate: Option<f64>,
    /// Canvas lookups today: cache hits and Notion queries.
    pub canvas_lookups_today: (i64, i64),
    /// API use today, by API.
    pub api: std::collections::BTreeMap<&'static str, ApiUse>,
    /// Errors today across APIs.
    pub errors_today: i64,
    /// Recordings and voicemails stored, and those OpenPhone no longer has.
    pub media: MediaCounts,
    /// Calls still waiting for a recording, transcript, summary or voicemail, and those given up on.
    pub pending_work: PendingCounts,
    /// Pages written without their Canvas relation because the lookup failed, waiting for a retry.
    pub canvas_relinks_waiting: i64,
    /// Pages a person deleted or trashed in Notion, which the sync leaves alone.
    pub pages_deleted_in_notion: i64,
    /// The current or last periodic sync.
    pub last_run: Option<Run>,
    /// Object storage as the last housekeeping counted it (object count and bytes per prefix).
    pub storage: Option<serde_json::Value>,
    /// APIs that refuse our credentials: the drain is paused until a probe gets through.
    pub breakers: Vec<crate::drain::breaker::OpenBreaker>,
}

/// Media copied to object storage.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct MediaCounts {
    /// Objects stored.
    pub stored: i64,
    /// Bytes stored.
    pub bytes: i64,
    /// Media that was gone (404) when we went to copy it.
    pub gone: i64,
}

/// Work waiting on OpenPhone.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct PendingCounts {
    /// Calls still being re-checked.
    pub waiting: i64,
    /// Calls given up on after 7 days.
    pub gave_up: i64,
}

fn iso(ms: Option<i64>) -> Option<String> {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Reads the stats.
pub fn collect(platform: &Platform) -> anyhow::Result<Stats> {
    let sql = &*platform.sql;
    let now = platform.clock.now_ms();

    let mut queue = QueueDepth::default();
    for row in sql
        .execute(
            "SELECT state, COUNT(*) AS n FROM events GROUP BY state",
            &[],
        )?
        .iter()
    {
        let n = row.i64("n")?;
        match row.str("state")? {
            "pending" => queue.pending = n,
            "leased" => queue.leased = n,
            "done" => queue.done = n,
            "skipped" => queue.skipped = n,
            "dead" => queue.dead = n,
            _ => {}
        }
    }
    let oldest = sql.execute(
        "SELECT MIN(received_at) AS oldest FROM events WHERE state IN ('pending', 'leased')",
        &[],
    )?;
    let oldest_pending_age_seconds = oldest
        .first()
        .and_then(|r| r.opt_i64("oldest").ok().flatten())
        .map(|at| (now - at).max(0) / 1000);
    let dlq_recent = sql
        .execute(
            "SELECT id, type, attempts, last_error FROM events WHERE state = 'dead'
             ORDER BY updated_at DESC LIMIT 10",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(DeadLetter {
                id: r.str("id")?.to_owned(),
                event_type: r.str("type")?.to_owned(),
                attempts: r.i64("attempts")?,
                last_error: r.opt_str("last_error")?.map(String::from),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let numbers = sql
        .execute(
            "SELECT id, number, cursor_at, last_sync_finished_at, last_sync_error FROM phone_numbers
             WHERE is_active = 1 ORDER BY number",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(NumberSync {
                id: r.str("id")?.to_owned(),
                number: r.str("number")?.to_owned(),
                cursor: iso(r.opt_i64("cursor_at")?),
                last_sync_finished_at: iso(r.opt_i64("last_sync_finished_at")?),
                last_sync_error: r.opt_str("last_sync_error")?.map(String::from),
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let counters: std::collections::BTreeMap<String, i64> =
        metrics::today(platform, "")?.into_iter().collect();
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    let (hits, misses) = (counter("canvas.hit"), counter("canvas.miss"));
    let api = [
        Service::OpenPhone,
        Service::Notion,
        Service::S3,
        Service::Media,
    ]
    .into_iter()
    .map(|s| {
        let usage = ApiUse {
            requests_today: counter(&format!("requests.{}", s.name())),
            errors_today: counter(&format!("errors.{}", s.name())),
            budget_per_second: s.per_second(),
        };
        (s.name(), usage)
    })
    .collect::<std::collections::BTreeMap<_, _>>();
    let errors_today = api.values().map(|a| a.errors_today).sum();

    let media = sql.execute(
        "SELECT SUM(state = 'stored') AS stored, SUM(CASE WHEN state = 'stored' THEN COALESCE(size, 0) ELSE 0 END) AS bytes,
                SUM(state = 'gone') AS gone FROM media_objects",
        &[],
    )?;
    let media = media
        .first()
        .map(|r| -> anyhow::Result<MediaCounts> {
            Ok(MediaCounts {
                stored: r.opt_i64("stored")?.unwrap_or(0),
                bytes: r.opt_i64("bytes")?.unwrap_or(0),
                gone: r.opt_i64("gone")?.unwrap_or(0),
            })
        })
        .transpose()?
        .unwrap_or_default();
    let pending = sql.execute(
        "SELECT SUM(needs != 0 AND gave_up_at IS NULL) AS waiting, SUM(gave_up_at IS NOT NULL) AS gave_up
         FROM pending_work",
        &[],
    )?;
    let pending_work = pending
        .first()
        .map(|r| -> anyhow::Result<PendingCounts> {
            Ok(PendingCounts {
                waiting: r.opt_i64("waiting")?.unwrap_or(0),
                gave_up: r.opt_i64("gave_up")?.unwrap_or(0),
            })
        })
        .transpose()?
        .unwrap_or_default();
    let canvas_relinks_waiting = crate::pages::canvas_relink::waiting(platform)?;
    let pages_deleted_in_notion = crate::pages::map::PageMap::new(platform).gone_count()?;
    let last_run = sql
        .execute(
            "SELECT id, kind, started_at, finished_at, numbers_done, requests, errors FROM sync_runs
             WHERE kind = 'sync' ORDER BY started_at DESC LIMIT 1",
            &[],
        )?
        .first()
        .map(|r| -> anyhow::Result<Run> {
            Ok(Run {
                id: r.str("id")?.to_owned(),
                kind: r.str("kind")?.to_owned(),
                started_at: iso(Some(r.i64("started_at")?)).unwrap_or_default(),
                finished_at: iso(r.opt_i64("finished_at")?),
                numbers_done: r.i64("numbers_done")?,
                requests: r.i64("requests")?,
                errors: r.i64("errors")?,
            })
        })
        .transpose()?;

    let storage = sql
        .execute(
            "SELECT json_extract(details, '$.housekeeping.storage') AS storage FROM sync_runs
             WHERE kind = 'sync' AND json_extract(details, '$.housekeeping.storage') IS NOT NULL
             ORDER BY started_at DESC LIMIT 1",
            &[],
        )?
        .first()
        .and_then(|r| {
            r.opt_str("storage")
                .ok()
                .flatten()
                .and_then(|j| serde_json::from_str(j).ok())
        });

    let breakers = crate::drain::breaker::open_breakers(sql)?;

    Ok(Stats {
        breakers,
        dlq_size: queue.dead,
        storage,
        queue,
        dlq_recent,
        oldest_pending_age_seconds,
        numbers,
        canvas_cache_hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        canvas_lookups_today: (hits, misses),
        api,
        errors_today,
        media,
        pending_work,
        canvas_relinks_waiting,
        pages_deleted_in_notion,
        last_run,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::platform::native::{ManualClock, NativePlatformBuilder};
    use crate::platform::Clock;

    #[tokio::test]
    async fn stats_count_what_the_tables_hold() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(1_760_000_000_000));
        let platform = NativePlatformBuilder::new(dir.path())
            .clock(clock.clone())
            .build()
            .unwrap();
        crate::migrations::run(&platform, crate::migrations::MIGRATIONS)
            .await
            .unwrap();
        let empty = collect(&platform).unwrap();
        assert_eq!(empty.queue, QueueDepth::default());
        assert_eq!(empty.canvas_cache_hit_rate, None);
        assert_eq!(empty.oldest_pending_age_seconds, None);

        let now = clock.now_ms();
        for (id, state, received) in [
            ("EV1", "pending", now - 90_000),
            ("EV2", "dead", now),
            ("EV3", "done", now),
        ] {
            platform
                .sql
                .execute(
                    "INSERT INTO events (id, type, lease_key, created_at, received_at, payload, state, available_at, updated_at, last_error)
                     VALUES (?1, 'message.received', ?1, ?2, ?2, '{}', ?3, ?2, ?2, 'boom')",
                    &[id.into(), received.into(), state.into()],
                )
                .unwrap();
        }
        metrics::count(&platform, "canvas.hit", 3);
        metrics::count(&platform, "canvas.miss", 1);
        metrics::count(&platform, "requests.notion", 5);
        metrics::count(&platform, "errors.notion", 2);
        let stats = collect(&platform).unwrap();
        assert_eq!(
            (stats.queue.pending, stats.queue.dead, stats.queue.done),
            (1, 1, 1)
        );
        assert_eq!(stats.dlq_size, 1);
        assert_eq!(stats.dlq_recent[0].id, "EV2");
        assert_eq!(stats.dlq_recent[0].last_error.as_deref(), Some("boom"));
        assert_eq!(stats.oldest_pending_age_seconds, Some(90));
        assert_eq!(stats.canvas_cache_hit_rate, Some(0.75));
        assert_eq!(stats.api["notion"].requests_today, 5);
        assert_eq!(stats.api["notion"].budget_per_second, Some(3));
        assert_eq!(stats.errors_today, 2);
    }
}
