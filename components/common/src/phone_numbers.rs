//! The workspace's OpenPhone numbers, kept in SQLite (`phone_numbers`): refreshed from
//! `GET /v1/phone-numbers` by the periodic sync, or on demand when an event names a number we do not know.
//! They give `PN…` ids their E.164 number, transcripts their speakers' names, and the backfill the users
//! whose calls it lists (`GET /v1/calls` lists one user's calls at a time; see [`crate::sync::number`]).

use crate::openphone::types::{PhoneNumber, PhoneNumberUser};
use crate::openphone::OpenPhone;
use crate::outbound::ApiError;
use crate::platform::{Platform, Value};

/// A workspace number as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownNumber {
    /// `PN…`.
    pub id: String,
    /// E.164.
    pub number: String,
    /// Users sharing it, as OpenPhone last listed them (empty when never listed).
    pub users: Vec<PhoneNumberUser>,
}

/// Stores `numbers` (insert or update; cursors are kept).
pub fn store(platform: &Platform, numbers: &[PhoneNumber]) -> anyhow::Result<()> {
    let now = platform.clock.now_ms();
    for n in numbers {
        let users = serde_json::to_string(&n.users)?;
        platform.sql.execute(
            "INSERT INTO phone_numbers (id, number, name, users, first_seen_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET number = excluded.number, name = excluded.name,
                 users = excluded.users, is_active = 1, updated_at = excluded.updated_at",
            &[
                n.id.as_str().into(),
                n.number.clone().unwrap_or_default().into(),
                Value::from(n.name.clone()),
                users.into(),
                now.into(),
            ],
        )?;
    }
    Ok(())
}

/// The stored number with id `id`.
pub fn find(platform: &Platform, id: &str) -> anyhow::Result<Option<KnownNumber>> {
    let rows = platform.sql.execute(
        "SELECT id, number, users FROM phone_numbers WHERE id = ?1",
        &[id.into()],
    )?;
    rows.first()
        .map(|r| {
            Ok(KnownNumber {
                id: r.str("id")?.to_owned(),
                number: r.str("number")?.to_owned(),
                users: r
                    .opt_str("users")?
                    .and_then(|u| serde_json::from_str(u).ok())
                    .unwrap_or_default(),
            })
        })
        .transpose()
}

/// The number with id `id`, fetching the workspace's list once if it is not stored yet.
pub async fn resolve(
    platform: &Platform,
    openphone: &OpenPhone<'_>,
    id: &str,
) -> Result<Option<KnownNumber>, ResolveError> {
    if let Some(known) = find(platform, id)? {
        return Ok(Some(known));
    }
    let numbers = openphone.phone_numbers().await?;
    store(platform, &numbers)?;
    Ok(find(platform, id)?)
}

/// Why a number could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The app's database failed.
    #[error("database: {0:#}")]
    Database(#[from] anyhow::Error),
}

/// One workspace number's sync, as `/stats` reports it.
#[derive(Debug, serde::Serialize, PartialEq)]
pub struct NumberSync {
    /// `PN…`.
    pub id: String,
    /// E.164.
    pub number: String,
    /// Everything created before this (ISO-8601) is synced.
    pub cursor: Option<String>,
    /// When its last sync finished.
    pub last_sync_finished_at: Option<String>,
    /// Its last sync error.
    pub last_sync_error: Option<String>,
}

/// Each active number's cursor and last sync, ordered by number.
pub fn sync_states(platform: &Platform) -> anyhow::Result<Vec<NumberSync>> {
    platform
        .sql
        .execute(
            "SELECT id, number, cursor_at, last_sync_finished_at, last_sync_error FROM phone_numbers
             WHERE is_active = 1 ORDER BY number",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(NumberSync {
                id: r.str("id")?.to_owned(),
                number: r.str("number")?.to_owned(),
                cursor: crate::metrics::iso_seconds(r.opt_i64("cursor_at")?),
                last_sync_finished_at: crate::metrics::iso_seconds(
                    r.opt_i64("last_sync_finished_at")?,
                ),
                last_sync_error: r.opt_str("last_sync_error")?.map(String::from),
            })
        })
        .collect()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::NativePlatformBuilder;

    #[tokio::test]
    async fn stored_numbers_are_found_with_their_users() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        crate::migrations::ensure_checked(&platform).await.unwrap();
        let number = PhoneNumber {
            id: "PN1".into(),
            number: Some("+13365550100".into()),
            name: Some("Sales".into()),
            users: vec![PhoneNumberUser {
                id: "US1".into(),
                first_name: Some("Jacob".into()),
                ..Default::default()
            }],
        };
        store(&platform, std::slice::from_ref(&number)).unwrap();
        store(&platform, &[number]).unwrap();
        let found = find(&platform, "PN1").unwrap().unwrap();
        assert_eq!(found.number, "+13365550100");
        assert_eq!(found.users[0].display_name(), "Jacob");
        assert_eq!(find(&platform, "PN2").unwrap(), None);
    }
}
