use crate::ids::{CampId, ConsultationId, DoctorId, PatientId, QueueEntryId};
use crate::text_enum::text_enum;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

text_enum! {
    /// Where a patient is in the queue.
    pub enum QueueStatus {
        Waiting => "waiting",
        InConsultation => "in_consultation",
        Completed => "completed",
        Cancelled => "cancelled",
    }
}

text_enum! {
    /// Who is seen first: emergency, then high, then normal (then the oldest entry).
    pub enum Priority {
        Normal => "normal",
        High => "high",
        Emergency => "emergency",
    }
}

impl QueueStatus {
    /// The statuses an entry may move to from this one. Completed and cancelled are final;
    /// a patient called in by mistake may be sent back to waiting.
    pub fn allowed_next(self) -> &'static [QueueStatus] {
        use QueueStatus::*;
        match self {
            Waiting => &[InConsultation, Cancelled],
            InConsultation => &[Completed, Cancelled, Waiting],
            Completed | Cancelled => &[],
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(self, QueueStatus::Completed | QueueStatus::Cancelled)
    }
}

/// A patient's place in a doctor's queue at a camp (one per consultation). The patient's
/// book number and name come along so a queue screen needs no second request.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct QueueEntry {
    pub id: QueueEntryId,
    pub consultation_id: ConsultationId,
    pub camp_id: CampId,
    pub doctor_id: DoctorId,
    pub patient_id: PatientId,
    pub book_no: String,
    pub patient_name: String,
    pub status: QueueStatus,
    pub priority: Priority,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Data of `queue.status_changed`: the entry after the write and the status it left.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueStatusChanged<'a> {
    #[serde(flatten)]
    pub entry: &'a QueueEntry,
    pub previous_status: QueueStatus,
}

/// Data of `queue.priority_changed`: the entry after the write and its former priority.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueuePriorityChanged<'a> {
    #[serde(flatten)]
    pub entry: &'a QueueEntry,
    pub previous_priority: Priority,
}

/// Body of `PUT /queue/status-update`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    #[schema(pattern = r"^que_[0-9A-Za-z]{26}$")]
    pub queue_entry_id: String,
    pub status: QueueStatus,
}

/// Body of `PUT /queue/priority`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriorityUpdate {
    #[schema(pattern = r"^que_[0-9A-Za-z]{26}$")]
    pub queue_entry_id: String,
    pub priority: Priority,
}

/// Filters of `GET /queue`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueFilter {
    #[param(pattern = r"^camp_[0-9A-Za-z]{26}$")]
    pub camp_id: Option<String>,
    #[param(pattern = r"^doc_[0-9A-Za-z]{26}$")]
    pub doctor_id: Option<String>,
    pub status: Option<QueueStatus>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Reads an optional id from a query parameter: absent is fine, malformed is a 422 naming
/// the parameter (a malformed id could only ever match nothing, which would hide a typo).
pub fn filter_id<T>(
    raw: Option<&str>,
    parameter: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, crate::error::ApiError> {
    match raw {
        None => Ok(None),
        Some(raw) => parse(raw).map(Some).ok_or_else(|| {
            crate::validation::FieldErrors::single(
                parameter,
                format!(
                    "must be a well-formed id, not the text {}",
                    crate::validation::words::quoted(raw)
                ),
            )
            .into()
        }),
    }
}
