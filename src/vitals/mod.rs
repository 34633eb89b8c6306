//! Vitals: the measurements taken for a patient (many per patient, newest first).
//!
//! Owns the `vitals` table; reads patients and camps through their modules' repos.
//! Emits `vitals.recorded`. [`repo::append_note_to_latest`] lets the inbound
//! `lab.result.ready` job attach a lab result to the patient's latest vitals.

pub(crate) mod model;
pub(crate) mod repo;
pub(crate) mod routes;

pub use model::{MAX_NOTE, Vitals, VitalsInput};
pub use routes::router;
