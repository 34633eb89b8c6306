//! The integration-test binary. Every test written with [`db_test!`] runs twice: once on a
//! fresh SQLite file and once on a fresh PostgreSQL database, through the real HTTP server.

#[macro_use]
mod support;

mod access;
mod auth;
mod auth_process;
pub(crate) mod backup;
mod camp_network;
mod camps;
mod catch_up;
mod cli;
mod conformance;
mod connections;
mod consultations;
mod crash;
mod delivery;
mod doctors;
mod encryption;
mod fake_svix;
mod fhir;
mod hardening;
mod heartbeat;
mod hostile;
mod idempotency;
mod inbound;
mod login_throttle;
mod medicines;
mod messages;
mod openapi;
mod operations;
mod patients;
mod portal;
mod prescriptions;
mod queue;
mod scripts;
mod ssrf;
mod startup;
mod svix_backend;
mod vitals;
mod webhook_admin;
