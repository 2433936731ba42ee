//! Soak: thousands of signed webhook events over many numbers — calls with all their follow-up events,
//! texts, redeliveries, out-of-order deliveries — while Notion fails a fifth of its requests (5xx, 429
//! with `Retry-After`, slow answers, writes that land but answer 500), OpenPhone a tenth, the S3 store
//! refuses some uploads, and the app is killed in the middle of its drains. At the end no event may be
//! lost, every call and message must have exactly one complete Notion page, every recording must be in
//! the bucket once, and no API's rate limit may have refused a request.
//!
//! `cargo test` runs a reduced size that fits CI. The full size:
//!
//! ```text
//! SOAK_EVENTS=2000 SOAK_NUMBERS=20 cargo test -p e2e --release --test soak -- --nocapture
//! ```
//!
//! Retries are due 15 s to an hour after a failure, and a killed drain's leases and a cut-off page
//! create hold for minutes, so the test moves the app's time instead of waiting
//! ([`TestApp::let_time_pass`] between drain rounds, [`TestApp::crash_and_restart`]); everything else
//! runs in real time, on the test host or on real Spin (`SPIN_BIN`), Notion's 3 requests/s included, which is what bounds the run
//! time: about 2.3 Notion requests per event under these faults, so a little over one event a second.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Utc};
use e2e::app::{Crash, TestApp, TestAppOptions};
use e2e::workload::{contact, CallScript, Line, MessageScript, MEDIA_BYTES};
use futures::stream::{self, StreamExt};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use test_servers::notion::property_text;
use test_servers::openphone::media_pattern;
use test_servers::{Fault, FaultRule};

/// Deliveries and numbers of the CI run.
const CI_EVENTS: usize = 120;
const CI_NUMBERS: usize = 5;
/// People each number talks to; two in three have a Canvas record.
const CONTACTS_PER_NUMBER: usize = 3;
/// Webhook deliveries in flight at once.
const SENDERS: usize = 8;
/// The app is killed after each delivery wave but the last, with the drains the wave kicked mid-batch, and
/// once more in the middle of the first drain round when that round finds work: a fast intake and drain
/// may leave it none, so that kill is not required.
const WAVES: usize = 3;
/// A drain runs at most a minute; the test host must not cut it first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// How much time passes before each drain round: the longest backoff, so every retry is due.
const LONGEST_BACKOFF: Duration = Duration::from_secs(3600);
/// Drain rounds after the deliveries, at most.
const MAX_ROUNDS: usize = 300;
/// The pause after a round that left the queue as it found it: another holder of a number's lease (the
/// cron trigger's periodic sync on Spin, waiting out a fault) keeps the number's events back until it
/// lets go, and rounds with nothing to do end in milliseconds.
const IDLE_ROUND_PAUSE: Duration = Duration::from_secs(1);

/// How big a run is: `SOAK_EVENTS` deliveries over `SOAK_NUMBERS` numbers, drawn from `SOAK_SEED`.
struct Size {
    events: usize,
    numbers: usize,
    seed: u64,
}

impl Size {
    fn from_env() -> anyhow::Result<Self> {
        let read = |name: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(raw) => raw
                    .parse()
                    .with_context(|| format!("{name}={raw:?} is not a number")),
                Err(_) => Ok(default),
            }
        };
        let size = Size {
            events: usize::try_from(read("SOAK_EVENTS", CI_EVENTS as u64)?)?,
            numbers: usize::try_from(read("SOAK_NUMBERS", CI_NUMBERS as u64)?)?,
            seed: read("SOAK_SEED", 9)?,
        };
        ensure!(
            size.numbers >= 1 && size.events >= 10 * WAVES,
            "SOAK_NUMBERS >= 1 and SOAK_EVENTS >= 30"
        );
        ensure!(
            size.events <= 20_000 && size.numbers <= 500,
            "a soak is bounded: SOAK_EVENTS <= 20000, SOAK_NUMBERS <= 500"
        );
        Ok(size)
    }

    /// The longest the run may take: a little over one event a second (Notion's budget), with room for
    /// a slow machine.
    fn time_budget(&self) -> Duration {
        Duration::from_secs(180 + 2 * self.events as u64)
    }
}

/// What the run sends and what it must find at the end.
struct Plan {
    calls: Vec<CallScript>,
    messages: Vec<MessageScript>,
    /// Every delivery, in the order sent: each event once, out of order, plus redeliveries.
    deliveries: Vec<Value>,
    /// Contact → the Canvas page the app must link.
    canvas: HashMap<String, String>,
    lines: Vec<Line>,
}

impl Plan {
    fn unique_events(&self) -> usize {
        self.calls.iter().map(|c| c.events().len()).sum::<usize>() + self.messages.len()
    }
}

fn make_plan(app: &TestApp, size: &Size, rng: &mut ChaCha8Rng) -> anyhow::Result<Plan> {
    let lines: Vec<Line> = (0..size.numbers)
        .map(|i| Line::register(&app.openphone, i))
        .collect();
    let mut canvas = HashMap::new();
    for i in 0..size.numbers * CONTACTS_PER_NUMBER {
        if i % 3 == 2 {
            continue;
        }
        let number = contact(i);
        // People type numbers in many ways; the app must find them with one query.
        let typed = if i % 2 == 0 {
            format!("555-555-{}", &number[8..])
        } else {
            number.clone()
        };
        let page = app
            .notion
            .insert_page(
                &app.canvas_ds,
                json!({ "Name": { "title": [{ "text": { "content": format!("Merchant {i}") } }] },
                        "Phone": { "phone_number": typed } }),
            )
            .context("seeding the Canvas")?;
        canvas.insert(number, page);
    }

    // Events are created after the app's first start, so none predates it (that would cost a query).
    let start = Utc::now();
    let (mut calls, mut messages, mut events) = (Vec::new(), Vec::new(), Vec::new());
    // About one delivery in ten is a redelivery.
    let unique_target = size.events * 9 / 10;
    let mut n = 0;
    while events.len() < unique_target {
        n += 1;
        let line_index = rng.gen_range(0..lines.len());
        let line = &lines[line_index];
        let other =
            contact(line_index * CONTACTS_PER_NUMBER + rng.gen_range(0..CONTACTS_PER_NUMBER));
        let at: DateTime<Utc> = start + chrono::Duration::milliseconds(n * 700);
        let kind = rng.gen_range(0..100);
        if kind < 45 {
            let call_id = format!("ACsoak{n:06}");
            let call = if kind < 36 {
                CallScript::answered(&app.openphone, line, &other, &call_id, at)
            } else {
                CallScript::missed_with_voicemail(&app.openphone, line, &other, &call_id, at)
            };
            events.extend(call.events());
            calls.push(call);
        } else {
            let group = rng.gen_bool(0.1);
            let others: Vec<String> = if group {
                let everyone: Vec<usize> = (0..lines.len() * CONTACTS_PER_NUMBER).collect();
                let size = rng.gen_range(3..=5).min(everyone.len());
                everyone
                    .choose_multiple(rng, size)
                    .map(|&i| contact(i))
                    .collect()
            } else {
                vec![other]
            };
            let message = MessageScript::new(
                line,
                &others,
                &format!("ACmsg{n:06}"),
                at,
                group || rng.gen_bool(0.4),
            );
            events.push(message.event());
            messages.push(message);
        }
    }
    // Out of order: follow-up events may come before the call they are about.
    for window in events.chunks_mut(16) {
        window.shuffle(rng);
    }
    let mut deliveries = events;
    while deliveries.len() < size.events {
        let again = deliveries[rng.gen_range(0..deliveries.len())].clone();
        let at = rng.gen_range(0..=deliveries.len());
        deliveries.insert(at, again);
    }
    Ok(Plan {
        calls,
        messages,
        deliveries,
        canvas,
        lines,
    })
}

/// Notion fails about 20% of requests, OpenPhone 10%, the S3 store refuses 20% of uploads.
fn arm_faults(app: &TestApp, seed: u64) {
    app.notion.set_fault_seed(seed);
    for rule in [
        FaultRule::fraction(0.07, Fault::Status(503)),
        FaultRule::fraction(0.02, Fault::Status(502)),
        FaultRule::fraction(
            0.05,
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        ),
        FaultRule::fraction(
            0.02,
            Fault::Overloaded {
                retry_after_secs: 2,
            },
        ),
        FaultRule::fraction(0.03, Fault::Delay(Duration::from_millis(1500))),
        // Writes that land but answer 500: the app must not write them twice.
        FaultRule::fraction(0.03, Fault::AppliedButFailed),
    ] {
        app.notion.inject(rule);
    }
    app.openphone.set_fault_seed(seed + 1);
    app.openphone
        .inject(FaultRule::fraction(0.05, Fault::Status(503)));
    app.openphone.inject(FaultRule::fraction(
        0.05,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    ));
}

fn disarm_faults(app: &TestApp) {
    app.notion.clear_faults();
    app.openphone.clear_faults();
    if let Some(proxy) = &app.s3_proxy {
        proxy.set_refuse_puts(0.0);
    }
}

/// Delivers as OpenPhone does: again, freshly signed and after a pause, while the app answers 5xx (it
/// does when its database is busy). Returns every answer, the last one `200` or `202`.
async fn deliver(app: &TestApp, payload: &Value) -> anyhow::Result<Vec<u16>> {
    let mut answers = Vec::new();
    for attempt in 1..=10 {
        let status = app.deliver(payload).await.status().as_u16();
        answers.push(status);
        match status {
            200 | 202 => return Ok(answers),
            500..=599 => tokio::time::sleep(Duration::from_millis(100 * attempt)).await,
            other => bail!("delivery of {} answered {other}", payload["id"]),
        }
    }
    bail!("delivery of {} kept failing: {answers:?}", payload["id"])
}

async fn stats(app: &TestApp) -> anyhow::Result<Value> {
    let response = app.admin_get("/stats").await;
    ensure!(
        response.status() == 200,
        "/stats answered {}",
        response.status()
    );
    response.json().await.context("/stats is JSON")
}

fn count(stats: &Value, state: &str) -> i64 {
    stats["queue"][state].as_i64().unwrap_or(-1)
}

/// Drains until nothing is pending or leased, letting an hour pass (once every drain has ended) before
/// each round so every retry is due. In round `crash_in_round`, the app is killed once Notion has seen
/// the drain at work. Returns the rounds run.
async fn drain_until_settled(
    app: &mut TestApp,
    deadline: Instant,
    crash_in_round: Option<usize>,
    crashes: &mut Vec<Crash>,
) -> anyhow::Result<usize> {
    let mut last_queue = None;
    for round in 1..=MAX_ROUNDS {
        ensure!(
            Instant::now() < deadline,
            "the queue did not settle in time; stats: {}",
            stats(app).await?
        );
        app.let_time_pass(LONGEST_BACKOFF).await?;
        if crash_in_round == Some(round) {
            let before = app.notion.total_requests();
            let mid_drain = async {
                let progressed = app
                    .eventually(Duration::from_secs(30), |app| {
                        app.notion.total_requests() >= before + 4
                    })
                    .await;
                progressed.then_some(())
            };
            let empty = json!({});
            let drain = app.admin_post("/admin/drain", &empty);
            let interrupted = tokio::select! {
                progressed = mid_drain => progressed.is_some(),
                _ = drain => false,
            };
            if interrupted {
                crashes.push(app.crash_and_restart().await?);
                continue;
            }
        } else {
            let response = app.admin_post("/admin/drain", &json!({})).await;
            ensure!(
                response.status() == 200,
                "/admin/drain answered {}",
                response.status()
            );
        }
        let now = stats(app).await?;
        if count(&now, "pending") == 0 && count(&now, "leased") == 0 {
            return Ok(round);
        }
        if last_queue.as_ref() == Some(&now["queue"]) {
            tokio::time::sleep(IDLE_ROUND_PAUSE).await;
        }
        last_queue = Some(now["queue"].clone());
    }
    bail!(
        "the queue did not settle in {MAX_ROUNDS} drain rounds; stats: {}",
        stats(app).await?
    )
}

/// Waits until no page waits for its Canvas relation. A page written while its Canvas lookup failed gets
/// the relation from the tick's relink, which Spin's cron trigger runs every minute; the test host has no
/// cron, so there the test runs the tick, as Spin would, after letting each retry's wait pass.
async fn relink_until_settled(app: &TestApp, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let now = stats(app).await?;
        if now["canvas_relinks_waiting"] == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "pages still wait for their Canvas relation; stats: {now}"
        );
        app.let_time_pass(LONGEST_BACKOFF).await?;
        if app.on_spin() {
            tokio::time::sleep(IDLE_ROUND_PAUSE).await;
        } else {
            app.cron_tick()
                .await?
                .map_err(|e| anyhow::anyhow!("the tick failed: {e}"))?;
        }
    }
}

fn text(page: &Value, property: &str) -> String {
    property_text(&page["properties"][property]).unwrap_or_default()
}

fn relation(page: &Value) -> Vec<String> {
    page["properties"]["Canvas"]["relation"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Pages of a data source by their title, and the titles found more than once.
fn pages_by_title(
    app: &TestApp,
    data_source: &str,
    title: &str,
) -> (HashMap<String, Value>, Vec<String>) {
    let mut pages = HashMap::new();
    let mut twice = Vec::new();
    for page in app.notion.pages(data_source) {
        let id = text(&page, title);
        if pages.insert(id.clone(), page).is_some() {
            twice.push(id);
        }
    }
    (pages, twice)
}

/// What is wrong with the page of `call`, if anything.
fn call_problems(
    app: &TestApp,
    plan: &Plan,
    call: &CallScript,
    page: &Value,
    endpoint: &str,
) -> Vec<String> {
    let fixture = &call.call;
    let id = &fixture.call_id;
    let mut problems = Vec::new();
    let mut expect = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!("call {id}: {what}"));
        }
    };
    expect("Status", text(page, "Status") == "completed");
    expect(
        "Phone Number Used",
        text(page, "Phone Number Used") == fixture.our_number,
    );
    expect(
        "Participants",
        text(page, "Participants") == fixture.other_number,
    );
    let canvas: Vec<String> = plan
        .canvas
        .get(&fixture.other_number)
        .cloned()
        .into_iter()
        .collect();
    expect("Canvas relation", relation(page) == canvas);
    let body = app
        .notion
        .block_texts(page["id"].as_str().unwrap_or_default());
    let once = |heading: &str| body.iter().filter(|b| *b == heading).count() == 1;
    if call.answered_call() {
        for flag in ["Has Recording", "Has Transcript", "Has Summary"] {
            expect(flag, page["properties"][flag]["checkbox"] == true);
        }
        expect(
            "Recording URL links our copy",
            text(page, "Recording URL").starts_with(endpoint),
        );
        let summary = &call
            .summary
            .as_ref()
            .map(|s| s.summary.join("\n\n"))
            .unwrap_or_default();
        expect("Summary", &text(page, "Summary") == summary);
        for heading in ["Recordings", "Transcript", "Summary", "Next steps"] {
            expect(&format!("one {heading} section"), once(heading));
        }
    } else {
        expect(
            "Has Voicemail",
            page["properties"]["Has Voicemail"]["checkbox"] == true,
        );
        expect(
            "Voicemail URL links our copy",
            text(page, "Voicemail URL").starts_with(endpoint),
        );
        expect("one Voicemail section", once("Voicemail"));
    }
    problems
}

fn message_problems(plan: &Plan, script: &MessageScript, page: &Value) -> Vec<String> {
    let message = &script.message;
    let id = &message.message_id;
    let mut problems = Vec::new();
    let mut expect = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!("message {id}: {what}"));
        }
    };
    expect("From", text(page, "From") == message.from);
    expect("To", text(page, "To") == message.to.join(", "));
    expect("Content", text(page, "Content") == message.body);
    // Every other party's record: a group text links each of them.
    let parties: Vec<&String> = if script.outgoing {
        message.to.iter().collect()
    } else {
        vec![&message.from]
    };
    let mut canvas: Vec<String> = parties
        .iter()
        .filter_map(|number| plan.canvas.get(*number).cloned())
        .collect();
    canvas.sort();
    canvas.dedup();
    let mut linked = relation(page);
    linked.sort();
    expect(
        &format!("Canvas relation {linked:?}, expected {canvas:?}"),
        linked == canvas,
    );
    problems
}

/// Every recording and voicemail in the bucket, once, byte for byte.
fn bucket_problems(app: &TestApp, plan: &Plan) -> anyhow::Result<Vec<String>> {
    let s3 = app.s3.as_ref().context("the soak runs with S3")?;
    let expected: HashSet<String> = plan
        .calls
        .iter()
        .map(|c| {
            let day = c.call.created_at.format("%Y/%m/%d");
            match c.answered_call() {
                true => format!("recordings/{day}/{}-1.mp3", c.call.call_id),
                false => format!("voicemails/{day}/{}.mp3", c.call.call_id),
            }
        })
        .collect();
    let pattern = media_pattern(0, MEDIA_BYTES as usize);
    let mut problems = Vec::new();
    let mut found = HashSet::new();
    for object in s3.objects()? {
        if !expected.contains(&object.key) {
            problems.push(format!("unexpected object {}", object.key));
        } else if s3.object_bytes(&object.key)? != pattern {
            problems.push(format!(
                "{} is not the recording ({} bytes)",
                object.key, object.size
            ));
        }
        found.insert(object.key);
    }
    problems.extend(
        expected
            .difference(&found)
            .map(|key| format!("missing object {key}")),
    );
    Ok(problems)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn first(problems: &[String]) -> String {
    problems
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn under_faults_and_crashes_every_event_lands_exactly_once() -> anyhow::Result<()> {
    let size = Size::from_env()?;
    // The test host, or real Spin with SPIN_BIN: there the kills take the whole `spin up` process
    // group, and time moves only for pending retries (see `TestApp::let_time_pass`).
    let mut app = TestApp::start(TestAppOptions {
        s3_refuse_puts: Some(0.2),
        request_timeout: Some(REQUEST_TIMEOUT),
        ..Default::default()
    })
    .await?;
    let started = Instant::now();
    let deadline = started + size.time_budget();
    // The first request applies the migrations: from then on the app counts as installed.
    stats(&app).await?;
    let mut rng = ChaCha8Rng::seed_from_u64(size.seed);
    let plan = make_plan(&app, &size, &mut rng)?;
    let uniques = plan.unique_events();
    arm_faults(&app, size.seed);

    // Deliveries, in waves; after each wave but the last the app is killed with its drains mid-batch.
    let mut crashes = Vec::new();
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    let wave_size = plan.deliveries.len().div_ceil(WAVES);
    for (wave, deliveries) in plan.deliveries.chunks(wave_size).enumerate() {
        let before = app.notion.total_requests();
        let statuses: Vec<anyhow::Result<Vec<u16>>> = stream::iter(deliveries)
            .map(|payload| deliver(&app, payload))
            .buffer_unordered(SENDERS)
            .collect()
            .await;
        for delivery in statuses {
            for status in delivery? {
                *answers.entry(status).or_default() += 1;
            }
        }
        if wave + 1 < WAVES {
            let busy = app
                .eventually(Duration::from_secs(30), |app| {
                    app.notion.total_requests() >= before + 3
                })
                .await;
            ensure!(
                busy,
                "the drains the webhooks kicked sent nothing to Notion; the app logged:\n{}",
                tail(
                    &app.logs()
                        .lines()
                        .filter(|l| !l.contains("webhook.store"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    80
                )
            );
            crashes.push(app.crash_and_restart().await?);
        }
    }
    let delivered_at = started.elapsed();
    let rounds = drain_until_settled(&mut app, deadline, Some(1), &mut crashes).await?;

    // Under faults: every event stored once, and done or dead with its reason.
    let settled = stats(&app).await?;
    let (done, dead) = (count(&settled, "done"), count(&settled, "dead"));
    let stored: i64 = ["pending", "leased", "done", "skipped", "dead"]
        .iter()
        .map(|s| count(&settled, s))
        .sum();
    ensure!(
        stored == uniques as i64,
        "{uniques} distinct events were delivered, {stored} stored: {settled}"
    );
    ensure!(
        done + dead == uniques as i64,
        "events neither done nor dead: {settled}"
    );
    let dlq: Value = app.admin_get("/admin/dlq?limit=1000").await.json().await?;
    let dead_reasons: Vec<String> = dlq["events"]
        .as_array()
        .context("the DLQ lists events")?
        .iter()
        .map(|e| {
            format!(
                "{} {}: {}",
                e["id"],
                e["type"],
                e["last_error"].as_str().unwrap_or_default()
            )
        })
        .collect();
    ensure!(
        dead_reasons.len() as i64 == dead,
        "the DLQ lists {} of {dead} dead events",
        dead_reasons.len()
    );
    ensure!(
        dead_reasons.iter().all(|r| !r.ends_with(": ")),
        "a dead event without a reason: {dead_reasons:?}"
    );
    let notion_faults = app.notion.faults_triggered();
    let openphone_faults = app.openphone.faults_triggered();
    let (s3_refusals, s3_forwarded) = app
        .s3_proxy
        .as_ref()
        .map_or((0, 0), |p| (p.refused(), p.forwarded()));

    // With the faults gone, a replay finishes what died.
    disarm_faults(&app);
    let replayed: Value = app
        .admin_post("/admin/dlq/replay", &json!({}))
        .await
        .json()
        .await?;
    ensure!(replayed["replayed"] == dead, "replay: {replayed}");
    drain_until_settled(&mut app, deadline, None, &mut crashes).await?;
    let finished = stats(&app).await?;
    ensure!(
        count(&finished, "done") == uniques as i64,
        "after the replay not every event is done: {finished}"
    );
    relink_until_settled(&app, deadline).await?;

    // Notion: one page per call and per message, complete.
    let endpoint = app
        .s3_proxy
        .as_ref()
        .map(|p| p.endpoint().to_owned())
        .unwrap_or_default();
    let mut problems = Vec::new();
    let (call_pages, calls_twice) = pages_by_title(&app, &app.calls_ds, "Call ID");
    let (message_pages, messages_twice) = pages_by_title(&app, &app.messages_ds, "Message ID");
    problems.extend(
        calls_twice
            .iter()
            .map(|id| format!("call {id} has more than one page")),
    );
    problems.extend(
        messages_twice
            .iter()
            .map(|id| format!("message {id} has more than one page")),
    );
    if call_pages.len() != plan.calls.len() {
        problems.push(format!(
            "{} call pages for {} calls",
            call_pages.len(),
            plan.calls.len()
        ));
    }
    if message_pages.len() != plan.messages.len() {
        problems.push(format!(
            "{} message pages for {} messages",
            message_pages.len(),
            plan.messages.len()
        ));
    }
    for call in &plan.calls {
        match call_pages.get(&call.call.call_id) {
            Some(page) => problems.extend(call_problems(&app, &plan, call, page, &endpoint)),
            None => problems.push(format!("call {} has no page", call.call.call_id)),
        }
    }
    for message in &plan.messages {
        match message_pages.get(&message.message.message_id) {
            Some(page) => problems.extend(message_problems(&plan, message, page)),
            None => problems.push(format!(
                "message {} has no page",
                message.message.message_id
            )),
        }
    }
    problems.extend(bucket_problems(&app, &plan)?);

    let logs = app.logs();
    let traps: Vec<&str> = logs
        .lines()
        .filter(|l| {
            l.contains("panicked") || l.contains("wasm trap") || l.contains("wasm backtrace")
        })
        .collect();
    let orphaned: usize = crashes.iter().map(|c| c.orphaned_events).sum();
    let lease_keys: usize = crashes.iter().map(|c| c.lease_keys).sum();
    let objects = app
        .s3
        .as_ref()
        .map_or(0, |s| s.objects().map_or(0, |o| o.len()));
    println!(
        "\nsoak: {} deliveries ({} distinct events) over {} numbers, seed {}\n\
         answers:            {answers:?}\n\
         delivered in:       {delivered_at:.1?}; settled after {rounds} drain rounds\n\
         crashes:            {} (events orphaned mid-batch: {orphaned}, lease keys left: {lease_keys})\n\
         faults fired:       Notion {notion_faults}, OpenPhone {openphone_faults}, S3 {s3_refusals} uploads refused ({s3_forwarded} requests passed)\n\
         under faults:       done {done}, dead {dead} (replayed after the faults: {})\n\
         Notion pages:       {} calls / {} planned, {} messages / {} planned\n\
         bucket objects:     {objects}\n\
         Notion requests:    {} (most in one second {}, refused by its rate limit {})\n\
         OpenPhone requests: {} (most in one second {}, refused by its rate limit {})\n\
         traps in the logs:  {}\n\
         problems:           {}\n\
         took:               {:.1?}",
        plan.deliveries.len(),
        uniques,
        plan.lines.len(),
        size.seed,
        crashes.len(),
        replayed["replayed"],
        call_pages.len(),
        plan.calls.len(),
        message_pages.len(),
        plan.messages.len(),
        app.notion.total_requests(),
        app.notion.max_requests_in_any_second(),
        app.notion.rate_limited_count(),
        app.openphone.total_requests(),
        app.openphone.max_requests_in_any_second(),
        app.openphone.rate_limited_count(),
        traps.len(),
        problems.len(),
        started.elapsed(),
    );
    for reason in dead_reasons.iter().take(10) {
        println!("dead under faults: {reason}");
    }

    ensure!(
        crashes.len() >= WAVES - 1,
        "the app was killed {} times, not after each of the first {} waves",
        crashes.len(),
        WAVES - 1
    );
    ensure!(
        orphaned > 0,
        "no crash caught a drain mid-batch: {crashes:?}"
    );
    ensure!(
        notion_faults > 0 && openphone_faults > 0 && s3_refusals > 0,
        "a fault never fired"
    );
    ensure!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        first(&problems)
    );
    ensure!(
        app.notion.rate_limited_count() == 0,
        "Notion's rate limit refused requests"
    );
    ensure!(
        app.openphone.rate_limited_count() == 0,
        "OpenPhone's rate limit refused requests"
    );
    ensure!(
        traps.is_empty(),
        "the components trapped:\n{}",
        traps
            .iter()
            .take(10)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}
