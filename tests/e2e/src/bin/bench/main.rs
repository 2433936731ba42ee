//! The benchmarks: one table of where the app stands, measured on the built components in the test host
//! (and, for memory, cold starts and intake, on a real `spin up` when `SPIN_BIN` is set), against the local OpenPhone, Notion and
//! S3 servers. Not a test: nothing here fails on a number; the table says which targets are met.
//!
//! ```text
//! scripts/bench                              # builds the components first
//! cargo run -p e2e --bin bench               # with the components already built
//! SPIN_BIN=/path/to/spin scripts/bench       # memory, cold starts, requests per event, intake, backfill
//!                                            # and webhook → page latency also on spin up
//! BENCH_ONLY=intake,requests cargo run -p e2e --bin bench   # only these phases
//! BENCH_INTAKE_CLIENTS=16 …                  # only this intake load
//! ```
//!
//! Rows: `.wasm` sizes; peak memory of copying a 100 MiB recording; each component's cold start
//! (compiled from scratch, then its first answer; on `spin up`, from its start to the first answer);
//! OpenPhone, Notion and S3 requests per event type and
//! per call lifecycle with a cold and a warm Canvas cache; drain throughput with the servers' rate limits
//! off; the drain's admission per delivery into an empty queue and a backlog ([`admission`]); webhook
//! intake throughput and latency at 1, 16 and 64 clients, new events and duplicates, on
//! Spin against two floors ([`intake`]); the first sync of 140 texts older than the app (Notion requests
//! per item, items per minute); webhook → page latency with and without a sync of the same number running
//! (also on `spin up`). The first line printed says how the bench itself was built (`scripts/bench` runs
//! it as a debug build unless `BENCH_PROFILE=release`) and whether `spin up` rows ran.

mod admission;
mod backfill;
mod intake;
mod latency;

mod resources;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::Utc;
use e2e::app::{Runner, TestApp, TestAppOptions, ADMIN_TOKEN};
use e2e::workload::{contact, CallScript, Line, MessageScript};
use e2e::{component_wasm, workspace_root, COMPONENTS};
use serde_json::{json, Value};
use spin_test_host::{HostOptions, SpinHost};
use test_servers::{NotionServer, OpenPhoneServer};

/// No phase of the benchmark runs longer than this.
const PHASE_LIMIT: Duration = Duration::from_secs(300);
/// Drain throughput: messages, and calls with their four events each.
const DRAIN_MESSAGES: usize = 60;
const DRAIN_CALLS: usize = 15;
const MIB: u64 = 1024 * 1024;

/// One line of the table.
struct Row {
    metric: String,
    value: String,
    note: String,
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn add(
        &mut self,
        metric: impl Into<String>,
        value: impl Into<String>,
        note: impl Into<String>,
    ) {
        let row = Row {
            metric: metric.into(),
            value: value.into(),
            note: note.into(),
        };
        eprintln!("bench: {} = {}", row.metric, row.value);
        self.0.push(row);
    }

    /// Prints `header` (how the figures were made) and the table as Markdown.
    fn print(&self, header: &str) {
        println!("{header}\n");
        let width = |f: fn(&Row) -> &str, title: &str| {
            self.0
                .iter()
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let (m, v) = (width(|r| &r.metric, "metric"), width(|r| &r.value, "value"));
        println!("| {:m$} | {:v$} | note |", "metric", "value");
        println!("|{}|{}|------|", "-".repeat(m + 2), "-".repeat(v + 2));
        for row in &self.0 {
            println!("| {:m$} | {:v$} | {} |", row.metric, row.value, row.note);
        }
    }
}

/// Whether phase `name` runs: every phase, or those `BENCH_ONLY` lists (comma-separated: `sizes`,
/// `memory`, `cold`, `requests`, `drain`, `admission`, `intake`, `backfill`, `latency`; `memory-spin`,
/// `cold-spin`, `requests-spin`, `intake-spin`, `backfill-spin` and `latency-spin` for only their `spin up`
/// half).
fn runs(name: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|phase| phase.trim() == name),
        Err(_) => true,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut table = Table::default();
    let spin = std::env::var_os("SPIN_BIN").map(std::path::PathBuf::from);
    if runs("sizes") {
        sizes(&mut table)?;
    }
    // First, while the process's peak memory is still low: later phases run hundreds of instances.
    if runs("memory") {
        resources::memory_per_recording(&mut table, Runner::TestHost, "test host")
            .await
            .context("memory per recording")?;
    }
    if let Some(spin) = spin
        .as_ref()
        .filter(|_| runs("memory") || runs("memory-spin"))
    {
        resources::memory_per_recording(&mut table, Runner::Spin(spin.clone()), "spin up")
            .await
            .context("memory per recording on spin up")?;
    }
    if runs("cold") {
        cold_starts(&mut table).await.context("cold starts")?;
    }
    if let Some(spin) = spin.as_ref().filter(|_| runs("cold") || runs("cold-spin")) {
        resources::cold_starts_on_spin(&mut table, spin)
            .await
            .context("cold starts on spin up")?;
    }
    if runs("requests") {
        requests_per_event(&mut table, Runner::TestHost, "")
            .await
            .context("requests per event")?;
    }
    if let Some(spin) = spin
        .as_ref()
        .filter(|_| runs("requests") || runs("requests-spin"))
    {
        requests_per_event(&mut table, Runner::Spin(spin.clone()), " (spin up)")
            .await
            .context("requests per event on spin up")?;
    }
    if runs("drain") {
        drain_throughput(&mut table)
            .await
            .context("drain throughput")?;
    }
    if runs("admission") {
        admission::admission(&mut table)
            .await
            .context("admission")?;
    }
    if runs("intake") {
        intake::on_test_host(&mut table)
            .await
            .context("intake on the test host")?;
    }
    if let Some(spin) = spin
        .as_ref()
        .filter(|_| runs("intake") || runs("intake-spin"))
    {
        intake::on_spin(&mut table, spin)
            .await
            .context("intake on spin up")?;
    }
    if runs("backfill") {
        backfill::backfill(&mut table, Runner::TestHost, "test host")
            .await
            .context("backfill on the test host")?;
    }
    if let Some(spin) = spin
        .as_ref()
        .filter(|_| runs("backfill") || runs("backfill-spin"))
    {
        backfill::backfill(&mut table, Runner::Spin(spin.clone()), "spin up")
            .await
            .context("backfill on spin up")?;
    }
    if runs("latency") {
        latency::webhook_to_page(&mut table, Runner::TestHost, "test host")
            .await
            .context("webhook to page on the test host")?;
    }
    if let Some(spin) = spin
        .as_ref()
        .filter(|_| runs("latency") || runs("latency-spin"))
    {
        latency::webhook_to_page(&mut table, Runner::Spin(spin.clone()), "spin up")
            .await
            .context("webhook to page on spin up")?;
    }
    table.print(&header(spin.as_deref()));
    Ok(())
}

/// What the figures were measured with: the bench's own build (the load generator, the local servers
/// and the test host run in it) and whether a real `spin up` ran the rows marked so.
fn header(spin: Option<&Path>) -> String {
    let profile = if cfg!(debug_assertions) {
        "a debug build (the load generator, the local OpenPhone/Notion/S3 servers and the test host's \
         wasmtime unoptimized: test-host rows are slower than a release host would be; `spin up` rows \
         are Spin's own release binary)"
    } else {
        "a release build"
    };
    let spin = match spin {
        Some(path) => format!("rows marked spin up ran on `{}`", path.display()),
        None => "SPIN_BIN unset: no spin up rows".to_owned(),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "Bench {} on {cores} CPU cores; the bench is {profile}; {spin}; components release wasm32-wasip2.",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    )
}

fn sizes(table: &mut Table) -> anyhow::Result<()> {
    for (id, _) in COMPONENTS {
        let path = component_wasm(id)?;
        let bytes = std::fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        table.add(
            format!("size: {id}.wasm"),
            format!("{} KiB", bytes / 1024),
            "release, wasm32-wasip2",
        );
    }
    Ok(())
}

/// A fresh app on `runner` with the servers' rate limits off (the app keeps its own budgets), its
/// migrations applied, and line 0 registered.
async fn start(runner: Runner, with_s3: bool) -> anyhow::Result<(TestApp, Line)> {
    let app = TestApp::start(TestAppOptions {
        with_s3,
        runner,
        ..Default::default()
    })
    .await?;
    app.notion.set_rate_limit(None);
    app.openphone.set_rate_limit(None);
    let line = Line::register(&app.openphone, 0);
    stats(&app).await?;
    Ok((app, line))
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

fn finished(stats: &Value) -> i64 {
    ["done", "dead", "skipped"]
        .iter()
        .map(|s| stats["queue"][s].as_i64().unwrap_or(0))
        .sum()
}

/// Waits until `n` events are finished (done, dead or skipped), polling `/stats`.
async fn until_finished(app: &TestApp, n: i64, limit: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let now = stats(app).await?;
        if finished(&now) >= n {
            ensure!(
                now["queue"]["dead"] == 0,
                "events died: {}",
                now["dlq_recent"]
            );
            app.wait_idle().await;
            return Ok(now);
        }
        if Instant::now() > deadline {
            bail!(
                "{n} events were not finished within {limit:?}: {}",
                now["queue"]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each component alone in the test host, compiled without any cache, then its first answers.
async fn cold_starts(table: &mut Table) -> anyhow::Result<()> {
    let manifest: toml::Table = std::fs::read_to_string(workspace_root().join("spin.toml"))?
        .parse()
        .context("parsing spin.toml")?;
    let openphone = OpenPhoneServer::start("op-bench-key")?;
    let notion = NotionServer::start("secret_bench")?;
    let variables = cold_start_variables(&openphone, &notion);
    let dir = tempfile::tempdir()?;
    // The host keeps compiled code next to the `target` directory a component is in: here, a fresh one
    // in the temporary directory, so nothing is cached and nothing is left behind.
    let wasm_dir = dir.path().join("target").join("cold");
    std::fs::create_dir_all(&wasm_dir)?;
    let client = reqwest::Client::new();
    for (id, file) in COMPONENTS {
        let source = wasm_dir.join(file);
        std::fs::copy(component_wasm(id)?, &source)?;
        let manifest_path = dir.path().join(format!("{id}.toml"));
        std::fs::write(
            &manifest_path,
            single_component_manifest(&manifest, id, &source)?,
        )?;
        let state_dir = dir.path().join(format!("state-{id}"));
        let runtime_config = dir.path().join(format!("{id}-runtime-config.toml"));
        e2e::spin::write_runtime_config(
            &runtime_config,
            &e2e::spin::KeyValueBackend::SpinSqlite,
            &state_dir.join("sqlite_key_value.db"),
            &state_dir.join("sqlite_db.db"),
            &state_dir.join(common::platform::native::INTAKE_DATABASE_FILE),
        )?;
        let mut options = HostOptions::new(&manifest_path, state_dir);
        options.runtime_config = Some(runtime_config);
        options.variables = variables.clone();
        let compiling = Instant::now();
        let host = SpinHost::start(options).await?;
        let compiled = compiling.elapsed();
        let mut answers = Vec::new();
        for _ in 0..2 {
            let answering = Instant::now();
            let status = match *id {
                "cron" => host.invoke_cron().await?.map(|()| 200).unwrap_or(500),
                other => {
                    let (method, path) = match other {
                        "webhook" => ("GET", "/health"),
                        "queue-drain" => ("GET", "/stats"),
                        // `/admin/sync` answers at once and syncs after answering.
                        _ => ("POST", "/admin/sync"),
                    };
                    let request = client
                        .request(method.parse()?, format!("{}{path}", host.base_url()))
                        .bearer_auth(ADMIN_TOKEN);
                    request.send().await?.status().as_u16()
                }
            };
            ensure!(status < 300, "{id} answered {status}:\n{}", host.logs());
            answers.push(answering.elapsed());
        }
        host.shutdown().await;
        let answer = match *id {
            "cron" => "first tick (instantiate, database set-up, drain, periodic sync)",
            _ => "first answer (instantiate, database set-up, handle)",
        };
        table.add(
            format!("cold start: {id}"),
            format!("{} ms", (compiled + answers[0]).as_millis()),
            format!(
                "compile and link {} ms (no .cwasm cache), {answer} {} ms, next {} ms",
                compiled.as_millis(),
                answers[0].as_millis(),
                answers[1].as_millis()
            ),
        );
    }
    Ok(())
}

/// The variables a component started alone needs: the local servers, an unreachable S3 (nothing is
/// copied at start-up) and the bench's admin token.
fn cold_start_variables(
    openphone: &OpenPhoneServer,
    notion: &NotionServer,
) -> std::collections::HashMap<String, String> {
    [
        ("openphone_api_key", openphone.api_key()),
        ("openphone_api_base", openphone.base_url()),
        ("openphone_media_base", openphone.media_base_url()),
        ("openphone_webhook_secret", "YmVuY2g=".into()),
        ("notion_api_key", notion.token()),
        ("notion_api_base", notion.base_url()),
        (
            "notion_calls_database_id",
            "11111111111111111111111111111111".into(),
        ),
        (
            "notion_messages_database_id",
            "22222222222222222222222222222222".into(),
        ),
        ("s3_endpoint", "http://127.0.0.1:9".into()),
        ("r2_bucket", "recordings".into()),
        ("r2_access_key_id", "unused".into()),
        ("r2_secret_access_key", "unused".into()),
        ("admin_token", ADMIN_TOKEN.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `spin.toml` reduced to component `id` (source at `source`), its public triggers, and no chaining to
/// the components left out.
fn single_component_manifest(
    manifest: &toml::Table,
    id: &str,
    source: &Path,
) -> anyhow::Result<String> {
    let mut out = toml::Table::new();
    for key in ["spin_manifest_version", "application", "variables"] {
        out.insert(
            key.into(),
            manifest
                .get(key)
                .with_context(|| format!("spin.toml has no {key}"))?
                .clone(),
        );
    }
    let mut triggers = toml::Table::new();
    for (kind, list) in manifest
        .get("trigger")
        .and_then(|t| t.as_table())
        .context("spin.toml has no triggers")?
    {
        let kept: Vec<toml::Value> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t.get("component").and_then(|c| c.as_str()) == Some(id)
                    && !t.get("route").is_some_and(|r| r.is_table())
            })
            .cloned()
            .collect();
        if !kept.is_empty() {
            triggers.insert(kind.clone(), toml::Value::Array(kept));
        }
    }
    let mut component = manifest
        .get("component")
        .and_then(|c| c.get(id))
        .and_then(|c| c.as_table())
        .with_context(|| format!("spin.toml has no component {id}"))?
        .clone();
    component.insert("source".into(), source.display().to_string().into());
    component.remove("build");
    if let Some(hosts) = component
        .get_mut("allowed_outbound_hosts")
        .and_then(|h| h.as_array_mut())
    {
        hosts.retain(|h| !h.as_str().is_some_and(|h| h.contains(".spin.internal")));
    }
    out.insert("trigger".into(), toml::Value::Table(triggers));
    out.insert(
        "component".into(),
        toml::Value::Table(
            [(id.to_owned(), toml::Value::Table(component))]
                .into_iter()
                .collect(),
        ),
    );
    Ok(toml::to_string(&out)?)
}

/// Requests the servers saw, and the app's own S3 and media counts.
#[derive(Clone, Copy, Debug, Default)]
struct Spent {
    openphone: u64,
    notion: u64,
    appends: u64,
    s3: i64,
}

impl Spent {
    async fn now(app: &TestApp) -> anyhow::Result<Self> {
        let stats = stats(app).await?;
        Ok(Spent {
            openphone: app.openphone.total_requests(),
            notion: app.notion.total_requests(),
            appends: app.notion.request_count("PATCH /v1/blocks/{id}/children"),
            s3: stats["api"]["s3"]["requests_today"].as_i64().unwrap_or(0),
        })
    }

    fn since(self, before: Spent) -> Spent {
        Spent {
            openphone: self.openphone - before.openphone,
            notion: self.notion - before.notion,
            appends: self.appends - before.appends,
            s3: self.s3 - before.s3,
        }
    }

    fn add(self, other: Spent) -> Spent {
        Spent {
            openphone: self.openphone + other.openphone,
            notion: self.notion + other.notion,
            appends: self.appends + other.appends,
            s3: self.s3 + other.s3,
        }
    }

    fn describe(self) -> String {
        format!(
            "OpenPhone {}, Notion {} (+{} block appends), S3 {}",
            self.openphone,
            self.notion - self.appends,
            self.appends,
            self.s3
        )
    }
}

/// Delivers one event, waits until it is processed and everything it started has ended, and returns
/// the requests it cost and which Notion endpoints they went to (so a surplus request is named).
async fn cost(app: &TestApp, event: &Value) -> anyhow::Result<(Spent, String)> {
    let before = Spent::now(app).await?;
    let logged = app.notion.request_log().len();
    let expected = finished(&stats(app).await?) + 1;
    let status = app.deliver(event).await.status();
    ensure!(status == 202, "{} answered {status}", event["id"]);
    until_finished(app, expected, PHASE_LIMIT).await?;
    let spent = Spent::now(app).await?.since(before);
    let endpoints: Vec<String> = app.notion.request_log()[logged..]
        .iter()
        .map(|r| format!("{} {}", r.endpoint, r.status))
        .collect();
    Ok((spent, format!("Notion: {}", endpoints.join(", "))))
}

/// Requests per event on `runner`; `label` tells the rows of another runner apart.
async fn requests_per_event(table: &mut Table, runner: Runner, label: &str) -> anyhow::Result<()> {
    let (app, line) = start(runner, true).await?;
    let at = Utc::now();
    // Contacts 1, 3 and 4 have a Canvas record; 2 has none (a cached miss costs the same as a hit).
    for i in [1, 3, 4] {
        app.notion.insert_page(
            &app.canvas_ds,
            json!({ "Name": { "title": [{ "text": { "content": format!("Merchant {i}") } }] },
                    "Phone": { "phone_number": contact(i) } }),
        )?;
    }
    let message = |id: &str, who: usize, outgoing: bool| {
        MessageScript::new(&line, &[contact(who)], id, at, outgoing).event()
    };
    let rows = [
        (
            "message.received, first event of a fresh app",
            message("ACm1", 1, false),
            "",
        ),
        (
            "message.received, warm Canvas cache",
            message("ACm2", 1, false),
            "target: Notion 1",
        ),
        (
            "message.delivered, warm Canvas cache",
            message("ACm3", 1, true),
            "target: Notion 1",
        ),
        (
            "message.received, cold Canvas cache",
            message("ACm4", 2, false),
            "one Canvas query",
        ),
    ];
    for (name, event, target) in rows {
        let (spent, endpoints) = cost(&app, &event).await?;
        let met = match target {
            "target: Notion 1" if spent.notion == 1 => "target: Notion 1 — met",
            "target: Notion 1" => "target: Notion 1 — NOT MET",
            other => other,
        };
        table.add(
            format!("requests{label}: {name}"),
            spent.describe(),
            format!("{met} ({endpoints})"),
        );
    }
    if app.on_spin() {
        idle_minute(table, &app, label).await?;
    }
    // The first call also looks up the Calls database and the workspace's numbers; then a call with
    // someone the Canvas cache has not seen, then one with someone it has.
    for (who, case, judged) in [
        (3, "first call of the app", false),
        (4, "cold Canvas cache", true),
        (1, "warm Canvas cache", true),
    ] {
        let call = CallScript::answered(
            &app.openphone,
            &line,
            &contact(who),
            &format!("AClife{who}"),
            at,
        );
        let mut total = Spent::default();
        for event in call.events() {
            let (spent, endpoints) = cost(&app, &event).await?;
            table.add(
                format!(
                    "requests{label}: {}, {case}",
                    event["type"].as_str().unwrap_or_default()
                ),
                spent.describe(),
                endpoints,
            );
            total = total.add(spent);
        }
        let met = total.notion - total.appends <= 4 && total.openphone <= 3;
        let verdict = match (judged, met) {
            (false, _) => "",
            (true, true) => "; target: Notion ≤ 4 + appends, OpenPhone ≤ 3 — met",
            (true, false) => "; target: Notion ≤ 4 + appends, OpenPhone ≤ 3 — NOT MET",
        };
        table.add(
            format!("requests{label}: call lifecycle, {case}"),
            total.describe(),
            format!("completed + recording + transcript + summary{verdict}"),
        );
    }
    Ok(())
}

/// What a minute with no deliveries costs on `spin up`, where the cron plugin ticks every minute: a
/// request the tick sends lands in whichever event's count was being taken, so it is measured alone.
async fn idle_minute(table: &mut Table, app: &TestApp, label: &str) -> anyhow::Result<()> {
    let before = Spent::now(app).await?;
    let logged = app.notion.request_log().len();
    tokio::time::sleep(Duration::from_secs(61)).await;
    app.wait_idle().await;
    let spent = Spent::now(app).await?.since(before);
    let endpoints: Vec<String> = app.notion.request_log()[logged..]
        .iter()
        .map(|r| format!("{} {}", r.endpoint, r.status))
        .collect();
    table.add(
        format!("requests{label}: a minute without deliveries (one cron tick)"),
        spent.describe(),
        format!("Notion: {}", endpoints.join(", ")),
    );
    Ok(())
}

async fn drain_throughput(table: &mut Table) -> anyhow::Result<()> {
    let (app, line) = start(Runner::TestHost, false).await?;
    let at = Utc::now();
    let events: Vec<Value> = (0..DRAIN_MESSAGES)
        .map(|i| {
            MessageScript::new(&line, &[contact(i % 5)], &format!("ACdm{i}"), at, false).event()
        })
        .collect();
    let rate = drain_rate(&app, &events).await?;
    table.add("drain: messages", format!("{rate:.2} events/s"), format!("{DRAIN_MESSAGES} texts; servers not rate limiting, the app's own Notion budget (3 requests/s) is the bound"));

    let (app, line) = start(Runner::TestHost, true).await?;
    let events: Vec<Value> = (0..DRAIN_CALLS)
        .flat_map(|i| {
            CallScript::answered(
                &app.openphone,
                &line,
                &contact(i % 5),
                &format!("ACdc{i}"),
                at,
            )
            .events()
        })
        .collect();
    let rate = drain_rate(&app, &events).await?;
    table.add(
        "drain: call events",
        format!("{rate:.2} events/s"),
        format!("{DRAIN_CALLS} calls × 4 events, recordings copied to S3; same bound"),
    );
    Ok(())
}

/// Events per second from the first delivery until all `events` are processed.
async fn drain_rate(app: &TestApp, events: &[Value]) -> anyhow::Result<f64> {
    let already = finished(&stats(app).await?);
    let started = Instant::now();
    for event in events {
        let status = app.deliver(event).await.status();
        ensure!(status == 202, "{} answered {status}", event["id"]);
    }
    until_finished(app, already + events.len() as i64, PHASE_LIMIT).await?;
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}
