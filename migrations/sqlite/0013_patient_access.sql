-- Who saw or changed which patient's record (src/access). One row per answer of the
-- clinical API that showed patients' data; its book numbers, in the order shown, in
-- patient_access_patients. Rows are only ever added, and removed by the retention
-- (EHRS_ACCESS_AUDIT_RETENTION): no route changes or deletes them.
CREATE TABLE patient_access (
    id          TEXT PRIMARY KEY,
    at          INTEGER NOT NULL,
    user_id     TEXT NOT NULL,
    username    TEXT NOT NULL,
    role        TEXT NOT NULL,
    action      TEXT NOT NULL,
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,
    client_addr TEXT NOT NULL
);
CREATE INDEX patient_access_at ON patient_access (at);
CREATE INDEX patient_access_user ON patient_access (user_id, id);
CREATE INDEX patient_access_username ON patient_access (lower(username), id);

CREATE TABLE patient_access_patients (
    access_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    book_no   TEXT NOT NULL,
    PRIMARY KEY (access_id, position)
);
CREATE INDEX patient_access_patients_book_no ON patient_access_patients (book_no, access_id);
