//! Named schedules in SQLite (`schedules`): whether periodic work is due, claimed with one upsert
//! ([`crate::claims`]) so that of several overlapping ticks (cron plugin, `POST /admin/tick` from a
//! CronJob, several replicas) exactly one runs it.
//!
//! The claim succeeds only when the last start is older than the interval and no live claim exists; a
//! claim expires after [`Claim::ttl_ms`], so a run that died does not block the schedule forever (its
//! start time still counts, so the next run comes one interval after the crashed one).

use crate::claims::{Attempt, Done, Recorded, Stamp, Table};
use crate::platform::{Platform, Value};

/// The `schedules` table: a schedule is due `interval_ms` after its last start.
const SCHEDULES: Table = Table {
    name: "schedules",
    key: &["name"],
    holder: Some("claimed_by"),
    stamp: Stamp::ExpiresAt("claim_expires_at"),
    done: Done::Every("last_started_at"),
    created: None,
};

/// The schedule of the periodic sync and housekeeping.
pub const PERIODIC: &str = "periodic-sync";

/// A claimed run of a schedule. Hand it back with [`finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The schedule.
    pub name: String,
    /// Who claimed it.
    pub owner: String,
}

impl Claim {
    /// How long a claim keeps others out if its owner never finishes.
    pub fn ttl_ms() -> i64 {
        2 * 60 * 60 * 1000
    }
}

/// Claims a run of `name` if `interval_ms` has passed since its last start and nobody holds a live claim.
pub fn claim(
    platform: &Platform,
    name: &str,
    interval_ms: i64,
    owner: &str,
) -> anyhow::Result<Option<Claim>> {
    let now = platform.clock.now_ms();
    let won = SCHEDULES.claim(
        platform,
        &Attempt {
            key: &[name.into()],
            holder: Some(owner),
            stale_ms: Claim::ttl_ms(),
            interval_ms,
            insert: &[],
            set: &[("last_started_at", Value::Integer(now))],
        },
    )?;
    Ok(won.map(|_| Claim {
        name: name.to_owned(),
        owner: owner.to_owned(),
    }))
}

/// Ends a claimed run: records when it finished and lets the claim go.
pub fn finish(platform: &Platform, claim: &Claim) -> anyhow::Result<()> {
    SCHEDULES.finish(
        platform,
        &[claim.name.as_str().into()],
        Some(&claim.owner),
        &[(
            "last_finished_at",
            Recorded::Value(platform.clock.now_ms().into()),
        )],
    )?;
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::Clock;
    use crate::testing::{migrated_platform, platform_in};

    const HOUR: i64 = 3_600_000;

    #[tokio::test]
    async fn the_first_tick_claims_and_the_next_waits_for_the_interval() {
        let (_dir, platform, clock) = migrated_platform().await;
        let first = claim(&platform, PERIODIC, HOUR, "a").unwrap().unwrap();
        assert_eq!(first.owner, "a");
        // Still running past the interval (but within the claim's life): nobody else.
        clock.advance_ms(HOUR + 1);
        assert_eq!(claim(&platform, PERIODIC, HOUR, "b").unwrap(), None);
        finish(&platform, &first).unwrap();
        // Finished, and the interval has passed since it started: due again.
        assert!(claim(&platform, PERIODIC, HOUR, "b").unwrap().is_some());
    }

    #[tokio::test]
    async fn a_finished_run_is_not_due_again_before_the_interval() {
        let (_dir, platform, clock) = migrated_platform().await;
        let first = claim(&platform, PERIODIC, 6 * HOUR, "a").unwrap().unwrap();
        finish(&platform, &first).unwrap();
        clock.advance_ms(6 * HOUR - 1);
        assert_eq!(claim(&platform, PERIODIC, 6 * HOUR, "b").unwrap(), None);
        clock.advance_ms(1);
        assert!(claim(&platform, PERIODIC, 6 * HOUR, "b").unwrap().is_some());
    }

    #[tokio::test]
    async fn a_dead_claim_expires() {
        let (_dir, platform, clock) = migrated_platform().await;
        claim(&platform, PERIODIC, HOUR, "crashed")
            .unwrap()
            .unwrap();
        clock.advance_ms(Claim::ttl_ms());
        assert_eq!(
            claim(&platform, PERIODIC, HOUR, "b").unwrap(),
            None,
            "still live at its expiry"
        );
        clock.advance_ms(1);
        let taken = claim(&platform, PERIODIC, HOUR, "b").unwrap().unwrap();
        // The crashed owner cannot end the new claim.
        finish(
            &platform,
            &Claim {
                name: PERIODIC.into(),
                owner: "crashed".into(),
            },
        )
        .unwrap();
        assert_eq!(claim(&platform, PERIODIC, 0, "c").unwrap(), None);
        finish(&platform, &taken).unwrap();
        assert!(claim(&platform, PERIODIC, 0, "c").unwrap().is_some());
    }

    #[tokio::test]
    async fn of_many_concurrent_ticks_exactly_one_claims() {
        let (dir, platform, clock) = migrated_platform().await;
        drop(platform);
        let now = clock.now_ms();
        let winners: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let dir = dir.path().to_path_buf();
                    s.spawn(move || {
                        let clock = std::rc::Rc::new(crate::platform::native::ManualClock::at(now));
                        let platform = platform_in(&dir, clock);
                        claim(&platform, PERIODIC, HOUR, &format!("tick-{i}"))
                            .unwrap()
                            .map(|_| i)
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(winners.len(), 1, "{winners:?}");
    }
}
