-- EHRS schema. Portable types only (TEXT, BIGINT, DOUBLE PRECISION) so that the same queries run
-- on SQLite and PostgreSQL through sqlx's Any driver. Timestamps are Unix milliseconds
-- (UTC); calendar dates are ISO-8601 TEXT; booleans are BIGINT 0/1.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    is_active     BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE medical_camps (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    location       TEXT NOT NULL,
    start_date     TEXT NOT NULL,
    end_date       TEXT NOT NULL,
    attended_count BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE patients (
    id         TEXT PRIMARY KEY,
    book_no    TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    sex        TEXT NOT NULL,
    age        BIGINT,
    birth_date TEXT,
    phone      TEXT,
    address    TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE camp_registrations (
    id            TEXT PRIMARY KEY,
    patient_id    TEXT NOT NULL REFERENCES patients(id),
    camp_id       TEXT NOT NULL REFERENCES medical_camps(id),
    registered_by TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (patient_id, camp_id)
);
CREATE INDEX camp_registrations_camp ON camp_registrations (camp_id);

CREATE TABLE vitals (
    id          TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients(id),
    camp_id     TEXT REFERENCES medical_camps(id),
    bp          TEXT,
    pulse       BIGINT,
    temperature DOUBLE PRECISION,
    weight      DOUBLE PRECISION,
    height      DOUBLE PRECISION,
    spo2        BIGINT,
    blood_sugar DOUBLE PRECISION,
    extra_note  TEXT,
    recorded_by TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX vitals_patient ON vitals (patient_id, created_at);

CREATE TABLE doctors (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    specialty  TEXT NOT NULL,
    user_id    TEXT UNIQUE REFERENCES users(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE consultations (
    id         TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(id),
    doctor_id  TEXT NOT NULL REFERENCES doctors(id),
    camp_id    TEXT NOT NULL REFERENCES medical_camps(id),
    complaint  TEXT,
    diagnosis  TEXT,
    notes      TEXT,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX consultations_patient ON consultations (patient_id);

CREATE TABLE queue_entries (
    id              TEXT PRIMARY KEY,
    consultation_id TEXT NOT NULL UNIQUE REFERENCES consultations(id),
    camp_id         TEXT NOT NULL REFERENCES medical_camps(id),
    doctor_id       TEXT NOT NULL REFERENCES doctors(id),
    status          TEXT NOT NULL,
    priority        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX queue_entries_status ON queue_entries (status, created_at);

CREATE TABLE medicines (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    form           TEXT NOT NULL,
    strength       TEXT NOT NULL,
    stock_quantity BIGINT NOT NULL CHECK (stock_quantity >= 0),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (name, form, strength)
);

CREATE TABLE prescriptions (
    id                      TEXT PRIMARY KEY,
    consultation_id         TEXT NOT NULL REFERENCES consultations(id),
    medicine_id             TEXT NOT NULL REFERENCES medicines(id),
    dosage                  TEXT NOT NULL,
    frequency               TEXT NOT NULL,
    days                    BIGINT NOT NULL,
    quantity                BIGINT NOT NULL,
    dispatch_status         TEXT NOT NULL,
    replaced_by_medicine_id TEXT REFERENCES medicines(id),
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX prescriptions_consultation ON prescriptions (consultation_id);

-- Outbound webhooks. A message is one clinical event; a delivery is that message bound
-- for one subscription; an attempt is one HTTP POST of a delivery.
CREATE TABLE webhook_subscriptions (
    id                    TEXT PRIMARY KEY,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    event_types           TEXT NOT NULL DEFAULT '[]',
    payload_mode          TEXT NOT NULL DEFAULT 'full',
    secret_enc            TEXT NOT NULL,
    previous_secret_enc   TEXT,
    previous_secret_until BIGINT,
    enabled               BIGINT NOT NULL DEFAULT 1,
    consecutive_failures  BIGINT NOT NULL DEFAULT 0,
    last_failure_at       BIGINT,
    last_success_at       BIGINT,
    paused_reason         TEXT,
    paused_at             BIGINT,
    last_sequence         BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

CREATE TABLE webhook_messages (
    id         TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    payload    TEXT,
    ids        TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_messages_created ON webhook_messages (created_at);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    message_id      TEXT NOT NULL REFERENCES webhook_messages(id),
    subscription_id TEXT NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    sequence        BIGINT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    locked_until    BIGINT,
    locked_by       TEXT,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (subscription_id, sequence)
);
-- status is 'pending' (waiting for a first attempt or a scheduled retry), 'delivered' or
-- 'exhausted'. Claims read one subscription's due rows in order through this index.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_claim ON webhook_deliveries (subscription_id, status, next_attempt_at, sequence);
CREATE INDEX webhook_deliveries_message ON webhook_deliveries (message_id);

CREATE TABLE webhook_attempts (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    message_id      TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    attempted_at    BIGINT NOT NULL,
    status_code     BIGINT,
    response_body   TEXT,
    duration_ms     BIGINT NOT NULL,
    error           TEXT
);
CREATE INDEX webhook_attempts_subscription ON webhook_attempts (subscription_id, attempted_at);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);

-- Durable background jobs (inbound webhook actions, maintenance).
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    run_at       BIGINT NOT NULL,
    locked_until BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, run_at);
