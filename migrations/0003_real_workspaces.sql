-- openphone-notion-sync: what real workspaces need — databases the sync did not make, Canvas lookups that
-- fail, pages people delete. Applied like 0001: one statement at a time, idempotent.

-- The properties of a data source as `GET /v1/data_sources/{id}` last answered, a JSON object of name → type
-- (components/common/src/notion/schema.rs), so a page write sends only properties the database has and
-- finds the title by its type. Refreshed when older than an hour, and dropped when Notion
-- refuses a write as invalid or the schema check changes the data source.
CREATE TABLE IF NOT EXISTS notion_schemas (
    data_source_id TEXT PRIMARY KEY,
    properties     TEXT NOT NULL,
    resolved_at    INTEGER NOT NULL
);

-- Pages written without their Canvas relation because the Canvas lookup failed (database unshared or renamed,
-- an unexpected `Phone` type, Notion down): the page is written, the relation is retried here by the tick
-- (components/common/src/pages/canvas_relink.rs) with a growing delay, until the lookup works again.
CREATE TABLE IF NOT EXISTS canvas_relinks (
    kind          TEXT NOT NULL,               -- call | message
    openphone_id  TEXT NOT NULL,
    number        TEXT NOT NULL,               -- E.164 of the other party
    last_error    TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_try_at   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (kind, openphone_id)
);

-- Pages a person deleted or moved to the trash in Notion (a write answered 404 or "archived"). The sync leaves
-- them alone: later events of the item are acknowledged without writing, and `/stats` counts them. To have
-- the sync write the item again, restore the page in Notion and delete its row here, or delete both.
CREATE TABLE IF NOT EXISTS notion_pages_gone (
    kind          TEXT NOT NULL,               -- call | message
    openphone_id  TEXT NOT NULL,
    page_id       TEXT NOT NULL,
    seen_at       INTEGER NOT NULL,
    PRIMARY KEY (kind, openphone_id)
);
