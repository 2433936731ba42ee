-- openphone-notion-sync: the drain-kick window lives beside the inbox (components/common/src/webhook/kick.rs).
-- Applied like 0001; an `ADD COLUMN` found already there (an instance died half-way) is skipped.

-- The start (epoch ms) of the latest window whose first delivery kicked the drain: one row. It was a
-- key-value key per second that every delivery opened the key-value store to read: 0.12 ms of Spin's CPU
-- per delivery and 6% of the intake's rate at 16 clients (docs/performance.md).
CREATE TABLE IF NOT EXISTS drain_kick (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    window_start INTEGER NOT NULL
);
INSERT INTO drain_kick (id, window_start) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

-- The window a delivery opened, when it is the first of its window to store an event the drain processes;
-- the intake's insert decides it and returns it (`Queue::enqueue`), and the trigger takes the window, all
-- under the one write lock of that insert, so exactly one delivery of a window kicks.
ALTER TABLE inbox ADD COLUMN kick_window INTEGER;
CREATE TRIGGER IF NOT EXISTS inbox_opens_the_drain_kick_window AFTER INSERT ON inbox
WHEN NEW.kick_window IS NOT NULL BEGIN
    UPDATE drain_kick SET window_start = max(window_start, NEW.kick_window) WHERE id = 1; END;
