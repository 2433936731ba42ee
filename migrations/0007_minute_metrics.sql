-- openphone-notion-sync: the last 24 hours minute by minute, for the status page's charts
-- (components/common/src/metrics.rs). Applied like 0001: one statement at a time, idempotent.

-- Per-minute values in a ring of 1440 slots (the minute since the epoch, modulo a day): a slot is overwritten
-- when its minute comes round again, so the table holds at most a day per name and needs no pruning; readers
-- skip rows older than 24 hours. Counters add up within their minute (`requests.<api>`), peaks keep the
-- highest value seen in it (`queue.waiting`).
CREATE TABLE IF NOT EXISTS metrics_minutes (
    slot    INTEGER NOT NULL,                   -- minute % 1440
    name    TEXT NOT NULL,
    minute  INTEGER NOT NULL,                   -- minutes since the epoch (UTC) the value is for
    value   INTEGER NOT NULL,
    PRIMARY KEY (slot, name)
);
