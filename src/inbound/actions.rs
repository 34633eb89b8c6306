//! What accepted inbound events do: one typed job kind per action, its input checks, and
//! its handler. The handlers write through the clinical rooms' own repo functions
//! (`vitals::repo::append_note_to_latest`; `medicines::repo::update`, the function
//! `PUT /medicines/{medicine_id}` uses), never with SQL of their own.
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
use crate::ids::{JobId, MedicineId};
use crate::jobs::{self, Job, JobContext, JobError, JobKind, Registry};
use crate::medicines::{self, model::MedicineInput};
use crate::patients::BookNo;
use crate::validation::FieldErrors;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Attempts a transient failure (database trouble) gets before the job is `failed`.
pub const MAX_ATTEMPTS: i64 = 5;

/// Adds the inbound job kinds to `registry`.
pub fn register_jobs(registry: Registry) -> Registry {
    registry.with::<LabResultJob>().with::<StockUpdateJob>()
}

/// The payload of every inbound job: which received event it carries out, and its data.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobPayload<T> {
    pub inbound_event_id: String,
    pub source_id: String,
    pub event_id: String,
    pub data: T,
}

impl<T> JobPayload<T> {
    /// The same event with other data.
    fn with<U>(self, data: U) -> JobPayload<U> {
        JobPayload {
            inbound_event_id: self.inbound_event_id,
            source_id: self.source_id,
            event_id: self.event_id,
            data,
        }
    }
}

/// `data` of `lab.result.ready`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LabResult {
    pub book_no: String,
    pub result: String,
    pub test_name: Option<String>,
}

/// `data` of `pharmacy.stock.update`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StockUpdate {
    pub medicine_id: String,
    pub quantity: i64,
}

/// An event's `data`, checked for its action and ready to queue.
#[derive(Debug)]
pub enum Checked {
    LabResult(LabResult),
    StockUpdate(StockUpdate),
}

/// Checks an event's `data` before it is accepted, so a partner learns of a malformed
/// event from the 422 at once rather than from a failed job later.
pub fn check_data(action: Action, data: &Map<String, Value>) -> Result<Checked, ApiError> {
    let mut errors = FieldErrors::new();
    let checked = match action {
        Action::LabResultReady => {
            let lab: LabResult = parse_data(data)?;
            errors.text("data.book_no", &lab.book_no, 64);
            errors.multiline_text("data.result", &lab.result, 5000);
            errors.optional_text("data.test_name", lab.test_name.as_deref(), 200);
            Checked::LabResult(lab)
        }
        Action::PharmacyStockUpdate => {
            let stock: StockUpdate = parse_data(data)?;
            errors.check(
                MedicineId::parse(&stock.medicine_id).is_some(),
                "data.medicine_id",
                "must be a medicine id (med_…)",
            );
            errors.range("data.quantity", stock.quantity, 0, 1_000_000_000);
            Checked::StockUpdate(stock)
        }
    };
    errors.finish()?;
    Ok(checked)
}

/// Queues the job of a checked event inside `tx` (with the received-event row).
pub async fn enqueue<T>(
    tx: &mut Tx,
    received: JobPayload<T>,
    data: Checked,
) -> Result<JobId, sqlx::Error> {
    match data {
        Checked::LabResult(lab) => {
            LabResultJob::enqueue(tx, &received.with(lab), MAX_ATTEMPTS).await
        }
        Checked::StockUpdate(stock) => {
            StockUpdateJob::enqueue(tx, &received.with(stock), MAX_ATTEMPTS).await
        }
    }
}

/// Reads `data` into the action's type; a field that does not fit is named by its path
/// from the envelope (`data.quantity`), in the same words as an API body's.
fn parse_data<T: DeserializeOwned>(data: &Map<String, Value>) -> Result<T, ApiError> {
    crate::http::from_value(&Value::Object(data.clone()), Some("data")).map_err(|errors| {
        ApiError::invalid_fields("invalid_event_data", "data does not fit the action", errors)
    })
}

/// `lab.result.ready`: appends the result to the patient's latest vitals note.
pub struct LabResultJob;

impl JobKind for LabResultJob {
    const NAME: &'static str = "inbound.lab.result.ready";
    type Payload = JobPayload<LabResult>;

    async fn run(
        context: JobContext,
        job: Job,
        payload: JobPayload<LabResult>,
    ) -> Result<(), JobError> {
        let lab = payload.data;
        let no_patient =
            || JobError::permanent(format!("no patient with book number '{}'", lab.book_no));
        let book_no = BookNo::parse_existing(&lab.book_no).ok_or_else(no_patient)?;
        let line = match lab
            .test_name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            Some(test) => format!("Lab result ({test}): {}", lab.result),
            None => format!("Lab result: {}", lab.result),
        };
        // Past the note's limit the end is cut: the inbound event keeps the body as
        // received, and the note says so.
        let marker = format!(
            " [truncated: full text in inbound event {}]",
            payload.inbound_event_id
        );
        let mut tx = context.db.begin().await?;
        if crate::patients::repo::get_by_book_no_tx(&mut tx, &book_no)
            .await?
            .is_none()
        {
            return Err(no_patient());
        }
        let appended =
            crate::vitals::repo::append_note_to_latest(&mut tx, &book_no, &line, &marker).await?;
        if appended.is_none() {
            return Err(JobError::permanent(format!(
                "patient with book number '{}' has no vitals to attach the lab result to",
                lab.book_no
            )));
        }
        finish(tx, &job).await
    }
}

/// `pharmacy.stock.update`: sets a medicine's stock quantity.
pub struct StockUpdateJob;

impl JobKind for StockUpdateJob {
    const NAME: &'static str = "inbound.pharmacy.stock.update";
    type Payload = JobPayload<StockUpdate>;

    async fn run(
        context: JobContext,
        job: Job,
        payload: JobPayload<StockUpdate>,
    ) -> Result<(), JobError> {
        let stock = payload.data;
        if stock.quantity < 0 {
            return Err(JobError::permanent("quantity must not be negative"));
        }
        let no_medicine =
            || JobError::permanent(format!("no medicine with id '{}'", stock.medicine_id));
        let id = MedicineId::parse(&stock.medicine_id).ok_or_else(no_medicine)?;
        let mut tx = context.db.begin().await?;
        let medicine = medicines::repo::get_for_update(&mut tx, &id)
            .await?
            .ok_or_else(no_medicine)?;
        let input = MedicineInput {
            name: medicine.name,
            form: medicine.form,
            strength: medicine.strength,
            stock_quantity: stock.quantity,
        };
        medicines::repo::update(&mut tx, &id, &input).await?;
        finish(tx, &job).await
    }
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
