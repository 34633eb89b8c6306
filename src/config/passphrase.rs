//! The database passphrase (`EHRS_DB_PASSPHRASE_FILE`, `EHRS_DB_PASSPHRASE`, or the
//! terminal) and what it unlocks: the key of the embedded database, by the state of its
//! file (`crate::db::cipher`).

use super::from_env;
use crate::db::cipher::{self, DbKey, FileState, Passphrase};
use crate::failure::{Failed, Failure, Kind};
use std::path::{Path, PathBuf};

/// Where the database passphrase comes from. Read from the environment only, never from
/// a flag (a flag shows in the process list).
#[derive(Clone, Default, clap::Args)]
pub struct DbPassphrase {
    /// `EHRS_DB_PASSPHRASE_FILE`: a file holding the passphrase (a USB stick, a systemd
    /// credential). Read before `EHRS_DB_PASSPHRASE`.
    #[arg(skip = from_env("EHRS_DB_PASSPHRASE_FILE").map(PathBuf::from))]
    pub file: Option<PathBuf>,

    /// `EHRS_DB_PASSPHRASE`: the passphrase itself, for automation.
    #[arg(skip = from_env("EHRS_DB_PASSPHRASE"))]
    pub value: Option<String>,
}

impl std::fmt::Debug for DbPassphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbPassphrase")
            .field("file", &self.file)
            .field("value", &self.value.as_ref().map(|_| ".."))
            .finish()
    }
}

/// How to give a passphrase, for the messages that ask for one.
const HOW_TO_GIVE: &str = "give the passphrase in EHRS_DB_PASSPHRASE_FILE (a file holding it), \
     in EHRS_DB_PASSPHRASE, or at the prompt when you run ehrs in a terminal";

impl DbPassphrase {
    /// The passphrase that `file_variable` or `value_variable` gives (`ehrs db rekey`'s
    /// new one).
    pub fn from_variables(file_variable: &str, value_variable: &str) -> DbPassphrase {
        DbPassphrase {
            file: from_env(file_variable).map(PathBuf::from),
            value: from_env(value_variable),
        }
    }

    /// The passphrase the environment gives: the file's (its last line break dropped),
    /// else the variable's.
    pub fn given(&self) -> anyhow::Result<Option<Passphrase>> {
        if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file).failed(|| {
                Failure::new(
                    Kind::Configuration,
                    format!("cannot read EHRS_DB_PASSPHRASE_FILE {}", file.display()),
                )
                .hint("point EHRS_DB_PASSPHRASE_FILE at a readable file, or unset it")
            })?;
            let text = text.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                return Err(Failure::new(
                    Kind::Configuration,
                    format!("EHRS_DB_PASSPHRASE_FILE {} is empty", file.display()),
                )
                .hint("write the passphrase into the file, or unset EHRS_DB_PASSPHRASE_FILE")
                .into());
            }
            return Ok(Some(Passphrase::new(text.to_string())));
        }
        Ok(self.value.clone().map(Passphrase::new))
    }

    /// The given passphrase, or one typed at the terminal when stdin is one.
    pub fn given_or_asked(&self, prompt: &str) -> anyhow::Result<Option<Passphrase>> {
        use std::io::IsTerminal;
        if let Some(given) = self.given()? {
            return Ok(Some(given));
        }
        if !std::io::stdin().is_terminal() {
            return Ok(None);
        }
        let typed = rpassword::prompt_password(prompt).failed(|| {
            Failure::new(Kind::Usage, "cannot read the passphrase from the terminal")
                .hint(HOW_TO_GIVE)
        })?;
        Ok((!typed.is_empty()).then(|| Passphrase::new(typed)))
    }

    /// A new passphrase, for `ehrs db encrypt` and `ehrs db rekey`: the given one, or typed
    /// twice at the terminal. It must not be weak.
    pub fn new_passphrase(&self, variable_prefix: &str) -> anyhow::Result<Passphrase> {
        use std::io::IsTerminal;
        let passphrase =
            match self.given()? {
                Some(given) => given,
                None if std::io::stdin().is_terminal() => {
                    let first = rpassword::prompt_password("New database passphrase: ")?;
                    let second = rpassword::prompt_password("The same again: ")?;
                    if first != second {
                        return Err(Failure::new(Kind::Usage, "the two passphrases differ")
                            .hint("run the command again and type the same passphrase twice")
                            .into());
                    }
                    Passphrase::new(first)
                }
                None => {
                    return Err(Failure::new(Kind::Usage, "no new database passphrase given")
                    .hint(format!(
                        "set {variable_prefix}_FILE (a file holding it) or {variable_prefix}, \
                         or run the command in a terminal to type it"
                    ))
                    .into());
                }
            };
        if let Some(weakness) = passphrase.weakness() {
            return Err(Failure::new(Kind::Usage, weakness)
                .hint(
                    "choose a longer passphrase: several words are easy to type and hard to guess",
                )
                .into());
        }
        Ok(passphrase)
    }

    /// The key that opens the embedded database at `database` (`None`: it is plain, or
    /// new without a passphrase). A new database with a passphrase gets a new key, whose
    /// record is written to the data dir. Fails, touching no file, when the passphrase is
    /// missing or wrong, or when one is given for a plain database.
    pub fn unlock(&self, database: &Path, data_dir: &Path) -> anyhow::Result<Option<DbKey>> {
        let state = FileState::of(database).failed(|| {
            Failure::new(
                Kind::Database,
                format!("cannot read the database {}", database.display()),
            )
            .hint("check that this user may read the data dir (EHRS_DATA_DIR)")
        })?;
        match state {
            FileState::Plain => match self.given()? {
                None => Ok(None),
                Some(_) => Err(Failure::new(
                    Kind::Configuration,
                    format!(
                        "the database {} is not encrypted, but a passphrase is set",
                        database.display()
                    ),
                )
                .hint(
                    "to encrypt it, stop ehrs and run `ehrs db encrypt` with the passphrase \
                     set; to go on without encryption, unset EHRS_DB_PASSPHRASE and \
                     EHRS_DB_PASSPHRASE_FILE",
                )
                .into()),
            },
            FileState::New => {
                let Some(passphrase) = self.given()? else {
                    return Ok(None);
                };
                if let Some(weakness) = passphrase.weakness() {
                    return Err(Failure::new(Kind::Configuration, weakness)
                        .hint("set a longer EHRS_DB_PASSPHRASE (several words)")
                        .into());
                }
                let key = DbKey::new_file(&passphrase)?;
                crate::db::files::private_data_dir(data_dir)?;
                cipher::write_params(data_dir, &key)?;
                Ok(Some(key))
            }
            FileState::Encrypted(salt) => {
                let prompt = format!("Passphrase of the database {}: ", database.display());
                let passphrase = self.given_or_asked(&prompt)?.ok_or_else(|| {
                    Failure::new(
                        Kind::Configuration,
                        format!(
                            "the database {} is encrypted and no passphrase was given",
                            database.display()
                        ),
                    )
                    .hint(HOW_TO_GIVE)
                })?;
                cipher::check_params(data_dir, &salt)
                    .failed(|| Failure::new(Kind::Configuration, "the key record is unfit"))?;
                let key = DbKey::derive(&passphrase, salt)?;
                if !cipher::opens(database, &key)? {
                    return Err(Failure::new(
                        Kind::Configuration,
                        format!(
                            "the passphrase does not open the database {}",
                            database.display()
                        ),
                    )
                    .hint(
                        "check EHRS_DB_PASSPHRASE_FILE or EHRS_DB_PASSPHRASE (a passphrase \
                         changed with `ehrs db rekey` replaces the old one); nothing was changed",
                    )
                    .into());
                }
                Ok(Some(key))
            }
        }
    }
}
