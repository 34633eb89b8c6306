//! The access audit's types: what a handler showed ([`Shown`]), one recorded access
//! ([`AccessEntry`]), and the report's filters ([`AccessFilter`]).

use crate::auth::{CurrentUser, Role};
use crate::ids::{AccessId, UserId};
use crate::time::Timestamp;
use axum::response::{IntoResponseParts, ResponseParts};
use serde::{Deserialize, Serialize};

/// What the request did with the patients' data it answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read one patient's data (the patient, a visit, vitals, a consultation, …).
    Read,
    /// A list; the entry names every patient it returned.
    List,
    /// Created or changed one patient's data (the answer shows it, too).
    Write,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::List => "list",
            Action::Write => "write",
        }
    }

    pub fn parse(raw: &str) -> Option<Action> {
        [Action::Read, Action::List, Action::Write]
            .into_iter()
            .find(|action| action.as_str() == raw)
    }
}

/// A handler's statement of which patients its answer shows, and to whom: a response
/// part, so it travels with the answer (also through an idempotent write's commit) to
/// the layer that records it once the answer is a success.
#[derive(Debug, Clone)]
pub struct Shown {
    pub(super) user: CurrentUser,
    pub(super) action: Action,
    pub(super) book_nos: Vec<String>,
}

impl Shown {
    /// The answer shows one patient's data.
    pub fn read(user: &CurrentUser, book_no: impl std::fmt::Display) -> Shown {
        Shown::new(user, Action::Read, [book_no])
    }

    /// The request created or changed one patient's data.
    pub fn wrote(user: &CurrentUser, book_no: impl std::fmt::Display) -> Shown {
        Shown::new(user, Action::Write, [book_no])
    }

    /// A list: every patient it returned, each once, in the order shown (none for an
    /// empty list, which is recorded all the same: the search was made).
    pub fn listed<B: std::fmt::Display>(
        user: &CurrentUser,
        book_nos: impl IntoIterator<Item = B>,
    ) -> Shown {
        Shown::new(user, Action::List, book_nos)
    }

    fn new<B: std::fmt::Display>(
        user: &CurrentUser,
        action: Action,
        book_nos: impl IntoIterator<Item = B>,
    ) -> Shown {
        let mut unique: Vec<String> = Vec::new();
        for book_no in book_nos {
            let book_no = book_no.to_string();
            if !unique.contains(&book_no) {
                unique.push(book_no);
            }
        }
        Shown {
            user: user.clone(),
            action,
            book_nos: unique,
        }
    }
}

impl IntoResponseParts for Shown {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        parts.extensions_mut().insert(self);
        Ok(parts)
    }
}

/// One recorded access to patients' records.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessEntry {
    /// `acs_…`, in the order the accesses were answered.
    pub id: AccessId,
    /// When the answer was given.
    pub at: Timestamp,
    pub user_id: UserId,
    /// The username at the time of the access.
    pub username: String,
    /// The role at the time of the access.
    pub role: Role,
    pub action: Action,
    /// The HTTP method, e.g. `GET`.
    pub method: String,
    /// The route as declared, e.g. `/api/v1/patients/{book_no}`.
    #[schema(example = "/api/v1/patients/{book_no}")]
    pub route: String,
    /// The client's address as the server saw it (no proxy header is trusted).
    pub client_address: String,
    /// The patients whose data the answer showed: one for a read or write, every patient
    /// returned for a list (none for an empty list).
    pub book_nos: Vec<String>,
}

/// Filters of `GET /audit/patient-access`; newest first.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessFilter {
    /// Only accesses that showed this patient (exact book number): who saw this record.
    pub book_no: Option<String>,
    /// Only this user's accesses, by username (any case) or user id: what they looked at.
    pub user: Option<String>,
    /// Only accesses at or after this time (RFC 3339).
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only accesses before this time (RFC 3339).
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^acs_[0-9a-z]{26}$")]
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}
