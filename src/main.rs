//! The `ehrs` command line: serve, migrate, user, backup, restore, openapi, demo.

use clap::{Parser, Subcommand};
use ehrs::application::Application;
use ehrs::auth::{self, Role, initial_password};
use ehrs::config::{DatabaseSettings, SECRETS_HELP, Settings};
use ehrs::failure::{Failed, Failure, Kind, Report};
use std::process::ExitCode;

/// The exit codes, under `ehrs --help` (the table is in `ehrs::failure` and
/// docs/operations.md).
const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done
  1  any other failure
  2  usage: a wrong flag or argument, or input the command needs and did not get
  3  configuration: a setting or key is missing or invalid
  4  database: it cannot be reached, opened or migrated
  5  cannot listen on EHRS_BIND";

#[derive(Parser)]
#[command(
    name = "ehrs",
    version,
    about = "Electronic health records for free medical camps, with first-class webhooks",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the webhook workers.
    #[command(after_help = SECRETS_HELP)]
    Serve(Box<Settings>),
    /// Apply database migrations and exit.
    Migrate(DatabaseSettings),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Copy the SQLite database and its key files into one backup file, consistently,
    /// while `ehrs serve` runs and writes. PostgreSQL: use pg_dump (this says how).
    Backup {
        /// The backup file to write (it must not exist yet).
        #[arg(long)]
        to: std::path::PathBuf,
        #[command(flatten)]
        settings: DatabaseSettings,
    },
    /// Restore a backup into an empty (or new) data dir, checking its integrity first;
    /// never overwrites.
    Restore {
        /// The backup file made by `ehrs backup`.
        #[arg(long)]
        from: std::path::PathBuf,
        #[command(flatten)]
        settings: DatabaseSettings,
    },
    /// Encryption at rest of the embedded database (stop `ehrs serve` first).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Print the OpenAPI 3.1 document (routes and webhooks) as JSON.
    Openapi,
    /// Start a throw-away server and webhook receiver, walk one patient through a camp
    /// day, and print every webhook as received (signature verified, latency).
    Demo,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password comes from EHRS_NEW_USER_PASSWORD or a prompt.
    Create {
        username: String,
        /// admin, doctor, nurse, pharmacist or volunteer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        settings: DatabaseSettings,
    },
    /// Set a new password for a user (from EHRS_NEW_USER_PASSWORD or a prompt). Every
    /// token the user holds stops working.
    ResetPassword {
        username: String,
        #[command(flatten)]
        settings: DatabaseSettings,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Encrypt a plain SQLite database in place, keeping every row and pending delivery.
    /// The passphrase comes from EHRS_DB_PASSPHRASE_FILE, EHRS_DB_PASSPHRASE or a prompt
    /// (twice); interrupted, it leaves the plain database as it was.
    Encrypt {
        #[command(flatten)]
        settings: DatabaseSettings,
    },
    /// Change the passphrase of an encrypted database. The current one comes from
    /// EHRS_DB_PASSPHRASE_FILE, EHRS_DB_PASSPHRASE or a prompt; the new one from
    /// EHRS_NEW_DB_PASSPHRASE_FILE, EHRS_NEW_DB_PASSPHRASE or a prompt (twice).
    Rekey {
        #[command(flatten)]
        settings: DatabaseSettings,
    },
}

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).ok_or_else(|| "use admin, doctor, nurse, pharmacist or volunteer".to_string())
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    // Usage errors (exit 2), --help and --version are clap's own.
    let cli = Cli::parse();
    let json = log_format(&cli.command) == "json";
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::new(err), json),
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err, json),
    }
}

/// Tells what failed (the message and its causes, never a backtrace: those are for
/// panics) on stderr, as JSON under `EHRS_LOG_FORMAT=json`, and exits with its code.
fn fail(err: &anyhow::Error, json: bool) -> ExitCode {
    let report = Report::of(err);
    eprintln!("{}", if json { report.json() } else { report.text() });
    ExitCode::from(report.exit_code)
}

fn log_format(command: &Command) -> &str {
    match command {
        Command::Serve(settings) => &settings.log_format,
        Command::Migrate(settings)
        | Command::Backup { settings, .. }
        | Command::Restore { settings, .. }
        | Command::Db {
            command: DbCommand::Encrypt { settings } | DbCommand::Rekey { settings },
        }
        | Command::User {
            command:
                UserCommand::Create { settings, .. } | UserCommand::ResetPassword { settings, .. },
        } => &settings.log_format,
        Command::Openapi | Command::Demo => "text",
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Migrate(settings) => {
            init_tracing(&settings.log_format);
            let db = settings.connect().await?;
            db.migrate().await?;
            say(&settings.log_format, "migrations applied");
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Create {
                    username,
                    role,
                    settings,
                },
        } => create_user(settings, username, role).await,
        Command::User {
            command: UserCommand::ResetPassword { username, settings },
        } => reset_password(settings, username).await,
        Command::Backup { to, settings } => backup(&settings, &to),
        Command::Restore { from, settings } => restore(&settings, &from),
        Command::Db {
            command: DbCommand::Encrypt { settings },
        } => encrypt(&settings),
        Command::Db {
            command: DbCommand::Rekey { settings },
        } => rekey(&settings),
        Command::Demo => ehrs::demo::run().await,
        Command::Openapi => {
            print!("{}", ehrs::router::document_json());
            Ok(())
        }
    }
}

/// A command's result for the person who ran it: a plain line, or a JSON log line under
/// `EHRS_LOG_FORMAT=json` (every line of output is then JSON).
fn say(log_format: &str, message: &str) {
    if log_format == "json" {
        tracing::info!("{message}");
    } else {
        println!("{message}");
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    init_tracing(&settings.log_format);
    let bind = settings.bind.clone();
    let app = Application::build(settings).await?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .failed(|| listen_failure(&bind))?;
    tracing::info!(address = %listener.local_addr()?, "ehrs listening");
    if app.state.settings.webhooks_allow_insecure {
        tracing::warn!(
            "EHRS_WEBHOOKS_ALLOW_INSECURE is on: webhooks may go to http:// and loopback targets (development only)"
        );
    }
    // In-flight work finishes; what is queued waits in the database for the next start.
    app.serve(listener, shutdown_signal()).await?;
    tracing::info!("ehrs stopped");
    Ok(())
}

/// `ehrs backup`: the copy, and what it holds.
fn backup(settings: &DatabaseSettings, to: &std::path::Path) -> anyhow::Result<()> {
    let Some(database) = ehrs::db::sqlite_path(&settings.database_url()) else {
        return Err(Failure::new(Kind::Configuration, ehrs::backup::POSTGRES_ADVICE).into());
    };
    let key = settings.db_key()?;
    let summary = ehrs::backup::backup(&database, &settings.data_dir, key.as_ref(), to)?;
    say(
        &settings.log_format,
        &format!("backup written to {}:\n{summary}", to.display()),
    );
    Ok(())
}

/// `ehrs restore`: into an empty data dir only.
fn restore(settings: &DatabaseSettings, from: &std::path::Path) -> anyhow::Result<()> {
    if settings.database_url.is_some() {
        return Err(Failure::new(
            Kind::Configuration,
            "ehrs restore writes the embedded database into --data-dir; unset DATABASE_URL (on PostgreSQL, restore with pg_restore)",
        )
        .into());
    }
    let dir = &settings.data_dir;
    let passphrase = || {
        settings
            .db_passphrase
            .given_or_asked("Passphrase of the backup: ")?
            .ok_or_else(|| {
                Failure::new(Kind::Configuration, "the backup is encrypted and no passphrase was given")
                    .hint("give the passphrase the database had when the backup was taken, in EHRS_DB_PASSPHRASE_FILE or EHRS_DB_PASSPHRASE, or at the prompt")
                    .into()
            })
    };
    let summary = ehrs::backup::restore(from, dir, passphrase)?;
    say(
        &settings.log_format,
        &format!(
            "restored {} into {} (integrity check: ok):\n{summary}",
            from.display(),
            dir.display()
        ),
    );
    Ok(())
}

/// The SQLite file of an embedded database; PostgreSQL encrypts elsewhere.
fn sqlite_file(settings: &DatabaseSettings) -> anyhow::Result<std::path::PathBuf> {
    ehrs::db::sqlite_path(&settings.database_url()).ok_or_else(|| {
        Failure::new(
            Kind::Configuration,
            "ehrs db encrypts the embedded SQLite database; on PostgreSQL encryption at rest is the platform's",
        )
        .hint("encrypt the server's disk and connect with sslmode=verify-full (README, \"Protecting patient data\")")
        .into()
    })
}

/// `ehrs db encrypt`: the plain database encrypted in place.
fn encrypt(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let database = sqlite_file(settings)?;
    let passphrase = settings
        .db_passphrase
        .new_passphrase("EHRS_DB_PASSPHRASE")?;
    let done = ehrs::db::convert::encrypt(&database, &settings.data_dir, &passphrase)?;
    let rows: i64 = done.tables.iter().map(|(_, rows)| rows).sum();
    let mut message = format!(
        "encrypted {} ({} tables, {rows} rows, each checked against the original)",
        database.display(),
        done.tables.len()
    );
    if !done.moved_key_files.is_empty() {
        message += &format!(
            "; the key files {} are now kept inside it",
            done.moved_key_files.join(", ")
        );
    }
    message += "\nstart ehrs with the same passphrase in EHRS_DB_PASSPHRASE_FILE or EHRS_DB_PASSPHRASE; take a new backup, since older ones are plain";
    say(&settings.log_format, &message);
    Ok(())
}

/// `ehrs db rekey`: a new passphrase for the encrypted database.
fn rekey(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let database = sqlite_file(settings)?;
    let key = settings.db_key()?.ok_or_else(|| {
        Failure::new(
            Kind::Usage,
            format!("the database {} is not encrypted", database.display()),
        )
        .hint("`ehrs db encrypt` encrypts it")
    })?;
    let new = ehrs::config::DbPassphrase::from_variables(
        "EHRS_NEW_DB_PASSPHRASE_FILE",
        "EHRS_NEW_DB_PASSPHRASE",
    )
    .new_passphrase("EHRS_NEW_DB_PASSPHRASE")?;
    ehrs::db::convert::rekey(&database, &settings.data_dir, &key, &new)?;
    say(
        &settings.log_format,
        &format!(
            "the passphrase of {} is changed; the old one no longer opens it (backups taken before keep the old one)",
            database.display()
        ),
    );
    Ok(())
}

/// The address could not be bound: say which, and how to choose another.
fn listen_failure(bind: &str) -> Failure {
    Failure::new(Kind::Listen, format!("cannot listen on {bind}")).hint(format!(
        "if another program (or another ehrs) uses {bind}, stop it or set EHRS_BIND to a \
         free address, e.g. EHRS_BIND=127.0.0.1:8001; ports below 1024 need privileges"
    ))
}

/// The new password: `EHRS_NEW_USER_PASSWORD`, or asked at the terminal. Without a
/// terminal (a script, `</dev/null`) there is no one to ask: exit 2, naming the variable.
fn new_password(username: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if let Ok(password) = std::env::var("EHRS_NEW_USER_PASSWORD") {
        return Ok(password);
    }
    let no_terminal = || {
        Failure::new(
            Kind::Usage,
            format!("no terminal to ask for the password of '{username}' on"),
        )
        .hint("set EHRS_NEW_USER_PASSWORD to the password (for scripts), or run the command in a terminal")
    };
    if !std::io::stdin().is_terminal() {
        return Err(no_terminal().into());
    }
    rpassword::prompt_password(format!("Password for {username}: ")).failed(no_terminal)
}

async fn create_user(
    settings: DatabaseSettings,
    username: String,
    role: Role,
) -> anyhow::Result<()> {
    init_tracing(&settings.log_format);
    let password = new_password(&username)?;
    let input = auth::NewUser {
        username,
        password,
        role,
    };
    if let Err(errors) = ehrs::validation::Validate::validate(&input) {
        let message = format!("cannot create the user: {}", errors.summary());
        let hint = "choose another username or password (docs/accounts.md lists the rules)";
        return Err(Failure::new(Kind::Usage, message).hint(hint).into());
    }
    let db = settings.connect().await?;
    db.migrate().await?;
    let hash = auth::hash_password(input.password).await?;
    let mut tx = db.begin().await?;
    let user = auth::repo::insert(&mut tx, &input.username, &hash, role)
        .await
        .map_err(|e| match ehrs::error::ApiError::from(e) {
            e if e.code == "already_exists" => anyhow::anyhow!(
                "the username '{}' is already taken (usernames are compared without regard to case)",
                input.username
            ),
            e => anyhow::anyhow!("cannot create the user: {}", e.message),
        })?;
    tx.commit().await?;
    say(
        &settings.log_format,
        &format!(
            "created user {} ({}) with role {}",
            user.username,
            user.id,
            role.as_str()
        ),
    );
    Ok(())
}

/// The shell's way back in: sets a user's password (the policy applies) and revokes the
/// tokens they hold. It neither reactivates nor changes the role.
async fn reset_password(settings: DatabaseSettings, username: String) -> anyhow::Result<()> {
    init_tracing(&settings.log_format);
    let db = settings.connect().await?;
    db.migrate().await?;
    let user = auth::repo::find_by_username(&db, &username)
        .await?
        .ok_or_else(|| {
            Failure::new(Kind::Usage, format!("no user named '{username}'"))
                .hint("`ehrs user create` makes one; the API's GET /api/v1/users lists them")
        })?;
    let password = new_password(&user.username)?;
    if let Some(reason) = auth::policy::problem(&password, &user.username) {
        let message = format!("the password is refused by the password policy: it {reason}");
        return Err(Failure::new(Kind::Usage, message)
            .hint("choose another password (docs/accounts.md lists the policy)")
            .into());
    }
    let hash = auth::hash_password(password).await?;
    let mut tx = db.begin().await?;
    auth::repo::update(&mut tx, &user.id, Some(&hash), None, None, true).await?;
    tx.commit().await?;
    db.close().await;
    if initial_password::is_admin(&user.username) {
        initial_password::forget(&initial_password::path(&settings.data_dir));
    }
    say(
        &settings.log_format,
        &format!(
            "password of {} ({}) reset; the tokens they held no longer work",
            user.username, user.id
        ),
    );
    Ok(())
}

/// Logs go to stdout, coloured only when it is a terminal (and `NO_COLOR` is unset), so
/// a log file or pipe gets plain text.
fn init_tracing(log_format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(colour);
    if log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
