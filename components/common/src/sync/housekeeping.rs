//! The housekeeping of the periodic run: object storage statistics and retention, and pruning of what the
//! app keeps only for a while (lease and rate-limit keys, finished events, history, old runs).
//!
//! Storage is read with one paginated `ListObjectsV2` walk over the whole bucket (every page, so counts
//! and sizes are exact whatever the object count), grouped by top-level prefix (`recordings/`,
//! `voicemails/`, `media/`, …). With `recordings_retention_days` set, objects under `recordings/`,
//! `voicemails/` and `media/` (message pictures and files) older than that are deleted during the same
//! walk; their age is the call's or message's date in the key (`recordings/YYYY/MM/DD/…`), else the
//! object's `LastModified`. A deleted copy is remembered in `retired_media` (written before the delete),
//! so a later event or sync of the same call or message does not copy it back
//! ([`crate::storage::media::StoredMedia::Retired`]).

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::SyncOptions;
use crate::configuration::StorageConfig;
use crate::platform::Platform;
use crate::storage::s3::{ListedObject, ObjectStore, S3Client, LIST_PAGE_SIZE};

/// Prefixes retention applies to; anything else in the bucket is not the app's to delete.
const RETAINED_PREFIXES: [&str; 3] = ["recordings/", "voicemails/", "media/"];
/// Rate-limit windows are per second; a minute of them is plenty to keep.
const RATE_WINDOWS_KEPT_MS: i64 = 60_000;
/// Tick rows are one a minute: a day of them is enough to see what the ticks did.
const TICK_RUNS_KEPT_MS: i64 = 24 * 60 * 60 * 1000;

/// Objects and bytes under one prefix.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrefixStats {
    /// Objects.
    pub objects: u64,
    /// Bytes.
    pub bytes: u64,
}

/// What the storage walk found and did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorageReport {
    /// What is stored after the run, by top-level prefix (`recordings/`, `voicemails/`, …).
    pub prefixes: BTreeMap<String, PrefixStats>,
    /// Every prefix together.
    pub total: PrefixStats,
    /// Objects deleted by retention, and their bytes.
    pub deleted: PrefixStats,
    /// `ListObjectsV2` pages read.
    pub pages: u64,
}

/// What the housekeeping did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HousekeepingReport {
    /// Object storage; `None` when it is not configured or could not be read.
    pub storage: Option<StorageReport>,
    /// Lease keys deleted.
    pub lease_keys_pruned: u64,
    /// Rate-limit windows deleted.
    pub rate_windows_pruned: u64,
    /// Finished events deleted.
    pub events_pruned: u64,
    /// Ids of deliveries taken into the queue that the intake database stopped remembering (as old as
    /// the finished events deleted).
    #[serde(default)]
    pub admitted_pruned: u64,
    /// History rows deleted.
    pub history_pruned: u64,
    /// Finished runs deleted.
    pub runs_pruned: u64,
    /// Settled or abandoned pending rows deleted.
    pub pending_pruned: u64,
    /// What went wrong; every step runs whatever the others did.
    pub errors: Vec<String>,
}

/// Runs the housekeeping with the app's storage configuration, `None` when its variables are missing or
/// invalid (storage steps are skipped, and said so).
pub async fn run_configured(
    platform: &Platform,
    options: &SyncOptions,
    storage: Option<&StorageConfig>,
) -> HousekeepingReport {
    let store = storage
        .context("s3_endpoint, r2_bucket, r2_access_key_id and r2_secret_access_key must all be set (/health names what is missing)")
        .and_then(|config| Ok((ObjectStore::from_config(config)?, config)));
    match store {
        Ok((store, config)) => {
            run(
                platform,
                options,
                Some((&S3Client::new(platform, &store), config.retention_days)),
            )
            .await
        }
        Err(e) => {
            let mut report = run(platform, options, None).await;
            report
                .errors
                .push(format!("object storage not configured: {e:#}"));
            report
        }
    }
}

/// Runs the housekeeping; `storage` is the bucket and `recordings_retention_days` (0: keep forever).
pub async fn run(
    platform: &Platform,
    options: &SyncOptions,
    storage: Option<(&S3Client<'_>, u32)>,
) -> HousekeepingReport {
    let mut report = HousekeepingReport::default();
    if let Some((client, retention_days)) = storage {
        match walk_storage(platform, client, retention_days, LIST_PAGE_SIZE).await {
            Ok(storage) => report.storage = Some(storage),
            Err(e) => report.errors.push(format!("object storage: {e:#}")),
        }
    }
    let now = platform.clock.now_ms();
    let mut step = |name: &str, result: anyhow::Result<u64>| match result {
        Ok(n) => n,
        Err(e) => {
            report.errors.push(format!("{name}: {e:#}"));
            0
        }
    };
    let leases = step(
        "lease keys",
        crate::lease::prune(&*platform.kv, now, options.lease).map(count),
    );
    let windows = step(
        "rate-limit windows",
        crate::ratelimit::prune(platform, RATE_WINDOWS_KEPT_MS).map(count),
    );
    let history_cutoff = now - options.history_retention_ms;
    let events = step(
        "events",
        delete(
            platform,
            "DELETE FROM events WHERE state IN ('done', 'skipped') AND finished_at < ?1 RETURNING id",
            now - options.events_retention_ms,
        ),
    );
    let admitted = step(
        "admitted deliveries",
        crate::queue::deliveries::Deliveries::new(&*platform.intake)
            .prune_admitted(now - options.events_retention_ms),
    );
    let history = step(
        "history",
        delete(
            platform,
            "DELETE FROM sync_history WHERE synced_at < ?1 RETURNING id",
            history_cutoff,
        ),
    );
    let runs = step(
        "runs",
        delete(
            platform,
            "DELETE FROM sync_runs WHERE finished_at IS NOT NULL AND started_at < ?1 RETURNING id",
            history_cutoff,
        ),
    ) + step(
        "tick runs",
        delete(
            platform,
            "DELETE FROM sync_runs WHERE kind = 'tick' AND finished_at IS NOT NULL AND started_at < ?1 RETURNING id",
            now - TICK_RUNS_KEPT_MS,
        ),
    );
    let pending = step(
        "pending work",
        delete(
            platform,
            "DELETE FROM pending_work WHERE (needs = 0 OR gave_up_at IS NOT NULL) AND updated_at < ?1
             RETURNING call_id",
            history_cutoff,
        ),
    );
    report.lease_keys_pruned = leases;
    report.rate_windows_pruned = windows;
    report.events_pruned = events;
    report.admitted_pruned = admitted;
    report.history_pruned = history;
    report.runs_pruned = runs;
    report.pending_pruned = pending;
    tracing::info!(
        leases,
        windows,
        events,
        admitted,
        history,
        runs,
        pending,
        errors = report.errors.len(),
        "housekeeping done"
    );
    report
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Runs a `DELETE … WHERE … < ?1 RETURNING …` and counts the rows it deleted.
fn delete(platform: &Platform, statement: &str, cutoff: i64) -> anyhow::Result<u64> {
    Ok(count(
        platform.sql.execute(statement, &[cutoff.into()])?.len(),
    ))
}

/// Lists every object of the bucket, `page_size` keys a page, counting them by prefix and deleting those
/// past the retention.
async fn walk_storage(
    platform: &Platform,
    client: &S3Client<'_>,
    retention_days: u32,
    page_size: usize,
) -> anyhow::Result<StorageReport> {
    let cutoff = (retention_days > 0)
        .then(|| platform.clock.now_ms() - i64::from(retention_days) * 24 * 60 * 60 * 1000);
    let mut report = StorageReport::default();
    let mut continuation: Option<String> = None;
    loop {
        let page = client
            .list("", continuation.as_deref(), page_size)
            .await
            .context("listing the bucket")?;
        report.pages += 1;
        for object in &page.objects {
            if cutoff.is_some_and(|cutoff| expired(object, cutoff)) {
                // The tombstone first: a crash between the two leaves a tombstone and an object the
                // next walk deletes, never a deleted object that a replay copies back.
                retire(platform, object)?;
                client
                    .delete(&object.key)
                    .await
                    .with_context(|| format!("deleting {}", object.key))?;
                forget(platform, &object.key);
                report.deleted.objects += 1;
                report.deleted.bytes += object.size;
                continue;
            }
            let stats = report.prefixes.entry(prefix_of(&object.key)).or_default();
            stats.objects += 1;
            stats.bytes += object.size;
            report.total.objects += 1;
            report.total.bytes += object.size;
        }
        // Deleting listed keys does not disturb the walk: the token continues after the last key listed.
        match page.next_continuation_token {
            Some(next) => continuation = Some(next),
            None => return Ok(report),
        }
    }
}

/// Remembers that retention deletes `object`, so no copier stores it again (a key the copiers do not
/// make needs no tombstone).
fn retire(platform: &Platform, object: &ListedObject) -> anyhow::Result<()> {
    let Some((owner, kind, segment)) = crate::storage::media::retirement_of(&object.key) else {
        return Ok(());
    };
    platform
        .sql
        .execute(
            "INSERT INTO retired_media (owner_id, kind, segment, key, size, retired_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (owner_id, kind, segment) DO NOTHING",
            &[
                owner.as_str().into(),
                kind.into(),
                segment.into(),
                object.key.as_str().into(),
                i64::try_from(object.size).unwrap_or(i64::MAX).into(),
                platform.clock.now_ms().into(),
            ],
        )
        .with_context(|| format!("recording {} as retired", object.key))?;
    Ok(())
}

/// Drops a deleted object from `media_objects` or `message_media`, so the media counts on `/stats` match
/// the bucket.
fn forget(platform: &Platform, key: &str) {
    for statement in [
        "DELETE FROM media_objects WHERE key = ?1",
        "DELETE FROM message_media WHERE key = ?1",
    ] {
        if let Err(e) = platform.sql.execute(statement, &[key.into()]) {
            tracing::warn!(key, error = %format!("{e:#}"), "forgetting a deleted object failed");
        }
    }
}

/// `recordings/` for `recordings/2025/10/20/AC1-1.mp3`; `""` for a key at the top level.
fn prefix_of(key: &str) -> String {
    key.split_once('/')
        .map_or_else(String::new, |(first, _)| format!("{first}/"))
}

/// The date of a key's `YYYY/MM/DD`; parsed by hand, as chrono's format strings cost about 10 KB of every
/// component.
fn key_date(date: &str) -> Option<chrono::NaiveDate> {
    let mut parts = date.split('/');
    let mut number = |digits: usize| {
        parts
            .next()
            .filter(|p| p.len() == digits && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
    };
    let (year, month, day) = (number(4)?, number(2)?, number(2)?);
    chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

/// Whether a retained object is older than `cutoff` (epoch ms): by the call's date in its key, else by
/// its `LastModified`. An object whose age cannot be told is kept.
fn expired(object: &ListedObject, cutoff: i64) -> bool {
    let Some(rest) = RETAINED_PREFIXES
        .iter()
        .find_map(|p| object.key.strip_prefix(p))
    else {
        return false;
    };
    let key_date = rest
        .get(..10)
        .and_then(key_date)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc().timestamp_millis());
    // A call's whole day must be past the cutoff before its recordings go.
    let age_from = key_date
        .map(|midnight| midnight + 24 * 60 * 60 * 1000 - 1)
        .or_else(|| {
            object
                .last_modified
                .as_deref()
                .and_then(crate::domain::parse_iso)
        });
    age_from.is_some_and(|at| at < cutoff)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
