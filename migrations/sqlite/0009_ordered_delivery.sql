-- A subscription may ask for ordered delivery: one delivery in flight at a time, in
-- sequence order, a failing one holding back the later ones until it is delivered or
-- exhausted (see the delivery engine's lanes.rs and claim.rs).
ALTER TABLE webhook_subscriptions ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;
