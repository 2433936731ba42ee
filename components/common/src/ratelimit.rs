//! Request budgets shared by every instance: one key-value counter per API and second
//! (`rate:<api>:<epoch second>`), taken with the atomic `increment` — the only key-value operation that is
//! atomic on every Spin backend. A caller that finds the second's budget spent waits for the next second.
//! Old window keys are deleted by the housekeeping (they are never read again).

use anyhow::bail;

use crate::platform::Platform;

/// The key prefix of every budget window.
pub const KEY_PREFIX: &str = "rate:";
/// Give up waiting for a budget after this long (the queue retries the event later).
pub const MAX_WAIT_MS: i64 = 30_000;

/// A per-second request budget.
pub struct RateBudget<'a> {
    platform: &'a Platform,
    name: String,
    per_second: i64,
}

impl<'a> RateBudget<'a> {
    /// A budget of `per_second` requests named `name` (e.g. `notion:1a2b3c4d`).
    pub fn new(platform: &'a Platform, name: String, per_second: i64) -> Self {
        Self {
            platform,
            name,
            per_second,
        }
    }

    /// Takes one request from the current second's budget, waiting for a later second if it is spent.
    pub async fn acquire(&self) -> anyhow::Result<()> {
        self.acquire_within(MAX_WAIT_MS).await
    }

    /// Like [`RateBudget::acquire`], giving up once `max_wait_ms` have passed.
    pub async fn acquire_within(&self, max_wait_ms: i64) -> anyhow::Result<()> {
        let clock = &self.platform.clock;
        let started = clock.now_ms();
        loop {
            let now = clock.now_ms();
            let second = now.div_euclid(1000);
            let taken = self
                .platform
                .kv
                .increment(&format!("{KEY_PREFIX}{}:{second}", self.name), 1)?;
            if taken <= self.per_second {
                return Ok(());
            }
            if now - started > max_wait_ms {
                bail!(
                    "the {} request budget stayed spent for {max_wait_ms} ms",
                    self.name
                );
            }
            // Jitter spreads the waiters of one second over the start of the next.
            let jitter = crate::ids::random_u64() % 50;
            let wait = u64::try_from(1000 - now.rem_euclid(1000)).unwrap_or(1000) + jitter;
            clock.sleep_ms(wait).await;
        }
    }
}

/// Deletes budget windows older than `keep_ms`; returns how many keys were deleted.
pub fn prune(platform: &Platform, keep_ms: i64) -> anyhow::Result<usize> {
    let oldest_kept = (platform.clock.now_ms() - keep_ms).div_euclid(1000);
    let mut deleted = 0;
    for key in platform.kv.keys_with_prefix(KEY_PREFIX)? {
        let second = key.rsplit(':').next().and_then(|s| s.parse::<i64>().ok());
        if matches!(second, Some(s) if s < oldest_kept) {
            platform.kv.delete(&key)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::platform::native::{ManualClock, NativePlatformBuilder};
    use crate::platform::Clock;

    #[tokio::test]
    async fn no_second_ever_exceeds_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(1_700_000_000_000));
        let platform = NativePlatformBuilder::new(dir.path())
            .clock(clock.clone())
            .build()
            .unwrap();
        let budget = RateBudget::new(&platform, "notion:test".into(), 3);
        let mut seconds = Vec::new();
        for _ in 0..10 {
            budget.acquire().await.unwrap();
            seconds.push(clock.now_ms() / 1000);
        }
        let first = seconds[0];
        let per_second: Vec<usize> = (0..4)
            .map(|i| seconds.iter().filter(|s| **s == first + i).count())
            .collect();
        assert_eq!(per_second, vec![3, 3, 3, 1], "{seconds:?}");
    }

    #[tokio::test]
    async fn instances_share_one_budget() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(5_000));
        let a = NativePlatformBuilder::new(dir.path())
            .clock(clock.clone())
            .build()
            .unwrap();
        let b = NativePlatformBuilder::new(dir.path())
            .clock(clock.clone())
            .build()
            .unwrap();
        let (ba, bb) = (
            RateBudget::new(&a, "x".into(), 2),
            RateBudget::new(&b, "x".into(), 2),
        );
        ba.acquire().await.unwrap();
        bb.acquire().await.unwrap();
        assert_eq!(
            clock.now_ms(),
            5_000,
            "two requests fit in the first second"
        );
        ba.acquire().await.unwrap();
        assert!(
            clock.now_ms() >= 6_000,
            "the third waited for the next second"
        );
    }

    #[tokio::test]
    async fn prune_deletes_only_old_windows() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(100_000));
        let platform = NativePlatformBuilder::new(dir.path())
            .clock(clock.clone())
            .build()
            .unwrap();
        let budget = RateBudget::new(&platform, "y".into(), 5);
        budget.acquire().await.unwrap();
        clock.advance_ms(120_000);
        budget.acquire().await.unwrap();
        platform.kv.set("lease:other", b"x").unwrap();
        assert_eq!(prune(&platform, 60_000).unwrap(), 1);
        assert_eq!(
            platform.kv.keys_with_prefix(KEY_PREFIX).unwrap(),
            vec!["rate:y:220"]
        );
        assert!(platform.kv.get("lease:other").unwrap().is_some());
    }
}
