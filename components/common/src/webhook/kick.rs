//! Whether an accepted delivery kicks the drain. Kicking for every event started one drain per event,
//! each leasing, finding the number busy and releasing again, competing with the intake for the cores
//! and the database (about 155 deliveries/s at 16 clients on Spin against 830-860 for events the drain
//! skips, docs/performance.md). Instead the first delivery of each second (across every instance) to
//! store an event the drain processes kicks, and asks that drain to look again once the second is over
//! ([`crate::drain::kick`]). Which delivery that is, the insert that stores it decides
//! ([`crate::queue::Queue::enqueue`], the window's one row in the intake database), so the decision takes no
//! statement of its own: it was a key-value read on every delivery, 0.12 ms of Spin's CPU each. Every later
//! delivery of the second stored its event after the window was taken, so that look finds it; the drain
//! takes that look even while a batch of its own is held up by an API ([`crate::drain::drain`]).
//!
//! What this costs: a kicked drain that is stopped before its look (Spin restarted or killed within the
//! second) leaves its second's later events to the next tick, a minute at most. The soak once stalled on
//! exactly that, and it was long taken for a lost wake-up: docs/performance.md.

use crate::drain;
use crate::platform::Platform;
use crate::queue::KICK_WINDOW_MS;

/// How long after its window closes a kicked drain looks once more: covers the clocks of replicas
/// disagreeing by this much.
pub const GRACE_MS: i64 = 500;

/// Until when the drain kicked for the window starting at `window` (epoch ms) keeps looking for events.
pub fn linger_until(window: i64) -> i64 {
    window + KICK_WINDOW_MS + GRACE_MS
}

/// The pauses before the second and third attempt at a kick. The drain refuses a kick while its
/// database is busy (`503`); with the window taken, no other delivery of the second kicks, so the one
/// that took it tries again rather than leave the second's events to the tick.
const KICK_RETRY_PAUSES_MS: [u64; 2] = [250, 1_000];

/// What the webhook does once it has answered: when the delivery opened a drain-kick window (`window`,
/// [`crate::webhook::intake::Intake::kick_window`]), kicks the drain at [`drain::DRAIN_URL`]. A kick that
/// fails every attempt only leaves the events to the next tick, so it is logged, not returned.
pub async fn after_intake(platform: &Platform, window: Option<i64>) {
    let Some(until) = window.map(linger_until) else {
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
    use crate::configuration::Settings;
    use crate::platform::{HttpClient, HttpError, HttpRequest, HttpResponse};
    use crate::testing::{event_body, migrated_platform, signed_webhook, T0};
    use crate::webhook::intake;

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

    /// Takes delivery `id` of `event_type` and does what the webhook does after answering; the kicks sent.
    async fn deliver(platform: &Platform, id: &str, event_type: &str) -> Vec<String> {
        let body = event_body(id, event_type, "PN1", id, "2025-10-20T19:22:20.000Z");
        let now = platform.clock.now_ms();
        let settings = Settings::new(platform.vars.clone());
        let intake = intake::handle(platform, &settings, &signed_webhook(&body, now)).await;
        assert!(intake.response.status < 300, "{id}: {:?}", intake.response);
        let (watched, drain) = answering(platform, &[202]);
        after_intake(&watched, intake.kick_window).await;
        drain.kicked.take()
    }

    #[tokio::test]
    async fn the_first_delivery_of_each_second_kicks_and_the_drain_looks_after_the_second() {
        let (_dir, platform, clock) = migrated_platform().await;
        let window = T0 - T0.rem_euclid(KICK_WINDOW_MS);
        let kick = |window: i64| format!("{}?until={}", drain::DRAIN_URL, linger_until(window));
        assert!(
            deliver(&platform, "EV0", "call.ringing").await.is_empty(),
            "an event the drain skips kicks nothing"
        );
        assert_eq!(
            deliver(&platform, "EV1", "message.received").await,
            [kick(window)]
        );
        assert_eq!(linger_until(window), window + KICK_WINDOW_MS + GRACE_MS);
        clock.advance_ms(window + KICK_WINDOW_MS - 1 - T0);
        assert!(
            deliver(&platform, "EV2", "message.received")
                .await
                .is_empty(),
            "a later delivery of the same second"
        );
        clock.advance_ms(1);
        assert_eq!(
            deliver(&platform, "EV3", "call.completed").await,
            [kick(window + KICK_WINDOW_MS)],
            "the first of the next second"
        );
    }

    #[tokio::test]
    async fn the_delivery_that_took_the_window_kicks_again_while_the_drain_refuses() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let window = T0 - T0.rem_euclid(KICK_WINDOW_MS);
        let url = format!("{}?until={}", drain::DRAIN_URL, linger_until(window));
        // The drain's database is busy for the first kick: no later delivery of the second kicks, so
        // this one tries again.
        let (busy, drain) = answering(&platform, &[503, 202]);
        after_intake(&busy, Some(window)).await;
        assert_eq!(*drain.kicked.borrow(), [url.clone(), url]);

        // A drain that keeps refusing gets three attempts, then the tick's turn.
        let (down, drain) = answering(&platform, &[503, 503, 503]);
        after_intake(&down, Some(window + KICK_WINDOW_MS)).await;
        assert_eq!(drain.kicked.borrow().len(), 3);
        // A delivery that opened no window kicks nothing.
        let (later, drain) = answering(&platform, &[]);
        after_intake(&later, None).await;
        assert!(drain.kicked.borrow().is_empty());
    }
}
