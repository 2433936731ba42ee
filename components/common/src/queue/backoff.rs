//! When a failed event is tried again: exponential backoff with jitter, never sooner than the API's
//! `Retry-After`. Pure.

use std::time::Duration;

/// The first retry waits between half of this and this.
pub const BASE_DELAY_MS: i64 = 30_000;
/// The backoff stops growing here.
pub const MAX_DELAY_MS: i64 = 60 * 60 * 1000;
/// A `Retry-After` longer than this is taken as this (a misbehaving server must not park an event for
/// months).
pub const MAX_RETRY_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// Spread added to `Retry-After`, so events told the same time do not all come back in the same instant.
const RETRY_AFTER_SPREAD_MS: u64 = 1_000;

/// Milliseconds to wait before attempt `attempt + 1`, after attempt `attempt` (1-based) failed.
/// `random` supplies the jitter ("equal jitter": between half the exponential delay and all of it).
pub fn retry_delay_ms(attempt: u32, retry_after: Option<Duration>, random: u64) -> i64 {
    let doublings = attempt.saturating_sub(1).min(20);
    let ceiling = BASE_DELAY_MS
        .saturating_mul(1 << doublings)
        .min(MAX_DELAY_MS);
    let half = ceiling / 2;
    let spread = u64::try_from(half).unwrap_or(0) + 1;
    let backoff = half + i64::try_from(random % spread).unwrap_or(0);
    match retry_after {
        Some(wait) => {
            let wait = i64::try_from(wait.as_millis())
                .unwrap_or(i64::MAX)
                .min(MAX_RETRY_AFTER_MS);
            let spread = i64::try_from(random % RETRY_AFTER_SPREAD_MS).unwrap_or(0);
            backoff.max(wait + spread)
        }
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_double_from_the_base_up_to_the_cap() {
        // With the largest jitter the delay is the full exponential value.
        let full = |attempt| retry_delay_ms(attempt, None, u64::MAX - 1);
        let lowest = |attempt| retry_delay_ms(attempt, None, 0);
        assert_eq!(lowest(1), BASE_DELAY_MS / 2);
        assert_eq!(lowest(2), BASE_DELAY_MS);
        assert_eq!(lowest(3), 2 * BASE_DELAY_MS);
        assert!(full(1) <= BASE_DELAY_MS);
        assert_eq!(lowest(30), MAX_DELAY_MS / 2);
        assert!(full(u32::MAX) <= MAX_DELAY_MS);
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_capped() {
        let wait = Duration::from_secs(600);
        let delay = retry_delay_ms(1, Some(wait), 7);
        assert!((600_000..601_000).contains(&delay), "{delay}");
        // A short Retry-After does not shorten the backoff.
        assert!(retry_delay_ms(5, Some(Duration::from_secs(1)), 0) >= 8 * BASE_DELAY_MS);
        let absurd = retry_delay_ms(1, Some(Duration::from_secs(u64::MAX)), 0);
        assert_eq!(absurd, MAX_RETRY_AFTER_MS);
    }

    proptest! {
        #[test]
        fn delay_is_within_the_jitter_band(attempt in 1u32..40, random in any::<u64>()) {
            let ceiling = (BASE_DELAY_MS << (attempt - 1).min(20)).min(MAX_DELAY_MS);
            let delay = retry_delay_ms(attempt, None, random);
            prop_assert!(delay >= ceiling / 2 && delay <= ceiling, "{} not in [{}, {}]", delay, ceiling / 2, ceiling);
        }
    }
}
