//! Calls and messages into Notion through the real clients, against local servers that enforce Notion's
//! and OpenPhone's rules: the right properties, exactly one page, and the request budget a user pays.

use common::outbound::Failure;
use common::testing::{storage_config, text, World};
use test_servers::openphone::model::{PhoneNumber, Recording};
use test_servers::webhooks::{
    CallFixture, MediaFixture, MessageFixture, SummaryFixture, TranscriptFixture,
};
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
    // The lifecycle's own requests, plus building the indexes that name the contact and the user: one
    // listing each, shared by every later event (see the second lifecycle's cost in first_contact.rs).
    let counts = world.openphone.request_counts();
    let indexes = ["GET /v1/contacts", "GET /v1/phone-numbers"];
    assert!(
        indexes
            .iter()
            .all(|e| counts.get(*e).copied().unwrap_or(0) <= 1),
        "{counts:?}"
    );
    let lifecycle: u64 = counts
        .iter()
        .filter(|(e, _)| !indexes.contains(&e.as_str()))
        .map(|(_, n)| n)
        .sum();
    assert!(lifecycle <= 3, "{counts:?}");
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
    let storage = storage_config(&s3);
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

    let settings = world.page_settings(Some(&storage));
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

#[tokio::test]
async fn message_media_are_linked_from_our_copies_once_stored_and_renewed_there() {
    let world = World::new().await;
    let s3 = test_servers::S3Server::start().unwrap();
    let storage = storage_config(&s3);
    let picture = world
        .openphone
        .add_media("/mms/p", "image/png", vec![5u8; 2000]);
    let document = world
        .openphone
        .add_media("/mms/d", "application/pdf", vec![6u8; 3000]);
    let message = MessageFixture {
        media: vec![
            MediaFixture {
                url: picture.clone(),
                content_type: "image/png".into(),
                duration: None,
            },
            MediaFixture {
                url: document.clone(),
                content_type: "application/pdf".into(),
                duration: None,
            },
        ],
        ..fresh_message()
    };
    let payload = message.message_received();

    // The store is down: the page is written with OpenPhone's links, its body waits for our copies, and
    // the event is retried.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut down = storage.clone();
    down.endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = world
        .apply_storing_media("message.received", &payload, Some(&down))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let page = world.notion.pages(&world.messages_ds).remove(0);
    let page_id = page["id"].as_str().unwrap().to_owned();
    assert_eq!(text(&page, "Media URLs"), format!("{picture}\n{document}"));
    assert_eq!(page["properties"]["Has Media"]["checkbox"], true);
    assert!(world.notion.blocks(&page_id).is_empty());

    // The retry copies them: our links in the property and in an image and a file block.
    world
        .apply_storing_media("message.received", &payload, Some(&storage))
        .await
        .unwrap();
    let page = world.notion.page(&page_id).unwrap();
    let links: Vec<String> = text(&page, "Media URLs")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(
        links.iter().all(|l| l.starts_with(s3.endpoint())),
        "{links:?}"
    );
    let blocks = world.notion.blocks(&page_id);
    let kinds: Vec<&str> = blocks.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(kinds, ["heading_2", "image", "file"]);
    assert_eq!(blocks[1]["image"]["external"]["url"], links[0].as_str());
    assert_eq!(blocks[2]["file"]["external"]["url"], links[1].as_str());

    let settings = world.page_settings(Some(&storage));
    assert_eq!(
        common::sync::links::renew(&world.platform, &settings).await,
        (0, vec![]),
        "nothing expires yet"
    );
    world
        .clock
        .advance_ms(6 * 24 * 3600 * 1000 + 12 * 3600 * 1000);
    assert_eq!(
        common::sync::links::renew(&world.platform, &settings).await,
        (1, vec![])
    );
    let page = world.notion.page(&page_id).unwrap();
    let renewed: Vec<String> = text(&page, "Media URLs")
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        renewed.len() == 2 && renewed[0] != links[0] && renewed[1] != links[1],
        "{renewed:?}"
    );
    let blocks = world.notion.blocks(&page_id);
    assert_eq!(blocks[1]["image"]["external"]["url"], renewed[0].as_str());
    assert_eq!(blocks[2]["file"]["external"]["url"], renewed[1].as_str());
    assert_eq!(
        common::sync::links::renew(&world.platform, &settings).await,
        (0, vec![]),
        "renewed once"
    );
}

/// Every order of a call's four events, in each payload generation: the legacy (app-created, `v2` and
/// `v3`) `call.completed` that carries no duration, route or forwarding, and the API-created `v4` one; the
/// transcript and summary under their documented alias types. Each order must end with the same complete
/// page: the REST call fills what a legacy payload lacks, no later, poorer event blanks it, and the
/// transcript names the workspace user speaking although transcript events carry no number.
#[tokio::test(flavor = "multi_thread")]
async fn every_order_of_every_payload_version_builds_the_same_complete_call_page() {
    use test_servers::openphone::model::Call as RestCall;

    let events = ["completed", "recording", "transcript", "summary"];
    let mut orders = Vec::new();
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for d in 0..4 {
                    let order = [a, b, c, d];
                    let mut seen = order.to_vec();
                    seen.sort_unstable();
                    seen.dedup();
                    if seen.len() == 4 {
                        orders.push(order.map(|i| events[i]));
                    }
                }
            }
        }
    }
    assert_eq!(orders.len(), 24);
    let runs = ["v2", "v3", "v4"].into_iter().flat_map(|version| {
        orders
            .iter()
            .enumerate()
            .map(move |(n, order)| (version, n, *order))
    });
    let results = futures::future::join_all(runs.map(|(version, n, order)| async move {
        let world = World::new().await;
        world
            .openphone
            .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
        let call_id = format!("ACorder{version}{n:02}");
        let mut call = answered_call(&world).with_ids(&call_id, &format!("EV{call_id}"));
        call.user_id = "USowner".into();
        let url =
            world
                .openphone
                .add_media(&format!("/rec/{call_id}.mp3"), "audio/mpeg", vec![1u8; 100]);
        world.openphone.set_recordings(
            &call_id,
            vec![Recording::completed("CR1", &url, "audio/mpeg", 112)],
        );
        let mut rest = RestCall::new(&call_id, "PNtoDbDhuz", "+15555550123", call.created_at);
        rest.duration = 187;
        rest.answered_at = call.answered_at;
        rest.completed_at = call.completed_at;
        world.openphone.add_call(rest);
        let mut transcript = TranscriptFixture {
            call_id: call_id.clone(),
            event_id: format!("EVtr{call_id}"),
            ..TranscriptFixture::example()
        };
        transcript.dialogue[0].user_id = Some("USowner".into());
        let summary = SummaryFixture {
            call_id: call_id.clone(),
            event_id: format!("EVsum{call_id}"),
            ..SummaryFixture::example()
        };
        for event in order {
            let (event_type, mut payload) = match event {
                "completed" if version == "v4" => ("call.completed", call.call_completed_v4()),
                "completed" => {
                    // v3 app-created payloads have v2's shape.
                    let mut payload = call.call_completed_v2();
                    payload["apiVersion"] = version.into();
                    ("call.completed", payload)
                }
                "recording" => {
                    let mut payload = call.call_recording_completed();
                    payload["id"] = format!("EVrec{call_id}").into();
                    ("call.recording.completed", payload)
                }
                "transcript" => ("call.transcript.completed", transcript.to_event()),
                _ => ("call.summary.completed", summary.to_event()),
            };
            // The alias types Quo's guide shows, for half the orders.
            if n % 2 == 1 && event == "transcript" {
                payload["type"] = "callTranscript".into();
            }
            if n % 2 == 1 && event == "summary" {
                payload["type"] = "callSummary".into();
            }
            world.apply_until_done(event_type, &payload).await;
        }
        let pages = world.notion.pages(&world.calls_ds);
        let mut problems = Vec::new();
        if pages.len() != 1 {
            problems.push(format!("{} pages", pages.len()));
        }
        let page = &pages[0];
        // v4 carries its own duration (completed − answered); v2/v3 have none, REST's is 187 s.
        let expected_duration = if version != "v4" {
            187.0
        } else {
            (call.completed_at.unwrap() - call.answered_at.unwrap()).num_seconds() as f64
        };
        let duration = page["properties"]["Duration"]["number"].as_f64();
        if duration != Some(expected_duration) {
            problems.push(format!(
                "Duration: {duration:?}, expected {expected_duration}"
            ));
        }
        for (property, expected) in [
            ("Call Route", "phone-number"),
            ("Status", "completed"),
            ("Direction", "incoming"),
            ("Participants", "+15555550123"),
            ("Phone Number Used", "+13365550100"),
            ("OpenPhone User", "Olive Owner"),
        ] {
            let actual = text(page, property);
            if actual != expected {
                problems.push(format!("{property}: {actual:?}, expected {expected:?}"));
            }
        }
        for flag in ["Has Recording", "Has Transcript", "Has Summary"] {
            if page["properties"][flag]["checkbox"] != true {
                problems.push(format!("{flag} is not set"));
            }
        }
        if !text(page, "Transcript").contains("Olive Owner: Thanks for calling") {
            problems.push(format!(
                "the transcript does not name the user: {:?}",
                text(page, "Transcript")
            ));
        }
        let body = world.notion.block_texts(page["id"].as_str().unwrap());
        for heading in ["Recordings", "Transcript", "Summary", "Next steps"] {
            let times = body.iter().filter(|b| b.as_str() == heading).count();
            if times != 1 {
                problems.push(format!("{heading} {times} times in the body"));
            }
        }
        (format!("{version} {}", order.join(" → ")), problems)
    }))
    .await;
    let failed: Vec<String> = results
        .into_iter()
        .filter(|(_, problems)| !problems.is_empty())
        .map(|(order, problems)| format!("{order}: {}", problems.join("; ")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} orders failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A legacy `call.completed` carries the voicemail's audio but never its transcription, which REST has;
/// a voicemail still being processed when the call completes is re-checked on the tick within minutes
/// (not at the six-hourly sync).
#[tokio::test]
async fn a_voicemail_gets_its_transcription_and_a_late_one_arrives_within_minutes() {
    use common::sync::{recheck, SyncOptions, SyncSettings};
    use test_servers::openphone::model::Voicemail;

    let world = World::new().await;
    world
        .openphone
        .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
    let voicemail = |status: &str, done: bool| Voicemail {
        id: "VM1".into(),
        status: status.into(),
        duration: done.then_some(17),
        transcript: done.then(|| "Please call me back about the offer.".into()),
        recording_url: done.then(|| world.openphone.media_url("/vm/1.mp3")),
    };

    let mut legacy = CallFixture::example().with_ids("ACvoicemail1", "EVvoicemail1");
    legacy.created_at = now();
    legacy.completed_at = Some(now());
    world
        .openphone
        .set_voicemail(&legacy.call_id, voicemail("completed", true));
    world
        .apply_until_done("call.completed", &legacy.call_completed_v2())
        .await;
    let page = world
        .notion
        .pages(&world.calls_ds)
        .into_iter()
        .find(|p| text(p, "Call ID") == legacy.call_id)
        .unwrap();
    assert_eq!(
        text(&page, "Voicemail Transcript"),
        "Please call me back about the offer."
    );

    // A v4 payload (no voicemail in it) for a call whose voicemail is still being processed.
    let mut late = CallFixture::example().with_ids("ACvoicemail2", "EVvoicemail2");
    late.created_at = now();
    late.completed_at = Some(now());
    late.voicemail = None;
    world
        .openphone
        .set_voicemail(&late.call_id, voicemail("in-progress", false));
    world
        .apply_until_done("call.completed", &late.call_completed_v4())
        .await;
    let find = || {
        world
            .notion
            .pages(&world.calls_ds)
            .into_iter()
            .find(|p| text(p, "Call ID") == late.call_id)
            .unwrap()
    };
    assert_ne!(find()["properties"]["Has Voicemail"]["checkbox"], true);

    world
        .openphone
        .set_voicemail(&late.call_id, voicemail("completed", true));
    let settings = SyncSettings {
        pages: world.page_settings(None),
        options: SyncOptions::default(),
    };
    let numbers = vec!["PNtoDbDhuz".to_owned()];
    // Not yet due a minute after the call…
    world.clock.advance_ms(60_000);
    let early = recheck::recheck_numbers(&world.platform, &settings, &numbers)
        .await
        .unwrap();
    assert_eq!(early.checked, 0, "{early:?}");
    // …and checked three minutes after it.
    world.clock.advance_ms(2 * 60_000 + 1_000);
    let due = recheck::recheck_numbers(&world.platform, &settings, &numbers)
        .await
        .unwrap();
    assert_eq!((due.checked, due.filled), (1, 1), "{due:?}");
    let page = find();
    assert_eq!(page["properties"]["Has Voicemail"]["checkbox"], true);
    assert_eq!(
        text(&page, "Voicemail Transcript"),
        "Please call me back about the offer."
    );
}

/// A failure before the page create is sent (Notion down while the database is resolved) leaves no claim
/// behind: the next attempt writes the page at once instead of waiting two minutes for a create that
/// never started.
#[tokio::test]
async fn a_failure_before_the_create_leaves_no_claim_to_wait_out() {
    let world = World::new().await;
    world
        .notion
        .inject(FaultRule::fraction(1.0, Fault::Status(503)).on("GET /v1/databases/{id}"));
    let payload = fresh_message().message_received();
    let first = world.apply("message.received", &payload).await;
    assert!(first.is_err(), "Notion was down: {first:?}");
    world.notion.clear_faults();
    let second = world.apply("message.received", &payload).await;
    assert!(second.is_ok(), "written at once: {second:?}");
    assert_eq!(world.notion.pages(&world.messages_ds).len(), 1);
}

/// A `404` on a page write means "deleted" only while its database is visible: a database the
/// integration lost access to answers `404` for every page, and those pages are not given up on.
#[tokio::test]
async fn a_page_of_an_unshared_database_is_not_taken_for_deleted() {
    let world = World::new().await;
    let sent = MessageFixture {
        created_at: now(),
        ..MessageFixture::outgoing("+13365550100", &["+15555550123"])
    };
    let mut queued = sent.message_delivered();
    queued["data"]["object"]["status"] = "sent".into();
    world.apply_until_done("message.delivered", &queued).await;

    world
        .notion
        .unshare(&world.notion_config.messages_database_id);
    let delivered = sent.message_delivered();
    let refused = world.apply("message.delivered", &delivered).await;
    assert!(
        matches!(refused, Err(common::pages::WriteError::Api(_))),
        "an API error, not a deleted page: {refused:?}"
    );

    world
        .notion
        .share(&world.notion_config.messages_database_id);
    world.apply("message.delivered", &delivered).await.unwrap();
    let pages = world.notion.pages(&world.messages_ds);
    assert_eq!(pages.len(), 1);
    assert_eq!(text(&pages[0], "Status"), "delivered");
}
