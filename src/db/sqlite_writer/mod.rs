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
//!
//! Here: the writer, its batches and [`LiteTx`]. Beside it: `values.rs` (statements,
//! rows, arguments and errors between rusqlite and Any), `executor.rs` ([`TxConn`]) and
//! `reader.rs` ([`PointReader`], inline key lookups on read-only connections).

use super::cipher::DbKey;
use sqlx::any::AnyArguments;
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

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish()
    }
}

impl Writer {
    /// Opens the write connection to an existing database file (the read pool made it).
    pub fn open(path: &Path, key: Option<&DbKey>) -> anyhow::Result<Arc<Writer>> {
        let conn = open_connection(path, key, "")?;
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

/// Opens a `rusqlite` connection to the database file with the settings of every pooled
/// connection (see `sqlite::pool`), keyed first when the file is encrypted, then `extra`
/// pragmas, and a statement cache.
fn open_connection(
    path: &Path,
    key: Option<&DbKey>,
    extra: &str,
) -> anyhow::Result<rusqlite::Connection> {
    use anyhow::Context;
    let conn = super::cipher::open(
        path,
        key,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(super::sqlite::SQLITE_PRAGMAS)
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

mod checkpoint;
mod executor;
mod reader;
#[cfg(test)]
mod tests;
mod values;

pub(crate) use checkpoint::spawn_checkpointer;
pub use executor::TxConn;
pub use reader::PointReader;
use values::{Columns, Output, run_statement, to_sqlx};
