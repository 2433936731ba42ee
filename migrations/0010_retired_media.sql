-- openphone-notion-sync: tombstones of media retired by retention. Applied like 0001: one statement at a
-- time, idempotent.

-- One row per recording, voicemail or message medium whose copy retention deleted from the bucket
-- (components/common/src/sync/housekeeping.rs). A later event or sync of the same call or message finds it
-- here and copies nothing (components/common/src/storage/media.rs): without it the copy was uploaded again
-- and deleted again by the next walk, and the page got a fresh link to media meant to be gone. A separate
-- table rather than a `retired` state, so `media_objects` and `message_media` (whose CHECK constraints
-- allow only 'stored' and 'gone') need no rebuild.
CREATE TABLE IF NOT EXISTS retired_media (
    owner_id    TEXT NOT NULL,                  -- call id, or message id for kind 'media'
    kind        TEXT NOT NULL CHECK (kind IN ('recording', 'voicemail', 'media')),
    segment     INTEGER NOT NULL,               -- recording segment or medium position, from 1; 1 for voicemails
    key         TEXT NOT NULL,                  -- the object key that was deleted
    size        INTEGER,                        -- bytes it had
    retired_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, kind, segment)
);
CREATE INDEX IF NOT EXISTS retired_media_key ON retired_media (key);
