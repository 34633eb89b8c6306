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
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub location: String,
    #[schema(format = Date, example = "2026-11-28", pattern = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub start_date: String,
    #[schema(format = Date, example = "2026-11-29", pattern = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub end_date: String,
}

impl Validate for CampInput {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
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

/// The largest attendance a camp may record (a sanity bound against typing errors), set
/// directly or reached by `delta`.
pub const MAX_ATTENDED: i64 = 1_000_000;

/// Body of `POST /medical-camps/{camp_id}/update-attended-count`: either set the count
/// (`attended_count`) or change it by `delta` (e.g. `1` as each patient arrives).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttendanceUpdate {
    /// 0 to 1000000. Give exactly one of `attended_count` and `delta`.
    #[schema(minimum = 0, maximum = 1000000)]
    pub attended_count: Option<i64>,
    #[schema(minimum = -1000000, maximum = 1000000)]
    pub delta: Option<i64>,
}

impl Validate for AttendanceUpdate {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        match (self.attended_count, self.delta) {
            (Some(count), None) => errors.range("attended_count", count, 0, MAX_ATTENDED),
            (None, Some(delta)) => errors.range("delta", delta, -MAX_ATTENDED, MAX_ATTENDED),
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
    #[param(format = Date, pattern = r"^(19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub on_date: Option<String>,
    /// Only camps whose location contains this text (case-insensitive).
    pub location: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}
