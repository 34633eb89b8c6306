use crate::ids::{DoctorId, UserId};
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};

/// A doctor who consults at camps, optionally linked to the user account they sign in with.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Doctor {
    pub id: DoctorId,
    pub name: String,
    #[schema(example = "General Medicine")]
    pub specialty: String,
    /// The user account of this doctor, if any (one doctor per user).
    pub user_id: Option<UserId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub const MAX_NAME: usize = 200;
pub const MAX_SPECIALTY: usize = 100;

/// Body of `POST /doctors` and `PUT /doctors/{doctor_id}`. `PUT` replaces the whole
/// record: leaving `user_id` out (or `null`) unlinks the user.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoctorInput {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(
        example = "General Medicine",
        min_length = 1,
        max_length = 100,
        pattern = r"\S"
    )]
    pub specialty: String,
    /// An existing user not linked to another doctor.
    #[schema(
        example = "usr_01jdq3v8m2x7c9k4t6w0y5z1ab",
        pattern = r"^usr_[0-9A-Za-z]{26}$"
    )]
    pub user_id: Option<String>,
}

impl Validate for DoctorInput {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.text("name", &self.name, MAX_NAME);
        errors.text("specialty", &self.specialty, MAX_SPECIALTY);
        errors.finish()
    }
}

/// Filters of `GET /doctors`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DoctorFilter {
    /// Only doctors of this specialty (case-insensitive, whole value).
    pub specialty: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}
