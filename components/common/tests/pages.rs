//! Calls and messages into Notion through the real clients, against local servers that enforce Notion's
//! and OpenPhone's rules: the right properties, exactly one page, and the request budget a user pays.

mod support;

use support::{text, World};
use test_servers::openphone::model::{PhoneNumber, Recording};
use test_servers::webhooks::{CallFixture, MessageFixture, SummaryFixture, TranscriptFixture};
use test_servers::{Fault, FaultRule};

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn fresh_message() -> MessageFixture {
    MessageFixture {
        created_at: now(),
        event_created_at: now(),
        ..MessageFixture::example()
    }
}

/// An answered incoming call of today, with one recording segment hosted by the OpenPhone server.
fn answered_call(world: &World) -> CallFixture {
    let mut call = CallFixture::example().with_ids("ACcall0001", "EVcall0001");
    call.created_at = now();
    call.answered_at = Some(now());
    call.completed_at = Some(now());
    call.voicemail = None;
    let url = world
        .openphone
        .add_media("/rec/ACcall0001-1.mp3", "audio/mpeg", vec![7u8; 1000]);
    world.openphone.set_recordings(
        &call.call_id,
        vec![
            Recording::completed("CR1", &url, "audio/mpeg", 112),
            Recording::completed(
                "CR2",
                &world.openphone.media_url("/rec/2.mp3"),
                "audio/mpeg",
                30,
            ),
        ],
    );
    call
}

#[tokio::test]
async fn a_new_message_becomes_one_page_with_every_recipient_and_its_canvas() {
    let world = World::new().await;
    let canvas = world.add_canvas("Acme Funding", "(555) 555-0123");
    let mut message = fresh_message();
    message.to = vec!["+13365550100".into(), "+14155550199".into()];
    message.to_as_array = true;
    let page_id = world
        .apply_until_done("message.received", &message.message_received())
        .await;

    let pages = world.notion.pages(&world.messages_ds);
    assert_eq!(pages.len(), 1);
    let page = &pages[0];
    assert_eq!(page["id"], page_id);
    assert_eq!(text(page, "Message ID"), message.message_id);
    assert_eq!(text(page, "From"), "+15555550123");
    assert_eq!(text(page, "To"), "+13365550100, +14155550199");
    assert_eq!(text(page, "Content"), "Sending the statements now");
    assert_eq!(text(page, "Status"), "received");
    assert_eq!(text(page, "Direction"), "incoming");
    assert_eq!(
        text(page, "OpenPhone Number"),
        "+13365550100",
        "a number, not the PN id"
    );
    assert_eq!(text(page, "Conversation ID"), message.conversation_id);
    assert!(text(page, "Media URLs").contains("statement.jpg"));
    assert_eq!(page["properties"]["Canvas"]["relation"][0]["id"], canvas);
}

#[tokio::test]
async fn a_message_with_a_warm_cache_costs_one_notion_request() {
    let world = World::new().await;
    world.add_canvas("Acme", "+15555550123");
    world
        .apply_until_done("message.received", &fresh_message().message_received())
        .await;
    world.notion.reset_counters();
    world.openphone.reset_counters();

    let second = MessageFixture {
        message_id: "ACsecond".into(),
        event_id: "EVsecond".into(),
        ..fresh_message()
    };
    world
        .apply_until_done("message.received", &second.message_received())
        .await;
    assert_eq!(
        world.notion.total_requests(),
        1,
        "{:?}",
        world.notion.request_counts()
    );
    assert_eq!(world.openphone.total_requests(), 0);
}

#[tokio::test]
async fn redelivery_and_late_statuses_never_duplicate_or_regress() {
    let world = World::new().await;
    let sent = MessageFixture::outgoing("+13365550100", &["+15555550123"]);
    let sent = MessageFixture {
        created_at: now(),
        ..sent
    };
    let delivered = sent.message_delivered();
    world
        .apply_until_done("message.delivered", &delivered)
        .await;
    world
        .apply_until_done("message.delivered", &delivered)
        .await;
    // A late `sent` (rank below `delivered`) arrives after the delivery.
    let mut late = delivered.clone();
    late["data"]["object"]["status"] = "sent".into();
    world.apply_until_done("message.received", &late).await;

    let pages = world.notion.pages(&world.messages_ds);
    assert_eq!(pages.len(), 1);
    assert_eq!(text(&pages[0], "Status"), "delivered");
}

#[tokio::test]
async fn a_full_call_lifecycle_builds_one_complete_page_within_budget() {
    let world = World::new().await;
    world
        .openphone
        .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
    world.add_canvas("Acme", "555.555.0123");
    let call = answered_call(&world);
    let transcript = TranscriptFixture {
        call_id: call.call_id.clone(),
        ..TranscriptFixture::example()
    };
    let summary = SummaryFixture {
        call_id: call.call_id.clone(),
        ..SummaryFixture::example()
    };

    world
        .apply_until_done("call.completed", &call.call_completed_v2())
        .await;
    world
        .apply_until_done("call.recording.completed", &call.call_recording_completed())
        .await;
    world
        .apply_until_done("call.transcript.completed", &transcript.to_event())
        .await;
    world
        .apply_until_done("call.summary.completed", &summary.to_event())
        .await;

    let pages = world.notion.pages(&world.calls_ds);
    assert_eq!(pages.len(), 1);
    let page = &pages[0];
    assert_eq!(text(page, "Call ID"), call.call_id);
    assert_eq!(text(page, "Status"), "completed");
    assert_eq!(text(page, "Phone Number Used"), "+13365550100");
    assert_eq!(text(page, "Participants"), "+15555550123");
    assert_eq!(page["properties"]["Has Recording"]["checkbox"], true);
    assert!(text(page, "Recording URL").ends_with("/rec/ACcall0001-1.mp3"));
    assert_eq!(page["properties"]["Has Transcript"]["checkbox"], true);
    assert!(
        text(page, "Transcript").contains("Olive Owner") || text(page, "Transcript").contains(":")
    );
    assert_eq!(page["properties"]["Has Summary"]["checkbox"], true);
    assert!(text(page, "Next Steps").contains("Follow up"));
    assert_eq!(
        page["properties"]["Canvas"]["relation"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let body = world.notion.block_texts(page["id"].as_str().unwrap());
    for heading in ["Recordings", "Transcript", "Summary", "Next steps"] {
        assert_eq!(
            body.iter().filter(|b| *b == heading).count(),
            1,
            "{heading} in {body:?}"
        );
    }
    assert!(
        body.iter().any(|b| b == "Recording 2 (0:30)"),
        "every segment is linked: {body:?}"
    );

    let notion_non_append: u64 = world
        .notion
        .request_counts()
        .iter()
        .filter(|(e, _)| e.starts_with("POST /v1/pages") || e.starts_with("PATCH /v1/pages"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        notion_non_append <= 4,
        "{:?}",
        world.notion.request_counts()
    );
    assert!(
        world.openphone.total_requests() <= 3,
        "{:?}",
        world.openphone.request_counts()
    );
}

#[tokio::test]
async fn events_of_a_call_in_any_order_twice_each_with_a_failing_notion_make_one_page() {
    for seed in [1u64, 2, 3] {
        let world = World::new().await;
        world
            .openphone
            .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
        let call = answered_call(&world);
        let transcript = TranscriptFixture {
            call_id: call.call_id.clone(),
            ..TranscriptFixture::example()
        };
        let summary = SummaryFixture {
            call_id: call.call_id.clone(),
            ..SummaryFixture::example()
        };
        let mut events = vec![
            ("call.completed", call.call_completed_v2()),
            ("call.recording.completed", call.call_recording_completed()),
            ("call.transcript.completed", transcript.to_event()),
            ("call.summary.completed", summary.to_event()),
        ];
        events.extend(events.clone());
        // A deterministic shuffle per seed.
        let n = events.len();
        for i in 0..n {
            let j = ((seed * 7919 + i as u64 * 104_729) % n as u64) as usize;
            events.swap(i, j);
        }
        world.notion.set_fault_seed(seed);
        // The first create and the first append land but answer 500: the unknown outcomes.
        world
            .notion
            .inject(FaultRule::next(1, Fault::AppliedButFailed).on("POST /v1/pages"));
        world.notion.inject(
            FaultRule::next(1, Fault::AppliedButFailed).on("PATCH /v1/blocks/{id}/children"),
        );
        world
            .notion
            .inject(FaultRule::fraction(0.1, Fault::Status(503)));
        world.notion.inject(FaultRule::fraction(
            0.1,
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        ));
        world
            .notion
            .inject(FaultRule::fraction(0.1, Fault::AppliedButFailed));
        for (event_type, payload) in &events {
            world.apply_until_done(event_type, payload).await;
        }
        assert!(
            world.notion.faults_triggered() > 0,
            "seed {seed}: no fault fired"
        );

        let pages = world.notion.pages(&world.calls_ds);
        assert_eq!(pages.len(), 1, "seed {seed}");
        let page = &pages[0];
        assert_eq!(text(page, "Status"), "completed", "seed {seed}");
        assert_eq!(
            page["properties"]["Has Recording"]["checkbox"], true,
            "seed {seed}"
        );
        assert_eq!(
            page["properties"]["Has Transcript"]["checkbox"], true,
            "seed {seed}"
        );
        assert_eq!(
            page["properties"]["Has Summary"]["checkbox"], true,
            "seed {seed}"
        );
        let body = world.notion.block_texts(page["id"].as_str().unwrap());
        for heading in ["Recordings", "Transcript", "Summary", "Next steps"] {
            assert_eq!(
                body.iter().filter(|b| *b == heading).count(),
                1,
                "seed {seed}: {heading} in {body:?}"
            );
        }
        let transcript_lines = body.iter().filter(|b| b.starts_with('[')).count();
        assert_eq!(
            transcript_lines,
            transcript.dialogue.len(),
            "seed {seed}: {body:?}"
        );
    }
}

#[tokio::test]
async fn messages_survive_a_failing_notion_without_duplicates() {
    let world = World::new().await;
    world.notion.set_fault_seed(9);
    world
        .notion
        .inject(FaultRule::fraction(0.3, Fault::AppliedButFailed));
    for i in 0..10 {
        let m = MessageFixture {
            message_id: format!("ACm{i}"),
            event_id: format!("EVm{i}"),
            ..fresh_message()
        };
        let payload = m.message_received();
        world.apply_until_done("message.received", &payload).await;
        world.apply_until_done("message.received", &payload).await;
    }
    assert!(world.notion.faults_triggered() > 0);
    assert_eq!(world.notion.pages(&world.messages_ds).len(), 10);
}

#[tokio::test]
async fn a_transient_openphone_failure_is_retried_not_taken_for_absent() {
    let world = World::new().await;
    world
        .openphone
        .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
    let call = answered_call(&world);
    world
        .openphone
        .inject(FaultRule::next(3, Fault::Status(500)));
    let err = world
        .apply("call.recording.completed", &call.call_recording_completed())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        world.notion.pages(&world.calls_ds).is_empty(),
        "nothing written from a failed fetch"
    );
    world
        .apply_until_done("call.recording.completed", &call.call_recording_completed())
        .await;
    let pages = world.notion.pages(&world.calls_ds);
    assert_eq!(pages[0]["properties"]["Has Recording"]["checkbox"], true);
}

#[tokio::test]
async fn expiring_recording_links_are_renewed_on_the_page_and_in_its_body() {
    let world = World::new().await;
    let s3 = test_servers::S3Server::start().unwrap();
    let storage = World::storage(&s3);
    world
        .openphone
        .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
    let call = answered_call(&world);
    world
        .apply_storing_media(
            "call.recording.completed",
            &call.call_recording_completed(),
            Some(&storage),
        )
        .await
        .unwrap();
    let page = world.notion.pages(&world.calls_ds).remove(0);
    let first = text(&page, "Recording URL");
    assert!(
        first.starts_with(s3.endpoint()),
        "linked to our copy: {first}"
    );

    let settings = common::sync::SyncSettings {
        openphone: world.openphone_config.clone(),
        notion: world.notion_config.clone(),
        sync: world.sync_config.clone(),
        options: common::sync::SyncOptions::default(),
        storage: Some(storage),
    };
    assert_eq!(
        common::sync::links::renew(&world.platform, &settings).await,
        (0, vec![]),
        "nothing expires yet"
    );
    world
        .clock
        .advance_ms(6 * 24 * 3600 * 1000 + 12 * 3600 * 1000);
    let (renewed, errors) = common::sync::links::renew(&world.platform, &settings).await;
    assert_eq!((renewed, errors), (1, vec![]));

    let page = world.notion.page(page["id"].as_str().unwrap()).unwrap();
    let renewed_link = text(&page, "Recording URL");
    assert!(
        renewed_link.starts_with(s3.endpoint()) && renewed_link != first,
        "{renewed_link}"
    );
    let blocks = world.notion.blocks(page["id"].as_str().unwrap());
    let body_link = blocks
        .iter()
        .find_map(|b| b["paragraph"]["rich_text"][0]["text"]["link"]["url"].as_str())
        .unwrap();
    assert_eq!(
        body_link, renewed_link,
        "the body links the renewed URL too"
    );
    assert_eq!(
        common::sync::links::renew(&world.platform, &settings).await,
        (0, vec![]),
        "renewed once"
    );
}
