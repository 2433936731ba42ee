//! A world for integration tests of `common`: the local OpenPhone and Notion servers of `tests/servers`
//! with the three databases the sync writes to, and a native platform (real SQLite) pointed at them.

#![allow(dead_code)] // each test file uses a different part of the world

use std::rc::Rc;

use common::configuration::{NotionConfig, OpenPhoneConfig, Secret, StorageConfig, SyncConfig};
use common::notion::{schema, Notion};
use common::openphone::OpenPhone;
use common::outbound::Failure;
use common::pages::{WriteError, Writer};
use common::platform::native::{ManualClock, NativePlatformBuilder};
use common::platform::Platform;
use common::storage::media::MediaCopier;
use serde_json::Value;
use test_servers::{NotionServer, OpenPhoneServer, Schema};

/// The servers, the databases and the app's storage.
pub struct World {
    pub openphone: OpenPhoneServer,
    pub notion: NotionServer,
    pub calls_ds: String,
    pub messages_ds: String,
    pub canvas_ds: String,
    pub platform: Platform,
    pub clock: Rc<ManualClock>,
    pub openphone_config: OpenPhoneConfig,
    pub notion_config: NotionConfig,
    pub sync_config: SyncConfig,
    _state: tempfile::TempDir,
}

impl World {
    pub async fn new() -> World {
        let openphone = OpenPhoneServer::start("op-test-key").unwrap();
        let notion = NotionServer::start("secret_test").unwrap();
        // Real-time budgets would only slow the tests: the servers' own limits are tested separately.
        openphone.set_rate_limit(None);
        notion.set_rate_limit(None);
        let (canvas_db, canvas_ds) = notion
            .create_database("Canvas", &Schema::from_types(schema::CANVAS, None))
            .unwrap();
        let (calls_db, calls_ds) = notion
            .create_database(
                "Calls",
                &Schema::from_types(schema::CALLS, Some(&canvas_ds)),
            )
            .unwrap();
        let (messages_db, messages_ds) = notion
            .create_database(
                "Messages",
                &Schema::from_types(schema::MESSAGES, Some(&canvas_ds)),
            )
            .unwrap();
        let state = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(chrono::Utc::now().timestamp_millis()));
        let platform = NativePlatformBuilder::new(state.path())
            .clock(clock.clone())
            .build()
            .unwrap();
        common::migrations::run(&platform, common::migrations::MIGRATIONS)
            .await
            .unwrap();
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
            openphone,
            notion,
            calls_ds,
            messages_ds,
            canvas_ds,
            platform,
            clock,
            _state: state,
        }
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
        let notion = Notion::new(&self.platform, &self.notion_config);
        let openphone = OpenPhone::new(&self.platform, &self.openphone_config);
        let mut writer = Writer::new(
            &self.platform,
            &notion,
            &openphone,
            &self.notion_config,
            &self.sync_config,
        );
        if let Some(storage) = storage {
            let media =
                MediaCopier::new(&self.platform, storage, &self.openphone_config.media_base)
                    .unwrap();
            writer = writer.with_media(media);
        }
        writer.apply_event(event_type, payload).await
    }

    /// Retries the due Canvas relinks, as the tick does.
    pub async fn retry_canvas_relinks(&self) -> common::pages::canvas_relink::RelinkReport {
        let notion = Notion::new(&self.platform, &self.notion_config);
        let openphone = OpenPhone::new(&self.platform, &self.openphone_config);
        let writer = Writer::new(
            &self.platform,
            &notion,
            &openphone,
            &self.notion_config,
            &self.sync_config,
        );
        common::pages::canvas_relink::retry_due_with(&self.platform, &writer)
            .await
            .unwrap()
    }

    /// Object storage configuration for `s3`.
    pub fn storage(s3: &test_servers::S3Server) -> StorageConfig {
        StorageConfig {
            endpoint: s3.endpoint().to_owned(),
            bucket: s3.bucket().to_owned(),
            access_key_id: Secret::new(s3.access_key()),
            secret_access_key: Secret::new(s3.secret_key()),
            public_base_url: None,
            retention_days: 0,
        }
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
            .unwrap()
    }

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

/// The plain text of a page property as the Notion server stores it.
pub fn text(page: &Value, property: &str) -> String {
    test_servers::notion::property_text(&page["properties"][property]).unwrap_or_default()
}
