//! The walk through a camp day, as data: each step's call, the ids it keeps for later
//! steps, and the webhooks it must cause. The same table prints the `curl` version.

use reqwest::Method;
use serde_json::{Value, json};

pub const BOOK_NO: &str = "DEMO-001";

/// One call of the walk. `{NAME}` in the path or in body strings is replaced by a value
/// saved from an earlier answer (`save`: variable name, field path in the answer).
pub struct Step {
    pub title: &'static str,
    pub method: Method,
    pub path: &'static str,
    pub body: Value,
    pub save: &'static [(&'static str, &'static str)],
    pub expect: &'static [&'static str],
}

pub fn steps() -> Vec<Step> {
    let today = chrono::Utc::now().date_naive().to_string();
    let step = |title, method, path, body, save, expect| Step {
        title,
        method,
        path,
        body,
        save,
        expect,
    };
    vec![
        step(
            "Create the camp",
            Method::POST,
            "/api/v1/medical-camps",
            json!({"name": "Demo eye camp", "location": "Ward 12 school", "start_date": today, "end_date": today}),
            &[("CAMP", ".id")],
            &["camp.created"],
        ),
        step(
            "Register the patient",
            Method::POST,
            "/api/v1/patients",
            json!({"book_no": BOOK_NO, "name": "Asha Patil", "sex": "female", "age": 54}),
            &[],
            &["patient.registered"],
        ),
        step(
            "Register the patient at the camp",
            Method::POST,
            "/api/v1/patients/DEMO-001/register",
            json!({"camp_id": "{CAMP}"}),
            &[],
            &["patient.camp_registered"],
        ),
        step(
            "Record vitals",
            Method::PUT,
            "/api/v1/patients/vitals/DEMO-001",
            json!({"bp": "120/80", "pulse": 78, "temperature": 36.8, "weight": 61.5, "spo2": 98}),
            &[],
            &["vitals.recorded"],
        ),
        step(
            "Add a doctor",
            Method::POST,
            "/api/v1/doctors",
            json!({"name": "Dr. Rao", "specialty": "ophthalmology"}),
            &[("DOCTOR", ".id")],
            &[],
        ),
        step(
            "Assign the doctor (opens the consultation and its queue entry)",
            Method::POST,
            "/api/v1/doctors/assign-doctor",
            json!({"book_no": BOOK_NO, "doctor_id": "{DOCTOR}", "camp_id": "{CAMP}", "complaint": "Blurred vision"}),
            &[("CONSULTATION", ".id"), ("ENTRY", ".queue_entry.id")],
            &["consultation.created"],
        ),
        step(
            "Call the patient in",
            Method::PUT,
            "/api/v1/queue/status-update",
            json!({"queue_entry_id": "{ENTRY}", "status": "in_consultation"}),
            &[],
            &["queue.status_changed"],
        ),
        step(
            "Record the diagnosis",
            Method::PUT,
            "/api/v1/consultations/{CONSULTATION}",
            json!({"diagnosis": "Cataract, left eye", "notes": "Refer for surgery"}),
            &[],
            &["consultation.updated"],
        ),
        step(
            "Stock a medicine",
            Method::POST,
            "/api/v1/medicines",
            json!({"name": "Paracetamol", "form": "tablet", "strength": "500 mg", "stock_quantity": 100}),
            &[("MEDICINE", ".id")],
            &[],
        ),
        step(
            "Prescribe",
            Method::POST,
            "/api/v1/consultations/{CONSULTATION}/prescription",
            json!({"medicine_id": "{MEDICINE}", "dosage": "1 tablet", "frequency": "twice a day", "days": 5, "quantity": 10}),
            &[("PRESCRIPTION", ".id")],
            &["prescription.added"],
        ),
        step(
            "Dispense",
            Method::PUT,
            "/api/v1/consultations/prescriptions/{PRESCRIPTION}",
            json!({"dispatch_status": "given"}),
            &[],
            &["prescription.dispensed"],
        ),
        step(
            "Complete the visit",
            Method::PUT,
            "/api/v1/queue/status-update",
            json!({"queue_entry_id": "{ENTRY}", "status": "completed"}),
            &[],
            &["queue.status_changed", "consultation.completed"],
        ),
    ]
}

/// Replaces every `{NAME}` in `text` by `value(NAME)`.
pub fn fill(text: &str, value: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&value(&rest[start + 1..start + len]));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

pub fn fill_json(body: &Value, value: &dyn Fn(&str) -> String) -> Value {
    match body {
        Value::String(text) => Value::String(fill(text, value)),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), fill_json(v, value)))
            .collect(),
        other => other.clone(),
    }
}

/// The same walk by hand.
pub fn print_curl(steps: &[Step]) {
    println!(
        "\nDo the same by hand (with `ehrs serve` running; needs curl and jq). A refused step"
    );
    println!(
        "stops the rest (set -e, curl --fail-with-body, jq -e); the book number must be new on"
    );
    println!("that server (scripts/tour picks a fresh one on every run):\n");
    println!("  set -euo pipefail");
    println!(
        "  key() {{ od -An -tx1 -N16 /dev/urandom | tr -d ' \\n'; }}   # a fresh Idempotency-Key: retries write once"
    );
    println!("  export EHRS=http://127.0.0.1:8000");
    println!(
        "  TOKEN=$(curl -sS --fail-with-body -X POST $EHRS/api/v1/auth/login -H 'content-type: application/json' \\"
    );
    println!(
        "    -d '{{\"username\": \"admin\", \"password\": \"<the admin password>\"}}' | jq -er .access_token)"
    );
    println!(
        "  curl -sS --fail-with-body -X POST $EHRS/api/v1/webhooks/subscriptions -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\"
    );
    println!(
        "    -d '{{\"url\": \"https://your-receiver.example/webhooks\", \"event_types\": [], \"payload\": \"full\"}}'"
    );
    println!(
        "  # (http:// and 127.0.0.1 receivers need EHRS_WEBHOOKS_ALLOW_INSECURE=1 on the server)"
    );
    for step in steps {
        let variable = |name: &str| format!("${name}");
        let body = fill_json(&step.body, &variable).to_string();
        // Single quotes unless the body uses a shell variable.
        let data = if body.contains('$') {
            format!("\"{}\"", body.replace('"', "\\\""))
        } else {
            format!("'{body}'")
        };
        let path = fill(step.path, &variable);
        let call = format!(
            "curl -sS --fail-with-body --retry 3 -X {} \"$EHRS{path}\" -H \"authorization: Bearer $TOKEN\" -H \"idempotency-key: $(key)\" -H 'content-type: application/json' -d {data}",
            step.method
        );
        println!("  # {}", step.title);
        match step.save {
            [] => println!("  {call}"),
            saves => {
                println!("  ANSWER=$({call})");
                for (name, field) in saves {
                    println!("  {name}=$(echo \"$ANSWER\" | jq -er {field})");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in_paths_and_bodies() {
        let value = |name: &str| format!("<{name}>");
        assert_eq!(fill("/a/{CAMP}/b/{ENTRY}", &value), "/a/<CAMP>/b/<ENTRY>");
        assert_eq!(fill("no braces", &value), "no braces");
        let body = json!({"camp_id": "{CAMP}", "n": 1, "s": "plain"});
        assert_eq!(
            fill_json(&body, &value),
            json!({"camp_id": "<CAMP>", "n": 1, "s": "plain"})
        );
    }

    #[test]
    fn every_saved_id_is_saved_before_it_is_used() {
        let mut known: Vec<&str> = Vec::new();
        for step in steps() {
            let check = |name: &str| {
                assert!(
                    known.contains(&name),
                    "{} uses {name} before it is saved",
                    step.title
                );
                String::new()
            };
            fill(step.path, &check);
            fill_json(&step.body, &check);
            known.extend(step.save.iter().map(|(name, _)| *name));
        }
    }
}
