//! `TestApp`: the app started with local OpenPhone, Notion and (optionally) S3 servers, spoken to only over
//! HTTP — so the same scenarios run in the wasmtime test host and, with `SPIN_BIN=/path/to/spin`, on a
//! real `spin up`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use serde_json::Value;
use spin_test_host::{HostOptions, SpinHost};
use test_servers::webhooks::SignedDelivery;
use test_servers::{NotionServer, OpenPhoneServer, S3Server, Schema};

use crate::workspace_root;

/// The admin token the app is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// How the app runs.
enum Backend {
    Host(SpinHost),
    Spin(Child),
}

/// Options for [`TestApp::start`].
#[derive(Default)]
pub struct TestAppOptions {
    /// Start a real S3 server (s3s-fs) for recordings.
    pub with_s3: bool,
    /// Extra or overriding variables.
    pub variables: HashMap<String, String>,
    /// The Messages database's schema, when not the one the sync writes (e.g. a hand-made database).
    pub messages_schema: Option<Schema>,
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
    /// Data source of the Calls database.
    pub calls_ds: String,
    /// Data source of the Messages database.
    pub messages_ds: String,
    /// Data source of the Canvas database.
    pub canvas_ds: String,
    /// The webhook signing key, base64.
    pub webhook_key: String,
    backend: Option<Backend>,
    http: reqwest::Client,
    _state: tempfile::TempDir,
}

/// A test-server schema from the app's own list of what it writes.
pub fn schema_of(properties: &[(&str, &str)], relation_target: Option<&str>) -> Schema {
    properties.iter().fold(Schema::new(), |schema, (name, kind)| match *kind {
        "title" => schema.title(name),
        "rich_text" => schema.rich_text(name),
        "number" => schema.number(name),
        "select" => schema.select(name, &[]),
        "date" => schema.date(name),
        "checkbox" => schema.checkbox(name),
        "url" => schema.url(name),
        "email" => schema.email(name),
        "phone_number" => schema.phone_number(name),
        "relation" => schema.relation(name, relation_target.expect("relation needs a target")),
        other => panic!("no test schema for {other}"),
    })
}

impl TestApp {
    /// Starts the servers and the app (the test host, or `SPIN_BIN` when set).
    pub async fn start(options: TestAppOptions) -> anyhow::Result<TestApp> {
        let openphone = OpenPhoneServer::start("op-e2e-key")?;
        let notion = NotionServer::start("secret_e2e")?;
        let s3 = if options.with_s3 { Some(S3Server::start()?) } else { None };
        let (canvas_db, canvas_ds) = notion.create_database("Canvas", &schema_of(common_schema::CANVAS, None))?;
        let (calls_db, calls_ds) = notion.create_database("Calls", &schema_of(common_schema::CALLS, Some(&canvas_ds)))?;
        let messages_schema = options
            .messages_schema
            .unwrap_or_else(|| schema_of(common_schema::MESSAGES, Some(&canvas_ds)));
        let (messages_db, messages_ds) = notion.create_database("Messages", &messages_schema)?;
        let webhook_key = base64::engine::general_purpose::STANDARD.encode(b"e2e webhook signing key");

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
        match &s3 {
            Some(s3) => {
                variables.insert("s3_endpoint".into(), s3.endpoint().to_owned());
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
        let backend = match std::env::var_os("SPIN_BIN") {
            Some(spin) => Backend::Spin(start_spin(Path::new(&spin), state.path(), &variables)?),
            None => {
                for (id, _) in crate::COMPONENTS {
                    crate::component_wasm(id)?;
                }
                let mut options = HostOptions::new(workspace_root().join("spin.toml"), state.path());
                options.variables = variables;
                options.components = Some(vec!["webhook".into(), "queue-drain".into(), "phone-sync".into(), "cron".into()]);
                Backend::Host(SpinHost::start(options).await?)
            }
        };
        let base_url = match &backend {
            Backend::Host(host) => host.base_url(),
            Backend::Spin(_) => format!("http://127.0.0.1:{}", spin_port()),
        };
        let app = TestApp {
            base_url,
            openphone,
            notion,
            s3,
            calls_ds,
            messages_ds,
            canvas_ds,
            webhook_key,
            backend: Some(backend),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
            _state: state,
        };
        app.wait_until_healthy().await?;
        Ok(app)
    }

    async fn wait_until_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.base_url)).send().await {
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
        self.http.get(format!("{}{path}", self.base_url)).send().await.expect("the app answers")
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

    /// Sends a prepared delivery (any headers, any body).
    pub async fn send_delivery(&self, delivery: &SignedDelivery) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/webhooks/openphone", self.base_url))
            .header("content-type", "application/json")
            .body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request.send().await.expect("the app answers")
    }

    /// Drains the queue now (`POST /admin/drain`) until nothing is due; returns the last report.
    pub async fn drain(&self) -> Value {
        let response = self.admin_post("/admin/drain", &serde_json::json!({})).await;
        assert!(response.status().is_success(), "drain: {}", response.status());
        response.json().await.expect("JSON report")
    }

    /// Waits until `condition` holds, checking every 100 ms, for at most `timeout`.
    pub async fn eventually(&self, timeout: Duration, mut condition: impl FnMut(&TestApp) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        condition(self)
    }

    /// What the app's components logged (test host only).
    pub fn logs(&self) -> String {
        match &self.backend {
            Some(Backend::Host(host)) => host.logs(),
            _ => String::new(),
        }
    }

    /// Invokes the cron component's export (test host only; real Spin needs the trigger plugin).
    pub async fn cron_tick(&self) -> anyhow::Result<Result<(), String>> {
        match &self.backend {
            Some(Backend::Host(host)) => host.invoke_cron().await,
            _ => bail!("the cron export is invoked by the test host only"),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(Backend::Spin(mut child)) = self.backend.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The app's own property lists (what the sync writes).
mod common_schema {
    pub use common::notion::schema::{CALLS, CANVAS, MESSAGES};
}

fn spin_port() -> u16 {
    std::env::var("SPIN_TEST_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3917)
}

/// Starts `spin up` on the app with a runtime config in `state_dir` and the variables in the environment,
/// without the cron component (the trigger plugin is not assumed).
fn start_spin(spin: &Path, state_dir: &Path, variables: &HashMap<String, String>) -> anyhow::Result<Child> {
    let runtime_config = state_dir.join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        "[key_value_store.default]\ntype = \"spin\"\npath = \"kv.db\"\n\n[sqlite_database.default]\ntype = \"spin\"\npath = \"db.db\"\n",
    )?;
    let mut command = Command::new(spin);
    command
        .current_dir(workspace_root())
        .args(["up", "--from", "spin.toml", "--listen"])
        .arg(format!("127.0.0.1:{}", spin_port()))
        .arg("--runtime-config-file")
        .arg(&runtime_config)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["-c", "webhook", "-c", "queue-drain", "-c", "phone-sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (name, value) in variables {
        command.env(format!("SPIN_VARIABLE_{}", name.to_uppercase()), value);
    }
    command.spawn().with_context(|| format!("starting {}", spin.display()))
}
