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

/// A write transaction. Besides the SQL it remembers whether an event was emitted in it,
/// so that [`Tx::commit`] can wake the delivery workers the moment the event is durable.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    emitted: bool,
    committed: Arc<Notify>,
    backend: Backend,
    relay_outbox: bool,
}

impl Tx {
    /// True when outbox messages wait for a relay (the Svix backend) after commit.
    pub fn relays_outbox(&self) -> bool {
        self.relay_outbox
    }

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

    /// Marks that this transaction carries outbox rows (called by `webhooks::emit`).
    pub fn mark_emitted(&mut self) {
        self.emitted = true;
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await?;
        if self.emitted {
            self.committed.notify_one();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
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
    /// Signalled after every commit that emitted an event.
    committed: Arc<Notify>,
    /// SQLite only: deliveries claimed by this process's engines and not yet recorded.
    /// One process owns a SQLite database's deliveries (see [`Db::lock_workers`]), so
    /// claims need no lease row, and the single writer is not taken for claiming.
    local_claims: LocalClaims,
    /// SQLite only: the file whose lock marks the process that delivers for this database.
    worker_lock: Arc<std::sync::Mutex<WorkerLock>>,
    /// Outbox messages are handed to an external backend (Svix) by a relay: they are
    /// written unrelayed. Otherwise the embedded engine delivers them from its own queue.
    relay_outbox: bool,
}

/// Claimed delivery ids with their subscription ids. An async mutex: a claim holds it
/// from reading due rows to recording its picks, and the recorder takes it after its
/// commit to forget recorded ones, so a claim never acts on rows read before a commit
/// and forgotten after it.
pub type LocalClaims = Arc<tokio::sync::Mutex<std::collections::HashMap<String, String>>>;

#[derive(Debug, Default)]
struct WorkerLock {
    path: Option<std::path::PathBuf>,
    held: Option<std::fs::File>,
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
                committed: Arc::default(),
                local_claims: Arc::default(),
                worker_lock: Arc::default(),
                relay_outbox: false,
            });
        }
        if !url.starts_with("sqlite:") {
            anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://");
        }
        let (url, path) = sqlite_url(url)?;
        let write = sqlite_pool(&url, 1).await?;
        let read = sqlite_pool(&url, pool_size.max(2)).await?;
        let lock_path = std::path::PathBuf::from(format!("{}.workers.lock", path.display()));
        Ok(Db {
            backend: Backend::Sqlite,
            read,
            write,
            committed: Arc::default(),
            local_claims: Arc::default(),
            worker_lock: Arc::new(std::sync::Mutex::new(WorkerLock {
                path: Some(lock_path),
                held: None,
            })),
            relay_outbox: false,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This handle's outbox messages are relayed to an external backend (see the field).
    pub fn with_outbox_relay(mut self) -> Db {
        self.relay_outbox = true;
        self
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
            emitted: false,
            committed: self.committed.clone(),
            backend: self.backend,
            relay_outbox: self.relay_outbox,
        })
    }

    /// SQLite: the in-process claim table shared by this database's engines.
    pub fn local_claims(&self) -> LocalClaims {
        self.local_claims.clone()
    }

    /// SQLite: takes the lock that makes this process the one delivering for the database
    /// (an exclusive lock on `<db file>.workers.lock`, released by the OS if the process
    /// dies). False when another process holds it. Always true on PostgreSQL, where
    /// claims are leases in the database and any number of processes share the work.
    pub fn lock_workers(&self) -> bool {
        let mut lock = self.worker_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.backend == Backend::Postgres || lock.held.is_some() {
            return true;
        }
        let Some(path) = lock.path.clone() else {
            return true;
        };
        let file = match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            Err(err) => {
                tracing::warn!(error = %err, path = %path.display(), "cannot open the worker lock file");
                return false;
            }
        };
        match file.try_lock() {
            Ok(()) => {
                lock.held = Some(file);
                true
            }
            Err(_) => false,
        }
    }

    /// Woken after each commit that carried an event (see [`Tx::commit`]).
    pub fn committed_signal(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
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
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .with_context(|| "cannot open the SQLite database".to_string())
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
            assert_eq!((mode.as_str(), sync, fk, busy), ("wal", 1, 1, 10000));
        }
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
