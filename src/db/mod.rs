//! Database access for SQLite (embedded default) and PostgreSQL through sqlx's Any
//! driver, so one repository layer serves both. Where the dialects must differ (claiming
//! work with `FOR UPDATE SKIP LOCKED`) the two variants sit side by side in the repo that
//! needs them, selected with [`Db::backend`].
//!
//! SQLite allows one writer at a time. Rather than letting writers collide and back off
//! (SQLite's busy handler sleeps), every write transaction goes through a one-connection
//! pool and starts with `BEGIN IMMEDIATE`: writers queue fairly in the pool instead.

pub mod files;
mod real;

pub use real::NullableReal;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A write transaction. Besides the SQL it carries the commit hooks asked for by code
/// that ran in it ([`Tx::notify_on_commit`]): each named signal is woken once the
/// transaction is durable, never on rollback.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    signals: CommitSignals,
    wake: Vec<Arc<Notify>>,
    backend: Backend,
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
    pub fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }

    /// Wakes the waiters of the signal `name` (see [`Db::commit_signal`]) after this
    /// transaction commits. Asking twice wakes once.
    pub fn notify_on_commit(&mut self, name: &'static str) {
        let signal = self.signals.get(name);
        if !self.wake.iter().any(|s| Arc::ptr_eq(s, &signal)) {
            self.wake.push(signal);
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await?;
        for signal in self.wake {
            signal.notify_one();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
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

/// The database handle kept in `AppState`: a pool for reads and one for write transactions
/// (the same pool on PostgreSQL).
#[derive(Clone, Debug)]
pub struct Db {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    signals: CommitSignals,
    /// SQLite: the database file.
    path: Option<std::path::PathBuf>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects (creating the SQLite file and its directory when absent).
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Db> {
        install_default_drivers();
        if url.starts_with("postgres") {
            let pool = AnyPoolOptions::new()
                .max_connections(pool_size.max(2))
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .context("cannot connect to PostgreSQL")?;
            return Ok(Db {
                backend: Backend::Postgres,
                read: pool.clone(),
                write: pool,
                signals: CommitSignals::default(),
                path: None,
            });
        }
        if !url.starts_with("sqlite:") {
            anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://");
        }
        let (url, path) = sqlite_url(url)?;
        let write = sqlite_pool(&url, 1).await?;
        let read = sqlite_pool(&url, pool_size.max(2)).await?;
        spawn_checkpointer(read.clone());
        Ok(Db {
            backend: Backend::Sqlite,
            read,
            write,
            signals: CommitSignals::default(),
            path: Some(path),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// SQLite: the database file (`None` on PostgreSQL).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// The pool for reads outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.read
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let inner = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        };
        Ok(Tx {
            inner,
            signals: self.signals.clone(),
            wake: Vec::new(),
            backend: self.backend,
        })
    }

    /// The signal `name`, woken after each commit of a transaction that asked for it
    /// with [`Tx::notify_on_commit`].
    pub fn commit_signal(&self, name: &'static str) -> Arc<Notify> {
        self.signals.get(name)
    }

    /// Applies pending migrations; safe when several processes start at once on one
    /// database. On PostgreSQL sqlx's migrator holds an advisory lock while it reads and
    /// applies. On SQLite its lock is a no-op: two processes would both see a migration
    /// as pending and the second would fail re-running it ("table already exists"), so
    /// an exclusive lock on `<db file>.migrate.lock` serialises them instead (the second
    /// then finds nothing to do). The lock file is not the database file itself: closing
    /// any descriptor of that file would drop SQLite's own POSIX locks in this process.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let _guard = match &self.path {
            Some(db) => Some(lock_file(format!("{}.migrate.lock", db.display()).into()).await?),
            None => None,
        };
        migrator
            .run(&self.write)
            .await
            .context("database migration failed")
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.read).await.is_ok()
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
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

/// Makes sure the file's directory exists and asks sqlx to create the file. Returns the
/// URL to connect with and the file's path.
fn sqlite_url(url: &str) -> anyhow::Result<(String, std::path::PathBuf)> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        anyhow::bail!(
            "an in-memory SQLite database would lose every event on restart; give a file path"
        );
    }
    files::private_sqlite_files(std::path::Path::new(path))
        .context("cannot secure the database files")?;
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let connect = if url.contains('?') {
        url.to_string()
    } else {
        format!("{url}?mode=rwc")
    };
    Ok((connect, std::path::PathBuf::from(path)))
}

async fn sqlite_pool(url: &str, size: u32) -> anyhow::Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL lets readers run beside the writer; NORMAL sync is durable against
                // process crashes (our failure model) at a fraction of FULL's fsyncs.
                // No automatic checkpoint: it would run inside whichever commit crossed the
                // threshold, an fsync on the API's path; `spawn_checkpointer` does it instead.
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 0;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .with_context(|| "cannot open the SQLite database".to_string())
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Checkpoints the WAL in the background, off every commit's path: a PASSIVE checkpoint
/// from a reader connection copies what it can without waiting for (or blocking) the
/// writer, and the writer starts the WAL over once a checkpoint completed. Stops when the
/// pool is closed.
fn spawn_checkpointer(pool: AnyPool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pool.is_closed() {
            tick.tick().await;
            if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
                && !pool.is_closed()
            {
                tracing::warn!(error = %err, "WAL checkpoint failed; will retry");
            }
        }
    });
}

/// Current time in Unix milliseconds, the unit of every timestamp column.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_connections_get_wal_normal_sync_and_foreign_keys() {
        let dir = std::env::temp_dir().join(format!("ehrs-db-test-{}", std::process::id()));
        let url = format!("sqlite://{}/t.db", dir.display());
        let db = Db::connect(&url, 2).await.unwrap();
        for pool in [&db.read, &db.write] {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(pool)
                .await
                .unwrap();
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(pool)
                .await
                .unwrap();
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(pool)
                .await
                .unwrap();
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(pool)
                .await
                .unwrap();
            let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(
                (mode.as_str(), sync, fk, busy, autocheckpoint),
                ("wal", 1, 1, 10000, 0)
            );
        }
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
