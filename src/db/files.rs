//! File modes of the embedded database: the data directory is 0700 and the SQLite files
//! (`ehrs.db`, `-wal`, `-shm`, `-journal`) are 0600, whatever the umask. They hold
//! patient records; the default umask made them world-readable (0755 / 0644).
//!
//! SQLite creates `-wal` and `-shm` with the mode of the database file (and `fchmod`s
//! them to it, past the umask), so a 0600 database file is enough for them once they
//! are created; files left by an earlier run are tightened here.

use std::io;
use std::path::Path;

/// The data dir's key files (a plain database's keys; an encrypted one keeps them inside).
pub const KEY_FILES: &[&str] = &["jwt_secret", "secret_key"];

/// Creates `dir` (and missing parents) as 0700. An existing directory is left alone:
/// the database may live in a directory shared with other things.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    restrict(dir, 0o700)
}

/// Makes the data directory 0700, creating it when absent. Unlike
/// [`create_private_dir`] it also tightens an existing one: it is EHRS's own (keys and
/// database), and earlier versions left it 0755.
pub fn private_data_dir(dir: &Path) -> io::Result<()> {
    create_private_dir(dir)?;
    restrict(dir, 0o700)
}

/// Before SQLite opens `db`: creates the directory (0700) and the empty database file
/// (0600) when absent, and takes group and other access away from the files that exist.
pub fn private_sqlite_files(db: &Path) -> io::Result<()> {
    if let Some(dir) = db.parent() {
        create_private_dir(dir)?;
    }
    if !db.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(db)?;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if path.exists() {
            restrict(&path, 0o600)?;
        }
    }
    Ok(())
}

/// Takes group and other access away from a file that holds patient data or keys.
pub fn private_file(path: &Path) -> io::Result<()> {
    restrict(path, 0o600)
}

/// Writes `contents` to a new file at `path` (0600 whatever the umask), flushed to disk.
/// Fails when the file exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Flushes the directory entry of a rename (best effort: not every file system can).
pub fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
}
