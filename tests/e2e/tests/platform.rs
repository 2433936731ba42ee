//! What the platform does to the app's work, checked on the test host and on a real `spin up`: an API
//! that hangs does not hold a step past its deadline, one number waiting out a `Retry-After` does not
//! hold up the others drained by the same instance, and the database keeps the write-ahead log the
//! migrations asked for.

use std::time::{Duration, Instant};

use e2e::app::{TestApp, TestAppOptions};
use test_servers::webhooks::MessageFixture;
use test_servers::{Fault, FaultRule};

/// A message from `from` to the workspace number `PN…` `phone_number_id`, sent now.
fn message(id: &str, from: &str, phone_number_id: &str) -> MessageFixture {
    let now = chrono::Utc::now();
    MessageFixture {
        event_id: format!("EV{id}"),
        message_id: format!("AC{id}"),
        from: from.into(),
        phone_number_id: phone_number_id.into(),
        media: Vec::new(),
        created_at: now,
        event_created_at: now,
        ..MessageFixture::example()
    }
}

fn messages_from(app: &TestApp, from: &str) -> usize {
    app.notion
        .pages(&app.messages_ds)
        .iter()
        .filter(|page| {
            test_servers::notion::property_text(&page["properties"]["From"]).as_deref()
                == Some(from)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notion_request_that_hangs_times_out_and_the_page_is_written_once_later() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    // Notion takes the page create and never answers in time (the server handles it only after the
    // wait, so a client that gave up has written nothing).
    app.notion
        .inject(FaultRule::next(1, Fault::Delay(Duration::from_secs(90))).on("POST /v1/pages"));
    let text = message("hung0001", "+15555550131", "PNhungline1");

    let delivered = Instant::now();
    assert_eq!(app.deliver(&text.message_received()).await.status(), 202);
    // The request gives up at its first-byte deadline (20 s): well before the lease's half slot ends.
    let failed = app
        .stats_when(Duration::from_secs(40), |s| {
            s["api"]["notion"]["errors_today"].as_i64() >= Some(1)
        })
        .await;
    let waited = delivered.elapsed();
    assert!(
        failed["api"]["notion"]["errors_today"].as_i64() >= Some(1),
        "the hung create had not failed {waited:?} after the delivery; logs:\n{}",
        app.logs()
    );
    assert!(
        waited < Duration::from_secs(35),
        "the hung create failed only after {waited:?}"
    );
    assert_eq!(messages_from(&app, "+15555550131"), 0);

    // The retry, once its backoff has passed, writes the page: once.
    app.wait_idle().await;
    tokio::time::sleep(Duration::from_secs(11)).await; // the unknown outcome's settle time
    app.let_time_pass(Duration::from_secs(3600)).await.unwrap();
    let drained = app.drain().await;
    let written = app
        .eventually(Duration::from_secs(30), |app| {
            messages_from(app, "+15555550131") == 1
        })
        .await;
    assert!(written, "drain: {drained}; logs:\n{}", app.logs());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages_from(&app, "+15555550131"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_number_waiting_out_a_retry_after_does_not_hold_up_another() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let slow = message("slowlane01", "+15555550141", "PNslowline1");
    let fast = message("fastlane01", "+15555550142", "PNfastline2");

    // Notion is down while both texts arrive, so both wait in the queue and one drain takes both.
    app.notion
        .inject(FaultRule::fraction(1.0, Fault::Status(503)));
    for text in [&slow, &fast] {
        assert_eq!(app.deliver(&text.message_received()).await.status(), 202);
    }
    let queued = app
        .stats_when(Duration::from_secs(60), |s| {
            s["queue"]["pending"] == 2 && s["queue"]["leased"] == 0
        })
        .await;
    assert!(
        queued["queue"]["pending"] == 2 && queued["queue"]["leased"] == 0,
        "{queued}\nlogs:\n{}",
        app.logs()
    );
    // Each page create failed with a 503, which may have landed: the app gives Notion 10 s before it
    // queries for it (a wait real Spin's clock cannot skip).
    tokio::time::sleep(Duration::from_secs(11)).await;
    app.notion.clear_faults();
    let outage_faults = app.notion.faults_triggered();
    // Back up, but the slow number's first request is told to come back in 5 s.
    app.notion.inject(
        FaultRule::next(
            1,
            Fault::RateLimited {
                retry_after_secs: 5,
            },
        )
        .when_body_contains("5555550141"),
    );
    app.let_time_pass(Duration::from_secs(3600)).await.unwrap();

    let started = Instant::now();
    let drain = app.drain();
    let watch = async {
        let (mut fast_at, mut slow_at) = (None, None);
        while started.elapsed() < Duration::from_secs(40)
            && (fast_at.is_none() || slow_at.is_none())
        {
            if fast_at.is_none() && messages_from(&app, "+15555550142") == 1 {
                fast_at = Some(started.elapsed());
            }
            if slow_at.is_none() && messages_from(&app, "+15555550141") == 1 {
                slow_at = Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (fast_at, slow_at)
    };
    let (report, (fast_at, slow_at)) = tokio::join!(drain, watch);
    assert_eq!(
        app.notion.faults_triggered() - outage_faults,
        1,
        "the Retry-After was sent"
    );
    let (Some(fast_at), Some(slow_at)) = (fast_at, slow_at) else {
        panic!(
            "pages missing: fast {fast_at:?}, slow {slow_at:?}; drain: {report}; logs:\n{}",
            app.logs()
        );
    };
    // Waiting blocks only the number that waits: the other's page is written meanwhile, not after.
    assert!(
        slow_at >= fast_at + Duration::from_secs(3),
        "the fast number's page came at {fast_at:?}, the slow one's at {slow_at:?}: the wait held both"
    );
    assert_eq!(
        app.notion.pages(&app.messages_ds).len(),
        2,
        "one page per text"
    );
}

/// The migrations put both databases in write-ahead-log mode through the platform's SQL interface (on
/// Spin, `spin:sqlite`), and the mode stays in the files: every later request opens a connection of its
/// own, and the second delivery of an event finds the first one stored, before and after a drain took it
/// into the app's database.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_keeps_a_write_ahead_log_that_later_requests_read() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let delivery = message("wal00001", "+15555550141", "PNwalline01").message_received();
    assert_eq!(app.deliver(&delivery).await.status(), 202);
    assert_eq!(app.intake_journal_mode().unwrap(), "wal");
    assert_eq!(app.deliver(&delivery).await.status(), 200);
    app.drain().await;
    assert_eq!(app.journal_mode().unwrap(), "wal");
    assert_eq!(app.deliver(&delivery).await.status(), 200);
}
