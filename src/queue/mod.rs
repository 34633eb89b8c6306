//! The queue: each consultation's place in its doctor's line at a camp.
//!
//! Owns the `queue_entries` table and the status machine. Entries are created by
//! `POST /doctors/assign-doctor`, and moved by `PUT /queue/status-update`, both in the
//! `consultations` module, since each also writes the consultation (that room sits above
//! this one):
//!
//! ```text
//! waiting ──> in_consultation ──> completed
//!    │  <──────────┘  │
//!    └──> cancelled <─┘
//! ```
//!
//! Anything else (the same status again, or leaving completed/cancelled) is 409
//! `invalid_transition`. Every move also sets the consultation's status (see
//! `consultations::model::ConsultationStatus::following`), emits `queue.status_changed`, and a move
//! to `completed` also emits `consultation.completed`. Priority changes emit
//! `queue.priority_changed`. The status UPDATE is conditional on the status the handler
//! read, so two concurrent moves cannot both succeed.

pub mod model;
pub mod repo;
pub(crate) mod routes;

pub use model::{QueueEntry, QueueStatus};
pub use routes::router;
