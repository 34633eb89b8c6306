//! The SQLite write path: one `rusqlite` connection, run inline by the task that holds
//! it, with group commit.
//!
//! Why not sqlx's SQLite driver for writes: it runs every statement on a worker thread
//! of its own, so each statement of a request transaction costs two thread hand-offs and
//! a task wake-up, all while the one write connection is held. Measured on the 2-core
//! reference machine that capped API writes at ~1,500/s. Here a transaction costs one
//! hand-off, taking the async lock of the connection; its statements then run on the
//! task's own thread (a WAL-mode write with `synchronous = NORMAL` touches only the page
//! cache and the WAL file, tens of microseconds), and the lock is given back.
//!
//! Group commit: every request transaction is a savepoint inside a shared SQLite
//! transaction (a *batch*). A failing request rolls back to its savepoint and touches
//! nothing else. When a request commits while others are queued for the lock, its
//! savepoint is released but the batch stays open for them, and one commit makes the
//! whole batch durable. Every caller's `commit` returns only after that commit, so an API
//! call still answers only once its write is durable; commit-time wake-ups (the outbox
//! signal) fire after it too. The batch is ended by whichever member finds nobody
//! queued, or by a flush task queued behind the members (the lock is fair, first come
//! first served), so a batch can never be left open by a cancelled waiter. If SQLite
//! itself abandons the transaction (I/O error, disk full), every member of the batch
//! gets the error: none of their writes happened.
//!
//! Repository code does not change: [`TxConn`] implements sqlx's `Executor` for the Any
//! driver, turning its arguments into SQLite values and SQLite rows into `AnyRow`s the
//! same way sqlx's own SQLite driver does for Any (see `map_arguments` and
//! `AnyRow::map_from` in sqlx-sqlite 0.9), so every `FromRow`/`Decode` keeps working.
//! Those `AnyRow`/`AnyValue` fields are public but marked semver-exempt by sqlx; the
//! exact sqlx-core version is pinned in Cargo.toml for that reason.

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::Either;
use sqlx::any::{
    Any, AnyArguments, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue,
};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Execute, Executor};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, oneshot};

/// Most request transactions one commit makes durable: bounds how long the first member
/// of a batch waits for the last.
const MAX_BATCH: usize = 64;
/// How long a transaction waits for the writer before giving up (as the pool did).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct statements kept prepared (repositories build a few SQL texts at run time).
const STATEMENT_CACHE: usize = 256;
/// The writer's busy timeout, as `PRAGMA busy_timeout` in `SQLITE_PRAGMAS` sets it.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Looks a WAL restart takes for readers to leave old frames, 50 µs apart.
const RESTART_WAIT_TRIES: i32 = 100;

/// Busy handler of the writer during a WAL restart (see [`Writer::checkpoint`]).
fn short_restart_wait(tries: i32) -> bool {
    if tries >= RESTART_WAIT_TRIES {
        return false;
    }
    std::thread::sleep(Duration::from_micros(50));
    true
}

/// The one SQLite write connection of a [`super::Db`].
pub struct Writer {
    state: Arc<Mutex<Writing>>,
    /// Transactions (and flushes) waiting for the lock: a member that commits keeps the
    /// batch open only while this is non-zero.
    queued: AtomicUsize,
    /// SQLite commits made (each makes one batch durable).
    commits: AtomicU64,
}

struct Writing {
    /// `None` once closed.
    conn: Option<rusqlite::Connection>,
    batch: Option<Batch>,
    columns: HashMap<String, Arc<Columns>>,
}

/// The open SQLite transaction shared by the request transactions that released their
/// savepoints into it, waiting for its commit.
#[derive(Default)]
struct Batch {
    members: Vec<oneshot::Sender<Result<(), Arc<str>>>>,
    wake: Vec<Arc<Notify>>,
    flush_queued: bool,
}

/// Column names and descriptions of one statement's result, shared by its rows.
struct Columns {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    columns: Vec<AnyColumn>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish()
    }
}

impl Writer {
    /// Opens the write connection to an existing database file (the read pool made it).
    pub fn open(path: &Path) -> anyhow::Result<Arc<Writer>> {
        let conn = open_connection(path, "")?;
        Ok(Arc::new(Writer {
            state: Arc::new(Mutex::new(Writing {
                conn: Some(conn),
                batch: None,
                columns: HashMap::new(),
            })),
            queued: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
        }))
    }

    /// Starts a request transaction: waits for the connection, joins the open batch (or
    /// begins one) and opens this transaction's savepoint.
    pub async fn begin(self: &Arc<Self>) -> Result<LiteTx, sqlx::Error> {
        let mut guard = self.lock().await?;
        let started = guard.start();
        match started {
            Ok(()) => Ok(LiteTx {
                guard: Some(guard),
                writer: self.clone(),
            }),
            Err(err) => {
                self.finish(&mut guard, false);
                Err(err)
            }
        }
    }

    async fn lock(&self) -> Result<OwnedMutexGuard<Writing>, sqlx::Error> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let guard = tokio::time::timeout(ACQUIRE_TIMEOUT, self.state.clone().lock_owned()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let guard = guard.map_err(|_| sqlx::Error::PoolTimedOut)?;
        if guard.conn.is_none() {
            return Err(sqlx::Error::PoolClosed);
        }
        Ok(guard)
    }

    /// Ends the batch if it should end now: commits it when it has members and nobody is
    /// queued to join (or it is full, or `force`), else leaves it open with a flush
    /// queued behind the waiters. A batch with no members is rolled back (it holds
    /// nothing, and an open transaction would keep other processes from writing).
    fn finish(self: &Arc<Self>, w: &mut Writing, force: bool) {
        let Writing { conn, batch, .. } = w;
        let (Some(conn), Some(open)) = (conn.as_ref(), batch.as_mut()) else {
            return;
        };
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back on its own (I/O error, disk full):
            // every member's write is gone.
            fail(
                batch.take().unwrap_or_default(),
                "the database abandoned the transaction".into(),
            );
            return;
        }
        if open.members.is_empty() {
            let _ = run_control(conn, "ROLLBACK");
            *batch = None;
            return;
        }
        if !force && self.queued.load(Ordering::SeqCst) > 0 && open.members.len() < MAX_BATCH {
            if open.flush_queued {
                return;
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                open.flush_queued = true;
                runtime.spawn(self.clone().flush());
                return;
            }
        }
        let done = batch.take().unwrap_or_default();
        match run_control(conn, "COMMIT") {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("ehrs_sqlite_commits_total").increment(1);
                metrics::counter!("ehrs_sqlite_committed_transactions_total")
                    .increment(done.members.len() as u64);
                for member in done.members {
                    let _ = member.send(Ok(()));
                }
                for signal in done.wake {
                    signal.notify_one();
                }
            }
            Err(err) => {
                if !conn.is_autocommit() {
                    let _ = run_control(conn, "ROLLBACK");
                }
                fail(done, err.to_string().into());
            }
        }
    }

    /// Commits whatever batch is open once the members queued before it are done.
    async fn flush(self: Arc<Self>) {
        let Ok(mut guard) = self.lock().await else {
            return;
        };
        if let Some(batch) = guard.batch.as_mut() {
            batch.flush_queued = false;
        }
        self.finish(&mut guard, true);
    }

    /// Copies the WAL's remaining frames into the database between two commits and has
    /// the next write start the WAL over (RESTART: waits, at most the busy timeout, for
    /// readers still reading old frames; reads take microseconds). Ends the open batch
    /// first: a connection inside a transaction cannot checkpoint.
    ///
    /// RESTART waits for readers still on old frames through the busy handler, all the
    /// while holding the writer, and the connection's own handler sleeps 1, 2, 5, 10 ms…
    /// between looks, up to the 10 s busy timeout behind one long read. Reads take
    /// microseconds, so this looks every 50 µs instead and after [`RESTART_WAIT_TRIES`]
    /// (~5 ms) gives up until the next round: a long read keeps its old frames and the
    /// WAL starts over a round later, instead of API writes waiting for it. (With 10
    /// subscriptions at 400 writes/s the restart held the writer 5–8 ms; this change
    /// alone measured no difference in the API's p99 there, the second passive pass in
    /// `spawn_checkpointer` did.)
    pub async fn checkpoint(self: &Arc<Self>) -> Result<(), sqlx::Error> {
        let mut guard = self.lock().await?;
        self.finish(&mut guard, true);
        let conn = guard.conn()?;
        conn.busy_handler(Some(short_restart_wait))
            .map_err(to_sqlx)?;
        let done = match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
            // Readers outlasted the wait: the next round tries again.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                Ok(())
            }
            other => other.map_err(to_sqlx),
        };
        // Back to the connection's busy timeout for everything else.
        conn.busy_timeout(BUSY_TIMEOUT).map_err(to_sqlx)?;
        done
    }

    /// Closes the connection once the current batch is done; later transactions fail
    /// with `PoolClosed`.
    pub async fn close(self: &Arc<Self>) {
        let mut guard = self.state.clone().lock_owned().await;
        self.finish(&mut guard, true);
        guard.columns.clear();
        guard.conn = None;
    }

    /// The value of `PRAGMA name` on the write connection, as text.
    #[cfg(test)]
    pub async fn pragma(self: &Arc<Self>, name: &str) -> Result<String, sqlx::Error> {
        let guard = self.lock().await?;
        let conn = guard.conn()?;
        conn.query_row(&format!("PRAGMA {name}"), [], |row| {
            row.get::<_, rusqlite::types::Value>(0)
        })
        .map(|value| match value {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(text) => text,
            other => format!("{other:?}"),
        })
        .map_err(to_sqlx)
    }
}

impl Writing {
    fn conn(&self) -> Result<&rusqlite::Connection, sqlx::Error> {
        self.conn.as_ref().ok_or(sqlx::Error::PoolClosed)
    }

    /// Begins the batch when none is open, then this transaction's savepoint.
    fn start(&mut self) -> Result<(), sqlx::Error> {
        let conn = self.conn.as_ref().ok_or(sqlx::Error::PoolClosed)?;
        if self.batch.is_none() {
            run_control(conn, "BEGIN IMMEDIATE").map_err(to_sqlx)?;
            self.batch = Some(Batch::default());
        }
        run_control(conn, "SAVEPOINT ehrs_tx").map_err(to_sqlx)
    }

    /// Undoes this transaction's writes, leaving the batch's other members untouched.
    fn roll_back_savepoint(&self) {
        if let Ok(conn) = self.conn()
            && !conn.is_autocommit()
        {
            let _ = run_control(conn, "ROLLBACK TO ehrs_tx");
            let _ = run_control(conn, "RELEASE ehrs_tx");
        }
    }

    /// Runs one statement with its arguments and collects what it returns.
    fn run(&mut self, sql: &str, arguments: Option<AnyArguments>) -> Result<Output, sqlx::Error> {
        let conn = self.conn.as_ref().ok_or(sqlx::Error::PoolClosed)?;
        run_statement(conn, &mut self.columns, sql, arguments)
    }
}

/// Runs one statement with its arguments on `conn` and collects what it returns;
/// `columns_cache` keeps each statement's result description.
fn run_statement(
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
    pub fn open(path: &Path, count: usize) -> anyhow::Result<PointReader> {
        let mut connections = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let conn = open_connection(path, "PRAGMA query_only = ON;")?;
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

struct Output {
    rows: Vec<AnyRow>,
    changes: u64,
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

/// Opens a `rusqlite` connection to the database file with the settings of every pooled
/// connection (see `sqlite_pool`), then `extra` pragmas, and a statement cache.
fn open_connection(path: &Path, extra: &str) -> anyhow::Result<rusqlite::Connection> {
    use anyhow::Context;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
    conn.execute_batch(super::SQLITE_PRAGMAS)
        .and_then(|()| conn.execute_batch(extra))
        .context("cannot configure a SQLite connection")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Runs a transaction-control statement (kept prepared: they run on every request).
fn run_control(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

fn fail(batch: Batch, reason: Arc<str>) {
    for member in batch.members {
        let _ = member.send(Err(reason.clone()));
    }
}

/// One request transaction on the writer: holds the connection until it commits or
/// rolls back (or is dropped, which rolls back).
pub struct LiteTx {
    guard: Option<OwnedMutexGuard<Writing>>,
    writer: Arc<Writer>,
}

impl std::fmt::Debug for LiteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteTx")
            .field("open", &self.guard.is_some())
            .finish()
    }
}

impl LiteTx {
    fn writing(&mut self) -> Result<&mut Writing, sqlx::Error> {
        self.guard
            .as_deref_mut()
            .ok_or_else(|| sqlx::Error::Protocol("the transaction has ended".into()))
    }

    /// Releases the savepoint into the batch and waits until the batch is durable; then
    /// `wake` has been woken.
    pub async fn commit(mut self, wake: Vec<Arc<Notify>>) -> Result<(), sqlx::Error> {
        let Some(mut guard) = self.guard.take() else {
            return Err(sqlx::Error::Protocol("the transaction has ended".into()));
        };
        if let Err(err) = guard
            .conn()
            .and_then(|conn| run_control(conn, "RELEASE ehrs_tx").map_err(to_sqlx))
        {
            guard.roll_back_savepoint();
            self.writer.finish(&mut guard, false);
            return Err(err);
        }
        let (sender, receiver) = oneshot::channel();
        if let Some(batch) = guard.batch.as_mut() {
            batch.members.push(sender);
            for signal in wake {
                if !batch.wake.iter().any(|s| Arc::ptr_eq(s, &signal)) {
                    batch.wake.push(signal);
                }
            }
        }
        self.writer.finish(&mut guard, false);
        drop(guard);
        match receiver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(sqlx::Error::Protocol(format!(
                "the commit failed: {reason}"
            ))),
            Err(_) => Err(sqlx::Error::Protocol(
                "the commit was abandoned (the database was closed)".into(),
            )),
        }
    }

    pub fn rollback(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.roll_back_savepoint();
            self.writer.finish(&mut guard, false);
        }
    }
}

impl Drop for LiteTx {
    fn drop(&mut self) {
        self.end();
    }
}

/// The connection of a [`super::Tx`], for sqlx queries: `query.fetch_one(tx.conn())`.
#[derive(Debug)]
pub enum TxConn<'c> {
    Postgres(&'c mut sqlx::AnyConnection),
    Sqlite(&'c mut LiteTx),
}

impl<'c> TxConn<'c> {
    fn run_sqlite<'q, E: Execute<'q, Any>>(
        tx: &mut LiteTx,
        mut query: E,
    ) -> Result<Output, sqlx::Error> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        let sql = query.sql();
        tx.writing()?.run(sql.as_str(), arguments)
    }
}

impl<'c> Executor<'c> for TxConn<'c> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            TxConn::Postgres(conn) => conn.fetch_many(query),
            TxConn::Sqlite(tx) => {
                let items: Vec<Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> =
                    match Self::run_sqlite(tx, query) {
                        Ok(output) => output
                            .rows
                            .into_iter()
                            .map(|row| Ok(Either::Right(row)))
                            .chain(std::iter::once(Ok(Either::Left(AnyQueryResult {
                                rows_affected: output.changes,
                                last_insert_id: None,
                            }))))
                            .collect(),
                        Err(err) => vec![Err(err)],
                    };
                Box::pin(futures_util::stream::iter(items))
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            TxConn::Postgres(conn) => conn.fetch_optional(query),
            TxConn::Sqlite(tx) => {
                let row = Self::run_sqlite(tx, query).map(|output| output.rows.into_iter().next());
                Box::pin(std::future::ready(row))
            }
        }
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<sqlx::any::AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            TxConn::Postgres(conn) => conn.prepare_with(sql, parameters),
            TxConn::Sqlite(_) => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "statements are prepared (and cached) as they run on the SQLite writer".into(),
            )))),
        }
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            TxConn::Postgres(conn) => conn.describe(sql),
            TxConn::Sqlite(_) => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "describe is not available on the SQLite writer".into(),
            )))),
        }
    }
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

fn to_sqlx(err: rusqlite::Error) -> sqlx::Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn scratch() -> (tempfile::TempDir, Arc<Writer>, sqlx::AnyPool) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = super::super::sqlite_pool(&url, 2).await.unwrap();
        sqlx::query(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        (dir, Writer::open(&path).unwrap(), pool)
    }

    async fn insert(tx: &mut LiteTx, name: &str) -> Result<u64, sqlx::Error> {
        sqlx::query("INSERT INTO t (name, score) VALUES ($1, $2)")
            .bind(name)
            .bind(1.5)
            .execute(TxConn::Sqlite(tx))
            .await
            .map(|r| r.rows_affected())
    }

    async fn names(pool: &sqlx::AnyPool) -> Vec<String> {
        sqlx::query_scalar("SELECT name FROM t ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_commit_is_visible_to_other_connections_when_it_returns() {
        let (_dir, writer, pool) = scratch().await;
        let mut tx = writer.begin().await.unwrap();
        assert_eq!(insert(&mut tx, "a").await.unwrap(), 1);
        // `$2` before `$1`: arguments follow their numbers, not their order in the text.
        let row: (String, f64) =
            sqlx::query_as("SELECT name, score FROM t WHERE score = $2 AND name = $1")
                .bind("a")
                .bind(1.5)
                .fetch_one(TxConn::Sqlite(&mut tx))
                .await
                .unwrap();
        assert_eq!(row, ("a".to_string(), 1.5));
        assert!(names(&pool).await.is_empty(), "not visible before commit");
        tx.commit(Vec::new()).await.unwrap();
        assert_eq!(names(&pool).await, ["a"]);
        assert_eq!(writer.commits.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_dropped_or_rolled_back_transaction_writes_nothing() {
        let (_dir, writer, pool) = scratch().await;
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx, "dropped").await.unwrap();
        drop(tx);
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx, "rolled back").await.unwrap();
        tx.rollback();
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx, "kept").await.unwrap();
        tx.commit(Vec::new()).await.unwrap();
        assert_eq!(names(&pool).await, ["kept"]);
    }

    #[tokio::test]
    async fn queued_transactions_share_one_commit_and_a_failing_one_undoes_only_itself() {
        let (_dir, writer, pool) = scratch().await;
        // The first transaction holds the writer while the others queue behind it.
        let mut first = writer.begin().await.unwrap();
        insert(&mut first, "taken").await.unwrap();
        let mut others = Vec::new();
        for name in ["b", "taken", "c", "d"] {
            let writer = writer.clone();
            others.push(tokio::spawn(async move {
                let mut tx = writer.begin().await?;
                insert(&mut tx, name).await?;
                tx.commit(Vec::new()).await
            }));
        }
        while writer.queued.load(Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
        let signal = Arc::new(Notify::new());
        let woken = signal.clone();
        let first = tokio::spawn(async move { first.commit(vec![signal]).await });
        let mut results = Vec::new();
        for other in others {
            results.push(other.await.unwrap().is_ok());
        }
        first.await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(5), woken.notified())
            .await
            .expect("the commit signal is woken");
        // The duplicate name failed alone; everything else committed, in one commit.
        assert_eq!(results, [true, false, true, true]);
        assert_eq!(names(&pool).await, ["taken", "b", "c", "d"]);
        assert_eq!(writer.commits.load(Ordering::Relaxed), 1);
        let unique = {
            let mut tx = writer.begin().await.unwrap();
            insert(&mut tx, "b").await.unwrap_err()
        };
        assert_eq!(
            unique.as_database_error().map(|e| e.kind()),
            Some(ErrorKind::UniqueViolation)
        );
    }

    #[tokio::test]
    async fn a_point_read_sees_each_commit_once_it_returns_and_fails_once_closed() {
        let (dir, writer, _pool) = scratch().await;
        let reader = PointReader::open(&dir.path().join("w.db"), 2).unwrap();
        let by_name = |name: &'static str| {
            sqlx::query("SELECT name, score FROM t WHERE name = $1").bind(name)
        };
        let mut tx = writer.begin().await.unwrap();
        insert(&mut tx, "a").await.unwrap();
        assert!(reader.fetch_optional(by_name("a")).unwrap().is_none());
        tx.commit(Vec::new()).await.unwrap();
        let row = reader.fetch_optional(by_name("a")).unwrap().unwrap();
        assert_eq!(sqlx::Row::get::<f64, _>(&row, "score"), 1.5);
        // Read-only: a write through it is refused.
        let write = sqlx::query("DELETE FROM t");
        assert!(reader.fetch_optional(write).is_err());
        reader.close();
        assert!(matches!(
            reader.fetch_optional(by_name("a")),
            Err(sqlx::Error::PoolClosed)
        ));
    }

    #[tokio::test]
    async fn a_closed_writer_refuses_new_transactions() {
        let (_dir, writer, _pool) = scratch().await;
        writer.close().await;
        assert!(matches!(writer.begin().await, Err(sqlx::Error::PoolClosed)));
    }
}
