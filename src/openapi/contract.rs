//! The error answers every operation can give, declared from what the operation takes, so
//! that the document lists every status code a client can receive (a conformance fuzzer
//! checks this against the running server, see `tests/api/conformance.rs`).
//!
//! What each handler answers of its own accord (201, 403 for a role, 409, …) stays in its
//! `#[utoipa::path]`; what the shared layers answer is added here:
//! - every operation: 400 (a path or query that is not UTF-8 once decoded, see
//!   `router::middleware::refuse_invalid_utf8`), 422 (a query parameter the operation
//!   does not take, see `router::middleware::refuse_unknown_query`), 414 and 431 (a
//!   request head too large to read, answered by the server loop: `server::MAX_*`) and
//!   503 (the database is busy, or too many connections);
//! - with a bearer token: 401;
//! - with a path parameter: 404 (a malformed or unknown id names nothing);
//! - with query parameters: 422 also for a filter value of the wrong form;
//! - with a request body: 408 (the body's deadline), 413, 415 and 422 (see
//!   `http::ApiJson`).

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

/// Adds the shared error answers to every operation that lacks them.
pub fn declare_shared_errors(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let path_parameters = item.parameters.as_ref().is_some_and(|parameters| {
            parameters
                .iter()
                .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path))
        });
        for (operation, write) in [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ] {
            let Some(operation) = operation else {
                continue;
            };
            declare(operation, path_parameters);
            if write && is_signed_in(operation) {
                declare_idempotency_key(operation);
            }
        }
    }
}

/// Whether the operation asks for a bearer token: a signed-in user's operation.
pub fn is_signed_in(operation: &Operation) -> bool {
    operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty())
}

/// Every signed-in write takes an `Idempotency-Key` (see `idempotency`): the router's
/// layer finds the routes it guards by this header parameter.
fn declare_idempotency_key(operation: &mut Operation) {
    use utoipa::openapi::path::ParameterBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let key = ParameterBuilder::new()
        .name(crate::idempotency::HEADER)
        .parameter_in(ParameterIn::Header)
        .required(utoipa::openapi::Required::False)
        .description(Some(
            "Makes a retry safe: the same key with the same request within 24 h gets the first \
             answer back (with `Idempotency-Replayed: true`) and writes nothing again. The same \
             key with another request: 422 `idempotency_key_reused`; while the first is still \
             running: 409 `request_in_progress`. Keys are per user; 1 to 255 visible ASCII \
             characters, e.g. a UUID.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::idempotency::MAX_KEY_LEN))
                .pattern(Some("^[!-~]+$")),
        ))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(RefOr::T(key));
    mention(
        operation,
        "409",
        "a request with the same `Idempotency-Key` is still running (`request_in_progress`, with `Retry-After`)",
    );
    mention(
        operation,
        "422",
        "the `Idempotency-Key` was used for another request (`idempotency_key_reused`) or is malformed",
    );
}

/// Adds `case` to what the operation's `status` answer covers (declaring the answer when
/// the operation had none).
fn mention(operation: &mut Operation, status: &str, case: &str) {
    let answer = operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| error(""));
    if let RefOr::T(answer) = answer {
        answer.description = if answer.description.is_empty() {
            format!("{}{}", case[..1].to_uppercase(), &case[1..])
        } else {
            format!("{}; or {case}", answer.description)
        };
    }
}

fn declare(operation: &mut Operation, path_level_parameters: bool) {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_in = |place: ParameterIn| {
        parameters
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
    };
    let secured = is_signed_in(operation);
    let in_path = path_level_parameters || has_in(ParameterIn::Path);
    let in_query = has_in(ParameterIn::Query);
    let body = operation.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error(description));
    };
    add(
        "400",
        "The request is malformed: JSON that does not parse or repeats a key, or a path or query that is not UTF-8",
    );
    add(
        "414",
        "The request target (path and query) is longer than the server reads",
    );
    add(
        "431",
        "The request head is larger than the server reads, or has too many headers",
    );
    add(
        "503",
        "The database is busy, or the server holds its most connections (`too_many_connections`, with `Retry-After`); try again",
    );
    if secured {
        add("401", "No valid bearer token");
    }
    if in_path {
        add("404", "Nothing has that id (or the id is malformed)");
    }
    add(
        "422",
        if in_query || body {
            "A value breaks the rules, or the query names a parameter this operation does not take: `details.fields` names each and why"
        } else {
            "The query names a parameter (this operation takes none): `details.fields` names it"
        },
    );
    if body {
        add(
            "408",
            "The body did not arrive in full within the server's deadline",
        );
        add("413", "The body is larger than the server accepts");
        add("415", "The body is not `application/json`");
    }
}

fn error(description: &str) -> RefOr<Response> {
    let mut response = Response::new(description);
    response.content.insert(
        "application/json".to_string(),
        RefOr::T(Content::new(Some(Ref::from_schema_name("ErrorBody")))),
    );
    RefOr::T(response)
}

/// Rules across fields that a list of properties cannot state, added to the request
/// schemas as `allOf` [the object, `anyOf` the accepted shapes], so that a schema-valid
/// body passes them too:
/// - a new patient gives `age` or `birth_date` (or both);
/// - an attendance update gives exactly one of `attended_count` and `delta`;
/// - a vitals record gives at least one measurement.
pub fn declare_cross_field_rules(doc: &mut OpenApi) {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
    let given = |field: &str, kind: Type| {
        ObjectBuilder::new()
            .property(field, ObjectBuilder::new().schema_type(kind))
            .required(field)
    };
    let age_or_birth_date = AnyOfBuilder::new()
        .item(given("age", Type::Integer))
        .item(given("birth_date", Type::String));
    constrain(doc, "NewPatient", age_or_birth_date.into());
    let absent = || ObjectBuilder::new().schema_type(Type::Null);
    let count_or_delta = AnyOfBuilder::new()
        .item(given("attended_count", Type::Integer).property("delta", absent()))
        .item(given("delta", Type::Integer).property("attended_count", absent()));
    constrain(doc, "AttendanceUpdate", count_or_delta.into());
    let mut measurement = AnyOfBuilder::new().item(given("bp", Type::String));
    for field in ["pulse", "spo2"] {
        measurement = measurement.item(given(field, Type::Integer));
    }
    for field in ["temperature", "weight", "height", "blood_sugar"] {
        measurement = measurement.item(given(field, Type::Number));
    }
    constrain(doc, "VitalsInput", measurement.into());
}

/// Rules on the items of an array, which utoipa's field attributes cannot state: an
/// inbound source's event names are each 1 to 100 of letters, digits, `.`, `_`, `:` and
/// `-`, none listed twice (the rule `InboundSourceInput::validate` applies).
pub fn declare_item_rules(doc: &mut OpenApi) {
    use utoipa::openapi::schema::{ArrayItems, ObjectBuilder, Schema, Type};
    let schemas = &mut doc
        .components
        .as_mut()
        .expect("the document has components")
        .schemas;
    let Some(RefOr::T(Schema::Object(source))) = schemas.get_mut("InboundSourceInput") else {
        panic!("InboundSourceInput is an object schema");
    };
    let Some(RefOr::T(Schema::Array(names))) = source.properties.get_mut("allowed_event_types")
    else {
        panic!("allowed_event_types is an array");
    };
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(100))
        .pattern(Some("^[A-Za-z0-9._:-]+$"));
    names.items = ArrayItems::RefOrSchema(Box::new(name.into()));
    names.unique_items = true;
}

/// The characters `validation::FieldErrors` refuses in text: C0 and C1 controls and the
/// invisible direction controls, as a regex class body (ECMA-262 and Python alike).
const CONTROLS: &str = r"\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";
/// Free text may keep line breaks and tabs: the same class without `\t` and `\n`.
const FREE_TEXT_CONTROLS: &str =
    r"\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";

/// The text rules of the request bodies, in their schemas: a one-line field (declared with
/// the pattern `\S`, not blank) holds no control character; any other free-text string
/// holds none but line breaks and tabs. So a schema-valid body passes `FieldErrors::text`
/// and `optional_text`.
pub fn declare_text_rules(doc: &mut OpenApi) {
    use utoipa::openapi::schema::Schema;
    let bodies: Vec<String> = doc
        .paths
        .paths
        .values()
        .flat_map(|item| [&item.post, &item.put, &item.patch])
        .flatten()
        .filter_map(|operation| operation.request_body.as_ref())
        .filter_map(|body| match body {
            RefOr::T(body) => body.content.get("application/json"),
            RefOr::Ref(_) => None,
        })
        .filter_map(|content| match content {
            RefOr::T(content) => match &content.schema {
                Some(RefOr::Ref(reference)) => Some(reference.ref_location.clone()),
                _ => None,
            },
            RefOr::Ref(_) => None,
        })
        .filter_map(|location| {
            location
                .strip_prefix("#/components/schemas/")
                .map(str::to_string)
        })
        .collect();
    let one_line = format!("^[^{CONTROLS}]*[^\\s{CONTROLS}][^{CONTROLS}]*$");
    let free_text = format!("^[^{FREE_TEXT_CONTROLS}]*$");
    let url = format!("^[^\\s{CONTROLS}]+$");
    let schemas = &mut doc
        .components
        .as_mut()
        .expect("the document has components")
        .schemas;
    for name in bodies {
        let Some(RefOr::T(Schema::Object(body))) = schemas.get_mut(&name) else {
            continue;
        };
        for (property_name, property) in body.properties.iter_mut() {
            let RefOr::T(Schema::Object(field)) = property else {
                continue;
            };
            use utoipa::openapi::schema::{SchemaType, Type};
            let is_text = match &field.schema_type {
                SchemaType::Type(kind) => *kind == Type::String,
                SchemaType::Array(kinds) => kinds.contains(&Type::String),
                _ => false,
            };
            // A password is any text the policy takes: it is hashed, never shown.
            if !is_text
                || field.format.is_some()
                || field.enum_values.is_some()
                || property_name == "password"
            {
                continue;
            }
            match field.pattern.as_deref() {
                // A URL is called as given: no space either (`ssrf::check_url`).
                None if property_name == "url" => field.pattern = Some(url.clone()),
                Some(r"\S") => field.pattern = Some(one_line.clone()),
                None => field.pattern = Some(free_text.clone()),
                Some(_) => {}
            }
        }
    }
}

/// Replaces the component schema `name` by `allOf` [itself, `rule`].
fn constrain(doc: &mut OpenApi, name: &str, rule: utoipa::openapi::schema::Schema) {
    use utoipa::openapi::schema::AllOfBuilder;
    let schemas = &mut doc
        .components
        .as_mut()
        .expect("the document has components")
        .schemas;
    let object = schemas
        .remove(name)
        .unwrap_or_else(|| panic!("no component schema {name}"));
    schemas.insert(
        name.to_string(),
        AllOfBuilder::new().item(object).item(rule).into(),
    );
}
