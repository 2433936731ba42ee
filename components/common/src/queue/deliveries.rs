//! The intake database's deliveries (SQLite label `intake`, `migrations/intake/`): what the webhook
//! stores, with one insert, the one write of a delivery, until a drain takes them into the app's
//! database ([`super::Queue::admit`]). The intake has a database of its own because every delivery opens
//! a new connection, and a new connection parses its database's whole schema: the app's cost about a
//! third of a millisecond of every delivery, this one almost nothing (docs/performance.md).
//!
//! A delivery taken into the queue leaves its id in `admitted_deliveries` (a trigger, in the statement
//! that deletes it), so a redelivery is still answered as a duplicate by the intake's own insert, until
//! the housekeeping prunes ids as old as the queue's pruned events.

use anyhow::Context;

use super::{received_events, truncate, Enqueued, NewEvent, KICK_WINDOW_MS};
use crate::platform::{Rows, Sql, Value};

/// The columns of a delivery as [`Deliveries::oldest`] returns them, in order (the id first): those of
/// the queue's `inbox` (the columns of `events` the webhook knows).
pub const COLUMNS: &str =
    "id, type, phone_number_id, resource_id, created_at, received_at, payload, skip_reason";

/// What the intake database holds, counted as the queue counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Deliveries the drain will process (pending once admitted).
    pub pending: i64,
    /// Deliveries of types the sync ignores (skipped when received).
    pub skipped: i64,
    /// When the oldest of the `pending` was received, epoch ms.
    pub oldest_pending_received_at: Option<i64>,
}

/// The deliveries in an intake database.
#[derive(Clone, Copy)]
pub struct Deliveries<'a> {
    sql: &'a dyn Sql,
}

impl<'a> Deliveries<'a> {
    /// The deliveries in `sql`, the intake database.
    pub fn new(sql: &'a dyn Sql) -> Self {
        Self { sql }
    }

    /// Stores `event` unless a delivery with its id is waiting or was taken into the queue, and says
    /// whether its delivery kicks the drain: the first event the drain processes stored in a drain-kick
    /// window ([`KICK_WINDOW_MS`], [`crate::webhook::kick`]) opens it. One insert, which decides the
    /// window too (the trigger `deliveries_open_the_drain_kick_window` takes it), so exactly one
    /// delivery of a window kicks.
    pub fn store(&self, event: &NewEvent<'_>, now: i64) -> anyhow::Result<Enqueued> {
        let window = now - now.rem_euclid(KICK_WINDOW_MS);
        let rows = self
            .sql
            .execute(
                // The deliveries' key and the admitted ids refuse a redelivery in this one statement. A
                // window taken already, or a later one (a replica whose clock is ahead), is left to its
                // kick.
                "INSERT INTO deliveries (id, type, phone_number_id, resource_id, created_at,
                                         received_at, payload, skip_reason, kick_window)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,
                        CASE WHEN ?8 IS NULL
                              AND NOT EXISTS (SELECT 1 FROM drain_kick_window
                                              WHERE window_start >= ?9)
                             THEN ?9 END
                 WHERE NOT EXISTS (SELECT 1 FROM admitted_deliveries WHERE id = ?1)
                 ON CONFLICT (id) DO NOTHING
                 RETURNING kick_window",
                &[
                    event.id.into(),
                    event.event_type.into(),
                    event.phone_number_id.into(),
                    event.resource_id.into(),
                    event.created_at.into(),
                    now.into(),
                    event.payload.into(),
                    event.skip_reason.map(truncate).into(),
                    window.into(),
                ],
            )
            .with_context(|| format!("storing event {}", event.id))?;
        let Some(row) = rows.first() else {
            return Ok(Enqueued::Duplicate);
        };
        Ok(Enqueued::New {
            opened_kick_window: row.opt_i64("kick_window")?,
        })
    }

    /// The deliveries received first: `limit` of them, fewer when their payloads pass `max_bytes` (the
    /// first is taken whatever its size), so a drain never holds more than that in memory. Each row has
    /// the [`COLUMNS`]. A read: with nothing waiting, taking them costs no lock.
    pub fn oldest(&self, limit: i64, max_bytes: i64) -> anyhow::Result<Rows> {
        self.sql
            .execute(
                &format!(
                    "SELECT {COLUMNS} FROM (
                       SELECT *, sum(length(payload)) OVER (ORDER BY received_at, id) AS upto
                       FROM deliveries ORDER BY received_at, id LIMIT ?1)
                     WHERE upto - length(payload) < ?2"
                ),
                &[limit.into(), max_bytes.into()],
            )
            .context("reading the intake's deliveries")
    }

    /// Deletes the deliveries `ids`, which the queue holds now; their ids stay in
    /// `admitted_deliveries`. Deleting one already gone is no error.
    pub fn taken(&self, ids: &[Value]) -> anyhow::Result<()> {
        let placeholders = vec!["?"; ids.len()].join(",");
        self.sql
            .execute(
                &format!("DELETE FROM deliveries WHERE id IN ({placeholders})"),
                ids,
            )
            .context("clearing the deliveries taken into the queue")?;
        Ok(())
    }

    /// What waits in the intake database.
    pub fn waiting(&self) -> anyhow::Result<Waiting> {
        let rows = self
            .sql
            .execute(
                concat!(
                    "SELECT coalesce(sum(state = 'pending'), 0) AS pending,
                            coalesce(sum(state = 'skipped'), 0) AS skipped,
                            min(CASE WHEN state = 'pending' THEN received_at END) AS oldest
                     FROM ",
                    received_events!("deliveries")
                ),
                &[],
            )
            .context("counting the intake's deliveries")?;
        let Some(row) = rows.first() else {
            return Ok(Waiting::default());
        };
        Ok(Waiting {
            pending: row.i64("pending")?,
            skipped: row.i64("skipped")?,
            oldest_pending_received_at: row.opt_i64("oldest")?,
        })
    }

    /// Forgets the ids of deliveries received before `cutoff` that were taken into the queue; returns
    /// how many. A redelivery of one of them is stored again, and the queue refuses it as its own
    /// duplicate (or processes it again once the queue has pruned it too, as it would have before).
    pub fn prune_admitted(&self, cutoff: i64) -> anyhow::Result<u64> {
        let rows = self
            .sql
            .execute(
                "DELETE FROM admitted_deliveries WHERE received_at < ?1 RETURNING id",
                &[cutoff.into()],
            )
            .context("pruning admitted delivery ids")?;
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
    }
}
