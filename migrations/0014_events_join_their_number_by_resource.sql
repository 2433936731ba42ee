-- openphone-notion-sync: the trigger of 0008 that moves a call's waiting events to its number's lease, made
-- to find them by their call. Applied like 0001.

-- SQLite, which keeps no statistics here, planned 0008's update with the index on `state` and read every
-- pending event for each event inserted: a drain admitting 500 deliveries into a queue of 3,000 pending
-- events spent 0.2 s in the trigger alone, and the time grew with the backlog (an outage's backlog made every
-- admission slower). The `+` keeps `state` out of the plan, so the update reads the events of the one call
-- (`events_by_resource`). The new trigger is created before the old one is dropped, so no insert between
-- the two statements goes without one; both at once do the same update twice, which changes nothing.
CREATE TRIGGER IF NOT EXISTS events_join_their_number_by_resource AFTER INSERT ON events WHEN NEW.phone_number_id IS NOT NULL AND NEW.resource_id IS NOT NULL BEGIN UPDATE events SET phone_number_id = NEW.phone_number_id, lease_key = NEW.phone_number_id WHERE resource_id = NEW.resource_id AND phone_number_id IS NULL AND +state = 'pending'; END;
DROP TRIGGER IF EXISTS events_join_their_number;
