//! Requests the periodic sync sends to OpenPhone and Notion, per number, for a first backfill of
//! 3 numbers, 40 conversations, 600 calls and 900 messages (some pages made earlier by another tool),
//! for an idle re-run six hours later, and for a run after one new text — next to what the reference
//! implementation sends (up to 250 list requests per number per run, plus 5 per recent call, re-fetched
//! every run for 7 days).
//!
//! The servers are `test_servers`' OpenPhone and Notion stand-ins (with their real-time rate limits off);
//! the app keeps to its own budgets on a manual clock, so the run takes seconds, not the 20 virtual
//! minutes Notion's 3 requests/s would take. The counts come from the servers, and are checked against
//! what the run itself counted.
//!
//! ```text
//! cargo run --release -p common --example sync_requests
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{ensure, Context};
use chrono::{DateTime, Duration, Utc};
use common::platform::{Clock, Platform};
use common::sync::{run_with, RunReport, RunRequest, SyncOptions, SyncSettings, Via};
use common::testing::World;
use serde_json::json;
use test_servers::openphone::model as op;
use test_servers::{NotionServer, OpenPhoneServer};

const NUMBERS: [(&str, &str); 3] = [
    ("PNline0001", "+13365550101"),
    ("PNline0002", "+13365550102"),
    ("PNline0003", "+13365550103"),
];
const CONVERSATIONS: usize = 40;
const CALLS: usize = 600;
const MESSAGES: usize = 900;
const HOUR_MS: i64 = 3_600_000;

fn participant(c: usize) -> String {
    format!("+1555555{c:04}")
}

/// Calls and messages spread over the conversations from 20 to 4 hours ago; the first 150 calls in one
/// conversation and the first 150 messages in another, so their listings take several pages. Every
/// other call is answered (recording on one in ten, transcript and summary on one in twenty), one in
/// five is missed (a voicemail on one in fifteen), one in five is an unanswered outgoing call.
/// Returns how many answered calls each number has.
fn seed(openphone: &OpenPhoneServer, now: DateTime<Utc>) -> BTreeMap<&'static str, usize> {
    let start = now - Duration::hours(20);
    let at =
        |i: usize, n: usize| start + Duration::milliseconds(16 * HOUR_MS * i as i64 / n as i64);
    let mut answered = BTreeMap::new();
    let mut activity = vec![(start, start); CONVERSATIONS];
    for (id, number) in NUMBERS {
        openphone.add_phone_number(op::PhoneNumber::new(id, number));
    }
    for j in 0..CALLS {
        let c = if j < 150 { 0 } else { j % CONVERSATIONS };
        let (number_id, _) = NUMBERS[c % NUMBERS.len()];
        let id = format!("ACc{j:05}");
        let created = at(j, CALLS);
        let mut call = op::Call::new(&id, number_id, &participant(c), created);
        match j % 5 {
            2 | 3 => {
                call.status = if j % 5 == 2 { "missed" } else { "no-answer" }.into();
                if j % 5 == 3 {
                    call.direction = "outgoing".into();
                }
                call.answered_at = None;
                call.answered_by = None;
                call.duration = 0;
            }
            _ => *answered.entry(number_id).or_default() += 1,
        }
        if j % 10 == 0 {
            let url = openphone.media_url(&format!("/rec/{id}-1.mp3"));
            openphone.set_recordings(
                &id,
                vec![op::Recording::completed(
                    &format!("CR{j}"),
                    &url,
                    "audio/mpeg",
                    60,
                )],
            );
        }
        if j % 20 == 0 {
            openphone.set_transcript(op::Transcript {
                call_id: id.clone(),
                created_at: created,
                duration: 60.0,
                status: "completed".into(),
                dialogue: Some(vec![op::DialogueSegment {
                    content: "About the invoice".into(),
                    start: 0.0,
                    end: 2.0,
                    identifier: Some(participant(c)),
                    user_id: None,
                }]),
            });
            openphone.set_summary(op::Summary {
                call_id: id.clone(),
                status: "completed".into(),
                summary: Some(vec!["Invoice discussed".into()]),
                next_steps: Some(vec!["Send it".into()]),
                jobs: None,
            });
        }
        if j % 15 == 2 {
            openphone.set_voicemail(
                &id,
                op::Voicemail {
                    id: format!("VM{j}"),
                    status: "completed".into(),
                    duration: Some(12),
                    transcript: Some("Call me back".into()),
                    recording_url: Some(openphone.media_url(&format!("/vm/{id}.mp3"))),
                },
            );
        }
        openphone.add_call(call);
        activity[c].1 = activity[c].1.max(created);
    }
    for k in 0..MESSAGES {
        let c = if k < 150 { 1 } else { k % CONVERSATIONS };
        let (number_id, our_number) = NUMBERS[c % NUMBERS.len()];
        let created = at(k, MESSAGES);
        let mut message = op::Message::incoming(
            &format!("ACm{k:05}"),
            number_id,
            &participant(c),
            our_number,
            "Hello",
            created,
        );
        if k % 2 == 1 {
            message.direction = "outgoing".into();
            message.from = our_number.into();
            message.to = vec![participant(c)];
            message.status = "delivered".into();
        }
        openphone.add_message(message);
        activity[c].1 = activity[c].1.max(created);
    }
    for (c, (_, last)) in activity.into_iter().enumerate() {
        let (number_id, _) = NUMBERS[c % NUMBERS.len()];
        let mut conversation = op::Conversation::new(
            &format!("CNconv{c:04}"),
            number_id,
            &[participant(c).as_str()],
            start,
        );
        conversation.updated_at = Some(last);
        conversation.last_activity_at = Some(last);
        openphone.add_conversation(conversation);
    }
    answered
}

/// One run, with the requests each server saw.
struct Measured {
    report: RunReport,
    openphone: u64,
    notion: u64,
}

async fn measure(
    platform: &Platform,
    settings: &SyncSettings,
    openphone: &OpenPhoneServer,
    notion: &NotionServer,
) -> anyhow::Result<Measured> {
    openphone.reset_counters();
    notion.reset_counters();
    let mut report = RunReport {
        run_id: common::sync::runs::start(platform, common::sync::runs::RunKind::Sync, None)?,
        ..RunReport::default()
    };
    run_with(
        platform,
        settings,
        &RunRequest::default(),
        &Via::in_process(),
        &mut report,
    )
    .await;
    ensure!(
        report.errors.is_empty(),
        "the run failed: {:?}",
        report.errors
    );
    let measured = Measured {
        openphone: openphone.total_requests(),
        notion: notion.total_requests(),
        report,
    };
    ensure!(
        (
            measured.report.requests.openphone,
            measured.report.requests.notion
        ) == (measured.openphone, measured.notion),
        "the run counted {:?}, the servers saw {} and {}",
        measured.report.requests,
        measured.openphone,
        measured.notion
    );
    Ok(measured)
}

fn per_number(measured: &Measured, id: &str) -> (u64, u64) {
    measured
        .report
        .numbers
        .iter()
        .find(|n| n.phone_number_id == id)
        .map_or((0, 0), |n| (n.requests.openphone, n.requests.notion))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // The servers (rate limits off), the three databases and the migrated app: the test kit's world.
    let world = World::new().await;
    let (openphone, notion, clock, platform) = (
        &world.openphone,
        &world.notion,
        &world.clock,
        &world.platform,
    );
    let (calls_ds, messages_ds) = (&world.calls_ds, &world.messages_ds);
    let now = DateTime::from_timestamp_millis(clock.now_ms()).context("the clock reads a time")?;
    let answered = seed(openphone, now);
    // An earlier tool made the pages of one call in 20 and one message in 25.
    for j in (0..CALLS).step_by(20) {
        notion.insert_page(
            calls_ds,
            json!({ "Call ID": { "title": [{ "text": { "content": format!("ACc{j:05}") } }] } }),
        )?;
    }
    for k in (0..MESSAGES).step_by(25) {
        notion.insert_page(
            messages_ds,
            json!({ "Message ID": { "title": [{ "text": { "content": format!("ACm{k:05}") } }] } }),
        )?;
    }
    let settings = SyncSettings {
        options: SyncOptions {
            number_budget_ms: 24 * HOUR_MS,
            ..SyncOptions::default()
        },
        ..SyncSettings::load(&common::configuration::Settings::new(platform.vars.clone()))?
    };

    let started = Instant::now();
    let first = measure(platform, &settings, openphone, notion).await?;
    let first_time = started.elapsed();
    clock.advance_ms(6 * HOUR_MS);
    let idle = measure(platform, &settings, openphone, notion).await?;
    // One new text in one conversation.
    let new_at =
        DateTime::from_timestamp_millis(clock.now_ms()).context("time")? - Duration::minutes(1);
    openphone.add_message(op::Message::incoming(
        "ACmnew0001",
        "PNline0001",
        &participant(3),
        "+13365550101",
        "New",
        new_at,
    ));
    let mut conversation =
        op::Conversation::new("CNconv0003", "PNline0001", &[participant(3).as_str()], now);
    conversation.updated_at = Some(new_at);
    conversation.last_activity_at = Some(new_at);
    openphone.add_conversation(conversation);
    clock.advance_ms(HOUR_MS);
    let one_new = measure(platform, &settings, openphone, notion).await?;

    println!(
        "First backfill: {CALLS} calls and {MESSAGES} messages in {CONVERSATIONS} conversations on {} numbers \
         ({} call and {} message pages existed), {:.1} s",
        NUMBERS.len(),
        CALLS / 20,
        MESSAGES / 25,
        first_time.as_secs_f64()
    );
    println!();
    println!(
        "{:<12} | {:>5} | {:>5} | {:>15} | {:>15} | {:>15} | {:>22} | {:>22}",
        "number",
        "calls",
        "texts",
        "first: OP / N",
        "idle: OP / N",
        "1 new: OP / N",
        "reference first: OP",
        "reference idle: OP"
    );
    println!("{}", "-".repeat(130));
    for (id, _) in NUMBERS {
        let number = first
            .report
            .numbers
            .iter()
            .find(|n| n.phone_number_id == id)
            .context("every number ran")?;
        let (f, i, n) = (
            per_number(&first, id),
            per_number(&idle, id),
            per_number(&one_new, id),
        );
        // The reference walks up to 100 + 100 + 50 list pages per number every run, then spends 5 GETs per
        // completed call it syncs, and 5 more per completed call of the last 7 days on every run.
        let completed = answered.get(id).copied().unwrap_or(0) as u64;
        println!(
            "{:<12} | {:>5} | {:>5} | {:>7} / {:>5} | {:>7} / {:>5} | {:>7} / {:>5} | {:>22} | {:>22}",
            id,
            number.calls_written,
            number.messages_written,
            f.0,
            f.1,
            i.0,
            i.1,
            n.0,
            n.1,
            format!("<= 250 + 5 x {completed} = {}", 250 + 5 * completed),
            format!("<= 250 + 5 x {completed} = {}", 250 + 5 * completed),
        );
    }
    let overhead = |m: &Measured| {
        let numbers: (u64, u64) = m.report.numbers.iter().fold((0, 0), |(o, n), r| {
            (o + r.requests.openphone, n + r.requests.notion)
        });
        (m.openphone - numbers.0, m.notion - numbers.1)
    };
    let (fo, io, no) = (overhead(&first), overhead(&idle), overhead(&one_new));
    println!(
        "{:<12} | {:>5} | {:>5} | {:>7} / {:>5} | {:>7} / {:>5} | {:>7} / {:>5} | {:>22} | {:>22}",
        "run (list)", "", "", fo.0, fo.1, io.0, io.1, no.0, no.1, "3 (phone numbers)", "3"
    );
    println!(
        "{:<12} | {:>5} | {:>5} | {:>7} / {:>5} | {:>7} / {:>5} | {:>7} / {:>5} |",
        "total",
        CALLS,
        MESSAGES,
        first.openphone,
        first.notion,
        idle.openphone,
        idle.notion,
        one_new.openphone,
        one_new.notion
    );
    let found: u32 = first.report.numbers.iter().map(|n| n.found_in_notion).sum();
    println!(
        "first backfill: {:.2} Notion requests per item ({} pages found by the bulk lookups, not created again)",
        first.notion as f64 / (CALLS + MESSAGES) as f64,
        found
    );
    println!();
    println!("OP = OpenPhone requests, N = Notion requests (creates, the bulk lookups of pages made before the app,");
    println!("updates of pages found that way, the Canvas lookup of each new counterpart, data-source lookups).");
    Ok(())
}
