//! The visits as `Encounter`s: the camp visit (`patient.camp_registered`), and each
//! consultation, whose queue entry drives its status (`consultation.*`, `queue.*`).
//!
//! A consultation and its queue entry are one Encounter, `Encounter/cons-…`: the
//! consultation's id, whichever of the two events carries it. The camp visit is an
//! Encounter too, not an EpisodeOfCare: it is one contact at one place, which an
//! Encounter carries (`location`), while an EpisodeOfCare has no location and stands for
//! a long responsibility of care (a programme, a pregnancy).

use super::{concept, fhir_id, meta, reference, text, without_nulls};
use serde::Deserialize;
use serde_json::{Value, json};

const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ACT_PRIORITY: &str = "http://terminology.hl7.org/CodeSystem/v3-ActPriority";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";

#[derive(Deserialize)]
pub(super) struct RegistrationData {
    id: String,
    patient_id: String,
    camp_id: String,
    created_at: String,
}

#[derive(Deserialize)]
pub(super) struct QueueEntryData {
    consultation_id: String,
    camp_id: String,
    doctor_id: String,
    patient_id: String,
    status: String,
    priority: String,
    created_at: String,
    updated_at: String,
}

#[derive(Deserialize)]
pub(super) struct ConsultationData {
    #[serde(flatten)]
    notes: VisitNotes,
    queue_entry: QueueEntryData,
}

/// The complaint and diagnosis: a consultation's own, or the context a queue event
/// stored beside its entry (see `Event::context`), so each Encounter is whole.
#[derive(Deserialize, Default)]
pub(super) struct VisitNotes {
    complaint: Option<String>,
    diagnosis: Option<String>,
}

/// The patient's arrival at a camp: `arrived` from the registration on.
pub(super) fn camp_visit(data: &RegistrationData) -> Value {
    json!({
        "resourceType": "Encounter",
        "id": fhir_id(&data.id),
        "meta": meta(&data.created_at),
        "status": "arrived",
        "class": ambulatory(),
        "type": [text("Medical camp visit")],
        "subject": reference("Patient", &data.patient_id),
        "period": { "start": data.created_at },
        "location": [{ "location": reference("Location", &data.camp_id) }],
    })
}

/// A consultation: its queue entry's status and priority, the complaint as the reason,
/// the diagnosis as a contained `Condition`.
pub(super) fn consultation(data: &ConsultationData) -> Value {
    visit(&data.queue_entry, &data.notes)
}

/// A queue move: the same Encounter as its consultation, with the entry's new status or
/// priority, and the consultation's complaint and diagnosis from the event's context.
pub(super) fn queue_entry(data: &QueueEntryData, notes: &VisitNotes) -> Value {
    visit(data, notes)
}

/// The Encounter of a consultation, from its queue entry and its notes.
fn visit(entry: &QueueEntryData, notes: &VisitNotes) -> Value {
    let status = status(&entry.status);
    let ended = matches!(status, "finished" | "cancelled");
    let diagnosis = notes.diagnosis.as_ref();
    without_nulls(json!({
        "resourceType": "Encounter",
        "id": fhir_id(&entry.consultation_id),
        "meta": meta(&entry.updated_at),
        "contained": diagnosis.map(|diagnosis| json!([{
            "resourceType": "Condition",
            "id": "diagnosis",
            "category": [concept(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
            "code": text(diagnosis),
            "subject": reference("Patient", &entry.patient_id),
        }])),
        "status": status,
        "class": ambulatory(),
        "priority": priority(&entry.priority),
        "subject": reference("Patient", &entry.patient_id),
        "participant": [{
            "type": [concept(PARTICIPATION, "PPRF", "primary performer")],
            "individual": reference("Practitioner", &entry.doctor_id),
        }],
        "period": { "start": entry.created_at, "end": ended.then_some(&entry.updated_at) },
        "reasonCode": notes.complaint.as_ref().map(|complaint| json!([text(complaint)])),
        "diagnosis": diagnosis.map(|_| json!([{ "condition": { "reference": "#diagnosis" } }])),
        "location": [{ "location": reference("Location", &entry.camp_id) }],
    }))
}

/// Encounter status of a queue status: waiting is `planned`, then `in-progress`, then
/// `finished` or `cancelled`.
fn status(queue_status: &str) -> &'static str {
    match queue_status {
        "in_consultation" => "in-progress",
        "completed" => "finished",
        "cancelled" => "cancelled",
        _ => "planned",
    }
}

/// v3-ActPriority of a queue priority.
fn priority(queue_priority: &str) -> Value {
    match queue_priority {
        "emergency" => concept(ACT_PRIORITY, "EM", "emergency"),
        "high" => concept(ACT_PRIORITY, "UR", "urgent"),
        _ => concept(ACT_PRIORITY, "R", "routine"),
    }
}

/// Every camp contact is ambulatory.
fn ambulatory() -> Value {
    json!({ "system": ACT_CODE, "code": "AMB", "display": "ambulatory" })
}
