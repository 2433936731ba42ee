-- openphone-notion-sync: outgoing texts whose delivery is not settled yet. Applied like 0001: one statement
-- at a time, idempotent.

-- An outgoing text the sync wrote while OpenPhone still had it `queued`, `sending` or `sent`. No webhook
-- reports an `undelivered` or `failed` text, so each number's sync asks `GET /v1/messages/{id}` again when
-- `next_check_at` is due, writes the status once it is settled (one Notion request) and deletes the row;
-- a text still unsettled a day after it was sent is given up on (components/common/src/sync/messages.rs).
CREATE TABLE IF NOT EXISTS unsettled_messages (
    message_id       TEXT PRIMARY KEY,
    phone_number_id  TEXT NOT NULL,
    conversation_id  TEXT,
    sent_at          INTEGER NOT NULL,
    checks           INTEGER NOT NULL DEFAULT 0,
    next_check_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS unsettled_messages_due ON unsettled_messages (phone_number_id, next_check_at);
