-- The engine fans committed outbox messages out to subscriptions (one row per clinical
-- write; no per-subscription work in the writer's transaction). Ids from a sequence are
-- not commit-ordered on PostgreSQL, so the fan-out reads a message only once every
-- transaction that could still commit below it has finished: `txid` is the writing
-- transaction's id, read below pg_snapshot_xmin(pg_current_snapshot()); `position`
-- orders the messages of one transaction. See src/webhooks/delivery/fanout.rs.
ALTER TABLE webhook_messages ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE webhook_messages ADD COLUMN position BIGSERIAL;
CREATE INDEX webhook_messages_fanout ON webhook_messages (txid, position) WHERE relayed_at IS NULL;
