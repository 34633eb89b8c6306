//! Users, roles, password hashing, tokens and the extractors that enforce them.
//!
//! Owns the `users` table. Other modules learn who is calling through [`CurrentUser`]
//! and ask [`CurrentUser::require`] with a [`Permission`]; the permission table lives in
//! one place ([`Permission::allows`]) and is mirrored in README.md.

mod extract;
mod jwt;
mod model;
mod password;
mod permissions;
pub mod repo;
mod require;
pub(crate) mod routes;

pub use extract::CurrentUser;
pub use jwt::TokenIssuer;
pub use model::{NewUser, Role, User};
pub use password::{hash_password, verify_password};
pub use permissions::Permission;
pub use require::{PermissionMarker, Require, can};
pub use routes::router;
