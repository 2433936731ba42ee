//! The drain against real SQLite and key-value files, with test handlers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::platform::native::ManualClock;
use crate::platform::Clock;
use crate::platform::{HttpError, HttpResponse};
use crate::queue::NewEvent;
use crate::testing::{migrated_platform, platform_in, state_of, T0};

fn options() -> DrainOptions {
    DrainOptions {
        batch_size: 10,
        // As in production: longer than a killed drain's number lease can last (1.5 windows).
        event_lease_ms: 300_000,
        budget_ms: 60_000,
        concurrency: 4,
        max_age_ms: 3_600_000,
        busy_delay_ms: 5_000,
        lease: LeaseConfig {
            window_ms: 120_000,
            margin_ms: 10_000,
        },
        linger_until_ms: None,
    }
}

fn enqueue(platform: &Platform, id: &str, event_type: &str, number: &str, created_at: i64) {
    let event = NewEvent {
        id,
        event_type,
        phone_number_id: Some(number),
        resource_id: None,
        created_at,
        payload: "{}",
        skip_reason: None,
    };
    assert!(Queue::of(platform).enqueue(&event, T0).unwrap().is_new());
}

fn column(platform: &Platform, id: &str, name: &str) -> crate::platform::Value {
    let rows = platform
        .sql
        .execute(
            &format!("SELECT {name} FROM events WHERE id = ?1"),
            &[id.into()],
        )
        .unwrap();
    rows.rows[0][0].clone()
}

/// What a [`Scripted`] handler answers for an event.
type Script = Box<dyn Fn(&QueuedEvent) -> Result<(), ProcessError>>;

/// Records the events it sees and answers with `outcome`.
struct Scripted {
    seen: RefCell<Vec<String>>,
    outcome: Script,
}

impl Scripted {
    fn new(outcome: impl Fn(&QueuedEvent) -> Result<(), ProcessError> + 'static) -> Rc<Self> {
        Rc::new(Self {
            seen: RefCell::default(),
            outcome: Box::new(outcome),
        })
    }

    fn ok() -> Rc<Self> {
        Self::new(|_| Ok(()))
    }

    fn seen(&self) -> Vec<String> {
        self.seen.borrow().clone()
    }
}

#[async_trait(?Send)]
impl EventHandler for Scripted {
    async fn handle(
        &self,
        _event_type: EventType,
        event: &QueuedEvent,
        lease: &Lease,
    ) -> Result<(), ProcessError> {
        lease.check()?;
        self.seen.borrow_mut().push(event.id.clone());
        (self.outcome)(event)
    }
}

fn router_for(handler: Rc<dyn EventHandler>) -> Router {
    EventType::ALL
        .into_iter()
        .fold(Router::new(), |r, t| r.route(t, handler.clone()))
}

#[tokio::test]
async fn each_numbers_events_are_processed_in_order_and_acked() {
    let (_dir, platform, _clock) = migrated_platform().await;
    enqueue(&platform, "B2", "message.received", "PNb", T0 + 2);
    enqueue(&platform, "A3", "call.completed", "PNa", T0 + 3);
    enqueue(&platform, "A1", "call.completed", "PNa", T0 + 1);
    enqueue(&platform, "B1", "message.delivered", "PNb", T0 + 1);
    enqueue(&platform, "A2", "call.recording.completed", "PNa", T0 + 2);
    let handler = Scripted::ok();
    let report = drain(&platform, &router_for(handler.clone()), &options())
        .await
        .unwrap();
    assert_eq!(report.count(|o| *o == Outcome::Done), 5, "{report:?}");
    let seen = handler.seen();
    let order_of = |prefix: char| -> Vec<&str> {
        seen.iter()
            .filter(|id| id.starts_with(prefix))
            .map(String::as_str)
            .collect()
    };
    assert_eq!(order_of('A'), ["A1", "A2", "A3"]);
    assert_eq!(order_of('B'), ["B1", "B2"]);
    for id in ["A1", "A2", "A3", "B1", "B2"] {
        assert_eq!(state_of(&platform, id), "done");
    }
    // A second drain finds nothing.
    let again = drain(&platform, &router_for(handler.clone()), &options())
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert_eq!(handler.seen().len(), 5);
}

#[tokio::test]
async fn batches_repeat_until_the_queue_is_empty() {
    let (_dir, platform, _clock) = migrated_platform().await;
    for i in 0..25 {
        enqueue(
            &platform,
            &format!("E{i:02}"),
            "call.completed",
            &format!("PN{}", i % 3),
            T0 + i,
        );
    }
    let handler = Scripted::ok();
    let report = drain(&platform, &router_for(handler.clone()), &options())
        .await
        .unwrap();
    assert_eq!(report.batches, 3);
    assert_eq!(handler.seen().len(), 25);
}

/// Waits forever: a drain stuck in the middle of an event.
struct Hangs {
    started: Cell<usize>,
}

#[async_trait(?Send)]
impl EventHandler for Hangs {
    async fn handle(
        &self,
        _event_type: EventType,
        _event: &QueuedEvent,
        _lease: &Lease,
    ) -> Result<(), ProcessError> {
        self.started.set(self.started.get() + 1);
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_drain_killed_between_lease_and_ack_is_redelivered_after_the_lease_expires_and_processed_once(
) {
    let (_dir, platform, clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    let hangs = Rc::new(Hangs {
        started: Cell::new(0),
    });
    let hanging_router = router_for(hangs.clone());
    let hanging_options = options();
    let mut killed = Box::pin(drain(&platform, &hanging_router, &hanging_options));
    assert!(futures::poll!(&mut killed).is_pending());
    // Killed: no destructor runs, so its number's lease is not released either; it ends with its slot.
    std::mem::forget(killed);
    assert_eq!(hangs.started.get(), 1);
    assert_eq!(state_of(&platform, "E1"), "leased");

    let handler = Scripted::ok();
    let router = router_for(handler.clone());
    // While the dead drain's lease runs, nobody else takes the event.
    clock.advance_ms(options().event_lease_ms - 1);
    assert!(drain(&platform, &router, &options())
        .await
        .unwrap()
        .events
        .is_empty());
    clock.advance_ms(1);
    let report = drain(&platform, &router, &options()).await.unwrap();
    assert_eq!(report.events.len(), 1, "{report:?}");
    assert_eq!(report.events[0].attempt, 2);
    assert_eq!(handler.seen(), ["E1"]);
    assert_eq!(state_of(&platform, "E1"), "done");
    assert!(drain(&platform, &router, &options())
        .await
        .unwrap()
        .events
        .is_empty());
    assert_eq!(handler.seen(), ["E1"]);
}

/// Records (key, created_at, id) across threads, yielding so drains interleave.
struct Shared {
    log: Arc<Mutex<Vec<(String, i64, String)>>>,
}

#[async_trait(?Send)]
impl EventHandler for Shared {
    async fn handle(
        &self,
        _event_type: EventType,
        event: &QueuedEvent,
        lease: &Lease,
    ) -> Result<(), ProcessError> {
        lease.check()?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.log.lock().unwrap().push((
            event.lease_key.clone(),
            event.created_at,
            event.id.clone(),
        ));
        Ok(())
    }
}

#[test]
fn two_racing_drains_never_process_an_event_twice_and_keep_each_numbers_order() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    let system_clock =
        || -> Rc<dyn crate::platform::Clock> { Rc::new(crate::platform::native::SystemClock) };
    {
        let platform = platform_in(dir.path(), system_clock());
        runtime()
            .block_on(crate::migrations::ensure_checked(&platform))
            .unwrap();
        for i in 0..120 {
            enqueue(
                &platform,
                &format!("E{i:03}"),
                "call.completed",
                &format!("PN{}", i % 6),
                T0 + i,
            );
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let per_drain: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let log = log.clone();
                let dir = dir.path().to_path_buf();
                s.spawn(move || {
                    let platform = platform_in(&dir, system_clock());
                    let router = router_for(Rc::new(Shared { log }));
                    let options = DrainOptions {
                        batch_size: 7,
                        concurrency: 3,
                        ..options()
                    };
                    runtime().block_on(async {
                        let mut done = 0;
                        // A drain stops when everything left belongs to the other one, and events that
                        // met a number lease in the instant before its release wait out the busy delay:
                        // go again until the queue is empty.
                        let deadline = std::time::Instant::now() + Duration::from_secs(60);
                        while std::time::Instant::now() < deadline {
                            let report = drain(&platform, &router, &options).await.unwrap();
                            done += report.count(|o| *o == Outcome::Done);
                            if crate::testing::event_count(&platform)
                                == count_in_state(&platform, "done")
                            {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        done
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let log = log.lock().unwrap().clone();
    let mut ids: Vec<&str> = log.iter().map(|(_, _, id)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        log.len(),
        120,
        "some event was processed twice or not at all"
    );
    assert_eq!(ids.len(), 120);
    assert_eq!(per_drain.iter().sum::<usize>(), 120);
    for number in 0..6 {
        let key = format!("PN{number}");
        let times: Vec<i64> = log
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|(_, t, _)| *t)
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {times:?}"
        );
    }
}

fn count_in_state(platform: &Platform, state: &str) -> i64 {
    platform
        .sql
        .execute(
            "SELECT count(*) AS n FROM events WHERE state = ?1",
            &[state.into()],
        )
        .unwrap()
        .first()
        .unwrap()
        .i64("n")
        .unwrap()
}

#[tokio::test]
async fn an_event_that_keeps_failing_past_its_age_lands_in_dead_with_its_last_error_and_can_be_replayed(
) {
    let (_dir, platform, clock) = migrated_platform().await;
    // Attempts at 0 s, 30 s and 90 s after it arrived: the third is past a minute's age.
    let options = DrainOptions {
        max_age_ms: 60_000,
        ..options()
    };
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    let attempt = Rc::new(Cell::new(0));
    let counter = attempt.clone();
    let failing = Scripted::new(move |_| {
        counter.set(counter.get() + 1);
        Err(ProcessError::retryable(format!(
            "upstream 503 (attempt {})",
            counter.get()
        )))
    });
    let router = router_for(failing.clone());
    for expected in 1..=3 {
        let report = drain(&platform, &router, &options).await.unwrap();
        assert_eq!(report.events.len(), 1, "attempt {expected}: {report:?}");
        assert_eq!(report.events[0].attempt, expected);
        clock.advance_ms(backoff_ceiling(expected));
    }
    assert_eq!(attempt.get(), 3);
    assert_eq!(state_of(&platform, "E1"), "dead");
    let (dead, _) = Queue::of(&platform).dead(None, 10).unwrap();
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("upstream 503 (attempt 3)")
    );
    assert_eq!(dead[0].attempts, 3);
    // Dead events are not drained.
    assert!(drain(&platform, &router, &options)
        .await
        .unwrap()
        .events
        .is_empty());

    let replayed = Queue::of(&platform)
        .replay(&crate::queue::ReplaySelection::All, clock.now_ms())
        .unwrap();
    assert_eq!(replayed, ["E1"]);
    let fixed = Scripted::ok();
    let report = drain(&platform, &router_for(fixed.clone()), &options)
        .await
        .unwrap();
    assert_eq!(report.events[0].attempt, 1);
    assert_eq!(fixed.seen(), ["E1"]);
    assert_eq!(state_of(&platform, "E1"), "done");
}

#[tokio::test]
async fn a_rate_limit_or_a_lost_lease_gives_the_event_back_without_spending_an_attempt() {
    let (_dir, platform, clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    // Far past any age limit: throttling must still never kill it.
    let options = DrainOptions {
        max_age_ms: 1,
        ..options()
    };
    let throttled = Scripted::new(|_| {
        Err(ProcessError::Throttled {
            message: "notion rate limited the request".into(),
            retry_after: Duration::from_secs(40),
        })
    });
    for _ in 0..20 {
        clock.advance_ms(40_000);
        let report = drain(&platform, &router_for(throttled.clone()), &options)
            .await
            .unwrap();
        assert!(
            matches!(&report.events[0].outcome, Outcome::Released { .. }),
            "{report:?}"
        );
    }
    assert_eq!(throttled.seen().len(), 20);
    assert_eq!(state_of(&platform, "E1"), "pending");
    assert_eq!(column(&platform, "E1", "attempts"), 0i64.into());
    let lost = Scripted::new(|_| Err(crate::lease::LeaseLost { name: "PN1".into() }.into()));
    clock.advance_ms(40_000);
    drain(&platform, &router_for(lost.clone()), &options)
        .await
        .unwrap();
    assert_eq!(lost.seen(), ["E1"]);
    assert_eq!(state_of(&platform, "E1"), "pending");
    assert_eq!(column(&platform, "E1", "attempts"), 0i64.into());
}

#[tokio::test]
async fn a_refused_token_pauses_the_drain_until_a_probe_gets_through_and_nothing_dies() {
    let (_dir, platform, clock) = migrated_platform().await;
    for i in 0..4 {
        enqueue(
            &platform,
            &format!("E{i}"),
            "call.completed",
            &format!("PN{i}"),
            T0 + i,
        );
    }
    let refused = Scripted::new(|_| {
        Err(ProcessError::Unauthorized {
            service: "notion".into(),
            status: 401,
            message: "notion refused the request with 401: API token is invalid.".into(),
        })
    });
    let options = DrainOptions {
        concurrency: 1,
        ..options()
    };
    let report = drain(&platform, &router_for(refused.clone()), &options)
        .await
        .unwrap();
    // The first refusal opens the breaker; the events not yet tried are not tried at all.
    assert_eq!(refused.seen().len(), 1, "{report:?}");
    assert!(report.paused.is_some(), "{report:?}");
    let open = breaker::open_breakers(&*platform.sql).unwrap();
    assert_eq!((open[0].service.as_str(), open[0].status), ("notion", 401));
    // Within the probe interval nothing is leased, however often the drain is kicked.
    for _ in 0..5 {
        clock.advance_ms(breaker::PROBE_EVERY_MS / 10);
        let report = drain(&platform, &router_for(refused.clone()), &options)
            .await
            .unwrap();
        assert!(
            report.events.is_empty() && report.paused.is_some(),
            "{report:?}"
        );
    }
    // A probe: one event, refused again.
    clock.advance_ms(breaker::PROBE_EVERY_MS);
    drain(&platform, &router_for(refused.clone()), &options)
        .await
        .unwrap();
    assert_eq!(refused.seen().len(), 2);
    // A person fixes the token: the next probe gets through, closes the breaker, and the rest follow.
    clock.advance_ms(breaker::PROBE_EVERY_MS);
    let fixed = Scripted::ok();
    let report = drain(&platform, &router_for(fixed.clone()), &options)
        .await
        .unwrap();
    assert_eq!(fixed.seen().len(), 4, "{report:?}");
    assert!(breaker::open_breakers(&*platform.sql).unwrap().is_empty());
    assert_eq!(count_in_state(&platform, "done"), 4);
    assert_eq!(count_in_state(&platform, "dead"), 0);
}

#[tokio::test]
async fn events_that_gave_up_during_an_outage_come_back_when_one_gets_through() {
    let (_dir, platform, clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    let options = DrainOptions {
        max_age_ms: 1,
        ..options()
    };
    clock.advance_ms(1_000);
    let down = Scripted::new(|_| Err(ProcessError::retryable("notion is unavailable: 503")));
    drain(&platform, &router_for(down), &options).await.unwrap();
    assert_eq!(state_of(&platform, "E1"), "dead");
    enqueue(&platform, "E2", "call.completed", "PN2", T0 + 1);
    let back = Scripted::ok();
    let report = drain(&platform, &router_for(back.clone()), &options)
        .await
        .unwrap();
    assert_eq!(report.replayed, ["E1"]);
    assert_eq!(back.seen(), ["E2", "E1"]);
    assert_eq!(state_of(&platform, "E1"), "done");
}

fn backoff_ceiling(attempt: u32) -> i64 {
    crate::queue::backoff::BASE_DELAY_MS << (attempt - 1)
}

#[tokio::test]
async fn a_permanent_error_is_dead_at_once() {
    let (_dir, platform, _clock) = migrated_platform().await;
    enqueue(&platform, "E1", "message.received", "PN1", T0);
    let handler = Scripted::new(|_| {
        Err(ProcessError::permanent(
            "Notion 400: property Foo does not exist",
        ))
    });
    let report = drain(&platform, &router_for(handler), &options())
        .await
        .unwrap();
    assert_eq!(
        report.events[0].outcome,
        Outcome::Dead {
            error: "Notion 400: property Foo does not exist".into()
        }
    );
    assert_eq!(state_of(&platform, "E1"), "dead");
    assert_eq!(column(&platform, "E1", "attempts"), 1i64.into());
}

#[tokio::test]
async fn a_busy_page_releases_the_event_without_spending_an_attempt() {
    let (_dir, platform, _clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.transcript.completed", "PN1", T0);
    let handler = Scripted::new(|_| {
        Err(ProcessError::Busy {
            message: "another worker is creating this page".into(),
            retry_after: Duration::from_secs(30),
        })
    });
    let report = drain(&platform, &router_for(handler), &options())
        .await
        .unwrap();
    assert!(
        matches!(report.events[0].outcome, Outcome::Released { .. }),
        "{report:?}"
    );
    assert_eq!(state_of(&platform, "E1"), "pending");
    assert_eq!(column(&platform, "E1", "attempts"), 0i64.into());
    assert_eq!(
        column(&platform, "E1", "available_at"),
        (T0 + 30_000).into()
    );
}

#[tokio::test]
async fn retry_after_from_the_handler_sets_available_at() {
    let (_dir, platform, _clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    let handler = Scripted::new(|_| {
        Err(ProcessError::Retryable {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(3_600)),
        })
    });
    let report = drain(&platform, &router_for(handler), &options())
        .await
        .unwrap();
    let Outcome::Retry { available_at, .. } = report.events[0].outcome else {
        panic!("{report:?}");
    };
    assert!(available_at >= T0 + 3_600_000, "{available_at}");
    assert_eq!(column(&platform, "E1", "available_at"), available_at.into());
    assert_eq!(state_of(&platform, "E1"), "pending");
}

#[tokio::test]
async fn events_of_a_number_leased_elsewhere_are_released_without_an_attempt() {
    let (_dir, platform, clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    enqueue(&platform, "E2", "call.completed", "PN1", T0 + 1);
    enqueue(&platform, "F1", "call.completed", "PN2", T0 + 2);
    // The periodic sync of PN1 holds its lease.
    let backfill = Lease::acquire(&platform, "PN1", options().lease)
        .unwrap()
        .unwrap();
    let handler = Scripted::ok();
    let router = router_for(handler.clone());
    let short = DrainOptions {
        budget_ms: 3 * options().busy_delay_ms,
        ..options()
    };
    let started = clock.now_ms();
    let report = drain(&platform, &router, &short).await.unwrap();
    assert_eq!(handler.seen(), ["F1"]);
    // It waited for the busy number within its budget, giving the events back each time it found the
    // number still held, never spending an attempt.
    assert!(report.count(|o| matches!(o, Outcome::Released { .. })) >= 4);
    assert!(clock.now_ms() - started <= short.budget_ms + short.busy_delay_ms);
    for id in ["E1", "E2"] {
        assert_eq!(state_of(&platform, id), "pending");
        assert_eq!(column(&platform, id, "attempts"), 0i64.into());
    }
    backfill.release();
    clock.advance_ms(options().busy_delay_ms);
    drain(&platform, &router, &options()).await.unwrap();
    assert_eq!(handler.seen(), ["F1", "E1", "E2"]);
}

/// A clock whose first wait lets the number's other holder go (as a sync or another drain finishing).
struct HolderLetsGo {
    clock: Rc<ManualClock>,
    holder: RefCell<Option<Lease>>,
}

#[async_trait(?Send)]
impl Clock for HolderLetsGo {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn sleep_ms(&self, ms: u64) {
        self.clock.sleep_ms(ms).await;
        if let Some(lease) = self.holder.borrow_mut().take() {
            lease.release();
        }
    }
}

#[tokio::test]
async fn events_released_for_a_busy_number_are_taken_by_the_same_drain_once_it_is_free() {
    let (dir, platform, clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    let holder = Lease::acquire(&platform, "PN1", options().lease)
        .unwrap()
        .unwrap();
    let waits = Rc::new(HolderLetsGo {
        clock: clock.clone(),
        holder: RefCell::new(Some(holder)),
    });
    let kicked = platform_in(dir.path(), waits);
    let handler = Scripted::ok();
    let router = router_for(handler.clone());
    let started = clock.now_ms();
    let report = drain(&kicked, &router, &options()).await.unwrap();
    // Given back once, then done by the same drain after the busy delay: not left for the next tick.
    assert_eq!(handler.seen(), ["E1"]);
    assert_eq!(report.count(|o| matches!(o, Outcome::Released { .. })), 1);
    assert_eq!(report.count(|o| matches!(o, Outcome::Done)), 1);
    assert_eq!(clock.now_ms() - started, options().busy_delay_ms);
}

/// Takes so long that the lease runs out before the next event.
struct Slow {
    clock: Rc<ManualClock>,
    seen: RefCell<Vec<String>>,
}

#[async_trait(?Send)]
impl EventHandler for Slow {
    async fn handle(
        &self,
        _event_type: EventType,
        event: &QueuedEvent,
        _lease: &Lease,
    ) -> Result<(), ProcessError> {
        self.seen.borrow_mut().push(event.id.clone());
        self.clock.advance_ms(2 * options().lease.window_ms);
        Ok(())
    }
}

#[tokio::test]
async fn a_drain_that_loses_its_lease_stops_and_gives_the_rest_back() {
    let (_dir, platform, clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    enqueue(&platform, "E2", "call.completed", "PN1", T0 + 1);
    let handler = Rc::new(Slow {
        clock: clock.clone(),
        seen: RefCell::default(),
    });
    let options = DrainOptions {
        event_lease_ms: 10 * 60_000,
        ..options()
    };
    let report = drain(&platform, &router_for(handler.clone()), &options)
        .await
        .unwrap();
    assert_eq!(*handler.seen.borrow(), ["E1"]);
    assert_eq!(report.events[0].outcome, Outcome::Done);
    assert!(
        matches!(&report.events[1].outcome, Outcome::Released { reason } if reason.contains("lost"))
    );
    assert_eq!(state_of(&platform, "E2"), "pending");
}

#[tokio::test]
async fn a_type_without_a_handler_is_skipped_with_a_reason() {
    let (_dir, platform, _clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.missed", "PN1", T0);
    let router = Router::new().route(EventType::CallCompleted, Scripted::ok());
    let report = drain(&platform, &router, &options()).await.unwrap();
    assert!(
        matches!(&report.events[0].outcome, Outcome::Skipped { reason } if reason.contains("call.missed"))
    );
    assert_eq!(state_of(&platform, "E1"), "skipped");
    assert_eq!(
        column(&platform, "E1", "skip_reason"),
        "no handler for event type call.missed".into()
    );
}

#[tokio::test]
async fn the_production_routes_send_every_processed_type_to_the_page_handler() {
    let (_dir, platform, _clock) = migrated_platform().await;
    let handler = Scripted::ok();
    let router = router_for(handler.clone());
    for (i, event_type) in crate::domain::EventType::ALL.into_iter().enumerate() {
        enqueue(
            &platform,
            &format!("E{i}"),
            event_type.as_str(),
            &format!("PN{i}"),
            T0 + i as i64,
        );
    }
    let report = drain(&platform, &router, &options()).await.unwrap();
    assert_eq!(report.events.len(), crate::domain::EventType::ALL.len());
    assert!(
        report
            .events
            .iter()
            .all(|e| matches!(e.outcome, Outcome::Done)),
        "{report:?}"
    );
}

#[tokio::test]
async fn an_event_whose_drains_keep_dying_is_buried_once_they_have_been_silent_a_while() {
    let (_dir, platform, clock) = migrated_platform().await;
    enqueue(&platform, "E1", "call.completed", "PN1", T0);
    let options = options();
    let hanging_router = router_for(Rc::new(Hangs {
        started: Cell::new(0),
    }));
    for _ in 0..crate::queue::MAX_ABANDONED {
        let mut killed = Box::pin(drain(&platform, &hanging_router, &options));
        assert!(futures::poll!(&mut killed).is_pending());
        // A killed process runs no destructors: the drain's leases are left to expire.
        std::mem::forget(killed);
        clock.advance_ms(options.event_lease_ms);
    }
    assert_eq!(state_of(&platform, "E1"), "leased");
    // Its last drain may only be slow: nothing is buried until it has been silent a lease longer.
    let report = drain(&platform, &router_for(Scripted::ok()), &options)
        .await
        .unwrap();
    assert!(report.abandoned.is_empty(), "{report:?}");
    clock.advance_ms(options.event_lease_ms);
    let handler = Scripted::ok();
    let report = drain(&platform, &router_for(handler.clone()), &options)
        .await
        .unwrap();
    assert_eq!(report.abandoned, ["E1"]);
    assert!(handler.seen().is_empty());
    assert_eq!(state_of(&platform, "E1"), "dead");
}

/// Counts how many events are in progress at once.
struct Gauge {
    now: Cell<usize>,
    max: Cell<usize>,
}

#[async_trait(?Send)]
impl EventHandler for Gauge {
    async fn handle(
        &self,
        _event_type: EventType,
        _event: &QueuedEvent,
        _lease: &Lease,
    ) -> Result<(), ProcessError> {
        self.now.set(self.now.get() + 1);
        self.max.set(self.max.get().max(self.now.get()));
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        self.now.set(self.now.get() - 1);
        Ok(())
    }
}

#[tokio::test]
async fn different_numbers_run_concurrently_up_to_the_limit() {
    let (_dir, platform, _clock) = migrated_platform().await;
    for i in 0..8 {
        enqueue(
            &platform,
            &format!("E{i}"),
            "call.completed",
            &format!("PN{i}"),
            T0 + i,
        );
    }
    let gauge = Rc::new(Gauge {
        now: Cell::new(0),
        max: Cell::new(0),
    });
    let options = DrainOptions {
        concurrency: 3,
        ..options()
    };
    let report = drain(&platform, &router_for(gauge.clone()), &options)
        .await
        .unwrap();
    assert_eq!(report.count(|o| *o == Outcome::Done), 8);
    assert_eq!(gauge.max.get(), 3);
}

/// Answers every request with `status`, or fails like a refused connection when `None`.
struct FakeHttp {
    status: Option<u16>,
    sent: RefCell<Vec<(Method, String)>>,
}

#[async_trait(?Send)]
impl HttpClient for FakeHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.sent.borrow_mut().push((request.method, request.url));
        match self.status {
            Some(status) => Ok(HttpResponse {
                status,
                headers: Vec::new(),
                body: Vec::new(),
            }),
            None => Err(HttpError::Network("connection refused".into())),
        }
    }
}

/// Time for a drain that, when it first waits, sees a delivery arrive: event `LATE` is stored.
struct DeliveryWhileWaiting {
    clock: Rc<ManualClock>,
    platform: Platform,
    waited: Cell<bool>,
}

#[async_trait(?Send)]
impl Clock for DeliveryWhileWaiting {
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn sleep_ms(&self, ms: u64) {
        if !self.waited.replace(true) {
            enqueue(&self.platform, "LATE", "message.received", "PN1", T0);
        }
        self.clock.sleep_ms(ms).await;
    }
}

#[tokio::test]
async fn a_kicked_drain_looks_again_when_its_window_closes() {
    for (linger_until_ms, processed) in [
        (Some(T0 + 1_500), vec!["EARLY", "LATE"]),
        (None, vec!["EARLY"]),
    ] {
        let (_dir, platform, clock) = migrated_platform().await;
        enqueue(&platform, "EARLY", "message.received", "PN1", T0);
        let mut kicked = platform.clone();
        kicked.clock = Rc::new(DeliveryWhileWaiting {
            clock: clock.clone(),
            platform: platform.clone(),
            waited: Cell::new(false),
        });
        let handler = Scripted::ok();
        let options = DrainOptions {
            linger_until_ms,
            ..options()
        };
        drain(&kicked, &router_for(handler.clone()), &options)
            .await
            .unwrap();
        // A later delivery of the window did not kick: only a drain that looks again processes it.
        assert_eq!(
            handler.seen(),
            processed,
            "lingering until {linger_until_ms:?}"
        );
    }
}

/// A database that fails every statement until the clock reaches `fails_until_ms`, as a locked one does.
struct LockedUntil {
    inner: Rc<dyn crate::platform::Sql>,
    clock: Rc<ManualClock>,
    fails_until_ms: i64,
}

impl crate::platform::Sql for LockedUntil {
    fn execute(
        &self,
        statement: &str,
        params: &[crate::platform::Value],
    ) -> anyhow::Result<crate::platform::Rows> {
        anyhow::ensure!(
            self.clock.now_ms() >= self.fails_until_ms,
            "database is locked"
        );
        self.inner.execute(statement, params)
    }
}

#[tokio::test]
async fn a_kicked_drain_that_finds_the_database_locked_tries_again() {
    let (_dir, platform, clock) = migrated_platform().await;
    enqueue(&platform, "EV1", "message.received", "PN1", T0);
    let locked = Platform {
        sql: Rc::new(LockedUntil {
            inner: platform.sql.clone(),
            clock: clock.clone(),
            fails_until_ms: T0 + 500,
        }),
        ..platform.clone()
    };
    let handler = Scripted::ok();
    let kicked = DrainOptions {
        linger_until_ms: Some(T0),
        ..options()
    };
    let report = drain_retrying(&locked, &router_for(handler.clone()), &kicked)
        .await
        .expect("the second try finds the database free");
    assert_eq!(handler.seen(), ["EV1"]);
    assert_eq!(report.count(|o| *o == Outcome::Done), 1);
    // Not kicked (the tick, /admin/drain): the failure is reported to the caller at once.
    let locked_again = Platform {
        sql: Rc::new(LockedUntil {
            inner: platform.sql.clone(),
            clock: clock.clone(),
            fails_until_ms: clock.now_ms() + 500,
        }),
        ..platform.clone()
    };
    let before = clock.now_ms();
    let ticked = drain_retrying(&locked_again, &router_for(Scripted::ok()), &options()).await;
    assert!(ticked.is_err());
    assert_eq!(clock.now_ms(), before, "no wait before the error");
}

#[tokio::test]
async fn kick_posts_to_the_drain_and_reports_failures() {
    let accepted = FakeHttp {
        status: Some(202),
        sent: RefCell::default(),
    };
    kick(&accepted, DRAIN_URL, T0).await.unwrap();
    let url = format!("{DRAIN_URL}?until={T0}");
    assert_eq!(*accepted.sent.borrow(), [(Method::Post, url.clone())]);
    let request = Request {
        method: "POST".into(),
        path: "/drain".into(),
        query: format!("until={T0}"),
        ..Default::default()
    };
    assert_eq!(kick_linger_until(&request), Some(T0));
    for status in [Some(500), None] {
        let failing = FakeHttp {
            status,
            sent: RefCell::default(),
        };
        assert!(kick(&failing, DRAIN_URL, T0).await.is_err());
    }
}

/// Runs every statement on the database beneath it, keeping their text.
struct Recorded {
    inner: Rc<dyn crate::platform::Sql>,
    statements: RefCell<Vec<String>>,
}

impl crate::platform::Sql for Recorded {
    fn execute(
        &self,
        statement: &str,
        params: &[crate::platform::Value],
    ) -> anyhow::Result<crate::platform::Rows> {
        self.statements.borrow_mut().push(statement.to_owned());
        self.inner.execute(statement, params)
    }
}

/// While a number's events are in one drain's hands, the drains its other deliveries kick find nothing to
/// lease once one of them has admitted the inbox. They must learn it without writing: any write
/// statement, even one that changes no row, takes the database's write lock and queues the intake's
/// inserts behind it (a third of the intake's rate on `spin up`, docs/performance.md).
#[tokio::test]
async fn a_drain_with_nothing_to_lease_writes_nothing() {
    let (_dir, platform, _clock) = migrated_platform().await;
    enqueue(&platform, "A1", "call.completed", "PNa", T0);
    let held = Queue::of(&platform)
        .lease("the-first-drain", T0, 300_000, 10, &[])
        .unwrap();
    assert_eq!(held.len(), 1);
    enqueue(&platform, "A2", "message.received", "PNa", T0 + 1);
    // Another kicked drain admitted it.
    Queue::of(&platform).admit().unwrap();
    // The first drain sampled the queue depth this minute as it started.
    crate::queue::sample_depth(&platform);

    let recorded = Rc::new(Recorded {
        inner: platform.sql.clone(),
        statements: RefCell::default(),
    });
    let kicked = Platform {
        sql: recorded.clone(),
        ..platform.clone()
    };
    let handler = Scripted::ok();
    let report = drain(&kicked, &router_for(handler.clone()), &options())
        .await
        .unwrap();
    assert!(report.events.is_empty(), "{report:?}");
    let statements = recorded.statements.borrow();
    assert!(!statements.is_empty(), "the drain looked at the queue");
    let writes: Vec<&String> = statements
        .iter()
        .filter(|s| {
            let verb = s.split_whitespace().next().unwrap_or("");
            ["INSERT", "UPDATE", "DELETE", "REPLACE"]
                .iter()
                .any(|w| verb.eq_ignore_ascii_case(w))
        })
        .collect();
    assert!(writes.is_empty(), "an idle drain wrote: {writes:#?}");
    assert_eq!(state_of(&platform, "A2"), "pending");
}

/// Holds up the event `SLOW` until `LATE`, which a delivery stores while `SLOW` is in hand, has been
/// handled, or until it has waited long enough to be sure nobody else will; notes which.
struct HeldUntilLate {
    platform: Platform,
    seen: RefCell<Vec<String>>,
    late_came_first: Cell<Option<bool>>,
}

#[async_trait(?Send)]
impl EventHandler for HeldUntilLate {
    async fn handle(
        &self,
        _event_type: EventType,
        event: &QueuedEvent,
        _lease: &Lease,
    ) -> Result<(), ProcessError> {
        self.seen.borrow_mut().push(event.id.clone());
        if event.id != "SLOW" {
            return Ok(());
        }
        enqueue(&self.platform, "LATE", "message.received", "PN2", T0 + 1);
        for _ in 0..1_000 {
            if self.seen.borrow().iter().any(|id| id == "LATE") {
                self.late_came_first.set(Some(true));
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        self.late_came_first.set(Some(false));
        Ok(())
    }
}

#[tokio::test]
async fn a_kicked_drain_looks_when_its_window_closes_even_while_its_batch_is_held_up() {
    let (_dir, platform, _clock) = migrated_platform().await;
    enqueue(&platform, "SLOW", "message.received", "PN1", T0);
    let handler = Rc::new(HeldUntilLate {
        platform: platform.clone(),
        seen: RefCell::default(),
        late_came_first: Cell::new(None),
    });
    let options = DrainOptions {
        linger_until_ms: Some(T0 + 1_500),
        ..options()
    };
    let report = drain(&platform, &router_for(handler.clone()), &options)
        .await
        .unwrap();
    // The later delivery of the window did not kick, and the batch in hand waits on an API: the look
    // at the window's close takes the new event anyway, beside that batch.
    assert_eq!(handler.late_came_first.get(), Some(true), "{report:?}");
    assert_eq!(report.count(|o| *o == Outcome::Done), 2, "{report:?}");
    assert_eq!(report.batches, 2);
    for id in ["SLOW", "LATE"] {
        assert_eq!(state_of(&platform, id), "done");
    }
}
