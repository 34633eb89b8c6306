use crate::ids::MedicineId;
use crate::time::Timestamp;
use crate::validation::{FieldErrors, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Medicine {
    pub id: MedicineId,
    #[schema(example = "Paracetamol")]
    pub name: String,
    #[schema(example = "tablet")]
    pub form: String,
    #[schema(example = "500 mg")]
    pub strength: String,
    /// Units in stock; never negative.
    pub stock_quantity: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Body of `POST /medicines` and `PUT /medicines/{medicine_id}` (a full replacement).
/// Text is stored trimmed, so " Paracetamol" and "Paracetamol" are the same medicine.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MedicineInput {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub form: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub strength: String,
    #[schema(minimum = 0, maximum = 1000000000)]
    pub stock_quantity: i64,
}

/// Largest stock a medicine may hold (a sanity bound against typing errors).
pub const MAX_STOCK: i64 = 1_000_000_000;

impl MedicineInput {
    pub fn trimmed(self) -> Self {
        MedicineInput {
            name: self.name.trim().to_string(),
            form: self.form.trim().to_string(),
            strength: self.strength.trim().to_string(),
            stock_quantity: self.stock_quantity,
        }
    }
}

impl Validate for MedicineInput {
    fn validate(&self) -> Result<(), crate::validation::FieldErrors> {
        let mut errors = FieldErrors::new();
        errors.text("name", &self.name, 200);
        errors.text("form", &self.form, 100);
        errors.text("strength", &self.strength, 100);
        errors.range("stock_quantity", self.stock_quantity, 0, MAX_STOCK);
        errors.finish()
    }
}

/// Filters of `GET /medicines`.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MedicineFilter {
    /// Only medicines whose name contains this text (case-insensitive).
    pub q: Option<String>,
    /// `true`: only medicines with stock; `false`: only those with none.
    pub in_stock: Option<bool>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}
