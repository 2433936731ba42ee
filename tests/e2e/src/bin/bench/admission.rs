//! Admission natively: the time a drain spends taking a batch of the intake database's deliveries into
//! the queue (`Queue::admit`, through the app's own native SQLite), into an empty queue and into a backlog
//! of pending events such as an outage leaves. Every delivery passes through it once, so a cost that grows
//! with the backlog slows every drain exactly when the queue is longest.

use std::time::{Duration, Instant};

use anyhow::ensure;
use common::platform::native::NativePlatformBuilder;
use common::queue::{NewEvent, Queue, ADMIT_BATCH};

use crate::Table;

/// Pending events already queued when the measured batches are admitted.
const BACKLOGS: [i64; 2] = [0, 10_000];
/// Batches measured at each backlog.
const BATCHES: i64 = 4;
/// A message event's body is about this long.
const PAYLOAD_BYTES: usize = 1_500;

pub async fn admission(table: &mut Table) -> anyhow::Result<()> {
    let payload = "x".repeat(PAYLOAD_BYTES);
    for backlog in BACKLOGS {
        let dir = tempfile::tempdir()?;
        let platform = NativePlatformBuilder::new(dir.path()).build()?;
        common::migrations::ensure_checked(&platform).await?;
        let queue = Queue::of(&platform);
        let mut stored = 0;
        let mut store = |count: i64| -> anyhow::Result<()> {
            for _ in 0..count {
                let id = format!("EV{stored}");
                // Each event about a call or message of its own, on one number: the number join's
                // trigger runs for every one.
                let resource = format!("AC{stored}");
                let event = NewEvent {
                    id: &id,
                    event_type: "message.received",
                    phone_number_id: Some("PN1"),
                    resource_id: Some(&resource),
                    created_at: stored,
                    payload: &payload,
                    skip_reason: None,
                };
                ensure!(queue.enqueue(&event, stored)?.is_new(), "{id} stored twice");
                stored += 1;
            }
            Ok(())
        };
        for _ in 0..backlog / ADMIT_BATCH {
            store(ADMIT_BATCH)?;
            queue.admit()?;
        }
        let mut took = Duration::ZERO;
        let mut admitted = 0;
        for _ in 0..BATCHES {
            store(ADMIT_BATCH)?;
            let started = Instant::now();
            admitted += queue.admit()?;
            took += started.elapsed();
        }
        ensure!(
            admitted == usize::try_from(BATCHES * ADMIT_BATCH)?,
            "admitted {admitted} of {} deliveries",
            BATCHES * ADMIT_BATCH
        );
        table.add(
            format!("admission (native): {backlog} events pending"),
            format!(
                "{:.1} µs per event",
                took.as_secs_f64() * 1e6 / admitted as f64
            ),
            format!(
                "{BATCHES} batches of {ADMIT_BATCH} deliveries ({PAYLOAD_BYTES}-byte payloads) taken \
                 into a queue already holding {backlog} pending events; the same per event at every \
                 backlog means admission does not grow with the queue"
            ),
        );
    }
    Ok(())
}
