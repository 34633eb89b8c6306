//! `vitals.recorded` as a `Bundle` of type `collection`: one vital-signs `Observation` per
//! measured value, with its LOINC code and UCUM unit. A value not measured has no
//! Observation (never a zero).

use super::{UCUM, concept, fhir_id, meta, reference};
use serde::Deserialize;
use serde_json::{Value, json};

const LOINC: &str = "http://loinc.org";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

#[derive(Deserialize)]
pub(super) struct VitalsData {
    id: String,
    patient_id: String,
    bp: Option<String>,
    pulse: Option<i64>,
    temperature: Option<f64>,
    weight: Option<f64>,
    height: Option<f64>,
    spo2: Option<i64>,
    blood_sugar: Option<f64>,
    extra_note: Option<String>,
    created_at: String,
}

/// One measured quantity: its id suffix, LOINC code and name, UCUM unit and display unit.
struct Measure {
    suffix: &'static str,
    loinc: &'static str,
    name: &'static str,
    ucum: &'static str,
    unit: &'static str,
}

const PULSE: Measure = Measure {
    suffix: "pulse",
    loinc: "8867-4",
    name: "Heart rate",
    ucum: "/min",
    unit: "beats/minute",
};
const TEMPERATURE: Measure = Measure {
    suffix: "temperature",
    loinc: "8310-5",
    name: "Body temperature",
    ucum: "Cel",
    unit: "°C",
};
const WEIGHT: Measure = Measure {
    suffix: "weight",
    loinc: "29463-7",
    name: "Body weight",
    ucum: "kg",
    unit: "kg",
};
const HEIGHT: Measure = Measure {
    suffix: "height",
    loinc: "8302-2",
    name: "Body height",
    ucum: "cm",
    unit: "cm",
};
const SPO2: Measure = Measure {
    suffix: "spo2",
    loinc: "2708-6",
    name: "Oxygen saturation in Arterial blood",
    ucum: "%",
    unit: "%",
};
/// Blood glucose as camps measure it (a finger-stick meter, in mg/dL): LOINC 2339-0,
/// "Glucose [Mass/volume] in Blood".
const GLUCOSE: Measure = Measure {
    suffix: "glucose",
    loinc: "2339-0",
    name: "Glucose [Mass/volume] in Blood",
    ucum: "mg/dL",
    unit: "mg/dL",
};
const SYSTOLIC: Measure = Measure {
    suffix: "",
    loinc: "8480-6",
    name: "Systolic blood pressure",
    ucum: "mm[Hg]",
    unit: "mmHg",
};
const DIASTOLIC: Measure = Measure {
    suffix: "",
    loinc: "8462-4",
    name: "Diastolic blood pressure",
    ucum: "mm[Hg]",
    unit: "mmHg",
};

pub(super) fn bundle(data: &VitalsData) -> Value {
    let mut observations = Vec::new();
    if let Some((systolic, diastolic)) = data.bp.as_deref().and_then(split_bp) {
        let mut panel = observation(
            data,
            "bp",
            loinc("85354-9", "Blood pressure panel with all children optional"),
        );
        panel["component"] = json!([
            { "code": code(&SYSTOLIC), "valueQuantity": quantity(&SYSTOLIC, json!(systolic)) },
            { "code": code(&DIASTOLIC), "valueQuantity": quantity(&DIASTOLIC, json!(diastolic)) },
        ]);
        observations.push(panel);
    }
    let measured: [(&Measure, Option<Value>); 6] = [
        (&PULSE, data.pulse.map(|v| json!(v))),
        (&TEMPERATURE, data.temperature.map(|v| json!(v))),
        (&WEIGHT, data.weight.map(|v| json!(v))),
        (&HEIGHT, data.height.map(|v| json!(v))),
        (&SPO2, data.spo2.map(|v| json!(v))),
        (&GLUCOSE, data.blood_sugar.map(|v| json!(v))),
    ];
    for (measure, value) in measured {
        if let Some(value) = value {
            let mut single = observation(data, measure.suffix, code(measure));
            single["valueQuantity"] = quantity(measure, value);
            observations.push(single);
        }
    }
    // The free-text note belongs to the whole set: each Observation carries it.
    if let Some(note) = &data.extra_note {
        for observation in &mut observations {
            observation["note"] = json!([{ "text": note }]);
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": fhir_id(&data.id),
        "meta": meta(&data.created_at),
        "type": "collection",
        "timestamp": data.created_at,
        "entry": observations.into_iter().map(|resource| json!({ "resource": resource })).collect::<Vec<_>>(),
    })
}

/// An Observation of this set, `vit-…-{suffix}`, without its value.
fn observation(data: &VitalsData, suffix: &str, code: Value) -> Value {
    json!({
        "resourceType": "Observation",
        "id": format!("{}-{suffix}", fhir_id(&data.id)),
        "meta": meta(&data.created_at),
        "status": "final",
        "category": [concept(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")],
        "code": code,
        "subject": reference("Patient", &data.patient_id),
        "effectiveDateTime": data.created_at,
    })
}

fn loinc(code: &str, display: &str) -> Value {
    concept(LOINC, code, display)
}

fn code(measure: &Measure) -> Value {
    loinc(measure.loinc, measure.name)
}

fn quantity(measure: &Measure, value: Value) -> Value {
    json!({ "value": value, "unit": measure.unit, "system": UCUM, "code": measure.ucum })
}

/// `120/80` as (120, 80); stored values are always of that form.
fn split_bp(bp: &str) -> Option<(i64, i64)> {
    let (systolic, diastolic) = bp.split_once('/')?;
    Some((
        systolic.trim().parse().ok()?,
        diastolic.trim().parse().ok()?,
    ))
}
