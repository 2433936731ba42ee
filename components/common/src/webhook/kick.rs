//! Whether an accepted delivery kicks the drain. Kicking for every event started one drain per event,
//! each leasing, finding the number busy and releasing again, competing with the intake for the cores
//! and the database (about 155 deliveries/s at 16 clients on Spin against 830-860 for events the drain
//! skips, docs/performance.md). Instead the first delivery of each second (across every instance: one
//! `increment` of a key-value window, the only atomic operation on every Spin backend, after a read that
//! spares the rest of the second any write) kicks, and asks that drain to look again once the second is
//! over ([`crate::drain::kick`]). Every later delivery of the second stored its event before it took its
//! turn on the window, so that look finds it; the drain takes that look even while a batch of its own is
//! held up by an API ([`crate::drain::drain`]).
//!
//! What this costs: a kicked drain that is stopped before its look (Spin restarted or killed within the
//! second) leaves its second's later events to the next tick, a minute at most. The soak once stalled on
//! exactly that, and it was long taken for a lost wake-up: docs/performance.md.

use crate::drain;
use crate::platform::Platform;
use crate::ratelimit;

/// Deliveries in one window share one kick.
pub const WINDOW_MS: i64 = 1_000;

/// How long after its window closes a kicked drain looks once more: covers the clocks of replicas
/// disagreeing by this much.
pub const GRACE_MS: i64 = 500;

/// What the key-value key of every window starts with: the budgets' prefix, so the housekeeping deletes
/// past windows with theirs.
pub fn window_key_prefix() -> String {
    format!("{}drain-kick:", ratelimit::KEY_PREFIX)
}

/// When this delivery kicks the drain, the time until which that drain should keep looking for events;
/// `None` when an earlier delivery of the same window kicked it. A key-value failure kicks (better an
/// extra drain than an event left for the tick).
pub fn kick_due(platform: &Platform) -> Option<i64> {
    let now = platform.clock.now_ms();
    let window = now.div_euclid(WINDOW_MS);
    let linger_until = (window + 1) * WINDOW_MS + GRACE_MS;
    let key = format!("{}{window}", window_key_prefix());
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

/// The pauses before the second and third attempt at a kick. The drain refuses a kick while its
/// database is busy (`503`); with the window taken, no other delivery of the second kicks, so the one
/// that took it tries again rather than leave the second's events to the tick.
const KICK_RETRY_PAUSES_MS: [u64; 2] = [250, 1_000];

/// What the webhook does once it has answered: when the delivery stored a new event that the drain
/// processes (`kick_drain`) and is the first of its second ([`kick_due`]), kicks the drain at
/// [`drain::DRAIN_URL`]. A kick that fails every attempt only leaves the events to the next tick, so it
/// is logged, not returned.
pub async fn after_intake(platform: &Platform, kick_drain: bool) {
    let Some(until) = kick_drain.then(|| kick_due(platform)).flatten() else {
        return;
    };
    let mut pauses = KICK_RETRY_PAUSES_MS.iter();
    loop {
        let Err(e) = drain::kick(&*platform.http, drain::DRAIN_URL, until).await else {
            return;
        };
        match pauses.next() {
            Some(&pause) => {
                tracing::info!(error = %format!("{e:#}"), "drain not kicked; trying again");
                platform.clock.sleep_ms(pause).await;
            }
            None => {
                tracing::warn!(error = %format!("{e:#}"), "drain not kicked; the next tick drains");
                return;
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use async_trait::async_trait;

    use super::*;
    use crate::platform::{HttpClient, HttpError, HttpRequest, HttpResponse};
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

    /// Answers the kicks with `statuses` in turn, recording each URL.
    struct Drain {
        statuses: RefCell<Vec<u16>>,
        kicked: RefCell<Vec<String>>,
    }

    #[async_trait(?Send)]
    impl HttpClient for Drain {
        async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
            self.kicked.borrow_mut().push(request.url);
            Ok(HttpResponse {
                status: self.statuses.borrow_mut().remove(0),
                headers: Vec::new(),
                body: Vec::new(),
            })
        }
    }

    fn answering(platform: &Platform, statuses: &[u16]) -> (Platform, Rc<Drain>) {
        let drain = Rc::new(Drain {
            statuses: RefCell::new(statuses.to_vec()),
            kicked: RefCell::default(),
        });
        let platform = Platform {
            http: drain.clone(),
            ..platform.clone()
        };
        (platform, drain)
    }

    #[tokio::test]
    async fn the_delivery_that_took_the_window_kicks_again_while_the_drain_refuses() {
        let (_dir, platform, clock) = migrated_platform().await;
        let until = (T0.div_euclid(WINDOW_MS) + 1) * WINDOW_MS + GRACE_MS;
        let url = format!("{}?until={until}", drain::DRAIN_URL);
        // The drain's database is busy for the first kick: no later delivery of the second kicks, so
        // this one tries again.
        let (busy, drain) = answering(&platform, &[503, 202]);
        after_intake(&busy, true).await;
        assert_eq!(*drain.kicked.borrow(), [url.clone(), url.clone()]);
        // A later delivery of the same second leaves its event to that drain's look.
        let (later, drain) = answering(&platform, &[]);
        after_intake(&later, true).await;
        assert!(
            drain.kicked.borrow().is_empty(),
            "a later delivery of the same second"
        );

        // A drain that keeps refusing gets three attempts, then the tick's turn.
        clock.advance_ms(WINDOW_MS);
        let (down, drain) = answering(&platform, &[503, 503, 503]);
        after_intake(&down, true).await;
        assert_eq!(drain.kicked.borrow().len(), 3);
        // An event the drain does not process kicks nothing.
        clock.advance_ms(WINDOW_MS);
        let (skipped, drain) = answering(&platform, &[]);
        after_intake(&skipped, false).await;
        assert!(drain.kicked.borrow().is_empty());
    }
}
