-- openphone-notion-sync: MMS pictures and files (webhook `media[]` of a message) copied to the bucket like
-- recordings. Applied like 0001: one statement at a time, idempotent.

-- One row per medium of a message, written once the copy is in the bucket (or the media host answered 404),
-- so a replayed event costs no request and the link is renewed like a recording's
-- (components/common/src/storage/message_media.rs).
CREATE TABLE IF NOT EXISTS message_media (
    message_id      TEXT NOT NULL,
    position        INTEGER NOT NULL,            -- n of the key: from 1, in the payload's `media[]` order
    key             TEXT NOT NULL,               -- media/YYYY/MM/DD/<messageId>-<n>.<ext>
    state           TEXT NOT NULL CHECK (state IN ('stored', 'gone')),  -- gone: the media host answered 404
    size            INTEGER,                     -- bytes stored
    content_type    TEXT,
    url             TEXT,                        -- what Notion links to: public or presigned
    url_expires_at  INTEGER,                     -- presigned URLs only; renewed before it passes
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX IF NOT EXISTS message_media_key ON message_media (key);
CREATE INDEX IF NOT EXISTS message_media_expiry ON message_media (state, url_expires_at);
