//! A deterministic simulation of the whole app in one thread: three instances sharing one database and
//! one key-value store (the native SQLite ones, with Spin's semantics), the OpenPhone, Notion and S3
//! doubles called in-process, a virtual clock, and a seeded scheduler that also decides where instances
//! crash.
//!
//! A seed draws a workload (calls with their recordings, transcripts and summaries, texts; delivered to
//! any instance, some twice, some out of order) and a fault plan ([`faults`]), runs simulated hours or
//! days in seconds, and checks the invariants: after every step, one lease holder at a time and no
//! request over Notion's published limit; at the end, every accepted event done (or dead for a reason a
//! person must act on), exactly one page per call and text, each body section once, no object written
//! again after retention deleted it, and no page linking an object that is neither in the bucket nor
//! retired. Some seeds keep recordings one day and date some calls days back, so retention walks
//! delete copies while their events are still being worked on. The same seed
//! replays bit for bit: [`SimReport::digest`] covers every request and its time.

pub mod executor;
pub mod faults;
mod leases;
mod platform;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use common::api::Request;
use common::platform::native::{MapVariables, SqliteDatabase, SqliteKeyValue};
use common::platform::Platform;
use common::sync::runs::{self, RunKind};
use common::sync::Via;
use common::webhook::intake;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use test_servers::notion::property_text;
use test_servers::s3_memory::Change;
use test_servers::webhooks::{MediaFixture, SignedDelivery};
use test_servers::{MemoryS3, NotionServer, OpenPhoneServer, Schema};

use executor::World;
use faults::FaultPlan;
use leases::{LeaseLog, LeaseWatch};
use platform::{Network, SimClock, SimHttp, Traffic};
use test_servers::workload::{contact, CallScript, Line, MessageScript};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// Instances of the app (replicas, each with its own cron).
pub const INSTANCES: usize = 3;
/// After the last fault, how long the world stays kind before the end state is checked.
const SETTLE_MS: i64 = 8 * HOUR;
/// Polls one run may make before it counts as spinning.
const MAX_STEPS: u64 = 3_000_000;
/// The webhook signing key of the simulated workspace.
const WEBHOOK_KEY: &str = "c2ltdWxhdGVkIHdlYmhvb2sga2V5";
/// Where the simulated object store answers (never resolved: the requests stay in-process).
const S3_ENDPOINT: &str = "http://s3.sim.invalid";
/// The bucket and its key pair.
const S3_BUCKET: &str = "recordings";
const S3_ACCESS_KEY: &str = "AKIASIMULATED0000001";
/// The days a retention seed keeps recordings.
const RETENTION_DAYS: i64 = 1;
const DAY: i64 = 24 * HOUR;
/// Bytes of each simulated MMS picture.
const MMS_BYTES: u64 = 12 * 1024;

/// What one seed does.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// The seed.
    pub seed: u64,
    /// Forces a 48-hour Notion outage in the plan.
    pub long_outage: bool,
    /// Keeps recordings [`RETENTION_DAYS`] and dates some calls and texts days back.
    pub retention: bool,
    /// Adds a window in which Notion answers every request in 10 to 19.5 s, so one event's writes can
    /// outlast its lease while the events after it wait (the window of holes 1 and 4).
    pub slow_notion: bool,
    /// Each crash kills an instance that holds a lease at that moment (when one does), rather than the
    /// one the plan drew.
    pub crash_holder: bool,
}

impl SimOptions {
    /// The options of `seed`: one seed in twenty has a 48-hour Notion outage, and those and one seed in
    /// four besides keep recordings a day; one in ten (those ending in 9, so the seeds pinned before it
    /// came keep their runs) has a slow Notion, and in one in ten (ending in 8) the crashes kill a lease
    /// holder.
    pub fn of(seed: u64) -> SimOptions {
        let long_outage = seed % 20 == 7;
        SimOptions {
            seed,
            long_outage,
            retention: long_outage || seed % 4 == 1,
            slow_notion: seed % 10 == 9,
            crash_holder: seed % 10 == 8,
        }
    }
}

/// What one seed found.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// True time simulated, ms.
    pub simulated_ms: i64,
    /// Webhook deliveries made (duplicates included).
    pub deliveries: u64,
    /// Distinct events the app accepted.
    pub accepted: usize,
    /// Faults injected (crashes included).
    pub faults: u64,
    /// Requests to the doubles.
    pub requests: u64,
    /// Lease acquisitions seen.
    pub acquisitions: u64,
    /// Executor steps.
    pub steps: u64,
    /// Objects written to the bucket (re-writes included).
    pub objects_written: u64,
    /// Objects retention deleted.
    pub objects_retired: u64,
    /// Every broken invariant.
    pub violations: Vec<String>,
    /// A digest of every request and its time: equal for two runs of one seed.
    pub digest: u64,
    /// The fault plan, for a person replaying the seed.
    pub plan: String,
}

/// Everything the scheduled actions share.
struct Sim {
    world: Rc<World>,
    platforms: Vec<Platform>,
    /// Events the app accepted, by id: what their page is (`Call ID` or `Message ID`, and the id).
    accepted: RefCell<BTreeMap<String, (&'static str, String)>>,
    deliveries: RefCell<u64>,
    crashes: RefCell<u64>,
}

/// Runs one seed.
pub fn run(options: SimOptions) -> anyhow::Result<SimReport> {
    let _subscriber = tracing::subscriber::set_default(LeaseLog);
    common::ids::seed_this_thread(Some(options.seed));
    let outcome = run_seeded(options);
    common::ids::seed_this_thread(None);
    outcome
}

fn run_seeded(options: SimOptions) -> anyhow::Result<SimReport> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let start: DateTime<Utc> = "2026-03-02T09:00:00Z".parse().expect("a valid time");
    let start_ms = start.timestamp_millis();
    let traffic_span = rng.gen_range(HOUR..12 * HOUR);
    let plan = FaultPlan::draw(
        &mut rng,
        start_ms,
        traffic_span,
        INSTANCES,
        options.long_outage,
        options.slow_notion,
    );
    let world = World::new(start_ms, INSTANCES, ChaCha8Rng::seed_from_u64(rng.gen()));

    let openphone = OpenPhoneServer::start("op-sim-key")?;
    let notion = NotionServer::start("secret_sim")?;
    openphone.set_rate_limit(None);
    notion.set_rate_limit(None);
    let (canvas_db, canvas_ds) = notion.create_database(
        "Canvas",
        &Schema::from_types(common::notion::schema::CANVAS, None),
    )?;
    let (calls_db, calls_ds) = notion.create_database(
        "Calls",
        &Schema::from_types(common::notion::schema::CALLS, Some(&canvas_ds)),
    )?;
    let (messages_db, messages_ds) = notion.create_database(
        "Messages",
        &Schema::from_types(common::notion::schema::MESSAGES, Some(&canvas_ds)),
    )?;
    let (openphone_api, media) = openphone.in_process();
    let bucket = MemoryS3::new(S3_BUCKET, S3_ACCESS_KEY, start_ms);
    let retention_days = if options.retention {
        RETENTION_DAYS.to_string()
    } else {
        "0".to_owned()
    };

    // Each store is one connection, so an in-memory database is the whole store: the simulation needs
    // SQLite's semantics, not its files.
    let memory = std::path::Path::new(":memory:");
    let sql: Rc<SqliteDatabase> = Rc::new(SqliteDatabase::open(memory)?);
    let intake: Rc<SqliteDatabase> = Rc::new(SqliteDatabase::open(memory)?);
    let kv: Rc<SqliteKeyValue> = Rc::new(SqliteKeyValue::open(memory, "default")?);
    let vars = Rc::new(MapVariables::from_pairs([
        ("openphone_api_key", openphone.api_key().as_str()),
        ("openphone_api_base", openphone.base_url().as_str()),
        ("openphone_media_base", openphone.media_base_url().as_str()),
        ("openphone_webhook_secret", WEBHOOK_KEY),
        ("notion_api_key", notion.token().as_str()),
        ("notion_api_base", notion.base_url().as_str()),
        ("notion_calls_database_id", calls_db.as_str()),
        ("notion_messages_database_id", messages_db.as_str()),
        ("notion_canvas_database_id", canvas_db.as_str()),
        ("admin_token", "sim-admin-token"),
        ("s3_endpoint", S3_ENDPOINT),
        ("r2_bucket", S3_BUCKET),
        ("r2_access_key_id", S3_ACCESS_KEY),
        (
            "r2_secret_access_key",
            "c2ltdWxhdGVkIHNlY3JldCBrZXkgb2YgdGhlIGJ1Y2tldA",
        ),
        ("recordings_retention_days", retention_days.as_str()),
    ]));

    let network = Rc::new(Network {
        world: world.clone(),
        notion: (notion.in_process(), notion.base_url()),
        openphone: (openphone_api, openphone.base_url()),
        media: (media, openphone.media_base_url()),
        s3: (bucket.router(), S3_ENDPOINT.to_owned(), bucket.clone()),
        plan: plan.clone(),
        traffic: RefCell::new(Traffic::default()),
        kick: RefCell::new(None),
    });
    let platforms = (0..INSTANCES)
        .map(|instance| Platform {
            kv: kv.clone(),
            sql: sql.clone(),
            intake: intake.clone(),
            http: Rc::new(SimHttp {
                network: network.clone(),
                instance,
            }),
            clock: Rc::new(SimClock {
                world: world.clone(),
                skew_ms: plan.skews[instance],
            }),
            vars: vars.clone(),
        })
        .collect();
    let sim = Rc::new(Sim {
        world: world.clone(),
        platforms,
        accepted: RefCell::new(BTreeMap::new()),
        deliveries: RefCell::new(0),
        crashes: RefCell::new(0),
    });
    {
        let weak = Rc::downgrade(&sim);
        *network.kick.borrow_mut() = Some(Box::new(move |instance, until| {
            if let Some(sim) = weak.upgrade() {
                sim.start_drain(instance, until);
            }
        }));
    }

    // The schema first, as `spin up` would on its first request.
    {
        let platform = sim.platforms[0].clone();
        let done = Rc::new(RefCell::new(None));
        let result = done.clone();
        world.spawn(0, async move {
            let report = common::migrations::ensure_checked(&platform).await;
            *result.borrow_mut() = Some(report.map(drop));
        });
        world
            .run_until(start_ms + MINUTE, MAX_STEPS, || {})
            .map_err(|stall| anyhow::anyhow!("migrations stalled: {stall:?}"))?;
        let migrated = done.borrow_mut().take();
        migrated.context("migrations did not finish")??;
    }

    let items = plan_workload(&mut rng, &openphone, start, traffic_span, options.retention)?;
    for delivery in items {
        sim.deliver_at(delivery.at, delivery.instance, delivery.payload, 0);
    }
    for instance in 0..INSTANCES {
        sim.schedule_cron(instance, start_ms);
    }

    let watch = LeaseWatch::new(world.clone(), plan.skews.clone());
    for &(at, drawn) in &plan.crashes {
        let (sim, watch) = (sim.clone(), watch.clone());
        let crash_holder = options.crash_holder;
        world.at(at, move || {
            let holder = if crash_holder { watch.a_holder() } else { None };
            *sim.crashes.borrow_mut() += 1;
            sim.world.crash(holder.unwrap_or(drawn));
        });
    }

    let end = plan.calm_from + SETTLE_MS;
    let stalled = {
        let watch = watch.clone();
        let world2 = world.clone();
        world.run_until(end, MAX_STEPS, move || {
            watch.take_log(world2.last_instance())
        })
    };

    let mut violations: Vec<String> = watch.violations.borrow().clone();
    if let Err(stall) = stalled {
        violations.push(format!("the run stalled: {stall:?}"));
    }
    let traffic = network.traffic.borrow();
    violations.extend(
        traffic
            .over_budget
            .iter()
            .take(5)
            .map(|r| format!("over Notion's rate limit: {r}")),
    );
    violations.extend(end_state(&sim, &notion, &calls_ds, &messages_ds)?);
    violations.extend(bucket_state(&bucket, &notion, &[&calls_ds, &messages_ds]));

    let deliveries = *sim.deliveries.borrow();
    let crashes = *sim.crashes.borrow();
    let acquisitions = *watch.acquisitions.borrow();
    let accepted = sim.accepted.borrow().len();
    let history = bucket.history();
    let changes = |kind: Change| history.iter().filter(|(_, _, c)| *c == kind).count() as u64;
    Ok(SimReport {
        seed: options.seed,
        simulated_ms: world.now() - start_ms,
        deliveries,
        accepted,
        faults: traffic.faults.values().sum::<u64>() + crashes,
        requests: traffic.requests.values().sum(),
        acquisitions,
        steps: world.steps(),
        objects_written: changes(Change::Written),
        objects_retired: changes(Change::Deleted),
        violations,
        digest: traffic.digest,
        plan: plan.to_string(),
    })
}

/// One webhook delivery of the workload.
struct Delivery {
    at: i64,
    instance: usize,
    payload: Value,
}

/// Calls and texts (half of them with pictures) on one to three lines, their events delivered over `span` from `start` to random
/// instances, some twice and some out of order. With `backdate`, a third of them happened two to two
/// and a half days before their events arrive (as after a long webhook outage), so their copies are past
/// a day's retention as soon as they are made.
fn plan_workload(
    rng: &mut ChaCha8Rng,
    openphone: &OpenPhoneServer,
    start: DateTime<Utc>,
    span: i64,
    backdate: bool,
) -> anyhow::Result<Vec<Delivery>> {
    let lines: Vec<Line> = (0..rng.gen_range(1..=3))
        .map(|i| Line::register(openphone, i))
        .collect();
    let mut deliveries = Vec::new();
    let start_ms = start.timestamp_millis();
    for item in 0..rng.gen_range(6..30) {
        let line = lines.choose(rng).expect("at least one line").clone();
        let other = contact(rng.gen_range(0..8));
        let offset = rng.gen_range(0..span);
        let back = if backdate && rng.gen_bool(0.35) {
            rng.gen_range(2 * DAY..2 * DAY + 12 * HOUR)
        } else {
            0
        };
        let at = start + chrono::Duration::milliseconds(offset - back);
        let events = match rng.gen_range(0..4) {
            0 => {
                CallScript::answered(openphone, &line, &other, &format!("ACsim{item}"), at).events()
            }
            1 => CallScript::missed_with_voicemail(
                openphone,
                &line,
                &other,
                &format!("ACsim{item}"),
                at,
            )
            .events(),
            kind => {
                let id = format!("ACmsg{item}");
                let mut script = MessageScript::new(&line, &[other], &id, at, kind == 3);
                // Every other text is an MMS with a picture or two, copied to the bucket like
                // recordings.
                if rng.gen_bool(0.5) {
                    script.message.media = (1..=rng.gen_range(1..=2))
                        .map(|n| MediaFixture {
                            url: openphone.add_generated_media(
                                &format!("/mms/{id}-{n}.png"),
                                "image/png",
                                MMS_BYTES,
                            ),
                            content_type: "image/png".into(),
                            duration: None,
                        })
                        .collect();
                }
                vec![script.event()]
            }
        };
        let mut due = start_ms + offset;
        for payload in events {
            due += rng.gen_range(0..90_000);
            // Out of order: now and then an event overtakes the one before it.
            let at = if rng.gen_bool(0.15) {
                due - rng.gen_range(0..120_000)
            } else {
                due
            };
            deliveries.push(Delivery {
                at: at.max(start_ms),
                instance: rng.gen_range(0..INSTANCES),
                payload: payload.clone(),
            });
            if rng.gen_bool(0.2) {
                deliveries.push(Delivery {
                    at: at + rng.gen_range(1_000..3 * HOUR),
                    instance: rng.gen_range(0..INSTANCES),
                    payload,
                });
            }
        }
    }
    Ok(deliveries)
}

impl Sim {
    /// Delivers `payload` to `instance` at true time `at`; a delivery refused, or not answered because
    /// the instance died, is sent again later, as OpenPhone does.
    fn deliver_at(self: &Rc<Self>, at: i64, instance: usize, payload: Value, tries: u32) {
        let sim = self.clone();
        self.world.at(at, move || {
            *sim.deliveries.borrow_mut() += 1;
            let platform = sim.platforms[instance].clone();
            let answered = Rc::new(std::cell::Cell::new(false));
            if tries < 10 {
                let (sim2, answered, payload) = (sim.clone(), answered.clone(), payload.clone());
                let later = sim.world.now() + 5 * MINUTE * i64::from(tries + 1);
                sim.world.at(later, move || {
                    if !answered.get() {
                        let next = sim2.world.random(|r| r.gen_range(0..INSTANCES));
                        sim2.deliver_at(later, next, payload, tries + 1);
                    }
                });
            }
            let sim2 = sim.clone();
            sim.world.spawn(instance, async move {
                let signed_at = platform.clock.now_ms();
                let Ok(signed) = SignedDelivery::legacy(WEBHOOK_KEY, signed_at, &payload) else {
                    return;
                };
                let request = Request {
                    method: "POST".into(),
                    path: "/webhooks/openphone".into(),
                    headers: signed.headers.clone(),
                    body: signed.body.clone(),
                    ..Request::default()
                };
                let settings = common::configuration::Settings::new(platform.vars.clone());
                let intake = intake::handle(&platform, &settings, &request).await;
                if (200..300).contains(&intake.response.status) {
                    answered.set(true);
                    let id = payload["id"].as_str().unwrap_or_default().to_owned();
                    sim2.accepted.borrow_mut().insert(id, page_of(&payload));
                }
                // As the webhook component: it answers first, then kicks the drain (the first accepted
                // event of each second asks it to linger); a failed kick leaves the work to the next tick.
                common::webhook::kick::after_intake(&platform, intake.kick_window).await;
            });
        });
    }

    /// The queue-drain component's private route: drains on `instance`, lingering until `until`.
    fn start_drain(self: &Rc<Self>, instance: usize, until: Option<i64>) {
        let platform = self.platforms[instance].clone();
        self.world.spawn(instance, async move {
            // Failures end up in the events' rows; the run's own error is the kick's business.
            let settings = common::configuration::Settings::new(platform.vars.clone());
            let _ = common::app::drain(&platform, &settings, until).await;
        });
    }

    /// Ticks `instance`'s cron at every minute of its own clock from `from` on.
    fn schedule_cron(self: &Rc<Self>, instance: usize, from: i64) {
        let skew = self.platforms[instance].clock.now_ms() - self.world.now();
        let local = from + skew;
        let next_local = (local.div_euclid(MINUTE) + 1) * MINUTE;
        let sim = self.clone();
        self.world.at(next_local - skew, move || {
            let platform = sim.platforms[instance].clone();
            sim.world.spawn(instance, async move {
                if let Ok(run_id) = runs::start(&platform, RunKind::Tick, None) {
                    let settings = common::configuration::Settings::new(platform.vars.clone());
                    common::app::tick(&platform, &settings, &run_id, &Via::in_process()).await;
                }
            });
            let now = sim.world.now();
            sim.schedule_cron(instance, now);
        });
    }
}

/// The invariants of the end state.
fn end_state(
    sim: &Sim,
    notion: &NotionServer,
    calls_ds: &str,
    messages_ds: &str,
) -> anyhow::Result<Vec<String>> {
    let mut violations = Vec::new();
    let platform = &sim.platforms[0];
    let rows = platform.sql.execute(
        "SELECT id, type, state, coalesce(last_error, '') AS last_error FROM events",
        &[],
    )?;
    let mut states = BTreeMap::new();
    for row in rows.iter() {
        states.insert(
            row.str("id")?.to_owned(),
            (
                row.str("type")?.to_owned(),
                row.str("state")?.to_owned(),
                row.str("last_error")?.to_owned(),
            ),
        );
    }
    for id in sim.accepted.borrow().keys() {
        match states.get(id) {
            None => violations.push(format!("event {id} was accepted but is not in the queue")),
            Some((_, state, _)) if state == "done" || state == "skipped" => {}
            Some((kind, state, error)) => {
                violations.push(format!("event {id} ({kind}) ended {state}: {error}"))
            }
        }
    }
    for (data_source, key) in [(calls_ds, "Call ID"), (messages_ds, "Message ID")] {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for page in notion.pages(data_source) {
            let id = property_text(&page["properties"][key]).unwrap_or_default();
            *seen.entry(id.clone()).or_default() += 1;
            let body = notion.block_texts(page["id"].as_str().unwrap_or_default());
            for heading in [
                "Recordings",
                "Transcript",
                "Summary",
                "Next steps",
                "Voicemail",
            ] {
                let n = body.iter().filter(|b| *b == heading).count();
                if n > 1 {
                    violations.push(format!("{key} {id}: the {heading} section {n} times"));
                }
            }
        }
        for (id, n) in seen.iter().filter(|(_, n)| **n > 1) {
            violations.push(format!("{key} {id}: {n} pages"));
        }
        let accepted = sim.accepted.borrow();
        let expected: BTreeSet<&str> = accepted
            .values()
            .filter(|(k, _)| *k == key)
            .map(|(_, id)| id.as_str())
            .collect();
        for id in expected.into_iter().filter(|id| !seen.contains_key(*id)) {
            violations.push(format!("{key} {id}: no page"));
        }
    }
    Ok(violations)
}

/// The page an event belongs to: `("Call ID", call id)` or `("Message ID", message id)`.
fn page_of(payload: &Value) -> (&'static str, String) {
    let object = &payload["data"]["object"];
    let kind = payload["type"].as_str().unwrap_or_default();
    if kind.starts_with("message.") {
        (
            "Message ID",
            object["id"].as_str().unwrap_or_default().to_owned(),
        )
    } else {
        let id = object["callId"].as_str().or(object["id"].as_str());
        ("Call ID", id.unwrap_or_default().to_owned())
    }
}

/// The invariants of the bucket: retention's deletes are final (nothing written under a key after it
/// was deleted: the app deletes only by retention), and every link to the bucket on a page names an
/// object that is there, or one retention deleted (the page keeps the link it had; it must not get a
/// fresh one to a copy made again).
fn bucket_state(bucket: &MemoryS3, notion: &NotionServer, data_sources: &[&str]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut deleted: BTreeMap<String, i64> = BTreeMap::new();
    for (at, key, change) in bucket.history() {
        match change {
            Change::Deleted => {
                deleted.entry(key).or_insert(at);
            }
            Change::Written => {
                if let Some(retired_at) = deleted.get(&key) {
                    violations.push(format!(
                        "{key} written again at {at}, after retention deleted it at {retired_at}"
                    ));
                }
            }
        }
    }
    let prefix = format!("{S3_ENDPOINT}/{S3_BUCKET}/");
    for data_source in data_sources {
        for page in notion.pages(data_source) {
            let page_id = page["id"].as_str().unwrap_or_default();
            let mut text = page.to_string();
            for block in notion.blocks(page_id) {
                text.push_str(&block.to_string());
            }
            for (at, _) in text.match_indices(&prefix) {
                let key: String = text[at + prefix.len()..]
                    .chars()
                    .take_while(|c| !matches!(c, '"' | '?' | '\\' | ' '))
                    .collect();
                if !bucket.contains(&key) && !deleted.contains_key(&key) {
                    violations.push(format!(
                        "page {page_id} links {key}, which is not in the bucket"
                    ));
                }
            }
        }
    }
    violations
}
