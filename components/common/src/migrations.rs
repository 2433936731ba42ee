//! Applies `migrations/*.sql` to the app's database and `migrations/intake/*.sql` to the intake database
//! (the deliveries the webhook stores, [`crate::queue::deliveries`]). Spin runs no migrations for us, and a
//! database may be a remote libSQL that holds no transaction across calls, so:
//!
//! - each file is split into statements, run one `execute` at a time, each idempotent (`IF NOT EXISTS`);
//! - a table records every version (`schema_migrations`, and `intake_migrations` in the intake
//!   database); an instance *claims* a version with one upsert
//!   ([`crate::claims`]) before applying it, so two instances starting at once do not both apply it, and a claim left by a crashed
//!   instance goes stale and is taken over;
//! - the instance applying a version renews its claim (a heartbeat) before every statement, so a slow
//!   migration is not mistaken for a crashed one, and it stops if its claim was taken over regardless;
//! - an instance that lost the claim waits for the winner to finish;
//! - [`ensure`] runs on every request (on Spin an instance lives for one request, so nothing can be
//!   remembered between them): on a migrated database it costs one read that takes no lock;
//!   [`ensure_checked`], run by the minute tick, also compares every applied file's checksum;
//! - a `PRAGMA journal_mode=…` statement is best-effort (`set_journal_mode`): the journal mode belongs
//!   to a local SQLite file, and a database that has none to set or refuses it must still be usable.

use anyhow::{bail, Context};

use crate::claims::{Attempt, Done, Recorded, Stamp, Table};
use crate::platform::{Platform, Rows, Sql};

/// A migration embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, from the file name's number.
    pub version: i64,
    /// File name.
    pub name: &'static str,
    /// The file's statements, without its comments (`build.rs`), split again by [`statements`].
    pub sql: &'static str,
    /// What `schema_migrations` records and checks: the first 8 bytes of the SHA-256 of the file as
    /// written, comments included (`build.rs`), as every database migrated so far recorded it.
    pub checksum: &'static str,
}

mod statements;
#[cfg(test)]
use statements::compact;
pub use statements::statements;

/// A migration of `migrations/` (or of its `folder`) by its version and file name, as `build.rs` wrote it
/// into `OUT_DIR`.
macro_rules! migration {
    ($version:literal, $name:literal) => {
        migration!($version, "", $name)
    };
    ($version:literal, $folder:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(env!("OUT_DIR"), "/migrations/", $folder, $name)),
            checksum: include_str!(concat!(
                env!("OUT_DIR"),
                "/migrations/",
                $folder,
                $name,
                ".checksum"
            )),
        }
    };
}

/// Every migration of the app, in order.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_initial.sql"),
    migration!(2, "0002_setup.sql"),
    migration!(3, "0003_real_workspaces.sql"),
    migration!(4, "0004_unsettled_messages.sql"),
    migration!(5, "0005_linked_history.sql"),
    migration!(6, "0006_message_media.sql"),
    migration!(7, "0007_minute_metrics.sql"),
    migration!(8, "0008_outages.sql"),
    migration!(9, "0009_contact_emails.sql"),
    migration!(10, "0010_retired_media.sql"),
    migration!(11, "0011_write_ahead_log.sql"),
    migration!(12, "0012_inbox.sql"),
    migration!(13, "0013_drain_kick_window.sql"),
    migration!(14, "0014_events_join_their_number_by_resource.sql"),
];

/// Every migration of the intake database, in order.
pub const INTAKE_MIGRATIONS: &[Migration] = &[
    migration!(1, "intake/", "0001_deliveries.sql"),
    migration!(2, "intake/", "0002_webhook_keys.sql"),
];

/// The table that records the app database's versions.
const APP_VERSIONS: &str = "schema_migrations";
/// The table that records the intake database's versions; named apart from the app's, so the `intake`
/// label may point at the app's database file.
pub const INTAKE_VERSIONS: &str = "intake_migrations";

/// A claim not renewed for this long belongs to an instance that died mid-migration. The holder renews
/// it before each statement, so only a single statement running longer than this is taken over.
const STALE_CLAIM_MS: i64 = 60_000;
/// How long a losing instance waits for the winner before giving up.
const WAIT_FOR_OTHER_MS: i64 = 120_000;
const POLL_MS: u64 = 50;

/// A versions table (`schema_migrations`, `intake_migrations`) as a claims table: a version is claimed
/// until it is applied, once.
const fn versions(name: &'static str) -> Table {
    Table {
        name,
        key: &["version"],
        holder: Some("claimed_by"),
        stamp: Stamp::ClaimedAt("claimed_at"),
        done: Done::Once("applied_at"),
        created: None,
    }
}

/// What a run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Versions this call applied.
    pub applied: Vec<i64>,
    /// Versions found already applied (by an earlier start or another instance).
    pub already_applied: Vec<i64>,
}

/// Makes sure both databases' schemas are current, for a request: when every version is recorded as
/// applied this costs one read of each (no write, no lock); otherwise it applies what is missing
/// ([`run`], [`run_intake`]).
pub async fn ensure(platform: &Platform) -> anyhow::Result<()> {
    ensure_intake(platform).await?;
    if is_current(&*platform.sql, APP_VERSIONS, MIGRATIONS) {
        return Ok(());
    }
    run(platform, MIGRATIONS).await.map(drop)
}

/// Makes sure the intake database's schema is current: all the webhook's intake needs. One read of the
/// intake database when it is.
pub async fn ensure_intake(platform: &Platform) -> anyhow::Result<()> {
    if is_current(&*platform.intake, INTAKE_VERSIONS, INTAKE_MIGRATIONS) {
        return Ok(());
    }
    run_intake(platform).await.map(drop)
}

/// [`run`] and [`run_intake`], for the minute tick: applies what is missing and refuses a migration
/// edited after it was applied (checksums), which the per-request [`ensure`] does not compute.
pub async fn ensure_checked(platform: &Platform) -> anyhow::Result<()> {
    run_intake(platform).await?;
    run(platform, MIGRATIONS).await.map(drop)
}

/// Whether `table` records every version of `migrations` as applied (versions of a newer build besides
/// them are fine). Any failure, such as a database without the table, counts as not current, so the run
/// gets to say what is wrong.
fn is_current(sql: &dyn Sql, table: &str, migrations: &[Migration]) -> bool {
    let Ok(rows) = sql.execute(
        &format!("SELECT version FROM {table} WHERE applied_at IS NOT NULL"),
        &[],
    ) else {
        return false;
    };
    records_all(&rows, migrations)
}

/// Whether `rows` hold, in their `version` column, every intake migration as [`INTAKE_VERSIONS`]
/// records it applied (`applied_at` set): [`ensure_intake`]'s check, for a caller that reads the
/// versions with other rows (whose `version` is `NULL`).
pub fn intake_is_current(rows: &Rows) -> bool {
    records_all(rows, INTAKE_MIGRATIONS)
}

/// Whether the `version` column of `rows` holds every version of `migrations`.
fn records_all(rows: &Rows, migrations: &[Migration]) -> bool {
    let applied: Vec<i64> = rows
        .iter()
        .filter_map(|row| row.opt_i64("version").ok().flatten())
        .collect();
    migrations.iter().all(|m| applied.contains(&m.version))
}

/// Applies every migration of [`INTAKE_MIGRATIONS`] that the intake database lacks.
pub async fn run_intake(platform: &Platform) -> anyhow::Result<Report> {
    let intake = Platform {
        sql: platform.intake.clone(),
        ..platform.clone()
    };
    run_on(&intake, INTAKE_VERSIONS, INTAKE_MIGRATIONS)
        .await
        .context("migrating the intake database")
}

/// Applies every migration of `migrations` that the app's database lacks.
pub async fn run(platform: &Platform, migrations: &[Migration]) -> anyhow::Result<Report> {
    run_on(platform, APP_VERSIONS, migrations).await
}

/// Applies every migration of `migrations` that `platform.sql` lacks, recording them in `table`.
async fn run_on(
    platform: &Platform,
    table: &'static str,
    migrations: &[Migration],
) -> anyhow::Result<Report> {
    let sql = &*platform.sql;
    sql.execute(
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                checksum   TEXT NOT NULL,
                claimed_by TEXT,
                claimed_at INTEGER,
                applied_at INTEGER)"
        ),
        &[],
    )
    .with_context(|| format!("creating {table}"))?;
    let versions = versions(table);

    let instance = instance_id(platform);
    let mut report = Report::default();
    for migration in migrations {
        let checksum = migration.checksum;
        let waited_since = platform.clock.now_ms();
        loop {
            match state_of(platform, table, migration.version)? {
                Some(State::Applied { checksum: stored }) => {
                    if stored != checksum {
                        bail!(
                            "migration {} was changed after it was applied (checksum {stored} in the database, \
                             {checksum} in this build); add a new migration instead",
                            migration.name
                        );
                    }
                    report.already_applied.push(migration.version);
                    break;
                }
                Some(State::ClaimedBy { at }) if platform.clock.now_ms() - at < STALE_CLAIM_MS => {
                    if platform.clock.now_ms() - waited_since > WAIT_FOR_OTHER_MS {
                        bail!(
                            "migration {} is being applied by another instance and did not finish in time",
                            migration.name
                        );
                    }
                    platform.clock.sleep_ms(POLL_MS).await;
                }
                _ => {
                    if claim(&versions, platform, migration, checksum, &instance)? {
                        apply(&versions, platform, migration, &instance)?;
                        let done = versions.finish(
                            platform,
                            &[migration.version.into()],
                            Some(&instance),
                            &[(
                                "applied_at",
                                Recorded::Value(platform.clock.now_ms().into()),
                            )],
                        )?;
                        if done.is_empty() {
                            bail!(
                                "migration {} was taken over by another instance while it was applied",
                                migration.name
                            );
                        }
                        tracing::info!(
                            version = migration.version,
                            name = migration.name,
                            "migration applied"
                        );
                        report.applied.push(migration.version);
                        break;
                    }
                }
            }
        }
    }
    Ok(report)
}

enum State {
    Applied { checksum: String },
    ClaimedBy { at: i64 },
}

fn state_of(platform: &Platform, table: &str, version: i64) -> anyhow::Result<Option<State>> {
    let rows = platform.sql.execute(
        &format!("SELECT checksum, claimed_at, applied_at FROM {table} WHERE version = ?1"),
        &[version.into()],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    if row.opt_i64("applied_at")?.is_some() {
        return Ok(Some(State::Applied {
            checksum: row.str("checksum")?.to_owned(),
        }));
    }
    Ok(Some(State::ClaimedBy {
        at: row.opt_i64("claimed_at")?.unwrap_or(0),
    }))
}

/// One upsert that succeeds for exactly one instance: the version is new, or its claim is stale.
fn claim(
    versions: &Table,
    platform: &Platform,
    migration: &Migration,
    checksum: &str,
    instance: &str,
) -> anyhow::Result<bool> {
    let won = versions.claim(
        platform,
        &Attempt {
            key: &[migration.version.into()],
            holder: Some(instance),
            stale_ms: STALE_CLAIM_MS,
            interval_ms: 0,
            insert: &[("name", migration.name.into())],
            set: &[("checksum", checksum.into())],
        },
    )?;
    Ok(won.is_some())
}

/// Runs `migration`'s statements, renewing `instance`'s claim before each one. A claim found taken over
/// (this instance stalled past [`STALE_CLAIM_MS`]) stops it: the other instance applies the rest, and
/// every statement is idempotent, so what ran twice did no harm.
fn apply(
    versions: &Table,
    platform: &Platform,
    migration: &Migration,
    instance: &str,
) -> anyhow::Result<()> {
    for (index, statement) in statements(migration.sql).iter().enumerate() {
        renew(versions, platform, migration, instance, index)?;
        if let Some(wanted) = journal_mode_wanted(statement) {
            set_journal_mode(platform, statement, wanted)
                .with_context(|| format!("{} statement {} failed", migration.name, index + 1))?;
            continue;
        }
        match platform.sql.execute(statement, &[]) {
            // SQLite has no `ADD COLUMN IF NOT EXISTS`: a migration taken over after its first
            // instance died half-way finds its columns there already.
            Err(e) if is_column_added_before(statement, &e) => {}
            other => {
                other.with_context(|| {
                    format!("{} statement {} failed", migration.name, index + 1)
                })?;
            }
        }
    }
    Ok(())
}

/// The mode a `PRAGMA journal_mode=<mode>` statement asks for; `None` for any other statement.
fn journal_mode_wanted(statement: &str) -> Option<&str> {
    let (name, mode) = statement.strip_prefix("PRAGMA ")?.split_once('=')?;
    name.trim()
        .eq_ignore_ascii_case("journal_mode")
        .then(|| mode.trim())
}

/// Runs `statement`, a `PRAGMA journal_mode=<wanted>`, best-effort. SQLite answers with the mode the
/// database has afterwards: a database with no journal mode to set (in memory, a remote libSQL, whose
/// server keeps its own) answers another mode, and one that forbids the pragma fails; either keeps working
/// as it is, so that is logged (once: the migration is applied once per database) and the migration goes
/// on. A busy database is the one failure that is passed on: it says nothing about whether the mode can be
/// set, so the migration is tried again like any other whose statement failed.
fn set_journal_mode(platform: &Platform, statement: &str, wanted: &str) -> anyhow::Result<()> {
    match platform.sql.execute(statement, &[]) {
        Ok(rows) => {
            let mode = rows
                .first()
                .and_then(|row| row.str("journal_mode").ok().map(str::to_owned))
                .unwrap_or_default();
            if mode.eq_ignore_ascii_case(wanted) {
                tracing::info!(journal_mode = %mode, "database journal mode set");
            } else {
                tracing::warn!(
                    wanted,
                    journal_mode = %mode,
                    "the database kept its own journal mode; going on with it"
                );
            }
            Ok(())
        }
        Err(e) if is_busy(&e) => Err(e),
        Err(e) => {
            tracing::warn!(
                wanted,
                error = %format!("{e:#}"),
                "the database refused to set its journal mode; going on without it"
            );
            Ok(())
        }
    }
}

/// Whether `error` is SQLite's "database is locked" (`SQLITE_BUSY`, after the busy timeout) or "database
/// table is locked" (`SQLITE_LOCKED`): another connection held the lock, which passes.
fn is_busy(error: &anyhow::Error) -> bool {
    let message = format!("{error:#}").to_ascii_lowercase();
    message.contains("is locked") || message.contains("sqlite_busy")
}

fn is_column_added_before(statement: &str, error: &anyhow::Error) -> bool {
    let statement = statement.to_ascii_uppercase();
    statement.starts_with("ALTER TABLE")
        && statement.contains("ADD COLUMN")
        && format!("{error:#}").contains("duplicate column name")
}

/// The heartbeat: moves `instance`'s claim on `migration` to now, before statement `index`; fails when
/// the claim is no longer this instance's.
fn renew(
    versions: &Table,
    platform: &Platform,
    migration: &Migration,
    instance: &str,
    index: usize,
) -> anyhow::Result<()> {
    let renewed = versions.heartbeat(
        platform,
        &[migration.version.into()],
        instance,
        STALE_CLAIM_MS,
    )?;
    if !renewed {
        bail!(
            "migration {} was taken over by another instance before statement {}",
            migration.name,
            index + 1
        );
    }
    Ok(())
}

fn instance_id(platform: &Platform) -> String {
    format!(
        "{}-{:016x}",
        platform.clock.now_ms(),
        crate::ids::random_u64()
    )
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use sha2::Digest;

    use super::*;
    use crate::platform::native::{ManualClock, NativePlatformBuilder};
    use crate::platform::{Rows, Sql, Value};

    fn tables(platform: &Platform) -> Vec<String> {
        platform
            .sql
            .execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.str("name").unwrap().to_owned())
            .collect()
    }

    #[test]
    fn statements_are_split_on_line_ending_semicolons_without_comments() {
        let s = statements(
            "-- a comment\nCREATE TABLE a (x INT); -- trailing\n\nCREATE VIEW v AS\n  SELECT 1;\n",
        );
        assert_eq!(
            s,
            vec!["CREATE TABLE a (x INT)", "CREATE VIEW v AS\n  SELECT 1"]
        );
    }

    /// The checksum each migration had when databases recorded it, before `build.rs` took the comments
    /// out of what is embedded: a database migrated by an older build must find its versions unchanged.
    /// A new migration adds its line.
    const RECORDED: &[(i64, &str)] = &[
        (1, "b4d397663e0f1241"),
        (2, "23116e9a05cee710"),
        (3, "4fd5412140df6b42"),
        (4, "7319a575891b5159"),
        (5, "2f58f4438cffee83"),
        (6, "2af0087019aceb24"),
        (7, "aa1b041b07126696"),
        (8, "5902113d77a8a2fa"),
        (9, "a6ce26264c00c78f"),
        (10, "af071e886f8fe68e"),
        (11, "a7842e94401c40b2"),
        (12, "33ada2b0e8610eea"),
        (13, "ef6f419282b3de69"),
        (14, "67521a18f0ce7ead"),
    ];

    /// [`RECORDED`] for the intake database.
    const INTAKE_RECORDED: &[(i64, &str)] = &[(1, "a4237a2fa8b106f3"), (2, "c585e3d295971db8")];

    #[test]
    fn each_intake_migration_keeps_the_checksum_of_its_whole_file() {
        let embedded: Vec<(i64, &str)> = INTAKE_MIGRATIONS
            .iter()
            .map(|m| (m.version, m.checksum))
            .collect();
        assert_eq!(embedded, INTAKE_RECORDED);
        for migration in INTAKE_MIGRATIONS {
            let text = file(&format!("intake/{}", migration.name));
            assert_eq!(migration.checksum, checksum(&text), "{}", migration.name);
            assert_eq!(
                statements(migration.sql),
                as_embedded(&text),
                "{}",
                migration.name
            );
        }
    }

    /// What `build.rs` records of a file as written: the first 8 bytes of its SHA-256, in hex.
    fn checksum(text: &str) -> String {
        let digest = sha2::Sha256::digest(text.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The statements `build.rs` embeds of a file as written: without comments, compacted.
    fn as_embedded(text: &str) -> Vec<String> {
        statements(text).iter().map(|s| compact(s)).collect()
    }

    fn file(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn each_migration_keeps_the_checksum_of_its_whole_file() {
        let embedded: Vec<(i64, &str)> =
            MIGRATIONS.iter().map(|m| (m.version, m.checksum)).collect();
        assert_eq!(embedded, RECORDED);
        for migration in MIGRATIONS {
            let text = file(migration.name);
            assert_eq!(migration.checksum, checksum(&text), "{}", migration.name);
        }
    }

    #[test]
    fn the_embedded_sql_is_the_files_statements_without_their_comments() {
        let mut embedded = 0;
        let mut written = 0;
        for migration in MIGRATIONS {
            let text = file(migration.name);
            assert_eq!(
                statements(migration.sql),
                as_embedded(&text),
                "{}",
                migration.name
            );
            assert!(!migration.sql.contains("--"), "{}", migration.name);
            embedded += migration.sql.len();
            written += text.len();
        }
        assert!(
            embedded < written / 2,
            "{embedded} of {written} bytes embedded"
        );
    }

    #[tokio::test]
    async fn the_statements_run_are_the_embedded_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (platform, counted) = slow_platform(dir.path(), 0);
        run(&platform, &[MIGRATIONS[0]]).await.unwrap();
        let ran = counted.ran.borrow();
        for statement in statements(MIGRATIONS[0].sql) {
            assert!(ran.contains(&statement), "{statement} did not run");
        }
        assert!(!ran.iter().any(|s| s.contains("--")), "{ran:?}");
    }

    fn versions() -> Vec<i64> {
        MIGRATIONS.iter().map(|m| m.version).collect()
    }

    #[tokio::test]
    async fn applies_the_schema_and_a_second_run_applies_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        let first = run(&platform, MIGRATIONS).await.unwrap();
        assert_eq!(first.applied, versions());
        let names = tables(&platform);
        for expected in [
            "events",
            "notion_pages",
            "notion_data_sources",
            "phone_numbers",
            "canvas_cache",
            "pending_work",
            "media_objects",
            "message_media",
            "sync_history",
            "sync_runs",
            "schedules",
            "metrics",
            "sync_stats_today",
            "canvas_cache_stats",
            "schema_migrations",
            "webhook_keys",
            "contacts",
            "job_claims",
            "notion_schemas",
            "canvas_relinks",
            "notion_pages_gone",
            "metrics_minutes",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        let second = run(&platform, MIGRATIONS).await.unwrap();
        assert_eq!(
            second,
            Report {
                applied: vec![],
                already_applied: versions()
            }
        );
        // The views are queryable, not just declared.
        platform
            .sql
            .execute("SELECT * FROM sync_stats_today", &[])
            .unwrap();
        platform
            .sql
            .execute("SELECT * FROM canvas_cache_stats", &[])
            .unwrap();
    }

    #[test]
    fn concurrent_starts_apply_each_migration_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let reports: Vec<Report> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let path = path.clone();
                    s.spawn(move || {
                        let platform = NativePlatformBuilder::new(&path).build().unwrap();
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_time()
                            .build()
                            .unwrap();
                        rt.block_on(run(&platform, MIGRATIONS)).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let applied: usize = reports.iter().map(|r| r.applied.len()).sum();
        let already: usize = reports.iter().map(|r| r.already_applied.len()).sum();
        assert_eq!(applied, MIGRATIONS.len(), "{reports:?}");
        assert_eq!(already, 7 * MIGRATIONS.len(), "{reports:?}");
    }

    #[tokio::test]
    async fn a_changed_migration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        let original = [Migration {
            version: 1,
            name: "0001_x.sql",
            sql: "CREATE TABLE IF NOT EXISTS x (a INT);",
            checksum: "original",
        }];
        run(&platform, &original).await.unwrap();
        let edited = [Migration {
            version: 1,
            name: "0001_x.sql",
            sql: "CREATE TABLE IF NOT EXISTS x (a INT, b INT);",
            checksum: "edited",
        }];
        let err = run(&platform, &edited).await.unwrap_err();
        assert!(
            err.to_string().contains("was changed after it was applied"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_stale_claim_from_a_crashed_instance_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        run(&platform, &[]).await.unwrap();
        let long_ago = platform.clock.now_ms() - 10 * STALE_CLAIM_MS;
        platform
            .sql
            .execute(
                "INSERT INTO schema_migrations (version, name, checksum, claimed_by, claimed_at)
                 VALUES (1, '0001_initial.sql', 'x', 'dead-instance', ?1)",
                &[long_ago.into()],
            )
            .unwrap();
        let report = run(&platform, MIGRATIONS).await.unwrap();
        assert_eq!(report.applied, versions());
    }

    /// The database of `inner`, counting its statements and moving `clock` on by `step_ms` for each one,
    /// as a slow remote database would. With a `rival`, another instance tries to claim the rival's
    /// migration before each statement that is not about `schema_migrations`.
    struct SlowSql {
        inner: Rc<dyn Sql>,
        clock: Rc<ManualClock>,
        step_ms: i64,
        statements: Cell<usize>,
        ran: RefCell<Vec<String>>,
        rival: RefCell<Option<(Platform, Migration)>>,
        rival_won: Cell<bool>,
    }

    impl Sql for SlowSql {
        fn execute(&self, statement: &str, params: &[Value]) -> anyhow::Result<Rows> {
            self.statements.set(self.statements.get() + 1);
            self.ran.borrow_mut().push(statement.to_owned());
            self.clock.advance_ms(self.step_ms);
            if !statement.contains("schema_migrations") {
                if let Some((rival, migration)) = &*self.rival.borrow() {
                    let won = claim(
                        &super::versions(APP_VERSIONS),
                        rival,
                        migration,
                        migration.checksum,
                        "rival",
                    )?;
                    self.rival_won.set(self.rival_won.get() || won);
                }
            }
            self.inner.execute(statement, params)
        }
    }

    fn slow_platform(dir: &std::path::Path, step_ms: i64) -> (Platform, Rc<SlowSql>) {
        let clock = Rc::new(ManualClock::at(crate::testing::T0));
        let mut platform = NativePlatformBuilder::new(dir)
            .clock(clock.clone())
            .build()
            .unwrap();
        let slow = Rc::new(SlowSql {
            inner: platform.sql.clone(),
            clock,
            step_ms,
            statements: Cell::new(0),
            ran: RefCell::new(Vec::new()),
            rival: RefCell::new(None),
            rival_won: Cell::new(false),
        });
        platform.sql = slow.clone();
        (platform, slow)
    }

    #[tokio::test]
    async fn a_request_on_a_migrated_database_costs_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let (platform, counted) = slow_platform(dir.path(), 0);
        let (_, counted_intake) = slow_platform(dir.path(), 0);
        let platform = Platform {
            intake: counted_intake.clone(),
            ..platform
        };
        ensure(&platform).await.unwrap();
        assert!(counted.statements.get() > MIGRATIONS.len());
        assert!(counted_intake.statements.get() > INTAKE_MIGRATIONS.len());
        // Every request is a new instance on Spin: nothing is remembered from the one before.
        counted.statements.set(0);
        counted_intake.statements.set(0);
        ensure(&platform).await.unwrap();
        assert_eq!(
            (counted.statements.get(), counted_intake.statements.get()),
            (1, 1)
        );
        // The intake route's check reads the intake database alone.
        counted_intake.statements.set(0);
        counted.statements.set(0);
        ensure_intake(&platform).await.unwrap();
        assert_eq!(
            (counted.statements.get(), counted_intake.statements.get()),
            (0, 1)
        );
    }

    fn objects(sql: &dyn Sql) -> Vec<String> {
        sql.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.str("name").unwrap().to_owned())
        .collect()
    }

    #[tokio::test]
    async fn the_intake_database_holds_only_the_intakes_tables() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        ensure_intake(&platform).await.unwrap();
        assert!(objects(&*platform.sql).is_empty(), "the app's is untouched");
        assert_eq!(
            objects(&*platform.intake),
            [
                "admitted_deliveries",
                "admitted_deliveries_are_remembered",
                "deliveries",
                "deliveries_open_the_drain_kick_window",
                "drain_kick_window",
                "intake_migrations",
                "webhook_keys",
                "webhook_keys_carried_over",
            ]
        );
    }

    #[tokio::test]
    async fn the_intake_label_may_name_the_apps_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut platform = NativePlatformBuilder::new(dir.path())
            .clock(Rc::new(ManualClock::at(crate::testing::T0)))
            .build()
            .unwrap();
        platform.intake = platform.sql.clone();
        ensure_checked(&platform).await.unwrap();
        let app_and_intake = objects(&*platform.sql);
        assert!(app_and_intake.contains(&"deliveries".to_owned()));
        assert!(app_and_intake.contains(&"events".to_owned()));
        let queue = crate::queue::Queue::of(&platform);
        let event = crate::queue::NewEvent {
            id: "EV1",
            event_type: "call.completed",
            phone_number_id: Some("PN1"),
            resource_id: Some("AC1"),
            created_at: crate::testing::T0,
            payload: "{}",
            skip_reason: None,
        };
        assert!(queue.enqueue(&event, crate::testing::T0).unwrap().is_new());
        assert_eq!(queue.admit().unwrap(), 1);
        assert_eq!(
            queue.enqueue(&event, crate::testing::T0 + 1).unwrap(),
            crate::queue::Enqueued::Duplicate
        );
        assert_eq!(crate::testing::state_of(&platform, "EV1"), "pending");
    }

    #[tokio::test]
    async fn a_slow_migration_renews_its_claim_and_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // Each statement takes 20 s: a claim made before the first is 60 s old by the fourth.
        let (platform, slow) = slow_platform(dir.path(), 20_000);
        let migration = Migration {
            version: 1,
            name: "0001_slow.sql",
            sql: "CREATE TABLE IF NOT EXISTS a (x INT);\nCREATE TABLE IF NOT EXISTS b (x INT);\n\
                  CREATE TABLE IF NOT EXISTS c (x INT);\nCREATE TABLE IF NOT EXISTS d (x INT);\n\
                  CREATE TABLE IF NOT EXISTS e (x INT);\nCREATE TABLE IF NOT EXISTS f (x INT);",
            checksum: "slow",
        };
        let rival = NativePlatformBuilder::new(dir.path())
            .clock(slow.clock.clone())
            .build()
            .unwrap();
        *slow.rival.borrow_mut() = Some((rival, migration));
        let report = run(&platform, &[migration]).await.unwrap();
        assert_eq!(report.applied, vec![1]);
        assert!(
            !slow.rival_won.get(),
            "another instance took the migration over while it was being applied"
        );
    }

    #[tokio::test]
    async fn an_instance_whose_claim_was_taken_over_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (platform, slow) = slow_platform(dir.path(), 0);
        run(&platform, &[]).await.unwrap();
        let migration = Migration {
            version: 1,
            name: "0001_x.sql",
            sql: "CREATE TABLE IF NOT EXISTS x (a INT);",
            checksum: "x",
        };
        let checksum = migration.checksum;
        assert!(claim(
            &super::versions(APP_VERSIONS),
            &platform,
            &migration,
            checksum,
            "stalled"
        )
        .unwrap());
        slow.clock.advance_ms(STALE_CLAIM_MS + 1);
        assert!(claim(
            &super::versions(APP_VERSIONS),
            &platform,
            &migration,
            checksum,
            "newcomer"
        )
        .unwrap());
        let err = renew(
            &super::versions(APP_VERSIONS),
            &platform,
            &migration,
            "stalled",
            0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("taken over"), "{err}");
    }

    #[tokio::test]
    async fn a_failing_statement_names_the_file_and_statement() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        let bad = [Migration {
            version: 9,
            name: "0009_bad.sql",
            sql: "CREATE TABLE ok (a INT);\nSELEC oops;",
            checksum: "bad",
        }];
        let err = run(&platform, &bad).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("0009_bad.sql statement 2"),
            "{err:#}"
        );
    }

    /// The database of `inner`, whose `PRAGMA journal_mode` statements fail with `error` while it is set.
    struct RefusingSql {
        inner: Rc<dyn Sql>,
        error: RefCell<Option<&'static str>>,
    }

    impl Sql for RefusingSql {
        fn execute(&self, statement: &str, params: &[Value]) -> anyhow::Result<Rows> {
            if let Some(error) = *self.error.borrow() {
                if statement.starts_with("PRAGMA journal_mode") {
                    bail!("{error}");
                }
            }
            self.inner.execute(statement, params)
        }
    }

    fn journal_mode(platform: &Platform) -> String {
        let rows = platform.sql.execute("PRAGMA journal_mode", &[]).unwrap();
        rows.first()
            .unwrap()
            .str("journal_mode")
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn a_migrated_database_file_is_in_write_ahead_log_mode_with_full_sync_for_every_connection(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        assert_eq!(journal_mode(&platform), "delete");
        run(&platform, MIGRATIONS).await.unwrap();
        // Later connections (on Spin: every later request) find the mode in the file, and keep SQLite's
        // default `synchronous=FULL`, which syncs the log at every commit.
        let later = NativePlatformBuilder::new(dir.path()).build().unwrap();
        assert_eq!(journal_mode(&later), "wal");
        let synchronous = later.sql.execute("PRAGMA synchronous", &[]).unwrap();
        assert_eq!(synchronous.first().unwrap().i64("synchronous").unwrap(), 2);
    }

    #[tokio::test]
    async fn a_database_without_a_journal_mode_to_set_is_migrated_all_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        platform.sql = Rc::new(
            crate::platform::native::SqliteDatabase::open(std::path::Path::new(":memory:"))
                .unwrap(),
        );
        let report = run(&platform, MIGRATIONS).await.unwrap();
        assert_eq!(report.applied, versions());
        assert_eq!(journal_mode(&platform), "memory");
    }

    #[tokio::test]
    async fn a_refused_journal_mode_is_passed_over_but_a_busy_database_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        let refusing = Rc::new(RefusingSql {
            inner: platform.sql.clone(),
            error: RefCell::new(Some("SQLite error: not authorized")),
        });
        platform.sql = refusing.clone();
        let report = run(&platform, MIGRATIONS).await.unwrap();
        assert_eq!(report.applied, versions());

        let dir = tempfile::tempdir().unwrap();
        let mut platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        let busy = Rc::new(RefusingSql {
            inner: platform.sql.clone(),
            error: RefCell::new(Some("database is locked")),
        });
        platform.sql = busy.clone();
        let err = run(&platform, MIGRATIONS).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("0011_write_ahead_log.sql statement 1"),
            "{err:#}"
        );
        assert!(!is_current(&*platform.sql, APP_VERSIONS, MIGRATIONS));
        // Once the lock is free (here: the claim of the instance that failed has gone stale), the next
        // run sets the mode.
        *busy.error.borrow_mut() = None;
        let stale = platform.clock.now_ms() - 2 * STALE_CLAIM_MS;
        platform
            .sql
            .execute(
                "UPDATE schema_migrations SET claimed_at = ?1 WHERE applied_at IS NULL",
                &[stale.into()],
            )
            .unwrap();
        let report = run(&platform, MIGRATIONS).await.unwrap();
        let from_11: Vec<i64> = versions().into_iter().filter(|v| *v >= 11).collect();
        assert_eq!(report.applied, from_11);
        assert_eq!(journal_mode(&platform), "wal");
    }
}
