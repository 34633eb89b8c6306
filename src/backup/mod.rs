//! Backups of the camp's SQLite database, taken while `ehrs serve` runs, and their
//! restore into an empty data dir (`ehrs backup`, `ehrs restore`).
//!
//! A backup is one SQLite file: a consistent copy of the database made with `VACUUM
//! INTO`, which reads one snapshot while the server goes on writing (WAL mode), plus the
//! data dir's key files in a table of their own ([`FILES_TABLE`]), since the webhook
//! secrets cannot be read without `secret_key`. It is written under a temporary name,
//! checked (`PRAGMA integrity_check`), flushed to disk and only then renamed, so a
//! backup file is never half-written.
//!
//! On PostgreSQL the database is the platform's to back up: [`POSTGRES_ADVICE`].

pub mod schedule;

use crate::db::cipher::{self, DbKey, FileState, Passphrase};
use crate::db::files::{KEY_FILES, sync_dir};
use crate::failure::{Failure, Kind};
use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::fmt;
use std::path::{Path, PathBuf};

/// The table of a backup that carries the data dir's key files.
pub const FILES_TABLE: &str = "ehrs_backup_files";

/// What `ehrs backup` says on PostgreSQL.
pub const POSTGRES_ADVICE: &str = "ehrs backup copies the embedded SQLite database; on PostgreSQL, back up with the server's own tools: `pg_dump --format=custom --file=ehrs.dump \"$DATABASE_URL\"` while EHRS runs (a consistent snapshot), and `pg_restore --dbname=\"$DATABASE_URL\" ehrs.dump` into an empty database; keep EHRS_JWT_SECRET and EHRS_SECRET_KEY with the dump";

/// What a backup (or a restored database) holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Rows per table, by table name.
    pub tables: Vec<(String, i64)>,
    /// The last outbox message: its place in commit order (SQLite's rowid, which the
    /// fan-out follows) and its id.
    pub last_message: Option<(i64, String)>,
    /// Messages not yet fanned out to subscriptions (or handed to Svix).
    pub unhanded_messages: i64,
    /// Deliveries still to be made (due, or waiting for a retry).
    pub pending_deliveries: i64,
    /// The key files carried (none when the database is encrypted: it keeps its keys).
    pub key_files: Vec<String>,
    /// Whether the file is encrypted (with the database's key: the same passphrase).
    pub encrypted: bool,
}

impl Summary {
    /// The rows of `table` (0 when it has none or does not exist).
    pub fn rows(&self, table: &str) -> i64 {
        self.tables
            .iter()
            .find(|(name, _)| name == table)
            .map_or(0, |(_, rows)| *rows)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (table, rows) in &self.tables {
            writeln!(f, "  {table}: {rows}")?;
        }
        match &self.last_message {
            Some((sequence, id)) => writeln!(
                f,
                "  last outbox message: {id} (outbox sequence {sequence})"
            )?,
            None => writeln!(f, "  last outbox message: none")?,
        }
        writeln!(
            f,
            "  messages not yet fanned out: {}",
            self.unhanded_messages
        )?;
        writeln!(f, "  deliveries still to make: {}", self.pending_deliveries)?;
        if self.key_files.is_empty() {
            writeln!(f, "  key files: none")?;
        } else {
            writeln!(f, "  key files: {}", self.key_files.join(", "))?;
        }
        if self.encrypted {
            write!(f, "  encrypted: yes, opened by the database's passphrase")
        } else {
            write!(f, "  encrypted: no")
        }
    }
}

/// Copies the live database at `database` and the key files of `data_dir` into `to`,
/// atomically (a temporary name beside `to`, then a rename). Refuses to replace a file.
/// With `key` (an encrypted database) the copy is encrypted with the same key and salt,
/// so the passphrase that opens the database opens the backup.
pub fn backup(
    database: &Path,
    data_dir: &Path,
    key: Option<&DbKey>,
    to: &Path,
) -> anyhow::Result<Summary> {
    if to.exists() {
        return Err(
            Failure::new(Kind::Usage, format!("{} exists", to.display()))
                .hint("a backup never replaces a file: give --to a new name")
                .into(),
        );
    }
    if !database.exists() {
        bail!("there is no database at {}", database.display());
    }
    let partial = partial_name(to);
    let result = write_backup(database, data_dir, key, &partial, to);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn write_backup(
    database: &Path,
    data_dir: &Path,
    key: Option<&DbKey>,
    partial: &Path,
    to: &Path,
) -> anyhow::Result<Summary> {
    let _ = std::fs::remove_file(partial);
    // CREATE: an attached file inherits these flags, and the encrypted copy is new.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let source = cipher::open(database, key, flags)
        .with_context(|| format!("cannot open the database {}", database.display()))?;
    // The server's writer holds the write lock only briefly; a snapshot read waits
    // behind nothing, but opening the WAL may.
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    match key {
        None => {
            source
                .execute("VACUUM INTO ?1", [path_text(partial)?])
                .context("cannot copy the database")?;
        }
        // VACUUM INTO would write a file with a salt of its own; an attached file keyed
        // with the database's key and salt is opened by the same passphrase. The export
        // runs in one read transaction: one snapshot, as VACUUM INTO reads.
        Some(key) => {
            source.execute_batch(&key.attach(partial, "backup")?)?;
            source
                .execute_batch("BEGIN; SELECT sqlcipher_export('backup'); COMMIT;")
                .context("cannot copy the database")?;
            source.execute_batch("DETACH DATABASE backup")?;
        }
    }
    drop(source);
    restrict(partial)?;
    let copy = cipher::open(partial, key, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    copy.execute_batch(&format!(
        "CREATE TABLE {FILES_TABLE} (name TEXT PRIMARY KEY, content BLOB NOT NULL)"
    ))?;
    for name in KEY_FILES {
        let path = data_dir.join(name);
        if path.exists() {
            let content =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            copy.execute(
                &format!("INSERT INTO {FILES_TABLE} (name, content) VALUES (?1, ?2)"),
                rusqlite::params![name, content],
            )?;
        }
    }
    check_integrity(&copy)?;
    let summary = Summary {
        encrypted: key.is_some(),
        ..summary(&copy)?
    };
    copy.close().map_err(|(_, err)| err)?;
    std::fs::File::open(partial)?.sync_all()?;
    std::fs::rename(partial, to)
        .with_context(|| format!("cannot rename the backup to {}", to.display()))?;
    sync_dir(to);
    Ok(summary)
}

/// Restores the backup `from` into `data_dir`, which must be empty or absent: the
/// database as `ehrs.db` and the key files beside it, all 0600. Checks the copy's
/// integrity before it takes the database's name; on any failure it leaves `data_dir`
/// as it found it. An encrypted backup needs its passphrase, which `passphrase` gives
/// (asked only then); the data dir gets its key record.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    passphrase: impl FnOnce() -> anyhow::Result<Passphrase>,
) -> anyhow::Result<Summary> {
    if !from.is_file() {
        bail!("there is no backup file at {}", from.display());
    }
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        return Err(
            Failure::new(Kind::Usage, format!("{} is not empty", data_dir.display()))
                .hint("restore only into an empty or new data dir: it never overwrites one")
                .into(),
        );
    }
    let key = match FileState::of(from)? {
        FileState::Encrypted(salt) => {
            let key = DbKey::derive(&passphrase()?, salt)?;
            if !cipher::opens(from, &key)? {
                return Err(Failure::new(
                    Kind::Configuration,
                    format!("the passphrase does not open the backup {}", from.display()),
                )
                .hint("give the passphrase the database had when the backup was taken; nothing was changed")
                .into());
            }
            Some(key)
        }
        FileState::Plain | FileState::New => None,
    };
    let created = !data_dir.exists();
    crate::db::files::private_data_dir(data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let result = write_restore(from, data_dir, key.as_ref());
    if result.is_err() {
        if created {
            let _ = std::fs::remove_dir_all(data_dir);
        } else if let Ok(entries) = std::fs::read_dir(data_dir) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    result
}

fn write_restore(from: &Path, data_dir: &Path, key: Option<&DbKey>) -> anyhow::Result<Summary> {
    let database = data_dir.join("ehrs.db");
    let partial = partial_name(&database);
    std::fs::copy(from, &partial).with_context(|| format!("cannot copy {}", from.display()))?;
    restrict(&partial)?;
    let copy = cipher::open(&partial, key, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    check_integrity(&copy).with_context(|| format!("{} is not a sound backup", from.display()))?;
    let files =
        key_files(&copy).with_context(|| format!("{} is not an EHRS backup", from.display()))?;
    for (name, content) in &files {
        write_private(&data_dir.join(name), content)?;
    }
    copy.execute_batch(&format!("DROP TABLE {FILES_TABLE}"))?;
    let summary = Summary {
        key_files: files.into_iter().map(|(name, _)| name).collect(),
        encrypted: key.is_some(),
        ..summary(&copy)?
    };
    copy.close().map_err(|(_, err)| err)?;
    if let Some(key) = key {
        cipher::write_params(data_dir, key)?;
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &database)?;
    sync_dir(&database);
    Ok(summary)
}

/// The key files a backup carries, only the known names.
fn key_files(copy: &Connection) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut statement = copy.prepare(&format!(
        "SELECT name, content FROM {FILES_TABLE} ORDER BY name"
    ))?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))?;
    let mut files = Vec::new();
    for row in rows {
        let (name, content) = row?;
        if KEY_FILES.contains(&name.as_str()) {
            files.push((name, content));
        }
    }
    Ok(files)
}

fn check_integrity(conn: &Connection) -> anyhow::Result<()> {
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .context("the integrity check could not run")?;
    if verdict != "ok" {
        bail!("the integrity check failed: {verdict}");
    }
    Ok(())
}

/// Rows per table, the newest outbox message and the deliveries still to make.
fn summary(conn: &Connection) -> anyhow::Result<Summary> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name NOT LIKE '_sqlx%' ORDER BY name",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut tables = Vec::new();
    let mut key_files = Vec::new();
    for name in names {
        if name == FILES_TABLE {
            key_files = key_files_names(conn)?;
            continue;
        }
        let rows: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM \"{name}\""), [], |row| {
            row.get(0)
        })?;
        tables.push((name, rows));
    }
    let last_message = conn
        .query_row(
            "SELECT rowid, id FROM webhook_messages ORDER BY rowid DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let count =
        |sql: &str| -> anyhow::Result<i64> { Ok(conn.query_row(sql, [], |row| row.get(0))?) };
    Ok(Summary {
        tables,
        last_message,
        unhanded_messages: count("SELECT COUNT(*) FROM webhook_messages WHERE relayed_at IS NULL")?,
        pending_deliveries: count(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
        )?,
        key_files,
        encrypted: false,
    })
}

fn key_files_names(conn: &Connection) -> anyhow::Result<Vec<String>> {
    Ok(conn
        .prepare(&format!("SELECT name FROM {FILES_TABLE} ORDER BY name"))?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?)
}

/// `FILE` → `.FILE.partial` in the same directory, so the rename is atomic.
fn partial_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))?;
    restrict(path)
}

/// Patient records and keys: 0600 whatever the umask.
fn restrict(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(())
}
