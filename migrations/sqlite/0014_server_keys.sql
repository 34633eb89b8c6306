-- The server's own keys (the token signing secret and the key that seals stored webhook
-- secrets) when the database is encrypted: kept inside it, so that no key lies in plain
-- form beside it. A plain database keeps them in the data dir's key files instead, and
-- PostgreSQL takes them from the environment, so there the table stays empty.
CREATE TABLE server_keys (
    name TEXT PRIMARY KEY NOT NULL,
    -- base64
    value TEXT NOT NULL
);
