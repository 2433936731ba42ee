//! Leases that serialize all work on one name (a phone number id) across instances and components — the
//! drain and the periodic sync take the same lease — built on key-value `increment` alone.
//!
//! `increment` is the one key-value operation that is atomic on every Spin backend (compare-and-swap is
//! not: Redis reports a lost race as success, and Spin's SQLite store creates-if-absent by overwriting),
//! and there is no TTL. So time is cut into slots of [`LeaseConfig::window_ms`], and:
//!
//! - **acquire**: in the current slot `s`, read the slot's generation `g` (`increment(gen, 0)`), then
//!   `increment("lease:<name>:<s>:g<g>", 1)`; whoever gets `1` holds the lease until the slot ends.
//!   Everyone else gets a larger number and does not.
//! - **renew**: in the second half of its last slot, the holder wins slot `s + 1` the same way. Only
//!   the holder does this ahead of time — contenders only ever try the slot their clock is in — so a
//!   live holder always gets there first.
//! - **check**: before each write the holder checks that its slots cover now plus a safety margin
//!   (renewing first when due), and stops if not. A check is local: no other party can take a slot it
//!   won, so there is nothing to read.
//! - **release**: the holder increments the generation of each slot it holds (later slots first), which
//!   opens generation `g + 1` to the next contender at once. Only the holder of generation `g` ever
//!   moves the counter past `g`, so two holders never overlap within a slot.
//! - **crash**: a holder that stops renewing loses the lease when its last slot ends.
//!
//! Counter keys are only ever `increment`ed (Spin's default store keeps them as 8-byte integers and fails
//! on anything else); [`prune`] deletes the keys of slots long past.

use std::cell::RefCell;
use std::rc::Rc;

use crate::platform::{Clock, KeyValue, Platform};

/// Prefix of every lease key.
const PREFIX: &str = "lease:";

/// Lease timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Length of a slot. A holder that checks regularly is guaranteed at least half of this after each
    /// successful check, so one write step must take less than `window_ms / 2 - margin_ms`.
    pub window_ms: i64,
    /// Time kept in reserve: a lease with less than this left counts as lost (clock skew between
    /// instances, and the time between a check and the write it guards).
    pub margin_ms: i64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            window_ms: 120_000,
            margin_ms: 10_000,
        }
    }
}

/// The lease was lost (it ran out without a renewal); the holder must stop writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the lease on {name} was lost")]
pub struct LeaseLost {
    /// The leased name.
    pub name: String,
}

/// A slot this holder won, with the generation it won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    slot: i64,
    generation: i64,
}

/// A held lease. Dropping it releases it.
pub struct Lease {
    kv: Rc<dyn KeyValue>,
    clock: Rc<dyn Clock>,
    name: String,
    /// Names this holder in the logs, which say when each holder won, renewed and released the lease.
    holder: String,
    config: LeaseConfig,
    /// Slots won, ascending and consecutive; empty once released.
    held: RefCell<Vec<Held>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name)
            .field("holder", &self.holder)
            .field("held", &self.held.borrow())
            .finish()
    }
}

fn generation_key(name: &str, slot: i64) -> String {
    format!("{PREFIX}{name}:{slot}:gen")
}

fn slot_key(name: &str, slot: i64, generation: i64) -> String {
    format!("{PREFIX}{name}:{slot}:g{generation}")
}

/// Tries to win slot `slot` for `name`: `Some(generation)` when this call got the slot's current
/// generation first.
fn win(kv: &dyn KeyValue, name: &str, slot: i64) -> anyhow::Result<Option<i64>> {
    let generation = kv.increment(&generation_key(name, slot), 0)?;
    let position = kv.increment(&slot_key(name, slot, generation), 1)?;
    Ok((position == 1).then_some(generation))
}

impl Lease {
    /// Takes the lease on `name` if nobody holds it. `Ok(None)` when it is held elsewhere; `Err` when the
    /// key-value store failed.
    #[tracing::instrument(name = "lease.acquire", skip(platform, config), fields(otel.kind = "client"))]
    pub fn acquire(
        platform: &Platform,
        name: &str,
        config: LeaseConfig,
    ) -> anyhow::Result<Option<Lease>> {
        debug_assert!(
            config.margin_ms < config.window_ms / 2,
            "the margin must leave time to renew"
        );
        let slot = platform.clock.now_ms().div_euclid(config.window_ms);
        let Some(generation) = win(&*platform.kv, name, slot)? else {
            return Ok(None);
        };
        let lease = Lease {
            kv: platform.kv.clone(),
            clock: platform.clock.clone(),
            name: name.to_owned(),
            holder: crate::ids::new_id("LH"),
            config,
            held: RefCell::new(vec![Held { slot, generation }]),
        };
        // Won at the very end of a slot, possibly without the next one: not enough time to use.
        match lease.check() {
            Ok(()) => {
                tracing::info!(lease = %lease.name, holder = %lease.holder, until = lease.held_until(), "lease acquired");
                Ok(Some(lease))
            }
            Err(_) => Ok(None),
        }
    }

    /// The leased name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the lease ends unless renewed, epoch ms (0 once released).
    pub fn held_until(&self) -> i64 {
        self.held
            .borrow()
            .last()
            .map_or(0, |h| (h.slot + 1) * self.config.window_ms)
    }

    /// Confirms the lease still covers now plus the margin, renewing it when its last slot is half gone.
    /// Call before each write; on `Err` stop writing.
    pub fn check(&self) -> Result<(), LeaseLost> {
        let now = self.clock.now_ms();
        let until = self.held_until();
        if until - now <= self.config.window_ms / 2 && until - now > 0 {
            self.renew(until / self.config.window_ms);
        }
        if now + self.config.margin_ms < self.held_until() {
            Ok(())
        } else {
            Err(LeaseLost {
                name: self.name.clone(),
            })
        }
    }

    fn renew(&self, next_slot: i64) {
        let Some(last) = self.held.borrow().last().copied() else {
            return;
        };
        if last.slot >= next_slot {
            return;
        }
        match win(&*self.kv, &self.name, next_slot) {
            Ok(Some(generation)) => {
                self.held.borrow_mut().push(Held {
                    slot: next_slot,
                    generation,
                });
                tracing::info!(lease = %self.name, holder = %self.holder, until = self.held_until(), "lease renewed");
            }
            // Someone else has the next slot: keep going until this one ends, then stop.
            Ok(None) => tracing::warn!(name = %self.name, slot = next_slot, "lease renewal lost"),
            Err(e) => {
                tracing::warn!(name = %self.name, error = %format!("{e:#}"), "lease renewal failed")
            }
        }
    }

    /// Gives the lease up so the next contender can take it now rather than when the slot ends.
    pub fn release(self) {
        self.release_held();
    }

    fn release_held(&self) {
        let held = std::mem::take(&mut *self.held.borrow_mut());
        if held.is_empty() {
            return;
        }
        // Logged before the release takes effect, so the next holder's "acquired" always comes later.
        tracing::info!(lease = %self.name, holder = %self.holder, "lease released");
        let now = self.clock.now_ms();
        // Later slots first: whoever takes the current slot next finds the next one open to renew into.
        for h in held.iter().rev() {
            if (h.slot + 1) * self.config.window_ms <= now {
                continue;
            }
            if let Err(e) = self.kv.increment(&generation_key(&self.name, h.slot), 1) {
                tracing::warn!(name = %self.name, error = %format!("{e:#}"), "lease release failed; it ends with its slot");
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release_held();
    }
}

/// Deletes the keys of lease slots that ended more than two windows before `now` (the periodic work's
/// housekeeping). Returns how many keys were deleted.
pub fn prune(kv: &dyn KeyValue, now: i64, config: LeaseConfig) -> anyhow::Result<usize> {
    let oldest_kept = now.div_euclid(config.window_ms) - 2;
    let mut deleted = 0;
    for key in kv.keys_with_prefix(PREFIX)? {
        // `lease:<name>:<slot>:<gen|gN>`, read from the right so a name may contain `:`.
        let slot = key.rsplit(':').nth(1).and_then(|s| s.parse::<i64>().ok());
        if slot.is_some_and(|slot| slot < oldest_kept) {
            kv.delete(&key)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::{ManualClock, NativePlatformBuilder};

    const WINDOW: i64 = 10_000;
    const CONFIG: LeaseConfig = LeaseConfig {
        window_ms: WINDOW,
        margin_ms: 1_000,
    };
    /// The start of a slot.
    const SLOT_START: i64 = 1_760_000_000_000;

    fn contender(dir: &std::path::Path, clock: Rc<ManualClock>) -> Platform {
        NativePlatformBuilder::new(dir)
            .clock(clock)
            .build()
            .unwrap()
    }

    #[test]
    fn exactly_one_of_fifty_concurrent_contenders_wins_and_it_passes_on_when_not_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let now = SLOT_START + 1_000;
        let winners: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..50)
                .map(|i| {
                    let dir = dir.path().to_path_buf();
                    s.spawn(move || {
                        let platform = contender(&dir, Rc::new(ManualClock::at(now)));
                        let lease = Lease::acquire(&platform, "PN1", CONFIG).unwrap();
                        // A winner that stops renewing: it neither releases nor renews (a crash).
                        let won = lease.is_some();
                        std::mem::forget(lease);
                        won.then_some(i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(winners.len(), 1, "winners: {winners:?}");

        let clock = Rc::new(ManualClock::at(now));
        let platform = contender(dir.path(), clock.clone());
        // Still the crashed holder's slot: nobody else gets it, however late in the slot.
        clock.advance_ms(WINDOW - 1_001 - 1);
        assert!(Lease::acquire(&platform, "PN1", CONFIG).unwrap().is_none());
        // Its slot over, the next contender takes the lease.
        clock.advance_ms(2);
        assert!(Lease::acquire(&platform, "PN1", CONFIG).unwrap().is_some());
    }

    #[test]
    fn a_holder_that_renews_keeps_the_lease_across_slots() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(SLOT_START));
        let platform = contender(dir.path(), clock.clone());
        let holder = Lease::acquire(&platform, "PN1", CONFIG).unwrap().unwrap();
        assert_eq!(holder.held_until(), SLOT_START + WINDOW);
        for _ in 0..5 {
            // First half of the slot: no renewal needed yet.
            clock.advance_ms(WINDOW / 2 - 100);
            holder.check().unwrap();
            // Second half: the check renews into the next slot.
            clock.advance_ms(200);
            holder.check().unwrap();
            let contender_clock = Rc::new(ManualClock::at(holder.held_until() - WINDOW + 1));
            let other = contender(dir.path(), contender_clock);
            assert!(Lease::acquire(&other, "PN1", CONFIG).unwrap().is_none());
            clock.advance_ms(WINDOW / 2 - 100);
        }
    }

    #[test]
    fn a_holder_that_misses_its_renewal_loses_the_lease_and_is_told_so() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(SLOT_START));
        let platform = contender(dir.path(), clock.clone());
        let holder = Lease::acquire(&platform, "PN1", CONFIG).unwrap().unwrap();
        // It checks again only inside the margin before its slot ends; a contender whose clock is
        // already in the next slot has taken that one, so the holder is told to stop.
        clock.advance_ms(WINDOW - CONFIG.margin_ms);
        let other_clock = Rc::new(ManualClock::at(SLOT_START + WINDOW));
        let other = contender(dir.path(), other_clock);
        let next = Lease::acquire(&other, "PN1", CONFIG).unwrap();
        assert!(next.is_some());
        assert_eq!(holder.check(), Err(LeaseLost { name: "PN1".into() }));
    }

    #[test]
    fn release_lets_the_next_contender_in_at_once_and_only_one() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(SLOT_START + 100));
        let a = contender(dir.path(), clock.clone());
        let b = contender(dir.path(), clock.clone());
        let c = contender(dir.path(), clock.clone());
        let first = Lease::acquire(&a, "PN1", CONFIG).unwrap().unwrap();
        assert!(Lease::acquire(&b, "PN1", CONFIG).unwrap().is_none());
        first.release();
        let second = Lease::acquire(&b, "PN1", CONFIG).unwrap();
        assert!(second.is_some());
        assert!(Lease::acquire(&c, "PN1", CONFIG).unwrap().is_none());
        // Dropping releases too.
        drop(second);
        assert!(Lease::acquire(&c, "PN1", CONFIG).unwrap().is_some());
    }

    #[test]
    fn a_released_renewal_leaves_the_next_slot_open_to_the_next_holder() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(SLOT_START + WINDOW / 2 + 1));
        let a = contender(dir.path(), clock.clone());
        let b = contender(dir.path(), clock.clone());
        // Acquired in the second half: it already holds the next slot too.
        let first = Lease::acquire(&a, "PN1", CONFIG).unwrap().unwrap();
        assert_eq!(first.held_until(), SLOT_START + 2 * WINDOW);
        first.release();
        let second = Lease::acquire(&b, "PN1", CONFIG).unwrap().unwrap();
        assert_eq!(second.held_until(), SLOT_START + 2 * WINDOW);
    }

    #[test]
    fn names_are_independent() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(SLOT_START));
        let platform = contender(dir.path(), clock);
        let _one = Lease::acquire(&platform, "PN1", CONFIG).unwrap().unwrap();
        assert!(Lease::acquire(&platform, "PN2", CONFIG).unwrap().is_some());
    }

    #[test]
    fn prune_deletes_only_slots_long_past() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(SLOT_START));
        let platform = contender(dir.path(), clock.clone());
        Lease::acquire(&platform, "PN1", CONFIG)
            .unwrap()
            .unwrap()
            .release();
        platform.kv.set("other:key", b"x").unwrap();
        clock.advance_ms(2 * WINDOW);
        let recent = Lease::acquire(&platform, "PN1", CONFIG).unwrap().unwrap();
        assert_eq!(prune(&*platform.kv, clock.now_ms(), CONFIG).unwrap(), 0);
        clock.advance_ms(WINDOW);
        // The first slot's generation and winner keys (the released `g0` and the `gen` counter).
        assert_eq!(prune(&*platform.kv, clock.now_ms(), CONFIG).unwrap(), 2);
        assert!(platform.kv.get("other:key").unwrap().is_some());
        drop(recent);
        let left = platform.kv.keys_with_prefix(PREFIX).unwrap();
        assert!(
            left.iter()
                .all(|k| k.contains(&format!(":{}:", SLOT_START / WINDOW + 2))),
            "{left:?}"
        );
    }
}
