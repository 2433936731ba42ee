-- openphone-notion-sync: an outage of days loses nothing (components/common/src/queue, drain/breaker.rs).
-- Applied like 0001; an `ADD COLUMN` found already there (an instance died half-way) is skipped.

-- Times a drain started processing an event and its lease ran out without an outcome (the drain crashed or
-- stalled while on it); `in_hand` is 1 while a drain processes it. A poison event that kills every drain is
-- buried after a few; events merely waiting in a crashed drain's batch, failures and rate limits never count.
ALTER TABLE events ADD COLUMN abandoned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN in_hand INTEGER NOT NULL DEFAULT 0;

-- 1 when the event was buried because it kept failing transiently past `queue_max_age_hours`: such events
-- are replayed by themselves once an event succeeds again, at most three times (`replays`).
ALTER TABLE events ADD COLUMN gave_up INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;

-- Circuit breakers: an API that refuses our credentials (401/403) pauses the drain instead of burying every
-- event; one event is tried every few minutes as a probe, and the first success closes the breaker.
CREATE TABLE IF NOT EXISTS breakers (
    service       TEXT PRIMARY KEY,            -- notion | openphone
    status        INTEGER NOT NULL,            -- the refusing HTTP status
    reason        TEXT NOT NULL,
    opened_at     INTEGER NOT NULL,
    next_probe_at INTEGER NOT NULL
);

-- One lease per call: a transcript or summary that arrives before its call's first event knows no number and
-- waits under the call's id; when an event naming the number arrives, the waiting events move to the
-- number's lease, so no two drains write one call's page at once under two keys. (One line: the migration
-- splitter ends a statement at a `;` that ends a line.)
CREATE TRIGGER IF NOT EXISTS events_join_their_number AFTER INSERT ON events WHEN NEW.phone_number_id IS NOT NULL AND NEW.resource_id IS NOT NULL BEGIN UPDATE events SET phone_number_id = NEW.phone_number_id, lease_key = NEW.phone_number_id WHERE resource_id = NEW.resource_id AND phone_number_id IS NULL AND state = 'pending'; END;
