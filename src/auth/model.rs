use crate::ids::UserId;
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Doctor,
    Nurse,
    Pharmacist,
    Volunteer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Doctor,
        Role::Nurse,
        Role::Pharmacist,
        Role::Volunteer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Doctor => "doctor",
            Role::Nurse => "nurse",
            Role::Pharmacist => "pharmacist",
            Role::Volunteer => "volunteer",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(pattern = r"^[A-Za-z0-9._-]{3,64}$")]
    pub username: String,
    /// 8 to 256 characters; see the password policy.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    pub role: Role,
}

impl Validate for NewUser {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        validate_username(&mut errors, &self.username);
        validate_password(&mut errors, &self.password, &self.username);
        errors.finish()
    }
}

/// `PATCH /api/v1/users/{id}`: any subset of the fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// 8 to 256 characters; see the password policy.
    #[schema(min_length = 8, max_length = 256)]
    pub password: Option<String>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

impl UserUpdate {
    /// Checks the update against the user it applies to (the password policy needs the
    /// username).
    pub fn validate_for(&self, current: &User) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if let Some(password) = &self.password {
            validate_password(&mut errors, password, &current.username);
        }
        errors.finish()
    }

    /// True when the update could take away someone's admin role (before knowing whom):
    /// the admins are then locked before the user's row (see `repo::lock`).
    pub fn may_remove_admin(&self) -> bool {
        self.role.is_some_and(|role| role != Role::Admin) || self.is_active == Some(false)
    }

    /// True when `current` is an active admin and would no longer be one afterwards.
    pub fn removes_admin(&self, current: &User) -> bool {
        let was = current.role == Role::Admin && current.is_active;
        let will = self.role.unwrap_or(current.role) == Role::Admin
            && self.is_active.unwrap_or(current.is_active);
        was && !will
    }

    /// True when the update must end the user's signed-in sessions: a new password, a
    /// different role, or a deactivation.
    pub fn revokes_tokens(&self, current: &User) -> bool {
        self.password.is_some()
            || self.role.is_some_and(|role| role != current.role)
            || (self.is_active == Some(false) && current.is_active)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

fn validate_username(errors: &mut FieldErrors, username: &str) {
    let ok = (3..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    errors.check(
        ok,
        "username",
        "must be 3 to 64 characters of letters, digits, '.', '_' or '-'",
    );
}

fn validate_password(errors: &mut FieldErrors, password: &str, username: &str) {
    if let Some(reason) = super::policy::problem(password, username) {
        errors.add("password", reason);
    }
}
