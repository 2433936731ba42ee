//! Whether an accepted delivery kicks the drain. Kicking for every event started one drain per event,
//! each competing with the intake for the database; instead the first delivery of each second (across
//! every instance: one `increment` of a key-value window, the only atomic operation on every Spin backend,
//! after a read that spares the rest of the second any write) kicks, and asks that drain to look again once the second is over ([`crate::drain::kick`]). Every later
//! delivery of the second stored its event before it took its turn on the window, so that last look finds
//! it: the drain still starts within a second of any new event, without waiting for the tick.

use crate::platform::Platform;
use crate::ratelimit;

/// Deliveries in one window share one kick.
pub const WINDOW_MS: i64 = 1_000;

/// How long after its window closes a kicked drain looks once more: covers the clocks of replicas
/// disagreeing by this much.
pub const GRACE_MS: i64 = 500;

/// When this delivery kicks the drain, the time until which that drain should keep looking for events;
/// `None` when an earlier delivery of the same window kicked it. A key-value failure kicks (better an
/// extra drain than an event left for the tick).
pub fn kick_due(platform: &Platform) -> Option<i64> {
    let now = platform.clock.now_ms();
    let window = now.div_euclid(WINDOW_MS);
    let linger_until = (window + 1) * WINDOW_MS + GRACE_MS;
    // Under the budgets' prefix, so the housekeeping deletes past windows with theirs.
    let key = format!("{}drain-kick:{window}", ratelimit::KEY_PREFIX);
    // A window that exists was incremented, so its first delivery kicks: a read, not a write, tells the
    // rest of the second so. Those that find it absent race on the increment, which exactly one wins.
    if matches!(platform.kv.get(&key), Ok(Some(_))) {
        return None;
    }
    match platform.kv.increment(&key, 1) {
        Ok(1) => Some(linger_until),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the drain-kick window is unavailable; kicking");
            Some(linger_until)
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::{migrated_platform, T0};

    #[tokio::test]
    async fn the_first_delivery_of_each_second_kicks_and_covers_the_rest_of_it() {
        let (_dir, platform, clock) = migrated_platform().await;
        let window_end = (T0.div_euclid(WINDOW_MS) + 1) * WINDOW_MS;
        assert_eq!(kick_due(&platform), Some(window_end + GRACE_MS));
        clock.advance_ms(window_end - T0 - 1);
        assert_eq!(
            kick_due(&platform),
            None,
            "a later delivery of the same second"
        );
        clock.advance_ms(1);
        assert_eq!(
            kick_due(&platform),
            Some(window_end + WINDOW_MS + GRACE_MS),
            "the first of the next second"
        );
        // Past windows go with the budgets'.
        clock.advance_ms(60_000);
        assert_eq!(ratelimit::prune(&platform, 10_000).unwrap(), 2);
    }
}
