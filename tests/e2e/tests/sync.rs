//! The periodic sync over HTTP (`POST /admin/sync`), in the test host or on a real `spin up` with
//! `SPIN_BIN`: webhooks are not held up while a sync of their number runs, and an outgoing text whose
//! delivery fails shows so on its page after the next sync.

use std::time::Duration;

use chrono::Utc;
use e2e::app::{TestApp, TestAppOptions};
use e2e::backlog::{pages_among, seed_texts, start_sync, synced_after, webhook_trips};
use e2e::workload::{contact, Line};
use test_servers::notion::property_text;
use test_servers::openphone::model::{Conversation, Message};

/// Texts in the backlog: at Notion's 3 requests/s the sync needs about half a minute for them.
const BACKLOG: usize = 90;

#[tokio::test(flavor = "multi_thread")]
async fn webhook_texts_reach_their_pages_in_seconds_while_their_number_is_being_synced() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let line = Line::register(&app.openphone, 0);
    let backlog = seed_texts(&app.openphone, &line, BACKLOG, 3, Utc::now());
    let run = start_sync(&app, &line).await.unwrap();
    // Once the sync is writing (it holds the number's lease from now until it is done) …
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pages_among(&app, &backlog) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync wrote nothing in a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // … three texts arrive by webhook, two seconds apart.
    let trips = webhook_trips(
        &app,
        &line,
        "t",
        3,
        Duration::from_secs(2),
        &backlog,
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    for trip in &trips {
        assert!(
            trip.latency < Duration::from_secs(10),
            "a webhook text waited {:?} for its page: {trips:?}",
            trip.latency
        );
    }
    // They were written while the sync still had backlog to write, not after it.
    assert!(trips.iter().all(|t| t.backlog_pages < BACKLOG), "{trips:?}");
    synced_after(&app, &line, run, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(pages_among(&app, &backlog), BACKLOG);
    let webhook_ids: Vec<String> = (0..3).map(|i| format!("ACwht{i}")).collect();
    assert_eq!(pages_among(&app, &webhook_ids), 3);
    assert_eq!(
        app.notion.pages(&app.messages_ds).len(),
        BACKLOG + 3,
        "one page each"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outgoing_text_that_ends_undelivered_shows_so_after_the_next_sync() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let line = Line::register(&app.openphone, 0);
    let other = contact(3);
    let sent_at = Utc::now() - chrono::Duration::minutes(1);
    let text = |status: &str| {
        let mut message = Message::incoming(
            "ACout0001",
            &line.id,
            &other,
            &line.number,
            "Your invoice",
            sent_at,
        );
        message.direction = "outgoing".into();
        message.from = line.number.clone();
        message.to = vec![other.clone()];
        message.status = status.into();
        message
    };
    app.openphone.add_message(text("sent"));
    let mut conversation = Conversation::new("CNout0001", &line.id, &[other.as_str()], sent_at);
    conversation.updated_at = Some(sent_at);
    conversation.last_activity_at = Some(sent_at);
    app.openphone.add_conversation(conversation);
    let status = || {
        app.notion
            .pages(&app.messages_ds)
            .iter()
            .find(|p| property_text(&p["properties"]["Message ID"]).as_deref() == Some("ACout0001"))
            .and_then(|p| property_text(&p["properties"]["Status"]))
    };

    let run = start_sync(&app, &line).await.unwrap();
    synced_after(&app, &line, run, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(status().as_deref(), Some("sent"));

    // No webhook tells of an undelivered text; the next sync finds it.
    app.openphone.add_message(text("undelivered"));
    let run = start_sync(&app, &line).await.unwrap();
    synced_after(&app, &line, run, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(status().as_deref(), Some("undelivered"));
    assert_eq!(app.notion.pages(&app.messages_ds).len(), 1);
}
