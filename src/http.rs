//! Request extractors that turn every malformed input into a clear [`ApiError`], and the
//! pagination shared by all list routes.

use crate::error::ApiError;
use crate::validation::{FieldErrors, Problem, words};
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::{DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Largest JSON body the API accepts (the partner receiver has its own, smaller limit).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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
    match rejection {
        JsonRejection::JsonSyntaxError(err) => ApiError::malformed_json(root_cause(&err)),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body with content-type application/json",
        ),
        JsonRejection::BytesRejection(rejection) => body_rejection(rejection, MAX_BODY_BYTES),
        other => ApiError::malformed_json(root_cause(&other)),
    }
}

/// A body that could not be read to its end: over `limit`, or cut off by the client.
pub fn body_rejection(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(limit)
    } else {
        ApiError::bad_request(
            "unreadable_body",
            format!(
                "the request body could not be read to its end: {}",
                root_cause(&rejection)
            ),
        )
    }
}

/// The innermost cause's words: axum wraps serde's and hyper's errors in sentences of
/// its own ("Failed to parse the request body as JSON: …"), which would give one failure
/// two wordings.
fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cause = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
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
    Ok(from_value(&value, None)?)
}

/// Reads `value` into `T`; a value of the wrong type or a wrong word is reported per field,
/// by its JSON path from `root` (`None`: the request body itself).
pub fn from_value<T: DeserializeOwned>(
    value: &Value,
    root: Option<&str>,
) -> Result<T, FieldErrors> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| type_error::<T>(value, root, err))
}

/// Parses JSON text into a value, refusing a key that appears twice in one object
/// (serde_json keeps the last one silently). Syntax errors are 400 `malformed_json`.
pub fn strict_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let malformed = |err: &dyn std::fmt::Display| ApiError::malformed_json(err);
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

/// The field errors of a value that did not deserialise, naming the field by its JSON path
/// (once) and saying what it must be in JSON's words.
fn type_error<T: DeserializeOwned>(
    value: &Value,
    root: Option<&str>,
    err: serde_path_to_error::Error<serde_json::Error>,
) -> FieldErrors {
    let path = err.path().clone();
    let message = err.into_inner().to_string();
    let inner = path.to_string();
    let at = match root {
        Some(root) if inner == "." => root.to_string(),
        Some(root) => format!("{root}.{inner}"),
        None => inner.clone(),
    };
    // Errors about a key: serde reports a missing one at its object, an unknown one at
    // itself (the key was read before it was refused), so name the key exactly once.
    if let Some(name) = key_in(&message, "missing field `") {
        return FieldErrors::single(&join(&at, name), "is required");
    }
    if let Some(name) = key_in(&message, "unknown field `") {
        let field = if path.iter().next_back().is_some_and(|s| is_key(s, name)) {
            at
        } else {
            join(&at, name)
        };
        let reason = match words::allowed_words(&message) {
            Some(known) => format!("is not a known field (known: {})", known.join(", ")),
            None => "is not a known field".to_string(),
        };
        return FieldErrors::single(&field, reason);
    }
    let field = if at == "." { "body".to_string() } else { at };
    let mut problem = words::explain(&message, None);
    // A closed set of words: serde lists them only when it was given a string, so a
    // wrong type (a number, say) is tried once more as a string to learn the list.
    if problem.allowed.is_none()
        && let Some(words) = words_by_probe::<T>(value, &path, &inner)
    {
        problem = Problem::one_of(words);
    }
    let mut errors = FieldErrors::new();
    errors.add_problem(&field, problem);
    errors
}

/// The key named in serde's "`prefix`key` …".
fn key_in<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.split('`').next()
}

fn is_key(segment: &serde_path_to_error::Segment, name: &str) -> bool {
    matches!(segment, serde_path_to_error::Segment::Map { key } if key == name)
}

/// `parent.name`, or `name` at the top.
fn join(parent: &str, name: &str) -> String {
    if parent == "." {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// The accepted words of the enum at `path` (`at`, as text), learnt by deserialising
/// `value` again with a string there.
fn words_by_probe<T: DeserializeOwned>(
    value: &Value,
    path: &serde_path_to_error::Path,
    at: &str,
) -> Option<Vec<String>> {
    let mut probe = value.clone();
    let slot = probe.pointer_mut(&json_pointer(path))?;
    if slot.is_string() {
        return None;
    }
    *slot = Value::String("\u{1}".into());
    let retry = serde_path_to_error::deserialize::<_, T>(&probe).err();
    let retry = retry.filter(|e| e.path().to_string() == at)?;
    let message = retry.into_inner().to_string();
    message
        .starts_with("unknown variant")
        .then(|| words::allowed_words(&message))
        .flatten()
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

/// Query-string extractor: a parameter of the wrong type or a wrong word is a 422
/// `validation_failed` naming the parameter, in the same words as a body field.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default())
            .map(ApiQuery)
            .map_err(ApiError::from)
    }
}

/// Reads a query string into `T`, naming a parameter that does not fit by its name and
/// quoting the text it was given.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, FieldErrors> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    let deserializer = serde_urlencoded::Deserializer::new(pairs);
    serde_path_to_error::deserialize::<_, T>(deserializer).map_err(|err| {
        let parameter = err.path().to_string();
        let message = err.into_inner().to_string();
        if let Some(name) = key_in(&message, "missing field `") {
            return FieldErrors::single(name, "is required");
        }
        let given = pairs
            .into_iter()
            .find(|(key, _)| *key == parameter)
            .map(|(_, value)| value.into_owned());
        let field = if parameter == "." {
            "query"
        } else {
            &parameter
        };
        let mut errors = FieldErrors::new();
        errors.add_problem(field, words::explain(&message, given.as_deref()));
        errors
    })
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

    /// The limit and offset to use, or a 422 naming the parameter out of range.
    pub fn resolve(self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(50);
        let offset = self.offset.unwrap_or(0);
        let mut errors = FieldErrors::new();
        errors.range("limit", limit, 1, Self::MAX_LIMIT);
        errors.check(offset >= 0, "offset", "must not be negative");
        errors.finish()?;
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
            .map_err(|rejection| body_rejection(rejection, MAX_BODY_BYTES))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        parse_body(&bytes).map(|value| OptionalJson(Some(value)))
    }
}
