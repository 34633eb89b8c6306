//! One voice for errors (issue 22): every client error names the field once, by its JSON
//! path, in JSON's words. The table-driven tests walk the OpenAPI document, so a route added
//! later is covered without a line here; the others each pin one finding of the issue.

use crate::support::TestApp;
use crate::support::care::{clinic, create_medicine, id};
use crate::support::people::create_patient;
use ehrs::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

/// Words that only a Rust programmer would recognise in a message.
const RUST_WORDS: [&str; 12] = [
    "i64",
    "u32",
    "u64",
    "i32",
    "f64",
    "f32",
    "a sequence",
    "a map",
    "struct ",
    "variant",
    "usize",
    "Option<",
];

fn assert_plain(message: &str, context: &str) {
    for word in RUST_WORDS {
        assert!(
            !message.contains(word),
            "{context}: `{word}` in {message:?}"
        );
    }
}

/// `$ref` to `#/components/schemas/X`, followed; an `allOf` merged into its properties.
fn resolve<'d>(doc: &'d Value, schema: &'d Value) -> Vec<&'d Value> {
    if let Some(name) = schema["$ref"].as_str() {
        let name = name.trim_start_matches("#/components/schemas/");
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    match schema["allOf"].as_array() {
        Some(parts) => parts.iter().flat_map(|part| resolve(doc, part)).collect(),
        None => vec![schema],
    }
}

/// The JSON type a property declares (`["string", "null"]` is a string), if one.
fn declared_type(doc: &Value, property: &Value) -> Option<String> {
    let property = resolve(doc, property).into_iter().next()?;
    match &property["type"] {
        Value::String(kind) => Some(kind.clone()),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .map(str::to_string),
        _ => None,
    }
}

/// A value of another JSON type than `kind`.
fn wrong_value(kind: &str) -> Value {
    match kind {
        "integer" | "number" => json!("54"),
        "string" => json!(12345),
        "boolean" => json!("yes"),
        _ => json!(true),
    }
}

/// Sends as each role in turn until one may call the route: what the error is about must
/// not depend on guessing the right role.
async fn send_as_permitted(
    app: &TestApp,
    method: &Method,
    path: &str,
    body: Option<&Value>,
) -> crate::support::TestResponse {
    let mut last = None;
    for role in Role::ALL {
        let answer = app.request(method.clone(), Some(role), path, body).await;
        if answer.status != 403 {
            return answer;
        }
        last = Some(answer);
    }
    last.expect("five roles tried")
}

fn fields(answer: &crate::support::TestResponse) -> Vec<Value> {
    answer.body["error"]["details"]["fields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// (method, path with `x` for each path parameter, the body schema's properties).
type BodyOperation = (Method, String, Vec<(String, Value)>);

/// Every operation with a JSON body.
fn body_operations(doc: &Value) -> Vec<BodyOperation> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let Some(schema) =
                operation["requestBody"]["content"]["application/json"].get("schema")
            else {
                continue;
            };
            let properties: Vec<(String, Value)> = resolve(doc, schema)
                .into_iter()
                .filter_map(|part| part["properties"].as_object())
                .flat_map(|props| props.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect();
            let path = concrete(path);
            // The partner receiver and Svix's operational webhooks check a signature before
            // they read the body (their own tests cover what follows).
            if path.starts_with("/api/v1/webhooks/inbound/")
                || path.starts_with("/api/v1/webhooks/internal/")
            {
                continue;
            }
            operations.push((method, path, properties));
        }
    }
    operations
}

/// The path with each `{parameter}` replaced by `x`.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => inside = true,
            '}' => {
                inside = false;
                out.push('x');
            }
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

db_test!(async fn every_body_field_of_the_wrong_type_is_named_once_in_json_words(app) {
    let doc = app.request(Method::GET, None, "/openapi.json", None).await.expect(200);
    let mut checked = 0;
    for (method, path, properties) in body_operations(&doc) {
        for (name, property) in &properties {
            let Some(kind) = declared_type(&doc, property) else { continue };
            let body = json!({ name.clone(): wrong_value(&kind) });
            let answer = send_as_permitted(&app, &method, &path, Some(&body)).await;
            let context = format!("{method} {path} {name}: {}", answer.text);
            assert_eq!(answer.status, 422, "{context}");
            assert_eq!(answer.error_code(), "validation_failed", "{context}");
            let fields = fields(&answer);
            assert_eq!(fields.len(), 1, "{context}");
            assert_eq!(fields[0]["field"], name.as_str(), "{context}");
            let reason = fields[0]["reason"].as_str().unwrap();
            assert_plain(reason, &context);
            assert_plain(answer.body["error"]["message"].as_str().unwrap(), &context);
            let property = resolve(&doc, property)[0];
            match property["enum"].as_array() {
                Some(words) => assert_eq!(&fields[0]["allowed"], &Value::Array(words.iter().filter(|w| !w.is_null()).cloned().collect()), "{context}"),
                None => assert_eq!(fields[0]["expected"], kind.as_str(), "{context}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} fields were checked");
});

db_test!(async fn an_unknown_field_is_named_once_on_every_route(app) {
    let doc = app.request(Method::GET, None, "/openapi.json", None).await.expect(200);
    let mut checked = 0;
    for (method, path, _) in body_operations(&doc) {
        let body = json!({ "colour": "blue" });
        let answer = send_as_permitted(&app, &method, &path, Some(&body)).await;
        let context = format!("{method} {path}: {}", answer.text);
        assert_eq!(answer.status, 422, "{context}");
        let fields = fields(&answer);
        assert_eq!(fields[0]["field"], "colour", "{context}");
        assert!(fields[0]["reason"].as_str().unwrap().starts_with("is not a known field"), "{context}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} routes were checked");
    // Inside an array, the path names the element.
    let nested = json!({"url": "http://127.0.0.1:9/h", "event_types": ["camp.created", 5]});
    let answer = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &nested).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(fields(&answer)[0]["field"], "event_types[1]", "{}", answer.text);
    assert_eq!(fields(&answer)[0]["expected"], "string", "{}", answer.text);
});

db_test!(async fn every_query_value_of_the_wrong_type_is_a_422_naming_the_parameter(app) {
    let doc = app.request(Method::GET, None, "/openapi.json", None).await.expect(200);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(parameters) = item["get"]["parameters"].as_array() else { continue };
        let concrete_path = concrete(path);
        for parameter in parameters.iter().filter(|p| p["in"] == "query") {
            let name = parameter["name"].as_str().unwrap();
            let schema = resolve(&doc, &parameter["schema"])[0];
            let (given, expect_words) = match (declared_type(&doc, &parameter["schema"]).as_deref(), schema["enum"].as_array()) {
                (_, Some(words)) => ("nonsense", Some(words.clone())),
                (Some("integer"), _) => ("abc", None),
                (Some("boolean"), _) => ("maybe", None),
                _ => continue,
            };
            let url = format!("{concrete_path}?{name}={given}");
            let answer = send_as_permitted(&app, &Method::GET, &url, None).await;
            let context = format!("GET {url}: {}", answer.text);
            assert_eq!(answer.status, 422, "{context}");
            assert_eq!(answer.error_code(), "validation_failed", "{context}");
            let fields = fields(&answer);
            assert_eq!(fields[0]["field"], name, "{context}");
            assert_plain(fields[0]["reason"].as_str().unwrap(), &context);
            match expect_words {
                Some(words) => assert_eq!(fields[0]["allowed"], Value::Array(words), "{context}"),
                None => assert!(fields[0]["reason"].as_str().unwrap().contains(&format!("\"{given}\"")), "{context}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} query parameters were checked");
    // Out of range reads like a body field out of range.
    let answer = app.get(Role::Nurse, "/api/v1/medical-camps?limit=0").await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(fields(&answer)[0]["field"], "limit");
    assert_eq!(fields(&answer)[0]["reason"], "must be between 1 and 200");
});

db_test!(async fn the_issue_s_examples_read_plainly(app) {
    let patient = json!({"book_no": "MSG-1", "name": "Asha", "age": "54", "sex": "female"});
    let answer = app.post(Role::Admin, "/api/v1/patients", &patient).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(fields(&answer)[0]["reason"], "must be an integer, not the string \"54\"");
    assert_eq!(fields(&answer)[0]["expected"], "integer");

    let subscription = json!({"url": "http://127.0.0.1:9/h", "event_types": ["camp.created"], "payload": "ids"});
    let answer = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &subscription).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(fields(&answer)[0]["field"], "payload");
    assert_eq!(fields(&answer)[0]["allowed"], json!(["full", "id_only", "fhir"]));

    let camp = json!({"name": "Eye camp", "location": "Pune", "start_date": "2026-02-01", "end_date": "2026-02-30"});
    let answer = app.post(Role::Admin, "/api/v1/medical-camps", &camp).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(fields(&answer)[0]["field"], "end_date");
    assert_eq!(fields(&answer)[0]["reason"], "must be a day that exists: 2026-02-30 is not in the calendar");
    let malformed = json!({"name": "Eye camp", "location": "Pune", "start_date": "2026-02-01", "end_date": "30/02/2026"});
    let answer = app.post(Role::Admin, "/api/v1/medical-camps", &malformed).await;
    assert_eq!(fields(&answer)[0]["reason"], "must be a date in the form YYYY-MM-DD");
});

db_test!(async fn malformed_json_has_one_wording_wherever_it_arrives(app) {
    let api = app.send_raw(Method::POST, Role::Admin, "/api/v1/medical-camps", "application/json", b"{\"name\":".to_vec()).await;
    assert_eq!(api.status, 400, "{}", api.text);
    assert_eq!(api.error_code(), "malformed_json");
    let message = api.body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("the body is not valid JSON: "), "{message}");
    assert!(!message.contains("Failed to"), "{message}");
    // A route whose body is optional: the body is read before the message id is looked up.
    let optional = app.send_raw(Method::POST, Role::Admin, "/api/v1/webhooks/logs/msg_x/retry", "application/json", b"{".to_vec()).await;
    assert_eq!(optional.status, 400, "{}", optional.text);
    assert!(optional.body["error"]["message"].as_str().unwrap_or("").starts_with("the body is not valid JSON: "), "{}", optional.text);
});

db_test!(async fn a_book_number_is_called_a_book_number(app) {
    let vitals = json!({"camp_id": "camp_01jdq3v8m2x7c9k4t6w0y5z1ab", "pulse": 70});
    for (method, path) in [(Method::PUT, "/api/v1/patients/vitals/NOPE-1"), (Method::GET, "/api/v1/patients/NOPE-1")] {
        let body = (method == Method::PUT).then_some(&vitals);
        let answer = send_as_permitted(&app, &method, path, body).await;
        assert_eq!(answer.status, 404, "{}", answer.text);
        assert_eq!(answer.body["error"]["message"], "no patient with book number 'NOPE-1'");
        assert_eq!(answer.body["error"]["details"]["book_no"], "NOPE-1");
    }
});

db_test!(async fn a_conflict_carries_the_id_of_what_it_conflicts_with(app) {
    let medicine = create_medicine(&app, "Paracetamol", 10).await;
    let again = json!({"name": "Paracetamol", "form": "tablet", "strength": "500 mg", "stock_quantity": 1});
    let answer = app.post(Role::Pharmacist, "/api/v1/medicines", &again).await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert_eq!(answer.error_code(), "medicine_exists");
    assert_eq!(answer.body["error"]["details"]["existing_id"], id(&medicine), "{}", answer.text);

    let patient = create_patient(&app, "DUP-1").await;
    let answer = app.post(Role::Admin, "/api/v1/patients", &crate::support::people::patient_body("DUP-1")).await;
    assert_eq!(answer.error_code(), "book_no_taken");
    assert_eq!(answer.body["error"]["details"]["existing_id"], patient["id"], "{}", answer.text);

    let user = json!({"username": "Dave", "password": "a long enough password 1", "role": "nurse"});
    let dave = app.post(Role::Admin, "/api/v1/users", &user).await.expect(201);
    let user = json!({"username": "dave", "password": "a long enough password 1", "role": "nurse"});
    let answer = app.post(Role::Admin, "/api/v1/users", &user).await;
    assert_eq!(answer.error_code(), "username_taken");
    assert_eq!(answer.body["error"]["details"]["existing_id"], dave["id"], "{}", answer.text);

    let clinic = clinic(&app).await;
    clinic.patient(&app, "DUP-2").await;
    let first = clinic.assign(&app, "DUP-2").await;
    let answer = app.post(Role::Admin, "/api/v1/doctors/assign-doctor", &clinic.assign_body("DUP-2")).await;
    assert_eq!(answer.error_code(), "consultation_open");
    assert_eq!(answer.body["error"]["details"]["existing_id"], first["id"], "{}", answer.text);
});

db_test!(async fn a_partner_event_s_data_is_explained_like_an_api_body(app) {
    use crate::support::inbound::{default_source, send_event, stock_event};
    let source = default_source(&app).await;
    let mut event = stock_event("q1", "med_01jdq3v8m2x7c9k4t6w0y5z1ab", 3);
    event["data"]["quantity"] = json!("3");
    let answer = send_event(&app, &source, &event).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.error_code(), "invalid_event_data");
    assert_eq!(fields(&answer)[0]["field"], "data.quantity", "{}", answer.text);
    assert_eq!(fields(&answer)[0]["reason"], "must be an integer, not the string \"3\"");
    let envelope = json!({"event_type": 7, "event_id": "q2", "data": {}});
    let answer = send_event(&app, &source, &envelope).await;
    assert_eq!(answer.error_code(), "invalid_body", "{}", answer.text);
    assert_eq!(fields(&answer)[0]["field"], "event_type", "{}", answer.text);
    assert_eq!(fields(&answer)[0]["expected"], "string", "{}", answer.text);
    assert_eq!(app.count_rows("jobs").await, 0);
});

db_test!(async fn a_repeated_event_type_is_kept_once(app) {
    let body = json!({"url": "http://127.0.0.1:9/h", "event_types": ["camp.created", "camp.created", "camp.updated"]});
    let created = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &body).await.expect(201);
    assert_eq!(created["event_types"], json!(["camp.created", "camp.updated"]));
    let path = format!("/api/v1/webhooks/subscriptions/{}", created["id"].as_str().unwrap());
    let update = json!({"event_types": ["camp.updated", "camp.updated"]});
    let updated = app.put(Role::Admin, &path, &update).await.expect(200);
    assert_eq!(updated["event_types"], json!(["camp.updated"]));
    let unknown = json!({"url": "http://127.0.0.1:9/h", "event_types": ["camp.created", "camp.exploded"]});
    let answer = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &unknown).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(fields(&answer)[0]["field"], "event_types[1]");
    assert!(fields(&answer)[0]["allowed"].as_array().unwrap().contains(&json!("camp.created")));
});

db_test!(async fn every_json_answer_ends_with_a_newline(app) {
    for (role, path) in [(None, "/health"), (None, "/openapi.json"), (Some(Role::Admin), "/api/v1/patients"), (Some(Role::Admin), "/api/v1/nowhere"), (None, "/api/v1/patients")] {
        let answer = app.request(Method::GET, role, path, None).await;
        assert!(answer.text.ends_with("}\n"), "{path}: {:?}", &answer.text[answer.text.len().saturating_sub(20)..]);
        let declared: usize = answer.headers["content-length"].to_str().unwrap().parse().unwrap();
        assert_eq!(declared, answer.text.len(), "{path}");
    }
});

/// Reads one HTTP/1.1 answer with a Content-Length from `stream`: (status, body).
async fn read_answer(stream: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut status_line = String::new();
    stream.read_line(&mut status_line).await.unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    (status, body)
}

db_test!(async fn a_get_sent_with_a_body_on_a_kept_alive_connection_gets_whole_answers(app) {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut stream = tokio::io::BufReader::new(stream);
    let body = vec![b' '; 64 * 1024];
    let head = format!("GET /openapi.json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len() + 2);
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    // The body arrives after the server could already have answered.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stream.get_mut().write_all(b"{}").await.unwrap();
    stream.get_mut().write_all(&body).await.unwrap();
    stream.get_mut().write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (status, document) = read_answer(&mut stream).await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_slice(&document).expect("the whole document");
    assert!(document["paths"].is_object());
    let (status, health) = read_answer(&mut stream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&health));
});

db_test!(async fn inbound_and_outbound_secrets_have_one_format(app) {
    use base64::Engine;
    let source = app
        .post(Role::Admin, "/api/v1/webhooks/inbound-sources", &json!({"name": "City Lab", "allowed_event_types": ["lab.result.ready"]}))
        .await
        .expect(201);
    let (_, outbound) = app.subscribe("http://127.0.0.1:9/h", &[], "full").await;
    for secret in [source["secret"].as_str().unwrap(), outbound.as_str()] {
        let key = secret.strip_prefix("whsec_").expect("whsec_ prefix");
        let bytes = base64::engine::general_purpose::STANDARD.decode(key).expect(secret);
        assert_eq!(bytes.len(), 32, "{secret}");
    }
});

db_test!(async fn the_schema_states_what_the_handlers_refuse(app) {
    let doc = app.request(Method::GET, None, "/openapi.json", None).await.expect(200);
    let schemas = &doc["components"]["schemas"];
    for name in ["NewSubscription", "SubscriptionUpdate"] {
        assert_eq!(schemas[name]["properties"]["url"]["minLength"], 1, "{name}");
    }
    let names = &schemas["InboundSourceInput"]["properties"]["allowed_event_types"];
    assert_eq!(names["uniqueItems"], true);
    let pattern = names["items"]["pattern"].as_str().expect("a pattern on each event name");
    assert_eq!(pattern, "^[A-Za-z0-9._:-]+$");
    // What the pattern refuses, the handler refuses, and the reverse.
    let empty_url = app.post(Role::Admin, "/api/v1/webhooks/subscriptions", &json!({"url": ""})).await;
    assert_eq!(empty_url.status, 422, "{}", empty_url.text);
    for (name, accepted) in [("lab.result:ready-1_x", true), ("lab result", false), ("läb", false)] {
        let body = json!({"name": format!("Lab {name}"), "allowed_event_types": [name]});
        let answer = app.post(Role::Admin, "/api/v1/webhooks/inbound-sources", &body).await;
        assert_eq!(answer.status == 201, accepted, "{name}: {}", answer.text);
    }
});

db_test!(async fn every_path_parameter_that_names_nothing_is_a_plain_404(app) {
    let doc = app.request(Method::GET, None, "/openapi.json", None).await.expect(200);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') || item.get("get").is_none() {
            continue;
        }
        let url = concrete(path).replace("/x", "/NOPE-9");
        let answer = send_as_permitted(&app, &Method::GET, &url, None).await;
        let context = format!("GET {url}: {}", answer.text);
        assert_eq!(answer.status, 404, "{context}");
        assert_eq!(answer.error_code(), "not_found", "{context}");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert_plain(message, &context);
        assert!(message.ends_with("'NOPE-9'"), "the message quotes what was given: {context}");
        let key = if message.contains("book number") { "book_no" } else { "id" };
        assert_eq!(answer.body["error"]["details"][key], "NOPE-9", "{context}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} paths were checked");
});
