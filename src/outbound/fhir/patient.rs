//! `patient.registered` and `patient.updated` as a `Patient`.

use super::{FhirSettings, UCUM, fhir_id, meta, without_nulls};
use serde::Deserialize;
use serde_json::{Value, json};

/// The extension that carries an age in years when no birth date is known: the age as
/// recorded, never turned into an invented date.
pub const AGE_EXTENSION: &str = "urn:ehrs:fhir:StructureDefinition:patient-age";

#[derive(Deserialize)]
pub(super) struct PatientData {
    id: String,
    book_no: String,
    name: String,
    sex: String,
    age: Option<i64>,
    birth_date: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    updated_at: String,
}

pub(super) fn patient(data: &PatientData, settings: &FhirSettings) -> Value {
    // An age alone is kept as recorded, never turned into an invented birth date.
    let age = data.age.filter(|_| data.birth_date.is_none());
    without_nulls(json!({
        "resourceType": "Patient",
        "id": fhir_id(&data.id),
        "meta": meta(&data.updated_at),
        "extension": age.map(|age| json!([{
            "url": AGE_EXTENSION,
            "valueAge": { "value": age, "unit": "years", "system": UCUM, "code": "a" }
        }])),
        "identifier": [{ "use": "usual", "system": settings.book_no_system, "value": data.book_no }],
        "name": [{ "text": data.name }],
        "telecom": data.phone.as_ref().map(|phone| json!([{ "system": "phone", "value": phone }])),
        "gender": gender(&data.sex),
        "birthDate": data.birth_date,
        "address": data.address.as_ref().map(|address| json!([{ "text": address }])),
    }))
}

/// FHIR's administrative gender of our `sex`.
fn gender(sex: &str) -> &'static str {
    match sex {
        "male" => "male",
        "female" => "female",
        "other" => "other",
        _ => "unknown",
    }
}
