-- Idempotency-Key: the answer to a signed-in user's write, remembered for 24 h so that a
-- retry of the same request gets it back instead of writing again. The row is written in
-- the write's own transaction (see src/idempotency/). The answer is sealed under the
-- server key: it may hold patient data or a secret shown once.
CREATE TABLE idempotency_keys (
    user_id         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    -- SHA-256 of the method, the path with its query, and the body.
    fingerprint     TEXT NOT NULL,
    status          BIGINT NOT NULL,
    answer_sealed   TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
