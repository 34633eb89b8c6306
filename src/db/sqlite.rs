//! The SQLite side of [`super::Db`]: the file's URL and permissions, the read pool and the
//! settings every connection shares, and the background WAL checkpointer. (The write
//! path is `sqlite_writer`.)

use anyhow::Context;
use sqlx::AnyPool;
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;
use std::sync::Arc;
use std::time::Duration;

/// Makes sure the file's directory exists and asks sqlx to create the file. Returns the
/// URL to connect with and the file's path.
pub(super) fn url(url: &str) -> anyhow::Result<(String, std::path::PathBuf)> {
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
    super::files::private_sqlite_files(std::path::Path::new(path))
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

/// Settings of every SQLite connection, pooled readers and the writer alike.
/// WAL lets readers run beside the writer; NORMAL sync is durable against process crashes
/// (our failure model) at a fraction of FULL's fsyncs. No automatic checkpoint: it would
/// run inside whichever commit crossed the threshold, an fsync on the API's path;
/// [`spawn_checkpointer`] does it instead. When the WAL starts over, SQLite cuts the file
/// back to 16 MiB.
pub(super) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; \
     PRAGMA journal_size_limit = 16777216;";

pub(super) async fn pool(url: &str, size: u32) -> anyhow::Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        // A SQLite connection cannot go stale; sqlx's ping would be a thread hop per read.
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(SQLITE_PRAGMAS).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .with_context(|| "cannot open the SQLite database".to_string())
}

/// Connections of the SQLite point reader: one per runtime thread of the 2-core
/// machines EHRS is sized for, so a lookup rarely waits for another.
pub(super) const POINT_READERS: usize = 2;

/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// WAL length (frames of one 4 KiB page) from which the writer starts it over.
const RESTART_FRAMES: i64 = 1024;

/// Checkpoints the WAL in the background, off every commit's path. First a PASSIVE
/// checkpoint from a reader connection copies what it can (the bulk of the pages and the
/// fsyncs) without waiting for or blocking the writer. But SQLite starts the WAL over
/// only when a write transaction begins with every frame already copied, which under a
/// steady stream of writes never happens (the next batch lands while the checkpoint
/// copies), so the file grew without bound: 600 MB after 60,000 writes, every page read
/// searching an ever larger WAL index. So once the WAL is longer than `RESTART_FRAMES`,
/// a RESTART checkpoint runs on the writer between two commits, where no frame can
/// arrive: it copies only the frames written since the first pass, waits for readers of
/// old frames (reads take microseconds), and the next write starts the WAL over.
/// Stops when the pool is closed.
pub(super) fn spawn_checkpointer(pool: AnyPool, writer: Arc<super::sqlite_writer::Writer>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pool.is_closed() {
            tick.tick().await;
            let result = match passive_checkpoint(&pool).await {
                Ok(log) if log >= RESTART_FRAMES => {
                    // The first pass takes tens of milliseconds under load, and what
                    // landed meanwhile would be copied by the restart, holding the
                    // writer: a second pass copies it first.
                    match passive_checkpoint(&pool).await {
                        Ok(_) => writer.checkpoint().await,
                        Err(err) => Err(err),
                    }
                }
                Ok(_) => Ok(()),
                Err(err) => Err(err),
            };
            if let Err(err) = result
                && !pool.is_closed()
                && !matches!(err, sqlx::Error::PoolClosed)
            {
                tracing::warn!(error = %err, "WAL checkpoint failed; will retry");
            }
        }
    });
}

/// Copies what it can of the WAL into the database file without waiting for or
/// blocking the writer; returns the WAL's length in frames.
async fn passive_checkpoint(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    let (_, log, _) = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    Ok(log)
}
