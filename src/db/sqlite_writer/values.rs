//! Between rusqlite and sqlx's Any driver: running one statement and turning its rows
//! into `AnyRow`s, binding Any arguments as SQLite values, and SQLite errors in sqlx's
//! terms (so callers classify unique, foreign-key and check violations the same on both
//! databases). The mapping follows sqlx-sqlite's own for Any.

use super::STATEMENT_CACHE;
use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::any::{AnyArguments, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Column names and descriptions of one statement's result, shared by its rows.
pub(super) struct Columns {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    columns: Vec<AnyColumn>,
}

pub(super) struct Output {
    pub(super) rows: Vec<AnyRow>,
    pub(super) changes: u64,
}

fn describe(statement: &rusqlite::Statement<'_>) -> Columns {
    let names: Vec<&str> = statement.column_names();
    Columns {
        names: Arc::new(
            names
                .iter()
                .enumerate()
                .map(|(index, name)| (UStr::new(name), index))
                .collect(),
        ),
        columns: names
            .iter()
            .enumerate()
            .map(|(ordinal, name)| AnyColumn {
                ordinal,
                name: UStr::new(name),
                // Types are per value in SQLite; each value carries its own.
                type_info: AnyTypeInfo {
                    kind: AnyTypeInfoKind::Null,
                },
            })
            .collect(),
    }
}

/// A SQLite value as the Any driver represents it (as sqlx-sqlite maps them).
fn any_value(value: ValueRef<'_>) -> Result<AnyValueKind, sqlx::Error> {
    Ok(match value {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(r) => AnyValueKind::Double(r),
        ValueRef::Text(bytes) => AnyValueKind::Text(Arc::new(
            String::from_utf8(bytes.to_vec()).map_err(|e| sqlx::Error::Decode(e.into()))?,
        )),
        ValueRef::Blob(bytes) => AnyValueKind::Blob(Arc::new(bytes.to_vec())),
    })
}

/// An Any argument bound to a SQLite parameter (as sqlx-sqlite's `map_arguments`).
struct Bind<'a>(&'a AnyValueKind);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::Value;
        Ok(match self.0 {
            AnyValueKind::Null(_) => ToSqlOutput::Owned(Value::Null),
            AnyValueKind::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
            AnyValueKind::SmallInt(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
            AnyValueKind::Integer(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
            AnyValueKind::BigInt(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            AnyValueKind::Real(r) => ToSqlOutput::Owned(Value::Real(f64::from(*r))),
            AnyValueKind::Double(d) => ToSqlOutput::Owned(Value::Real(*d)),
            AnyValueKind::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            AnyValueKind::TextSlice(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            AnyValueKind::Blob(bytes) => ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("unsupported argument {other:?}").into(),
                ));
            }
        })
    }
}

/// Runs one statement with its arguments on `conn` and collects what it returns;
/// `columns_cache` keeps each statement's result description.
pub(super) fn run_statement(
    conn: &rusqlite::Connection,
    columns_cache: &mut HashMap<String, Arc<Columns>>,
    sql: &str,
    arguments: Option<AnyArguments>,
) -> Result<Output, sqlx::Error> {
    let mut statement = conn.prepare_cached(sql).map_err(to_sqlx)?;
    let values = arguments.map(|a| a.values.0).unwrap_or_default();
    for slot in 1..=statement.parameter_count() {
        // `$N` (and `?N`) name argument N, as in sqlx; a bare `?` is positional.
        let index = statement
            .parameter_name(slot)
            .and_then(|name| name[1..].parse::<usize>().ok())
            .unwrap_or(slot);
        let value = values.get(index - 1).ok_or_else(|| {
            sqlx::Error::Protocol(format!("no argument bound for parameter {index}"))
        })?;
        statement
            .raw_bind_parameter(slot, Bind(value))
            .map_err(to_sqlx)?;
    }
    let columns = match columns_cache.get(sql) {
        Some(columns) => columns.clone(),
        None => {
            let columns = Arc::new(describe(&statement));
            if columns_cache.len() >= STATEMENT_CACHE {
                columns_cache.clear();
            }
            columns_cache.insert(sql.to_string(), columns.clone());
            columns
        }
    };
    let readonly = statement.readonly();
    let mut rows = Vec::new();
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next().map_err(to_sqlx)? {
        let mut values = Vec::with_capacity(columns.columns.len());
        for index in 0..columns.columns.len() {
            values.push(AnyValue {
                kind: any_value(row.get_ref(index).map_err(to_sqlx)?)?,
            });
        }
        rows.push(AnyRow {
            column_names: columns.names.clone(),
            columns: columns.columns.clone(),
            values,
        });
    }
    drop(cursor);
    let changes = if readonly { 0 } else { conn.changes() };
    Ok(Output { rows, changes })
}

/// A SQLite error in sqlx's terms, so callers classify it (unique, foreign key, check)
/// the same on both databases.
#[derive(Debug)]
struct SqliteError {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteError {}

impl DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

pub(super) fn to_sqlx(err: rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteError {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
