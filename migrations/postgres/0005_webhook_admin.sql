-- Audit trail of administrative actions on webhook subscriptions (who, what, when; never
-- secrets). Automatic actions (auto-pause) are recorded with actor 'system'.
CREATE TABLE webhook_audit (
    id              TEXT PRIMARY KEY,
    actor_id        TEXT,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    subscription_id TEXT,
    details         TEXT NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_audit_subscription ON webhook_audit (subscription_id, created_at);
CREATE INDEX webhook_attempts_message ON webhook_attempts (message_id);
