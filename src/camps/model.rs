use crate::ids::CampId;
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Camp {
    pub id: CampId,
    pub name: String,
    pub location: String,
    #[schema(format = Date, example = "2026-11-28")]
    pub start_date: String,
    #[schema(format = Date, example = "2026-11-29")]
    pub end_date: String,
    /// Patients who attended, as counted at the camp.
    pub attended_count: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Body of `POST /medical-camps` and `PUT /medical-camps/{camp_id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampInput {
    pub name: String,
    pub location: String,
    #[schema(format = Date, example = "2026-11-28")]
    pub start_date: String,
    #[schema(format = Date, example = "2026-11-29")]
    pub end_date: String,
}

impl Validate for CampInput {
    fn validate(&self) -> Result<(), crate::error::ApiError> {
        let mut errors = FieldErrors::new();
        errors.text("name", &self.name, 200);
        errors.text("location", &self.location, 500);
        let start = errors.date("start_date", &self.start_date);
        let end = errors.date("end_date", &self.end_date);
        if let (Some(start), Some(end)) = (start, end) {
            errors.check(end >= start, "end_date", "must not be before start_date");
        }
        errors.finish()
    }
}

/// Body of `POST /medical-camps/{camp_id}/update-attended-count`: either set the count
/// (`attended_count`) or change it by `delta` (e.g. `1` as each patient arrives).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttendanceUpdate {
    pub attended_count: Option<i64>,
    pub delta: Option<i64>,
}

impl Validate for AttendanceUpdate {
    fn validate(&self) -> Result<(), crate::error::ApiError> {
        let mut errors = FieldErrors::new();
        match (self.attended_count, self.delta) {
            (Some(count), None) => errors.range("attended_count", count, 0, 1_000_000),
            (None, Some(delta)) => errors.range("delta", delta, -1_000_000, 1_000_000),
            (None, None) => errors.add("attended_count", "is required when delta is not given"),
            (Some(_), Some(_)) => {
                errors.add("attended_count", "must not be given together with delta")
            }
        }
        errors.finish()
    }
}

/// Filters of `GET /medical-camps`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CampFilter {
    /// Only camps running on this date (YYYY-MM-DD).
    pub on_date: Option<String>,
    /// Only camps whose location contains this text (case-insensitive).
    pub location: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}
