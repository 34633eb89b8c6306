use crate::ids::{ConsultationId, MedicineId, PrescriptionId};
use crate::text_enum::text_enum;
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};

text_enum! {
    /// Whether the pharmacy has handed the medicine over. `given` is final.
    pub enum DispatchStatus {
        Pending => "pending",
        Given => "given",
        OutOfStock => "out_of_stock",
    }
}

/// A medicine prescribed in a consultation, and what the pharmacy did with it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Prescription {
    pub id: PrescriptionId,
    pub consultation_id: ConsultationId,
    /// The patient's book number (from the consultation).
    pub book_no: String,
    pub medicine_id: MedicineId,
    #[schema(example = "1 tablet")]
    pub dosage: String,
    #[schema(example = "twice a day")]
    pub frequency: String,
    pub days: i64,
    /// Units to hand over; dispensing takes them from stock.
    pub quantity: i64,
    pub dispatch_status: DispatchStatus,
    /// The medicine given instead of the prescribed one, if the pharmacy replaced it.
    pub replaced_by_medicine_id: Option<MedicineId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Body of `POST /consultations/{consultation_id}/prescription`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrescription {
    #[schema(pattern = r"^med_[0-9A-Za-z]{26}$")]
    pub medicine_id: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub dosage: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub frequency: String,
    /// 1 to 365.
    #[schema(minimum = 1, maximum = 365)]
    pub days: i64,
    /// 1 to 10000.
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: i64,
}

impl Validate for NewPrescription {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.text("dosage", &self.dosage, 100);
        errors.text("frequency", &self.frequency, 100);
        errors.range("days", self.days, 1, 365);
        errors.range("quantity", self.quantity, 1, 10_000);
        errors.finish()
    }
}

/// Body of `PUT /consultations/prescriptions/{id}`: at least one field. A null field is
/// the same as an absent one (a replacement cannot be cleared, only replaced again).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrescriptionUpdate {
    pub dispatch_status: Option<DispatchStatus>,
    #[schema(pattern = r"^med_[0-9A-Za-z]{26}$")]
    pub replaced_by_medicine_id: Option<String>,
}

impl Validate for PrescriptionUpdate {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.check(
            self.dispatch_status.is_some() || self.replaced_by_medicine_id.is_some(),
            "dispatch_status",
            "is required when replaced_by_medicine_id is not given",
        );
        errors.finish()
    }
}

/// Filters of `GET /prescriptions` (the pharmacy's worklist: `?dispatch_status=pending`).
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PrescriptionFilter {
    pub dispatch_status: Option<DispatchStatus>,
    pub book_no: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}
