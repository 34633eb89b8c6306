//! Patients: the person behind a camp book number, and their registrations at camps.
//!
//! Owns the `patients` and `camp_registrations` tables. Emits `patient.registered`,
//! `patient.updated` and `patient.camp_registered`. Other modules find a patient with
//! [`repo::get_by_book_no`] (a plain read) or [`repo::get_by_book_no_tx`] (inside their
//! write transaction).

pub(crate) mod model;
pub(crate) mod registrations;
pub(crate) mod repo;
pub(crate) mod routes;

use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;

pub use model::{BookNo, NewPatient, Patient, PatientPatch, Registration, Sex};

pub fn router() -> OpenApiRouter<AppState> {
    routes::router().merge(registrations::router())
}
