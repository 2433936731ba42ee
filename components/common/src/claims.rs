//! Claims: work that one claimant at a time may do, across every instance, recorded in a table of the
//! app's database. Jobs (`job_claims`), the periodic schedule (`schedules`), migrations
//! (`schema_migrations`) and page creates (`notion_pages`) all claim this way; each describes its table
//! with a [`Table`] and this module writes the statements.
//!
//! Every decision is one SQL statement, because a remote libSQL holds no transaction across calls:
//!
//! - **claim**: one upsert that inserts the row, or takes it over when nobody holds it (its claim was
//!   released or is stale: the claimant died) and the work is wanted (not done for good, or due again).
//!   Of any number of claimants racing, the statement returns a row to exactly one;
//! - **heartbeat**: moves a live claim's time on, so slow work is not mistaken for a dead claimant; it
//!   fails once the claim was taken over, telling the stalled claimant to stop;
//! - **release**: gives a claim back without a result (now, or after a short settle);
//! - **finish**: records the result and ends the claim.
//!
//! A table with a holder column only lets the holder heartbeat, release or finish. A table without one
//! (the page map) trusts whoever won: its claim only guards a create that Notion cannot deduplicate, and
//! the result keeps the first value recorded ([`Recorded::First`]).

use anyhow::Context;

use crate::platform::{Platform, Rows, Value};

/// A create claim younger than this may still be in progress elsewhere: wait rather than query (the page
/// map's and the Canvas record's creates).
pub const CLAIM_IN_PROGRESS_MS: i64 = 120_000;

/// A table that holds claims: one row per thing that can be claimed.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The table.
    pub name: &'static str,
    /// Its key columns, the conflict target of the claim.
    pub key: &'static [&'static str],
    /// The column naming who holds the claim, if the table has one.
    pub holder: Option<&'static str>,
    /// The column that dates the claim; NULL while nobody holds it.
    pub stamp: Stamp,
    /// When the thing is wanted again once done.
    pub done: Done,
    /// A column set to the claim's time when the claim makes the row, and never after; with it a claim
    /// tells whether it is the first ([`Won::fresh`]).
    pub created: Option<&'static str>,
}

/// What a table's claim time column holds.
#[derive(Debug, Clone, Copy)]
pub enum Stamp {
    /// When the claim was taken (or last heartbeat); stale once older than the claim's `stale_ms`.
    ClaimedAt(&'static str),
    /// When the claim expires: its time plus `stale_ms`.
    ExpiresAt(&'static str),
}

/// How a table knows the work is done.
#[derive(Debug, Clone, Copy)]
pub enum Done {
    /// Done for good once the column is set (a migration applied, a page created): never claimed again.
    Once(&'static str),
    /// Done again and again: the column holds the time of the last run, and the work is due again
    /// [`Attempt::interval_ms`] after it.
    Every(&'static str),
}

/// One claim of one row.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// The row's key values, in the order of [`Table::key`].
    pub key: &'a [Value],
    /// Who claims; `None` for a table without a holder column.
    pub holder: Option<&'a str>,
    /// How long a claim that is neither heartbeat nor ended keeps others out.
    pub stale_ms: i64,
    /// For [`Done::Every`]: how long after the last run the work is due again (unused for [`Done::Once`]).
    pub interval_ms: i64,
    /// Columns written only when the claim makes the row.
    pub insert: &'a [(&'static str, Value)],
    /// Columns written when the claim makes the row or takes it over.
    pub set: &'a [(&'static str, Value)],
}

/// A claim that was won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Won {
    /// Whether this claim made the row, so no earlier claimant can have done any of the work. Known only
    /// for a table with a [`Table::created`] column; `false` for the others.
    pub fresh: bool,
}

/// A value [`Table::finish`] records.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// Written as is.
    Value(Value),
    /// Written unless the column already holds a value, which is kept (the first page recorded stays).
    First(Value),
}

/// The row an update is for: its key, its holder when the table names holders, and whether only a row
/// whose work is not done for good is meant.
struct Target<'a> {
    key: &'a [Value],
    holder: Option<&'a str>,
    undone: bool,
}

impl<'a> Target<'a> {
    fn new(key: &'a [Value], holder: Option<&'a str>, undone: bool) -> Self {
        Self {
            key,
            holder,
            undone,
        }
    }
}

/// Numbered parameters of a statement being written.
#[derive(Default)]
struct Params(Vec<Value>);

impl Params {
    /// Adds `value` and returns its placeholder.
    fn add(&mut self, value: impl Into<Value>) -> String {
        self.0.push(value.into());
        format!("?{}", self.0.len())
    }
}

impl Stamp {
    fn column(self) -> &'static str {
        match self {
            Stamp::ClaimedAt(column) | Stamp::ExpiresAt(column) => column,
        }
    }

    /// What the column holds for a claim taken or renewed at `now`.
    fn at(self, now: i64, stale_ms: i64) -> i64 {
        match self {
            Stamp::ClaimedAt(_) => now,
            Stamp::ExpiresAt(_) => now + stale_ms,
        }
    }

    /// Below this value a claim is stale at `now`.
    fn stale_below(self, now: i64, stale_ms: i64) -> i64 {
        match self {
            Stamp::ClaimedAt(_) => now - stale_ms,
            Stamp::ExpiresAt(_) => now,
        }
    }
}

impl Table {
    /// Claims a row in one statement: inserts it, or takes it over when nobody holds a live claim on it
    /// and its work is wanted. `None` when another claimant holds it or the work is not wanted now.
    pub fn claim(&self, platform: &Platform, attempt: &Attempt<'_>) -> anyhow::Result<Option<Won>> {
        self.check_holder(attempt.holder)?;
        let now = platform.clock.now_ms();
        let stamp = self.stamp.column();
        let mut params = Params::default();
        let mut columns: Vec<&str> = Vec::new();
        let mut values: Vec<String> = Vec::new();
        for (column, value) in self.key.iter().zip(attempt.key) {
            columns.push(column);
            values.push(params.add(value.clone()));
        }
        let mut taken_over: Vec<&str> = vec![stamp];
        columns.push(stamp);
        values.push(params.add(self.stamp.at(now, attempt.stale_ms)));
        if let (Some(column), Some(holder)) = (self.holder, attempt.holder) {
            columns.push(column);
            values.push(params.add(holder));
            taken_over.push(column);
        }
        if let Some(column) = self.created {
            columns.push(column);
            values.push(params.add(now));
        }
        for (column, value) in attempt.insert {
            columns.push(column);
            values.push(params.add(value.clone()));
        }
        for (column, value) in attempt.set {
            columns.push(column);
            values.push(params.add(value.clone()));
            taken_over.push(column);
        }
        let table = self.name;
        let stale = params.add(self.stamp.stale_below(now, attempt.stale_ms));
        let wanted = match self.done {
            Done::Once(column) => format!("{table}.{column} IS NULL"),
            Done::Every(column) => {
                let due = params.add(now - attempt.interval_ms);
                format!("({table}.{column} IS NULL OR {table}.{column} <= {due})")
            }
        };
        let statement = format!(
            "INSERT INTO {table} ({columns}) VALUES ({values})
             ON CONFLICT ({key}) DO UPDATE SET {updates}
             WHERE ({table}.{stamp} IS NULL OR {table}.{stamp} < {stale}) AND {wanted}
             RETURNING {returning}",
            columns = columns.join(", "),
            values = values.join(", "),
            key = self.key.join(", "),
            updates = taken_over
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            returning = self.created.unwrap_or(stamp),
        );
        let rows = platform
            .sql
            .execute(&statement, &params.0)
            .with_context(|| format!("claiming a row of {table}"))?;
        // A row comes back only when this statement inserted the row or took it over.
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let fresh = match self.created {
            // A row made by this very statement has its creation time == now; an older row had a claim.
            Some(column) => row.i64(column)? == now,
            None => false,
        };
        Ok(Some(Won { fresh }))
    }

    /// The heartbeat: moves `holder`'s claim on the row to now. `false` when the claim is no longer
    /// `holder`'s (it went stale and was taken over) or the work is done for good.
    pub fn heartbeat(
        &self,
        platform: &Platform,
        key: &[Value],
        holder: &str,
        stale_ms: i64,
    ) -> anyhow::Result<bool> {
        let mut params = Params::default();
        let at = params.add(self.stamp.at(platform.clock.now_ms(), stale_ms));
        let set = format!("{} = {at}", self.stamp.column());
        let rows = self.update(
            platform,
            params,
            &set,
            None,
            Target::new(key, Some(holder), true),
        )?;
        Ok(!rows.is_empty())
    }

    /// Gives the claim on the row back without a result, so the next claimant need not wait for it to go
    /// stale. A row whose work is done for good is left alone.
    pub fn release(
        &self,
        platform: &Platform,
        key: &[Value],
        holder: Option<&str>,
    ) -> anyhow::Result<()> {
        let set = self.ended();
        self.update(
            platform,
            Params::default(),
            &set,
            None,
            Target::new(key, holder, true),
        )?;
        Ok(())
    }

    /// Ends the claim on the row without a result once `settle_ms` more have passed, rather than when it
    /// would have gone stale: the attempt is over, but what it did may take a moment to show.
    pub fn release_after(
        &self,
        platform: &Platform,
        key: &[Value],
        holder: Option<&str>,
        stale_ms: i64,
        settle_ms: i64,
    ) -> anyhow::Result<()> {
        let mut params = Params::default();
        let now = platform.clock.now_ms();
        let at = params.add(self.stamp.at(now, stale_ms) - stale_ms + settle_ms);
        let set = format!("{} = {at}", self.stamp.column());
        self.update(platform, params, &set, None, Target::new(key, holder, true))?;
        Ok(())
    }

    /// Records the result of the claimed work in `record` and ends the claim, in one statement. Returns
    /// the row's key and recorded columns as it now holds them; no row when the claim is no longer
    /// `holder`'s.
    pub fn finish(
        &self,
        platform: &Platform,
        key: &[Value],
        holder: Option<&str>,
        record: &[(&'static str, Recorded)],
    ) -> anyhow::Result<Rows> {
        let mut params = Params::default();
        let mut sets: Vec<String> = record
            .iter()
            .map(|(column, value)| match value {
                Recorded::Value(v) => format!("{column} = {}", params.add(v.clone())),
                Recorded::First(v) => {
                    format!("{column} = coalesce({column}, {})", params.add(v.clone()))
                }
            })
            .collect();
        sets.push(self.ended());
        let returned: Vec<&str> = record.iter().map(|(column, _)| *column).collect();
        let returned = (!returned.is_empty()).then(|| returned.join(", "));
        self.update(
            platform,
            params,
            &sets.join(", "),
            returned.as_deref(),
            Target::new(key, holder, false),
        )
    }

    /// Runs `UPDATE … SET {set}` on `row`, returning the columns `returning` names (else its key).
    fn update(
        &self,
        platform: &Platform,
        mut params: Params,
        set: &str,
        returning: Option<&str>,
        row: Target<'_>,
    ) -> anyhow::Result<Rows> {
        self.check_holder(row.holder)?;
        let filter = self.filter(&mut params, &row);
        let returning = returning.map_or_else(|| self.key.join(", "), str::to_owned);
        platform
            .sql
            .execute(
                &format!(
                    "UPDATE {} SET {set} WHERE {filter} RETURNING {returning}",
                    self.name
                ),
                &params.0,
            )
            .with_context(|| format!("updating a claim on {}", self.name))
    }

    /// The assignments that end a claim.
    fn ended(&self) -> String {
        let stamp = self.stamp.column();
        match self.holder {
            Some(holder) => format!("{stamp} = NULL, {holder} = NULL"),
            None => format!("{stamp} = NULL"),
        }
    }

    /// The conditions that select `row`.
    fn filter(&self, params: &mut Params, row: &Target<'_>) -> String {
        let mut conditions: Vec<String> = self
            .key
            .iter()
            .zip(row.key)
            .map(|(column, value)| format!("{column} = {}", params.add(value.clone())))
            .collect();
        if let (Some(column), Some(holder)) = (self.holder, row.holder) {
            conditions.push(format!("{column} = {}", params.add(holder)));
        }
        if let (Done::Once(column), true) = (self.done, row.undone) {
            conditions.push(format!("{column} IS NULL"));
        }
        conditions.join(" AND ")
    }

    /// A holder is given exactly when the table records one: a claim on a table with a holder column
    /// and no holder could be ended by anyone.
    fn check_holder(&self, holder: Option<&str>) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.holder.is_some() == holder.is_some(),
            "a claim on {} {} a holder",
            self.name,
            if self.holder.is_some() {
                "needs"
            } else {
                "has no column for"
            }
        );
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::Clock;
    use crate::testing::{migrated_platform, platform_in};

    const STALE: i64 = 60_000;

    /// A table of the tests' own, made on the migrated database.
    fn table(platform: &Platform, stamp: Stamp, done: Done) -> Table {
        platform
            .sql
            .execute(
                "CREATE TABLE IF NOT EXISTS test_claims (
                    name TEXT PRIMARY KEY, holder TEXT, claimed_at INTEGER, expires_at INTEGER,
                    result TEXT, last_run INTEGER, created INTEGER, note TEXT)",
                &[],
            )
            .unwrap();
        Table {
            name: "test_claims",
            key: &["name"],
            holder: Some("holder"),
            stamp,
            done,
            created: Some("created"),
        }
    }

    fn once(platform: &Platform) -> Table {
        table(
            platform,
            Stamp::ClaimedAt("claimed_at"),
            Done::Once("result"),
        )
    }

    fn attempt<'a>(key: &'a [Value], holder: &'a str) -> Attempt<'a> {
        Attempt {
            key,
            holder: Some(holder),
            stale_ms: STALE,
            interval_ms: 0,
            insert: &[],
            set: &[],
        }
    }

    fn key() -> [Value; 1] {
        ["thing".into()]
    }

    fn holder_of(platform: &Platform) -> Option<String> {
        platform
            .sql
            .execute("SELECT holder FROM test_claims WHERE name = 'thing'", &[])
            .unwrap()
            .first()
            .and_then(|row| row.opt_str("holder").unwrap().map(String::from))
    }

    #[tokio::test]
    async fn of_two_claimants_one_wins_and_the_first_claim_is_fresh() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let t = once(&platform);
        let key = key();
        assert_eq!(
            t.claim(&platform, &attempt(&key, "a")).unwrap(),
            Some(Won { fresh: true })
        );
        assert_eq!(t.claim(&platform, &attempt(&key, "b")).unwrap(), None);
        assert_eq!(holder_of(&platform).as_deref(), Some("a"));
    }

    #[test]
    fn of_many_claimants_at_once_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let clock = std::rc::Rc::new(crate::platform::native::ManualClock::at(crate::testing::T0));
        let platform = platform_in(dir.path(), clock);
        futures::executor::block_on(crate::migrations::ensure_checked(&platform)).unwrap();
        once(&platform);
        drop(platform);
        let winners = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let dir = dir.path().to_path_buf();
                    s.spawn(move || {
                        let clock = std::rc::Rc::new(crate::platform::native::ManualClock::at(
                            crate::testing::T0 + i,
                        ));
                        let platform = platform_in(&dir, clock);
                        let key = key();
                        let holder = format!("claimant-{i}");
                        once(&platform)
                            .claim(&platform, &attempt(&key, &holder))
                            .unwrap()
                            .is_some()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|won| *won)
                .count()
        });
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn a_stale_claim_is_taken_over_and_its_holder_can_no_longer_end_it() {
        let (_dir, platform, clock) = migrated_platform().await;
        let t = once(&platform);
        let key = key();
        t.claim(&platform, &attempt(&key, "crashed"))
            .unwrap()
            .unwrap();
        clock.advance_ms(STALE);
        assert_eq!(
            t.claim(&platform, &attempt(&key, "b")).unwrap(),
            None,
            "still live at its limit"
        );
        clock.advance_ms(1);
        assert_eq!(
            t.claim(&platform, &attempt(&key, "b")).unwrap(),
            Some(Won { fresh: false }),
            "taken over, and the crashed claimant may have done some of the work"
        );
        assert!(!t.heartbeat(&platform, &key, "crashed", STALE).unwrap());
        t.release(&platform, &key, Some("crashed")).unwrap();
        assert!(t
            .finish(
                &platform,
                &key,
                Some("crashed"),
                &[("result", Recorded::Value("x".into()))]
            )
            .unwrap()
            .is_empty());
        assert_eq!(holder_of(&platform).as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn an_expiry_stamp_goes_stale_at_the_same_moment() {
        let (_dir, platform, clock) = migrated_platform().await;
        let t = table(
            &platform,
            Stamp::ExpiresAt("expires_at"),
            Done::Once("result"),
        );
        let key = key();
        t.claim(&platform, &attempt(&key, "a")).unwrap().unwrap();
        clock.advance_ms(STALE);
        assert_eq!(t.claim(&platform, &attempt(&key, "b")).unwrap(), None);
        clock.advance_ms(1);
        assert!(t.claim(&platform, &attempt(&key, "b")).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_heartbeat_keeps_a_slow_claim() {
        let (_dir, platform, clock) = migrated_platform().await;
        for stamp in [
            Stamp::ClaimedAt("claimed_at"),
            Stamp::ExpiresAt("expires_at"),
        ] {
            let t = table(&platform, stamp, Done::Once("result"));
            let key: [Value; 1] = [format!("slow-{}", stamp.column()).into()];
            t.claim(&platform, &attempt(&key, "slow")).unwrap().unwrap();
            for _ in 0..5 {
                clock.advance_ms(STALE - 1);
                assert!(t.heartbeat(&platform, &key, "slow", STALE).unwrap());
                assert_eq!(
                    t.claim(&platform, &attempt(&key, "rival")).unwrap(),
                    None,
                    "{stamp:?}: taken over though its holder is alive"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_released_claim_is_free_at_once_and_a_settling_one_shortly() {
        let (_dir, platform, clock) = migrated_platform().await;
        let t = once(&platform);
        let key = key();
        t.claim(&platform, &attempt(&key, "a")).unwrap().unwrap();
        t.release(&platform, &key, Some("a")).unwrap();
        assert_eq!(holder_of(&platform), None);
        clock.advance_ms(1);
        assert_eq!(
            t.claim(&platform, &attempt(&key, "b")).unwrap(),
            Some(Won { fresh: false })
        );
        t.release_after(&platform, &key, Some("b"), STALE, 10_000)
            .unwrap();
        clock.advance_ms(10_000);
        assert_eq!(t.claim(&platform, &attempt(&key, "c")).unwrap(), None);
        clock.advance_ms(1);
        assert!(t.claim(&platform, &attempt(&key, "c")).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_finished_claim_records_its_result_and_is_never_claimed_again() {
        let (_dir, platform, clock) = migrated_platform().await;
        let t = once(&platform);
        let key = key();
        t.claim(&platform, &attempt(&key, "a")).unwrap().unwrap();
        let rows = t
            .finish(
                &platform,
                &key,
                Some("a"),
                &[("result", Recorded::Value("page-1".into()))],
            )
            .unwrap();
        assert_eq!(rows.first().unwrap().str("result").unwrap(), "page-1");
        assert_eq!(
            holder_of(&platform),
            None,
            "the claim ended with the result"
        );
        clock.advance_ms(100 * STALE);
        assert_eq!(t.claim(&platform, &attempt(&key, "b")).unwrap(), None);
    }

    #[tokio::test]
    async fn the_first_result_recorded_stays_when_the_table_keeps_it() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let t = Table {
            holder: None,
            ..once(&platform)
        };
        let key = key();
        let unowned = Attempt {
            holder: None,
            ..attempt(&key, "")
        };
        t.claim(&platform, &unowned).unwrap().unwrap();
        for (page, expected) in [("page-1", "page-1"), ("page-2", "page-1")] {
            let rows = t
                .finish(
                    &platform,
                    &key,
                    None,
                    &[("result", Recorded::First(page.into()))],
                )
                .unwrap();
            assert_eq!(rows.first().unwrap().str("result").unwrap(), expected);
        }
        assert!(
            t.claim(&platform, &attempt(&key, "b")).is_err(),
            "a holder given to a table without a holder column"
        );
    }

    #[tokio::test]
    async fn recurring_work_is_claimed_again_once_due_and_writes_its_columns() {
        let (_dir, platform, clock) = migrated_platform().await;
        let t = table(
            &platform,
            Stamp::ClaimedAt("claimed_at"),
            Done::Every("last_run"),
        );
        let key = key();
        let note = [("note", Value::from("made"))];
        let due_hourly = |holder| Attempt {
            interval_ms: 3_600_000,
            insert: &note,
            ..attempt(&key, holder)
        };
        t.claim(&platform, &due_hourly("a")).unwrap().unwrap();
        t.finish(
            &platform,
            &key,
            Some("a"),
            &[("last_run", Recorded::Value(clock.now_ms().into()))],
        )
        .unwrap();
        clock.advance_ms(3_600_000 - 1);
        assert_eq!(
            t.claim(&platform, &due_hourly("b")).unwrap(),
            None,
            "not due yet"
        );
        clock.advance_ms(1);
        assert_eq!(
            t.claim(&platform, &due_hourly("b")).unwrap(),
            Some(Won { fresh: false })
        );
        let row = platform
            .sql
            .execute("SELECT note, holder FROM test_claims", &[])
            .unwrap();
        let row = row.first().unwrap();
        assert_eq!(row.str("note").unwrap(), "made");
        assert_eq!(row.str("holder").unwrap(), "b");
    }
}
