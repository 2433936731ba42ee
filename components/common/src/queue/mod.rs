//! The event queue: the `events` table, and every state transition as one SQL statement (so it holds on a
//! remote libSQL, which keeps no transaction across calls). The webhook stores what it receives in the
//! intake database ([`deliveries`]), the cheapest durable write; a drain admits it into `events` before
//! leasing (and, the same way, what an older webhook stored in the app database's `inbox` table).
//!
//! ```text
//!   enqueue ──► deliveries ──admit──────────► pending ──lease──► leased ──ack─────────────────► done
//!                            │                                     ├──retry (backoff)─────────► pending
//!                            │                                     ├──release─────────────────► pending (busy, 429, lease lost, breaker open: no attempt spent)
//!                            │                                     ├──permanent error─────────► dead ──replay──► pending
//!                            │                                     ├──failing past max age────► dead (gave_up) ──an event gets through──► pending
//!                            │                                     ├──5 drains in a row died──► dead (abandoned)
//!                            │                                     ├──no handler──────────────► skipped
//!                            │                                     └──lease expired───────────► leased again, by the next drain
//!                            └──type not synced──► skipped
//! ```
//!
//! A lease is a visibility timeout: an event whose lease expired (its drain crashed or stalled) is due
//! again and is reclaimed by the next lease, so nothing is lost; `abandoned` counts the reclaims of events
//! a drain had started processing (`in_hand`) since the last attempt that ended with an outcome, and an
//! event whose drains keep dying on it (a poison event) is buried after [`MAX_ABANDONED`] in a row. Drains
//! that die now and then while a long outage keeps an event in hand do not bury it: the attempts between
//! those deaths end in a release or a retry, which start the count again. A transient failure is retried
//! with backoff until the event is older than the configured age (`queue_max_age_hours`): a count of
//! attempts would kill every event of a day-long outage. Events buried that way are replayed by themselves when an event succeeds again.
//!
//! Events are leased in `created_at` order, and never while another live lease holds an event with the
//! same `lease_key` (the phone number, else the call or message, else the event itself): one drain at a
//! time works on a number's events, in order.

pub mod backoff;
pub mod deliveries;

use std::time::Duration;

use anyhow::Context;

use crate::platform::{Platform, Row, Sql, Value};
use deliveries::Deliveries;

/// Longest error or reason stored; longer ones are cut (they are for people reading the DLQ).
pub const MAX_REASON_LEN: usize = 1000;
/// Leases that ran out in hand, one after the other with no outcome between them, before an event counts
/// as poison and is buried.
pub const MAX_ABANDONED: i64 = 5;
/// Times an event buried for failing past its age is replayed by itself.
pub const MAX_AUTOMATIC_REPLAYS: i64 = 3;
/// Events [`Queue::admit`] moves from the intake database, and from the inbox, at a time.
pub const ADMIT_BATCH: i64 = 500;
/// Payload bytes [`Queue::admit`] reads from the intake database at a time, beyond the first delivery:
/// what a drain holds in memory while it moves them (a webhook body is at most 1 MiB).
pub const ADMIT_BYTES: i64 = 4 * 1024 * 1024;

/// An event's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting until `available_at`.
    Pending,
    /// Being processed by a drain until `lease_expires_at`.
    Leased,
    /// Processed.
    Done,
    /// Stored but not processed (a type the sync ignores).
    Skipped,
    /// Gave up; waits for a replay.
    Dead,
}

impl State {
    /// The value in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Leased => "leased",
            State::Done => "done",
            State::Skipped => "skipped",
            State::Dead => "dead",
        }
    }

    fn parse(raw: &str) -> anyhow::Result<Self> {
        Ok(match raw {
            "pending" => State::Pending,
            "leased" => State::Leased,
            "done" => State::Done,
            "skipped" => State::Skipped,
            "dead" => State::Dead,
            other => anyhow::bail!("unknown event state {other:?}"),
        })
    }
}

/// An event to store, as intake read it.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// Event id (primary key: deliveries of the same event collapse onto one row).
    pub id: &'a str,
    /// Event type (canonical name for processed types, as sent otherwise).
    pub event_type: &'a str,
    /// Workspace number, when the payload names one.
    pub phone_number_id: Option<&'a str>,
    /// The call or message the event is about.
    pub resource_id: Option<&'a str>,
    /// The event's creation time, epoch ms.
    pub created_at: i64,
    /// The raw body.
    pub payload: &'a str,
    /// `Some(reason)` stores the event as `skipped`.
    pub skip_reason: Option<&'a str>,
}

/// Deliveries stored within one window of this many milliseconds share one drain kick: the first that
/// stores an event the drain processes opens the window ([`Queue::enqueue`]) and kicks.
pub const KICK_WINDOW_MS: i64 = 1_000;

/// What [`Queue::enqueue`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The event is new.
    New {
        /// The start (epoch ms) of the drain-kick window its delivery opened, when it is the first event
        /// the drain processes stored in that window: that delivery kicks the drain.
        opened_kick_window: Option<i64>,
    },
    /// An event with its id was stored before (a redelivery).
    Duplicate,
}

impl Enqueued {
    /// Whether the event was new.
    pub fn is_new(self) -> bool {
        matches!(self, Enqueued::New { .. })
    }
}

/// Received rows (of the intake's `deliveries`, of `inbox`, or the batch a drain took from the intake)
/// in the queue's shape, as a subquery of the table or common table expression `$from`: each in the state
/// admitting it gives it ([`Queue::admit`]): pending, or skipped and finished when received when its type
/// is one the sync ignores. Admitting and every count of the queue read received rows through it, so that
/// rule is written once. A fragment rather than a view: a view would be one more object in the schema
/// that every request's new connection parses.
macro_rules! received_events {
    ($from:literal) => {
        concat!(
            "(SELECT id, type, phone_number_id, resource_id, created_at, received_at, payload, skip_reason,
                     CASE WHEN skip_reason IS NULL THEN 'pending' ELSE 'skipped' END AS state,
                     CASE WHEN skip_reason IS NOT NULL THEN received_at END AS finished_at
              FROM ",
            $from,
            ")"
        )
    };
}
pub(crate) use received_events;

/// An event a drain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Event id.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// Workspace number (from the payload, or from an earlier event about the same call).
    pub phone_number_id: Option<String>,
    /// The call or message the event is about.
    pub resource_id: Option<String>,
    /// What serializes this event with others: its number, else its resource, else itself.
    pub lease_key: String,
    /// The event's creation time, epoch ms.
    pub created_at: i64,
    /// The raw body as received.
    pub payload: String,
    /// This attempt's number, from 1.
    pub attempts: u32,
    /// The drain holding the lease.
    pub lease_owner: String,
}

impl QueuedEvent {
    fn from_row(row: Row<'_>) -> anyhow::Result<Self> {
        Ok(Self {
            id: row.str("id")?.to_owned(),
            event_type: row.str("type")?.to_owned(),
            phone_number_id: row.opt_str("phone_number_id")?.map(str::to_owned),
            resource_id: row.opt_str("resource_id")?.map(str::to_owned),
            lease_key: row.str("lease_key")?.to_owned(),
            created_at: row.i64("created_at")?,
            payload: row.str("payload")?.to_owned(),
            attempts: u32::try_from(row.i64("attempts")?).unwrap_or(u32::MAX),
            lease_owner: row.str("lease_owner")?.to_owned(),
        })
    }
}

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// Back to `pending`, due at this time (epoch ms).
    Pending {
        /// When it is due.
        available_at: i64,
    },
    /// Its attempts were used up: now `dead`.
    Dead,
}

/// A dead event, as the DLQ lists it: ids, type, counts and times, never the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadEvent {
    /// Event id.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// Workspace number.
    pub phone_number_id: Option<String>,
    /// Call or message id.
    pub resource_id: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Why it died.
    pub last_error: Option<String>,
    /// Event creation time, epoch ms.
    pub created_at: i64,
    /// When intake stored it.
    pub received_at: i64,
    /// When it died.
    pub finished_at: Option<i64>,
}

/// Which dead events a replay moves back to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaySelection {
    /// Every dead event.
    All,
    /// These ids (those that are dead).
    Ids(Vec<String>),
    /// Every dead event of this type.
    Type(String),
}

/// The queue over the app's database, fed by the intake database's deliveries.
pub struct Queue<'a> {
    sql: &'a dyn Sql,
    deliveries: Deliveries<'a>,
}

impl<'a> Queue<'a> {
    /// The queue in `sql`, fed by the deliveries in `intake`.
    pub fn new(sql: &'a dyn Sql, intake: &'a dyn Sql) -> Self {
        Self {
            sql,
            deliveries: Deliveries::new(intake),
        }
    }

    /// The queue of `platform`'s databases.
    pub fn of(platform: &'a Platform) -> Self {
        Self::new(&*platform.sql, &*platform.intake)
    }

    /// Stores `event` in the intake database unless it was stored before, and says whether its delivery
    /// kicks the drain ([`Deliveries::store`]): the delivery touches nothing else, and
    /// [`Queue::admit`] moves the event into the queue before a drain leases.
    pub fn enqueue(&self, event: &NewEvent<'_>, now: i64) -> anyhow::Result<Enqueued> {
        self.deliveries.store(event, now)
    }

    /// Moves up to [`ADMIT_BATCH`] events into the queue, oldest first, as they were received: pending
    /// (due when received) or skipped (finished when received). The intake database's deliveries go
    /// straight into `events` by one insert that leaves out ids the queue holds already, then they are
    /// deleted from the intake database; then the rows an older webhook stored in the app database's
    /// `inbox` (during a rolling upgrade) move the same way. An event that names no number takes it
    /// from another event about the same call or message, in the queue or in the same batch, so that
    /// one call's events share one lease; the insert trigger (`events_join_their_number_by_resource`)
    /// does the same for events already queued. Every statement can be repeated: a drain that dies
    /// between two, or two drains admitting the same rows, leave each event queued once. Reads first, so
    /// that with nothing waiting it takes no write lock. Returns how many events it moved into `events`.
    pub fn admit(&self) -> anyhow::Result<usize> {
        let mut moved = self.take_deliveries()?;
        let waiting = self
            .sql
            .execute("SELECT 1 AS waiting FROM inbox LIMIT 1", &[])
            .context("looking for received events")?;
        if waiting.is_empty() {
            return Ok(moved);
        }
        moved += self.queue_received(
            "",
            received_events!("inbox"),
            " LIMIT ?1",
            &[ADMIT_BATCH.into()],
        )?;
        self.sql
            .execute(
                "DELETE FROM inbox WHERE EXISTS (SELECT 1 FROM events WHERE events.id = inbox.id)",
                &[],
            )
            .context("clearing admitted events from the inbox")?;
        Ok(moved)
    }

    /// Moves up to [`ADMIT_BATCH`] of the intake database's deliveries (at most [`ADMIT_BYTES`] of
    /// payload beyond the first) into `events`, leaving out those the queue holds already, and deletes
    /// them from the intake database. Returns how many it queued.
    fn take_deliveries(&self) -> anyhow::Result<usize> {
        let batch = self.deliveries.oldest(ADMIT_BATCH, ADMIT_BYTES)?;
        if batch.rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Value> = batch.rows.iter().map(|row| row[0].clone()).collect();
        let width = batch.columns.len();
        let row = format!("({})", vec!["?"; width].join(","));
        let rows = vec![row.as_str(); ids.len()].join(",");
        let values: Vec<Value> = batch.rows.into_iter().flatten().collect();
        let delivered = format!("delivered({}) AS (VALUES {rows}),", deliveries::COLUMNS);
        let moved = self.queue_received(&delivered, received_events!("delivered"), "", &values)?;
        self.deliveries.taken(&ids)?;
        Ok(moved)
    }

    /// Inserts the rows of `received` (a [`received_events!`] subquery, which may read the common table
    /// expressions `with` defines, each followed by a comma) into `events`, oldest first, up to `limit`
    /// (a `LIMIT` clause, or nothing), leaving out the ids the queue holds already. Returns how many it
    /// inserted.
    fn queue_received(
        &self,
        with: &str,
        received: &str,
        limit: &str,
        params: &[Value],
    ) -> anyhow::Result<usize> {
        let moved = self
            .sql
            .execute(
                &format!(
                    "INSERT INTO events (id, type, phone_number_id, resource_id, lease_key, created_at,
                                         received_at, payload, state, available_at, updated_at, finished_at,
                                         skip_reason)
                     WITH {with}
                          batch AS (SELECT * FROM {received} ORDER BY received_at, id{limit}),
                          known AS (
                            SELECT b.*, coalesce(
                                     b.phone_number_id,
                                     (SELECT m.phone_number_id FROM batch m
                                      WHERE m.resource_id = b.resource_id AND m.phone_number_id IS NOT NULL
                                      LIMIT 1),
                                     (SELECT e.phone_number_id FROM events e
                                      WHERE e.resource_id = b.resource_id AND e.phone_number_id IS NOT NULL
                                      LIMIT 1)) AS number
                            FROM batch b)
                     SELECT id, type, number, resource_id, coalesce(number, resource_id, id), created_at,
                            received_at, payload, state, received_at, received_at, finished_at, skip_reason
                     FROM known
                     WHERE true
                     ON CONFLICT (id) DO NOTHING
                     RETURNING id"
                ),
                params,
            )
            .context("moving received events into the queue")?;
        Ok(moved.len())
    }

    /// Admits what waits to be ([`Queue::admit`]), then leases up to `limit` due events for
    /// `lease_ms`, oldest first: pending events whose time has come and leased events whose lease
    /// expired (unless that was the [`MAX_ABANDONED`]th time: such an event waits for
    /// [`Queue::bury_abandoned`]). Events of a `lease_key` in `exclude`, or of a key another live lease
    /// holds, are left alone. Each lease counts as an attempt.
    pub fn lease(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
        exclude: &[String],
    ) -> anyhow::Result<Vec<QueuedEvent>> {
        self.lease_matching(owner, None, now, now, lease_ms, limit, exclude)
    }

    /// Leases up to `limit` events of `lease_key` that are due by `due_by` (a little later than `now`:
    /// events another drain just released because this key was busy count as due), oldest first, for a
    /// worker that holds the key's number lease already (the periodic sync letting a number's webhook
    /// events in between its own writes). Otherwise as [`Queue::lease`].
    pub fn lease_key(
        &self,
        owner: &str,
        lease_key: &str,
        now: i64,
        due_by: i64,
        lease_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<QueuedEvent>> {
        self.lease_matching(owner, Some(lease_key), now, due_by, lease_ms, limit, &[])
    }

    #[allow(clippy::too_many_arguments)]
    fn lease_matching(
        &self,
        owner: &str,
        lease_key: Option<&str>,
        now: i64,
        due_by: i64,
        lease_ms: i64,
        limit: u32,
        exclude: &[String],
    ) -> anyhow::Result<Vec<QueuedEvent>> {
        /// The events that may be leased now; `?5` a key or `NULL`, `?6` due by, `?7` excluded keys.
        macro_rules! leasable {
            () => {
                "FROM events AS e
                 WHERE (?5 IS NULL OR e.lease_key = ?5)
                   AND ((e.state = 'pending' AND e.available_at <= ?6)
                        OR (e.state = 'leased' AND e.lease_expires_at <= ?2
                            AND e.abandoned + e.in_hand < ?8))
                   AND NOT EXISTS (SELECT 1 FROM events AS busy
                                   WHERE busy.lease_key = e.lease_key AND busy.state = 'leased'
                                     AND busy.lease_expires_at > ?2)
                   AND e.lease_key NOT IN (SELECT value FROM json_each(?7))"
            };
        }
        self.admit()?;
        let params = [
            owner.into(),
            now.into(),
            now.saturating_add(lease_ms).into(),
            limit.into(),
            lease_key.into(),
            due_by.into(),
            serde_json::to_string(exclude)
                .context("encoding the excluded keys")?
                .into(),
            MAX_ABANDONED.into(),
        ];
        // Most drains a delivery kicks find nothing to lease (another drain holds the number). An UPDATE
        // takes the database's write lock even when it changes no row, which queues the intake's inserts
        // behind it, so a read (which takes no lock under WAL) asks first.
        let leasable = self
            .sql
            .execute(
                concat!("SELECT 1 AS leasable ", leasable!(), " LIMIT 1"),
                &params,
            )
            .context("looking for events to lease")?;
        if leasable.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .sql
            .execute(
                concat!(
                    "UPDATE events
                     SET state = 'leased', attempts = attempts + 1, lease_owner = ?1,
                         abandoned = abandoned + CASE WHEN state = 'leased' THEN in_hand ELSE 0 END,
                         in_hand = 0,
                         lease_expires_at = ?3, updated_at = ?2
                     WHERE id IN (SELECT e.id ",
                    leasable!(),
                    " ORDER BY e.created_at, e.id LIMIT ?4)
                     RETURNING id, type, phone_number_id, resource_id, lease_key, created_at, payload,
                               attempts, lease_owner"
                ),
                &params,
            )
            .context("leasing events")?;
        let mut events = rows
            .iter()
            .map(QueuedEvent::from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        // RETURNING has no order of its own.
        events.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(events)
    }

    /// The earliest time a pending event of one of `keys` is due, if it is due by `due_by`.
    pub fn next_due(&self, keys: &[String], due_by: i64) -> anyhow::Result<Option<i64>> {
        let rows = self
            .sql
            .execute(
                "SELECT min(available_at) AS at FROM events
                 WHERE state = 'pending' AND available_at <= ?2
                   AND lease_key IN (SELECT value FROM json_each(?1))",
                &[
                    serde_json::to_string(keys)
                        .context("encoding the keys")?
                        .into(),
                    due_by.into(),
                ],
            )
            .context("looking for due events")?;
        Ok(rows.first().and_then(|r| r.opt_i64("at").ok().flatten()))
    }

    /// Pushes the expiry of every live lease `owner` holds to `now + lease_ms` (a drain's heartbeat).
    pub fn extend_leases(&self, owner: &str, now: i64, lease_ms: i64) -> anyhow::Result<()> {
        self.sql
            .execute(
                "UPDATE events SET lease_expires_at = ?3
                 WHERE state = 'leased' AND lease_owner = ?1 AND lease_expires_at > ?2",
                &[
                    owner.into(),
                    now.into(),
                    now.saturating_add(lease_ms).into(),
                ],
            )
            .context("extending leases")?;
        Ok(())
    }

    /// Renews this drain's lease on `event` to `now + lease_ms` and marks it in hand, if the lease is
    /// still live and still this drain's; `false` means another drain may have taken the event over, and
    /// it must not be processed. Called right before processing it.
    pub fn keep(&self, event: &QueuedEvent, now: i64, lease_ms: i64) -> anyhow::Result<bool> {
        let rows = self
            .sql
            .execute(
                "UPDATE events SET lease_expires_at = ?4, in_hand = 1
                 WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2 AND lease_expires_at > ?3
                 RETURNING id",
                &[
                    event.id.as_str().into(),
                    event.lease_owner.as_str().into(),
                    now.into(),
                    now.saturating_add(lease_ms).into(),
                ],
            )
            .with_context(|| format!("renewing the lease of event {}", event.id))?;
        Ok(!rows.is_empty())
    }

    /// Gives `event` back under its call's number when an event naming the number arrived after this
    /// drain leased it under the call's id: the insert trigger (`events_join_their_number_by_resource`)
    /// moves only pending events, and processing this one under the call's lease would let a drain
    /// holding the number's lease write the same page at the same time. `true` when it was given back
    /// (pending, due `now`, the lease's attempt not spent); called right before processing an event with
    /// no number.
    pub fn join_number(&self, event: &QueuedEvent, now: i64) -> anyhow::Result<bool> {
        // The number's event may not be admitted yet.
        self.admit()?;
        let rows = self
            .sql
            .execute(
                "UPDATE events
                 SET phone_number_id = (SELECT n.phone_number_id FROM events n
                                        WHERE n.resource_id = events.resource_id
                                          AND n.phone_number_id IS NOT NULL LIMIT 1),
                     lease_key = (SELECT n.phone_number_id FROM events n
                                  WHERE n.resource_id = events.resource_id
                                    AND n.phone_number_id IS NOT NULL LIMIT 1),
                     state = 'pending', attempts = max(attempts - 1, 0), available_at = ?3,
                     lease_owner = NULL, lease_expires_at = NULL, in_hand = 0, updated_at = ?3
                 WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2
                   AND phone_number_id IS NULL AND resource_id IS NOT NULL
                   AND EXISTS (SELECT 1 FROM events n WHERE n.resource_id = events.resource_id
                                                        AND n.phone_number_id IS NOT NULL)
                 RETURNING id",
                &[
                    event.id.as_str().into(),
                    event.lease_owner.as_str().into(),
                    now.into(),
                ],
            )
            .with_context(|| format!("moving event {} to its number's lease", event.id))?;
        Ok(!rows.is_empty())
    }

    /// Marks a leased event `done`. `false` when the lease was no longer this drain's.
    pub fn ack(&self, event: &QueuedEvent, now: i64) -> anyhow::Result<bool> {
        self.finish(event, State::Done, None, now)
    }

    /// Marks a leased event `dead` with `error` (a permanent failure).
    pub fn bury(&self, event: &QueuedEvent, error: &str, now: i64) -> anyhow::Result<bool> {
        self.finish(event, State::Dead, Some(error), now)
    }

    /// Marks a leased event `skipped` with `reason`.
    pub fn skip(&self, event: &QueuedEvent, reason: &str, now: i64) -> anyhow::Result<bool> {
        self.finish(event, State::Skipped, Some(reason), now)
    }

    fn finish(
        &self,
        event: &QueuedEvent,
        state: State,
        reason: Option<&str>,
        now: i64,
    ) -> anyhow::Result<bool> {
        let rows = self
            .sql
            .execute(
                "UPDATE events
                 SET state = ?4,
                     last_error = CASE WHEN ?4 = 'dead' THEN ?5 ELSE last_error END,
                     skip_reason = CASE WHEN ?4 = 'skipped' THEN ?5 ELSE skip_reason END,
                     lease_owner = NULL, lease_expires_at = NULL, in_hand = 0, finished_at = ?3,
                     updated_at = ?3
                 WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2
                 RETURNING id",
                &[
                    event.id.as_str().into(),
                    event.lease_owner.as_str().into(),
                    now.into(),
                    state.as_str().into(),
                    reason.map(truncate).into(),
                ],
            )
            .with_context(|| format!("marking event {} {}", event.id, state.as_str()))?;
        Ok(!rows.is_empty())
    }

    /// Schedules another attempt of a leased event after a transient `error`, with backoff (at least
    /// `retry_after`), or buries it (marked `gave_up`, so it is replayed once things work again) when it
    /// was received more than `max_age_ms` ago. `None` when the lease was no longer this drain's.
    pub fn retry(
        &self,
        event: &QueuedEvent,
        error: &str,
        retry_after: Option<Duration>,
        max_age_ms: i64,
        now: i64,
    ) -> anyhow::Result<Option<Retried>> {
        let delay = backoff::retry_delay_ms(event.attempts, retry_after, crate::ids::random_u64());
        let rows = self
            .sql
            .execute(
                "UPDATE events
                 SET state = CASE WHEN received_at <= ?4 THEN 'dead' ELSE 'pending' END,
                     gave_up = CASE WHEN received_at <= ?4 THEN 1 ELSE 0 END,
                     available_at = ?5, last_error = ?6,
                     finished_at = CASE WHEN received_at <= ?4 THEN ?3 END,
                     abandoned = CASE WHEN in_hand = 1 THEN 0 ELSE abandoned END,
                     lease_owner = NULL, lease_expires_at = NULL, in_hand = 0, updated_at = ?3
                 WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2
                 RETURNING state, available_at",
                &[
                    event.id.as_str().into(),
                    event.lease_owner.as_str().into(),
                    now.into(),
                    now.saturating_sub(max_age_ms).into(),
                    now.saturating_add(delay).into(),
                    truncate(error).into(),
                ],
            )
            .with_context(|| format!("scheduling a retry of event {}", event.id))?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(match State::parse(row.str("state")?)? {
            State::Dead => Retried::Dead,
            _ => Retried::Pending {
                available_at: row.i64("available_at")?,
            },
        }))
    }

    /// Gives a leased event back without counting the attempt, due at `available_at`: its number is
    /// being worked on elsewhere, the API asked us to slow down, our own lease ran out, or an API refuses
    /// our credentials until a person fixes them. None of these is the event's failure.
    pub fn release(
        &self,
        event: &QueuedEvent,
        available_at: i64,
        now: i64,
    ) -> anyhow::Result<bool> {
        let rows = self
            .sql
            .execute(
                "UPDATE events
                 SET state = 'pending', attempts = max(attempts - 1, 0), available_at = ?4,
                     abandoned = CASE WHEN in_hand = 1 THEN 0 ELSE abandoned END,
                     lease_owner = NULL, lease_expires_at = NULL, in_hand = 0, updated_at = ?3
                 WHERE id = ?1 AND state = 'leased' AND lease_owner = ?2
                 RETURNING id",
                &[
                    event.id.as_str().into(),
                    event.lease_owner.as_str().into(),
                    now.into(),
                    available_at.into(),
                ],
            )
            .with_context(|| format!("releasing event {}", event.id))?;
        Ok(!rows.is_empty())
    }

    /// Buries events whose drains kept dying while processing them (a poison event): their lease ran out
    /// in hand [`MAX_ABANDONED`] times in a row, the last time at least `silent_ms` ago — so a drain that is
    /// merely slow, and may still finish its attempt, is not overtaken. Returns their ids.
    pub fn bury_abandoned(&self, silent_ms: i64, now: i64) -> anyhow::Result<Vec<String>> {
        let silent_since = now.saturating_sub(silent_ms);
        // Every drain starts here and there is almost never anything to bury: a read says so without
        // the write lock (as in `lease_matching`).
        let abandoned = self
            .sql
            .execute(
                "SELECT 1 AS abandoned FROM events
                 WHERE state = 'leased' AND lease_expires_at <= ?1 AND abandoned + in_hand >= ?2
                 LIMIT 1",
                &[silent_since.into(), MAX_ABANDONED.into()],
            )
            .context("looking for abandoned events")?;
        if abandoned.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .sql
            .execute(
                "UPDATE events
                 SET state = 'dead',
                     last_error = 'abandoned: ' || (abandoned + in_hand) || ' drains in a row stopped '
                                  || 'while processing it (does it crash the app?); last error: '
                                  || coalesce(last_error, 'none'),
                     abandoned = abandoned + in_hand, in_hand = 0,
                     lease_owner = NULL, lease_expires_at = NULL, finished_at = ?1, updated_at = ?1
                 WHERE state = 'leased' AND lease_expires_at <= ?2 AND abandoned + in_hand >= ?3
                 RETURNING id",
                &[now.into(), silent_since.into(), MAX_ABANDONED.into()],
            )
            .context("burying abandoned events")?;
        rows.iter()
            .map(|row| row.str("id").map(str::to_owned))
            .collect()
    }

    /// Dead events, most recently dead first, optionally of one type; and how many there are in all.
    pub fn dead(
        &self,
        event_type: Option<&str>,
        limit: u32,
    ) -> anyhow::Result<(Vec<DeadEvent>, u64)> {
        let rows = self
            .sql
            .execute(
                "SELECT id, type, phone_number_id, resource_id, attempts, last_error, created_at,
                        received_at, finished_at
                 FROM events
                 WHERE state = 'dead' AND (?1 IS NULL OR type = ?1)
                 ORDER BY finished_at DESC, id
                 LIMIT ?2",
                &[event_type.into(), limit.into()],
            )
            .context("listing dead events")?;
        let events = rows
            .iter()
            .map(|row| {
                Ok(DeadEvent {
                    id: row.str("id")?.to_owned(),
                    event_type: row.str("type")?.to_owned(),
                    phone_number_id: row.opt_str("phone_number_id")?.map(str::to_owned),
                    resource_id: row.opt_str("resource_id")?.map(str::to_owned),
                    attempts: u32::try_from(row.i64("attempts")?).unwrap_or(u32::MAX),
                    last_error: row.opt_str("last_error")?.map(str::to_owned),
                    created_at: row.i64("created_at")?,
                    received_at: row.i64("received_at")?,
                    finished_at: row.opt_i64("finished_at")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let total = self
            .sql
            .execute(
                "SELECT count(*) AS n FROM events WHERE state = 'dead' AND (?1 IS NULL OR type = ?1)",
                &[event_type.into()],
            )
            .context("counting dead events")?
            .first()
            .map(|row| row.i64("n"))
            .transpose()?
            .unwrap_or(0);
        Ok((events, u64::try_from(total).unwrap_or(0)))
    }

    /// Moves events buried for failing past their age back to `pending`, due now (at most
    /// [`MAX_AUTOMATIC_REPLAYS`] times each): called once an API answers again. Returns their ids.
    pub fn replay_given_up(&self, now: i64) -> anyhow::Result<Vec<String>> {
        let rows = self
            .sql
            .execute(
                "UPDATE events
                 SET state = 'pending', attempts = 0, gave_up = 0, replays = replays + 1,
                     available_at = ?1, finished_at = NULL, updated_at = ?1
                 WHERE state = 'dead' AND gave_up = 1 AND replays < ?2
                 RETURNING id",
                &[now.into(), MAX_AUTOMATIC_REPLAYS.into()],
            )
            .context("replaying events that gave up")?;
        rows.iter()
            .map(|row| row.str("id").map(str::to_owned))
            .collect()
    }

    /// Moves the selected dead events back to `pending`, due now, with a fresh set of attempts. Returns
    /// their ids.
    pub fn replay(&self, selection: &ReplaySelection, now: i64) -> anyhow::Result<Vec<String>> {
        let (ids, event_type) = match selection {
            ReplaySelection::All => (Value::Null, Value::Null),
            ReplaySelection::Ids(ids) => (
                serde_json::to_string(ids)
                    .context("encoding the ids")?
                    .into(),
                Value::Null,
            ),
            ReplaySelection::Type(t) => (Value::Null, t.as_str().into()),
        };
        let rows = self
            .sql
            .execute(
                "UPDATE events
                 SET state = 'pending', attempts = 0, abandoned = 0, gave_up = 0, available_at = ?1,
                     finished_at = NULL, updated_at = ?1
                 WHERE state = 'dead'
                   AND (?2 IS NULL OR id IN (SELECT value FROM json_each(?2)))
                   AND (?3 IS NULL OR type = ?3)
                 RETURNING id",
                &[now.into(), ids, event_type],
            )
            .context("replaying dead events")?;
        rows.iter()
            .map(|row| row.str("id").map(str::to_owned))
            .collect()
    }
}

/// `text` cut to [`MAX_REASON_LEN`] characters.
pub(crate) fn truncate(text: &str) -> String {
    text.chars().take(MAX_REASON_LEN).collect()
}

/// Events per state, as `/stats` reports them.
#[derive(Debug, Default, serde::Serialize, PartialEq)]
pub struct QueueDepth {
    /// Waiting (including retries not yet due).
    pub pending: i64,
    /// Being processed.
    pub leased: i64,
    /// Processed.
    pub done: i64,
    /// Stored but not processed (types the sync ignores).
    pub skipped: i64,
    /// Gave up; replayable.
    pub dead: i64,
}

/// A dead event, for `/stats` and the status page.
#[derive(Debug, serde::Serialize, PartialEq)]
pub struct DeadLetter {
    /// Event id.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last error.
    pub last_error: Option<String>,
}

/// How many events reached one outcome in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcomes {
    /// `Done`, `Skipped` or `Dead`.
    pub state: State,
    /// `finished_at` divided by the bucket's length.
    pub bucket: i64,
    /// Events.
    pub count: i64,
}

/// What the queue holds, for `/stats` and the status page.
impl Queue<'_> {
    /// Events per state; those still in the intake database or the inbox count as what admitting them
    /// makes them (pending, or skipped).
    pub fn depth(&self) -> anyhow::Result<QueueDepth> {
        let delivered = self.deliveries.waiting()?;
        let mut depth = QueueDepth {
            pending: delivered.pending,
            skipped: delivered.skipped,
            ..QueueDepth::default()
        };
        let rows = self.sql.execute(
            concat!(
                "SELECT state, COUNT(*) AS n FROM (
                   SELECT state FROM events
                   UNION ALL
                   SELECT state FROM ",
                received_events!("inbox"),
                ") GROUP BY state"
            ),
            &[],
        )?;
        for row in rows.iter() {
            let n = row.i64("n")?;
            match row.str("state")? {
                "pending" => depth.pending += n,
                "leased" => depth.leased = n,
                "done" => depth.done = n,
                "skipped" => depth.skipped += n,
                "dead" => depth.dead = n,
                _ => {}
            }
        }
        Ok(depth)
    }

    /// Events waiting (in the intake database, the inbox or the queue) or being processed.
    pub fn waiting(&self) -> anyhow::Result<i64> {
        let delivered = self.deliveries.waiting()?.pending;
        let rows = self.sql.execute(
            concat!(
                "SELECT (SELECT COUNT(*) FROM events WHERE state IN ('pending', 'leased'))
                      + (SELECT COUNT(*) FROM ",
                received_events!("inbox"),
                " WHERE state IN ('pending', 'leased')) AS n"
            ),
            &[],
        )?;
        Ok(delivered + rows.first().map_or(Ok(0), |r| r.i64("n"))?)
    }

    /// When intake stored the oldest event still waiting (in the intake database, the inbox or the
    /// queue) or being processed (epoch ms).
    pub fn oldest_waiting_received_at(&self) -> anyhow::Result<Option<i64>> {
        let delivered = self.deliveries.waiting()?.oldest_pending_received_at;
        let rows = self.sql.execute(
            concat!(
                "SELECT MIN(received_at) AS oldest FROM (
                   SELECT received_at FROM events WHERE state IN ('pending', 'leased')
                   UNION ALL
                   SELECT received_at FROM ",
                received_events!("inbox"),
                " WHERE state IN ('pending', 'leased'))"
            ),
            &[],
        )?;
        let queued = rows
            .first()
            .and_then(|r| r.opt_i64("oldest").ok().flatten());
        Ok(match (queued, delivered) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// The `limit` dead events that died (or were last touched) most recently, newest first.
    pub fn recent_dead(&self, limit: i64) -> anyhow::Result<Vec<DeadLetter>> {
        self.sql
            .execute(
                "SELECT id, type, attempts, last_error FROM events WHERE state = 'dead'
                 ORDER BY updated_at DESC LIMIT ?1",
                &[limit.into()],
            )?
            .iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.str("id")?.to_owned(),
                    event_type: r.str("type")?.to_owned(),
                    attempts: r.i64("attempts")?,
                    last_error: r.opt_str("last_error")?.map(String::from),
                })
            })
            .collect()
    }

    /// Events that reached an outcome (done, skipped, dead) at or after `since_ms`, counted per outcome
    /// and per bucket of `bucket_ms`; an event of a type the sync ignores is skipped when received, even
    /// while it waits in the inbox. One still in the intake database counts once a drain has taken it
    /// (within the second it was kicked for, or the minute's tick), in the bucket of its arrival.
    pub fn outcomes_since(&self, since_ms: i64, bucket_ms: i64) -> anyhow::Result<Vec<Outcomes>> {
        // `events_finished (state, finished_at)` answers this without reading the payloads.
        self.sql
            .execute(
                concat!(
                    "SELECT state, finished_at / ?2 AS bucket, COUNT(*) AS n FROM (
                       SELECT state, finished_at FROM events
                       WHERE state IN ('done', 'skipped', 'dead') AND finished_at >= ?1
                       UNION ALL
                       SELECT state, finished_at FROM ",
                    received_events!("inbox"),
                    " WHERE state IN ('done', 'skipped', 'dead') AND finished_at >= ?1)
                     GROUP BY state, bucket"
                ),
                &[since_ms.into(), bucket_ms.into()],
            )?
            .iter()
            .map(|r| {
                Ok(Outcomes {
                    state: State::parse(r.str("state")?)?,
                    bucket: r.i64("bucket")?,
                    count: r.i64("n")?,
                })
            })
            .collect()
    }
}

/// The metric under which [`sample_depth`] keeps the queue depth per minute (read by `stats`).
pub const DEPTH_METRIC: &str = "queue.waiting";

/// Records how many events wait or are being processed as this minute's queue depth (the minute keeps its
/// peak). The drain calls it each time it starts, so a tick samples it at least once a minute. A failure is
/// logged, never returned: sampling must not stop a drain.
pub fn sample_depth(platform: &Platform) {
    match Queue::of(platform).waiting() {
        Ok(n) => crate::metrics::peak(platform, DEPTH_METRIC, n),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not sample the queue depth"),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{migrated_platform, state_of, T0};

    fn new_event<'a>(id: &'a str, number: Option<&'a str>, created_at: i64) -> NewEvent<'a> {
        NewEvent {
            id,
            event_type: "call.completed",
            phone_number_id: number,
            resource_id: None,
            created_at,
            payload: "{}",
            skip_reason: None,
        }
    }

    fn attempts_of(sql: &dyn Sql, id: &str) -> i64 {
        sql.execute("SELECT attempts FROM events WHERE id = ?1", &[id.into()])
            .unwrap()
            .first()
            .unwrap()
            .i64("attempts")
            .unwrap()
    }

    fn ids_in(sql: &dyn Sql, table: &str) -> Vec<String> {
        sql.execute(&format!("SELECT id FROM {table} ORDER BY id"), &[])
            .unwrap()
            .iter()
            .map(|r| r.str("id").unwrap().to_owned())
            .collect()
    }

    fn inbox_ids(sql: &dyn Sql) -> Vec<String> {
        ids_in(sql, "inbox")
    }

    fn delivery_ids(platform: &Platform) -> Vec<String> {
        ids_in(&*platform.intake, "deliveries")
    }

    #[tokio::test]
    async fn the_first_processed_event_stored_in_each_window_opens_it() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        let window = T0 - T0.rem_euclid(KICK_WINDOW_MS);
        let opened = |id, skip_reason, now| {
            let event = NewEvent {
                skip_reason,
                ..new_event(id, Some("PN1"), T0)
            };
            match queue.enqueue(&event, now).unwrap() {
                Enqueued::New { opened_kick_window } => opened_kick_window,
                Enqueued::Duplicate => panic!("{id} was stored before"),
            }
        };
        assert_eq!(
            opened("S1", Some("ignored"), window),
            None,
            "an event the drain skips kicks nothing"
        );
        assert_eq!(opened("A", None, window + 10), Some(window));
        assert_eq!(
            queue
                .enqueue(&new_event("A", Some("PN1"), T0), window + 20)
                .unwrap(),
            Enqueued::Duplicate
        );
        queue.admit().unwrap();
        assert_eq!(
            opened("B", None, window + KICK_WINDOW_MS - 1),
            None,
            "a later event of the same window, its opener admitted already"
        );
        let next = window + KICK_WINDOW_MS;
        assert_eq!(opened("C", None, next), Some(next));
        assert_eq!(
            opened("D", None, next - 1),
            None,
            "a replica whose clock is behind, once a later window is open"
        );
    }

    #[tokio::test]
    async fn enqueue_is_idempotent_and_skipped_events_are_finished_with_a_reason() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        assert!(queue
            .enqueue(&new_event("EV1", Some("PN1"), T0), T0)
            .unwrap()
            .is_new());
        assert_eq!(
            queue
                .enqueue(&new_event("EV1", Some("PN1"), T0), T0 + 5)
                .unwrap(),
            Enqueued::Duplicate,
            "a redelivery while the event waits in the intake database"
        );
        let skipped = NewEvent {
            skip_reason: Some("contacts are not synced"),
            ..new_event("EV2", None, T0)
        };
        assert!(queue.enqueue(&skipped, T0).unwrap().is_new());
        assert_eq!(delivery_ids(&platform), ["EV1", "EV2"]);
        assert!(
            inbox_ids(&*platform.sql).is_empty(),
            "intake writes only the intake database"
        );
        assert_eq!(queue.admit().unwrap(), 2);
        assert!(delivery_ids(&platform).is_empty());
        assert!(inbox_ids(&*platform.sql).is_empty());
        assert_eq!(
            queue
                .enqueue(&new_event("EV1", Some("PN1"), T0), T0 + 9)
                .unwrap(),
            Enqueued::Duplicate,
            "a redelivery once the event is queued"
        );
        assert!(delivery_ids(&platform).is_empty());
        let row = platform
            .sql
            .execute(
                "SELECT state, skip_reason, finished_at, lease_key FROM events WHERE id = 'EV2'",
                &[],
            )
            .unwrap();
        let row = row.first().unwrap();
        assert_eq!(row.str("state").unwrap(), "skipped");
        assert_eq!(row.str("skip_reason").unwrap(), "contacts are not synced");
        assert_eq!(row.opt_i64("finished_at").unwrap(), Some(T0));
        assert_eq!(row.str("lease_key").unwrap(), "EV2");
        // Skipped events are never leased.
        let leased = queue.lease("d", T0 + 1, 1000, 10, &[]).unwrap();
        assert_eq!(
            leased.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["EV1"]
        );
    }

    #[tokio::test]
    async fn an_admitted_event_is_queued_as_it_was_received() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        let event = NewEvent {
            resource_id: Some("AC1"),
            payload: r#"{"id":"EV1"}"#,
            ..new_event("EV1", Some("PN1"), T0 - 60_000)
        };
        queue.enqueue(&event, T0).unwrap();
        // Admitted later, by a drain at T0 + 30 s: every time is the delivery's.
        let leased = queue.lease("d", T0 + 30_000, 1000, 10, &[]).unwrap();
        let expected = QueuedEvent {
            id: "EV1".into(),
            event_type: "call.completed".into(),
            phone_number_id: Some("PN1".into()),
            resource_id: Some("AC1".into()),
            lease_key: "PN1".into(),
            created_at: T0 - 60_000,
            payload: r#"{"id":"EV1"}"#.into(),
            attempts: 1,
            lease_owner: "d".into(),
        };
        assert_eq!(leased, [expected]);
        let times = platform
            .sql
            .execute(
                "SELECT received_at, available_at FROM events WHERE id = 'EV1'",
                &[],
            )
            .unwrap();
        let times = times.first().unwrap();
        assert_eq!(times.i64("received_at").unwrap(), T0);
        assert_eq!(times.i64("available_at").unwrap(), T0);
    }

    #[tokio::test]
    async fn admitting_again_after_a_drain_died_between_its_statements_queues_each_event_once() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue
            .enqueue(&new_event("EV1", Some("PN1"), T0), T0)
            .unwrap();
        queue.admit().unwrap();
        // What a drain that died after moving EV1, before clearing it, leaves behind.
        platform
            .sql
            .execute(
                "INSERT INTO inbox (id, type, created_at, received_at, payload)
                 VALUES ('EV1', 'call.completed', ?1, ?1, '{}')",
                &[T0.into()],
            )
            .unwrap();
        queue
            .enqueue(&new_event("EV2", Some("PN1"), T0 + 1), T0 + 1)
            .unwrap();
        assert_eq!(queue.admit().unwrap(), 1, "EV1 was queued already");
        assert!(inbox_ids(&*platform.sql).is_empty());
        assert_eq!(queue.admit().unwrap(), 0);
        assert_eq!(crate::testing::event_count(&platform), 2);

        // What a drain that died after queueing EV3, before deleting its delivery, leaves
        // behind: the delivery is taken again, and queued once.
        queue
            .enqueue(&new_event("EV3", Some("PN1"), T0 + 2), T0 + 2)
            .unwrap();
        queue.admit().unwrap();
        platform
            .intake
            .execute(
                "INSERT INTO deliveries (id, type, created_at, received_at, payload)
                 VALUES ('EV3', 'call.completed', ?1, ?1, '{}')",
                &[(T0 + 2).into()],
            )
            .unwrap();
        assert_eq!(queue.admit().unwrap(), 0, "EV3 was queued already");
        assert!(delivery_ids(&platform).is_empty());
        assert!(inbox_ids(&*platform.sql).is_empty());
        assert_eq!(crate::testing::event_count(&platform), 3);
    }

    #[tokio::test]
    async fn a_drain_holds_at_most_the_admit_bytes_of_payload_beyond_the_first_delivery() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        let payload = "x".repeat(usize::try_from(ADMIT_BYTES / 2 + 1).unwrap());
        for (n, id) in ["EV1", "EV2", "EV3"].into_iter().enumerate() {
            let at = T0 + i64::try_from(n).unwrap();
            let event = NewEvent {
                payload: &payload,
                ..new_event(id, Some("PN1"), at)
            };
            queue.enqueue(&event, at).unwrap();
        }
        assert_eq!(
            queue.admit().unwrap(),
            2,
            "two halves and a byte pass the limit"
        );
        assert_eq!(delivery_ids(&platform), ["EV3"]);
        assert_eq!(queue.admit().unwrap(), 1);
        assert!(delivery_ids(&platform).is_empty());
        let stored: i64 = platform
            .sql
            .execute("SELECT sum(length(payload)) AS n FROM events", &[])
            .unwrap()
            .first()
            .unwrap()
            .i64("n")
            .unwrap();
        assert_eq!(stored, 3 * (ADMIT_BYTES / 2 + 1));
    }

    #[tokio::test]
    async fn a_redelivery_after_its_admitted_id_was_pruned_is_still_queued_once() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        let deliveries = Deliveries::new(&*platform.intake);
        queue
            .enqueue(&new_event("EV1", Some("PN1"), T0), T0)
            .unwrap();
        queue.admit().unwrap();
        assert_eq!(deliveries.prune_admitted(T0).unwrap(), 0, "not old enough");
        assert_eq!(deliveries.prune_admitted(T0 + 1).unwrap(), 1);
        assert!(
            queue
                .enqueue(&new_event("EV1", Some("PN1"), T0), T0 + 10)
                .unwrap()
                .is_new(),
            "the intake database no longer knows it"
        );
        assert_eq!(queue.admit().unwrap(), 0, "the queue does");
        assert!(delivery_ids(&platform).is_empty());
        assert!(inbox_ids(&*platform.sql).is_empty());
        assert_eq!(crate::testing::event_count(&platform), 1);
    }

    #[tokio::test]
    async fn the_queue_depth_counts_the_events_not_yet_admitted() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue
            .enqueue(&new_event("EV1", Some("PN1"), T0 + 1), T0 + 1)
            .unwrap();
        let skipped = NewEvent {
            skip_reason: Some("contacts are not synced"),
            ..new_event("EV2", None, T0)
        };
        queue.enqueue(&skipped, T0 + 1).unwrap();
        // One an older webhook stored in the app database's inbox.
        platform
            .sql
            .execute(
                "INSERT INTO inbox (id, type, created_at, received_at, payload)
                 VALUES ('EV3', 'call.completed', ?1, ?1, '{}')",
                &[T0.into()],
            )
            .unwrap();
        let before = (
            queue.depth().unwrap(),
            queue.waiting().unwrap(),
            queue.oldest_waiting_received_at().unwrap(),
        );
        assert_eq!(before.0.pending, 2);
        assert_eq!(before.0.skipped, 1);
        assert_eq!(before.1, 2);
        assert_eq!(before.2, Some(T0));
        queue.admit().unwrap();
        let after = (
            queue.depth().unwrap(),
            queue.waiting().unwrap(),
            queue.oldest_waiting_received_at().unwrap(),
        );
        assert_eq!(before, after);
        assert_eq!(
            queue.outcomes_since(T0, 1000).unwrap(),
            [Outcomes {
                state: State::Skipped,
                bucket: (T0 + 1) / 1000,
                count: 1
            }],
            "the skipped event counts in the second it arrived"
        );
    }

    #[tokio::test]
    async fn an_event_without_a_number_inherits_it_from_its_call() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        let completed = NewEvent {
            resource_id: Some("AC1"),
            ..new_event("EV1", Some("PN1"), T0)
        };
        let summary = NewEvent {
            resource_id: Some("AC1"),
            event_type: "call.summary.completed",
            ..new_event("EV2", None, T0 + 1)
        };
        let orphan = NewEvent {
            resource_id: Some("AC2"),
            ..new_event("EV3", None, T0 + 2)
        };
        for event in [&completed, &summary, &orphan] {
            queue.enqueue(event, T0).unwrap();
        }
        let leased = queue.lease("d", T0, 1000, 10, &[]).unwrap();
        let keys: Vec<(&str, Option<&str>, &str)> = leased
            .iter()
            .map(|e| {
                (
                    e.id.as_str(),
                    e.phone_number_id.as_deref(),
                    e.lease_key.as_str(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("EV1", Some("PN1"), "PN1"),
                ("EV2", Some("PN1"), "PN1"),
                ("EV3", None, "AC2")
            ]
        );
        // From a call queued before, too.
        let transcript = NewEvent {
            resource_id: Some("AC1"),
            event_type: "call.transcript.completed",
            ..new_event("EV4", None, T0 + 3)
        };
        queue.enqueue(&transcript, T0 + 3).unwrap();
        queue.admit().unwrap();
        let key = platform
            .sql
            .execute("SELECT lease_key FROM events WHERE id = 'EV4'", &[])
            .unwrap();
        assert_eq!(key.first().unwrap().str("lease_key").unwrap(), "PN1");
    }

    #[tokio::test]
    async fn events_that_came_before_their_number_join_its_lease_when_it_arrives() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        let transcript = NewEvent {
            resource_id: Some("AC1"),
            event_type: "call.transcript.completed",
            ..new_event("EV1", None, T0)
        };
        queue.enqueue(&transcript, T0).unwrap();
        queue.admit().unwrap();
        let key = |id: &str| {
            platform
                .sql
                .execute("SELECT lease_key FROM events WHERE id = ?1", &[id.into()])
                .unwrap()
                .first()
                .unwrap()
                .str("lease_key")
                .unwrap()
                .to_owned()
        };
        assert_eq!(key("EV1"), "AC1");
        let completed = NewEvent {
            resource_id: Some("AC1"),
            ..new_event("EV2", Some("PN1"), T0 + 1)
        };
        queue.enqueue(&completed, T0).unwrap();
        queue.admit().unwrap();
        assert_eq!(key("EV1"), "PN1", "one call, one lease");
        let leased = queue.lease("d", T0, 1000, 10, &[]).unwrap();
        assert!(leased.iter().all(|e| e.lease_key == "PN1"), "{leased:?}");
    }

    /// Every trigger on `events` reads the events of one call, never every pending event: one that did
    /// made each admitted event cost as much as the backlog (quadratic admission during an outage).
    #[tokio::test]
    async fn the_insert_triggers_read_one_calls_events_however_long_the_backlog() {
        // SQLite keeps no statistics here, so the plan does not depend on how many events there are.
        let (_dir, platform, _clock) = migrated_platform().await;
        let triggers = platform
            .sql
            .execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'",
                &[],
            )
            .unwrap();
        assert!(!triggers.is_empty(), "the number join is a trigger");
        for trigger in triggers.iter() {
            let sql = trigger.str("sql").unwrap();
            let body = sql
                .split_once(" BEGIN ")
                .and_then(|(_, rest)| rest.rsplit_once("; END"))
                .map(|(body, _)| body)
                .unwrap_or_else(|| panic!("one statement between BEGIN and END: {sql}"));
            let statement = body
                .replace("NEW.phone_number_id", "'PN1'")
                .replace("NEW.resource_id", "'AC1'");
            let plan: Vec<String> = platform
                .sql
                .execute(&format!("EXPLAIN QUERY PLAN {statement}"), &[])
                .unwrap()
                .iter()
                .map(|row| row.str("detail").unwrap().to_owned())
                .collect();
            assert!(
                plan.iter().all(|step| step.contains("events_by_resource")),
                "{}: {plan:?}",
                trigger.str("name").unwrap()
            );
        }
    }

    #[tokio::test]
    async fn an_event_leased_under_its_call_when_the_number_arrives_goes_back_under_the_number() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        let transcript = NewEvent {
            resource_id: Some("AC1"),
            event_type: "call.transcript.completed",
            ..new_event("EV1", None, T0)
        };
        queue.enqueue(&transcript, T0).unwrap();
        let mut leased = queue.lease("d1", T0, 300_000, 10, &[]).unwrap();
        let held = leased.pop().expect("the transcript is leased");
        assert_eq!(held.lease_key, "AC1");
        assert!(
            !queue.join_number(&held, T0).unwrap(),
            "no number known yet"
        );
        let completed = NewEvent {
            resource_id: Some("AC1"),
            ..new_event("EV2", Some("PN1"), T0 + 1)
        };
        queue.enqueue(&completed, T0 + 1).unwrap();
        // The trigger leaves a leased event alone: a drain holding the number would take EV2 while d1
        // still holds EV1 under the call's id.
        assert!(queue.join_number(&held, T0 + 2).unwrap());
        assert!(!queue.keep(&held, T0 + 2, 300_000).unwrap());
        assert_eq!(attempts_of(&*platform.sql, "EV1"), 0);
        let leased = queue.lease("d2", T0 + 2, 300_000, 10, &[]).unwrap();
        let ids: Vec<(&str, &str)> = leased
            .iter()
            .map(|e| (e.id.as_str(), e.lease_key.as_str()))
            .collect();
        assert_eq!(ids, [("EV1", "PN1"), ("EV2", "PN1")]);
        assert!(
            !queue.join_number(&leased[0], T0 + 3).unwrap(),
            "it has its number"
        );
    }

    #[tokio::test]
    async fn lease_takes_due_events_oldest_first_and_one_drain_per_number() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue
            .enqueue(&new_event("B", Some("PN1"), T0 + 2), T0)
            .unwrap();
        queue
            .enqueue(&new_event("A", Some("PN1"), T0 + 1), T0)
            .unwrap();
        queue
            .enqueue(&new_event("C", Some("PN2"), T0 + 3), T0)
            .unwrap();
        queue
            .enqueue(&new_event("D", Some("PN3"), T0 + 4), T0)
            .unwrap();
        queue
            .enqueue(&new_event("E", Some("PN1"), T0 + 5), T0)
            .unwrap();

        let first = queue.lease("d1", T0, 60_000, 2, &[]).unwrap();
        assert_eq!(
            first.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert!(first
            .iter()
            .all(|e| e.attempts == 1 && e.lease_owner == "d1"));
        // PN1's later event E waits while d1's live lease holds A and B; PN2 is excluded by the caller.
        let second = queue
            .lease("d2", T0, 60_000, 10, &["PN2".to_owned()])
            .unwrap();
        assert_eq!(
            second.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["D"]
        );
        assert!(queue
            .lease("d3", T0, 60_000, 10, &["PN2".to_owned()])
            .unwrap()
            .is_empty());
        for event in &first {
            queue.ack(event, T0).unwrap();
        }
        let third = queue.lease("d3", T0, 60_000, 10, &[]).unwrap();
        assert_eq!(
            third.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["C", "E"]
        );
    }

    #[tokio::test]
    async fn an_expired_lease_is_reclaimed_and_its_old_owner_can_no_longer_ack() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue.enqueue(&new_event("A", Some("PN1"), T0), T0).unwrap();
        let stale = queue.lease("d1", T0, 1_000, 10, &[]).unwrap().remove(0);
        assert!(queue
            .lease("d2", T0 + 999, 1_000, 10, &[])
            .unwrap()
            .is_empty());
        let fresh = queue
            .lease("d2", T0 + 1_000, 1_000, 10, &[])
            .unwrap()
            .remove(0);
        assert_eq!(fresh.attempts, 2);
        assert!(!queue.ack(&stale, T0 + 1_001).unwrap());
        assert!(queue.ack(&fresh, T0 + 1_001).unwrap());
        assert_eq!(state_of(&platform, "A"), "done");
    }

    #[tokio::test]
    async fn extending_leases_keeps_the_events_from_being_reclaimed() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue.enqueue(&new_event("A", Some("PN1"), T0), T0).unwrap();
        queue.lease("d1", T0, 1_000, 10, &[]).unwrap();
        queue.extend_leases("d1", T0 + 900, 1_000).unwrap();
        assert!(queue
            .lease("d2", T0 + 1_500, 1_000, 10, &[])
            .unwrap()
            .is_empty());
        assert_eq!(
            queue.lease("d2", T0 + 1_900, 1_000, 10, &[]).unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn retry_backs_off_honours_retry_after_and_gives_up_by_age_not_by_count() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue.enqueue(&new_event("A", Some("PN1"), T0), T0).unwrap();
        let max_age = 5 * 3_600_000;
        let mut now = T0;
        for attempt in 1..=4u32 {
            let event = queue.lease("d", now, 60_000, 10, &[]).unwrap().remove(0);
            assert_eq!(event.attempts, attempt);
            let retry_after = Duration::from_secs(7_200);
            let outcome = queue
                .retry(
                    &event,
                    &format!("boom {attempt}"),
                    Some(retry_after),
                    max_age,
                    now,
                )
                .unwrap()
                .unwrap();
            match outcome {
                Retried::Pending { available_at } => {
                    assert!(
                        now - T0 < max_age,
                        "attempt {attempt} is past the age limit"
                    );
                    assert!(available_at >= now + 7_200_000, "Retry-After not honoured");
                    assert!(queue
                        .lease("d", available_at - 1, 60_000, 10, &[])
                        .unwrap()
                        .is_empty());
                    now = available_at;
                }
                Retried::Dead => assert_eq!(attempt, 4, "died before its age"),
            }
        }
        let (dead, total) = queue.dead(None, 10).unwrap();
        assert_eq!(total, 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("boom 4"));
        assert_eq!(dead[0].finished_at, Some(now));

        // Once things work again it comes back by itself, a bounded number of times.
        assert_eq!(queue.replay_given_up(now + 1).unwrap(), ["A"]);
        assert_eq!(state_of(&platform, "A"), "pending");
        for _ in 1..MAX_AUTOMATIC_REPLAYS {
            let event = queue
                .lease("d", now + 1, 60_000, 10, &[])
                .unwrap()
                .remove(0);
            queue
                .retry(&event, "still down", None, max_age, now + 1)
                .unwrap();
            assert_eq!(queue.replay_given_up(now + 1).unwrap(), ["A"]);
        }
        let event = queue
            .lease("d", now + 1, 60_000, 10, &[])
            .unwrap()
            .remove(0);
        queue
            .retry(&event, "still down", None, max_age, now + 1)
            .unwrap();
        assert!(queue.replay_given_up(now + 1).unwrap().is_empty());
        assert_eq!(state_of(&platform, "A"), "dead");
    }

    #[tokio::test]
    async fn release_does_not_count_an_attempt() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue.enqueue(&new_event("A", Some("PN1"), T0), T0).unwrap();
        let event = queue.lease("d", T0, 60_000, 10, &[]).unwrap().remove(0);
        assert!(queue.release(&event, T0 + 5_000, T0).unwrap());
        assert_eq!(attempts_of(&*platform.sql, "A"), 0);
        assert!(queue
            .lease("d", T0 + 4_999, 60_000, 10, &[])
            .unwrap()
            .is_empty());
        assert_eq!(
            queue.lease("d", T0 + 5_000, 60_000, 10, &[]).unwrap()[0].attempts,
            1
        );
    }

    #[tokio::test]
    async fn only_events_whose_drains_keep_dying_are_buried_and_only_once_silent() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue.enqueue(&new_event("A", Some("PN1"), T0), T0).unwrap();
        queue.enqueue(&new_event("B", Some("PN2"), T0), T0).unwrap();
        queue.enqueue(&new_event("C", Some("PN3"), T0), T0).unwrap();
        let mut now = T0;
        // A's drains die while processing it; B fails transiently every time; C waits in each dying
        // drain's batch without being started. Only A is abandoned.
        for round in 1..=MAX_ABANDONED {
            for event in queue.lease("d", now, 1_000, 10, &[]).unwrap() {
                match event.id.as_str() {
                    "A" => assert!(queue.keep(&event, now, 1_000).unwrap()),
                    "B" => {
                        assert!(queue.keep(&event, now, 1_000).unwrap());
                        queue.retry(&event, "503", None, i64::MAX, now).unwrap();
                    }
                    _ => {}
                }
            }
            now += 1_000;
            if round < MAX_ABANDONED {
                assert!(queue.bury_abandoned(0, now).unwrap().is_empty());
                // B's backoff is over by the next round.
                now += 3_600_000;
            }
        }
        // Expired, but only just: its drain may be slow rather than dead.
        assert!(queue.bury_abandoned(5_000, now).unwrap().is_empty());
        assert_eq!(queue.bury_abandoned(5_000, now + 5_000).unwrap(), ["A"]);
        assert_eq!(
            queue.lease("d", now + 5_000, 1_000, 10, &[]).unwrap()[0].id,
            "C",
            "C is leased again, not buried"
        );
        let (dead, _) = queue.dead(None, 10).unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0]
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("abandoned"),
            "{dead:?}"
        );
    }

    #[tokio::test]
    async fn drains_that_die_between_outcomes_of_an_event_do_not_bury_it() {
        // Seed 1628 of the simulation: through a 10-hour 429 storm an event is taken in hand and released
        // every two minutes, and crashes aimed at lease holders kill five of those drains hours apart. The
        // event kills nothing: the attempts in between end with an outcome, so it is not poison.
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue.enqueue(&new_event("A", Some("PN1"), T0), T0).unwrap();
        let mut now = T0;
        let die_in_hand = |now: i64| {
            let event = queue.lease("d", now, 1_000, 10, &[]).unwrap().remove(0);
            assert!(queue.keep(&event, now, 1_000).unwrap());
        };
        for _ in 0..MAX_ABANDONED - 1 {
            die_in_hand(now);
            now += 2_000;
        }
        // A drain that survives its attempt: Notion said 429, the event goes back without an attempt spent.
        let event = queue.lease("d", now, 1_000, 10, &[]).unwrap().remove(0);
        assert!(queue.keep(&event, now, 1_000).unwrap());
        assert!(queue.release(&event, now + 1_000, now).unwrap());
        now += 2_000;
        for _ in 0..MAX_ABANDONED - 1 {
            die_in_hand(now);
            now += 2_000;
        }
        assert!(
            queue.bury_abandoned(0, now).unwrap().is_empty(),
            "{} deaths, never {MAX_ABANDONED} in a row",
            2 * (MAX_ABANDONED - 1)
        );
        // A failed attempt with an outcome (a retry) breaks the row as well; then five in a row bury it.
        let event = queue.lease("d", now, 1_000, 10, &[]).unwrap().remove(0);
        assert!(queue.keep(&event, now, 1_000).unwrap());
        queue.retry(&event, "503", None, i64::MAX, now).unwrap();
        now += 3_600_000;
        for _ in 0..MAX_ABANDONED - 1 {
            die_in_hand(now);
            now += 2_000;
        }
        assert!(queue.bury_abandoned(0, now).unwrap().is_empty());
        die_in_hand(now);
        now += 2_000;
        assert_eq!(queue.bury_abandoned(0, now).unwrap(), ["A"]);
        let (dead, _) = queue.dead(None, 10).unwrap();
        assert!(
            dead[0]
                .last_error
                .as_deref()
                .unwrap()
                .starts_with(&format!("abandoned: {MAX_ABANDONED} drains in a row")),
            "{dead:?}"
        );
    }

    #[tokio::test]
    async fn a_drain_keeps_an_event_only_while_it_is_still_its_own() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue.enqueue(&new_event("A", Some("PN1"), T0), T0).unwrap();
        let mine = queue.lease("d1", T0, 1_000, 10, &[]).unwrap().remove(0);
        assert!(queue.keep(&mine, T0 + 900, 1_000).unwrap());
        // Renewed until T0 + 1_900: not reclaimable at T0 + 1_500.
        assert!(queue
            .lease("d2", T0 + 1_500, 1_000, 10, &[])
            .unwrap()
            .is_empty());
        let theirs = queue.lease("d2", T0 + 1_900, 1_000, 10, &[]).unwrap();
        assert_eq!(theirs.len(), 1);
        assert!(!queue.keep(&mine, T0 + 1_950, 1_000).unwrap());
        assert!(queue.keep(&theirs[0], T0 + 1_950, 1_000).unwrap());
    }

    #[tokio::test]
    async fn replay_selects_all_ids_or_a_type_and_resets_attempts() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        for (id, event_type) in [
            ("A", "call.completed"),
            ("B", "message.received"),
            ("C", "call.completed"),
        ] {
            let event = NewEvent {
                event_type,
                ..new_event(id, Some(id), T0)
            };
            queue.enqueue(&event, T0).unwrap();
        }
        queue.enqueue(&new_event("P", Some("PN9"), T0), T0).unwrap();
        for event in queue.lease("d", T0, 60_000, 10, &[]).unwrap() {
            if event.id != "P" {
                queue.bury(&event, "bad data", T0).unwrap();
            }
        }
        let mut by_type = queue
            .replay(&ReplaySelection::Type("call.completed".into()), T0 + 1)
            .unwrap();
        by_type.sort();
        assert_eq!(by_type, ["A", "C"]);
        assert_eq!(attempts_of(&*platform.sql, "A"), 0);
        assert_eq!(state_of(&platform, "A"), "pending");
        // A leased (not dead) event is never replayed.
        let by_id = queue
            .replay(
                &ReplaySelection::Ids(vec!["B".into(), "P".into(), "nope".into()]),
                T0 + 1,
            )
            .unwrap();
        assert_eq!(by_id, ["B"]);
        assert_eq!(state_of(&platform, "P"), "leased");
        assert!(queue
            .replay(&ReplaySelection::All, T0 + 1)
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn long_errors_are_cut() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let queue = Queue::of(&platform);
        queue.enqueue(&new_event("A", Some("PN1"), T0), T0).unwrap();
        let event = queue.lease("d", T0, 60_000, 10, &[]).unwrap().remove(0);
        queue.bury(&event, &"x".repeat(5_000), T0).unwrap();
        let (dead, _) = queue.dead(Some("call.completed"), 10).unwrap();
        assert_eq!(dead[0].last_error.as_ref().unwrap().len(), MAX_REASON_LEN);
        assert!(queue
            .dead(Some("message.received"), 10)
            .unwrap()
            .0
            .is_empty());
    }
}
