//! Request budgets shared by every instance: one key-value counter per API and second
//! (`rate:<api>:<epoch second>`), taken with the atomic `increment` — the only key-value operation that is
//! atomic on every Spin backend. A caller that finds the second's budget spent waits for the next second.
//! Old window keys are deleted by the housekeeping (they are never read again).
//!
//! Replicas' clocks disagree by up to a few seconds, and a window keyed by each one's own second would let
//! an instance whose clock is ahead spend tomorrow's windows today: with three replicas spread over five
//! seconds, a burst of five windows at once, over Notion's. So the instance furthest ahead writes the
//! second it spends under `rate-lead:<api>` (a plain value, never a counter), and the others spend that
//! second's window rather than their own earlier one (up to [`MAX_FOLLOWED_SKEW_S`] ahead): every instance
//! spends the same window at the same moment, whatever its clock says.

use anyhow::bail;

use crate::platform::Platform;

/// The key prefix of every budget window.
pub const KEY_PREFIX: &str = "rate:";
/// Give up waiting for a budget after this long (the queue retries the event later).
pub const MAX_WAIT_MS: i64 = 30_000;
/// The furthest ahead of this instance's clock another instance's window is followed, in seconds: a clock
/// hours ahead must not make every other instance wait for it.
pub const MAX_FOLLOWED_SKEW_S: i64 = 10;

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
            let second = self.window(now.div_euclid(1000));
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

impl RateBudget<'_> {
    fn lead_key(&self) -> String {
        format!("rate-lead:{}", self.name)
    }

    /// The second whose window to spend: the latest second any instance spends, when it is ahead of
    /// `own` by at most [`MAX_FOLLOWED_SKEW_S`]; else `own`, recorded as the latest when it is. A key-value
    /// failure here only falls back to `own`.
    fn window(&self, own: i64) -> i64 {
        let kv = &self.platform.kv;
        let lead = kv
            .get(&self.lead_key())
            .ok()
            .flatten()
            .and_then(|value| std::str::from_utf8(&value).ok()?.parse::<i64>().ok());
        match lead {
            Some(lead) if lead >= own && lead <= own + MAX_FOLLOWED_SKEW_S => lead,
            _ => {
                if let Err(e) = kv.set(&self.lead_key(), own.to_string().as_bytes()) {
                    tracing::debug!(error = %format!("{e:#}"), "the budget's lead second was not recorded");
                }
                own
            }
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

    /// One instance's view of a shared clock, `offset_ms` off.
    struct Skewed {
        real: Rc<ManualClock>,
        offset_ms: i64,
    }

    #[async_trait::async_trait(?Send)]
    impl Clock for Skewed {
        fn now_ms(&self) -> i64 {
            self.real.now_ms() + self.offset_ms
        }

        async fn sleep_ms(&self, ms: u64) {
            self.real.sleep_ms(ms).await;
        }
    }

    #[tokio::test]
    async fn replicas_whose_clocks_disagree_stay_within_notions_burst() {
        // Three replicas spread over 5.3 s, as the simulation's seed 14 had them. Keyed by their own
        // seconds, they spent three windows at once: 9 requests a second against Notion's 3, past its burst
        // of 10 within two seconds.
        let dir = tempfile::tempdir().unwrap();
        let real = Rc::new(ManualClock::at(1_700_000_000_000));
        let instances: Vec<Platform> = [-2_627, -684, 2_719]
            .into_iter()
            .map(|offset_ms| {
                let clock = Rc::new(Skewed {
                    real: real.clone(),
                    offset_ms,
                });
                NativePlatformBuilder::new(dir.path())
                    .clock(clock)
                    .build()
                    .unwrap()
            })
            .collect();
        let budgets: Vec<RateBudget> = instances
            .iter()
            .map(|p| RateBudget::new(p, "notion:test".into(), 3))
            .collect();
        // Notion's limit as the local Notion server models it: a bucket of 10, refilled at 3 a second.
        let (burst, per_second) = (10.0, 3.0);
        let (mut tokens, mut last) = (burst, real.now_ms());
        let mut granted = 0;
        for _ in 0..40 {
            for budget in &budgets {
                budget.acquire().await.unwrap();
                let now = real.now_ms();
                tokens = (tokens + (now - last) as f64 / 1000.0 * per_second).min(burst);
                last = now;
                assert!(
                    tokens >= 1.0,
                    "request {granted} at {} ms was over Notion's limit",
                    now - 1_700_000_000_000
                );
                tokens -= 1.0;
                granted += 1;
            }
        }
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
