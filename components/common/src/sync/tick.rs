//! The tick: what the cron component does every minute and `POST /admin/tick` does when called. Both run
//! this same function in-process:
//!
//! 1. drain the events that are due (retries whose backoff ended, events a webhook kick missed);
//! 2. re-check the calls whose pending work is due (a voicemail still processing when its call ended),
//!    each number under its lease, and retry the Canvas relations a failed lookup left out;
//! 3. if `sync_interval_minutes` have passed since the periodic sync last started, claim it in
//!    `schedules` (one upsert: overlapping ticks never both run it), run it, and release the claim.

use std::future::Future;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::runs::{self, Ending, RunKind};
use super::schedule;
use super::{RunRequest, Via};
use crate::configuration::{Settings, SyncConfig};
use crate::drain::DrainReport;
use crate::platform::Platform;

/// What a tick did, as stored in its `sync_runs` row.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TickReport {
    /// The tick's run id.
    pub run_id: String,
    /// The drain's counts (`done`, `retried`, `dead`, …), when it ran.
    pub drain: Option<serde_json::Value>,
    /// Canvas relations set again after a failed lookup (see `pages::canvas_relink`), when any were due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canvas_relinks: Option<crate::pages::canvas_relink::RelinkReport>,
    /// Past pages linked to Canvas records that appeared or gained a number (see
    /// `pages::canvas_backlink`), when any record was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canvas_backlinks: Option<crate::pages::canvas_backlink::BacklinkReport>,
    /// Calls re-checked for what OpenPhone still owed them, when any were due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<super::recheck::DueRecheck>,
    /// The periodic sync this tick started, when it was due.
    pub sync_run_id: Option<String>,
    /// API requests of the periodic sync, when it ran.
    pub sync_requests: u64,
    /// What went wrong.
    pub errors: Vec<String>,
}

/// Runs one tick recorded as `run_id` (from [`runs::start`] with [`RunKind::Tick`]) with the request's
/// `settings`: first `drain` (composed by [`crate::app::tick`], which knows the page handlers), then the
/// rest; the periodic sync, when due, reaches numbers through `via`. Never fails: the report and
/// `sync_runs` say what happened.
pub async fn tick(
    platform: &Platform,
    settings: &Settings,
    run_id: &str,
    via: &Via,
    drain: impl Future<Output = anyhow::Result<DrainReport>>,
) -> TickReport {
    let span = tracing::info_span!("tick", run_id);
    async {
        let mut report = TickReport {
            run_id: run_id.to_owned(),
            ..TickReport::default()
        };
        match drain.await {
            Ok(drained) => {
                let mut counts = drained.to_json();
                // The per-event list can be long; the counts are what a tick row is for.
                if let Some(counts) = counts.as_object_mut() {
                    counts.remove("events");
                }
                report.drain = Some(counts);
            }
            Err(e) => report.errors.push(format!("drain: {e:#}")),
        }
        match super::recheck::recheck_due(platform, settings).await {
            Ok(rechecked) => report.pending = rechecked,
            Err(e) => report.errors.push(format!("pending re-check: {e:#}")),
        }
        match crate::pages::canvas_relink::retry_due(platform, settings).await {
            Ok(relinked) => report.canvas_relinks = relinked,
            Err(e) => report.errors.push(format!("Canvas relinks: {e:#}")),
        }
        match crate::pages::canvas_backlink::run(platform, settings).await {
            Ok(linked) => report.canvas_backlinks = linked,
            Err(e) => report.errors.push(format!("Canvas backlinks: {e:#}")),
        }
        if let Err(e) = periodic(platform, settings, run_id, via, &mut report).await {
            report.errors.push(format!("periodic sync: {e:#}"));
        }
        let ending = Ending {
            requests: report.sync_requests,
            errors: u64::try_from(report.errors.len()).unwrap_or(u64::MAX),
            last_error: report.errors.last().cloned(),
            details: serde_json::to_value(&report).unwrap_or_default(),
        };
        if let Err(e) = runs::end(platform, run_id, &ending) {
            tracing::error!(error = %format!("{e:#}"), "recording the end of the tick failed");
        }
        report
    }
    .instrument(span)
    .await
}

/// Runs the periodic sync and housekeeping if they are due and this tick wins the claim.
async fn periodic(
    platform: &Platform,
    settings: &Settings,
    run_id: &str,
    via: &Via,
    report: &mut TickReport,
) -> anyhow::Result<()> {
    let config = settings.load(SyncConfig::load)?;
    let interval_ms = i64::from(config.sync_interval_minutes) * 60_000;
    let Some(claim) = schedule::claim(platform, schedule::PERIODIC, interval_ms, run_id)? else {
        return Ok(());
    };
    let sync_run_id = runs::start(platform, RunKind::Sync, None);
    let result = match sync_run_id {
        Ok(sync_run_id) => {
            report.sync_run_id = Some(sync_run_id.clone());
            let sync = super::run(
                platform,
                settings,
                &sync_run_id,
                &RunRequest::default(),
                via,
            )
            .await;
            report.sync_requests = sync.requests.total();
            Ok(())
        }
        Err(e) => Err(e),
    };
    // Released whatever happened: the next run is due one interval after this one started.
    schedule::finish(platform, &claim)?;
    result
}
