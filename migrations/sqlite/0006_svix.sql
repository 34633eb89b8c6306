-- The Svix backend (WEBHOOK_BACKEND=svix).

-- When the relay handed the message to Svix. Under the embedded engine a message is
-- written already "relayed" (there is nothing to hand over), so the partial index below
-- only ever holds the messages still waiting for Svix.
ALTER TABLE webhook_messages ADD COLUMN relayed_at INTEGER;
UPDATE webhook_messages SET relayed_at = created_at;
CREATE INDEX webhook_messages_unrelayed ON webhook_messages (id) WHERE relayed_at IS NULL;

-- Delivery health of each Svix endpoint, driven by Svix operational webhooks (the Svix
-- server keeps no consecutive-failure count we could read).
CREATE TABLE svix_endpoint_health (
    subscription_id TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_failure_at INTEGER,
    last_success_at INTEGER,
    auto_paused INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT,
    paused_at INTEGER,
    -- When the endpoint was last disabled (by an admin or automatically): re-enabling
    -- replays what Svix skipped since.
    disabled_at INTEGER,
    updated_at INTEGER NOT NULL
);

-- Operational webhooks already applied, by their webhook id (Svix retries them too).
CREATE TABLE svix_ops_seen (
    webhook_id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
);
