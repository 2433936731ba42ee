//! Drains the queue: leases a batch of due events, processes each phone number's events in `created_at`
//! order under that number's [`Lease`], different numbers concurrently, and records each outcome with one
//! statement. Repeats until nothing is due or the time budget is spent.
//!
//! An event that fails retryably goes back to the queue with backoff and does not hold back the later
//! events of its number (they do not depend on one another: every write is an idempotent upsert).

mod handler;

use std::rc::Rc;

use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tracing::Instrument;

pub use handler::{EventHandler, ProcessError, Router};

use crate::api::{self, Request, Response};
use crate::configuration::{Loader, NotionConfig, OpenPhoneConfig, StorageConfig, SyncConfig};
use crate::lease::{Lease, LeaseConfig};
use crate::pages::handler::PageHandler;
use crate::platform::{HttpClient, HttpRequest, Method, Platform};
use crate::queue::{Queue, QueuedEvent, Retried};
use crate::webhook::EventType;

/// Where the webhook kicks the drain (the `queue-drain` component's private route).
pub const DRAIN_URL: &str = "http://queue-drain.spin.internal/drain";

/// How a drain runs.
#[derive(Debug, Clone)]
pub struct DrainOptions {
    /// Events leased at a time.
    pub batch_size: u32,
    /// How long a leased event stays invisible to other drains; renewed before each event. Longer than
    /// a dead drain's number lease can last (1.5 × `lease.window_ms`), so when its events come back
    /// their number is free.
    pub event_lease_ms: i64,
    /// No new batch is leased after this much time.
    pub budget_ms: i64,
    /// Phone numbers processed at once.
    pub concurrency: usize,
    /// Attempts before an event goes to `dead`.
    pub max_attempts: u32,
    /// How long events wait when their number's lease is held elsewhere.
    pub busy_delay_ms: i64,
    /// The per-number lease.
    pub lease: LeaseConfig,
    /// When kicked for a window of deliveries ([`crate::webhook::kick`]): with nothing due, look again at
    /// this time before stopping, so an event stored late in the window is not left for the tick.
    pub linger_until_ms: Option<i64>,
}

impl DrainOptions {
    /// Options for `sync`'s concurrency and attempts, with the standard timings.
    pub fn from_config(sync: &SyncConfig) -> Self {
        Self {
            batch_size: 10,
            event_lease_ms: 5 * 60 * 1000,
            budget_ms: 60 * 1000,
            concurrency: usize::try_from(sync.drain_concurrency).unwrap_or(1).max(1),
            max_attempts: sync.queue_max_attempts.max(1),
            busy_delay_ms: 5_000,
            lease: LeaseConfig::default(),
            linger_until_ms: None,
        }
    }
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Processed: `done`.
    Done,
    /// Failed retryably: `pending` again, due at `available_at` (epoch ms).
    Retry {
        /// When it is due.
        available_at: i64,
        /// The error.
        error: String,
    },
    /// `dead`: a permanent error, or its last attempt failed.
    Dead {
        /// The error.
        error: String,
    },
    /// `skipped`: no handler for its type.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Given back unprocessed, not counted as an attempt (its number, or the page it writes, is busy
    /// elsewhere).
    Released {
        /// Why.
        reason: String,
    },
    /// The outcome could not be recorded (the event's lease expired and another drain took it, or the
    /// database failed); the event comes back when its lease expires.
    Unrecorded {
        /// Why.
        reason: String,
    },
}

/// One event's line in a [`DrainReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventReport {
    /// Event id.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Workspace number.
    pub phone_number_id: Option<String>,
    /// Which attempt this was.
    pub attempt: u32,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DrainReport {
    /// Batches leased.
    pub batches: u32,
    /// Events buried because their drains kept stopping before an outcome.
    pub abandoned: Vec<String>,
    /// Every event leased, in the order outcomes were recorded per number.
    pub events: Vec<EventReport>,
}

impl DrainReport {
    /// How many events had an outcome matching `predicate`.
    pub fn count(&self, predicate: impl Fn(&Outcome) -> bool) -> usize {
        self.events.iter().filter(|e| predicate(&e.outcome)).count()
    }

    /// The report as the admin API shows it: counts, then the events.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "batches": self.batches,
            "done": self.count(|o| matches!(o, Outcome::Done)),
            "retried": self.count(|o| matches!(o, Outcome::Retry { .. })),
            "dead": self.count(|o| matches!(o, Outcome::Dead { .. })),
            "skipped": self.count(|o| matches!(o, Outcome::Skipped { .. })),
            "released": self.count(|o| matches!(o, Outcome::Released { .. })),
            "unrecorded": self.count(|o| matches!(o, Outcome::Unrecorded { .. })),
            "abandoned": self.abandoned,
            "events": self.events,
        })
    }
}

/// Drains with the app's configuration and routes.
pub async fn run(platform: &Platform) -> anyhow::Result<DrainReport> {
    run_lingering(platform, None).await
}

/// [`run`], for a kick: with nothing due, looks again at `linger_until_ms` before stopping
/// ([`DrainOptions::linger_until_ms`]).
pub async fn run_lingering(
    platform: &Platform,
    linger_until_ms: Option<i64>,
) -> anyhow::Result<DrainReport> {
    let mut loader = Loader::new(&*platform.vars);
    let sync = SyncConfig::load(&mut loader);
    let notion = NotionConfig::load(&mut loader);
    let openphone = OpenPhoneConfig::load(&mut loader);
    loader.finish().context("drain configuration")?;
    let options = DrainOptions {
        linger_until_ms,
        ..DrainOptions::from_config(&sync)
    };
    let mut pages = PageHandler::new(platform.clone(), notion, openphone, sync);
    // Without object storage the pages still get written, linking OpenPhone's media URLs; /health names
    // what is missing.
    let mut storage_loader = Loader::new(&*platform.vars);
    let storage = StorageConfig::load(&mut storage_loader);
    match storage_loader.finish() {
        Ok(()) => pages = pages.with_storage(storage),
        Err(e) => {
            tracing::error!(error = %e, "recordings are not copied: object storage is not configured")
        }
    }
    drain(platform, &Router::production(Rc::new(pages)), &options).await
}

/// Drains the queue through `router` until nothing is due or `options.budget_ms` has passed.
pub async fn drain(
    platform: &Platform,
    router: &Router,
    options: &DrainOptions,
) -> anyhow::Result<DrainReport> {
    let owner = crate::ids::new_id("drain");
    let span = tracing::info_span!("drain", owner = %owner);
    async {
        let queue = Queue::new(&*platform.sql);
        let started = platform.clock.now_ms();
        let mut report = DrainReport {
            abandoned: queue.bury_abandoned(options.max_attempts, started)?,
            ..DrainReport::default()
        };
        // Keys found busy are not leased again in this run, so their events are not bounced back and forth.
        let mut busy: Vec<String> = Vec::new();
        while platform.clock.now_ms() - started < options.budget_ms {
            let now = platform.clock.now_ms();
            let batch = queue.lease(
                &owner,
                now,
                options.event_lease_ms,
                options.batch_size,
                &busy,
            )?;
            if batch.is_empty() {
                match options.linger_until_ms {
                    // Deliveries of the kick's window after the first did not kick: wait for the
                    // window to close, then look once more.
                    Some(until) if now < until => {
                        platform
                            .clock
                            .sleep_ms(u64::try_from(until - now).unwrap_or(0))
                            .await;
                        continue;
                    }
                    _ => break,
                }
            }
            report.batches += 1;
            let groups: Vec<GroupReport> = stream::iter(group_by_key(batch))
                .map(|(key, events)| process_group(platform, router, options, key, events))
                .buffer_unordered(options.concurrency.max(1))
                .collect()
                .await;
            for group in groups {
                if group.busy {
                    busy.push(group.key);
                }
                report.events.extend(group.events);
            }
        }
        tracing::info!(
            batches = report.batches,
            events = report.events.len(),
            done = report.count(|o| matches!(o, Outcome::Done)),
            "drain finished"
        );
        Ok(report)
    }
    .instrument(span)
    .await
}

/// Splits a batch (sorted by `created_at`) into its keys' events, each still in order.
fn group_by_key(batch: Vec<QueuedEvent>) -> Vec<(String, Vec<QueuedEvent>)> {
    let mut groups: Vec<(String, Vec<QueuedEvent>)> = Vec::new();
    for event in batch {
        match groups.iter_mut().find(|(key, _)| *key == event.lease_key) {
            Some((_, events)) => events.push(event),
            None => groups.push((event.lease_key.clone(), vec![event])),
        }
    }
    groups
}

struct GroupReport {
    key: String,
    busy: bool,
    events: Vec<EventReport>,
}

async fn process_group(
    platform: &Platform,
    router: &Router,
    options: &DrainOptions,
    key: String,
    events: Vec<QueuedEvent>,
) -> GroupReport {
    let lease = match Lease::acquire(platform, &key, options.lease) {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            let events = release_all(
                platform,
                options,
                &events,
                "its phone number is being worked on elsewhere",
            );
            return GroupReport {
                key,
                busy: true,
                events,
            };
        }
        Err(e) => {
            let reason = format!("the lease store failed: {e:#}");
            let events = release_all(platform, options, &events, &reason);
            return GroupReport {
                key,
                busy: true,
                events,
            };
        }
    };
    let queue = Queue::new(&*platform.sql);
    let mut lease = Some(lease);
    let mut reports = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let held = lease
            .as_ref()
            .expect("the lease is given up only after the last event");
        if let Err(lost) = held.check() {
            let reason = format!("{lost} before it was processed");
            reports.extend(release_all(platform, options, &events[index..], &reason));
            break;
        }
        if let Err(e) = queue.extend_leases(
            &event.lease_owner,
            platform.clock.now_ms(),
            options.event_lease_ms,
        ) {
            tracing::warn!(error = %format!("{e:#}"), "extending event leases failed");
        }
        let span = tracing::info_span!("event", id = %event.id, r#type = %event.event_type, attempt = event.attempts);
        let verdict = run_handler(router, held, event)
            .instrument(span.clone())
            .await;
        if index + 1 == events.len() {
            // Let the number go before the last outcome is recorded: from then on another drain may lease
            // the number's next events, and must find the lease free rather than bounce them.
            if let Some(lease) = lease.take() {
                lease.release();
            }
        }
        let outcome = span.in_scope(|| record(platform, options, event, verdict));
        reports.push(report(event, outcome));
    }
    GroupReport {
        key,
        busy: false,
        events: reports,
    }
}

/// What became of an event's handling, before it is recorded.
enum Verdict {
    /// No handler for its type.
    NoHandler,
    /// The handler's result.
    Handled(Result<(), ProcessError>),
}

async fn run_handler(router: &Router, lease: &Lease, event: &QueuedEvent) -> Verdict {
    match EventType::parse(&event.event_type).and_then(|t| router.handler(t)) {
        Some(handler) => Verdict::Handled(handler.handle(event, lease).await),
        None => Verdict::NoHandler,
    }
}

/// Records `verdict` as the event's next state, in one statement.
fn record(
    platform: &Platform,
    options: &DrainOptions,
    event: &QueuedEvent,
    verdict: Verdict,
) -> Outcome {
    let queue = Queue::new(&*platform.sql);
    let now = platform.clock.now_ms();
    match verdict {
        Verdict::NoHandler => {
            let reason = format!("no handler for event type {}", event.event_type);
            let recorded = queue.skip(event, &reason, now);
            settle(recorded.map(|ok| ok.then_some(Outcome::Skipped { reason })))
        }
        Verdict::Handled(Ok(())) => {
            settle(queue.ack(event, now).map(|ok| ok.then_some(Outcome::Done)))
        }
        Verdict::Handled(Err(ProcessError::Permanent { message })) => {
            tracing::warn!(error = %message, "permanent failure");
            let recorded = queue.bury(event, &message, now);
            settle(recorded.map(|ok| ok.then_some(Outcome::Dead { error: message })))
        }
        Verdict::Handled(Err(ProcessError::Busy {
            message,
            retry_after,
        })) => {
            let delay = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
            let recorded = queue.release(event, now.saturating_add(delay), now);
            settle(recorded.map(|ok| ok.then_some(Outcome::Released { reason: message })))
        }
        Verdict::Handled(Err(ProcessError::Retryable {
            message,
            retry_after,
        })) => {
            tracing::warn!(error = %message, "retryable failure");
            let recorded = queue.retry(event, &message, retry_after, options.max_attempts, now);
            settle(recorded.map(|retried| {
                retried.map(|r| match r {
                    Retried::Pending { available_at } => Outcome::Retry {
                        available_at,
                        error: message,
                    },
                    Retried::Dead => Outcome::Dead { error: message },
                })
            }))
        }
    }
}

/// The outcome of recording an outcome: `Ok(None)` means this drain no longer held the event.
fn settle(recorded: anyhow::Result<Option<Outcome>>) -> Outcome {
    match recorded {
        Ok(Some(outcome)) => outcome,
        Ok(None) => Outcome::Unrecorded {
            reason: "its lease expired and another drain took it over".into(),
        },
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "recording an event outcome failed");
            Outcome::Unrecorded {
                reason: format!("{e:#}"),
            }
        }
    }
}

fn release_all(
    platform: &Platform,
    options: &DrainOptions,
    events: &[QueuedEvent],
    reason: &str,
) -> Vec<EventReport> {
    let queue = Queue::new(&*platform.sql);
    let now = platform.clock.now_ms();
    events
        .iter()
        .map(|event| {
            let released = queue.release(event, now + options.busy_delay_ms, now);
            let outcome = settle(released.map(|ok| {
                ok.then(|| Outcome::Released {
                    reason: reason.to_owned(),
                })
            }));
            report(event, outcome)
        })
        .collect()
}

fn report(event: &QueuedEvent, outcome: Outcome) -> EventReport {
    EventReport {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        phone_number_id: event.phone_number_id.clone(),
        attempt: event.attempts,
        outcome,
    }
}

/// The answer of the private `/drain` route, sent before draining, and whether to drain.
pub fn answer_kick(request: &Request) -> (Response, bool) {
    if request.method == "POST" {
        (
            Response::json(202, &serde_json::json!({ "status": "draining" })),
            true,
        )
    } else {
        (api::method_not_allowed("POST"), false)
    }
}

/// The time a kick asks the drain to keep looking until (`?until=<ms>`), if it names one.
pub fn kick_linger_until(request: &Request) -> Option<i64> {
    request
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("until="))
        .and_then(|ms| ms.parse().ok())
}

/// Asks the drain at `url` to run now ([`DRAIN_URL`] on Spin) and, with nothing due, to look again at
/// `linger_until_ms` before it stops. It answers at once and drains after answering, so this returns
/// quickly; a failure only delays the events until the next tick.
pub async fn kick(http: &dyn HttpClient, url: &str, linger_until_ms: i64) -> anyhow::Result<()> {
    let span = tracing::info_span!("drain.kick", otel.kind = "client", url);
    async {
        let response = http
            .send(HttpRequest::new(
                Method::Post,
                format!("{url}?until={linger_until_ms}"),
            ))
            .await
            .context("kicking the drain")?;
        anyhow::ensure!(
            (200..300).contains(&response.status),
            "kicking the drain: status {}",
            response.status
        );
        Ok(())
    }
    .instrument(span)
    .await
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
