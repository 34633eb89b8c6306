//! The one error type of the HTTP API.
//!
//! Every failure a client can see is an [`ApiError`] rendered as
//! `{"error": {"code", "message", "details"}}` with a fitting status. Client errors say
//! precisely what is wrong; server errors are logged with their cause chain and show the
//! client nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// The cause of a server error; logged, never sent.
    source: Option<anyhow::Error>,
    /// Seconds for a `Retry-After` header (429, 503). 32 bits: the error travels in every
    /// `Result`, so it is kept small (clippy's `result_large_err`).
    retry_after: Option<std::num::NonZeroU32>,
}

/// What a record was looked up by, in a 404.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    Id,
    BookNo,
}

impl Key {
    fn words(self) -> &'static str {
        match self {
            Key::Id => "id",
            Key::BookNo => "book number",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Key::Id => "id",
            Key::BookNo => "book_no",
        }
    }
}

/// The JSON body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `validation_failed` or `not_found`.
    pub code: String,
    /// A sentence for humans naming what is wrong.
    pub message: String,
    /// Structured specifics (for validation: `{"fields": [{"field", "reason"}]}`).
    #[schema(value_type = Object)]
    pub details: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
            source: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Tells the client when to try again (`Retry-After`, whole seconds, at least 1).
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        self.retry_after = std::num::NonZeroU32::new(seconds.clamp(1, u64::from(u32::MAX)) as u32);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::not_found_by(what, Key::Id, id)
    }

    /// 404 naming what was looked for by the key it was looked up with: `no patient with
    /// book number 'SL-1'`; `details` carries the key under its JSON field name.
    pub fn not_found_by(what: &str, key: Key, value: impl std::fmt::Display) -> Self {
        let value = value.to_string();
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with {} '{value}'", key.words()),
        )
        .with_details(json!({ "resource": what, key.field(): value }))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// Adds `details.existing_id`: the id of the record a conflict is with, so that the
    /// client can fetch or use it instead of guessing.
    pub fn with_existing(mut self, id: impl std::fmt::Display) -> Self {
        if !self.details.is_object() {
            self.details = json!({});
        }
        self.details["existing_id"] = json!(id.to_string());
        self
    }

    /// 400 `malformed_json`: the one wording for text that does not parse as JSON,
    /// wherever it arrives (API bodies, partner events, Svix's operational webhooks).
    /// 409 `code`: the server keeps at most `limit` of `what`; the message names the
    /// setting that raises the limit.
    pub fn limit_reached(code: &'static str, what: &str, limit: i64, setting: &str) -> Self {
        Self::conflict(
            code,
            format!("this server keeps at most {limit} {what}: delete one, or raise {setting}"),
        )
        .with_details(json!({ "limit": limit }))
    }

    pub fn malformed_json(cause: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {cause}"),
        )
    }

    /// 413 `payload_too_large`, naming the limit.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the {limit_bytes} bytes this route accepts"),
        )
        .with_details(json!({ "limit_bytes": limit_bytes }))
    }

    /// 422 under a route's own code (a partner's event, say), naming every field and why
    /// in `details.fields`, like `validation_failed`.
    pub fn invalid_fields(
        code: &'static str,
        lead: &str,
        errors: crate::validation::FieldErrors,
    ) -> Self {
        ApiError::unprocessable(code, format!("{lead}: {}", errors.summary()))
            .with_details(json!(errors))
    }

    /// A single-field validation failure (422).
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        crate::validation::FieldErrors::single(field, reason).into()
    }

    /// 422 `invalid_reference`: the body field `field` names no record (`what '{value}'`).
    pub fn invalid_reference(field: &str, what: &str, value: &str) -> Self {
        Self::unprocessable("invalid_reference", format!("{field}: no {what} '{value}'"))
            .with_details(json!({ "field": field, "value": value }))
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged",
            )
        }
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db_err) = &err {
            match db_err.kind() {
                sqlx::error::ErrorKind::UniqueViolation => {
                    return ApiError::conflict(
                        "already_exists",
                        "a record with these unique values already exists",
                    );
                }
                sqlx::error::ErrorKind::ForeignKeyViolation => {
                    return ApiError::unprocessable(
                        "invalid_reference",
                        "the request refers to a record that does not exist",
                    );
                }
                sqlx::error::ErrorKind::CheckViolation => {
                    return ApiError::unprocessable(
                        "constraint_violated",
                        "the request would break a data rule",
                    );
                }
                _ => {}
            }
        }
        if matches!(err, sqlx::Error::PoolTimedOut) {
            return ApiError::service_unavailable("the database is busy; try again");
        }
        ApiError::internal(err)
    }
}

/// 422 `validation_failed`, naming every field and why (`details.fields`).
impl From<crate::validation::FieldErrors> for ApiError {
    fn from(errors: crate::validation::FieldErrors) -> Self {
        ApiError::invalid_fields("validation_failed", "invalid request", errors)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::internal(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(
                error = format!("{source:#}"),
                "request failed with an internal error"
            );
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.get().into());
        }
        response
    }
}
