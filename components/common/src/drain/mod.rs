//! Drains the queue: leases a batch of due events, processes each phone number's events in `created_at`
//! order under that number's [`Lease`], different numbers concurrently, and records each outcome with one
//! statement. Repeats until nothing is due or the time budget is spent.
//!
//! An event that fails retryably goes back to the queue with backoff and does not hold back the later
//! events of its number (they do not depend on one another: every write is an idempotent upsert).

pub mod breaker;
mod handler;

use std::cell::Cell;

use anyhow::Context;
use futures::future::{self, Either};
use futures::stream::{self, FuturesUnordered, StreamExt};
use serde::Serialize;
use tracing::Instrument;

pub use handler::{EventHandler, ProcessError, Router};

use crate::api::{Request, Response};
use crate::configuration::SyncConfig;
use crate::domain::EventType;
use crate::lease::{Lease, LeaseConfig};
use crate::platform::{HttpClient, HttpRequest, Method, Platform};
use crate::queue::{Queue, QueuedEvent, Retried};

/// Why events are given back untried once an API refused our credentials.
const REFUSED: &str = "an API refuses our credentials; waiting for the breaker's probe";

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
    /// How long an event that keeps failing transiently is retried before it goes to `dead`.
    pub max_age_ms: i64,
    /// How long events wait when their number's lease is held elsewhere.
    pub busy_delay_ms: i64,
    /// The per-number lease.
    pub lease: LeaseConfig,
    /// When a kick names a time (`/drain?until=<ms>`): with nothing due, look again then before stopping,
    /// so an event stored just after the drain found the queue empty is not left for the tick.
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
            max_age_ms: i64::from(sync.queue_max_age_hours.max(1)) * 3_600_000,
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
    /// `dead`: a permanent error, or it kept failing past its age.
    Dead {
        /// The error.
        error: String,
    },
    /// `skipped`: no handler for its type.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Given back unprocessed, not counted as an attempt: its number or the page it writes is busy
    /// elsewhere, the API asked us to slow down, or an API refuses our credentials (breaker open).
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
    /// Why the drain paused without leasing: an API's breaker is open (see [`breaker`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// Events that had given up during an outage, replayed because an event went through again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replayed: Vec<String>,
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

/// [`drain`], tried again after a failure when the drain was kicked ([`DrainOptions::linger_until_ms`]
/// set) and its budget allows. A kicked drain is the only one the deliveries of its window started (the
/// others did not kick, [`crate::webhook::kick`]): stopped by a busy database it would leave their events
/// to the tick, a minute away.
pub async fn drain_retrying(
    platform: &Platform,
    router: &Router,
    options: &DrainOptions,
) -> anyhow::Result<DrainReport> {
    let started = platform.clock.now_ms();
    loop {
        match drain(platform, router, options).await {
            Err(e)
                if options.linger_until_ms.is_some()
                    && platform.clock.now_ms() - started + KICKED_RETRY_MS < options.budget_ms =>
            {
                tracing::warn!(error = %format!("{e:#}"), "kicked drain failed; trying again");
                platform
                    .clock
                    .sleep_ms(KICKED_RETRY_MS.unsigned_abs())
                    .await;
            }
            result => return result,
        }
    }
}

/// How long a kicked drain that failed waits before it tries again ([`crate::app::drain`]).
const KICKED_RETRY_MS: i64 = 1_000;

/// Drains the queue through `router` until nothing is due or `options.budget_ms` has passed.
///
/// A drain leases its next batch once the last one is finished, with one exception: a kicked drain's
/// linger moment ([`DrainOptions::linger_until_ms`]). The deliveries of its window after the first did
/// not kick, counting on that look, so the drain looks then whatever it is doing; what it leases runs
/// beside the batch still running, whose keys it leaves alone. Otherwise a batch held up by an API (a
/// `429`'s wait, inline retries: up to [`crate::outbound::MAX_SEND_MS`] a request) kept the window's later
/// events waiting with it, and no other drain was kicked for them.
pub async fn drain(
    platform: &Platform,
    router: &Router,
    options: &DrainOptions,
) -> anyhow::Result<DrainReport> {
    let owner = crate::ids::new_id("drain");
    let span = tracing::info_span!("drain", owner = %owner);
    async {
        crate::queue::sample_depth(platform);
        let queue = Queue::of(platform);
        let started = platform.clock.now_ms();
        let mut report = DrainReport {
            abandoned: queue.bury_abandoned(options.event_lease_ms, started)?,
            ..DrainReport::default()
        };
        // Keys found busy are not leased again in this run, so their events are not bounced back and forth.
        let mut busy: Vec<String> = Vec::new();
        // The batches being processed, and their keys.
        let mut running = FuturesUnordered::new();
        let mut in_hand: Vec<String> = Vec::new();
        let mut linger = options.linger_until_ms;
        let mut replayed = false;
        loop {
            let now = platform.clock.now_ms();
            let look_now = linger.is_some_and(|until| now >= until);
            if look_now {
                linger = None;
            }
            if (running.is_empty() || look_now) && now - started < options.budget_ms {
                let Some(limit) = batch_limit(platform, options, now, &mut report)? else {
                    if running.is_empty() {
                        break;
                    }
                    continue;
                };
                let exclude: Vec<String> = busy.iter().chain(&in_hand).cloned().collect();
                let batch =
                    queue.lease(&owner, now, options.event_lease_ms, limit.events, &exclude)?;
                if !batch.is_empty() {
                    report.batches += 1;
                    let groups = group_by_key(batch);
                    in_hand.extend(groups.iter().map(|(key, _)| key.clone()));
                    let probe = limit.probe;
                    running.push(async move {
                        (
                            probe,
                            process_batch(platform, router, options, groups).await,
                        )
                    });
                } else if running.is_empty() {
                    if let Some(until) = linger {
                        // Deliveries of the kick's window after the first did not kick: wait for the
                        // window to close, then look once more.
                        let wait = u64::try_from(until - now).unwrap_or(0);
                        platform.clock.sleep_ms(wait).await;
                        continue;
                    }
                    // Events released because their number was busy come back in `busy_delay_ms`: wait
                    // for them here (the holder may be done by then, or have taken them itself) rather
                    // than leave them to the next tick, a minute away.
                    let retry_at = if busy.is_empty() {
                        None
                    } else {
                        queue.next_due(&busy, now + options.busy_delay_ms)?
                    };
                    match retry_at {
                        Some(at) if at - started < options.budget_ms => {
                            let wait = u64::try_from(at - now).unwrap_or(0);
                            platform.clock.sleep_ms(wait.max(1)).await;
                            busy.clear();
                            continue;
                        }
                        _ => break,
                    }
                }
            }
            if running.is_empty() {
                break;
            }
            let finished = match linger {
                Some(until) => {
                    let wait = u64::try_from(until - platform.clock.now_ms()).unwrap_or(0);
                    match future::select(running.next(), platform.clock.sleep_ms(wait)).await {
                        Either::Left((finished, _)) => finished,
                        Either::Right(((), _)) => continue,
                    }
                }
                None => running.next().await,
            };
            let Some((probe, groups)) = finished else {
                continue;
            };
            let mut went_through = false;
            for group in groups {
                in_hand.retain(|key| *key != group.key);
                if group.busy {
                    busy.push(group.key);
                }
                went_through |= group.events.iter().any(|e| e.outcome == Outcome::Done);
                report.events.extend(group.events);
            }
            if went_through && probe {
                let closed = breaker::close_all(&*platform.sql)?;
                tracing::info!(services = ?closed, "breaker closed: an event went through");
            }
            if went_through && !replayed {
                // Once per run: an event got through, so whatever gave up during an outage may too.
                replayed = true;
                report.replayed = queue.replay_given_up(platform.clock.now_ms())?;
                if !report.replayed.is_empty() {
                    tracing::info!(
                        events = report.replayed.len(),
                        "replayed events that gave up during an outage"
                    );
                }
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

/// How many events a lease may take.
struct BatchLimit {
    events: u32,
    /// The one event let through to see whether an API takes our credentials again ([`breaker`]).
    probe: bool,
}

/// A batch, or one probe while an API's breaker is open; `None`, with the reason in `report.paused`,
/// while it is open and another drain has the interval's probe.
fn batch_limit(
    platform: &Platform,
    options: &DrainOptions,
    now: i64,
    report: &mut DrainReport,
) -> anyhow::Result<Option<BatchLimit>> {
    let breakers = breaker::open_breakers(&*platform.sql)?;
    if breakers.is_empty() {
        return Ok(Some(BatchLimit {
            events: options.batch_size,
            probe: false,
        }));
    }
    if breaker::take_probe(&*platform.sql, now)? {
        return Ok(Some(BatchLimit {
            events: 1,
            probe: true,
        }));
    }
    let why = breakers
        .iter()
        .map(|b| {
            format!(
                "{} refuses our credentials ({}): {}",
                b.service, b.status, b.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    tracing::warn!(reason = %why, "drain paused until a probe gets through");
    report.paused = Some(why);
    Ok(None)
}

/// Processes a batch's keys concurrently, each key's events in order. Once an API refuses our
/// credentials, no group of the batch tries another event.
async fn process_batch(
    platform: &Platform,
    router: &Router,
    options: &DrainOptions,
    groups: Vec<(String, Vec<QueuedEvent>)>,
) -> Vec<GroupReport> {
    let refused = Cell::new(false);
    stream::iter(groups)
        .map(|(key, events)| process_group(platform, router, options, &refused, key, events))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
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

/// Processes one number's events in order under its lease. `refused` is shared by the batch's groups:
/// once an API refuses our credentials, no group tries another event.
async fn process_group(
    platform: &Platform,
    router: &Router,
    options: &DrainOptions,
    refused: &Cell<bool>,
    key: String,
    events: Vec<QueuedEvent>,
) -> GroupReport {
    if refused.get() {
        let events = release_all(platform, options, &events, REFUSED);
        return GroupReport {
            key,
            busy: false,
            events,
        };
    }
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
    let events = process_under(
        platform,
        router,
        options,
        refused,
        Held::ReleaseBeforeLast(lease),
        &events,
    )
    .await;
    GroupReport {
        key,
        busy: false,
        events,
    }
}

/// Processes the events of its number that are due (or were just released because the number was busy)
/// under `lease`, which the caller holds and keeps: the periodic sync calls this between its own writes,
/// so a number's webhook events wait for one page of the sync, not for the whole sync. Returns what
/// happened to each event (none when nothing was due).
pub async fn drain_key_under(
    platform: &Platform,
    router: &Router,
    options: &DrainOptions,
    lease: &Lease,
    lease_key: &str,
) -> anyhow::Result<Vec<EventReport>> {
    let owner = crate::ids::new_id("drain");
    let queue = Queue::of(platform);
    let mut reports = Vec::new();
    loop {
        let now = platform.clock.now_ms();
        let events = queue.lease_key(
            &owner,
            lease_key,
            now,
            now + options.busy_delay_ms,
            options.event_lease_ms,
            options.batch_size,
        )?;
        if events.is_empty() {
            return Ok(reports);
        }
        let refused = Cell::new(false);
        let done = process_under(
            platform,
            router,
            options,
            &refused,
            Held::Kept(lease),
            &events,
        )
        .await;
        let stopped = done.len() < events.len()
            || done
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Released { .. }));
        reports.extend(done);
        if stopped || lease.check().is_err() {
            return Ok(reports);
        }
    }
}

/// A number lease under which events are processed.
enum Held<'a> {
    /// The drain's own: released just before the last event's outcome is recorded.
    ReleaseBeforeLast(Lease),
    /// The caller's, kept.
    Kept(&'a Lease),
}

/// Processes `events` (one key's, in order) under `held`, recording each outcome. Once an API refuses
/// our credentials (here or in another group sharing `refused`), the rest are given back untried.
async fn process_under(
    platform: &Platform,
    router: &Router,
    options: &DrainOptions,
    refused: &Cell<bool>,
    held: Held<'_>,
    events: &[QueuedEvent],
) -> Vec<EventReport> {
    let queue = Queue::of(platform);
    let (mut owned, kept) = match held {
        Held::ReleaseBeforeLast(lease) => (Some(lease), None),
        Held::Kept(lease) => (None, Some(lease)),
    };
    let mut reports = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let held = kept
            .or(owned.as_ref())
            .expect("the lease is given up only after the last event");
        if let Err(lost) = held.check() {
            let reason = format!("{lost} before it was processed");
            reports.extend(release_all(platform, options, &events[index..], &reason));
            break;
        }
        let now = platform.clock.now_ms();
        if let Err(e) = queue.extend_leases(&event.lease_owner, now, options.event_lease_ms) {
            tracing::warn!(error = %format!("{e:#}"), "extending event leases failed");
        }
        // An event leased under its call's id whose number became known meanwhile goes to the number's
        // lease, which the call's other events are under.
        if event.phone_number_id.is_none() && event.resource_id.is_some() {
            match queue.join_number(event, now) {
                Ok(false) => {}
                Ok(true) => {
                    let reason =
                        "its call's number became known: it joined the number's lease".into();
                    reports.push(report(event, Outcome::Released { reason }));
                    continue;
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    reports.push(report(event, Outcome::Unrecorded { reason }));
                    continue;
                }
            }
        }
        // An event that waited too long behind others may have been taken over by another drain: then it
        // is that drain's to process, not this one's.
        match queue.keep(event, now, options.event_lease_ms) {
            Ok(true) => {}
            Ok(false) => {
                let reason =
                    "its lease ran out while it waited, and another drain took it over".to_owned();
                reports.push(report(event, Outcome::Unrecorded { reason }));
                continue;
            }
            Err(e) => {
                reports.push(report(
                    event,
                    Outcome::Unrecorded {
                        reason: format!("{e:#}"),
                    },
                ));
                continue;
            }
        }
        let span = tracing::info_span!("event", id = %event.id, r#type = %event.event_type, attempt = event.attempts);
        let verdict = run_handler(router, held, event)
            .instrument(span.clone())
            .await;
        let unauthorized = matches!(
            verdict,
            Verdict::Handled(Err(ProcessError::Unauthorized { .. }))
        );
        if index + 1 == events.len() {
            // Let the number go before the last outcome is recorded: from then on another drain may lease
            // the number's next events, and must find the lease free rather than bounce them.
            if let Some(lease) = owned.take() {
                lease.release();
            }
        }
        let outcome = span.in_scope(|| record(platform, options, event, verdict));
        reports.push(report(event, outcome));
        if unauthorized || refused.get() {
            // The rest would be refused alike: they wait for the breaker's probe.
            refused.set(true);
            reports.extend(release_all(
                platform,
                options,
                &events[index + 1..],
                REFUSED,
            ));
            break;
        }
    }
    reports
}

/// What became of an event's handling, before it is recorded.
enum Verdict {
    /// No handler for its type.
    NoHandler,
    /// The handler's result.
    Handled(Result<(), ProcessError>),
}

async fn run_handler(router: &Router, lease: &Lease, event: &QueuedEvent) -> Verdict {
    let Some(event_type) = EventType::parse(&event.event_type) else {
        return Verdict::NoHandler;
    };
    match router.handler(event_type) {
        Some(handler) => Verdict::Handled(handler.handle(event_type, event, lease).await),
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
    let queue = Queue::of(platform);
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
        Verdict::Handled(Err(ProcessError::Throttled {
            message,
            retry_after,
        })) => {
            tracing::info!(reason = %message, "throttled; given back without spending an attempt");
            let delay = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
            let recorded = queue.release(event, now.saturating_add(delay), now);
            settle(recorded.map(|ok| ok.then_some(Outcome::Released { reason: message })))
        }
        Verdict::Handled(Err(ProcessError::Unauthorized {
            service,
            status,
            message,
        })) => {
            tracing::error!(service, status, error = %message, "credentials refused; opening the breaker");
            if let Err(e) = breaker::open(&*platform.sql, &service, status, &message, now) {
                tracing::error!(error = %format!("{e:#}"), "opening the breaker failed");
            }
            let recorded = queue.release(event, now, now);
            settle(recorded.map(|ok| ok.then_some(Outcome::Released { reason: message })))
        }
        Verdict::Handled(Err(ProcessError::Retryable {
            message,
            retry_after,
        })) => {
            tracing::warn!(error = %message, "retryable failure");
            let recorded = queue.retry(event, &message, retry_after, options.max_age_ms, now);
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
    let queue = Queue::of(platform);
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

/// The answer of the private `POST /drain` route, sent before draining.
pub fn answer_kick() -> Response {
    Response::json(202, &serde_json::json!({ "status": "draining" }))
}

/// The time a kick asks the drain to keep looking until (`?until=<ms>`), if it names one.
pub fn kick_linger_until(request: &Request) -> Option<i64> {
    request
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("until="))
        .and_then(|ms| ms.parse().ok())
}

/// Asks the drain at `url` to run now ([`DRAIN_URL`] on Spin) and, once nothing is due, to look again at
/// `linger_until_ms` before it stops. It answers at once and drains after answering, so this returns
/// quickly; a failure only delays the events until the next tick.
pub async fn kick(http: &dyn HttpClient, url: &str, linger_until_ms: i64) -> anyhow::Result<()> {
    let span = tracing::info_span!("drain.kick", otel.kind = "client", url);
    async {
        let target = format!("{url}?until={linger_until_ms}");
        let response = http
            .send(HttpRequest::new(Method::Post, target))
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
