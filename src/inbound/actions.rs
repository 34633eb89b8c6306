//! What accepted inbound events do: the two job handlers, their input checks, and the few
//! SQL statements they need on the clinical tables (`patients`, `vitals`, `medicines`).
//!
//! These writes deliberately emit no outbound event: SPEC §3 names exactly which API
//! writes emit which of the 17 events, and a partner's push is none of them. A
//! subscriber learns of the new note or stock level at the next clinical write.
//!
//! Each handler writes and completes its job in one transaction ([`jobs::finish_in`]), so
//! a lab result is appended once even if a worker dies right after the write.

use super::model::Action;
use crate::db::Tx;
use crate::error::ApiError;
use crate::ids::{MedicineId, VitalsId};
use crate::jobs::{self, Job, JobContext, JobError, Registry};
use crate::time::Timestamp;
use crate::validation::FieldErrors;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Attempts a transient failure (database trouble) gets before the job is `failed`.
pub const MAX_ATTEMPTS: i64 = 5;

/// Adds the inbound job handlers to `registry`.
pub fn register_jobs(registry: Registry) -> Registry {
    registry
        .register(Action::LabResultReady.job_kind(), lab_result_ready)
        .register(
            Action::PharmacyStockUpdate.job_kind(),
            pharmacy_stock_update,
        )
}

/// The payload of every inbound job.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobPayload<T> {
    pub inbound_event_id: String,
    pub source_id: String,
    pub event_id: String,
    pub data: T,
}

/// `data` of `lab.result.ready`.
#[derive(Debug, Deserialize)]
pub struct LabResult {
    pub book_no: String,
    pub result: String,
    pub test_name: Option<String>,
}

/// `data` of `pharmacy.stock.update`.
#[derive(Debug, Deserialize)]
pub struct StockUpdate {
    pub medicine_id: String,
    pub quantity: i64,
}

/// Checks an event's `data` before it is accepted, so a partner learns of a malformed
/// event from the 422 at once rather than from a failed job later.
pub fn check_data(action: Action, data: &Map<String, Value>) -> Result<(), ApiError> {
    let mut errors = FieldErrors::new();
    match action {
        Action::LabResultReady => {
            let lab: LabResult = parse_data(data)?;
            errors.text("data.book_no", &lab.book_no, 64);
            errors.text("data.result", &lab.result, 5000);
            errors.optional_text("data.test_name", lab.test_name.as_deref(), 200);
        }
        Action::PharmacyStockUpdate => {
            let stock: StockUpdate = parse_data(data)?;
            errors.check(
                MedicineId::parse(&stock.medicine_id).is_some(),
                "data.medicine_id",
                "must be a medicine id (med_…)",
            );
            errors.range("data.quantity", stock.quantity, 0, 1_000_000_000);
        }
    }
    errors.finish()
}

fn parse_data<T: DeserializeOwned>(data: &Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(data.clone())).map_err(|err| {
        ApiError::unprocessable(
            "invalid_event_data",
            format!("data does not fit the action: {err}"),
        )
    })
}

async fn lab_result_ready(state: JobContext, job: Job) -> Result<(), JobError> {
    let payload: JobPayload<LabResult> = job.payload_as()?;
    let lab = payload.data;
    let mut tx = state.db.begin().await?;
    let (vitals_id, note) = latest_vitals_note(&mut tx, &lab.book_no).await?;
    let line = match lab
        .test_name
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        Some(test) => format!("Lab result ({test}): {}", lab.result),
        None => format!("Lab result: {}", lab.result),
    };
    let note = match note.filter(|note| !note.is_empty()) {
        Some(existing) => format!("{existing}\n{line}"),
        None => line,
    };
    let note = fit_note(note, &payload.inbound_event_id);
    sqlx::query("UPDATE vitals SET extra_note = $2, updated_at = $3 WHERE id = $1")
        .bind(&vitals_id)
        .bind(&note)
        .bind(Timestamp::now())
        .execute(tx.conn())
        .await?;
    finish(tx, &job).await
}

/// Keeps an appended note within the limit the API enforces on `extra_note`
/// ([`crate::vitals::model::MAX_NOTE`] characters). Past it the end is cut and a marker
/// says where the whole result is: the inbound event keeps the body as received. Why cut
/// rather than fail the job: the start of the result and every earlier note stay in
/// front of the clinician, and nothing is lost.
pub fn fit_note(note: String, inbound_event_id: &str) -> String {
    use crate::vitals::model::MAX_NOTE;
    if note.chars().count() <= MAX_NOTE {
        return note;
    }
    let marker = format!(" [truncated: full text in inbound event {inbound_event_id}]");
    let keep = MAX_NOTE.saturating_sub(marker.chars().count());
    let mut cut: String = note.chars().take(keep).collect();
    cut.push_str(&marker);
    cut
}

/// The patient's most recent vitals row (locked) and its note, or a permanent error naming
/// what is missing.
async fn latest_vitals_note(
    tx: &mut Tx,
    book_no: &str,
) -> Result<(VitalsId, Option<String>), JobError> {
    let patient: Option<String> = sqlx::query_scalar("SELECT id FROM patients WHERE book_no = $1")
        .bind(book_no)
        .fetch_optional(tx.conn())
        .await?;
    let patient = patient
        .ok_or_else(|| JobError::permanent(format!("no patient with book_no '{book_no}'")))?;
    let sql = format!(
        "SELECT id, extra_note FROM vitals WHERE patient_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1{}",
        tx.for_update()
    );
    let latest: Option<(VitalsId, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&patient)
        .fetch_optional(tx.conn())
        .await?;
    latest.ok_or_else(|| {
        JobError::permanent(format!(
            "patient with book_no '{book_no}' has no vitals to attach the lab result to"
        ))
    })
}

async fn pharmacy_stock_update(state: JobContext, job: Job) -> Result<(), JobError> {
    let payload: JobPayload<StockUpdate> = job.payload_as()?;
    let stock = payload.data;
    if stock.quantity < 0 {
        return Err(JobError::permanent("quantity must not be negative"));
    }
    let mut tx = state.db.begin().await?;
    let updated =
        sqlx::query("UPDATE medicines SET stock_quantity = $2, updated_at = $3 WHERE id = $1")
            .bind(&stock.medicine_id)
            .bind(stock.quantity)
            .bind(Timestamp::now())
            .execute(tx.conn())
            .await?;
    if updated.rows_affected() == 0 {
        return Err(JobError::permanent(format!(
            "no medicine with id '{}'",
            stock.medicine_id
        )));
    }
    finish(tx, &job).await
}

/// Completes the job in the handler's transaction and commits both. If another worker has
/// taken the job over meanwhile, nothing is committed.
async fn finish(mut tx: Tx, job: &Job) -> Result<(), JobError> {
    if !jobs::finish_in(&mut tx, job).await? {
        return Err(JobError::retryable(
            "the job's lease was lost; another worker owns it now",
        ));
    }
    tx.commit().await?;
    Ok(())
}
