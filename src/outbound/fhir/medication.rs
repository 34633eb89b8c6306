//! Prescriptions as `MedicationRequest`s (`prescription.added`, `.replaced`) and what the
//! pharmacy did as a `MedicationDispense` (`prescription.dispensed`, `.out_of_stock`).
//!
//! The prescription names its medicine and consultation by id; the medicine's name,
//! strength and form, and the consultation's patient and doctor, come from the context
//! the write stored beside it (`Event::context`), as they were at that write.
//!
//! Ids: the request is `MedicationRequest/rx-…` and what the pharmacy did with it
//! `MedicationDispense/rx-…` (ids are per resource type). A replacement is a request of
//! its own, `MedicationRequest/rx-…-med-…` (the replacing medicine's id), whose
//! `priorPrescription` is the request it replaces.

use super::{UCUM, fhir_id, meta, reference, text, without_nulls};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
pub(super) struct PrescriptionData {
    id: String,
    consultation_id: String,
    dosage: String,
    frequency: String,
    days: i64,
    quantity: i64,
    dispatch_status: String,
    created_at: String,
    updated_at: String,
}

/// What `Event::context` holds for a prescription event.
#[derive(Deserialize)]
pub(super) struct PrescriptionContext {
    patient_id: String,
    doctor_id: String,
    medicine: MedicineData,
    /// The medicine given instead, once the pharmacy replaced it.
    replaced_by_medicine: Option<MedicineData>,
}

#[derive(Deserialize)]
pub(super) struct MedicineData {
    id: String,
    name: String,
    form: String,
    strength: String,
}

/// `prescription.added`: the doctor's order.
pub(super) fn request(data: &PrescriptionData, context: &PrescriptionContext) -> Value {
    order(data, context, &fhir_id(&data.id), &context.medicine)
}

/// `prescription.replaced`: the order for the replacing medicine, which replaces the
/// doctor's.
pub(super) fn replacement(data: &PrescriptionData, context: &PrescriptionContext) -> Value {
    let Some(medicine) = &context.replaced_by_medicine else {
        return request(data, context);
    };
    let mut request = order(data, context, &replacement_id(data, medicine), medicine);
    request["priorPrescription"] = reference("MedicationRequest", &data.id);
    request
}

/// `prescription.dispensed` (`completed`, with the quantity handed over) and
/// `prescription.out_of_stock` (`declined`, with the reason).
pub(super) fn dispense(data: &PrescriptionData, context: &PrescriptionContext) -> Value {
    let given = data.dispatch_status == "given";
    let (medicine, authorizing) = match &context.replaced_by_medicine {
        Some(medicine) => (medicine, replacement_id(data, medicine)),
        None => (&context.medicine, fhir_id(&data.id)),
    };
    without_nulls(json!({
        "resourceType": "MedicationDispense",
        "id": fhir_id(&data.id),
        "meta": meta(&data.updated_at),
        "status": if given { "completed" } else { "declined" },
        "statusReasonCodeableConcept": (!given).then(|| text("Out of stock")),
        "medicationCodeableConcept": medication(medicine),
        "subject": reference("Patient", &context.patient_id),
        "context": reference("Encounter", &data.consultation_id),
        "authorizingPrescription": [{ "reference": format!("MedicationRequest/{authorizing}") }],
        "quantity": { "value": data.quantity },
        "daysSupply": days(data.days),
        "whenHandedOver": given.then_some(&data.updated_at),
    }))
}

/// A MedicationRequest for `medicine` under this prescription's dosage and quantity.
fn order(
    data: &PrescriptionData,
    context: &PrescriptionContext,
    id: &str,
    medicine: &MedicineData,
) -> Value {
    let status = if data.dispatch_status == "given" {
        "completed"
    } else {
        "active"
    };
    json!({
        "resourceType": "MedicationRequest",
        "id": id,
        "meta": meta(&data.updated_at),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": medication(medicine),
        "subject": reference("Patient", &context.patient_id),
        "encounter": reference("Encounter", &data.consultation_id),
        "authoredOn": data.created_at,
        "requester": reference("Practitioner", &context.doctor_id),
        "dosageInstruction": [{
            "text": format!("{}, {}, for {} days", data.dosage, data.frequency, data.days)
        }],
        "dispenseRequest": {
            "quantity": { "value": data.quantity },
            "expectedSupplyDuration": days(data.days),
        },
    })
}

/// `rx-…-med-…`: the request for the medicine that replaced the prescribed one.
fn replacement_id(data: &PrescriptionData, medicine: &MedicineData) -> String {
    format!("{}-{}", fhir_id(&data.id), fhir_id(&medicine.id))
}

/// The medicine as text: name, strength and form ("Paracetamol 500 mg tablet"); our
/// medicines are not coded.
fn medication(medicine: &MedicineData) -> Value {
    text(&format!(
        "{} {} {}",
        medicine.name, medicine.strength, medicine.form
    ))
}

fn days(days: i64) -> Value {
    json!({ "value": days, "unit": "days", "system": UCUM, "code": "d" })
}
