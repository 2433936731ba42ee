//! Daily counters in SQLite (`metrics(day, name, value)`): API requests and errors per service, cache hits
//! and misses. One upsert per increment; `/stats` and the benchmarks read them.

use crate::platform::{Platform, Value};

/// `YYYY-MM-DD` (UTC) of a Unix time in milliseconds.
pub fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::NativePlatformBuilder;

    #[tokio::test]
    async fn counters_add_up_per_day() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        crate::migrations::run(&platform, crate::migrations::MIGRATIONS)
            .await
            .unwrap();
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
}
