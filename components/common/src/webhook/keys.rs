//! Signing keys of the OpenPhone webhooks that deliver to this app, kept in `webhook_keys` of the intake
//! database by `POST /admin/setup` ([`mod@crate::admin::setup`]) so the intake accepts their signatures
//! besides `openphone_webhook_secret`'s, reading no other database. Keys an older build stored in the
//! app's database are copied over once ([`carry_over`]).
//!
//! [`sync_listed`] stores the keys of the webhooks OpenPhone lists for the app's URL, and drops a stored key
//! only when OpenPhone no longer lists its webhook at all (by id): deleting a webhook and running setup
//! again is how its key stops working. The key of a webhook that still exists but points elsewhere stays,
//! because a setup run with another `public_url` (a typo, a second host) must not make the deliveries of
//! the webhooks that still reach the app fail with `401`. Keys are secrets: they are read only to verify
//! signatures, and never returned or logged.

use serde::Serialize;

use crate::configuration::{decode_signing_key, Secret};
use crate::migrations::{self, INTAKE_VERSIONS};
use crate::platform::{Platform, Rows, Value};

/// A webhook that delivers to the app, with its signing key (base64, as OpenPhone gives it) when known.
pub struct WebhookKey<'a> {
    /// `WH…`.
    pub webhook_id: &'a str,
    /// Where it delivers.
    pub url: &'a str,
    /// What it delivers.
    pub events: &'a [String],
    /// Its signing key; `None` when OpenPhone's listing leaves it out (a stored key is then kept).
    pub key: Option<&'a Secret>,
}

/// What a [`sync`] changed, by webhook id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyChanges {
    /// Keys stored for the first time.
    pub added: Vec<String>,
    /// Keys (or their webhook's URL or events) that changed.
    pub updated: Vec<String>,
    /// Keys of webhooks OpenPhone no longer lists at all (deleted): no longer accepted.
    pub removed: Vec<String>,
}

impl KeyChanges {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

/// [`sync_listed`] when `current` is every webhook OpenPhone lists: the stored keys become exactly
/// `current`'s.
pub fn sync(platform: &Platform, current: &[WebhookKey<'_>]) -> anyhow::Result<KeyChanges> {
    let listed: Vec<&str> = current.iter().map(|w| w.webhook_id).collect();
    sync_listed(platform, current, &listed)
}

/// Stores the keys of `current`, the webhooks delivering to the app (one upsert each with a key, a no-op
/// when unchanged), then drops, in one delete, the keys of every webhook that is neither in `current` nor
/// in `listed` — the ids of every webhook OpenPhone lists, whatever its URL. A stored key of a webhook
/// that now points elsewhere is kept: only its deletion in OpenPhone retires it.
pub fn sync_listed(
    platform: &Platform,
    current: &[WebhookKey<'_>],
    listed: &[&str],
) -> anyhow::Result<KeyChanges> {
    let now = platform.clock.now_ms();
    let mut changes = KeyChanges::default();
    for webhook in current {
        let Some(key) = webhook.key else {
            continue;
        };
        let rows = platform.intake.execute(
            "INSERT INTO webhook_keys (webhook_id, url, events, signing_key, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (webhook_id) DO UPDATE SET url = excluded.url, events = excluded.events,
                 signing_key = excluded.signing_key, updated_at = excluded.updated_at
             WHERE webhook_keys.url <> excluded.url OR webhook_keys.events <> excluded.events
                OR webhook_keys.signing_key <> excluded.signing_key
             RETURNING created_at",
            &[
                webhook.webhook_id.into(),
                webhook.url.into(),
                webhook.events.join(",").into(),
                key.expose().into(),
                now.into(),
            ],
        )?;
        if let Some(row) = rows.first() {
            let list = if row.i64("created_at")? == now {
                &mut changes.added
            } else {
                &mut changes.updated
            };
            list.push(webhook.webhook_id.to_owned());
        }
    }
    let mut ids: Vec<&str> = current.iter().map(|w| w.webhook_id).collect();
    ids.extend_from_slice(listed);
    let ids = [Value::Text(serde_json::to_string(&ids)?)];
    // Until the webhook carries them over ([`carry_over`]), keys an older build stored are in the app's
    // database: a key dropped here is dropped there too, so it is never carried back. (When both
    // labels name one file, the second delete finds nothing left.)
    for database in [&platform.intake, &platform.sql] {
        let removed = database.execute(
            "DELETE FROM webhook_keys WHERE webhook_id NOT IN (SELECT value FROM json_each(?1))
             RETURNING webhook_id",
            &ids,
        )?;
        for row in removed.iter() {
            let id = row.str("webhook_id")?;
            if !changes.removed.iter().any(|r| r == id) {
                changes.removed.push(id.to_owned());
            }
        }
    }
    Ok(changes)
}

/// The keys [`signing_keys`] read.
pub struct StoredKeys {
    /// Each stored key, decoded (a key that does not decode is left out).
    pub keys: Vec<Vec<u8>>,
    /// Why keys an older build stored in the app's database may be missing: their carry-over failed
    /// (the app's database unavailable), so a delivery none of `keys` verifies may be theirs.
    pub not_carried_over: Option<anyhow::Error>,
}

/// The stored keys, read in one statement with the intake database's applied versions: that read is
/// also the intake's schema check, so a delivery costs the intake database this statement and its
/// insert. When a version is missing, or the read fails (a table not made yet), the intake's migrations
/// run and the read is repeated. The keys an older build stored in the app's database are carried over
/// on the first read ([`carry_over`]); while that fails, the intake's own keys are returned with why.
pub async fn signing_keys(platform: &Platform) -> anyhow::Result<StoredKeys> {
    // Rows with a version are the applied versions; a row of NULLs says the carry-over has not happened.
    let statement = format!(
        "SELECT version, NULL AS webhook_id, NULL AS signing_key FROM {INTAKE_VERSIONS}
         WHERE applied_at IS NOT NULL
         UNION ALL SELECT NULL, webhook_id, signing_key FROM webhook_keys
         UNION ALL SELECT NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM webhook_keys_carried_over)"
    );
    let read = || platform.intake.execute(&statement, &[]);
    let mut rows = match read() {
        Ok(rows) if migrations::intake_is_current(&rows) => rows,
        _ => {
            migrations::run_intake(platform).await?;
            read()?
        }
    };
    let waits_for_carry_over = |rows: &Rows| {
        rows.iter().any(|row| {
            row.opt_i64("version").ok().flatten().is_none()
                && row.opt_str("webhook_id").ok().flatten().is_none()
        })
    };
    let mut not_carried = None;
    if waits_for_carry_over(&rows) {
        match carry_over(platform) {
            Ok(()) => rows = read()?,
            Err(e) => not_carried = Some(e.context("carrying the older build's webhook keys over")),
        }
    }
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows.iter() {
        let Some(webhook_id) = row.opt_str("webhook_id")? else {
            continue;
        };
        match decode_signing_key(row.str("signing_key")?) {
            Some(key) => keys.push(key),
            None => tracing::warn!(
                webhook_id,
                "a stored webhook signing key is not base64; run POST /admin/setup again"
            ),
        }
    }
    Ok(StoredKeys {
        keys,
        not_carried_over: not_carried,
    })
}

/// Copies the keys an older build stored in the app's database into the intake database, once (the first
/// delivery does it): each copy is refused once the mark that it happened is there, and [`sync_listed`]
/// drops a removed key from both databases, so a key setup removed is never copied back. Both databases
/// may be one file (the copy then finds its rows there).
pub fn carry_over(platform: &Platform) -> anyhow::Result<()> {
    let carried = platform
        .intake
        .execute("SELECT 1 AS carried FROM webhook_keys_carried_over", &[])?;
    if !carried.is_empty() {
        return Ok(());
    }
    let stored = match platform.sql.execute(
        "SELECT webhook_id, url, events, signing_key, created_at, updated_at FROM webhook_keys",
        &[],
    ) {
        Ok(rows) => rows.rows,
        // An app database no route has migrated yet has no table, so no key.
        Err(e) if format!("{e:#}").contains("no such table: webhook_keys") => Vec::new(),
        Err(e) => return Err(e.context("reading the keys stored in the app's database")),
    };
    for key in &stored {
        platform.intake.execute(
            "INSERT INTO webhook_keys (webhook_id, url, events, signing_key, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6
             WHERE NOT EXISTS (SELECT 1 FROM webhook_keys_carried_over)
             ON CONFLICT (webhook_id) DO NOTHING",
            key,
        )?;
    }
    platform.intake.execute(
        "INSERT INTO webhook_keys_carried_over (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
        &[],
    )?;
    tracing::info!(
        keys = stored.len(),
        "webhook keys carried over to the intake database"
    );
    Ok(())
}

/// The webhooks whose keys are stored.
pub fn stored_webhook_ids(platform: &Platform) -> anyhow::Result<Vec<String>> {
    let rows = platform.intake.execute(
        "SELECT webhook_id FROM webhook_keys ORDER BY webhook_id",
        &[],
    )?;
    rows.iter()
        .map(|row| Ok(row.str("webhook_id")?.to_owned()))
        .collect()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::migrated_platform;

    #[tokio::test]
    async fn keys_an_older_build_stored_in_the_app_database_are_carried_over_once() {
        let (_dir, platform, _clock) = migrated_platform().await;
        platform
            .sql
            .execute(
                "INSERT INTO webhook_keys (webhook_id, url, events, signing_key, created_at, updated_at)
                 VALUES ('WH1', 'https://sync.example.com/webhooks/openphone', 'call.completed',
                         'YQ==', 1, 1)",
                &[],
            )
            .unwrap();
        assert_eq!(
            signing_keys(&platform).await.unwrap().keys,
            vec![b"a".to_vec()]
        );
        assert_eq!(stored_webhook_ids(&platform).unwrap(), vec!["WH1"]);
        // Setup then finds the webhook deleted in OpenPhone: its key is gone for good.
        let removed = sync(&platform, &[]).unwrap();
        assert_eq!(removed.removed, vec!["WH1"]);
        assert!(signing_keys(&platform).await.unwrap().keys.is_empty());
        carry_over(&platform).unwrap();
        assert!(signing_keys(&platform).await.unwrap().keys.is_empty());
        // From then on the app's database is not read at all.
        let without_the_app_database = Platform {
            sql: std::rc::Rc::new(crate::testing::UnavailableSql),
            ..platform
        };
        let read = signing_keys(&without_the_app_database).await.unwrap();
        assert!(read.keys.is_empty());
        assert!(read.not_carried_over.is_none());
    }

    #[tokio::test]
    async fn setup_before_the_carry_over_drops_old_keys_from_both_databases() {
        let (_dir, platform, _clock) = migrated_platform().await;
        for (id, key) in [("WH1", "YQ=="), ("WH2", "Yg==")] {
            platform
                .sql
                .execute(
                    "INSERT INTO webhook_keys (webhook_id, url, events, signing_key, created_at,
                                               updated_at)
                     VALUES (?1, 'https://sync.example.com/webhooks/openphone', 'call.completed',
                             ?2, 1, 1)",
                    &[id.into(), key.into()],
                )
                .unwrap();
        }
        // WH1 was deleted in OpenPhone; WH2 is listed without its key.
        let events = vec!["call.completed".to_owned()];
        let keyless = WebhookKey {
            webhook_id: "WH2",
            url: "https://sync.example.com/webhooks/openphone",
            events: &events,
            key: None,
        };
        let changes = sync(&platform, &[keyless]).unwrap();
        assert_eq!(changes.removed, vec!["WH1"]);
        assert_eq!(
            signing_keys(&platform).await.unwrap().keys,
            vec![b"b".to_vec()]
        );
    }

    #[tokio::test]
    async fn an_app_database_not_migrated_yet_has_no_key_to_carry_over() {
        let dir = tempfile::tempdir().unwrap();
        let platform = crate::platform::native::NativePlatformBuilder::new(dir.path())
            .build()
            .unwrap();
        crate::migrations::ensure_intake(&platform).await.unwrap();
        let broken = Platform {
            sql: std::rc::Rc::new(crate::testing::UnavailableSql),
            ..platform.clone()
        };
        assert!(
            signing_keys(&broken)
                .await
                .unwrap()
                .not_carried_over
                .is_some(),
            "an app database that fails is reported until the carry-over"
        );
        assert!(signing_keys(&platform).await.unwrap().keys.is_empty());
        let after = signing_keys(&broken).await.unwrap();
        assert!(after.keys.is_empty());
        assert!(after.not_carried_over.is_none());
    }

    fn key<'a>(id: &'a str, url: &'a str, events: &'a [String], key: &'a Secret) -> WebhookKey<'a> {
        WebhookKey {
            webhook_id: id,
            url,
            events,
            key: Some(key),
        }
    }

    #[tokio::test]
    async fn sync_adds_updates_keeps_and_removes_keys() {
        let (_dir, platform, clock) = migrated_platform().await;
        let events = vec!["call.completed".to_owned()];
        let (a, b, c) = (
            Secret::new("YQ=="),
            Secret::new("Yg=="),
            Secret::new("Yw=="),
        );
        let url = "https://sync.example.com/webhooks/openphone";

        let first = sync(
            &platform,
            &[key("WH1", url, &events, &a), key("WH2", url, &events, &b)],
        )
        .unwrap();
        assert_eq!(
            first,
            KeyChanges {
                added: vec!["WH1".into(), "WH2".into()],
                ..Default::default()
            }
        );
        assert_eq!(
            signing_keys(&platform).await.unwrap().keys,
            vec![b"a".to_vec(), b"b".to_vec()]
        );

        clock.advance_ms(1_000);
        let again = sync(
            &platform,
            &[key("WH1", url, &events, &a), key("WH2", url, &events, &b)],
        )
        .unwrap();
        assert!(again.is_empty(), "{again:?}");

        clock.advance_ms(1_000);
        let changed = sync(&platform, &[key("WH2", url, &events, &c)]).unwrap();
        assert_eq!(
            changed,
            KeyChanges {
                updated: vec!["WH2".into()],
                removed: vec!["WH1".into()],
                ..Default::default()
            }
        );
        assert_eq!(
            signing_keys(&platform).await.unwrap().keys,
            vec![b"c".to_vec()]
        );
        assert_eq!(stored_webhook_ids(&platform).unwrap(), vec!["WH2"]);

        // A listing without the key keeps the stored one.
        let keyless = WebhookKey {
            webhook_id: "WH2",
            url,
            events: &events,
            key: None,
        };
        assert!(sync(&platform, &[keyless]).unwrap().is_empty());
        assert_eq!(
            signing_keys(&platform).await.unwrap().keys,
            vec![b"c".to_vec()]
        );

        let emptied = sync(&platform, &[]).unwrap();
        assert_eq!(emptied.removed, vec!["WH2"]);
        assert!(signing_keys(&platform).await.unwrap().keys.is_empty());
    }

    #[tokio::test]
    async fn a_key_stays_while_its_webhook_is_listed_whatever_its_url() {
        let (_dir, platform, clock) = migrated_platform().await;
        let events = vec!["call.completed".to_owned()];
        let (a, b) = (Secret::new("YQ=="), Secret::new("Yg=="));
        let (old_url, new_url) = (
            "https://sync.example.com/webhooks/openphone",
            "https://typo.example.com/webhooks/openphone",
        );
        sync_listed(&platform, &[key("WH1", old_url, &events, &a)], &["WH1"]).unwrap();

        // Setup with another URL: WH2 delivers there now, WH1 is still listed (pointing at the old one).
        clock.advance_ms(1_000);
        let moved = sync_listed(
            &platform,
            &[key("WH2", new_url, &events, &b)],
            &["WH1", "WH2"],
        )
        .unwrap();
        assert_eq!(
            moved,
            KeyChanges {
                added: vec!["WH2".into()],
                ..Default::default()
            }
        );
        assert_eq!(
            signing_keys(&platform).await.unwrap().keys,
            vec![b"a".to_vec(), b"b".to_vec()]
        );

        // WH1 deleted in OpenPhone: only now is its key dropped.
        clock.advance_ms(1_000);
        let deleted =
            sync_listed(&platform, &[key("WH2", new_url, &events, &b)], &["WH2"]).unwrap();
        assert_eq!(deleted.removed, vec!["WH1"]);
        assert_eq!(stored_webhook_ids(&platform).unwrap(), vec!["WH2"]);
    }
}
