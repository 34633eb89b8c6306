//! The medicine catalogue: name, form, strength and the stock the pharmacy holds.
//!
//! Owns the `medicines` table. Emits no events (stock changes caused by dispensing are
//! published as `prescription.dispensed`). Prescriptions refer to medicines, so a
//! prescribed medicine cannot be deleted, and dispensing decrements the stock through
//! [`repo::take_stock`], the one place stock goes down.

pub mod model;
pub mod repo;
pub(crate) mod routes;

pub use routes::router;
