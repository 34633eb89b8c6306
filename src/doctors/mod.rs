//! Doctors: who consults at camps, with an optional link to their user account.
//!
//! Owns the `doctors` table (reads `users` only to check a link). Emits no events.
//! Other modules read a doctor with [`repo::get`] (or [`repo::get_tx`] in a write
//! transaction). `POST /doctors/assign-doctor` belongs to `consultations`, not here.

pub mod model;
pub mod repo;
pub(crate) mod routes;

pub use routes::router;
