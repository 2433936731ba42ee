//! What `/stats` and the status page report: the queue, the dead letters, each number's sync, the Canvas
//! cache, today's API use against the budgets, recordings, and the current or last periodic run. Each
//! figure is read by the module that owns its table ([`Queue::depth`], [`crate::phone_numbers::sync_states`],
//! [`crate::storage::media_counts`], [`crate::sync::runs::last`], …); this module only puts them together.

use serde::Serialize;

pub use crate::pending::PendingCounts;
pub use crate::phone_numbers::NumberSync;
pub use crate::queue::{DeadLetter, QueueDepth};
pub use crate::storage::MediaCounts;
pub use crate::sync::runs::Run;

use crate::metrics;
use crate::outbound::Service;
use crate::platform::Platform;
use crate::queue::{Queue, State, DEPTH_METRIC};
use crate::sync::runs::RunKind;

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
    /// Recordings, voicemails and message media stored, and those OpenPhone no longer has.
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

/// The APIs `/stats` and the status page report on.
const SERVICES: [Service; 4] = [
    Service::OpenPhone,
    Service::Notion,
    Service::S3,
    Service::Media,
];
const HOUR_MS: i64 = 60 * 60 * 1000;
/// Hours the status page's event chart covers.
pub const HOURS_SHOWN: usize = 24;

/// The last 24 hours, for the status page's charts.
#[derive(Debug, PartialEq)]
pub struct LastDay {
    /// When it was read (epoch ms).
    pub now_ms: i64,
    /// Events that reached an outcome in each of the last [`HOURS_SHOWN`] hours (UTC clock hours, the last
    /// one the current hour so far), oldest first.
    pub outcomes_per_hour: Vec<HourOutcomes>,
    /// Events waiting or being processed, the peak of each of the last
    /// [`MINUTES_KEPT`](metrics::MINUTES_KEPT) minutes as the drains found it, oldest first; `None` for a
    /// minute no drain ran in.
    pub queue_waiting: Vec<Option<i64>>,
    /// Requests per minute to each API, for the same minutes.
    pub api_per_minute: Vec<ApiMinutes>,
}

/// How many events reached each outcome in one hour.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HourOutcomes {
    /// Start of the hour (epoch ms).
    pub start_ms: i64,
    /// Processed.
    pub done: i64,
    /// Stored without processing (types the sync ignores).
    pub skipped: i64,
    /// Given up on.
    pub dead: i64,
}

/// One API's requests per minute.
#[derive(Debug, PartialEq)]
pub struct ApiMinutes {
    /// The API (`openphone`, `notion`, …).
    pub name: &'static str,
    /// Its shared budget per minute (the per-second budget × 60), if it has one.
    pub budget_per_minute: Option<i64>,
    /// Requests in each minute, oldest first.
    pub requests: Vec<i64>,
}

/// Reads the last 24 hours: outcomes per hour from the `events` table (by when each event reached its
/// outcome), queue depth and API requests per minute from [`metrics::last_day`].
pub fn last_day(platform: &Platform) -> anyhow::Result<LastDay> {
    let now_ms = platform.clock.now_ms();
    let current_hour = now_ms.div_euclid(HOUR_MS);
    let first_hour = current_hour - HOURS_SHOWN as i64 + 1;
    let mut outcomes_per_hour: Vec<HourOutcomes> = (first_hour..=current_hour)
        .map(|hour| HourOutcomes {
            start_ms: hour * HOUR_MS,
            ..HourOutcomes::default()
        })
        .collect();
    for outcomes in Queue::of(platform).outcomes_since(first_hour * HOUR_MS, HOUR_MS)? {
        let Some(hour) = usize::try_from(outcomes.bucket - first_hour)
            .ok()
            .and_then(|i| outcomes_per_hour.get_mut(i))
        else {
            // Finished "in the future": another instance's clock is ahead; the next read shows it.
            continue;
        };
        match outcomes.state {
            State::Done => hour.done = outcomes.count,
            State::Skipped => hour.skipped = outcomes.count,
            _ => hour.dead = outcomes.count,
        }
    }
    let mut waiting = metrics::last_day(platform, DEPTH_METRIC)?;
    let queue_waiting = waiting
        .remove(DEPTH_METRIC)
        .unwrap_or_else(|| vec![None; metrics::MINUTES_KEPT as usize]);
    let mut requests = metrics::last_day(platform, "requests.")?;
    let api_per_minute = SERVICES
        .into_iter()
        .map(|s| ApiMinutes {
            name: s.name(),
            budget_per_minute: s.per_second().map(|b| b * 60),
            requests: requests
                .remove(&format!("requests.{}", s.name()))
                .map(|minutes| minutes.into_iter().map(|m| m.unwrap_or(0)).collect())
                .unwrap_or_else(|| vec![0; metrics::MINUTES_KEPT as usize]),
        })
        .collect();
    Ok(LastDay {
        now_ms,
        outcomes_per_hour,
        queue_waiting,
        api_per_minute,
    })
}

/// Reads the stats.
pub fn collect(platform: &Platform) -> anyhow::Result<Stats> {
    let queue = Queue::of(platform);
    let now = platform.clock.now_ms();
    let queue_depth = queue.depth()?;
    let oldest_pending_age_seconds = queue
        .oldest_waiting_received_at()?
        .map(|at| (now - at).max(0) / 1000);
    let dlq_recent = queue.recent_dead(10)?;
    let numbers = crate::phone_numbers::sync_states(platform)?;

    let counters: std::collections::BTreeMap<String, i64> =
        metrics::today(platform, "")?.into_iter().collect();
    let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
    let (hits, misses) = (counter("canvas.hit"), counter("canvas.miss"));
    let api = SERVICES
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

    let media = crate::storage::media_counts(platform)?;
    let pending_work = crate::pending::counts(platform)?;
    let canvas_relinks_waiting = crate::pages::canvas_relink::waiting(platform)?;
    let pages_deleted_in_notion = crate::pages::map::PageMap::new(platform).gone_count()?;
    let last_run = crate::sync::runs::last(platform, RunKind::Sync)?;
    let storage = crate::sync::runs::last_storage_count(platform)?;
    let breakers = crate::drain::breaker::open_breakers(&*platform.sql)?;

    Ok(Stats {
        breakers,
        dlq_size: queue_depth.dead,
        storage,
        queue: queue_depth,
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
        crate::migrations::ensure_checked(&platform).await.unwrap();
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

    #[tokio::test]
    async fn the_last_day_counts_outcomes_per_hour_and_samples_the_queue() {
        let (_dir, platform, clock) = crate::testing::migrated_platform().await;
        let now = clock.now_ms();
        let this_hour = now - now.rem_euclid(HOUR_MS);
        let insert = |id: &str, state: &str, finished: Option<i64>| {
            platform
                .sql
                .execute(
                    "INSERT INTO events (id, type, lease_key, created_at, received_at, payload, state, available_at,
                                         updated_at, finished_at)
                     VALUES (?1, 'message.received', ?1, ?2, ?2, '{}', ?3, ?2, ?2, ?4)",
                    &[id.into(), now.into(), state.into(), finished.into()],
                )
                .unwrap();
        };
        insert("EV1", "done", Some(now));
        insert("EV2", "done", Some(this_hour));
        insert("EV3", "skipped", Some(now));
        insert("EV4", "dead", Some(this_hour - 1));
        insert("EV5", "done", Some(this_hour - 23 * HOUR_MS));
        insert("EV6", "done", Some(this_hour - 23 * HOUR_MS - 1));
        insert("EV7", "pending", None);
        insert("EV8", "leased", None);
        crate::queue::sample_depth(&platform);
        metrics::count(&platform, "requests.notion", 4);

        let day = last_day(&platform).unwrap();
        assert_eq!(day.outcomes_per_hour.len(), HOURS_SHOWN);
        let last = &day.outcomes_per_hour[HOURS_SHOWN - 1];
        assert_eq!(
            (last.start_ms, last.done, last.skipped, last.dead),
            (this_hour, 2, 1, 0)
        );
        let previous = &day.outcomes_per_hour[HOURS_SHOWN - 2];
        assert_eq!((previous.done, previous.dead), (0, 1));
        let first = &day.outcomes_per_hour[0];
        assert_eq!(
            (first.start_ms, first.done),
            (this_hour - 23 * HOUR_MS, 1),
            "EV6 is older than the window"
        );
        let total: i64 = day
            .outcomes_per_hour
            .iter()
            .map(|h| h.done + h.skipped + h.dead)
            .sum();
        assert_eq!(total, 5, "the waiting events have no outcome yet");

        assert_eq!(day.queue_waiting.last(), Some(&Some(2)));
        assert!(day.queue_waiting[..day.queue_waiting.len() - 1]
            .iter()
            .all(Option::is_none));
        let notion = day
            .api_per_minute
            .iter()
            .find(|a| a.name == "notion")
            .unwrap();
        assert_eq!(notion.budget_per_minute, Some(180));
        assert_eq!(notion.requests.last(), Some(&4));
        let s3 = day.api_per_minute.iter().find(|a| a.name == "s3").unwrap();
        assert_eq!(
            (s3.budget_per_minute, s3.requests.iter().sum::<i64>()),
            (None, 0)
        );
    }
}
