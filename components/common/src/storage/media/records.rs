//! `media_objects`, where every copy of a call's media is recorded, and `retired_media`, where retention
//! remembers what it deleted.

use super::keys::Target;
use super::MediaCopier;
use crate::platform::{Row, Value};

/// A `media_objects` row (its target aside).
pub(super) struct MediaRow {
    pub(super) key: String,
    pub(super) state: String,
    pub(super) size: Option<i64>,
    pub(super) content_type: Option<String>,
    pub(super) url: Option<String>,
    pub(super) url_expires_at: Option<i64>,
}

impl MediaRow {
    pub(super) fn from_row(row: &Row<'_>) -> anyhow::Result<Self> {
        Ok(Self {
            key: row.str("key")?.to_owned(),
            state: row.str("state")?.to_owned(),
            size: row.opt_i64("size")?,
            content_type: row.opt_str("content_type")?.map(str::to_owned),
            url: row.opt_str("url")?.map(str::to_owned),
            url_expires_at: row.opt_i64("url_expires_at")?,
        })
    }
}

impl MediaCopier<'_> {
    pub(super) fn find(&self, target: &Target<'_>) -> anyhow::Result<Option<MediaRow>> {
        let rows = self.platform.sql.execute(
            "SELECT key, state, size, content_type, url, url_expires_at FROM media_objects
             WHERE call_id = ?1 AND kind = ?2 AND segment = ?3",
            &target.params(),
        )?;
        rows.first().map(|row| MediaRow::from_row(&row)).transpose()
    }

    /// The key of the copy of `segment` of `owner`'s `kind` that retention retired, if it did.
    pub(in crate::storage) fn retired(
        &self,
        owner: &str,
        kind: &str,
        segment: u32,
    ) -> anyhow::Result<Option<String>> {
        let rows = self.platform.sql.execute(
            "SELECT key FROM retired_media WHERE owner_id = ?1 AND kind = ?2 AND segment = ?3",
            &[owner.into(), kind.into(), segment.into()],
        )?;
        rows.first()
            .map(|row| row.str("key").map(str::to_owned))
            .transpose()
    }

    /// Whether retention retired `key`.
    pub(super) fn key_retired(&self, key: &str) -> anyhow::Result<bool> {
        let rows = self.platform.sql.execute(
            "SELECT 1 AS retired FROM retired_media WHERE key = ?1",
            &[key.into()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Records `row` for `target`, unless retention retired its key meanwhile (then `false`: a copy
    /// recorded after the walk deleted it would link to nothing).
    pub(super) fn record(&self, target: &Target<'_>, row: &MediaRow) -> anyhow::Result<bool> {
        let mut params = target.params().to_vec();
        params.extend([
            row.key.as_str().into(),
            row.state.as_str().into(),
            Value::from(row.size),
            Value::from(row.content_type.as_deref()),
            Value::from(row.url.as_deref()),
            Value::from(row.url_expires_at),
            self.platform.clock.now_ms().into(),
        ]);
        let rows = self.platform.sql.execute(
            "INSERT INTO media_objects (call_id, kind, segment, key, state, size, content_type, url,
                                        url_expires_at, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10
             WHERE NOT EXISTS (SELECT 1 FROM retired_media WHERE key = ?4)
             ON CONFLICT (call_id, kind, segment) DO UPDATE SET
                 key = excluded.key, state = excluded.state, size = excluded.size,
                 content_type = excluded.content_type, url = excluded.url,
                 url_expires_at = excluded.url_expires_at, updated_at = excluded.updated_at
             RETURNING call_id",
            &params,
        )?;
        Ok(!rows.is_empty())
    }
}
