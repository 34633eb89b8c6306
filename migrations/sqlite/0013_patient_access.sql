-- Who saw or changed which patient's record (src/access). One row per answer of the
-- clinical API that showed patients' data, with the book numbers it showed (a JSON array,
-- in the order shown); patient_access_patients finds the rows by book number. Rows are
-- only ever added, and removed by the retention (EHRS_ACCESS_AUDIT_RETENTION): no route
-- changes or deletes them.
--
-- Written on every clinical request, so each row costs as few b-tree inserts as can
-- still answer the report: ids are ULIDs, so the id orders rows by time and time
-- ranges (the report's from/to, the retention) are id ranges, with no index on `at`.
CREATE TABLE patient_access (
    id          TEXT PRIMARY KEY,
    at          INTEGER NOT NULL,
    user_id     TEXT NOT NULL,
    username    TEXT NOT NULL,
    role        TEXT NOT NULL,
    action      TEXT NOT NULL,
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    book_nos    TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX patient_access_user ON patient_access (user_id, id);

CREATE TABLE patient_access_patients (
    book_no   TEXT NOT NULL,
    access_id TEXT NOT NULL,
    PRIMARY KEY (book_no, access_id)
) WITHOUT ROWID;
