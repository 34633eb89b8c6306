-- Consultations, queue and prescriptions.
-- At most one open (not completed, not cancelled) consultation per patient and camp: the
-- API checks it under a lock; this index makes it a rule of the data too.
CREATE UNIQUE INDEX consultations_one_open ON consultations (patient_id, camp_id)
    WHERE status IN ('open', 'in_progress');
CREATE INDEX queue_entries_camp ON queue_entries (camp_id, status);
-- The pharmacy's worklist: prescriptions by dispatch status, oldest first.
CREATE INDEX prescriptions_dispatch ON prescriptions (dispatch_status, created_at);
