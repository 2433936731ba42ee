-- The intake database (SQLite label `intake`): the deliveries the webhook accepted, until a drain moves them
-- into the app's database. It is a database of its own so that the one connection each delivery opens
-- parses this small schema and not the app's, which cost about a third of a millisecond of every delivery
-- (docs/performance.md). Its objects are named so that the label may also point at the app's database file.
-- Applied like the app's migrations, recorded in `intake_migrations` (components/common/src/migrations.rs).

PRAGMA journal_mode=WAL;

-- A delivery waiting to join the queue: the columns of `events` that the webhook knows, and the drain-kick
-- window it opened (components/common/src/webhook/kick.rs).
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    phone_number_id TEXT,
    resource_id TEXT,
    created_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    skip_reason TEXT,
    kick_window INTEGER
);

-- The ids of the deliveries moved into the queue, so that a redelivery is answered `200` by the intake's
-- own insert; pruned with the queue's finished events (housekeeping). The trigger writes a row in the same
-- statement that deletes the delivery, so no moment has an admitted id in neither table.
CREATE TABLE IF NOT EXISTS admitted_deliveries (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS admitted_deliveries_are_remembered AFTER DELETE ON deliveries BEGIN
    INSERT OR IGNORE INTO admitted_deliveries (id, received_at) VALUES (OLD.id, OLD.received_at); END;

-- The start (epoch ms) of the latest window whose first delivery kicked the drain: one row, taken by the
-- insert of that delivery under its one write lock, so exactly one delivery of a window kicks.
CREATE TABLE IF NOT EXISTS drain_kick_window (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    window_start INTEGER NOT NULL
);
INSERT INTO drain_kick_window (id, window_start) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE TRIGGER IF NOT EXISTS deliveries_open_the_drain_kick_window AFTER INSERT ON deliveries
WHEN NEW.kick_window IS NOT NULL BEGIN
    UPDATE drain_kick_window SET window_start = max(window_start, NEW.kick_window) WHERE id = 1; END;
