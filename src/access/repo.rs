//! SQL of the access audit: the only code that touches `patient_access` and
//! `patient_access_patients`. Entries are appended in batches and removed only by the
//! retention.

use super::model::{AccessEntry, Action};
use crate::auth::Role;
use crate::db::{Backend, Db, json_ids, json_rows};
use crate::ids::{AccessId, UserId};
use crate::time::Timestamp;
use serde_json::{Value, json};
use sqlx::Row;

const COLUMNS: &str = "id, at, user_id, username, role, action, method, route, client_addr";

/// Appends `entries` in one transaction: two statements, whatever the batch's size (each
/// table's rows go in as one JSON array).
pub async fn append(db: &Db, entries: &[AccessEntry]) -> Result<(), sqlx::Error> {
    let rows: Vec<Value> = entries
        .iter()
        .map(|entry| {
            json!({
                "id": entry.id, "at": entry.at.millis(), "user_id": entry.user_id,
                "username": entry.username, "role": entry.role, "action": entry.action,
                "method": entry.method, "route": entry.route, "client_addr": entry.client_address,
            })
        })
        .collect();
    let patients: Vec<Value> = entries
        .iter()
        .flat_map(|entry| {
            entry.book_nos.iter().enumerate().map(|(position, book_no)| {
                json!({ "access_id": entry.id, "position": position, "book_no": book_no })
            })
        })
        .collect();
    let mut tx = db.begin().await?;
    let backend = tx.backend();
    let sql = format!(
        "INSERT INTO patient_access ({COLUMNS}) {}",
        json_records(
            backend,
            "$1",
            &COLUMNS.split(", ").collect::<Vec<_>>(),
            &["at"]
        )
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(Value::Array(rows).to_string())
        .execute(tx.conn())
        .await?;
    if !patients.is_empty() {
        let sql = format!(
            "INSERT INTO patient_access_patients (access_id, position, book_no) {}",
            json_records(
                backend,
                "$1",
                &["access_id", "position", "book_no"],
                &["position"]
            )
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(Value::Array(patients).to_string())
            .execute(tx.conn())
            .await?;
    }
    tx.commit().await
}

/// `SELECT` of `fields` from each object of the JSON array `param`, per dialect; the
/// `integers` among them as integers, the rest as text.
fn json_records(backend: Backend, param: &str, fields: &[&str], integers: &[&str]) -> String {
    let columns: Vec<String> = fields
        .iter()
        .map(|field| match backend {
            Backend::Sqlite => format!("json_extract(value, '$.{field}')"),
            Backend::Postgres if integers.contains(field) => {
                format!("CAST(r->>'{field}' AS BIGINT)")
            }
            Backend::Postgres => format!("r->>'{field}'"),
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
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
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
    let sql = format!(
        "SELECT {COLUMNS} FROM patient_access \
         WHERE ($1 IS NULL OR id IN (SELECT access_id FROM patient_access_patients WHERE book_no = $1)) \
         AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR lower(username) = lower($3)) \
         AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) AND ($6 IS NULL OR id < $6) \
         ORDER BY id DESC LIMIT $7"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(query.book_no.as_deref())
        .bind(user_id)
        .bind(username)
        .bind(query.from.map(Timestamp::millis))
        .bind(query.to.map(Timestamp::millis))
        .bind(query.before.as_ref().map(AccessId::as_str))
        .bind(query.limit + 1)
        .fetch_all(db.pool())
        .await?;
    let more = rows.len() as i64 > query.limit;
    let mut entries = rows
        .iter()
        .take(query.limit as usize)
        .map(entry)
        .collect::<Result<Vec<_>, _>>()?;
    if !entries.is_empty() {
        add_book_nos(db, &mut entries).await?;
    }
    Ok((entries, more))
}

async fn add_book_nos(db: &Db, entries: &mut [AccessEntry]) -> Result<(), sqlx::Error> {
    let ids = json_ids(&entries.iter().map(|e| &e.id).collect::<Vec<_>>());
    let sql = format!(
        "SELECT access_id, book_no FROM patient_access_patients WHERE access_id IN ({}) \
         ORDER BY access_id, position",
        json_rows(db.backend(), "$1")
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(db.pool())
        .await?;
    for row in &rows {
        let access: AccessId = row.try_get("access_id")?;
        if let Some(entry) = entries.iter_mut().find(|e| e.id == access) {
            entry.book_nos.push(row.try_get("book_no")?);
        }
    }
    Ok(())
}

fn entry(row: &sqlx::any::AnyRow) -> Result<AccessEntry, sqlx::Error> {
    let decode = |column: &str, what: &str| sqlx::Error::ColumnDecode {
        index: column.into(),
        source: format!("not a known {what}").into(),
    };
    let role: String = row.try_get("role")?;
    let action: String = row.try_get("action")?;
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
        book_nos: Vec::new(),
    })
}

/// Removes the entries made before `before`; returns how many.
pub async fn prune(db: &Db, before: Timestamp) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "DELETE FROM patient_access_patients WHERE access_id IN \
         (SELECT id FROM patient_access WHERE at < $1)",
    )
    .bind(before.millis())
    .execute(tx.conn())
    .await?;
    let removed = sqlx::query("DELETE FROM patient_access WHERE at < $1")
        .bind(before.millis())
        .execute(tx.conn())
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(removed)
}
