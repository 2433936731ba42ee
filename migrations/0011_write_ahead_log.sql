-- Write-ahead logging. In the default rollback journal every commit syncs the journal and the database
-- file, and a commit waits for every reader; with the log a commit appends to it and syncs it once, and
-- readers never block the writer. `synchronous` stays FULL (SQLite's default, which Spin does not
-- change), so each commit is on disk before its statement returns: an event the webhook accepted survives
-- a crash or a power cut. The mode is stored in the database file, so this runs once per database, and
-- outside a transaction (the runner runs every statement on its own). Best-effort: a database without a
-- journal mode to set (in memory, a remote libSQL) or one that refuses keeps its own, and the runner says
-- so in the log (`set_journal_mode` in migrations.rs).
PRAGMA journal_mode=WAL;
