//! The generated password of the first `admin`, kept in `<data dir>/initial-admin-password`
//! (mode 0600), as GitLab and Jenkins keep theirs: never printed, never logged (logs go to
//! collectors; a JSON log stream must stay JSON), only the file's path is. The file goes
//! away once that admin has a password of their own: when it is changed through the API or
//! `ehrs user reset-password`, or at the next start when it no longer matches.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The name of the file, in the data dir.
pub const FILE_NAME: &str = "initial-admin-password";

/// The username of the first admin.
pub const ADMIN: &str = "admin";

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Writes `password` to `path`, readable by this user only from the moment it exists (the
/// mode is given at creation, not set afterwards). A stale file is replaced.
pub fn write(path: &Path, password: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{password}")?;
    file.sync_all()
}

/// The password in the file, if there is one.
pub fn read(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Removes the file, if there is one, saying so in the log (the path only).
pub fn forget(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(
            file = %path.display(),
            "the admin has a password of their own: the initial password file is removed"
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => tracing::warn!(
            file = %path.display(),
            error = %err,
            "cannot remove the initial admin password file; remove it by hand"
        ),
    }
}

/// True when `username` is the first admin's (usernames compare without case).
pub fn is_admin(username: &str) -> bool {
    username.eq_ignore_ascii_case(ADMIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_private_from_its_creation_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(&dir.path().join("data"));
        write(&file, "first").unwrap();
        write(&file, "second").unwrap();
        assert_eq!(read(&file).as_deref(), Some("second"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        forget(&file);
        assert!(!file.exists());
    }
}
