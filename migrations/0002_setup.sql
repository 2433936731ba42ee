-- openphone-notion-sync: one-step setup (POST /admin/setup) and Canvas records for unknown callers.
-- Applied like 0001: one statement at a time, each idempotent. Times are Unix epoch milliseconds.

-- Signing keys of the OpenPhone webhooks that deliver to this app, as the last `POST /admin/setup` found them
-- (components/common/src/webhook/keys.rs). The intake accepts a signature made with any of them, besides
-- `openphone_webhook_secret`. Every setup run makes this table exactly the webhooks OpenPhone still lists
-- for the app's URL, so the key of a webhook deleted in OpenPhone stops working at the next run.
CREATE TABLE IF NOT EXISTS webhook_keys (
    webhook_id   TEXT PRIMARY KEY,             -- WH…
    url          TEXT NOT NULL,                -- where it delivers
    events       TEXT NOT NULL,                -- comma-separated event types
    signing_key  TEXT NOT NULL,                -- base64 as OpenPhone gives it: a secret, never returned or logged
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- OpenPhone contacts by phone number (components/common/src/contacts.rs). The API cannot search contacts by
-- number, so the whole list is indexed here, refreshed on a miss at most every few hours.
CREATE TABLE IF NOT EXISTS contacts (
    phone         TEXT PRIMARY KEY,            -- E.164
    contact_id    TEXT NOT NULL,
    name          TEXT,                        -- first and last name
    company       TEXT,
    refreshed_at  INTEGER NOT NULL             -- start of the refresh that last listed it
);

-- Jobs that run one at a time across instances (the contact index refresh, setup), claimed with one upsert
-- (components/common/src/jobs.rs); a claim older than its job's limit belongs to a dead instance.
CREATE TABLE IF NOT EXISTS job_claims (
    name         TEXT PRIMARY KEY,
    owner        TEXT,                         -- the run holding it; NULL when idle
    claimed_at   INTEGER,
    finished_at  INTEGER                       -- end of the last run that succeeded
);
