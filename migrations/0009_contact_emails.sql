-- openphone-notion-sync: Canvas records found by email. Applied like 0001: one statement at a time, idempotent.

-- The phone numbers (E.164) of every OpenPhone contact by each of its emails (lower-cased), filled with the
-- contacts index (components/common/src/contacts.rs). A Canvas record with an Email but no Phone is linked to
-- the past pages of that person's numbers through here (components/common/src/pages/canvas_backlink.rs).
CREATE TABLE IF NOT EXISTS contact_emails (
    email         TEXT NOT NULL,               -- lower-cased
    phone         TEXT NOT NULL,               -- E.164
    contact_id    TEXT NOT NULL,
    refreshed_at  INTEGER NOT NULL,            -- start of the refresh that last listed it
    PRIMARY KEY (email, phone)
);
