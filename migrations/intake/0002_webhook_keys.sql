-- The signing keys `POST /admin/setup` stores (components/common/src/webhook/keys.rs), here rather than in
-- the app's database: a delivery that one of them verifies then reads the intake database alone, as one the
-- configured secret verifies does. The table is the one the app's migration 0002 made, so the `intake`
-- label may name the app's database file.
CREATE TABLE IF NOT EXISTS webhook_keys (
    webhook_id   TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    events       TEXT NOT NULL,
    signing_key  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- One row once the keys an older build stored in the app's database were copied here (`keys::carry_over`).
-- From then on this table alone is read and written, so a key setup removed is never copied back.
CREATE TABLE IF NOT EXISTS webhook_keys_carried_over (
    id INTEGER PRIMARY KEY CHECK (id = 1)
);
