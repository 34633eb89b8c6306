//! Database access for SQLite (embedded default) and PostgreSQL through sqlx's Any
//! driver, so one repository layer serves both. Where the dialects must differ (claiming
//! work with `FOR UPDATE SKIP LOCKED`) the two variants sit side by side in the repo that
//! needs them, selected with [`Db::backend`].
//!
//! SQLite allows one writer at a time. Reads go through a sqlx pool, except the key
//! lookup every authenticated request makes, which runs inline on a `rusqlite`
//! connection of its own ([`Db::fetch_by_key`]). Every write transaction goes through
//! [`sqlite_writer`]: one `rusqlite` connection that the transaction's own task runs
//! statements on (no thread hand-off per statement), with concurrent transactions
//! grouped into one commit. PostgreSQL keeps one sqlx pool for
//! both. Repository code is the same for both: `query.execute(tx.conn())`.

pub mod cipher;
pub mod convert;
pub mod files;
mod real;
mod sqlite;
mod sqlite_writer;

pub use real::NullableReal;
pub use sqlite_writer::TxConn;

use crate::failure::{Failed, Failure, Kind, redact_url};
use anyhow::Context;
use cipher::DbKey;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A write transaction. Besides the SQL it carries the commit hooks asked for by code
/// that ran in it ([`Tx::notify_on_commit`]): each named signal is woken once the
/// transaction is durable, never on rollback.
pub struct Tx {
    inner: TxInner,
    signals: CommitSignals,
    wake: Vec<Arc<Notify>>,
    backend: Backend,
}

enum TxInner {
    Postgres(sqlx::Transaction<'static, sqlx::Any>),
    Sqlite(sqlite_writer::LiteTx),
}

impl Tx {
    /// `" FOR UPDATE"` on PostgreSQL, nothing on SQLite (whose write transactions already
    /// exclude each other): append it to a read whose row the transaction will modify.
    pub fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Locks the row of `table` with this `id` for the rest of the transaction
    /// (PostgreSQL; SQLite's write transaction already excludes other writers), before a
    /// read-then-modify. False when there is no such row.
    pub async fn lock_row(&mut self, table: &'static str, id: &str) -> Result<bool, sqlx::Error> {
        let sql = format!("SELECT 1 FROM {table} WHERE id = $1{}", self.for_update());
        let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        Ok(found.is_some())
    }

    /// The connection to run queries on: `query.execute(tx.conn())`.
    pub fn conn(&mut self) -> TxConn<'_> {
        match &mut self.inner {
            TxInner::Postgres(tx) => TxConn::Postgres(tx),
            TxInner::Sqlite(tx) => TxConn::Sqlite(tx),
        }
    }

    /// Wakes the waiters of the signal `name` (see [`Db::commit_signal`]) after this
    /// transaction commits. Asking twice wakes once.
    pub fn notify_on_commit(&mut self, name: &'static str) {
        let signal = self.signals.get(name);
        if !self.wake.iter().any(|s| Arc::ptr_eq(s, &signal)) {
            self.wake.push(signal);
        }
    }

    /// Commits; returns once the write is durable. On SQLite that is the commit of the
    /// group this transaction joined, and the signals are woken by it.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Postgres(tx) => {
                tx.commit().await?;
                for signal in self.wake {
                    signal.notify_one();
                }
                Ok(())
            }
            TxInner::Sqlite(tx) => tx.commit(self.wake).await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            TxInner::Postgres(tx) => tx.rollback().await,
            TxInner::Sqlite(tx) => {
                tx.rollback();
                Ok(())
            }
        }
    }
}

/// Named wake-up signals shared by every handle of one database: a transaction asks for
/// one to be woken after its commit; a worker waits on it. Generic on purpose: the
/// database layer knows nothing of who waits.
#[derive(Clone, Debug, Default)]
struct CommitSignals(Arc<std::sync::Mutex<std::collections::HashMap<&'static str, Arc<Notify>>>>);

impl CommitSignals {
    fn get(&self, name: &'static str) -> Arc<Notify> {
        let mut signals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        signals.entry(name).or_default().clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A JSON array parameter expanded to rows, per dialect.
pub fn json_rows(backend: Backend, param: &str) -> String {
    match backend {
        Backend::Sqlite => format!("SELECT value FROM json_each({param})"),
        // Through an array: PostgreSQL plans `x IN (SELECT json_array_elements_text(..))`
        // as a hash semi-join over a sequential scan of the whole table (the function's
        // rows are a blind guess), one full scan per batch that grows with the table;
        // `unnest(ARRAY(..))` is planned as a few index lookups.
        Backend::Postgres => {
            format!("SELECT unnest(ARRAY(SELECT json_array_elements_text(CAST({param} AS json))))")
        }
    }
}

/// A list of ids as the JSON array [`json_rows`] expands.
pub fn json_ids<T: serde::Serialize>(ids: &[T]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// The database handle kept in `AppState`: one sqlx pool (PostgreSQL: for everything;
/// SQLite: for reads and migrations) and, on SQLite, the writer for write transactions.
/// The database: cheap to clone (one reference count), so handlers and sub-states may
/// each hold one.
#[derive(Clone, Debug)]
pub struct Db(Arc<DbInner>);

#[derive(Debug)]
struct DbInner {
    backend: Backend,
    pool: AnyPool,
    sqlite_writer: Option<Arc<sqlite_writer::Writer>>,
    /// SQLite: connections for key lookups run inline ([`Db::fetch_by_key`]).
    point_reader: Option<Arc<sqlite_writer::PointReader>>,
    signals: CommitSignals,
    /// SQLite: the database file.
    path: Option<std::path::PathBuf>,
    /// SQLite: the key of an encrypted file.
    key: Option<DbKey>,
}

/// PostgreSQL: a pooled connection idle longer than this is pinged before it is used.
const STALE_AFTER_IDLE: Duration = Duration::from_secs(1);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects (creating the SQLite file and its directory when absent). A failure names
    /// the database (its password hidden) and what to check: exit code 4.
    /// `key` opens an encrypted SQLite database (see [`cipher`]); `None` for a plain one
    /// and for PostgreSQL.
    pub async fn connect(url: &str, pool_size: u32, key: Option<&DbKey>) -> anyhow::Result<Db> {
        let opened = Db::open(url, pool_size, key).await;
        opened.map_err(|err| {
            let hint = connect_hint(&err, url);
            // The server's own words, without sqlx's wrapping and PostgreSQL's source line.
            let server_says = err
                .chain()
                .find_map(|e| e.downcast_ref::<sqlx::Error>())
                .and_then(|e| e.as_database_error())
                .map(|e| anyhow::anyhow!("{}", e.message()));
            let err = server_says.unwrap_or(err);
            let failure = Failure::new(
                Kind::Database,
                format!("cannot open the database {}", redact_url(url)),
            );
            err.context(failure.hint(hint))
        })
    }

    async fn open(url: &str, pool_size: u32, key: Option<&DbKey>) -> anyhow::Result<Db> {
        install_default_drivers();
        if url.starts_with("postgres") {
            let pool = AnyPoolOptions::new()
                .max_connections(pool_size.max(2))
                .acquire_timeout(Duration::from_secs(10))
                // sqlx pings every connection on release, and by default on acquire too: a
                // round trip each, 15 % of the process's samples in a profile of writes
                // end to end. A connection just returned passed the release ping; only
                // one that sat idle (the server may have restarted meanwhile) is pinged
                // again before use.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for > STALE_AFTER_IDLE {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect(url)
                .await?;
            return Ok(Db(Arc::new(DbInner {
                backend: Backend::Postgres,
                pool,
                sqlite_writer: None,
                point_reader: None,
                signals: CommitSignals::default(),
                path: None,
                key: None,
            })));
        }
        if !url.starts_with("sqlite:") {
            anyhow::bail!(
                "DATABASE_URL must start with sqlite:// or postgres://, not '{}'",
                redact_url(url)
            );
        }
        let (url, path) = sqlite::url(url)?;
        let read = sqlite::pool(&url, pool_size.max(2), key).await?;
        // The pool created the file and put it in WAL mode; the writer joins it.
        sqlx::query("SELECT 1").execute(&read).await?;
        let writer = sqlite_writer::Writer::open(&path, key)?;
        let point_reader = sqlite_writer::PointReader::open(&path, sqlite::POINT_READERS, key)?;
        sqlite_writer::spawn_checkpointer(read.clone(), writer.clone());
        Ok(Db(Arc::new(DbInner {
            backend: Backend::Sqlite,
            pool: read,
            sqlite_writer: Some(writer),
            point_reader: Some(Arc::new(point_reader)),
            signals: CommitSignals::default(),
            path: Some(path),
            key: key.cloned(),
        })))
    }

    pub fn backend(&self) -> Backend {
        self.0.backend
    }

    /// SQLite: the database file (`None` on PostgreSQL).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.0.path.as_deref()
    }

    /// SQLite: the key of an encrypted database file (`None` when plain, and on
    /// PostgreSQL).
    pub fn sqlite_key(&self) -> Option<&DbKey> {
        self.0.key.as_ref()
    }

    /// The pool for reads outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.0.pool
    }

    /// Reads one row by key outside a transaction, for lookups on every request's path
    /// (the session check): on SQLite inline on a dedicated connection, with no thread
    /// hand-off (see `sqlite_writer::PointReader`); on PostgreSQL through the pool. Only
    /// for index lookups of a row or two.
    pub async fn fetch_by_key<'q, E: 'q + sqlx::Execute<'q, sqlx::Any>>(
        &self,
        query: E,
    ) -> Result<Option<sqlx::any::AnyRow>, sqlx::Error> {
        match &self.0.point_reader {
            Some(reader) => reader.fetch_optional(query),
            None => self.0.pool.fetch_optional(query).await,
        }
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let inner = match &self.0.sqlite_writer {
            Some(writer) => TxInner::Sqlite(writer.begin().await?),
            None => TxInner::Postgres(self.0.pool.begin().await?),
        };
        Ok(self.tx(inner))
    }

    /// Starts a write transaction for bookkeeping that is simply done again if a crash
    /// loses it: on PostgreSQL its commit does not wait for the WAL flush
    /// (`synchronous_commit = off`, set in the same round trip as `BEGIN`). PostgreSQL
    /// writes the WAL in order, so any later synchronous commit makes it durable too, and
    /// a crash can lose it only together with everything after it. SQLite commits the
    /// same way as [`Db::begin`] (its `synchronous = NORMAL` is already that).
    pub async fn begin_lazy_commit(&self) -> Result<Tx, sqlx::Error> {
        if self.0.sqlite_writer.is_some() {
            return self.begin().await;
        }
        let tx = self
            .0
            .pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
            .await?;
        Ok(self.tx(TxInner::Postgres(tx)))
    }

    fn tx(&self, inner: TxInner) -> Tx {
        Tx {
            inner,
            signals: self.0.signals.clone(),
            wake: Vec::new(),
            backend: self.0.backend,
        }
    }

    /// The signal `name`, woken after each commit of a transaction that asked for it
    /// with [`Tx::notify_on_commit`].
    pub fn commit_signal(&self, name: &'static str) -> Arc<Notify> {
        self.0.signals.get(name)
    }

    /// Applies pending migrations; safe when several processes start at once on one
    /// database. On PostgreSQL sqlx's migrator holds an advisory lock while it reads and
    /// applies. On SQLite its lock is a no-op: two processes would both see a migration
    /// as pending and the second would fail re-running it ("table already exists"), so
    /// an exclusive lock on `<db file>.migrate.lock` serialises them instead (the second
    /// then finds nothing to do). The lock file is not the database file itself: closing
    /// any descriptor of that file would drop SQLite's own POSIX locks in this process.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.0.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let _guard = match &self.0.path {
            Some(db) => Some(lock_file(format!("{}.migrate.lock", db.display()).into()).await?),
            None => None,
        };
        migrator.run(&self.0.pool).await.failed(|| {
            Failure::new(Kind::Database, "cannot migrate the database").hint(
                "a migration newer than this program was applied (run the newer ehrs), or \
                 the database was changed by hand; the cause below names the migration",
            )
        })
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.0.pool).await.is_ok()
    }

    pub async fn close(&self) {
        if let Some(writer) = &self.0.sqlite_writer {
            writer.close().await;
        }
        if let Some(reader) = &self.0.point_reader {
            reader.close();
        }
        self.0.pool.close().await;
    }
}

/// Waits for an exclusive lock on `path` (created when absent); held until the file is
/// dropped, and released by the OS if the process dies.
async fn lock_file(path: std::path::PathBuf) -> anyhow::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    })
    .await?
}

/// The SQLite file of a `sqlite://` database URL; `None` for PostgreSQL.
pub fn sqlite_path(database_url: &str) -> Option<std::path::PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    Some(std::path::PathBuf::from(
        rest.split('?').next().unwrap_or_default(),
    ))
}

/// Current time in Unix milliseconds, the unit of every timestamp column.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What to check when the database at `url` cannot be opened, from the cause.
fn connect_hint(err: &anyhow::Error, url: &str) -> String {
    let postgres = url.starts_with("postgres");
    let database = url::Url::parse(url).ok();
    let name = database
        .as_ref()
        .map(|u| u.path().trim_start_matches('/').to_string())
        .unwrap_or_default();
    let place = database
        .as_ref()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(5432))))
        .unwrap_or_default();
    let sqlx_error = err.chain().find_map(|e| e.downcast_ref::<sqlx::Error>());
    let code = sqlx_error
        .and_then(|e| e.as_database_error())
        .and_then(|e| e.code())
        .map(|code| code.into_owned());
    match code.as_deref() {
        // invalid_catalog_name
        Some("3D000") => format!(
            "the database '{name}' does not exist: create it (createdb -h HOST -U USER {name}), \
             or set DATABASE_URL to one that exists"
        ),
        // invalid_password, invalid_authorization_specification
        Some("28P01") | Some("28000") => {
            "the server refused the user or password in DATABASE_URL".to_string()
        }
        _ if postgres
            && matches!(
                sqlx_error,
                Some(sqlx::Error::Io(_)) | Some(sqlx::Error::PoolTimedOut)
            ) =>
        {
            format!("nothing answers at {place}: start PostgreSQL there, or set DATABASE_URL")
        }
        _ if postgres => {
            "check DATABASE_URL and that PostgreSQL accepts this connection".to_string()
        }
        _ if !url.starts_with("sqlite:") => {
            "set DATABASE_URL to sqlite://PATH or postgres://USER@HOST/DATABASE".to_string()
        }
        _ => "check that the data dir (EHRS_DATA_DIR) exists or can be created, and that this \
              user may write it"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_connections_get_wal_normal_sync_and_foreign_keys() {
        let dir = std::env::temp_dir().join(format!("ehrs-db-test-{}", std::process::id()));
        let url = format!("sqlite://{}/t.db", dir.display());
        let db = Db::connect(&url, 2, None).await.unwrap();
        let mut read = Vec::new();
        for pragma in [
            "journal_mode",
            "synchronous",
            "foreign_keys",
            "busy_timeout",
            "wal_autocheckpoint",
            "journal_size_limit",
        ] {
            let value: sqlx::any::AnyRow =
                sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {pragma}")))
                    .fetch_one(&db.0.pool)
                    .await
                    .unwrap();
            let value = sqlx::Row::try_get::<String, _>(&value, 0)
                .or_else(|_| sqlx::Row::try_get::<i64, _>(&value, 0).map(|i| i.to_string()))
                .unwrap();
            let written =
                db.0.sqlite_writer
                    .as_ref()
                    .unwrap()
                    .pragma(pragma)
                    .await
                    .unwrap();
            assert_eq!(value, written, "{pragma}: pool and writer differ");
            read.push(value);
        }
        assert_eq!(read, ["wal", "1", "1", "10000", "0", "16777216"]);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
