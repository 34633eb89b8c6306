-- The engine fans committed outbox messages out to subscriptions. SQLite has one writer,
-- so insertion (rowid) order is commit order and the fan-out reads unhanded messages
-- through the existing partial index webhook_messages_unrelayed in rowid order: nothing
-- to add here. (PostgreSQL needs a transaction-id horizon: see its 0008.)
SELECT 1;
