//! The SQLite side of [`super::Db`]: the file's URL and permissions, the read pool and the
//! settings every connection shares. (The write path and the WAL checkpointer that
//! drives it are `sqlite_writer`.)

use anyhow::Context;
use sqlx::AnyPool;
use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
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
/// [`super::sqlite_writer::spawn_checkpointer`] does it instead. When the WAL starts over, SQLite cuts the file
/// back to 16 MiB.
pub(super) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0; \
     PRAGMA journal_size_limit = 16777216;";

/// The read pool. With `key`, each connection is keyed before anything reads the file,
/// and sqlx does not log its statements (the key statement must never reach a log).
pub(super) async fn pool(
    url: &str,
    size: u32,
    key: Option<&super::cipher::DbKey>,
) -> anyhow::Result<AnyPool> {
    use sqlx::ConnectOptions;
    let mut options: AnyConnectOptions = url.parse()?;
    let mut setup = String::from(SQLITE_PRAGMAS);
    if let Some(key) = key {
        options = options.disable_statement_logging();
        setup = key.pragma() + &setup;
    }
    let setup: std::sync::Arc<str> = setup.into();
    AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        // A SQLite connection cannot go stale; sqlx's ping would be a thread hop per read.
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            let setup = setup.clone();
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(&*setup)).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .with_context(|| "cannot open the SQLite database".to_string())
}

/// Connections of the SQLite point reader: one per runtime thread of the 2-core
/// machines EHRS is sized for, so a lookup rarely waits for another.
pub(super) const POINT_READERS: usize = 2;
