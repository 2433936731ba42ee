//! Webhook intake throughput and latency at 1, 16 and 64 clients: new events of a type the sync ignores,
//! their duplicates, and new events that start the drain, signed with a key `/admin/setup` stored (the
//! README's set-up); and new events signed with `openphone_webhook_secret`, the other way to configure
//! it. On a real `spin up` (`SPIN_BIN`) the same loads also go, in alternating rounds of the same run, to
//! two floors built from `tests/host/fixtures`: `intake-floor`, a component that reads the body and
//! answers `202` (what Spin itself costs), and `insert-floor`, which also stores the body with one SQLite
//! insert (the least a durable intake does). The insert floor's database is put in the journal mode the
//! app's migrations left its own in (WAL), so the floor pays for the same commit as the app. A third
//! floor runs the insert floor on a database that also holds the app's schema (copied from the app's
//! database once its migrations ran): SQLite reads the whole schema on each connection's first statement,
//! and Spin opens a connection per request. The table gives the app's rate and p99 as ratios to the
//! floors, and what each delivery cost Spin in CPU time (its processes' user and system time over the
//! load, which other work on the machine moves less than it moves the rates).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::Utc;
use e2e::app::{Runner, TestApp};
use e2e::spin::{free_port, write_runtime_config, KeyValueBackend};
use e2e::workload::{contact, MessageScript};
use e2e::workspace_root;
use serde_json::Value;
use test_servers::webhooks::SignedDelivery;

use crate::{start, Table, PHASE_LIMIT};

/// (clients, deliveries of each kind in each round).
const LOADS: [(usize, usize); 3] = [(1, 300), (16, 1600), (64, 2560)];
/// Rounds per load on Spin, alternating app, do-nothing floor and insert floor.
const SPIN_ROUNDS: usize = 3;

/// The loads to run: every one of [`LOADS`], or those whose client counts `BENCH_INTAKE_CLIENTS` lists
/// (comma-separated), to compare two builds of the app at one load without the whole phase.
fn loads() -> Vec<(usize, usize)> {
    let only = std::env::var("BENCH_INTAKE_CLIENTS").unwrap_or_default();
    LOADS
        .into_iter()
        .filter(|(clients, _)| {
            only.is_empty()
                || only
                    .split(',')
                    .any(|c| c.trim() == clients.to_string().as_str())
        })
        .collect()
}

/// What one load measured.
struct Load {
    unexpected: BTreeMap<u16, usize>,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// The CPU time the server's `spin up` used during the load, when measured.
    cpu: Option<Duration>,
}

impl Load {
    /// Several rounds as one: their latencies together, their times added.
    fn merge(loads: Vec<Load>) -> Load {
        let mut all = Load {
            unexpected: BTreeMap::new(),
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            cpu: Some(Duration::ZERO),
        };
        for load in loads {
            all.elapsed += load.elapsed;
            all.cpu = all.cpu.zip(load.cpu).map(|(a, b)| a + b);
            all.latencies.extend(load.latencies);
            for (status, n) in load.unexpected {
                *all.unexpected.entry(status).or_default() += n;
            }
        }
        all.latencies.sort();
        all
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: usize) -> f64 {
        let index = (self.latencies.len() * p / 100).min(self.latencies.len().saturating_sub(1));
        self.latencies
            .get(index)
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    }

    /// Milliseconds of Spin's CPU per delivery, when measured.
    fn cpu_ms_per_delivery(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (!self.latencies.is_empty())
            .then(|| cpu.as_secs_f64() * 1000.0 / self.latencies.len() as f64)
    }

    /// `; Spin's CPU … ms per delivery`, when measured.
    fn cpu_note(&self) -> String {
        self.cpu_ms_per_delivery()
            .map(|ms| format!("; Spin's CPU {ms:.2} ms per delivery"))
            .unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
            self.rate(),
            self.percentile_ms(50),
            self.percentile_ms(99)
        )
    }

    fn note(&self, expected: u16) -> String {
        if self.unexpected.is_empty() {
            format!(
                "{} deliveries, every one answered {expected}",
                self.latencies.len()
            )
        } else {
            format!(
                "{} deliveries; answers other than {expected}: {:?}",
                self.latencies.len(),
                self.unexpected
            )
        }
    }
}

/// Sends `deliveries` from `clients` concurrent clients (stopping at [`PHASE_LIMIT`]).
async fn fire(
    base_url: &str,
    deliveries: Vec<SignedDelivery>,
    clients: usize,
    expected: u16,
) -> anyhow::Result<Load> {
    let deliveries = Arc::new(deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{base_url}/webhooks/openphone");
    let started = Instant::now();
    let deadline = started + PHASE_LIMIT;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (deliveries, next, client, url) = (
            deliveries.clone(),
            next.clone(),
            client.clone(),
            url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut unexpected: BTreeMap<u16, usize> = BTreeMap::new();
            while Instant::now() < deadline {
                let Some(delivery) = deliveries.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let mut request = client.post(&url).body(delivery.body.clone());
                for (name, value) in &delivery.headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let sent = Instant::now();
                let status = request.send().await.map_or(0, |r| r.status().as_u16());
                latencies.push(sent.elapsed());
                if status != expected {
                    *unexpected.entry(status).or_default() += 1;
                }
            }
            (latencies, unexpected)
        }));
    }
    let mut load = Load {
        unexpected: BTreeMap::new(),
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        cpu: None,
    };
    for task in tasks {
        let (latencies, unexpected) = task.await.context("an intake client failed")?;
        load.latencies.extend(latencies);
        for (status, n) in unexpected {
            *load.unexpected.entry(status).or_default() += n;
        }
    }
    load.elapsed = started.elapsed();
    load.latencies.sort();
    Ok(load)
}

/// [`fire`], charging the load with the CPU time the server used meanwhile, as `cpu` reports it.
async fn fire_charged(
    cpu: impl Fn() -> anyhow::Result<Option<Duration>>,
    base_url: &str,
    deliveries: Vec<SignedDelivery>,
    clients: usize,
    expected: u16,
) -> anyhow::Result<Load> {
    let before = cpu()?;
    let mut load = fire(base_url, deliveries, clients, expected).await?;
    load.cpu = before
        .zip(cpu()?)
        .map(|(before, after)| after.saturating_sub(before));
    Ok(load)
}

/// The kinds of delivery measured, each answered with its status.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// New events of a type the sync ignores: stored as skipped, no drain started.
    Ignored,
    /// The same events again.
    Duplicate,
    /// New `message.received` events: stored, and the drain started.
    Processed,
    /// New events of a type the sync ignores, signed with `openphone_webhook_secret` rather than a key
    /// setup stored.
    BySecret,
}

impl Kind {
    /// In the order of each round: the kicked drains keep working after their row, so the rows to compare
    /// with each other come before it.
    const ALL: [Kind; 4] = [
        Kind::Ignored,
        Kind::BySecret,
        Kind::Duplicate,
        Kind::Processed,
    ];

    fn describe(self) -> &'static str {
        match self {
            Kind::Ignored => "new events (a type the sync ignores: no drain kicked)",
            Kind::Duplicate => "duplicates (queue idle)",
            Kind::Processed => "new events (the drain kicked)",
            Kind::BySecret => {
                "new events signed with openphone_webhook_secret (setup's keys tried first; no drain kicked)"
            }
        }
    }

    fn expected(self) -> u16 {
        match self {
            Kind::Duplicate => 200,
            Kind::Ignored | Kind::Processed | Kind::BySecret => 202,
        }
    }

    /// This kind's deliveries of one round: signed with a key setup stored (the documented set-up),
    /// or with the configured secret.
    fn deliveries(
        self,
        app: &SetUpApp,
        round: &(Vec<Value>, Vec<Value>),
    ) -> anyhow::Result<Vec<SignedDelivery>> {
        let (messages, ignored) = round;
        match self {
            Kind::Ignored | Kind::Duplicate => sign(&app.stored_key, ignored),
            Kind::Processed => sign(&app.stored_key, messages),
            Kind::BySecret => {
                let others: Vec<Value> = ignored
                    .iter()
                    .map(|event| {
                        let mut event = event.clone();
                        event["id"] =
                            format!("{}-secret", event["id"].as_str().unwrap_or_default()).into();
                        event
                    })
                    .collect();
                sign(&app.app.webhook_key, &others)
            }
        }
    }
}

/// The app set up as the README says: `POST /admin/setup` made OpenPhone's webhooks and stored their
/// keys. (`openphone_webhook_secret` is set too, for [`Kind::BySecret`].)
struct SetUpApp {
    app: TestApp,
    /// The key of the webhook that delivers messages.
    stored_key: String,
}

impl SetUpApp {
    /// A fresh app on `runner` (as the bench's [`start`] makes it), then `/admin/setup` against it.
    async fn start(runner: Runner) -> anyhow::Result<(SetUpApp, e2e::workload::Line)> {
        let (app, line) = start(runner, false).await?;
        let response = app
            .admin_post(
                "/admin/setup",
                &serde_json::json!({ "public_url": app.base_url }),
            )
            .await;
        let status = response.status();
        ensure!(
            status == 200,
            "/admin/setup answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        let stored_key = app
            .openphone
            .webhooks()
            .into_iter()
            .find(|w| w.events.iter().any(|e| e == "message.received"))
            .map(|w| w.key)
            .context("setup made no webhook for messages")?;
        Ok((SetUpApp { app, stored_key }, line))
    }
}

/// `n` message events of round `round`, and the same as a type the sync ignores (`call.ringing`).
fn payloads(line: &e2e::workload::Line, round: usize, n: usize) -> (Vec<Value>, Vec<Value>) {
    let at = Utc::now();
    let messages: Vec<Value> = (0..n)
        .map(|i| {
            MessageScript::new(
                line,
                &[contact(i % 50)],
                &format!("ACin{round}x{i}"),
                at,
                false,
            )
            .event()
        })
        .collect();
    let ignored = messages
        .iter()
        .map(|m| {
            let mut event = m.clone();
            event["id"] = format!("{}-ringing", m["id"].as_str().unwrap_or_default()).into();
            event["type"] = "call.ringing".into();
            event
        })
        .collect();
    (messages, ignored)
}

fn sign(key: &str, payloads: &[Value]) -> anyhow::Result<Vec<SignedDelivery>> {
    let now = Utc::now().timestamp_millis();
    payloads
        .iter()
        .map(|p| SignedDelivery::legacy(key, now, p))
        .collect()
}

/// Intake on the test host: the app alone.
pub async fn on_test_host(table: &mut Table) -> anyhow::Result<()> {
    for (clients, n) in loads() {
        let (app, line) = SetUpApp::start(Runner::TestHost).await?;
        let round = payloads(&line, 0, n);
        for kind in Kind::ALL {
            let load = fire(
                &app.app.base_url,
                kind.deliveries(&app, &round)?,
                clients,
                kind.expected(),
            )
            .await?;
            table.add(
                format!("intake (test host), {clients} clients: {}", kind.describe()),
                load.describe(),
                load.note(kind.expected()),
            );
        }
    }
    Ok(())
}

/// Intake on `spin up` against its two floors, in alternating rounds.
pub async fn on_spin(table: &mut Table, spin: &Path) -> anyhow::Result<()> {
    let floors = build_floors()?;
    for (clients, n) in loads() {
        let (set_up, line) = SetUpApp::start(Runner::Spin(spin.to_owned())).await?;
        let app = &set_up.app;
        let journal_mode = app.journal_mode()?;
        let app_schema = app.schema()?;
        let nothing = Floor::start(spin, &floors[0], FloorDatabase::Untouched).await?;
        let insert = Floor::start(spin, &floors[1], FloorDatabase::Empty(&journal_mode)).await?;
        let schema = Floor::start(
            spin,
            &floors[1],
            FloorDatabase::AppSchema(&journal_mode, &app_schema),
        )
        .await?;
        let mut app_loads: BTreeMap<usize, Vec<Load>> = BTreeMap::new();
        let mut nothing_loads = Vec::new();
        let mut insert_loads = Vec::new();
        let mut schema_loads = Vec::new();
        for round in 0..SPIN_ROUNDS {
            let deliveries = payloads(&line, round, n);
            for (index, kind) in Kind::ALL.into_iter().enumerate() {
                let load = fire_charged(
                    || app.spin_cpu_time(),
                    &app.base_url,
                    kind.deliveries(&set_up, &deliveries)?,
                    clients,
                    kind.expected(),
                )
                .await?;
                app_loads.entry(index).or_default().push(load);
            }
            // The floors get the same bodies as the app's new events.
            for (floor, loads) in [
                (&nothing, &mut nothing_loads),
                (&insert, &mut insert_loads),
                (&schema, &mut schema_loads),
            ] {
                loads.push(
                    fire_charged(
                        || floor.cpu_time(),
                        &floor.base_url(),
                        sign(&app.webhook_key, &deliveries.1)?,
                        clients,
                        202,
                    )
                    .await?,
                );
            }
        }
        let nothing_load = Load::merge(nothing_loads);
        let insert_load = Load::merge(insert_loads);
        let schema_load = Load::merge(schema_loads);
        table.add(
            format!("intake (spin up), {clients} clients: do-nothing floor"),
            nothing_load.describe(),
            format!(
                "{}; reads the body, answers 202{}",
                nothing_load.note(202),
                nothing_load.cpu_note()
            ),
        );
        table.add(
            format!("intake (spin up), {clients} clients: insert floor"),
            insert_load.describe(),
            format!(
                "{}; reads the body, one SQLite insert (journal_mode={journal_mode}, as the app's), answers 202{}",
                insert_load.note(202),
                insert_load.cpu_note()
            ),
        );
        table.add(
            format!("intake (spin up), {clients} clients: insert floor on the app's schema"),
            schema_load.describe(),
            format!(
                "{}; the insert floor on a database holding the app's migrated schema too; {:.2}× the insert floor's rate{}",
                schema_load.note(202),
                schema_load.rate() / insert_load.rate(),
                schema_load.cpu_note()
            ),
        );
        for (index, loads) in app_loads {
            let kind = Kind::ALL[index];
            let load = Load::merge(loads);
            let ratios = format!(
                "{:.2}× the do-nothing floor's rate, p99 {:.1}× its p99; {:.2}× the insert floor's rate, p99 {:.1}× its p99; {:.2}× the rate on the app's schema",
                load.rate() / nothing_load.rate(),
                load.percentile_ms(99) / nothing_load.percentile_ms(99),
                load.rate() / insert_load.rate(),
                load.percentile_ms(99) / insert_load.percentile_ms(99),
                load.rate() / schema_load.rate(),
            );
            table.add(
                format!("intake (spin up), {clients} clients: {}", kind.describe()),
                load.describe(),
                format!(
                    "{}; {ratios}{}",
                    load.note(kind.expected()),
                    load.cpu_note()
                ),
            );
        }
        nothing.stop();
        insert.stop();
        schema.stop();
    }
    Ok(())
}

/// Builds the two floor components; returns their `.wasm` paths, do-nothing first.
fn build_floors() -> anyhow::Result<[PathBuf; 2]> {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--target", "wasm32-wasip2", "--release"])
        .arg("--manifest-path")
        .arg(root.join("tests/host/fixtures/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .args(["-p", "intake-floor", "-p", "insert-floor"])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building the intake floors failed: {status}");
    }
    let wasm = |name: &str| target.join("wasm32-wasip2/release").join(name);
    Ok([wasm("intake_floor.wasm"), wasm("insert_floor.wasm")])
}

/// What a floor's database holds before its load.
#[derive(Clone, Copy)]
enum FloorDatabase<'a> {
    /// Nothing: Spin makes it.
    Untouched,
    /// No table yet, in this journal mode.
    Empty(&'a str),
    /// The app's schema (the statements that made it), in this journal mode.
    AppSchema(&'a str, &'a [String]),
}

/// A `spin up` of one floor component on the intake's route, with the same runtime config as the app
/// (Spin's SQLite database and key-value store in a state directory of its own), its database prepared
/// as `database` says.
struct Floor {
    child: Child,
    port: u16,
    _state: tempfile::TempDir,
}

impl Floor {
    async fn start(spin: &Path, wasm: &Path, database: FloorDatabase<'_>) -> anyhow::Result<Floor> {
        use std::os::unix::process::CommandExt;

        let state = tempfile::tempdir()?;
        let file = state.path().join("sqlite_db.db");
        if let FloorDatabase::Empty(mode) | FloorDatabase::AppSchema(mode, _) = database {
            let db = rusqlite::Connection::open(&file)?;
            // The mode stays in the file, as the app's migration leaves it in the app's.
            let set: String = db
                .query_row(&format!("PRAGMA journal_mode={mode}"), [], |row| row.get(0))
                .context("setting the floor database's journal mode")?;
            if !set.eq_ignore_ascii_case(mode) {
                bail!("the floor's database kept journal mode {set}, not {mode}");
            }
            if let FloorDatabase::AppSchema(_, schema) = database {
                for statement in schema {
                    db.execute_batch(statement)
                        .with_context(|| format!("copying the app's schema: {statement}"))?;
                }
            }
        }
        let manifest = state.path().join("spin.toml");
        std::fs::write(
            &manifest,
            format!(
                "spin_manifest_version = 2\n\n[application]\nname = \"intake-floor\"\n\n\
                 [[trigger.http]]\nroute = \"/webhooks/openphone\"\ncomponent = \"floor\"\n\n\
                 [component.floor]\nsource = {}\nsqlite_databases = [\"default\"]\n\
                 key_value_stores = [\"default\"]\n",
                toml::Value::String(wasm.display().to_string())
            ),
        )?;
        let runtime_config = state.path().join("runtime-config.toml");
        write_runtime_config(
            &runtime_config,
            &KeyValueBackend::SpinSqlite,
            &state.path().join("kv.db"),
            &file,
            &state.path().join("intake.db"),
        )?;
        let port = free_port()?;
        let log = std::fs::File::create(state.path().join("spin.log"))?;
        let child = Command::new(spin)
            .arg("up")
            .arg("--from")
            .arg(&manifest)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--runtime-config-file")
            .arg(&runtime_config)
            .arg("--state-dir")
            .arg(state.path().join("state"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", spin.display()))?;
        let floor = Floor {
            child,
            port,
            _state: state,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answered = client
                .post(format!("{}/webhooks/openphone", floor.base_url()))
                .body("{}")
                .send()
                .await;
            if answered.is_ok_and(|r| r.status() == 202) {
                return Ok(floor);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(floor._state.path().join("spin.log"))
                    .unwrap_or_default();
                floor.stop();
                bail!(
                    "the floor {} did not answer within 60 s:\n{log}",
                    wasm.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The CPU time this floor's `spin up` has used so far.
    fn cpu_time(&self) -> anyhow::Result<Option<Duration>> {
        e2e::spin::process_group_cpu(self.child.id()).map(Some)
    }

    /// Stops `spin up` and the trigger processes it started (its process group).
    fn stop(mut self) {
        let group = i32::try_from(self.child.id()).unwrap_or(0);
        if group > 0 {
            // SAFETY: a plain signal to the process group this bench started.
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}
