//! `GET /api/v1/audit/patient-access`: the access report, for admins. There is no route
//! that changes or deletes an entry.

use super::AccessLog;
use super::model::{AccessEntry, AccessFilter};
use super::repo::{self, Query, UserKey};
use crate::auth::{AuthState, Require, can};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{ApiQuery, PageParams};
use crate::ids::{AccessId, UserId};
use crate::validation::FieldErrors;
use axum::Json;
use axum::extract::{FromRef, State};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AccessLog: FromRef<S>,
    AuthState: FromRef<S>,
{
    OpenApiRouter::new().routes(routes!(patient_access))
}

/// A page of the access report, newest first; it continues at `next_cursor` (absent on
/// the last page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessPage {
    pub items: Vec<AccessEntry>,
    pub next_cursor: Option<AccessId>,
}

/// Who saw or changed patients' records: every successful answer of the clinical API
/// that showed one patient's data (the patient, registrations, vitals, consultations,
/// queue entries, prescriptions), and every list of them, with the user, their role, the
/// route, the time and the client's address. Filter by `book_no` for "who saw this
/// record", by `user` for "what did this user look at". Entries are written in batches
/// within about a second of the access; admins' own reads are recorded too.
#[utoipa::path(get, path = "/api/v1/audit/patient-access", tag = "audit", security(("bearer" = [])),
    params(AccessFilter),
    responses((status = 200, body = AccessPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn patient_access(
    State(log): State<AccessLog>,
    _admin: Require<can::ReadAccessAudit>,
    ApiQuery(filter): ApiQuery<AccessFilter>,
) -> ApiResult<Json<AccessPage>> {
    let query = checked(filter)?;
    let (items, more) = repo::page(&log.db, &query).await?;
    let next_cursor = more.then(|| items.last().map(|e| e.id.clone())).flatten();
    Ok(Json(AccessPage { items, next_cursor }))
}

/// The filters as the repo takes them, or a 422 naming every bad one. A `from` at or
/// after `to` is an empty range, not an error (as for the delivery log's times).
fn checked(filter: AccessFilter) -> Result<Query, FieldErrors> {
    let mut errors = FieldErrors::new();
    let limit = filter.limit.unwrap_or(50);
    errors.range("limit", limit, 1, PageParams::MAX_LIMIT);
    // An empty filter is no filter, as a form's empty field (the cursor excepted: it is
    // only ever one the report gave).
    let given = |value: Option<String>| {
        value
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let before = filter.cursor.as_deref().and_then(AccessId::parse);
    errors.check(
        filter.cursor.is_none() || before.is_some(),
        "cursor",
        "must be a next_cursor this report gave (acs_…)",
    );
    errors.finish()?;
    let (book_no, user) = (given(filter.book_no), given(filter.user));
    Ok(Query {
        book_no,
        user: user.map(|u| match UserId::parse(&u) {
            Some(id) => UserKey::Id(id),
            None => UserKey::Username(u),
        }),
        from: filter
            .from
            .map(|t| AccessId::first_at(t.timestamp_millis())),
        to: filter.to.map(|t| AccessId::first_at(t.timestamp_millis())),
        before,
        limit,
    })
}
