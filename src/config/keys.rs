//! The signing and encryption keys: from the environment, or on SQLite generated once
//! into the data directory (mode 0600).

use super::Settings;
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::path::Path;

impl Settings {
    /// The signing and encryption keys: from the environment, or on SQLite generated once
    /// into the data directory (mode 0600). PostgreSQL deployments may run several
    /// instances, which must share keys, so there they are required.
    pub fn load_keys(&self) -> anyhow::Result<Keys> {
        if self.is_postgres() {
            let missing: Vec<&str> = [
                ("EHRS_JWT_SECRET", self.jwt_secret.is_none()),
                ("EHRS_SECRET_KEY", self.secret_key.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            if !missing.is_empty() {
                bail!("{}", missing_keys_message(&missing));
            }
        }
        let GivenKeys { jwt, data } = self.keys_given()?;
        let jwt = match jwt {
            Some(jwt) => jwt,
            None => key_file(&self.data_dir, "jwt_secret")?,
        };
        let data = match data {
            Some(data) => data,
            None => key_file(&self.data_dir, "secret_key")?
                .try_into()
                .map_err(|_| anyhow::anyhow!("the data dir's secret_key file is not 32 bytes"))?,
        };
        Ok(Keys { jwt, data })
    }

    /// The keys of an encrypted embedded database: from the environment when set, else
    /// kept inside the database (`server_keys`), generated once, so no key lies in plain
    /// form beside it. A key file an earlier plain run left is moved in, then removed.
    pub async fn load_keys_from(&self, db: &crate::db::Db) -> anyhow::Result<Keys> {
        let GivenKeys { jwt, data } = self.keys_given()?;
        let jwt = match jwt {
            Some(jwt) => jwt,
            None => stored_key(db, &self.data_dir, "jwt_secret").await?,
        };
        let data = match data {
            Some(data) => data,
            None => stored_key(db, &self.data_dir, "secret_key")
                .await?
                .try_into()
                .map_err(|_| anyhow::anyhow!("the stored secret_key is not 32 bytes"))?,
        };
        Ok(Keys { jwt, data })
    }

    /// The keys the environment gives (`EHRS_JWT_SECRET`, `EHRS_SECRET_KEY`), checked.
    fn keys_given(&self) -> anyhow::Result<GivenKeys> {
        let jwt = match &self.jwt_secret {
            Some(secret) if secret.len() >= 16 => Some(secret.as_bytes().to_vec()),
            Some(_) => bail!("EHRS_JWT_SECRET must be at least 16 characters; {MAKE_KEY}"),
            None => None,
        };
        let data = self.secret_key.as_deref().map(decode_key).transpose()?;
        Ok(GivenKeys { jwt, data })
    }
}

/// The keys the environment gives; the others come from the data dir or the database.
struct GivenKeys {
    jwt: Option<Vec<u8>>,
    data: Option<[u8; 32]>,
}

/// The key `name` kept in the database: the one stored, else the data dir's key file
/// moved in, else a new random one. Safe when several processes start at once: the first
/// insert wins and everyone reads it back.
async fn stored_key(db: &crate::db::Db, data_dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    use sqlx::Row;
    let file = data_dir.join(name);
    let from_file = read_key_file(&file)?;
    let candidate = from_file
        .clone()
        .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO server_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(BASE64.encode(&candidate))
    .execute(tx.conn())
    .await?;
    let stored: String = sqlx::query("SELECT value FROM server_keys WHERE name = ?")
        .bind(name)
        .fetch_one(tx.conn())
        .await?
        .try_get(0)?;
    tx.commit().await?;
    let key = BASE64
        .decode(stored)
        .with_context(|| format!("the stored {name} is not valid base64"))?;
    match from_file {
        Some(old) if old == key => {
            std::fs::remove_file(&file)
                .with_context(|| format!("cannot remove {}", file.display()))?;
            tracing::info!(path = %file.display(), "moved a key file into the encrypted database");
        }
        Some(_) => tracing::warn!(
            path = %file.display(),
            "a key file differs from the key kept in the encrypted database, which is used; the file is left for you to check and remove"
        ),
        None => {}
    }
    Ok(key)
}

/// How to make a key, for the messages that refuse a missing or unfit one.
const MAKE_KEY: &str = "make one with `openssl rand -base64 32`";

/// Why start-up stops on PostgreSQL without the shared keys, and how to make them.
fn missing_keys_message(missing: &[&str]) -> String {
    let (names, verb, them, how, values) = match missing {
        [one] => (one.to_string(), "is", "it", MAKE_KEY, "value"),
        _ => (
            missing.join(" and "),
            "are",
            "them",
            "make each with `openssl rand -base64 32`",
            "values",
        ),
    };
    format!(
        "{names} {verb} required with PostgreSQL, where every instance must share {them}: \
         {how} and give every instance the same {values} (in the environment or .env)"
    )
}

/// Key material resolved at start-up.
#[derive(Clone)]
pub struct Keys {
    pub jwt: Vec<u8>,
    pub data: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

fn decode_key(encoded: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = BASE64
        .decode(encoded.trim())
        .with_context(|| format!("EHRS_SECRET_KEY is not valid base64; {MAKE_KEY}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("EHRS_SECRET_KEY must decode to exactly 32 bytes; {MAKE_KEY}"))
}

/// Reads a 32-byte random key from the data dir, creating it (0600) when absent. Safe
/// when several processes start at once on one data dir: the key is written whole to a
/// private temporary file and published with a hard link, which fails when the name
/// exists; the loser reads the winner's key. So no process reads a half-written file,
/// and all of them end up with the same key.
pub(super) fn key_file(data_dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(name);
    if let Some(key) = read_key_file(&path)? {
        return Ok(key);
    }
    crate::db::files::private_data_dir(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let key: [u8; 32] = rand::random();
    let temporary = data_dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    write_private(&temporary, BASE64.encode(key).as_bytes())?;
    let published = std::fs::hard_link(&temporary, &path);
    let _ = std::fs::remove_file(&temporary);
    match published {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "generated a new key in the data directory; back it up with the database");
            Ok(key.to_vec())
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(&path)?
            .with_context(|| format!("{} vanished while starting", path.display())),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// The key in `path`, or `None` when there is no such file.
fn read_key_file(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let encoded = match std::fs::read_to_string(path) {
        Ok(encoded) => encoded,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let key = BASE64
        .decode(encoded.trim())
        .with_context(|| format!("{} is not valid base64", path.display()))?;
    if key.len() < 16 {
        bail!(
            "{} holds no usable key (fewer than 16 bytes)",
            path.display()
        );
    }
    Ok(Some(key))
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    crate::db::files::write_private_file(path, contents)
        .with_context(|| format!("cannot create {}", path.display()))
}
