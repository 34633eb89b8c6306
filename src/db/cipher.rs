//! Encryption at rest of the embedded database: SQLCipher's page cipher (AES-256, every
//! page HMAC'd) over the database file and its WAL, keyed with a 256-bit key derived from
//! the camp's passphrase with Argon2id. The key is never stored.
//!
//! The salt is the database file's own: SQLCipher keeps 16 random bytes in plain form at
//! the head of every encrypted file. EHRS creates each encrypted file with an explicit
//! salt (the raw-key form `x'<key><salt>'`), so that salt is the Argon2id salt, and the
//! file alone says how to derive its key. That is what makes a converted database and a
//! backup usable on their own: there is no second file to lose or to keep in step. The
//! salt and the parameters are also written to `db-key.json` in the data dir, for the
//! people who read it; the program derives with [`KdfParams::V1`] and checks that file.

use anyhow::{Context, bail};
use argon2::{Algorithm, Argon2, Params, Version};
use std::path::{Path, PathBuf};

/// The first 16 bytes of a plain SQLite file.
const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Bytes of SQLCipher's plain salt at the head of an encrypted file.
pub const SALT_LEN: usize = 16;

/// The passphrase a camp chose. Its debug form never shows it.
#[derive(Clone)]
pub struct Passphrase(String);

impl Passphrase {
    /// Fewer characters than this are refused for a new key (opening never checks).
    pub const MIN_CHARS: usize = 8;

    pub fn new(text: String) -> Passphrase {
        Passphrase(text)
    }

    /// Why this passphrase is too weak to encrypt with, if it is.
    pub fn weakness(&self) -> Option<String> {
        (self.0.chars().count() < Self::MIN_CHARS).then(|| {
            format!(
                "a database passphrase needs at least {} characters",
                Self::MIN_CHARS
            )
        })
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// The Argon2id cost of deriving a database key: RFC 9106's second recommended setting
/// (64 MiB, 3 passes), on one lane, since it runs once per start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

impl KdfParams {
    pub const V1: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        passes: 3,
        lanes: 1,
    };
}

/// The key of one encrypted database: the derived key and the file's salt. Its debug
/// form never shows the key.
#[derive(Clone)]
pub struct DbKey {
    key: [u8; 32],
    salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for DbKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbKey(..)")
    }
}

impl DbKey {
    /// Derives the key of the file with `salt` from `passphrase` (0.13 s on the 2-core
    /// machine the benchmarks run on, by design: so is every guess).
    pub fn derive(passphrase: &Passphrase, salt: [u8; SALT_LEN]) -> anyhow::Result<DbKey> {
        let KdfParams {
            memory_kib,
            passes,
            lanes,
        } = KdfParams::V1;
        let params = Params::new(memory_kib, passes, lanes, Some(32))
            .map_err(|e| anyhow::anyhow!("invalid key derivation parameters: {e}"))?;
        let mut key = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.0.as_bytes(), &salt, &mut key)
            .map_err(|e| anyhow::anyhow!("cannot derive the database key: {e}"))?;
        Ok(DbKey { key, salt })
    }

    /// A key for a new file, with a fresh random salt.
    pub fn new_file(passphrase: &Passphrase) -> anyhow::Result<DbKey> {
        DbKey::derive(passphrase, rand::random())
    }

    pub fn salt(&self) -> [u8; SALT_LEN] {
        self.salt
    }

    /// The same salt under another passphrase (`ehrs db rekey`).
    pub fn with_passphrase(&self, passphrase: &Passphrase) -> anyhow::Result<DbKey> {
        DbKey::derive(passphrase, self.salt)
    }

    /// SQLCipher's raw key with its explicit salt, as a `PRAGMA key` / `ATTACH … KEY`
    /// literal. A new file gets this salt; an existing file's salt is the same.
    fn literal(&self) -> String {
        format!("\"x'{}{}'\"", hex::encode(self.key), hex::encode(self.salt))
    }

    /// The statement that keys a connection; it must run before anything reads the file.
    /// Never log it.
    pub fn pragma(&self) -> String {
        format!("PRAGMA key = {};", self.literal())
    }

    /// `PRAGMA rekey` to this key, for a connection keyed with the old one.
    pub fn rekey_pragma(&self) -> String {
        format!("PRAGMA rekey = {};", self.literal())
    }

    /// `ATTACH DATABASE '<path>' AS <schema> KEY …`: a new file encrypted with this key.
    pub fn attach(&self, path: &Path, schema: &str) -> anyhow::Result<String> {
        let path = path
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        Ok(format!(
            "ATTACH DATABASE '{}' AS {schema} KEY {}",
            path.replace('\'', "''"),
            self.literal()
        ))
    }
}

/// What a database file holds, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// No file, or an empty one: a new database.
    New,
    /// A plain SQLite database.
    Plain,
    /// An encrypted one, with SQLCipher's salt.
    Encrypted([u8; SALT_LEN]),
}

impl FileState {
    pub fn of(path: &Path) -> std::io::Result<FileState> {
        use std::io::Read;
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::New),
            Err(err) => return Err(err),
        };
        let mut head = [0u8; SALT_LEN];
        let mut read = 0;
        while read < SALT_LEN {
            match file.read(&mut head[read..])? {
                0 => break,
                n => read += n,
            }
        }
        Ok(match read {
            0 => FileState::New,
            SALT_LEN if &head == PLAIN_HEADER => FileState::Plain,
            SALT_LEN => FileState::Encrypted(head),
            // A file shorter than a header is not a database either way; let SQLite say so.
            _ => FileState::Plain,
        })
    }
}

/// The data dir's record of how the database key is derived (no secret in it).
pub fn params_path(data_dir: &Path) -> PathBuf {
    data_dir.join("db-key.json")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ParamsFile {
    /// What derives the key: `argon2id`.
    kdf: String,
    /// Argon2's version, 19 (0x13).
    version: u32,
    #[serde(flatten)]
    params: KdfParams,
    /// The salt, hex; the encrypted file's first 16 bytes hold the same.
    salt: String,
    /// The key is never stored; this says where it comes from.
    note: String,
}

/// Writes `db-key.json` for `key` (0600, whole or not at all).
pub fn write_params(data_dir: &Path, key: &DbKey) -> anyhow::Result<()> {
    let record = ParamsFile {
        kdf: "argon2id".into(),
        version: 19,
        params: KdfParams::V1,
        salt: hex::encode(key.salt),
        note: "the database key is derived from the passphrase with these parameters; it is not stored".into(),
    };
    let path = params_path(data_dir);
    let temporary = data_dir.join(".db-key.json.tmp");
    let _ = std::fs::remove_file(&temporary);
    let text = serde_json::to_string_pretty(&record)? + "\n";
    super::files::write_private_file(&temporary, text.as_bytes())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Checks `db-key.json` against the encrypted file's salt, when the file exists: a
/// record from another database means the data dir was put together by hand.
pub fn check_params(data_dir: &Path, salt: &[u8; SALT_LEN]) -> anyhow::Result<()> {
    let path = params_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let record: ParamsFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a key record of EHRS", path.display()))?;
    if record.kdf != "argon2id" || record.params != KdfParams::V1 {
        bail!(
            "{} names a key derivation this version of EHRS does not use",
            path.display()
        );
    }
    if record.salt != hex::encode(salt) {
        bail!(
            "{} belongs to another database (its salt differs from the database's)",
            path.display()
        );
    }
    Ok(())
}

/// Opens the SQLite file at `path` with `flags`, keyed first when `key` is given (an
/// encrypted file reads as garbage until it is). Every rusqlite connection to the
/// database opens through here.
pub fn open(
    path: &Path,
    key: Option<&DbKey>,
    flags: rusqlite::OpenFlags,
) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
    if let Some(key) = key {
        conn.execute_batch(&key.pragma())
            .with_context(|| format!("cannot key the connection to {}", path.display()))?;
    }
    Ok(conn)
}

/// Whether `key` opens the encrypted file at `path`. Opens it read-only and reads the
/// schema; writes nothing, creates no file.
pub fn opens(path: &Path, key: &DbKey) -> anyhow::Result<bool> {
    use rusqlite::OpenFlags;
    let read_only = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open(path, Some(key), read_only)?;
    // A wrong key is an expected answer here, reported by the caller: SQLCipher would also
    // print its own lines about the failed page check on stderr.
    conn.execute_batch("PRAGMA cipher_log_level = NONE")?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(true),
        Err(rusqlite::Error::SqliteFailure(err, _))
            if err.code == rusqlite::ErrorCode::NotADatabase =>
        {
            Ok(false)
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase(text: &str) -> Passphrase {
        Passphrase::new(text.into())
    }

    #[test]
    fn a_new_file_takes_the_key_salt_and_only_the_passphrase_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let key = DbKey::new_file(&passphrase("correct horse")).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&key.pragma()).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (name TEXT); \
             INSERT INTO t VALUES ('Asha Verma');",
        )
        .unwrap();
        drop(conn);
        assert_eq!(
            FileState::of(&path).unwrap(),
            FileState::Encrypted(key.salt)
        );
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(10).any(|w| w == b"Asha Verma"));
        let again = DbKey::derive(&passphrase("correct horse"), key.salt).unwrap();
        assert!(opens(&path, &again).unwrap());
        let wrong = DbKey::derive(&passphrase("wrong horse"), key.salt).unwrap();
        assert!(!opens(&path, &wrong).unwrap());
    }

    #[test]
    fn an_attached_copy_is_encrypted_with_the_same_salt() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.db");
        let copy = dir.path().join("copy.db");
        let conn = rusqlite::Connection::open(&plain).unwrap();
        conn.execute_batch("CREATE TABLE t (name TEXT); INSERT INTO t VALUES ('Asha Verma');")
            .unwrap();
        assert_eq!(FileState::of(&plain).unwrap(), FileState::Plain);
        let key = DbKey::new_file(&passphrase("correct horse")).unwrap();
        conn.execute_batch(&key.attach(&copy, "encrypted").unwrap())
            .unwrap();
        conn.query_row("SELECT sqlcipher_export('encrypted')", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch("DETACH DATABASE encrypted").unwrap();
        assert_eq!(
            FileState::of(&copy).unwrap(),
            FileState::Encrypted(key.salt)
        );
        assert!(opens(&copy, &key).unwrap());
        let reopened = rusqlite::Connection::open(&copy).unwrap();
        reopened.execute_batch(&key.pragma()).unwrap();
        let name: String = reopened
            .query_row("SELECT name FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(name, "Asha Verma");
    }

    #[test]
    fn params_are_checked_against_the_file_salt() {
        let dir = tempfile::tempdir().unwrap();
        let key = DbKey::new_file(&passphrase("correct horse")).unwrap();
        check_params(dir.path(), &key.salt).unwrap();
        write_params(dir.path(), &key).unwrap();
        check_params(dir.path(), &key.salt).unwrap();
        let error = check_params(dir.path(), &[7; SALT_LEN]).unwrap_err();
        assert!(error.to_string().contains("another database"), "{error}");
    }
}
