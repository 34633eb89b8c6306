-- Heartbeats: after heartbeat_interval_ms without a delivery, a subscription receives a
-- webhook.heartbeat (see the delivery engine's heartbeat.rs). last_heartbeat_at keeps
-- one heartbeat per interval even when the receiver does not answer.
ALTER TABLE webhook_subscriptions ADD COLUMN heartbeat_interval_ms BIGINT;
ALTER TABLE webhook_subscriptions ADD COLUMN last_heartbeat_at BIGINT;
