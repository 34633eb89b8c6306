//! SQL of the access audit: the only code that touches `patient_access` and
//! `patient_access_patients`. Entries are appended in batches and removed only by the
//! retention.

use super::model::{AccessEntry, Action};
use crate::auth::Role;
use crate::db::{Backend, Db, json_ids};
use crate::ids::{AccessId, UserId};
use crate::time::Timestamp;
use sqlx::Row;

const COLUMNS: &str =
    "id, at, user_id, username, role, action, method, route, client_addr, book_nos";

/// Appends `entries` in one transaction: two statements, whatever the batch's size. Each
/// table's rows go in as one JSON array of arrays (columns by position: the cheapest
/// form for SQLite's and PostgreSQL's JSON functions to take apart).
pub async fn append(db: &Db, entries: &[AccessEntry]) -> Result<(), sqlx::Error> {
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            let role = e.role.as_str();
            let (action, book_nos) = (e.action.as_str(), json_ids(&e.book_nos));
            (
                &e.id,
                e.at.millis(),
                &e.user_id,
                &e.username,
                role,
                action,
                &e.method,
                &e.route,
                &e.client_address,
                book_nos,
            )
        })
        .collect();
    let patients: Vec<(&String, &AccessId)> = entries
        .iter()
        .flat_map(|e| e.book_nos.iter().map(move |book_no| (book_no, &e.id)))
        .collect();
    let mut tx = db.begin().await?;
    let backend = tx.backend();
    let sql = format!(
        "INSERT INTO patient_access ({COLUMNS}) {}",
        json_records(backend, "$1", 10, &[1])
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(serde_json::to_string(&rows).map_err(|err| sqlx::Error::Encode(err.into()))?)
        .execute(tx.conn())
        .await?;
    if !patients.is_empty() {
        let sql = format!(
            "INSERT INTO patient_access_patients (book_no, access_id) {}",
            json_records(backend, "$1", 2, &[])
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serde_json::to_string(&patients).map_err(|err| sqlx::Error::Encode(err.into()))?)
            .execute(tx.conn())
            .await?;
    }
    tx.commit().await
}

/// `SELECT` of `count` columns from each array of the JSON array `param`, by position,
/// per dialect; the positions in `integers` as integers, the rest as text.
fn json_records(backend: Backend, param: &str, count: usize, integers: &[usize]) -> String {
    let columns: Vec<String> = (0..count)
        .map(|i| match backend {
            Backend::Sqlite => format!("json_extract(value, '$[{i}]')"),
            Backend::Postgres if integers.contains(&i) => format!("CAST(r->>{i} AS BIGINT)"),
            Backend::Postgres => format!("r->>{i}"),
        })
        .collect();
    let from = match backend {
        Backend::Sqlite => format!("json_each({param})"),
        Backend::Postgres => format!("json_array_elements(CAST({param} AS json)) AS r"),
    };
    format!("SELECT {} FROM {from}", columns.join(", "))
}

/// Who the report is about: a user id, or a username (any case).
pub enum UserKey {
    Id(UserId),
    Username(String),
}

/// The report's filters, checked.
pub struct Query {
    pub book_no: Option<String>,
    pub user: Option<UserKey>,
    /// Ids at or above this one (the first id of the `from` millisecond).
    pub from: Option<AccessId>,
    /// Ids below this one (the first id of the `to` millisecond).
    pub to: Option<AccessId>,
    /// The cursor: ids below this one.
    pub before: Option<AccessId>,
    pub limit: i64,
}

/// Newest first, at most `limit`; and whether more follow.
pub async fn page(db: &Db, query: &Query) -> Result<(Vec<AccessEntry>, bool), sqlx::Error> {
    let (user_id, username) = match &query.user {
        Some(UserKey::Id(id)) => (Some(id.as_str()), None),
        Some(UserKey::Username(name)) => (None, Some(name.as_str())),
        None => (None, None),
    };
    // Usernames never change, so a username names the same user id it did then.
    let sql = format!(
        "SELECT {COLUMNS} FROM patient_access \
         WHERE ($1 IS NULL OR id IN (SELECT access_id FROM patient_access_patients WHERE book_no = $1)) \
         AND ($2 IS NULL OR user_id = $2) \
         AND ($3 IS NULL OR user_id IN (SELECT id FROM users WHERE lower(username) = lower($3))) \
         AND ($4 IS NULL OR id >= $4) AND ($5 IS NULL OR id < $5) AND ($6 IS NULL OR id < $6) \
         ORDER BY id DESC LIMIT $7"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(query.book_no.as_deref())
        .bind(user_id)
        .bind(username)
        .bind(query.from.as_ref().map(AccessId::as_str))
        .bind(query.to.as_ref().map(AccessId::as_str))
        .bind(query.before.as_ref().map(AccessId::as_str))
        .bind(query.limit + 1)
        .fetch_all(db.pool())
        .await?;
    let more = rows.len() as i64 > query.limit;
    let entries = rows
        .iter()
        .take(query.limit as usize)
        .map(entry)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((entries, more))
}

fn entry(row: &sqlx::any::AnyRow) -> Result<AccessEntry, sqlx::Error> {
    let decode = |column: &str, what: &str| sqlx::Error::ColumnDecode {
        index: column.into(),
        source: format!("not a known {what}").into(),
    };
    let role: String = row.try_get("role")?;
    let action: String = row.try_get("action")?;
    let book_nos: String = row.try_get("book_nos")?;
    Ok(AccessEntry {
        id: row.try_get("id")?,
        at: Timestamp(row.try_get("at")?),
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        role: Role::parse(&role).ok_or_else(|| decode("role", "role"))?,
        action: Action::parse(&action).ok_or_else(|| decode("action", "action"))?,
        method: row.try_get("method")?,
        route: row.try_get("route")?,
        client_address: row.try_get("client_addr")?,
        book_nos: serde_json::from_str(&book_nos).map_err(|err| sqlx::Error::ColumnDecode {
            index: "book_nos".into(),
            source: err.into(),
        })?,
    })
}

/// Removes the entries with ids below `before` (made before its millisecond); returns
/// how many. Each patient's rows are found through the book-number key: every book
/// number recorded is a patient's (the handlers name only patients they found, and a
/// patient is never removed), so no full scan of the table is needed.
pub async fn prune(db: &Db, before: &AccessId) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "DELETE FROM patient_access_patients \
         WHERE book_no IN (SELECT book_no FROM patients) AND access_id < $1",
    )
    .bind(before.as_str())
    .execute(tx.conn())
    .await?;
    let removed = sqlx::query("DELETE FROM patient_access WHERE id < $1")
        .bind(before.as_str())
        .execute(tx.conn())
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(removed)
}
