//! Where copies are recorded: `media_objects` for a call's recording segments and voicemail,
//! `message_media` for a message's media (both a [`Ledger`]), and `retired_media`, where retention
//! remembers what it deleted.

use super::keys::Target;
use super::MediaCopier;
use crate::platform::{Row, Value};

/// A table that records copies, one row per file of an owner (a call or a message). The two tables
/// differ only in the columns that name a file, so every statement is made here from those.
pub(super) struct Ledger {
    /// The table.
    pub(super) table: &'static str,
    /// The owner's id column.
    owner: &'static str,
    /// The file's kind: a column, or the one kind the table holds.
    kind: Kinds,
    /// The column numbering the owner's files (of a kind) from 1.
    segment: &'static str,
}

/// Where a [`Ledger`] keeps the kind of a file.
enum Kinds {
    /// In this column.
    Column(&'static str),
    /// Nowhere: every row is of this kind.
    Only(&'static str),
}

/// A call's recording segments and voicemail.
pub(super) const CALL_MEDIA: Ledger = Ledger {
    table: "media_objects",
    owner: "call_id",
    kind: Kinds::Column("kind"),
    segment: "segment",
};

/// A message's media, by position in the payload.
pub(super) const MESSAGE_MEDIA: Ledger = Ledger {
    table: "message_media",
    owner: "message_id",
    kind: Kinds::Only("media"),
    segment: "position",
};

impl Ledger {
    /// The columns that name one file, in the order of [`Ledger::params`].
    fn naming(&self) -> Vec<&'static str> {
        match self.kind {
            Kinds::Column(kind) => vec![self.owner, kind, self.segment],
            Kinds::Only(_) => vec![self.owner, self.segment],
        }
    }

    /// The parameters that name the file `segment` of `owner`'s `kind`, for [`Ledger::matching`].
    pub(super) fn params(&self, owner: &str, kind: &str, segment: i64) -> Vec<Value> {
        match self.kind {
            Kinds::Column(_) => vec![owner.into(), kind.into(), segment.into()],
            Kinds::Only(_) => vec![owner.into(), segment.into()],
        }
    }

    /// `(owner, kind, segment)` of a `row` read with [`Ledger::columns`].
    pub(super) fn name<'r>(&self, row: &'r Row<'_>) -> anyhow::Result<(&'r str, &'r str, i64)> {
        let kind = match self.kind {
            Kinds::Column(column) => row.str(column)?,
            Kinds::Only(kind) => kind,
        };
        Ok((row.str(self.owner)?, kind, row.i64(self.segment)?))
    }

    /// The owner's id column.
    pub(super) fn owner(&self) -> &'static str {
        self.owner
    }

    /// The naming columns, comma-separated: for a `SELECT`, an `ORDER BY`, a conflict target.
    pub(super) fn columns(&self) -> String {
        self.naming().join(", ")
    }

    /// `WHERE` terms naming one file by the first parameters.
    fn matching(&self) -> String {
        let terms: Vec<String> = (1..)
            .zip(self.naming())
            .map(|(n, column)| format!("{column} = ?{n}"))
            .collect();
        terms.join(" AND ")
    }

    /// The number of the first parameter after those naming a file.
    fn next(&self) -> usize {
        self.naming().len() + 1
    }
}

/// A recorded copy (the columns that name its file aside).
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
    /// What is recorded for `target`, if anything.
    pub(super) fn find(&self, target: &Target<'_>) -> anyhow::Result<Option<MediaRow>> {
        let ledger = target.ledger();
        let rows = self.platform.sql.execute(
            &format!(
                "SELECT key, state, size, content_type, url, url_expires_at FROM {} WHERE {}",
                ledger.table,
                ledger.matching()
            ),
            &target.params(),
        )?;
        rows.first().map(|row| MediaRow::from_row(&row)).transpose()
    }

    /// The key of the copy of `target` that retention retired, if it did.
    pub(super) fn retired(&self, target: &Target<'_>) -> anyhow::Result<Option<String>> {
        let rows = self.platform.sql.execute(
            "SELECT key FROM retired_media WHERE owner_id = ?1 AND kind = ?2 AND segment = ?3",
            &[
                target.owner.into(),
                target.kind.as_str().into(),
                target.segment.into(),
            ],
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
        let ledger = target.ledger();
        let mut params = target.params();
        params.extend([
            row.key.as_str().into(),
            row.state.as_str().into(),
            Value::from(row.size),
            Value::from(row.content_type.as_deref()),
            Value::from(row.url.as_deref()),
            Value::from(row.url_expires_at),
            self.platform.clock.now_ms().into(),
        ]);
        let n = ledger.next();
        let values: Vec<String> = (1..=n + 6).map(|p| format!("?{p}")).collect();
        let rows = self.platform.sql.execute(
            &format!(
                "INSERT INTO {table} ({columns}, key, state, size, content_type, url, url_expires_at,
                                      created_at, updated_at)
                 SELECT {values}, ?{now}
                 WHERE NOT EXISTS (SELECT 1 FROM retired_media WHERE key = ?{n})
                 ON CONFLICT ({columns}) DO UPDATE SET
                     key = excluded.key, state = excluded.state, size = excluded.size,
                     content_type = excluded.content_type, url = excluded.url,
                     url_expires_at = excluded.url_expires_at, updated_at = excluded.updated_at
                 RETURNING {owner}",
                table = ledger.table,
                columns = ledger.columns(),
                values = values.join(", "),
                now = n + 6,
                owner = ledger.owner(),
            ),
            &params,
        )?;
        Ok(!rows.is_empty())
    }

    /// Records a new link for the file `segment` of `owner`'s `kind` in `ledger`.
    pub(super) fn set_link(
        &self,
        ledger: &Ledger,
        (owner, kind, segment): (&str, &str, i64),
        url: &str,
        expires_at: Option<i64>,
    ) -> anyhow::Result<()> {
        let mut params = ledger.params(owner, kind, segment);
        params.extend([
            url.into(),
            Value::from(expires_at),
            self.platform.clock.now_ms().into(),
        ]);
        let n = ledger.next();
        self.platform.sql.execute(
            &format!(
                "UPDATE {} SET url = ?{n}, url_expires_at = ?{}, updated_at = ?{} WHERE {}",
                ledger.table,
                n + 1,
                n + 2,
                ledger.matching()
            ),
            &params,
        )?;
        Ok(())
    }
}
