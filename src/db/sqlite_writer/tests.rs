//! The writer against a scratch database: batches, savepoints, errors, close.

use super::*;
use sqlx::error::ErrorKind;

async fn scratch() -> (tempfile::TempDir, Arc<Writer>, sqlx::AnyPool) {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = super::super::sqlite::pool(&url, 2, None).await.unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL)")
        .execute(&pool)
        .await
        .unwrap();
    (dir, Writer::open(&path, None).unwrap(), pool)
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
    let reader = PointReader::open(&dir.path().join("w.db"), 2, None).unwrap();
    let by_name =
        |name: &'static str| sqlx::query("SELECT name, score FROM t WHERE name = $1").bind(name);
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
