//! Prescriptions: medicines prescribed in a consultation, and their dispatch by the
//! pharmacy (`pending` → `given`, or `out_of_stock`, possibly with a replacement medicine).
//!
//! Owns the `prescriptions` table. Dispensing (`given`, final) takes the quantity from the
//! stock of the medicine actually given through `medicines::repo::take_stock`, whose
//! conditional UPDATE cannot drive stock below zero even under concurrent dispensing; the
//! prescription's own UPDATE is conditional on it not being `given` yet, so it is never
//! dispensed twice. Emits `prescription.added`, and for updates at most one of
//! `prescription.replaced`, `prescription.dispensed`, `prescription.out_of_stock`.

pub mod model;
pub mod repo;
pub(crate) mod routes;

pub use model::Prescription;
pub use routes::router;
