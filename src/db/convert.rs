//! `ehrs db encrypt` and `ehrs db rekey`: a plain embedded database encrypted in place,
//! and an encrypted one given a new passphrase. Both need the database to themselves: a
//! running server makes them stop, changing nothing.
//!
//! Encrypting writes an encrypted copy beside the database (`.ehrs.db.encrypting`),
//! checks it (integrity, and the rows of every table against the original) and only
//! then renames it over the original: killed at any point before, it leaves the plain
//! database as it was. The copy's salt is its key's, so the file alone says how to
//! derive the key (see [`super::cipher`]). Rekeying is one SQLite transaction.

use super::cipher::{self, DbKey, FileState, Passphrase};
use super::files::{KEY_FILES, sync_dir};
use crate::failure::{Failure, Kind};
use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

/// What an encryption did.
#[derive(Debug)]
pub struct Encrypted {
    /// Rows per table, the same before and after.
    pub tables: Vec<(String, i64)>,
    /// The key files now kept inside the database, and removed from the data dir.
    pub moved_key_files: Vec<String>,
}

/// Encrypts the plain database at `database` in place with a key derived from
/// `passphrase`; writes the key record into `data_dir` and moves its key files inside.
pub fn encrypt(
    database: &Path,
    data_dir: &Path,
    passphrase: &Passphrase,
) -> anyhow::Result<Encrypted> {
    match FileState::of(database)? {
        FileState::Plain => {}
        FileState::New => bail!("there is no database at {}", database.display()),
        FileState::Encrypted(_) => {
            return Err(Failure::new(
                Kind::Usage,
                format!("the database {} is already encrypted", database.display()),
            )
            .hint("`ehrs db rekey` changes its passphrase")
            .into());
        }
    }
    let plain = alone(database, None)?;
    let key = DbKey::new_file(passphrase)?;
    let copy = sibling(database, "encrypting");
    let _ = std::fs::remove_file(&copy);
    let result = export(&plain, &key, &copy, data_dir);
    let moved_key_files = match result {
        Ok(moved) => moved,
        Err(err) => {
            drop(plain);
            let _ = std::fs::remove_file(&copy);
            return Err(err);
        }
    };
    let tables = tables(&plain)?;
    check_copy(&copy, &key, &tables)?;
    // SQLite created the copy under the umask; it takes the database's name.
    super::files::private_file(&copy)?;
    std::fs::File::open(&copy)?.sync_all()?;
    cipher::write_params(data_dir, &key)?;
    drop(plain);
    std::fs::rename(&copy, database)
        .with_context(|| format!("cannot rename the encrypted copy to {}", database.display()))?;
    sync_dir(database);
    // The plain file left in rollback-journal mode, so it has no WAL or shared memory.
    for name in &moved_key_files {
        let _ = std::fs::remove_file(data_dir.join(name));
    }
    Ok(Encrypted {
        tables,
        moved_key_files,
    })
}

/// Gives the encrypted database at `database` the key of `new`, in one transaction.
pub fn rekey(
    database: &Path,
    data_dir: &Path,
    key: &DbKey,
    new: &Passphrase,
) -> anyhow::Result<()> {
    let conn = alone(database, Some(key))?;
    let new_key = key.with_passphrase(new)?;
    conn.execute_batch(&new_key.rekey_pragma())
        .context("cannot change the key")?;
    drop(conn);
    if !cipher::opens(database, &new_key)? {
        bail!("the database does not open with the new passphrase after rekeying");
    }
    cipher::write_params(data_dir, &new_key)
}

/// Opens `database` as its only user: it leaves WAL mode (which needs every other
/// connection closed, so a running server makes this fail) and keeps an exclusive lock
/// until the connection closes. The next `ehrs serve` puts it back in WAL mode.
fn alone(database: &Path, key: Option<&DbKey>) -> anyhow::Result<Connection> {
    // CREATE: an attached file inherits these flags, and the encrypted copy is new. The
    // database itself exists (its state was read).
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let conn = cipher::open(database, key, flags)?;
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE")?;
    let mode: Result<String, _> =
        conn.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0));
    match mode {
        Ok(mode) if mode == "delete" => Ok(conn),
        _ => Err(Failure::new(
            Kind::Usage,
            format!("the database {} is in use", database.display()),
        )
        .hint("stop ehrs serve (and any other ehrs command on this data dir), then run this again; nothing was changed")
        .into()),
    }
}

/// Copies every table into `copy`, encrypted with `key`, in one snapshot, with the data
/// dir's key files inside. Returns the names of the key files it carried in.
fn export(
    plain: &Connection,
    key: &DbKey,
    copy: &Path,
    data_dir: &Path,
) -> anyhow::Result<Vec<String>> {
    plain.execute_batch(&key.attach(copy, "encrypted")?)?;
    plain.execute_batch("BEGIN")?;
    plain
        .query_row("SELECT sqlcipher_export('encrypted')", [], |_| Ok(()))
        .context("cannot copy the database")?;
    let mut moved = Vec::new();
    let has_keys_table: bool = plain.query_row(
        "SELECT count(*) > 0 FROM encrypted.sqlite_master WHERE name = 'server_keys'",
        [],
        |row| row.get(0),
    )?;
    for name in KEY_FILES.iter().filter(|_| has_keys_table) {
        let path = data_dir.join(name);
        let Ok(content) = std::fs::read_to_string(&path) else {
            continue;
        };
        plain.execute(
            "INSERT INTO encrypted.server_keys (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            rusqlite::params![name, content.trim()],
        )?;
        moved.push(name.to_string());
    }
    plain.execute_batch("COMMIT; DETACH DATABASE encrypted")?;
    Ok(moved)
}

/// The encrypted copy passes the integrity check and holds as many rows per table as
/// the original (besides the keys carried in).
fn check_copy(copy: &Path, key: &DbKey, expected: &[(String, i64)]) -> anyhow::Result<()> {
    let conn = cipher::open(copy, Some(key), OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        bail!("the encrypted copy fails the integrity check: {verdict}");
    }
    // The keys moved in are the copy's only rows of its own.
    let found = tables(&conn)?;
    let without_keys = |tables: &[(String, i64)]| -> Vec<(String, i64)> {
        tables
            .iter()
            .filter(|(name, _)| name != "server_keys")
            .cloned()
            .collect()
    };
    if without_keys(&found) != without_keys(expected) {
        bail!("the encrypted copy does not hold the same rows as the database");
    }
    Ok(())
}

/// Rows per table, by name.
fn tables(conn: &Connection) -> anyhow::Result<Vec<(String, i64)>> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    names
        .into_iter()
        .map(|name| {
            let rows = conn.query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |row| {
                row.get(0)
            })?;
            Ok((name, rows))
        })
        .collect()
}

/// `DIR/ehrs.db` → `DIR/.ehrs.db.<what>`.
fn sibling(database: &Path, what: &str) -> PathBuf {
    let name = database
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    database.with_file_name(format!(".{name}.{what}"))
}
