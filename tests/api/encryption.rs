//! Encryption at rest (issue 26, part 1), first step: the SQLite the server links is
//! SQLCipher's, one library for both of its connections.

use crate::support::{Backend, run_test};

/// sqlx's pool (reads, migrations) and the writer's rusqlite connection must link the one
/// SQLCipher library: two SQLite copies in one process would each think they own the file
/// locks, and only a cipher both share can read what the other wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_and_the_writer_share_one_sqlcipher_library() {
    run_test(
        Backend::Sqlite,
        |_| {},
        |app| async move {
            let read: String = sqlx::query_scalar("PRAGMA cipher_version")
                .fetch_one(app.state.db.pool())
                .await
                .expect("the pool's SQLite is SQLCipher (it knows PRAGMA cipher_version)");
            let mut tx = app.state.db.begin().await.unwrap();
            let written: String = sqlx::query_scalar("PRAGMA cipher_version")
                .fetch_one(tx.conn())
                .await
                .expect("the writer's SQLite is SQLCipher");
            tx.rollback().await.unwrap();
            assert!(read.starts_with('4'), "SQLCipher 4.x: {read}");
            assert_eq!(read, written, "one library serves both connections");
            let version = |conn: &rusqlite::Connection| -> String {
                conn.query_row("SELECT sqlite_version()", [], |row| row.get(0))
                    .unwrap()
            };
            let linked = version(&rusqlite::Connection::open_in_memory().unwrap());
            let pooled: String = sqlx::query_scalar("SELECT sqlite_version()")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap();
            assert_eq!(
                linked, pooled,
                "rusqlite and sqlx-sqlite link the same SQLite"
            );
        },
    )
    .await;
}
