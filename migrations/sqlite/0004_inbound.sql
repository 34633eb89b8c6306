-- Inbound webhooks: partner systems that push signed events in, and every event they
-- sent. The secret is stored sealed (XChaCha20-Poly1305 under EHRS_SECRET_KEY), never in
-- plain text, since the server must compute HMACs with it.
CREATE TABLE inbound_sources (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    allowed_event_types TEXT NOT NULL DEFAULT '[]',
    secret_enc          TEXT NOT NULL,
    is_active           INTEGER NOT NULL DEFAULT 1,
    action_mapping      TEXT NOT NULL DEFAULT '{}',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

-- One row per accepted event. No foreign keys: the history outlives a deleted source,
-- and job rows may be pruned by maintenance; readers LEFT JOIN both.
CREATE TABLE inbound_events (
    id          TEXT PRIMARY KEY,
    source_id   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    action      TEXT NOT NULL,
    payload     TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (source_id, event_id)
);
CREATE INDEX inbound_events_received ON inbound_events (received_at);
CREATE INDEX inbound_events_job ON inbound_events (job_id);
