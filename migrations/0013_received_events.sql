-- The inbox's rows in the shape of the queue's: each in the state admitting it gives it (`Queue::admit`),
-- pending, or skipped (finished when received) when its type is one the sync ignores. Admitting and every
-- count of the queue (`/stats`, the status page) read the inbox through this view, so that rule is
-- written once.
CREATE VIEW IF NOT EXISTS received_events AS
SELECT id, type, phone_number_id, resource_id, created_at, received_at, payload, skip_reason,
       CASE WHEN skip_reason IS NULL THEN 'pending' ELSE 'skipped' END AS state,
       CASE WHEN skip_reason IS NOT NULL THEN received_at END AS finished_at
FROM inbox;
