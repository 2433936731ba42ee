-- openphone-notion-sync: initial schema.
-- Applied by components/common/src/migrations.rs, one statement at a time (Spin's SQLite runs only the first
-- statement of a string). Every statement is idempotent so an interrupted run can be applied again.
-- Times are Unix epoch milliseconds (INTEGER).

-- Webhook events: the durable queue (components/common/src/queue). `id` is the OpenPhone event id (or the
-- Standard Webhooks `webhook-id`), so delivery retries collapse onto one row through the primary key.
CREATE TABLE IF NOT EXISTS events (
    id               TEXT PRIMARY KEY,
    type             TEXT NOT NULL,
    phone_number_id  TEXT,                       -- PN… of the workspace number
    resource_id      TEXT,                       -- call or message id the event is about (AC…)
    lease_key        TEXT NOT NULL,              -- the unit of ordering: number, else resource, else event id
    created_at       INTEGER NOT NULL,           -- the event's createdAt (else when it was received)
    received_at      INTEGER NOT NULL,
    payload          TEXT NOT NULL,              -- raw body as received
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'leased', 'done', 'skipped', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0, -- leases so far (a release gives one back)
    available_at     INTEGER NOT NULL,           -- not leased before this time (backoff)
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    skip_reason      TEXT,                       -- why a skipped event is not processed
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER                     -- when it became done, skipped or dead
);
-- Leasing scans due work in order and checks each key for a live lease; replay and stats filter by state.
CREATE INDEX IF NOT EXISTS events_due ON events (state, available_at, created_at);
CREATE INDEX IF NOT EXISTS events_by_key ON events (lease_key, state);
CREATE INDEX IF NOT EXISTS events_by_number ON events (phone_number_id, created_at);
CREATE INDEX IF NOT EXISTS events_by_resource ON events (resource_id);
CREATE INDEX IF NOT EXISTS events_finished ON events (state, finished_at);

-- OpenPhone id → Notion page. A row exists from the moment a create is about to be sent ("in flight"), so a
-- retry after an unknown outcome knows to query Notion before creating again.
CREATE TABLE IF NOT EXISTS notion_pages (
    kind               TEXT NOT NULL CHECK (kind IN ('call', 'message', 'canvas')),
    openphone_id       TEXT NOT NULL,
    page_id            TEXT,                     -- NULL while the create is in flight
    create_started_at  INTEGER,
    phone_number_id    TEXT,
    canvas_page_id     TEXT,                     -- the relation last written
    status_rank        INTEGER,                  -- messages: rank of the last status written (no regressions)
    sections           TEXT NOT NULL DEFAULT '', -- body sections appended: comma-separated (transcript,summary,…)
    recording_urls     TEXT,                     -- JSON array of our storage URLs, never replaced by OpenPhone's
    voicemail_url      TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (kind, openphone_id)
);
CREATE INDEX IF NOT EXISTS notion_pages_page ON notion_pages (page_id);

-- Notion database id → data source id, resolved once.
CREATE TABLE IF NOT EXISTS notion_data_sources (
    database_id     TEXT PRIMARY KEY,
    data_source_id  TEXT NOT NULL,
    resolved_at     INTEGER NOT NULL
);

-- The workspace's OpenPhone numbers and each one's sync cursor (components/common/src/sync). A pass lists the
-- number's conversations updated in (pass_from, now]; `page_token` is the next conversations page of the pass
-- in progress, checkpointed after every page whose items all succeeded, so an interrupted pass resumes there.
CREATE TABLE IF NOT EXISTS phone_numbers (
    id                     TEXT PRIMARY KEY,     -- PN…
    number                 TEXT NOT NULL,        -- E.164
    name                   TEXT,
    users                  TEXT,                 -- JSON [{id, firstName, lastName, email}]
    cursor_at              INTEGER,              -- conversations updated before this are synced (NULL: never)
    page_token             TEXT,                 -- checkpoint inside the pass in progress
    pass_from              INTEGER,              -- the pass in progress: its `updatedAfter`…
    pass_until             INTEGER,              -- …and the cursor it sets when it completes
    sync_origin_at         INTEGER,              -- the first pass's lower bound: nothing older is synced
    last_sync_started_at   INTEGER,
    last_sync_finished_at  INTEGER,
    last_sync_error        TEXT,
    is_active              INTEGER NOT NULL DEFAULT 1,
    first_seen_at          INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);

-- Conversations the sync has listed, and up to when each one's calls and messages are synced: a conversation
-- that moved out of a pass's listing (new activity during the pass) is caught up from here by the next pass.
CREATE TABLE IF NOT EXISTS sync_conversations (
    id               TEXT PRIMARY KEY,           -- CN…
    phone_number_id  TEXT NOT NULL,
    synced_until     INTEGER NOT NULL,           -- items created before this are synced
    updated_at       INTEGER NOT NULL
);

-- Canvas lookups, hits and misses, with an expiry.
CREATE TABLE IF NOT EXISTS canvas_cache (
    lookup_type   TEXT NOT NULL CHECK (lookup_type IN ('phone', 'email')),
    lookup_key    TEXT NOT NULL,                 -- E.164 or lower-case email
    canvas_id     TEXT,                          -- NULL = known miss
    canvas_name   TEXT,
    cached_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    hit_count     INTEGER NOT NULL DEFAULT 0,
    last_used_at  INTEGER NOT NULL,
    PRIMARY KEY (lookup_type, lookup_key)
);
CREATE INDEX IF NOT EXISTS canvas_cache_expiry ON canvas_cache (expires_at);

-- Calls that still lack something OpenPhone produces later; re-checked by the periodic sync (components/common/
-- src/sync/pending.rs). `needs` is a bit set (1 recording, 2 transcript, 4 summary, 8 voicemail, 16 the call's
-- final state) so recording and clearing a need are each one statement (`needs | ?`, `needs & ~?`); a row
-- with needs = 0 is complete.
CREATE TABLE IF NOT EXISTS pending_work (
    call_id          TEXT PRIMARY KEY,
    phone_number_id  TEXT NOT NULL,
    call_created_at  INTEGER NOT NULL,
    needs            INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_check_at    INTEGER NOT NULL,
    gave_up_at       INTEGER,                    -- set 7 days after the call; needs keeps what never came
    last_error       TEXT,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_work_due ON pending_work (phone_number_id, gave_up_at, next_check_at);

-- Recordings and voicemails copied to object storage (components/common/src/storage/media.rs): one row per
-- file of a call, written once the copy is in the bucket (or the media host answered 404), so a later event
-- for the same call costs no request.
CREATE TABLE IF NOT EXISTS media_objects (
    call_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('recording', 'voicemail')),
    segment         INTEGER NOT NULL DEFAULT 1,  -- recording segment, from 1 in OpenPhone's order; 1 for voicemails
    key             TEXT NOT NULL,               -- object key (recordings/YYYY/MM/DD/<callId>-<n>.<ext>, …)
    state           TEXT NOT NULL CHECK (state IN ('stored', 'gone')),  -- gone: the media host answered 404
    size            INTEGER,                     -- bytes stored
    content_type    TEXT,
    url             TEXT,                        -- what Notion links to: public or presigned
    url_expires_at  INTEGER,                     -- presigned URLs only; renewed before it passes
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (call_id, kind, segment)
);
CREATE INDEX IF NOT EXISTS media_objects_key ON media_objects (key);
CREATE INDEX IF NOT EXISTS media_objects_expiry ON media_objects (state, url_expires_at);

-- One row per item synced (webhook or backfill), for history and the stats views.
CREATE TABLE IF NOT EXISTS sync_history (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_number_id     TEXT,
    resource_type       TEXT NOT NULL CHECK (resource_type IN ('call', 'message')),
    resource_id         TEXT NOT NULL,
    source              TEXT NOT NULL CHECK (source IN ('webhook', 'backfill', 'pending')),
    notion_page_id      TEXT,
    canvas_id           TEXT,
    sync_status         TEXT NOT NULL CHECK (sync_status IN ('success', 'failed', 'skipped')),
    error_message       TEXT,
    processing_time_ms  INTEGER,
    synced_at           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_history_phone ON sync_history (phone_number_id, synced_at DESC);
CREATE INDEX IF NOT EXISTS sync_history_resource ON sync_history (resource_type, resource_id);
CREATE INDEX IF NOT EXISTS sync_history_time ON sync_history (synced_at DESC);

-- Runs of the periodic sync and of the tick (`/stats` shows the current or last one).
CREATE TABLE IF NOT EXISTS sync_runs (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,                -- sync, tick
    scope          TEXT,                         -- a phone number id, or NULL for all
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    numbers_total  INTEGER,
    numbers_done   INTEGER NOT NULL DEFAULT 0,
    requests       INTEGER NOT NULL DEFAULT 0,   -- API requests (OpenPhone, Notion, S3, media)
    errors         INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    details        TEXT                          -- JSON report: per number, pending work, housekeeping
);
CREATE INDEX IF NOT EXISTS sync_runs_recent ON sync_runs (kind, started_at DESC);

-- Named schedules (the periodic sync): who claimed the current run and when, so overlapping ticks never both
-- run it (claimed with one upsert: components/common/src/sync/schedule.rs).
CREATE TABLE IF NOT EXISTS schedules (
    name             TEXT PRIMARY KEY,
    last_started_at  INTEGER,
    last_finished_at INTEGER,
    claimed_by       TEXT,
    claim_expires_at INTEGER
);

-- Daily counters: API requests per service, errors, cache hits. One upsert per increment.
CREATE TABLE IF NOT EXISTS metrics (
    day    TEXT NOT NULL,                        -- YYYY-MM-DD (UTC)
    name   TEXT NOT NULL,                        -- e.g. requests.notion, errors.openphone, canvas.hit
    value  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, name)
);

-- The two stats views of the reference implementation.
CREATE VIEW IF NOT EXISTS sync_stats_today AS
    SELECT phone_number_id, resource_type, sync_status,
           COUNT(*) AS count, AVG(processing_time_ms) AS avg_processing_time_ms
    FROM sync_history
    WHERE synced_at > (CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 86400000)
    GROUP BY phone_number_id, resource_type, sync_status;

CREATE VIEW IF NOT EXISTS canvas_cache_stats AS
    SELECT lookup_type,
           COUNT(*) AS entries,
           SUM(CASE WHEN canvas_id IS NULL THEN 1 ELSE 0 END) AS misses_cached,
           SUM(hit_count) AS total_hits,
           AVG(hit_count) AS avg_hits
    FROM canvas_cache
    GROUP BY lookup_type;
