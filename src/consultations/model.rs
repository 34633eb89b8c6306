use crate::error::ApiError;
use crate::ids::{CampId, ConsultationId, DoctorId, PatientId};
use crate::queue::model::{Priority, QueueEntry, QueueStatus};
use crate::text_enum::text_enum;
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};
use serde_json::json;

text_enum! {
    /// A consultation's status, driven by its queue entry: `open` while the patient
    /// waits, `in_progress` while in consultation, then `completed` or `cancelled`.
    pub enum ConsultationStatus {
        Open => "open",
        InProgress => "in_progress",
        Completed => "completed",
        Cancelled => "cancelled",
    }
}

impl ConsultationStatus {
    /// The status of a consultation whose queue entry has status `queue`: the entry
    /// drives it (see the module's top comment).
    pub fn following(queue: QueueStatus) -> ConsultationStatus {
        match queue {
            QueueStatus::Waiting => ConsultationStatus::Open,
            QueueStatus::InConsultation => ConsultationStatus::InProgress,
            QueueStatus::Completed => ConsultationStatus::Completed,
            QueueStatus::Cancelled => ConsultationStatus::Cancelled,
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(
            self,
            ConsultationStatus::Completed | ConsultationStatus::Cancelled
        )
    }
}

/// A patient seen by a doctor at a camp, with its place in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Consultation {
    pub id: ConsultationId,
    pub patient_id: PatientId,
    pub book_no: String,
    pub doctor_id: DoctorId,
    pub camp_id: CampId,
    pub complaint: Option<String>,
    pub diagnosis: Option<String>,
    pub notes: Option<String>,
    pub status: ConsultationStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub queue_entry: QueueEntry,
}

pub const MAX_COMPLAINT: usize = 2000;
pub const MAX_DIAGNOSIS: usize = 2000;
pub const MAX_NOTES: usize = 10_000;

/// Body of `POST /doctors/assign-doctor`: puts a patient registered at the camp in the
/// doctor's queue.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignDoctor {
    #[schema(pattern = r"^[A-Za-z0-9_/-]{1,32}$")]
    pub book_no: String,
    #[schema(pattern = r"^doc_[0-9A-Za-z]{26}$")]
    pub doctor_id: String,
    #[schema(pattern = r"^camp_[0-9A-Za-z]{26}$")]
    pub camp_id: String,
    pub complaint: Option<String>,
    /// Default `normal`.
    pub priority: Option<Priority>,
}

impl Validate for AssignDoctor {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.optional_text("complaint", self.complaint.as_deref(), MAX_COMPLAINT);
        errors.finish()
    }
}

/// Body of `PUT /consultations/{consultation_id}`: a partial update. An absent (or null)
/// field is left as it is; an empty string clears it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsultationUpdate {
    pub complaint: Option<String>,
    pub diagnosis: Option<String>,
    pub notes: Option<String>,
}

impl Validate for ConsultationUpdate {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.optional_text("complaint", self.complaint.as_deref(), MAX_COMPLAINT);
        errors.optional_text("diagnosis", self.diagnosis.as_deref(), MAX_DIAGNOSIS);
        errors.optional_text("notes", self.notes.as_deref(), MAX_NOTES);
        errors.finish()
    }
}

/// Filters of `GET /consultations`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsultationFilter {
    pub book_no: Option<String>,
    #[param(pattern = r"^doc_[0-9A-Za-z]{26}$")]
    pub doctor_id: Option<String>,
    #[param(pattern = r"^camp_[0-9A-Za-z]{26}$")]
    pub camp_id: Option<String>,
    pub status: Option<ConsultationStatus>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// 409 `consultation_closed`: the consultation is completed or cancelled.
pub fn closed(id: &ConsultationId, status: ConsultationStatus) -> ApiError {
    ApiError::conflict(
        "consultation_closed",
        format!("consultation '{id}' is {status} and can no longer change"),
    )
    .with_details(json!({ "consultation_id": id, "status": status }))
}
