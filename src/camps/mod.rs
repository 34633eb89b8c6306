//! Medical camps: where and when a camp runs, and how many patients attended.
//!
//! Owns the `medical_camps` table. Emits `camp.created`, `camp.updated`, `camp.deleted`
//! and `camp.attendance_updated`.

pub mod model;
pub mod repo;
pub(crate) mod routes;

pub use model::Camp;
pub use routes::router;
