-- openphone-notion-sync: history that links itself. Applied like 0001: one statement at a time, idempotent.

-- The other parties' numbers (E.164) of every call and message page, and the Canvas record each is linked to
-- (NULL while none is known). When a Canvas record appears or gains a number, the tick links that number's
-- past pages from here, without reading Notion (components/common/src/pages/canvas_backlink.rs); a page's
-- Canvas relation is every record its numbers are linked to, so a group text links each participant.
CREATE TABLE IF NOT EXISTS page_numbers (
    kind            TEXT NOT NULL,             -- call | message
    openphone_id    TEXT NOT NULL,
    number          TEXT NOT NULL,             -- E.164
    canvas_page_id  TEXT,
    PRIMARY KEY (kind, openphone_id, number)
);

CREATE INDEX IF NOT EXISTS page_numbers_number ON page_numbers (number);

-- Where the watch over the Canvas database has got to: records edited on or after `edited_since` (Notion's
-- `last_edited_time`, to the minute) are read again, from `cursor` while a long result is paged through.
CREATE TABLE IF NOT EXISTS canvas_watch (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    edited_since  TEXT,
    cursor        TEXT,
    updated_at    INTEGER NOT NULL
);
