//! `TestApp`: the app started with local OpenPhone, Notion and (optionally) S3 servers, spoken to only over
//! HTTP — so the same scenarios run in the wasmtime test host and, with `SPIN_BIN=/path/to/spin`, on a
//! real `spin up`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use base64::Engine;
use serde_json::Value;
use spin_test_host::{HostOptions, SpinHost};
use test_servers::webhooks::SignedDelivery;
use test_servers::{NotionServer, OpenPhoneServer, S3Server, Schema};

use crate::s3_proxy::FlakyS3;
use crate::spin::{KeyValueBackend, RedisServer, SpinProcess};
use crate::workspace_root;

/// The admin token the app is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// How the app runs.
enum Backend {
    Host(SpinHost),
    /// One `spin up` per replica.
    Spin(Vec<SpinProcess>),
}

/// What runs the app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Runner {
    /// `SPIN_BIN` when it is set, else the test host.
    #[default]
    FromEnvironment,
    /// The wasmtime test host, whatever `SPIN_BIN` says.
    TestHost,
    /// `spin up` with this binary.
    Spin(PathBuf),
}

/// Options for [`TestApp::start`].
#[derive(Default)]
pub struct TestAppOptions {
    /// Start a real S3 server (s3s-fs) for recordings.
    pub with_s3: bool,
    /// Put a [`FlakyS3`] proxy between the app and the S3 server, refusing this fraction of uploads
    /// (implies `with_s3`).
    pub s3_refuse_puts: Option<f64>,
    /// Extra or overriding variables.
    pub variables: HashMap<String, String>,
    /// The Messages database's schema, when not the one the sync writes (e.g. a hand-made database).
    pub messages_schema: Option<Schema>,
    /// What a new user starts from: Calls and Messages databases made in Notion with nothing but their
    /// default title, "Name", and no Canvas database configured (`notion_canvas_database_id` unset).
    pub fresh_workspace: bool,
    /// What runs the app.
    pub runner: Runner,
    /// The test host's request timeout, when not its default (60 s); also the client's timeout.
    pub request_timeout: Option<Duration>,
    /// Real Spin only: how many `spin up` processes serve the app, sharing one database and one
    /// key-value store (0 means 1). Webhooks go to them in turn, as a load balancer sends them.
    pub replicas: usize,
    /// Real Spin only: put the key-value store on a Redis of the test's own, as on SpinKube, whatever
    /// `E2E_KEY_VALUE` says.
    pub redis: bool,
}

/// Whether `E2E_KEY_VALUE=redis` asks for Redis as the key-value store of every app on real Spin.
fn redis_from_environment() -> bool {
    std::env::var("E2E_KEY_VALUE").is_ok_and(|v| v.eq_ignore_ascii_case("redis"))
}

/// The app under test and the servers it talks to.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// OpenPhone (and the media host).
    pub openphone: OpenPhoneServer,
    /// Notion.
    pub notion: NotionServer,
    /// S3, when started.
    pub s3: Option<S3Server>,
    /// The proxy in front of S3 that refuses some uploads, when asked for.
    pub s3_proxy: Option<FlakyS3>,
    /// Data source of the Calls database.
    pub calls_ds: String,
    /// Data source of the Messages database.
    pub messages_ds: String,
    /// Data source of the Canvas database.
    pub canvas_ds: String,
    /// The webhook signing key, base64.
    pub webhook_key: String,
    backend: Option<Backend>,
    /// Where each replica answers; webhooks go to them in turn.
    replica_urls: Vec<String>,
    next_replica: AtomicUsize,
    /// The Redis holding the key-value store, when the app runs on real Spin with Redis.
    pub redis: Option<RedisServer>,
    /// How to start the backend again after [`TestApp::crash_and_restart`].
    launch: Launch,
    /// What the hosts stopped by [`TestApp::crash_and_restart`] logged.
    earlier_logs: String,
    http: reqwest::Client,
    state: tempfile::TempDir,
}

/// What starting the backend takes, kept for restarts.
struct Launch {
    spin: Option<PathBuf>,
    variables: HashMap<String, String>,
    request_timeout: Option<Duration>,
    replicas: usize,
    key_value: KeyValueBackend,
}

/// How long [`TestApp::crash_and_restart`] keeps the app down, as far as the app can tell: longer than
/// an event lease (5 minutes), a per-number lease (two 2-minute slots) and a page-create claim (2
/// minutes).
pub const DOWNTIME: Duration = Duration::from_secs(10 * 60);

/// The app's stored times that decide when something may happen again (epoch ms): when a retry is
/// due, when an event's lease expires, when a page create that may have been cut off is taken over.
/// Moving them back is how [`TestApp::let_time_pass`] and [`TestApp::crash_and_restart`] make time
/// pass; a window missing here shows as events stuck behind it (e.g. dead after retries that all
/// came too early).
pub const TIME_WINDOWS: &[(&str, &str)] = &[
    ("events", "available_at"),
    ("events", "lease_expires_at"),
    ("notion_pages", "create_started_at"),
    ("canvas_relinks", "next_try_at"),
];

/// The [`TIME_WINDOWS`] of the intake database: the drain-kick window (the second whose first delivery
/// kicked the drain: a later delivery kicks).
pub const INTAKE_TIME_WINDOWS: &[(&str, &str)] = &[("drain_kick_window", "window_start")];

/// What [`TestApp::crash_and_restart`] found when the app was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    /// Events a stopped drain held: they were leased, mid-batch, when the app stopped.
    pub orphaned_events: usize,
    /// Per-number lease keys that were live or left behind.
    pub lease_keys: usize,
}

impl TestApp {
    /// Starts the servers and the app (the test host, or `SPIN_BIN` when set).
    pub async fn start(options: TestAppOptions) -> anyhow::Result<TestApp> {
        let openphone = OpenPhoneServer::start("op-e2e-key")?;
        let notion = NotionServer::start("secret_e2e")?;
        let with_s3 = options.with_s3 || options.s3_refuse_puts.is_some();
        let s3 = if with_s3 {
            Some(S3Server::start()?)
        } else {
            None
        };
        let s3_proxy = match (&s3, options.s3_refuse_puts) {
            (Some(s3), Some(fraction)) => {
                Some(FlakyS3::start(s3.endpoint(), fraction, 0x5315).await?)
            }
            _ => None,
        };
        let (canvas_db, canvas_ds) =
            notion.create_database("Canvas", &Schema::from_types(common_schema::CANVAS, None))?;
        let fresh = || Schema::new().title("Name");
        let calls_schema = if options.fresh_workspace {
            fresh()
        } else {
            Schema::from_types(common_schema::CALLS, Some(&canvas_ds))
        };
        let (calls_db, calls_ds) = notion.create_database("Calls", &calls_schema)?;
        let messages_schema = match options.messages_schema {
            Some(schema) => schema,
            None if options.fresh_workspace => fresh(),
            None => Schema::from_types(common_schema::MESSAGES, Some(&canvas_ds)),
        };
        let (messages_db, messages_ds) = notion.create_database("Messages", &messages_schema)?;
        let webhook_key =
            base64::engine::general_purpose::STANDARD.encode(b"e2e webhook signing key");

        let mut variables: HashMap<String, String> = [
            ("openphone_api_key", openphone.api_key()),
            ("openphone_api_base", openphone.base_url()),
            ("openphone_media_base", openphone.media_base_url()),
            ("openphone_webhook_secret", webhook_key.clone()),
            ("notion_api_key", notion.token()),
            ("notion_api_base", notion.base_url()),
            ("notion_calls_database_id", calls_db),
            ("notion_messages_database_id", messages_db),
            ("notion_canvas_database_id", canvas_db),
            ("admin_token", ADMIN_TOKEN.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if options.fresh_workspace {
            variables.remove("notion_canvas_database_id");
        }
        match &s3 {
            Some(s3) => {
                let endpoint = s3_proxy.as_ref().map_or(s3.endpoint(), FlakyS3::endpoint);
                variables.insert("s3_endpoint".into(), endpoint.to_owned());
                variables.insert("r2_bucket".into(), s3.bucket().to_owned());
                variables.insert("r2_access_key_id".into(), s3.access_key().to_owned());
                variables.insert("r2_secret_access_key".into(), s3.secret_key().to_owned());
            }
            None => {
                // Required, but unused by scenarios without recordings: a port nothing listens on.
                variables.insert("s3_endpoint".into(), "http://127.0.0.1:9".into());
                variables.insert("r2_bucket".into(), "recordings".into());
                variables.insert("r2_access_key_id".into(), "unused".into());
                variables.insert("r2_secret_access_key".into(), "unused".into());
            }
        }
        variables.extend(options.variables);

        let state = tempfile::tempdir()?;
        let spin = match options.runner {
            Runner::FromEnvironment => std::env::var_os("SPIN_BIN").map(PathBuf::from),
            Runner::TestHost => None,
            Runner::Spin(path) => Some(path),
        };
        let redis = if spin.is_some() && (options.redis || redis_from_environment()) {
            Some(RedisServer::start()?)
        } else {
            None
        };
        let launch = Launch {
            spin,
            variables,
            request_timeout: options.request_timeout,
            replicas: options.replicas.max(1),
            key_value: redis.as_ref().map_or(KeyValueBackend::SpinSqlite, |r| {
                KeyValueBackend::Redis(r.url())
            }),
        };
        let client_timeout = options.request_timeout.unwrap_or(Duration::from_secs(60));
        let http = reqwest::Client::builder().timeout(client_timeout).build()?;
        let backend = launch.start(state.path(), &http).await?;
        let replica_urls = backend.base_urls();
        let app = TestApp {
            base_url: replica_urls[0].clone(),
            openphone,
            notion,
            s3,
            s3_proxy,
            calls_ds,
            messages_ds,
            canvas_ds,
            webhook_key,
            backend: Some(backend),
            replica_urls,
            next_replica: AtomicUsize::new(0),
            redis,
            launch,
            earlier_logs: String::new(),
            http,
            state,
        };
        app.wait_until_healthy().await?;
        Ok(app)
    }

    /// Stops the app abruptly, as a crash or `kill -9` would: every running instance stops where it is,
    /// work after a response and drains in the middle of a batch included. Then lets [`DOWNTIME`] pass
    /// and starts it again on the same state (the same database and key-value store).
    ///
    /// Neither the test host nor `spin up` can move the guests' clock, so the time passes in the stored
    /// state instead: the app's time windows (see [`TIME_WINDOWS`] and [`INTAKE_TIME_WINDOWS`], the drain-kick window)
    /// are moved back by [`DOWNTIME`] and the per-number lease slots, which last at most two 2-minute
    /// windows, are deleted. So the events the stopped drains held come back at once, the numbers and
    /// page creations they held are free, and the first delivery after the restart kicks the drain, as
    /// they would be after a restart minutes later. (A restart within the second of a kick
    /// would leave that second's later deliveries to the tick: the kicked drain that was to look for them
    /// was stopped.) Nothing a running instance holds is touched: none is running.
    pub async fn crash_and_restart(&mut self) -> anyhow::Result<Crash> {
        let host_logs = self.logs_of_current_run();
        match self.backend.take() {
            Some(Backend::Host(host)) => {
                host.shutdown().await;
                self.earlier_logs.push_str(&host_logs);
            }
            Some(Backend::Spin(replicas)) => replicas.into_iter().for_each(SpinProcess::kill),
            None => bail!("the app is not running"),
        }
        let crash = self.let_downtime_pass()?;
        let backend = self
            .launch
            .start(self.state.path(), &self.http)
            .await
            .context("restarting the app")?;
        self.replica_urls = backend.base_urls();
        self.base_url = self.replica_urls[0].clone();
        self.backend = Some(backend);
        self.wait_until_healthy().await?;
        Ok(crash)
    }

    fn let_downtime_pass(&self) -> anyhow::Result<Crash> {
        let db = self.open_database(self.launch.sqlite_file())?;
        let orphaned_events = db
            .query_row(
                "SELECT count(*) FROM events WHERE state = 'leased'",
                [],
                |row| row.get(0),
            )
            .context("counting the stopped drains' events")?;
        self.move_time_windows(DOWNTIME)?;
        let lease_keys = match &self.redis {
            Some(redis) => redis
                .delete_matching("lease:*")
                .context("ending the stopped drains' lease windows")?,
            None => self
                .open_database(self.launch.key_value_file())?
                .execute("DELETE FROM spin_key_value WHERE key LIKE 'lease:%'", [])
                .context("ending the stopped drains' lease windows")?,
        };
        Ok(Crash {
            orphaned_events,
            lease_keys,
        })
    }

    /// Lets `time` pass for the app's retries.
    ///
    /// On the test host, which can tell when no instance runs: waits until none does, then moves the
    /// app's time windows ([`TIME_WINDOWS`]) back by `time`, so retries whose backoff would have run out
    /// are due, and page creates cut off by a failure are taken over, as they would be after waiting
    /// that long. With no instance running, nothing moved is in use.
    ///
    /// On real Spin, which cannot tell, and whose cron trigger starts drains by itself: waits until no
    /// event is leased, then moves only the due times of retries (pending events, Canvas relinks). That
    /// is safe while a drain runs (a retry comes sooner, nothing held is touched); a page create cut off without a crash is
    /// not taken over sooner — after an unknown outcome the app settles its claim within seconds itself.
    pub async fn let_time_pass(&self, time: Duration) -> anyhow::Result<()> {
        match &self.backend {
            Some(Backend::Host(host)) => {
                host.wait_idle().await;
                self.move_time_windows(time)
            }
            Some(Backend::Spin(_)) => {
                self.wait_until_no_event_is_leased(Duration::from_secs(120))
                    .await?;
                let db = self.open_database(self.launch.sqlite_file())?;
                let millis = i64::try_from(time.as_millis())?;
                db.execute(
                    "UPDATE events SET available_at = available_at - ?1 WHERE state = 'pending'",
                    [millis],
                )
                .context("moving pending events' due times back")?;
                db.execute(
                    "UPDATE canvas_relinks SET next_try_at = next_try_at - ?1",
                    [millis],
                )
                .context("moving Canvas relink retries back")?;
                Ok(())
            }
            None => bail!("the app is not running"),
        }
    }

    async fn wait_until_no_event_is_leased(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let leased: i64 = self
                .open_database(self.launch.sqlite_file())?
                .query_row(
                    "SELECT count(*) FROM events WHERE state = 'leased'",
                    [],
                    |row| row.get(0),
                )
                .context("counting leased events")?;
            if leased == 0 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{leased} events stayed leased for {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn move_time_windows(&self, time: Duration) -> anyhow::Result<()> {
        let millis = i64::try_from(time.as_millis())?;
        for (file, windows) in [
            (self.launch.sqlite_file(), TIME_WINDOWS),
            (self.launch.intake_file(), INTAKE_TIME_WINDOWS),
        ] {
            let db = self.open_database(file)?;
            for (table, column) in windows {
                db.execute(
                    &format!(
                        "UPDATE {table} SET {column} = {column} - ?1 WHERE {column} IS NOT NULL"
                    ),
                    [millis],
                )
                .with_context(|| format!("moving {table}.{column} back"))?;
            }
        }
        Ok(())
    }

    /// Takes the app's database away, as a disk or database server that stops answering would: an
    /// exclusive lock every statement of the app waits for (its busy timeout) and then fails on, until
    /// the returned connection is dropped. In write-ahead-log mode an exclusive transaction leaves
    /// readers alone, so the connection also takes the file's lock for itself (`locking_mode`).
    pub fn lock_database(&self) -> anyhow::Result<rusqlite::Connection> {
        self.lock_file(self.launch.sqlite_file())
            .context("locking the app's database")
    }

    /// Takes the intake database away, as [`TestApp::lock_database`] takes the app's.
    pub fn lock_intake_database(&self) -> anyhow::Result<rusqlite::Connection> {
        self.lock_file(self.launch.intake_file())
            .context("locking the intake database")
    }

    fn lock_file(&self, file: &str) -> anyhow::Result<rusqlite::Connection> {
        let db = self.open_database(file)?;
        db.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE")?;
        Ok(db)
    }

    /// The journal mode of the app's database file (`PRAGMA journal_mode`), as the app left it.
    pub fn journal_mode(&self) -> anyhow::Result<String> {
        self.journal_mode_of(self.launch.sqlite_file())
            .context("reading the journal mode of the app's database")
    }

    /// The journal mode of the intake database's file, as the app left it.
    pub fn intake_journal_mode(&self) -> anyhow::Result<String> {
        self.journal_mode_of(self.launch.intake_file())
            .context("reading the journal mode of the intake database")
    }

    fn journal_mode_of(&self, file: &str) -> anyhow::Result<String> {
        Ok(self
            .open_database(file)?
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))?)
    }

    /// The statements that make the schema of the app's database as its migrations left it, in the order
    /// they were made (SQLite's own objects left out).
    pub fn schema(&self) -> anyhow::Result<Vec<String>> {
        let db = self.open_database(self.launch.sqlite_file())?;
        let mut statement = db.prepare(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'
             ORDER BY rowid",
        )?;
        let rows = statement.query_map([], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()
            .context("reading the schema of the app's database")
    }

    fn open_database(&self, file: &str) -> anyhow::Result<rusqlite::Connection> {
        let path = self.state.path().join(file);
        let db = rusqlite::Connection::open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // The app writes to the same file; wait for its statements rather than fail.
        db.busy_timeout(Duration::from_secs(10))?;
        Ok(db)
    }

    /// Waits until no instance runs (test host), or until no event is leased (real Spin, which cannot
    /// tell whether an instance runs).
    pub async fn wait_idle(&self) {
        match &self.backend {
            Some(Backend::Host(host)) => host.wait_idle().await,
            Some(Backend::Spin(_)) => {
                let _ = self
                    .wait_until_no_event_is_leased(Duration::from_secs(120))
                    .await;
            }
            None => {}
        }
    }

    async fn wait_until_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/health", self.base_url))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the app did not answer /health within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("the app answers")
    }

    /// `GET path` with the admin token.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("the app answers")
    }

    /// `GET /stats`, which must answer 200 with JSON.
    pub async fn stats(&self) -> Value {
        let response = self.admin_get("/stats").await;
        assert_eq!(response.status(), 200, "/stats");
        response.json().await.expect("/stats is JSON")
    }

    /// `/stats` once `condition` holds of it (polled every 200 ms), or as it is after `timeout`.
    pub async fn stats_when(&self, timeout: Duration, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.stats().await;
            if condition(&now) || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `POST path` with the admin token and a JSON body.
    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("the app answers")
    }

    /// Delivers `payload` as OpenPhone does, signed with the legacy `openphone-signature` scheme.
    pub async fn deliver(&self, payload: &Value) -> reqwest::Response {
        let now = chrono::Utc::now().timestamp_millis();
        let delivery = SignedDelivery::legacy(&self.webhook_key, now, payload).expect("signs");
        self.send_delivery(&delivery).await
    }

    /// Delivers `payload` as [`TestApp::deliver`] does, to replica `replica` only.
    pub async fn deliver_to(&self, replica: usize, payload: &Value) -> reqwest::Response {
        let now = chrono::Utc::now().timestamp_millis();
        let delivery = SignedDelivery::legacy(&self.webhook_key, now, payload).expect("signs");
        let base_url = &self.replica_urls[replica % self.replica_urls.len()];
        self.send_to(base_url, &delivery).await
    }

    /// Sends a prepared delivery (any headers, any body), to the replicas in turn.
    pub async fn send_delivery(&self, delivery: &SignedDelivery) -> reqwest::Response {
        let turn = self.next_replica.fetch_add(1, Ordering::Relaxed);
        let base_url = &self.replica_urls[turn % self.replica_urls.len()];
        self.send_to(base_url, delivery).await
    }

    async fn send_to(&self, base_url: &str, delivery: &SignedDelivery) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{base_url}/webhooks/openphone"))
            .header("content-type", "application/json")
            .body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request.send().await.expect("the app answers")
    }

    /// Drains the queue now (`POST /admin/drain`) until nothing is due; returns the last report.
    pub async fn drain(&self) -> Value {
        let response = self
            .admin_post("/admin/drain", &serde_json::json!({}))
            .await;
        assert!(
            response.status().is_success(),
            "drain: {}",
            response.status()
        );
        response.json().await.expect("JSON report")
    }

    /// Waits until `condition` holds, checking every 100 ms, for at most `timeout`.
    pub async fn eventually(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&TestApp) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        condition(self)
    }

    /// Whether the Calls database holds exactly one page, with its recording, transcript and summary
    /// (what a call's four events make together).
    pub fn has_one_complete_call_page(&self) -> bool {
        let calls = self.notion.pages(&self.calls_ds);
        calls.len() == 1
            && ["Has Recording", "Has Transcript", "Has Summary"]
                .iter()
                .all(|flag| calls[0]["properties"][flag]["checkbox"] == true)
    }

    /// What the app's components logged, restarts included (on real Spin, with Spin's own output).
    pub fn logs(&self) -> String {
        format!("{}{}", self.earlier_logs, self.logs_of_current_run())
    }

    fn logs_of_current_run(&self) -> String {
        match &self.backend {
            Some(Backend::Host(host)) => host.logs(),
            // Each replica appends to its own file in the state directory, across restarts.
            Some(Backend::Spin(replicas)) => {
                replicas.iter().map(SpinProcess::output).collect::<String>()
            }
            None => String::new(),
        }
    }

    /// What replica `index` logged (real Spin; the test host has one replica, all its logs).
    pub fn replica_logs(&self, index: usize) -> String {
        match &self.backend {
            Some(Backend::Spin(replicas)) => replicas
                .get(index)
                .map(SpinProcess::output)
                .unwrap_or_default(),
            _ => self.logs(),
        }
    }

    /// The CPU time the app's `spin up` processes (every replica's) have used so far; `None` on the test
    /// host, which shares its process with the test.
    pub fn spin_cpu_time(&self) -> anyhow::Result<Option<Duration>> {
        match &self.backend {
            Some(Backend::Spin(replicas)) => replicas
                .iter()
                .map(SpinProcess::cpu_time)
                .sum::<anyhow::Result<Duration>>()
                .map(Some),
            _ => Ok(None),
        }
    }

    /// Whether the app runs on real Spin.
    pub fn on_spin(&self) -> bool {
        self.launch.spin.is_some()
    }

    /// Invokes the cron component's export (test host only: on real Spin the trigger plugin runs it
    /// every minute by itself).
    pub async fn cron_tick(&self) -> anyhow::Result<Result<(), String>> {
        match &self.backend {
            Some(Backend::Host(host)) => host.invoke_cron().await,
            _ => bail!("the cron export is invoked by the test host only"),
        }
    }
}

impl Backend {
    fn base_urls(&self) -> Vec<String> {
        match self {
            Backend::Host(host) => vec![host.base_url()],
            Backend::Spin(replicas) => replicas.iter().map(SpinProcess::base_url).collect(),
        }
    }
}

impl Launch {
    async fn start(&self, state_dir: &Path, http: &reqwest::Client) -> anyhow::Result<Backend> {
        match &self.spin {
            Some(spin) => {
                let runtime_config = state_dir.join("runtime-config.toml");
                crate::spin::write_runtime_config(
                    &runtime_config,
                    &self.key_value,
                    &state_dir.join(self.key_value_file()),
                    &state_dir.join(self.sqlite_file()),
                    &state_dir.join(self.intake_file()),
                )?;
                let variables: Vec<(String, String)> = self
                    .variables
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut replicas = Vec::new();
                for replica in 0..self.replicas {
                    let dir = state_dir.join(format!("replica-{replica}"));
                    replicas
                        .push(start_replica(spin, &dir, &runtime_config, &variables, http).await?);
                }
                Ok(Backend::Spin(replicas))
            }
            None => {
                for (id, _) in crate::COMPONENTS {
                    crate::component_wasm(id)?;
                }
                // The host needs the intake database defined, as Spin does.
                let runtime_config = state_dir.join("runtime-config.toml");
                crate::spin::write_runtime_config(
                    &runtime_config,
                    &KeyValueBackend::SpinSqlite,
                    &state_dir.join(self.key_value_file()),
                    &state_dir.join(self.sqlite_file()),
                    &state_dir.join(self.intake_file()),
                )?;
                let mut options = HostOptions::new(workspace_root().join("spin.toml"), state_dir);
                options.runtime_config = Some(runtime_config);
                options.variables = self.variables.clone();
                options.components = Some(vec![
                    "webhook".into(),
                    "queue-drain".into(),
                    "phone-sync".into(),
                    "cron".into(),
                ]);
                if let Some(timeout) = self.request_timeout {
                    options.request_timeout = timeout;
                }
                Ok(Backend::Host(SpinHost::start(options).await?))
            }
        }
    }

    /// The SQLite database file in the state directory (the test host's name, or the one the runtime
    /// config for Spin gives it).
    fn sqlite_file(&self) -> &'static str {
        if self.spin.is_some() {
            "db.db"
        } else {
            "sqlite_db.db"
        }
    }

    /// The intake database's file in the state directory (the runtime config names it for both hosts).
    fn intake_file(&self) -> &'static str {
        common::platform::native::INTAKE_DATABASE_FILE
    }

    /// The key-value store's file in the state directory.
    fn key_value_file(&self) -> &'static str {
        if self.spin.is_some() {
            "kv.db"
        } else {
            "sqlite_key_value.db"
        }
    }
}

/// The app's own property lists (what the sync writes).
mod common_schema {
    pub use common::notion::schema::{CALLS, CANVAS, MESSAGES};
}

/// Starts one `spin up` and waits for its `/health`; a port taken between choosing it and Spin binding
/// it makes Spin exit, and the start is tried again on another port.
async fn start_replica(
    spin: &Path,
    state_dir: &Path,
    runtime_config: &Path,
    variables: &[(String, String)],
    http: &reqwest::Client,
) -> anyhow::Result<SpinProcess> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut process = SpinProcess::start(spin, state_dir, runtime_config, variables)?;
        match crate::spin::wait_until_healthy(&mut process, http).await {
            Ok(()) => return Ok(process),
            Err(e) if tries < 3 && process.output().contains("in use") => {
                eprintln!("spin up lost its port, starting it again: {e:#}");
                process.kill();
            }
            Err(e) => return Err(e),
        }
    }
}
