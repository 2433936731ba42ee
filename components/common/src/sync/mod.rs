//! The periodic sync: what catches up on everything the webhooks did not deliver, run by the minute
//! [`tick`] when `sync_interval_minutes` has passed, and on demand by `POST /admin/sync`.
//!
//! A run ([`run`]) refreshes the workspace's numbers into SQLite, gives up on calls pending for over
//! 7 days, syncs each number with bounded concurrency — through `http://phone-sync.spin.internal/sync/<id>`
//! where service chaining is available ([`Via::Chained`]), in-process otherwise ([`Via::in_process`], the
//! cron component) — and then runs the [`housekeeping`]. `sync_runs` shows its progress on `/stats`.
//!
//! One number's sync ([`number::sync_number`]) runs under the number's lease (the drain's lease), lists
//! the conversations updated since the number's cursor, then each conversation's calls and messages
//! created since that conversation was last synced, writes what Notion lacks through the same
//! [`Writer`](crate::pages::Writer) the webhooks use, checkpoints after every page, and re-checks the
//! calls that still wait for a recording, transcript, summary or voicemail ([`recheck`], over the record
//! [`crate::pending`] keeps).

pub mod housekeeping;
pub mod http;
pub mod interleave;
pub mod links;
pub mod messages;
pub mod number;
pub mod recheck;
pub mod requests;
pub mod runs;
pub mod schedule;
mod tick;

pub use tick::{tick, TickReport};

use std::rc::Rc;

use anyhow::Context;
use futures::future::LocalBoxFuture;
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::configuration::{ConfigError, Settings};
use crate::lease::LeaseConfig;
use crate::openphone::OpenPhone;
use crate::outbound::Failure;
use crate::pages::PageSettings;
use crate::pending;
use crate::platform::{HttpRequest, Method, Platform};
use number::{NumberOutcome, NumberReport};
use requests::Requests;

/// Where the `phone-sync` component's private route is reached by service chaining.
pub const PHONE_SYNC_URL: &str = "http://phone-sync.spin.internal";

/// How a run goes about its work. [`SyncOptions::default`] is what the app runs with.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// `maxResults` of every list request (OpenPhone allows at most 100).
    pub page_size: u32,
    /// Numbers synced at once. The numbers share OpenPhone's 10 req/s and Notion's 3 req/s, so more buys
    /// little.
    pub concurrency: usize,
    /// How far back the first sync of a number goes when no `since` is given: 24 hours.
    pub default_lookback_ms: i64,
    /// Each lower bound is moved back by this much, for clock skew and OpenPhone's indexing lag; what
    /// the overlap lists again is already in the page map and costs no Notion request.
    pub overlap_ms: i64,
    /// A number's sync stops after its current page once it has run this long; the next run resumes from
    /// the checkpoint. Keeps each request well inside a host's time limit and lets the drain in.
    pub number_budget_ms: i64,
    /// The per-number lease (the drain's lease timing).
    pub lease: LeaseConfig,
    /// How long a number's sync waits for the lease while the drain holds it.
    pub lease_wait_ms: i64,
    /// Calls still lacking something this long after they were made are given up on.
    pub pending_give_up_ms: i64,
    /// Within this long after a call, "not there" from OpenPhone means "not yet" (it is still producing
    /// the recording, transcript or summary); later it means "never".
    pub pending_grace_ms: i64,
    /// Pending calls re-checked per number and run.
    pub pending_batch: u32,
    /// Sync history, finished runs and settled pending rows are deleted after this long.
    pub history_retention_ms: i64,
    /// Events that are `done` or `skipped` are deleted after this long (dead ones stay for the DLQ). It
    /// must outlast OpenPhone's webhook retries (about 28 hours) so a late redelivery still dedupes.
    pub events_retention_ms: i64,
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            page_size: 100,
            concurrency: 2,
            default_lookback_ms: DAY_MS,
            overlap_ms: 5 * MINUTE_MS,
            number_budget_ms: 10 * MINUTE_MS,
            lease: LeaseConfig::default(),
            lease_wait_ms: 60_000,
            pending_give_up_ms: 7 * DAY_MS,
            pending_grace_ms: 2 * HOUR_MS,
            pending_batch: 200,
            history_retention_ms: 90 * DAY_MS,
            events_retention_ms: 30 * DAY_MS,
        }
    }
}

/// A number whose lease is held, with the clients its writes go through: what the re-checks of its
/// pending calls ([`recheck::recheck`]) and unsettled texts ([`messages::recheck`]) work with.
#[derive(Clone, Copy)]
pub struct LeasedNumber<'a> {
    /// The host.
    pub platform: &'a Platform,
    /// OpenPhone, asked for what is due.
    pub openphone: &'a OpenPhone<'a>,
    /// The page writer, under `lease`.
    pub writer: &'a crate::pages::Writer<'a>,
    /// The number's lease, checked before each item.
    pub lease: &'a crate::lease::Lease,
    /// The number (`PN…`).
    pub phone_number_id: &'a str,
}

/// The configuration a number's sync needs.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// What its pages are written with (the webhooks' own).
    pub pages: PageSettings,
    /// How the sync goes about it.
    pub options: SyncOptions,
}

impl SyncSettings {
    /// Loads the settings from the request's `settings`, with the default options.
    pub fn load(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            pages: PageSettings::load(settings)?,
            options: SyncOptions::default(),
        })
    }

    /// Where each API lives, to count requests by service.
    fn services(&self) -> requests::Services {
        let pages = &self.pages;
        let s3_endpoint = pages.storage.as_ref().map(|s| s.endpoint.as_str());
        requests::Services::new(&pages.openphone, &pages.notion, s3_endpoint)
    }
}

/// How a run reaches each number's sync.
#[derive(Debug, Clone)]
pub enum Via {
    /// In this instance (the cron component, where `*.spin.internal` is not reachable), by the function
    /// it holds ([`Via::in_process`]). A pointer rather than a direct call, so that a component which only
    /// chains (queue-drain) does not link a number's sync: that is about 70 KB of its `.wasm`.
    InProcess(SyncNumber),
    /// `POST <base>/sync/<phone_number_id>` ([`PHONE_SYNC_URL`] on Spin): each number in an instance of
    /// its own, with its own time limit.
    Chained(String),
}

/// One number's sync run in this instance: [`number::sync_number`]'s signature, its future boxed.
pub type SyncNumber = for<'a> fn(
    &'a Platform,
    &'a SyncSettings,
    &'a str,
    Option<i64>,
) -> LocalBoxFuture<'a, NumberReport>;

impl Via {
    /// Each number synced in this instance by [`number::sync_number`].
    pub fn in_process() -> Via {
        Via::InProcess(sync_in_process)
    }
}

fn sync_in_process<'a>(
    platform: &'a Platform,
    settings: &'a SyncSettings,
    phone_number_id: &'a str,
    since: Option<i64>,
) -> LocalBoxFuture<'a, NumberReport> {
    Box::pin(number::sync_number(
        platform,
        settings,
        phone_number_id,
        since,
    ))
}

/// What a run is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// One number (`PN…`), or every active number.
    pub phone_number_id: Option<String>,
    /// Sync from this time (epoch ms) instead of each number's cursor.
    pub since: Option<i64>,
}

/// What a run did, as stored in `sync_runs.details`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    /// The run.
    pub run_id: String,
    /// Each number's sync.
    pub numbers: Vec<NumberReport>,
    /// Pending calls given up on by this run (over 7 days old).
    pub pending_given_up: u64,
    /// The housekeeping, when the run covered every number.
    pub housekeeping: Option<housekeeping::HousekeepingReport>,
    /// Calls whose expiring recording links were renewed on their pages.
    #[serde(default)]
    pub links_renewed: usize,
    /// API requests of the whole run.
    pub requests: Requests,
    /// Problems that stopped a part of the run.
    pub errors: Vec<String>,
}

/// Runs a periodic sync recorded as `run_id` (see [`runs::start`]) with the request's `settings`. Never
/// fails: what went wrong is in the report and in `sync_runs`.
pub async fn run(
    platform: &Platform,
    settings: &Settings,
    run_id: &str,
    request: &RunRequest,
    via: &Via,
) -> RunReport {
    let span = tracing::info_span!(
        "sync.run",
        run_id,
        scope = request.phone_number_id.as_deref()
    );
    async {
        let mut report = RunReport {
            run_id: run_id.to_owned(),
            ..RunReport::default()
        };
        match SyncSettings::load(settings) {
            Ok(settings) => run_with(platform, &settings, request, via, &mut report).await,
            Err(e) => report.errors.push(format!("configuration: {e}")),
        }
        if let Err(e) = runs::finish(platform, run_id, &report) {
            tracing::error!(error = %format!("{e:#}"), "recording the end of the run failed");
        }
        tracing::info!(
            numbers = report.numbers.len(),
            requests = report.requests.total(),
            errors = report.errors.len(),
            "sync run finished"
        );
        report
    }
    .instrument(span)
    .await
}

/// [`run`] with loaded settings.
pub async fn run_with(
    platform: &Platform,
    settings: &SyncSettings,
    request: &RunRequest,
    via: &Via,
    report: &mut RunReport,
) {
    let (own, counter) = requests::counted(platform, settings.services());
    let numbers = match numbers_to_sync(&own, settings, request).await {
        Ok(numbers) => numbers,
        Err(e) => {
            report.errors.push(format!("{e:#}"));
            report.requests.add(&counter.requests());
            return;
        }
    };
    if let Err(e) = runs::set_total(platform, &report.run_id, numbers.len()) {
        tracing::warn!(error = %format!("{e:#}"), "recording the number count failed");
    }
    match pending::give_up_old(
        platform,
        platform.clock.now_ms() - settings.options.pending_give_up_ms,
    ) {
        Ok(n) => report.pending_given_up = n,
        Err(e) => report
            .errors
            .push(format!("giving up old pending work: {e:#}")),
    }

    let since = request.since;
    let own = &own;
    let mut results = stream::iter(numbers)
        .map(|id| async move {
            match via {
                Via::InProcess(sync_number) => sync_number(platform, settings, &id, since).await,
                Via::Chained(base) => chained(own, base, &id, since).await,
            }
        })
        .buffer_unordered(settings.options.concurrency.max(1));
    while let Some(number) = results.next().await {
        let failed = matches!(number.outcome, NumberOutcome::Failed);
        if let Err(e) = runs::number_done(platform, &report.run_id, number.requests.total(), failed)
        {
            tracing::warn!(error = %format!("{e:#}"), "recording a number's progress failed");
        }
        report.requests.add(&number.requests);
        report.numbers.push(number);
    }
    drop(results);

    if request.phone_number_id.is_none() {
        let storage = settings.pages.storage.as_ref();
        report.housekeeping =
            Some(housekeeping::run_configured(own, &settings.options, storage).await);
        let (renewed, errors) = links::renew(own, &settings.pages).await;
        report.links_renewed = renewed;
        report.errors.extend(errors);
    }
    report.requests.add(&counter.requests());
}

/// Refreshes the stored numbers from OpenPhone and returns the ids to sync.
async fn numbers_to_sync(
    platform: &Platform,
    settings: &SyncSettings,
    request: &RunRequest,
) -> anyhow::Result<Vec<String>> {
    let openphone = OpenPhone::new(platform, &settings.pages.openphone);
    let refreshed_at = platform.clock.now_ms();
    match openphone.phone_numbers().await {
        Ok(listed) => {
            crate::phone_numbers::store(platform, &listed)?;
            // Numbers OpenPhone no longer lists (released, moved) keep their cursors but are not synced.
            platform.sql.execute(
                "UPDATE phone_numbers SET is_active = 0 WHERE updated_at < ?1 AND is_active = 1",
                &[refreshed_at.into()],
            )?;
        }
        // The stored list is good enough to sync with; a later run refreshes it.
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "refreshing the phone numbers failed; using the stored list")
        }
        Err(e) => return Err(e).context("listing the workspace's phone numbers"),
    }
    match &request.phone_number_id {
        Some(id) => {
            let known = crate::phone_numbers::find(platform, id)?;
            anyhow::ensure!(
                known.is_some(),
                "{id} is not one of the workspace's phone numbers"
            );
            Ok(vec![id.clone()])
        }
        None => {
            let rows = platform.sql.execute(
                "SELECT id FROM phone_numbers WHERE is_active = 1 ORDER BY id",
                &[],
            )?;
            rows.iter().map(|r| Ok(r.str("id")?.to_owned())).collect()
        }
    }
}

/// One number's sync through `phone-sync`'s private route. Its answer is the [`NumberReport`]; anything
/// else becomes a failed report.
async fn chained(platform: &Platform, base: &str, id: &str, since: Option<i64>) -> NumberReport {
    let mut url = format!("{base}/sync/{}", crate::outbound::percent_encode(id));
    if let Some(since) = since {
        url.push_str(&format!(
            "?since={}",
            crate::outbound::percent_encode(&iso(since))
        ));
    }
    let failed = |error: String| NumberReport::failed(id, error);
    let response = match platform
        .http
        .send(HttpRequest::new(Method::Post, &url))
        .await
    {
        Ok(response) => response,
        Err(e) => return failed(format!("calling {url}: {e}")),
    };
    match serde_json::from_slice::<NumberReport>(&response.body) {
        Ok(report) if (200..300).contains(&response.status) => report,
        _ => {
            let body: String = String::from_utf8_lossy(&response.body)
                .chars()
                .take(300)
                .collect();
            failed(format!("{url} answered {}: {body}", response.status))
        }
    }
}

/// Epoch milliseconds as ISO-8601 with milliseconds, UTC (`2025-10-20T19:22:25.427Z`).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Adds a `sync_history` row for an item the sync wrote (`Ok(page_id)`) or failed to (`Err(why)`).
/// History is for people reading it: a failure to record it is logged, not returned.
fn record_history(
    platform: &Platform,
    phone_number_id: &str,
    resource_type: &str,
    resource_id: &str,
    source: &str,
    result: Result<&str, &str>,
) {
    let (page_id, status, error) = match result {
        Ok(page_id) => (Some(page_id), "success", None),
        Err(error) => (
            None,
            "failed",
            Some(
                error
                    .chars()
                    .take(crate::queue::MAX_REASON_LEN)
                    .collect::<String>(),
            ),
        ),
    };
    let recorded = platform.sql.execute(
        "INSERT INTO sync_history (phone_number_id, resource_type, resource_id, source, notion_page_id,
                                   sync_status, error_message, synced_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[
            phone_number_id.into(),
            resource_type.into(),
            resource_id.into(),
            source.into(),
            crate::platform::Value::from(page_id),
            status.into(),
            crate::platform::Value::from(error),
            platform.clock.now_ms().into(),
        ],
    );
    if let Err(e) = recorded {
        tracing::warn!(error = %format!("{e:#}"), "recording sync history failed");
    }
}

/// A platform whose HTTP client is `http`, everything else shared.
fn with_http(platform: &Platform, http: Rc<dyn crate::platform::HttpClient>) -> Platform {
    Platform {
        http,
        ..platform.clone()
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
