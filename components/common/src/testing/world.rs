//! One world for every test that talks to the APIs: the local OpenPhone and Notion servers of
//! `tests/servers` (object storage on request) with the Canvas, Calls and Messages databases made once,
//! the app's variables pointing at them, a manual clock, and a migrated native platform (real SQLite
//! and key-value files) — the same for unit tests (`crate::testing`) and integration tests
//! (`common::testing`, through the `testing` feature).

use std::collections::BTreeMap;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use test_servers::{NotionServer, OpenPhoneServer, S3Server, Schema};

use crate::configuration::{NotionConfig, OpenPhoneConfig, Secret, StorageConfig, SyncConfig};
use crate::notion::{schema, Notion};
use crate::openphone::OpenPhone;
use crate::outbound::Failure;
use crate::pages::canvas_relink::RelinkReport;
use crate::pages::{PageSettings, WriteError, Writer};
use crate::platform::native::{ManualClock, MapVariables, NativePlatformBuilder};
use crate::platform::{Clock, HttpClient, Platform};
use crate::stats::Stats;
use crate::sync::{SyncOptions, SyncSettings};

use super::ADMIN_TOKEN;

/// How to build a [`World`]: [`World::builder`], then [`WorldBuilder::build`].
#[derive(Default)]
pub struct WorldBuilder {
    storage: bool,
}

impl WorldBuilder {
    /// Gives the app object storage: a real `s3s-fs` (installed by `scripts/install-test-deps`).
    pub fn with_storage(mut self) -> Self {
        self.storage = true;
        self
    }

    /// Starts the servers, makes the databases and migrates the app's state.
    pub async fn build(self) -> World {
        let s3 = self.storage.then(s3_server);
        let openphone = OpenPhoneServer::start("op-test-key").expect("the OpenPhone server starts");
        let notion = NotionServer::start("secret_test").expect("the Notion server starts");
        // The app keeps to the budgets itself (on the manual clock); the servers' real-time limits are
        // tested elsewhere and would only slow these tests.
        openphone.set_rate_limit(None);
        notion.set_rate_limit(None);
        let (canvas_db, canvas_ds) = notion
            .create_database("Canvas", &Schema::from_types(schema::CANVAS, None))
            .expect("the Canvas database is made");
        let (calls_db, calls_ds) = notion
            .create_database(
                "Calls",
                &Schema::from_types(schema::CALLS, Some(&canvas_ds)),
            )
            .expect("the Calls database is made");
        let (messages_db, messages_ds) = notion
            .create_database(
                "Messages",
                &Schema::from_types(schema::MESSAGES, Some(&canvas_ds)),
            )
            .expect("the Messages database is made");
        let mut vars = MapVariables::from_pairs([
            ("openphone_api_key", openphone.api_key().as_str()),
            ("openphone_api_base", openphone.base_url().as_str()),
            ("openphone_media_base", openphone.media_base_url().as_str()),
            ("notion_api_key", notion.token().as_str()),
            ("notion_api_base", notion.base_url().as_str()),
            ("notion_calls_database_id", calls_db.as_str()),
            ("notion_messages_database_id", messages_db.as_str()),
            ("notion_canvas_database_id", canvas_db.as_str()),
            ("admin_token", ADMIN_TOKEN),
            ("sync_interval_minutes", "360"),
        ]);
        if let Some(s3) = &s3 {
            for (name, value) in [
                ("s3_endpoint", s3.endpoint()),
                ("r2_bucket", s3.bucket()),
                ("r2_access_key_id", s3.access_key()),
                ("r2_secret_access_key", s3.secret_key()),
            ] {
                vars.0.insert(name.into(), value.into());
            }
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Rc::new(ManualClock::at(Utc::now().timestamp_millis()));
        let platform = super::migrated(
            NativePlatformBuilder::new(dir.path())
                .vars(vars.clone())
                .clock(clock.clone()),
        )
        .await;
        World {
            openphone_config: OpenPhoneConfig {
                api_key: Secret::new(openphone.api_key()),
                api_base: openphone.base_url(),
                media_base: openphone.media_base_url(),
            },
            notion_config: NotionConfig {
                api_key: Secret::new(notion.token()),
                api_base: notion.base_url(),
                calls_database_id: calls_db,
                messages_database_id: messages_db,
                canvas_database_id: Some(canvas_db),
            },
            sync_config: SyncConfig {
                sync_interval_minutes: 360,
                queue_max_age_hours: 72,
                drain_concurrency: 4,
                self_phone_numbers: Vec::new(),
                canvas_create_unknown: false,
            },
            s3,
            openphone,
            notion,
            calls_ds,
            messages_ds,
            canvas_ds,
            vars,
            clock,
            platform,
            dir,
        }
    }
}

/// The servers, the three databases, and the app's state, variables and clock.
pub struct World {
    /// The OpenPhone stand-in (and its media host).
    pub openphone: OpenPhoneServer,
    /// The Notion stand-in.
    pub notion: NotionServer,
    /// Object storage, when built [`with_storage`](WorldBuilder::with_storage).
    pub s3: Option<S3Server>,
    /// The Calls data source.
    pub calls_ds: String,
    /// The Messages data source.
    pub messages_ds: String,
    /// The Canvas data source.
    pub canvas_ds: String,
    /// The app's variables, pointing at the servers.
    pub vars: MapVariables,
    /// The app's clock: it moves only when a test moves it.
    pub clock: Rc<ManualClock>,
    /// The app, on the world's state directory.
    pub platform: Platform,
    /// OpenPhone access, as the variables give it.
    pub openphone_config: OpenPhoneConfig,
    /// Notion access and databases, as the variables give them.
    pub notion_config: NotionConfig,
    /// The queue's and the sync's settings (tests change them at will).
    pub sync_config: SyncConfig,
    dir: tempfile::TempDir,
}

impl World {
    /// A world without object storage.
    pub async fn new() -> World {
        Self::builder().build().await
    }

    /// A world whose app has object storage (a real `s3s-fs`).
    pub async fn with_storage() -> World {
        Self::builder().with_storage().build().await
    }

    /// Choose what the world has.
    pub fn builder() -> WorldBuilder {
        WorldBuilder::default()
    }

    /// What `/stats` reports now.
    pub fn stats(&self) -> Stats {
        crate::stats::collect(&self.platform).expect("the stats are read")
    }

    /// The world's clock as a date.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.clock.now_ms()).expect("the clock is a valid date")
    }

    /// Another instance of the app on the same state, clock and variables, sending through `http`.
    pub fn instance(&self, http: Rc<dyn HttpClient>) -> Platform {
        self.instance_with_clock(http, self.clock.clone())
    }

    /// Another instance of the app on the same state and variables, with its own `clock`.
    pub fn instance_with_clock(&self, http: Rc<dyn HttpClient>, clock: Rc<dyn Clock>) -> Platform {
        NativePlatformBuilder::new(self.dir.path())
            .vars(self.vars.clone())
            .clock(clock)
            .http(http)
            .build()
            .expect("another instance builds")
    }

    /// The periodic sync's settings, as the variables give them, with `options`.
    pub fn settings(&self, options: SyncOptions) -> SyncSettings {
        SyncSettings {
            options,
            ..SyncSettings::load(&crate::configuration::Settings::new(
                self.platform.vars.clone(),
            ))
            .expect("the variables are complete")
        }
    }

    /// What pages are written with: the world's configuration as the tests left it, copying media to
    /// `storage` when given.
    pub fn page_settings(&self, storage: Option<&StorageConfig>) -> PageSettings {
        PageSettings {
            openphone: self.openphone_config.clone(),
            notion: self.notion_config.clone(),
            sync: self.sync_config.clone(),
            storage: storage.cloned(),
        }
    }

    /// Forgets the servers' request counts.
    pub fn reset_counters(&self) {
        self.openphone.reset_counters();
        self.notion.reset_counters();
    }

    /// How many pages each title (`Call ID` / `Message ID`) has in a data source.
    pub fn pages_by_id(&self, data_source: &str, title: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for page in self.notion.pages(data_source) {
            let id =
                test_servers::notion::property_text(&page["properties"][title]).unwrap_or_default();
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// What `pending_work` holds for a call: its needs and when it was given up on.
    pub fn pending_needs(&self, call_id: &str) -> Option<(i64, Option<i64>)> {
        let rows = self
            .platform
            .sql
            .execute(
                "SELECT needs, gave_up_at FROM pending_work WHERE call_id = ?1",
                &[call_id.into()],
            )
            .expect("pending_work answers");
        rows.first().map(|r| {
            (
                r.i64("needs").expect("needs is an integer"),
                r.opt_i64("gave_up_at").expect("gave_up_at is an integer"),
            )
        })
    }

    /// Writes one event the way the drain does.
    pub async fn apply(&self, event_type: &str, payload: &Value) -> Result<String, WriteError> {
        self.apply_storing_media(event_type, payload, None).await
    }

    /// Writes one event, copying its media to `storage` when given.
    pub async fn apply_storing_media(
        &self,
        event_type: &str,
        payload: &Value,
        storage: Option<&StorageConfig>,
    ) -> Result<String, WriteError> {
        let settings = self.page_settings(storage);
        let notion = Notion::new(&self.platform, &settings.notion);
        let openphone = OpenPhone::new(&self.platform, &settings.openphone);
        let mut writer = Writer::new(&self.platform, &notion, &openphone, &settings);
        if let Some(media) = settings
            .media(&self.platform)
            .expect("the media copier is configured")
        {
            writer = writer.with_media(media);
        }
        let event_type = crate::domain::EventType::parse(event_type)
            .unwrap_or_else(|| panic!("{event_type} is not a processed event type"));
        crate::pages::events::apply(&writer, event_type, payload).await
    }

    /// Applies an event until it succeeds (the queue's retries, without the waiting).
    pub async fn apply_until_done(&self, event_type: &str, payload: &Value) -> String {
        for _ in 0..50 {
            match self.apply(event_type, payload).await {
                Ok(page) => return page,
                Err(e) if e.is_transient() => self.clock.advance_ms(200_000),
                Err(e) => panic!("{event_type} failed for good: {e}"),
            }
        }
        panic!("{event_type} never succeeded");
    }

    /// Retries the due Canvas relinks, as the tick does.
    pub async fn retry_canvas_relinks(&self) -> RelinkReport {
        let settings = self.page_settings(None);
        let notion = Notion::new(&self.platform, &settings.notion);
        let openphone = OpenPhone::new(&self.platform, &settings.openphone);
        let writer = Writer::new(&self.platform, &notion, &openphone, &settings);
        crate::pages::canvas_relink::retry_due_with(&writer)
            .await
            .expect("the relinks are read")
    }

    /// Adds a Canvas record with `phone` written the way a person typed it.
    pub fn add_canvas(&self, name: &str, phone: &str) -> String {
        self.notion
            .insert_page(
                &self.canvas_ds,
                serde_json::json!({
                    "Name": { "title": [{ "text": { "content": name } }] },
                    "Phone": { "phone_number": phone },
                }),
            )
            .expect("the Canvas record is added")
    }

    /// Page creates and updates Notion answered.
    pub fn notion_writes(&self) -> u64 {
        self.notion
            .request_counts()
            .iter()
            .filter(|(endpoint, _)| {
                endpoint.starts_with("POST /v1/pages") || endpoint.starts_with("PATCH")
            })
            .map(|(_, n)| n)
            .sum()
    }
}

/// `s3s-fs` with a fresh bucket and key pair.
pub fn s3_server() -> S3Server {
    S3Server::start().expect("s3s-fs starts (scripts/install-test-deps installs it)")
}

/// The storage configuration of `s3`, with presigned links and no retention.
pub fn storage_config(s3: &S3Server) -> StorageConfig {
    StorageConfig {
        endpoint: s3.endpoint().to_owned(),
        bucket: s3.bucket().to_owned(),
        access_key_id: Secret::new(s3.access_key()),
        secret_access_key: Secret::new(s3.secret_key()),
        public_base_url: None,
        retention_days: 0,
    }
}

/// The plain text of a page property as the Notion server stores it.
pub fn text(page: &Value, property: &str) -> String {
    test_servers::notion::property_text(&page["properties"][property]).unwrap_or_default()
}
