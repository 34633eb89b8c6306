//! The `ehrs` command line: serve, migrate, user, openapi, demo.

use clap::{Parser, Subcommand};
use ehrs::application::Application;
use ehrs::auth::{self, Role};
use ehrs::config::{DatabaseSettings, Settings};
use ehrs::db::Db;

#[derive(Parser)]
#[command(
    name = "ehrs",
    version,
    about = "Electronic health records for free medical camps, with first-class webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the webhook workers.
    Serve(Box<Settings>),
    /// Apply database migrations and exit.
    Migrate(DatabaseSettings),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
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

fn parse_role(raw: &str) -> Result<Role, String> {
    Role::parse(raw).ok_or_else(|| "use admin, doctor, nurse, pharmacist or volunteer".to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => serve(*settings).await,
        Command::Migrate(settings) => {
            init_tracing(&settings.log_format);
            let db = Db::connect(&settings.database_url(), 2).await?;
            db.migrate().await?;
            println!("migrations applied");
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
        Command::Demo => ehrs::demo::run().await,
        Command::Openapi => {
            print!("{}", ehrs::router::document_json());
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    init_tracing(&settings.log_format);
    let bind = settings.bind.clone();
    let app = Application::build(settings).await?;
    if let Some(password) = &app.generated_admin_password {
        // Printed to the terminal once, never logged.
        println!("Created user 'admin' with password: {password}");
        println!("(shown only this once; set EHRS_ADMIN_PASSWORD to choose it)");
    }
    let listener = tokio::net::TcpListener::bind(&bind).await?;
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

/// The new password: `EHRS_NEW_USER_PASSWORD`, or asked at the terminal.
fn new_password(username: &str) -> anyhow::Result<String> {
    match std::env::var("EHRS_NEW_USER_PASSWORD") {
        Ok(password) => Ok(password),
        Err(_) => Ok(rpassword::prompt_password(format!(
            "Password for {username}: "
        ))?),
    }
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
    ehrs::validation::Validate::validate(&input)
        .map_err(|e| anyhow::anyhow!(ehrs::error::ApiError::from(e).message))?;
    let db = Db::connect(&settings.database_url(), 2).await?;
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
    println!(
        "created user {} ({}) with role {}",
        user.username,
        user.id,
        role.as_str()
    );
    Ok(())
}

/// The shell's way back in: sets a user's password (the policy applies) and revokes the
/// tokens they hold. It neither reactivates nor changes the role.
async fn reset_password(settings: DatabaseSettings, username: String) -> anyhow::Result<()> {
    init_tracing(&settings.log_format);
    let db = Db::connect(&settings.database_url(), 2).await?;
    db.migrate().await?;
    let user = auth::repo::find_by_username(&db, &username)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user named '{username}'"))?;
    let password = new_password(&user.username)?;
    if let Some(reason) = auth::policy::problem(&password, &user.username) {
        anyhow::bail!("the password is refused by the password policy: it {reason}");
    }
    let hash = auth::hash_password(password).await?;
    let mut tx = db.begin().await?;
    auth::repo::update(&mut tx, &user.id, Some(&hash), None, None, true).await?;
    tx.commit().await?;
    db.close().await;
    println!(
        "password of {} ({}) reset; the tokens they held no longer work",
        user.username, user.id
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
