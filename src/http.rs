//! Request extractors that turn every malformed input into a clear [`ApiError`], and the
//! pagination shared by all list routes.

use crate::error::ApiError;
use crate::validation::FieldErrors;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// JSON body extractor: malformed JSON is 400, a duplicate key 400, a body that is not a
/// JSON object, a missing field or a wrong type 422 naming the field (and, for a closed
/// set of words, listing the allowed ones), a wrong content type 415 and an oversized
/// body 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // axum checks the content type, the size and the JSON syntax; the raw text is then
        // read strictly (see `parse_body`).
        match axum::Json::<Box<RawValue>>::from_request(req, state).await {
            Ok(axum::Json(raw)) => parse_body(raw.get().as_bytes()).map(ApiJson),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::unprocessable("invalid_body", detail),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("malformed_json", detail),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body with content-type application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the server accepts",
        ),
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// Reads a request body into `T`, strictly: a key given twice anywhere is refused (400
/// `duplicate_key`: which value was meant is ambiguous), and so is a top-level value that
/// is not an object (every request body is declared as an object; serde's derive would
/// otherwise read a struct from a JSON array). A value of the wrong type is a 422
/// `validation_failed` whose `details.fields` names the field and, for a closed set of
/// words, lists them in `allowed`.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = strict_json(bytes)?;
    if !value.is_object() {
        return Err(FieldErrors::single("body", "must be a JSON object").into());
    }
    match serde_path_to_error::deserialize::<_, T>(&value) {
        Ok(parsed) => Ok(parsed),
        Err(err) => Err(type_error::<T>(&value, err)),
    }
}

/// Parses JSON text into a value, refusing a key that appears twice in one object
/// (serde_json keeps the last one silently). Syntax errors are 400 `malformed_json`.
pub fn strict_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let malformed = |err: &dyn std::fmt::Display| {
        ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {err}"),
        )
    };
    match serde_path_to_error::deserialize::<_, StrictValue>(&mut deserializer) {
        Ok(StrictValue(value)) => match deserializer.end() {
            Ok(()) => Ok(value),
            Err(err) => Err(malformed(&err)),
        },
        Err(err) if err.inner().is_data() => {
            let field = err.path().to_string();
            Err(
                ApiError::bad_request("duplicate_key", format!("{} (in {field})", err.inner()))
                    .with_details(json!({ "field": field })),
            )
        }
        Err(err) => Err(malformed(err.inner())),
    }
}

/// A JSON value read with duplicate keys refused.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has one number type: `3.0` is the integer 3 (as JSON Schema says), so it
        // fits an integer field.
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            return Ok(Value::from(v as i64));
        }
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key `{key}` appears twice"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// The 422 for a body of the right shape with a wrong value, naming the field.
fn type_error<T: DeserializeOwned>(
    value: &Value,
    err: serde_path_to_error::Error<serde_json::Error>,
) -> ApiError {
    let path = err.path().clone();
    let message = err.into_inner().to_string();
    let parent = path.to_string();
    let join = |name: &str| {
        if parent == "." {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        }
    };
    // Errors about a key are reported at its object: name the key itself.
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let name = rest.split('`').next().unwrap_or_default();
            let reason = if prefix.starts_with("missing") {
                "is required".to_string()
            } else {
                match allowed_words(&message) {
                    Some(known) => format!("is not a known field (known: {})", known.join(", ")),
                    None => "is not a known field".to_string(),
                }
            };
            return FieldErrors::single(&join(name), reason).into();
        }
    }
    let field = if parent == "." {
        "body".to_string()
    } else {
        parent
    };
    // A closed set of words: serde lists them only when it was given a string, so a
    // wrong type (a number, say) is tried once more as a string to learn the list.
    let allowed = allowed_words(&message).or_else(|| {
        let mut probe = value.clone();
        let slot = probe.pointer_mut(&json_pointer(&path))?;
        if slot.is_string() {
            return None;
        }
        *slot = Value::String("\u{1}".into());
        let retry = serde_path_to_error::deserialize::<_, T>(&probe).err();
        let retry = retry.filter(|e| e.path().to_string() == field)?;
        allowed_words(&retry.into_inner().to_string())
    });
    let mut errors = FieldErrors::new();
    match allowed {
        Some(words) => errors.add_allowed(
            &field,
            format!("must be one of {}", words.join(", ")),
            words,
        ),
        None => errors.add(&field, message),
    }
    errors.into()
}

/// The words of serde's "expected one of `a`, `b`" (an enum's variants or a struct's fields).
fn allowed_words(message: &str) -> Option<Vec<String>> {
    let list = message.split("expected one of ").nth(1)?;
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// The JSON pointer of a deserialisation path, for looking the value up.
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|segment| match segment {
            Segment::Seq { index } => format!("/{index}"),
            Segment::Map { key } => format!("/{}", key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => format!("/{variant}"),
            Segment::Unknown => "/?".to_string(),
        })
        .collect()
}

/// Query-string extractor with a 400 naming the bad parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// `?limit=&offset=` on every list route.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

impl PageParams {
    pub const MAX_LIMIT: i64 = 200;

    /// The limit and offset to use, or a 400 when out of range.
    pub fn resolve(self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(50);
        let offset = self.offset.unwrap_or(0);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("limit must be between 1 and {}", Self::MAX_LIMIT),
            )
            .with_details(json!({ "parameter": "limit" })));
        }
        if offset < 0 {
            return Err(
                ApiError::bad_request("invalid_query", "offset must not be negative")
                    .with_details(json!({ "parameter": "offset" })),
            );
        }
        Ok((limit, offset))
    }
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Items matching the filters, over all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, total: i64, limit: i64, offset: i64) -> Page<T> {
        Page {
            items,
            total,
            limit,
            offset,
        }
    }
}

/// Reads a typed id from a path segment; a malformed id cannot name anything, so it is 404.
pub fn parse_id<T>(
    raw: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, ApiError> {
    parse(raw).ok_or_else(|| ApiError::not_found(what, raw))
}

/// A JSON body that may be left out entirely (an empty body is `None`); a body that is
/// present gets the same errors as [`ApiJson`].
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the request body is larger than the server accepts",
                    )
                } else {
                    ApiError::bad_request("invalid_body", rejection.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        parse_body(&bytes).map(|value| OptionalJson(Some(value)))
    }
}
