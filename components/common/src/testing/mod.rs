//! The shared test kit of the native tests, unit and integration alike (the latter through the
//! `testing` feature): a migrated platform on a temporary directory, signed webhook requests, and the
//! [`World`] of servers, databases and app state that tests of the API-facing code share.

mod world;

pub use world::{s3_server, storage_config, text, World, WorldBuilder};

use std::path::Path;
use std::rc::Rc;

use crate::api::Request;
use crate::platform::native::{ManualClock, MapVariables, NativePlatformBuilder};
use crate::platform::{Clock, Platform};
use crate::webhook::signature;

/// A fixed "now": 2025-10-20T19:22:25.427Z.
pub const T0: i64 = 1_760_988_145_427;
/// The webhook signing key the fixtures configure…
pub const SIGNING_KEY: &[u8] = b"secret-key";
/// …as `openphone_webhook_secret` holds it (base64).
pub const SIGNING_SECRET: &str = "c2VjcmV0LWtleQ==";
/// The admin token the fixtures configure.
pub const ADMIN_TOKEN: &str = "admin-token";

/// A platform on `dir` with the fixture variables and `clock`; the schema must already be there.
pub fn platform_in(dir: &Path, clock: Rc<dyn Clock>) -> Platform {
    // The APIs point at a port nothing listens on: tests that reach them use their own servers.
    let vars = MapVariables::from_pairs([
        ("openphone_webhook_secret", SIGNING_SECRET),
        ("admin_token", ADMIN_TOKEN),
        ("openphone_api_key", "op-key"),
        ("openphone_api_base", "http://127.0.0.1:9"),
        ("notion_api_key", "notion-key"),
        ("notion_api_base", "http://127.0.0.1:9"),
        ("notion_calls_database_id", "calls"),
        ("notion_messages_database_id", "messages"),
        ("s3_endpoint", "http://127.0.0.1:9"),
        ("r2_bucket", "recordings"),
        ("r2_access_key_id", "key"),
        ("r2_secret_access_key", "secret"),
    ]);
    NativePlatformBuilder::new(dir)
        .vars(vars)
        .clock(clock)
        .build()
        .expect("a native platform on a temporary directory builds")
}

/// A migrated platform on a new temporary directory, with a manual clock at [`T0`].
pub async fn migrated_platform() -> (tempfile::TempDir, Platform, Rc<ManualClock>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = Rc::new(ManualClock::at(T0));
    let platform = platform_in(dir.path(), clock.clone());
    migrate(&platform).await;
    (dir, platform, clock)
}

/// Builds the platform `builder` describes (on a fresh state directory) and applies the migrations.
pub async fn migrated(builder: NativePlatformBuilder) -> Platform {
    let platform = builder
        .build()
        .expect("a native platform on a temporary directory builds");
    migrate(&platform).await;
    platform
}

async fn migrate(platform: &Platform) {
    crate::migrations::ensure_checked(platform)
        .await
        .expect("the migrations apply");
}

/// A database every statement of fails, as one locked by a long migration, gone away, or not defined.
pub struct UnavailableSql;

impl crate::platform::Sql for UnavailableSql {
    fn execute(
        &self,
        _statement: &str,
        _params: &[crate::platform::Value],
    ) -> anyhow::Result<crate::platform::Rows> {
        anyhow::bail!("database is locked")
    }
}

/// The state of event `id`; one still in the intake database or the inbox is in the state admitting it
/// gives it (pending or skipped).
pub fn state_of(platform: &Platform, id: &str) -> String {
    let delivered = platform
        .intake
        .execute(
            concat!(
                "SELECT state FROM ",
                crate::queue::received_events!("deliveries"),
                " WHERE id = ?1"
            ),
            &[id.into()],
        )
        .expect("the deliveries table answers");
    if let Some(row) = delivered.first() {
        return row.str("state").expect("state is text").to_owned();
    }
    platform
        .sql
        .execute(
            concat!(
                "SELECT state FROM events WHERE id = ?1
                 UNION ALL
                 SELECT state FROM ",
                crate::queue::received_events!("inbox"),
                " WHERE id = ?1"
            ),
            &[id.into()],
        )
        .expect("the events and inbox tables answer")
        .first()
        .unwrap_or_else(|| panic!("no event {id}"))
        .str("state")
        .expect("state is text")
        .to_owned()
}

/// How many events are stored, in the queue, the inbox or the intake database.
pub fn event_count(platform: &Platform) -> i64 {
    let delivered = platform
        .intake
        .execute("SELECT count(*) AS n FROM deliveries", &[])
        .expect("the deliveries table answers")
        .first()
        .expect("count returns a row")
        .i64("n")
        .expect("count is an integer");
    delivered
        + platform
            .sql
            .execute(
                "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM inbox) AS n",
                &[],
            )
            .expect("the events and inbox tables answer")
            .first()
            .expect("count returns a row")
            .i64("n")
            .expect("count is an integer")
}

/// `POST /webhooks/openphone` with `body`, signed (legacy scheme) at `signed_at_ms`.
pub fn signed_webhook(body: &str, signed_at_ms: i64) -> Request {
    signed_webhook_with(SIGNING_KEY, body, signed_at_ms)
}

/// [`signed_webhook`], signed with `key` rather than the configured secret's.
pub fn signed_webhook_with(key: &[u8], body: &str, signed_at_ms: i64) -> Request {
    let header = signature::legacy_header(key, signed_at_ms, body.as_bytes());
    Request {
        method: "POST".into(),
        path: "/webhooks/openphone".into(),
        headers: vec![("openphone-signature".into(), header)],
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A legacy webhook body of `event_type` about `resource_id` on number `phone_number_id`.
pub fn event_body(
    id: &str,
    event_type: &str,
    phone_number_id: &str,
    resource_id: &str,
    created_at: &str,
) -> String {
    serde_json::json!({
        "id": id,
        "object": "event",
        "apiVersion": "v3",
        "createdAt": created_at,
        "type": event_type,
        "data": { "object": {
            "id": resource_id,
            "object": "call",
            "phoneNumberId": phone_number_id,
            "from": "+15555550123",
            "to": "+13365550100",
            "createdAt": created_at,
        } }
    })
    .to_string()
}
