//! `sync_runs`: one row per periodic sync (`kind = 'sync'`) and per tick (`kind = 'tick'`), written as the
//! run goes (numbers done, requests, errors) so `/stats` can show a run in progress. Each write is one
//! statement.

use crate::platform::{Platform, Value};

/// What a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A periodic sync (from the tick or `POST /admin/sync`).
    Sync,
    /// A tick (from the cron component or `POST /admin/tick`).
    Tick,
}

impl RunKind {
    /// The value of `sync_runs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Sync => "sync",
            RunKind::Tick => "tick",
        }
    }
}

/// Records the start of a run and returns its id (what `POST /admin/sync` and `POST /admin/tick` answer).
pub fn start(platform: &Platform, kind: RunKind, scope: Option<&str>) -> anyhow::Result<String> {
    let id = crate::ids::new_id(kind.as_str());
    platform.sql.execute(
        "INSERT INTO sync_runs (id, kind, scope, started_at) VALUES (?1, ?2, ?3, ?4)",
        &[
            id.as_str().into(),
            kind.as_str().into(),
            Value::from(scope),
            platform.clock.now_ms().into(),
        ],
    )?;
    Ok(id)
}

/// Records how many numbers the run will sync.
pub fn set_total(platform: &Platform, run_id: &str, numbers: usize) -> anyhow::Result<()> {
    platform.sql.execute(
        "UPDATE sync_runs SET numbers_total = ?2 WHERE id = ?1",
        &[
            run_id.into(),
            Value::Integer(i64::try_from(numbers).unwrap_or(i64::MAX)),
        ],
    )?;
    Ok(())
}

/// Records that one number's sync ended, with the requests it made and whether it failed.
pub fn number_done(
    platform: &Platform,
    run_id: &str,
    requests: u64,
    failed: bool,
) -> anyhow::Result<()> {
    platform.sql.execute(
        "UPDATE sync_runs SET numbers_done = numbers_done + 1, requests = requests + ?2, errors = errors + ?3
         WHERE id = ?1",
        &[
            run_id.into(),
            Value::Integer(i64::try_from(requests).unwrap_or(i64::MAX)),
            failed.into(),
        ],
    )?;
    Ok(())
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// API requests of the whole run.
    pub requests: u64,
    /// Errors (failed numbers, failed steps).
    pub errors: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// The run's report.
    pub details: serde_json::Value,
}

/// Records the end of a run.
pub fn end(platform: &Platform, run_id: &str, ending: &Ending) -> anyhow::Result<()> {
    platform.sql.execute(
        "UPDATE sync_runs SET finished_at = ?2, requests = ?3, errors = ?4, last_error = ?5, details = ?6
         WHERE id = ?1",
        &[
            run_id.into(),
            platform.clock.now_ms().into(),
            Value::Integer(i64::try_from(ending.requests).unwrap_or(i64::MAX)),
            Value::Integer(i64::try_from(ending.errors).unwrap_or(i64::MAX)),
            Value::from(ending.last_error.clone()),
            ending.details.to_string().into(),
        ],
    )?;
    Ok(())
}

/// Records the end of a periodic sync from its report.
pub fn finish(platform: &Platform, run_id: &str, report: &super::RunReport) -> anyhow::Result<()> {
    let failed_numbers = report
        .numbers
        .iter()
        .filter(|n| matches!(n.outcome, super::number::NumberOutcome::Failed));
    let errors = report.errors.len() + failed_numbers.clone().count();
    let last_error = report
        .errors
        .last()
        .cloned()
        .or_else(|| failed_numbers.filter_map(|n| n.error.clone()).next_back());
    end(
        platform,
        run_id,
        &Ending {
            requests: report.requests.total(),
            errors: u64::try_from(errors).unwrap_or(u64::MAX),
            last_error,
            details: serde_json::to_value(report)?,
        },
    )
}

/// A periodic run, as `/stats` reports it.
#[derive(Debug, serde::Serialize, PartialEq)]
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

/// The run of `kind` that started last, running or finished.
pub fn last(platform: &Platform, kind: RunKind) -> anyhow::Result<Option<Run>> {
    platform
        .sql
        .execute(
            "SELECT id, kind, started_at, finished_at, numbers_done, requests, errors FROM sync_runs
             WHERE kind = ?1 ORDER BY started_at DESC LIMIT 1",
            &[kind.as_str().into()],
        )?
        .first()
        .map(|r| -> anyhow::Result<Run> {
            Ok(Run {
                id: r.str("id")?.to_owned(),
                kind: r.str("kind")?.to_owned(),
                started_at: crate::metrics::iso_seconds(Some(r.i64("started_at")?))
                    .unwrap_or_default(),
                finished_at: crate::metrics::iso_seconds(r.opt_i64("finished_at")?),
                numbers_done: r.i64("numbers_done")?,
                requests: r.i64("requests")?,
                errors: r.i64("errors")?,
            })
        })
        .transpose()
}

/// Object storage as the last periodic sync's housekeeping counted it (object count and bytes per prefix).
pub fn last_storage_count(platform: &Platform) -> anyhow::Result<Option<serde_json::Value>> {
    Ok(platform
        .sql
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
        }))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::migrated_platform;

    fn row(platform: &Platform, id: &str) -> (Option<i64>, i64, i64, i64, Option<String>) {
        let rows = platform
            .sql
            .execute(
                "SELECT finished_at, numbers_done, requests, errors, last_error FROM sync_runs WHERE id = ?1",
                &[id.into()],
            )
            .unwrap();
        let r = rows.first().unwrap();
        (
            r.opt_i64("finished_at").unwrap(),
            r.i64("numbers_done").unwrap(),
            r.i64("requests").unwrap(),
            r.i64("errors").unwrap(),
            r.opt_str("last_error").unwrap().map(String::from),
        )
    }

    #[tokio::test]
    async fn a_run_shows_its_progress_then_its_totals() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let id = start(&platform, RunKind::Sync, None).unwrap();
        assert!(id.starts_with("sync_"));
        set_total(&platform, &id, 2).unwrap();
        number_done(&platform, &id, 7, false).unwrap();
        number_done(&platform, &id, 3, true).unwrap();
        assert_eq!(row(&platform, &id), (None, 2, 10, 1, None));
        let ending = Ending {
            requests: 12,
            errors: 1,
            last_error: Some("PN2: boom".into()),
            details: serde_json::json!({ "numbers": [] }),
        };
        end(&platform, &id, &ending).unwrap();
        let (finished, done, requests, errors, last_error) = row(&platform, &id);
        assert!(finished.is_some());
        assert_eq!(
            (done, requests, errors, last_error.as_deref()),
            (2, 12, 1, Some("PN2: boom"))
        );
    }
}
