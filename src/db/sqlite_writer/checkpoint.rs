//! The background WAL checkpointer: off every commit's path, with a restart on the
//! writer between two commits when the WAL grows long.

use super::Writer;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;

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
pub(crate) fn spawn_checkpointer(pool: AnyPool, writer: Arc<Writer>) {
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
