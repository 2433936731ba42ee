-- Deliveries the webhook accepted, waiting to join the queue. Each delivery is stored with one small insert
-- here (the row and its id's index: about 3 pages written to the log, against nearly 10 for a row of
-- `events` with its six indexes and trigger), so the database's one write lock, which every delivery
-- queues for, is held for less. Drains move the rows into `events` (`Queue::admit`) before they lease;
-- the columns are those of `events` that the webhook knows.
CREATE TABLE IF NOT EXISTS inbox (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    phone_number_id TEXT,
    resource_id TEXT,
    created_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    skip_reason TEXT
);
