//! Users, roles, password hashing, tokens and the extractors that enforce them.
//!
//! Owns the `users` table. Logins are throttled ([`throttle`]) and hashed on a bounded
//! pool ([`Passwords`]); tokens carry the user's token generation, bumped to revoke them.
//! Other modules learn who is calling through [`CurrentUser`] and ask [`CurrentUser::require`] with a [`Permission`]; the permission table lives in
//! one place ([`Permission::allows`]) and is mirrored in README.md.

mod extract;
pub mod initial_password;
mod jwt;
mod login;
mod model;
mod password;
mod permissions;
pub mod policy;
pub mod repo;
mod require;
pub(crate) mod routes;
pub mod throttle;

pub use extract::{ClientAddr, CurrentUser, bearer_of};
pub use jwt::TokenIssuer;
pub use model::{NewUser, Role, User};
pub use password::{PasswordError, Passwords, hash_password, verify_password};
pub use permissions::Permission;
pub use require::{PermissionMarker, Require, can};
pub use routes::router;
pub use throttle::{LoginThrottle, ThrottleSettings};

/// What the auth routes and extractors need, taken from the application's state with
/// `FromRef`: auth depends on nothing above it, and any state that holds one can check
/// tokens and roles. Every authenticated request takes one, so it is one reference count
/// to clone.
#[derive(Clone)]
pub struct AuthState(std::sync::Arc<Auth>);

/// The parts of an [`AuthState`].
pub struct Auth {
    pub db: crate::db::Db,
    pub tokens: TokenIssuer,
    /// The bounded password hashing pool (logins, password changes).
    pub passwords: Passwords,
    /// Failed-login records per username and per client address.
    pub logins: LoginThrottle,
    /// Where the first admin's generated password is kept until they change it
    /// ([`initial_password`]).
    pub initial_password: std::path::PathBuf,
}

impl AuthState {
    pub fn new(auth: Auth) -> AuthState {
        AuthState(std::sync::Arc::new(auth))
    }
}

impl std::ops::Deref for AuthState {
    type Target = Auth;

    fn deref(&self) -> &Auth {
        &self.0
    }
}
