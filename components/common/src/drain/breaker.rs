//! Circuit breakers: when an API refuses our credentials (`401`, `403` — a rotated token, an integration
//! removed from the workspace), every event would fail the same way until a person fixes it. Instead of
//! burying them all, the drain pauses: the breaker is a row in `breakers`, every drain reads it before
//! leasing, and one event every [`PROBE_EVERY_MS`] is tried as a probe. The first event that succeeds
//! closes it. `/health` and `/stats` show an open breaker and why.

use anyhow::Context;
use serde::Serialize;

use crate::platform::Sql;

/// How often a paused drain tries one event to see whether the API accepts us again.
pub const PROBE_EVERY_MS: i64 = 5 * 60_000;

/// An open breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenBreaker {
    /// The API that refused us (`notion`, `openphone`).
    pub service: String,
    /// Its status code.
    pub status: u16,
    /// What it said.
    pub reason: String,
    /// Since when (epoch ms).
    pub opened_at: i64,
    /// When the next probe may run (epoch ms).
    pub next_probe_at: i64,
}

/// Opens (or keeps open) the breaker of `service`; its next probe is [`PROBE_EVERY_MS`] from `now`.
pub fn open(
    sql: &dyn Sql,
    service: &str,
    status: u16,
    reason: &str,
    now: i64,
) -> anyhow::Result<()> {
    sql.execute(
        "INSERT INTO breakers (service, status, reason, opened_at, next_probe_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (service) DO UPDATE SET status = excluded.status, reason = excluded.reason,
             next_probe_at = excluded.next_probe_at",
        &[
            service.into(),
            i64::from(status).into(),
            crate::queue::truncate(reason).into(),
            now.into(),
            now.saturating_add(PROBE_EVERY_MS).into(),
        ],
    )
    .with_context(|| format!("opening the {service} breaker"))?;
    Ok(())
}

/// The open breakers.
pub fn open_breakers(sql: &dyn Sql) -> anyhow::Result<Vec<OpenBreaker>> {
    let rows = sql
        .execute(
            "SELECT service, status, reason, opened_at, next_probe_at FROM breakers ORDER BY service",
            &[],
        )
        .context("reading the breakers")?;
    rows.iter()
        .map(|row| {
            Ok(OpenBreaker {
                service: row.str("service")?.to_owned(),
                status: u16::try_from(row.i64("status")?).unwrap_or(0),
                reason: row.str("reason")?.to_owned(),
                opened_at: row.i64("opened_at")?,
                next_probe_at: row.i64("next_probe_at")?,
            })
        })
        .collect()
}

/// Whether this caller may run a probe now: one caller per [`PROBE_EVERY_MS`] wins (one statement).
pub fn take_probe(sql: &dyn Sql, now: i64) -> anyhow::Result<bool> {
    let rows = sql
        .execute(
            "UPDATE breakers SET next_probe_at = ?2 WHERE next_probe_at <= ?1 RETURNING service",
            &[now.into(), now.saturating_add(PROBE_EVERY_MS).into()],
        )
        .context("taking a breaker probe")?;
    Ok(!rows.is_empty())
}

/// Closes every breaker (an event went through). Returns the services that were open.
pub fn close_all(sql: &dyn Sql) -> anyhow::Result<Vec<String>> {
    let rows = sql
        .execute("DELETE FROM breakers RETURNING service", &[])
        .context("closing the breakers")?;
    rows.iter()
        .map(|row| row.str("service").map(str::to_owned))
        .collect()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::migrated_platform;

    const T0: i64 = 1_700_000_000_000;

    #[tokio::test]
    async fn an_open_breaker_allows_one_probe_per_interval_until_closed() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let sql = &*platform.sql;
        assert!(open_breakers(sql).unwrap().is_empty());
        open(sql, "notion", 401, "API token is invalid", T0).unwrap();
        open(sql, "notion", 401, "API token is invalid", T0 + 1_000).unwrap();
        let open_now = open_breakers(sql).unwrap();
        assert_eq!(open_now.len(), 1);
        assert_eq!(open_now[0].opened_at, T0, "re-opening keeps the first time");
        assert!(!take_probe(sql, T0 + 1_000).unwrap());
        assert!(take_probe(sql, T0 + 1_000 + PROBE_EVERY_MS).unwrap());
        assert!(
            !take_probe(sql, T0 + 1_001 + PROBE_EVERY_MS).unwrap(),
            "one probe per interval"
        );
        assert_eq!(close_all(sql).unwrap(), ["notion"]);
        assert!(open_breakers(sql).unwrap().is_empty());
    }
}
