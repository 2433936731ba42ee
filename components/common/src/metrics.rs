//! Daily counters in SQLite (`metrics(day, name, value)`): API requests and errors per service, cache hits
//! and misses. One upsert per increment; `/stats` and the benchmarks read them.
//!
//! The status page's charts need the last 24 hours minute by minute, so API requests are also counted per
//! minute, and gauges such as the queue depth keep their peak per minute ([`peak`]), in `metrics_minutes`: a
//! ring of [`MINUTES_KEPT`] slots per name that overwrites itself, so it stays a day long without pruning.

use std::collections::BTreeMap;

use crate::platform::{Platform, Value};

/// Minutes of per-minute values kept: one day.
pub const MINUTES_KEPT: i64 = 24 * 60;
const MINUTE_MS: i64 = 60_000;
/// Counters also kept per minute (the API requests the status page charts against their budgets).
const PER_MINUTE_PREFIX: &str = "requests.";

/// `YYYY-MM-DD` (UTC) of a Unix time in milliseconds.
pub fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
        .to_string()
}

/// Adds `by` to today's counter `name`. A failure is logged, never returned: counting must not fail the
/// work it counts.
pub fn count(platform: &Platform, name: &str, by: i64) {
    let day = day_of(platform.clock.now_ms());
    if let Err(e) = platform.sql.execute(
        "INSERT INTO metrics (day, name, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value",
        &[day.into(), name.into(), by.into()],
    ) {
        tracing::warn!(metric = name, error = %format!("{e:#}"), "could not count");
    }
    if name.starts_with(PER_MINUTE_PREFIX) {
        let minute = platform.clock.now_ms().div_euclid(MINUTE_MS);
        record_minute(
            platform,
            name,
            minute,
            by,
            "metrics_minutes.value + excluded.value",
        );
    }
}

/// Records `value` as this minute's `name` unless a higher value was recorded in the same minute: the peak
/// of a gauge (how many events wait) sampled several times a minute. Logged, never returned, like [`count`].
pub fn peak(platform: &Platform, name: &str, value: i64) {
    // Every drain samples the queue depth as it starts, most of them in a minute whose peak is already
    // as high. An upsert takes the database's write lock even when it changes nothing, queueing the
    // intake's inserts behind it, so a read (no lock under WAL) asks first.
    let minute = platform.clock.now_ms().div_euclid(MINUTE_MS);
    let covered = platform.sql.execute(
        "SELECT 1 AS covered FROM metrics_minutes
         WHERE slot = ?1 AND name = ?2 AND minute = ?3 AND value >= ?4",
        &[
            minute.rem_euclid(MINUTES_KEPT).into(),
            name.into(),
            minute.into(),
            value.into(),
        ],
    );
    if matches!(covered, Ok(rows) if !rows.is_empty()) {
        return;
    }
    record_minute(
        platform,
        name,
        minute,
        value,
        "max(metrics_minutes.value, excluded.value)",
    );
}

/// Upserts `minute`'s slot of `name`: `merge` combines the value already there with the new one when the
/// slot holds the same minute; a slot a day old is overwritten. A clock behind another instance's never
/// moves a slot back to an earlier minute.
fn record_minute(platform: &Platform, name: &str, minute: i64, value: i64, merge: &str) {
    let statement = format!(
        "INSERT INTO metrics_minutes (slot, name, minute, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (slot, name) DO UPDATE SET
             value = CASE WHEN metrics_minutes.minute = excluded.minute THEN {merge} ELSE excluded.value END,
             minute = excluded.minute
         WHERE excluded.minute >= metrics_minutes.minute"
    );
    if let Err(e) = platform.sql.execute(
        &statement,
        &[
            minute.rem_euclid(MINUTES_KEPT).into(),
            name.into(),
            minute.into(),
            value.into(),
        ],
    ) {
        tracing::warn!(metric = name, error = %format!("{e:#}"), "could not record a minute");
    }
}

/// The last [`MINUTES_KEPT`] minutes of every per-minute value whose name starts with `prefix`, oldest first
/// and ending with the current minute; `None` for a minute nothing was recorded in.
pub fn last_day(
    platform: &Platform,
    prefix: &str,
) -> anyhow::Result<BTreeMap<String, Vec<Option<i64>>>> {
    let now = platform.clock.now_ms().div_euclid(MINUTE_MS);
    let first = now - MINUTES_KEPT + 1;
    let rows = platform.sql.execute(
        "SELECT name, minute, value FROM metrics_minutes
         WHERE minute BETWEEN ?1 AND ?2 AND substr(name, 1, length(?3)) = ?3",
        &[first.into(), now.into(), Value::from(prefix)],
    )?;
    let mut series: BTreeMap<String, Vec<Option<i64>>> = BTreeMap::new();
    for row in rows.iter() {
        let values = series
            .entry(row.str("name")?.to_owned())
            .or_insert_with(|| vec![None; MINUTES_KEPT as usize]);
        let index = usize::try_from(row.i64("minute")? - first)?;
        values[index] = Some(row.i64("value")?);
    }
    Ok(series)
}

/// Today's value of every counter whose name starts with `prefix`.
pub fn today(platform: &Platform, prefix: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let day = day_of(platform.clock.now_ms());
    let rows = platform.sql.execute(
        "SELECT name, value FROM metrics WHERE day = ?1 AND substr(name, 1, length(?2)) = ?2 ORDER BY name",
        &[day.into(), Value::from(prefix)],
    )?;
    rows.iter()
        .map(|r| Ok((r.str("name")?.to_owned(), r.i64("value")?)))
        .collect()
}

/// Epoch milliseconds as ISO-8601 to the second, UTC (`2025-10-20T19:22:25Z`), as `/stats` shows times.
pub fn iso_seconds(ms: Option<i64>) -> Option<String> {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::NativePlatformBuilder;

    #[tokio::test]
    async fn counters_add_up_per_day() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        crate::migrations::ensure_checked(&platform).await.unwrap();
        count(&platform, "requests.notion", 1);
        count(&platform, "requests.notion", 2);
        count(&platform, "requests.openphone", 1);
        count(&platform, "canvas.hit", 1);
        assert_eq!(
            today(&platform, "requests.").unwrap(),
            vec![
                ("requests.notion".into(), 3),
                ("requests.openphone".into(), 1)
            ]
        );
        assert_eq!(day_of(0), "1970-01-01");
    }

    #[tokio::test]
    async fn minutes_add_up_keep_peaks_and_last_a_day() {
        let (_dir, platform, clock) = crate::testing::migrated_platform().await;
        count(&platform, "requests.notion", 2);
        count(&platform, "requests.notion", 3);
        count(&platform, "canvas.hit", 1);
        peak(&platform, "queue.waiting", 4);
        peak(&platform, "queue.waiting", 9);
        peak(&platform, "queue.waiting", 2);
        clock.advance_ms(MINUTE_MS);
        count(&platform, "requests.notion", 1);

        let requests = last_day(&platform, "requests.").unwrap();
        assert_eq!(requests.keys().collect::<Vec<_>>(), vec!["requests.notion"]);
        let notion = &requests["requests.notion"];
        assert_eq!(notion.len(), MINUTES_KEPT as usize);
        assert_eq!(notion[notion.len() - 2..], [Some(5), Some(1)]);
        assert!(notion[..notion.len() - 2].iter().all(Option::is_none));
        let waiting = &last_day(&platform, "queue.").unwrap()["queue.waiting"];
        assert_eq!(waiting[waiting.len() - 2..], [Some(9), None]);

        // A day later the first minute has left the window, and its slot starts again from nothing.
        clock.advance_ms((MINUTES_KEPT - 1) * MINUTE_MS);
        count(&platform, "requests.notion", 7);
        let notion = &last_day(&platform, "requests.").unwrap()["requests.notion"];
        assert_eq!(notion[0], Some(1), "the second minute is now the oldest");
        assert_eq!(
            notion[notion.len() - 1],
            Some(7),
            "not 5 + 7: the slot's old minute is gone"
        );
        let rows = platform
            .sql
            .execute("SELECT COUNT(*) AS n FROM metrics_minutes", &[])
            .unwrap();
        assert_eq!(
            rows.first().unwrap().i64("n").unwrap(),
            3,
            "one row per slot and name"
        );

        // An instance whose clock is behind does not move a slot back a day.
        clock.advance_ms(-MINUTES_KEPT * MINUTE_MS);
        count(&platform, "requests.notion", 100);
        clock.advance_ms(MINUTES_KEPT * MINUTE_MS);
        let notion = &last_day(&platform, "requests.").unwrap()["requests.notion"];
        assert_eq!(notion[notion.len() - 1], Some(7));
    }
}
