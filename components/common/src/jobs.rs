//! Jobs that must run one at a time across every instance (the contact index refresh, `/admin/setup`),
//! claimed in the `job_claims` table with one upsert ([`crate::claims`]): the claim succeeds for exactly one caller when the
//! job is idle (or its claim is older than the job's limit: the instance died) and its last success is
//! old enough. The claim is released when the [`JobClaim`] is dropped, and recorded as a success by
//! [`JobClaim::finish`].

use crate::claims::{Attempt, Done, Recorded, Stamp, Table};
use crate::platform::Platform;

/// The `job_claims` table: a job is due again `min_interval_ms` after its last success.
const JOBS: Table = Table {
    name: "job_claims",
    key: &["name"],
    holder: Some("owner"),
    stamp: Stamp::ClaimedAt("claimed_at"),
    done: Done::Every("finished_at"),
    created: None,
};

/// A claimed job. Dropping it without [`JobClaim::finish`] releases it without recording a success.
pub struct JobClaim<'a> {
    platform: &'a Platform,
    name: &'static str,
    owner: String,
    released: bool,
}

/// What the table says about a job nobody could claim just now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobState {
    /// Another run holds a live claim.
    pub running: bool,
    /// End of the last successful run.
    pub finished_at: Option<i64>,
}

impl<'a> JobClaim<'a> {
    /// Claims job `name` if no live run holds it (a claim older than `stale_ms` is taken over) and its
    /// last success ended at least `min_interval_ms` ago; `None` otherwise.
    pub fn try_claim(
        platform: &'a Platform,
        name: &'static str,
        min_interval_ms: i64,
        stale_ms: i64,
    ) -> anyhow::Result<Option<Self>> {
        let now = platform.clock.now_ms();
        let owner = format!("{now}-{:016x}", crate::ids::random_u64());
        let won = JOBS.claim(
            platform,
            &Attempt {
                key: &[name.into()],
                holder: Some(&owner),
                stale_ms,
                interval_ms: min_interval_ms,
                insert: &[],
                set: &[],
            },
        )?;
        Ok(won.is_some().then_some(Self {
            platform,
            name,
            owner,
            released: false,
        }))
    }

    /// The state of job `name`, for a caller whose claim failed.
    pub fn state(platform: &Platform, name: &str, stale_ms: i64) -> anyhow::Result<JobState> {
        let rows = platform.sql.execute(
            "SELECT owner, claimed_at, finished_at FROM job_claims WHERE name = ?1",
            &[name.into()],
        )?;
        let Some(row) = rows.first() else {
            return Ok(JobState {
                running: false,
                finished_at: None,
            });
        };
        let live_claim =
            row.opt_i64("claimed_at")?.unwrap_or(0) >= platform.clock.now_ms() - stale_ms;
        Ok(JobState {
            running: row.opt_str("owner")?.is_some() && live_claim,
            finished_at: row.opt_i64("finished_at")?,
        })
    }

    /// Ends the run as a success, recording when.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.released = true;
        let now = self.platform.clock.now_ms();
        JOBS.finish(
            self.platform,
            &[self.name.into()],
            Some(&self.owner),
            &[("finished_at", Recorded::Value(now.into()))],
        )?;
        Ok(())
    }
}

impl Drop for JobClaim<'_> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let released = JOBS.release(self.platform, &[self.name.into()], Some(&self.owner));
        if let Err(e) = released {
            // The claim goes stale and is taken over; nothing is lost.
            tracing::warn!(job = self.name, error = %format!("{e:#}"), "could not release a job claim");
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::Clock;
    use crate::testing::migrated_platform;

    const HOUR: i64 = 3_600_000;

    #[tokio::test]
    async fn one_claim_at_a_time_and_not_again_before_the_interval() {
        let (_dir, platform, clock) = migrated_platform().await;
        let first = JobClaim::try_claim(&platform, "job", HOUR, 60_000)
            .unwrap()
            .unwrap();
        assert!(JobClaim::try_claim(&platform, "job", HOUR, 60_000)
            .unwrap()
            .is_none());
        assert!(JobClaim::state(&platform, "job", 60_000).unwrap().running);
        first.finish().unwrap();
        let state = JobClaim::state(&platform, "job", 60_000).unwrap();
        assert_eq!(
            state,
            JobState {
                running: false,
                finished_at: Some(clock.now_ms())
            }
        );
        clock.advance_ms(HOUR - 1);
        assert!(
            JobClaim::try_claim(&platform, "job", HOUR, 60_000)
                .unwrap()
                .is_none(),
            "ran less than an hour ago"
        );
        clock.advance_ms(1);
        assert!(JobClaim::try_claim(&platform, "job", HOUR, 60_000)
            .unwrap()
            .is_some());
        // Other jobs are independent.
        assert!(JobClaim::try_claim(&platform, "other", HOUR, 60_000)
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn a_dropped_claim_is_free_at_once_and_a_dead_one_after_its_limit() {
        let (_dir, platform, clock) = migrated_platform().await;
        drop(
            JobClaim::try_claim(&platform, "job", 0, 60_000)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(
            JobClaim::state(&platform, "job", 60_000).unwrap(),
            JobState {
                running: false,
                finished_at: None
            }
        );
        let crashed = JobClaim::try_claim(&platform, "job", 0, 60_000)
            .unwrap()
            .unwrap();
        // A crashed instance never releases: simulate by forgetting the claim.
        std::mem::forget(crashed);
        clock.advance_ms(59_999);
        assert!(JobClaim::try_claim(&platform, "job", 0, 60_000)
            .unwrap()
            .is_none());
        clock.advance_ms(2);
        assert!(!JobClaim::state(&platform, "job", 60_000).unwrap().running);
        assert!(JobClaim::try_claim(&platform, "job", 0, 60_000)
            .unwrap()
            .is_some());
    }
}
