-- openphone-notion-sync: initial schema.
-- Applied by components/common/src/migrations.rs, one statement at a time (Spin's SQLite runs only the first
-- statement of a string). Every statement is idempotent so an interrupted run can be applied again.
-- Times are Unix epoch milliseconds (INTEGER).

-- Webhook events: the durable queue. `id` is the OpenPhone event id (or the Standard Webhooks `webhook-id`),
-- so delivery retries collapse onto one row through the primary key.
CREATE TABLE IF NOT EXISTS events (
    id               TEXT PRIMARY KEY,
    type             TEXT NOT NULL,
    phone_number_id  TEXT,                       -- PN… of the workspace number, the unit of ordering
    resource_id      TEXT,                       -- call or message id the event is about (AC…)
    created_at       INTEGER NOT NULL,           -- the event's createdAt
    received_at      INTEGER NOT NULL,
    payload          TEXT NOT NULL,              -- raw body as received
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'leased', 'done', 'skipped', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    available_at     INTEGER NOT NULL,           -- not leased before this time (backoff)
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER                     -- when it became done, skipped or dead
);
-- Leasing scans due work in order; replay and stats filter by state.
CREATE INDEX IF NOT EXISTS events_due ON events (state, available_at, created_at);
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

-- The workspace's OpenPhone numbers and each one's backfill cursor.
CREATE TABLE IF NOT EXISTS phone_numbers (
    id                     TEXT PRIMARY KEY,     -- PN…
    number                 TEXT NOT NULL,        -- E.164
    name                   TEXT,
    users                  TEXT,                 -- JSON [{id, firstName, lastName, email}]
    cursor_at              INTEGER,              -- everything created before this is synced
    page_token             TEXT,                 -- checkpoint inside an interrupted run
    last_sync_started_at   INTEGER,
    last_sync_finished_at  INTEGER,
    last_sync_error        TEXT,
    is_active              INTEGER NOT NULL DEFAULT 1,
    first_seen_at          INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
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

-- Calls that still lack something OpenPhone produces later; re-checked by the periodic work.
CREATE TABLE IF NOT EXISTS pending_work (
    call_id          TEXT PRIMARY KEY,
    phone_number_id  TEXT,
    call_created_at  INTEGER NOT NULL,
    needs            TEXT NOT NULL,              -- comma-separated: recording,transcript,summary,voicemail
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_check_at    INTEGER NOT NULL,
    gave_up_at       INTEGER,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_work_due ON pending_work (gave_up_at, next_check_at);

-- Recordings and voicemails copied to object storage.
CREATE TABLE IF NOT EXISTS media_objects (
    key             TEXT PRIMARY KEY,
    call_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('recording', 'voicemail')),
    segment         INTEGER NOT NULL DEFAULT 1,
    state           TEXT NOT NULL CHECK (state IN ('stored', 'gone')),
    size            INTEGER,
    content_type    TEXT,
    url             TEXT,                        -- what Notion links to
    url_expires_at  INTEGER,                     -- presigned URLs only
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS media_objects_call ON media_objects (call_id, kind, segment);
CREATE INDEX IF NOT EXISTS media_objects_expiry ON media_objects (url_expires_at);

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

-- Runs of the periodic sync, the tick and admin-triggered drains.
CREATE TABLE IF NOT EXISTS sync_runs (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,                -- sync, tick, drain
    scope          TEXT,                         -- a phone number id, or NULL for all
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    numbers_done   INTEGER NOT NULL DEFAULT 0,
    requests       INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT
);
CREATE INDEX IF NOT EXISTS sync_runs_recent ON sync_runs (kind, started_at DESC);

-- Named schedules (the periodic sync): who claimed the current run and when, so overlapping ticks never both
-- run it.
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
