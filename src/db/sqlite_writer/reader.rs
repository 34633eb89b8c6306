//! The point reader: read-only connections for key lookups run inline.

use super::open_connection;
use super::values::{Columns, run_statement};
use crate::db::cipher::DbKey;
use sqlx::Execute;
use sqlx::any::{Any, AnyRow};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Connections that run a read of a few rows by key inline on the calling task, for the
/// lookup every authenticated request makes (the session check). Through the sqlx pool
/// such a read costs two thread hand-offs, to sqlx-sqlite's worker thread and back, and
/// a wake-up: in a profile of API-only writes (`perf record --call-graph dwarf` on
/// `ehrs-bench delivery --receivers 0`) the session check took 11 % of the samples and
/// sqlx-sqlite's worker threads 13 %, against 22 % for all SQL the writer ran. A read here holds the runtime thread while it runs,
/// so only index lookups of a row or two belong here; scans stay on the pool.
pub struct PointReader {
    connections: Vec<std::sync::Mutex<Option<ReadConn>>>,
}

struct ReadConn {
    conn: rusqlite::Connection,
    columns: HashMap<String, Arc<Columns>>,
}

impl std::fmt::Debug for PointReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointReader")
            .field("connections", &self.connections.len())
            .finish()
    }
}

impl PointReader {
    /// Opens `count` read-only connections (one per runtime thread is enough: a read
    /// never waits while holding one) to an existing database file.
    pub fn open(path: &Path, count: usize, key: Option<&DbKey>) -> anyhow::Result<PointReader> {
        let mut connections = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let conn = open_connection(path, key, "PRAGMA query_only = ON;")?;
            connections.push(std::sync::Mutex::new(Some(ReadConn {
                conn,
                columns: HashMap::new(),
            })));
        }
        Ok(PointReader { connections })
    }

    /// Runs `query` and returns its first row. It sees every commit that returned
    /// before it started.
    pub fn fetch_optional<'q, E: Execute<'q, Any>>(
        &self,
        mut query: E,
    ) -> Result<Option<AnyRow>, sqlx::Error> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        let sql = query.sql();
        // A free connection if there is one, else wait for the first (microseconds).
        let mut guard = self
            .connections
            .iter()
            .find_map(|c| c.try_lock().ok())
            .unwrap_or_else(|| {
                self.connections[0]
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            });
        let read = guard.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        let output = run_statement(&read.conn, &mut read.columns, sql.as_str(), arguments)?;
        Ok(output.rows.into_iter().next())
    }

    /// Closes every connection; later reads fail with `PoolClosed`.
    pub fn close(&self) {
        for connection in &self.connections {
            *connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}
