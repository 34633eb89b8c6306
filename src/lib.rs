// `ApiError` carries a `serde_json::Value`; test builds turn on serde_json's
// `preserve_order` (through the portal tests' WebDriver client), which makes `Value` an
// IndexMap and every `Result<_, ApiError>` cross clippy's 128-byte line. Errors are the
// cold path; boxing them everywhere would buy nothing measurable.
#![allow(clippy::result_large_err)]
//! EHRS: electronic health records for free medical camps, with first-class webhooks.
//!
//! The crate is a library plus the `ehrs` binary (`src/main.rs`). Modules are split by
//! domain; each clinical module owns its routes, models and SQL, and talks to the webhook
//! machinery through one call, [`outbound::emit`].

pub mod access;
pub mod application;
pub mod auth;
pub mod backup;
pub(crate) mod camps;
pub mod config;
pub(crate) mod consultations;
pub mod crypto;
pub mod db;
pub(crate) mod delivery;
pub mod demo;
pub(crate) mod doctors;
pub mod error;
pub mod failure;
pub(crate) mod health;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod inbound;
pub mod jobs;
pub(crate) mod medicines;
pub mod memory;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub mod outbound;
pub mod patients;
pub(crate) mod portal;
pub(crate) mod prescriptions;
pub(crate) mod queue;
pub mod router;
pub mod server;
pub mod state;
pub(crate) mod svix;
pub mod tasks;
pub mod testing;
mod text_enum;
pub mod time;
pub mod validation;
pub mod vitals;
