//! Consultations: a patient seen by a doctor at a camp, with complaint, diagnosis and notes.
//!
//! Owns the `consultations` table. `POST /doctors/assign-doctor` creates a consultation
//! together with its queue entry (the `queue` module owns that table and the status
//! machine), and `PUT /queue/status-update` moves both ([`queue_moves`]): this room sits
//! above the queue, which never reaches up here. A consultation's `status` is driven by
//! its queue entry and never set directly: `open` while the entry is `waiting`, `in_progress` while `in_consultation`,
//! then `completed` or `cancelled` like the entry. A completed or cancelled consultation
//! can no longer be edited (409 `consultation_closed`).
//!
//! Rules: the patient must be registered at the camp, and may have at most one open
//! (not completed, not cancelled) consultation per camp. Emits `consultation.created`
//! and `consultation.updated` (not for an update that changes nothing);
//! `consultation.completed` comes from the queue's status update.
//!
//! Patients, doctors and registrations belong to other modules; this one only reads their
//! tables, in [`repo`].

pub mod model;
mod queue_moves;
pub mod repo;
pub(crate) mod routes;

pub use model::Consultation;
pub use routes::router;
