//! Database access for SQLite (embedded default) and PostgreSQL through sqlx's Any
//! driver, so one repository layer serves both. Where the dialects must differ (claiming
//! work with `FOR UPDATE SKIP LOCKED`) the two variants sit side by side in the repo that
//! needs them, selected with [`Db::backend`].
//!
//! SQLite allows one writer at a time. Rather than letting writers collide and back off
//! (SQLite's busy handler sleeps), every write transaction goes through a one-connection
//! pool and starts with `BEGIN IMMEDIATE`: writers queue fairly in the pool instead.

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
            });
        }
        if !url.starts_with("sqlite:") {
            anyhow::bail!("DATABASE_URL must start with sqlite:// or postgres://");
        }
        let url = sqlite_url(url)?;
        let write = sqlite_pool(&url, 1).await?;
        let read = sqlite_pool(&url, pool_size.max(2)).await?;
        Ok(Db {
            backend: Backend::Sqlite,
            read,
            write,
            committed: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
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
        })
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

/// Makes sure the file's directory exists and asks sqlx to create the file.
fn sqlite_url(url: &str) -> anyhow::Result<String> {
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
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    Ok(if url.contains('?') {
        url.to_string()
    } else {
        format!("{url}?mode=rwc")
    })
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
