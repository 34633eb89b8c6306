//! The one place that builds the application from its settings and decides what runs:
//! `ehrs serve`, `ehrs demo`, the integration tests and `ehrs-bench` all start through
//! [`Application::build`], so they run the same state, router and workers.
//!
//! It opens (and migrates) the database, loads the keys, creates the first admin, picks
//! the webhook backend (`WEBHOOK_BACKEND`), and starts that backend's workers and the
//! job runner. At the top of the module graph with `router` and `main`.

use crate::auth::{self, Auth, AuthState, TokenIssuer};
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::db::Db;
use crate::failure::{Failed, Failure, Kind};
use crate::jobs::{self, JobContext, Registry};
use crate::outbound::backend::WebhookBackend;
use crate::outbound::{Webhooks, retention, ssrf};
use crate::state::AppState;
use crate::tasks::Tasks;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The application, built and ready to serve.
pub struct Application {
    pub state: AppState,
}

impl Application {
    /// Opens the database (making a SQLite data dir private), migrates it, loads the keys,
    /// creates the first admin on an empty user table (`Settings::create_admin`), and
    /// builds the state with the backend `WEBHOOK_BACKEND` names. Nothing runs yet: see
    /// [`Application::start_workers`] and [`Application::serve`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        if !settings.is_postgres() {
            crate::db::files::private_data_dir(&settings.data_dir).failed(|| {
                Failure::new(
                    Kind::Configuration,
                    format!(
                        "cannot make the data dir {} private",
                        settings.data_dir.display()
                    ),
                )
                .hint("set EHRS_DATA_DIR to a directory this user owns, or create it")
            })?;
        }
        settings.check_subnets()?;
        if settings.is_postgres() && settings.backup_dir.is_some() {
            return Err(Failure::new(
                Kind::Configuration,
                "EHRS_BACKUP_DIR backs up the embedded SQLite database, not PostgreSQL",
            )
            .hint(crate::backup::POSTGRES_ADVICE)
            .into());
        }
        let db_key = settings.db_key()?;
        // A plain database's keys come from the environment or the data dir before the
        // database opens (so a missing key stops start-up first); an encrypted one's are
        // kept inside it.
        let file_keys = match db_key {
            None => Some(settings.load_keys().failed(keys_failure)?),
            Some(_) => None,
        };
        let db = Db::connect(
            &settings.database_url(),
            settings.db_pool_size,
            db_key.as_ref(),
        )
        .await?;
        db.migrate().await?;
        let keys = match file_keys {
            Some(keys) => keys,
            None => settings.load_keys_from(&db).await.failed(keys_failure)?,
        };
        if db.sqlite_path().is_some() && db.sqlite_key().is_none() {
            tracing::warn!(
                database = %settings.database_url(),
                "the database is NOT encrypted: a stolen disk gives patient records away; stop ehrs and run `ehrs db encrypt` (README, \"Protecting patient data\")"
            );
        }
        let initial_password = auth::initial_password::path(&settings.data_dir);
        if settings.create_admin {
            let password = settings.admin_password()?;
            ensure_admin(&db, password, &initial_password).await?;
        }
        let secrets = SecretBox::new(&keys.data);
        let lookup: Arc<dyn ssrf::Lookup> = Arc::new(ssrf::SystemLookup);
        let webhooks = Webhooks {
            backend: webhook_backend(&settings, &db, &secrets, &lookup).failed(|| {
                Failure::new(Kind::Configuration, "the webhook backend cannot start").hint(
                    "WEBHOOK_BACKEND is embedded or svix (docs/svix.md lists svix's settings)",
                )
            })?,
            db: db.clone(),
            policy: ssrf::Policy::from_settings(&settings),
            lookup,
            secret_overlap: settings.webhook_secret_overlap,
            max_subscriptions: settings.webhook_max_subscriptions,
        };
        let auth = AuthState::new(Auth {
            db: db.clone(),
            tokens: TokenIssuer::new(&keys.jwt, settings.token_ttl)?,
            passwords: auth::Passwords::new(
                settings.password_hash_workers,
                settings.password_hash_queue,
            ),
            logins: auth::LoginThrottle::new(settings.login_throttle()),
            initial_password,
        });
        let idempotency = crate::idempotency::guard::Guard {
            db: db.clone(),
            secrets: secrets.clone(),
            in_flight: Default::default(),
        };
        let state = AppState {
            backups: crate::backup::schedule::BackupStatus::default(),
            access: crate::access::AccessLog::new(db.clone(), settings.access_audit_retention),
            idempotency,
            db,
            settings: Arc::new(settings),
            auth,
            secrets,
            metrics: crate::metrics::handle(),
            webhooks,
        };
        Ok(Application { state })
    }

    /// The whole HTTP surface.
    pub fn router(&self) -> axum::Router {
        crate::router::router(self.state.clone())
    }

    /// Starts what runs beside the HTTP server: the webhook backend's workers (delivery
    /// only with `EHRS_WEBHOOK_WORKERS`), the payload retention for either backend (also
    /// with `EHRS_WEBHOOK_WORKERS`), the job runner (`Settings::job_workers`), and the
    /// hourly purge of idempotency keys past their 24 h, and the access audit's writer.
    /// Stop them with [`Tasks::stop`]: in-flight work finishes, queued work waits in the
    /// database for the next start.
    pub fn start_workers(&self) -> Tasks {
        let settings = &self.state.settings;
        let backend = &self.state.webhooks.backend;
        let mut tasks = Tasks::new();
        backend
            .clone()
            .start_workers(&mut tasks, settings.webhook_workers);
        if settings.webhook_workers {
            let (db, backend) = (self.state.db.clone(), backend.clone());
            let (days, clock) = (
                settings.webhook_retention_days,
                settings.webhook_clock.clone(),
            );
            tasks.spawn(move |stopped| retention::run(db, backend, days, clock, stopped));
        }
        if settings.job_workers {
            let context = JobContext {
                db: self.state.db.clone(),
            };
            tasks.spawn(|stopped| jobs::run(context, job_registry(), stopped));
        }
        let db = self.state.db.clone();
        tasks.spawn(move |stopped| crate::idempotency::run_purge(db, stopped));
        let access = self.state.access.clone();
        tasks.spawn(move |stopped| crate::access::writer::run(access, stopped));
        if let Some(schedule) = backup_schedule(settings, &self.state.db) {
            let status = self.state.backups.clone();
            tasks.spawn(move |stopped| crate::backup::schedule::run(schedule, status, stopped));
        }
        tasks
    }

    /// Serves on `listener` with the workers running until `shutdown` resolves; then lets
    /// in-flight requests and work finish and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let workers = self.start_workers();
        let limits = server_limits(&self.state.settings);
        crate::server::serve(listener, self.router(), limits, shutdown).await?;
        tracing::info!("finishing in-flight work");
        workers.stop().await;
        self.state.db.close().await;
        Ok(())
    }
}

/// The HTTP server's limits as configured (`EHRS_HTTP_*`).
pub fn server_limits(settings: &Settings) -> crate::server::ServerLimits {
    crate::server::ServerLimits {
        header_read: settings.http_header_timeout,
        body_read: settings.http_body_timeout,
        answer_write: settings.http_write_timeout,
        max_connections: settings.http_max_connections as usize,
        max_connections_per_address: settings.http_max_connections_per_address as usize,
    }
}

/// Every job kind this program runs: the modules that queue jobs give their handlers.
pub fn job_registry() -> Registry {
    crate::inbound::register_jobs(Registry::new())
}

/// The backend `WEBHOOK_BACKEND` names.
fn webhook_backend(
    settings: &Settings,
    db: &Db,
    secrets: &SecretBox,
    lookup: &Arc<dyn ssrf::Lookup>,
) -> anyhow::Result<Arc<dyn WebhookBackend>> {
    Ok(match settings.webhook_backend.as_str() {
        "embedded" => Arc::new(crate::delivery::EmbeddedBackend::from_settings(
            settings,
            db,
            secrets,
            lookup.clone(),
        )),
        "svix" => Arc::new(crate::svix::SvixBackend::from_settings(settings, db)?),
        other => anyhow::bail!("WEBHOOK_BACKEND must be 'embedded' or 'svix', not '{other}'"),
    })
}

/// On an empty user table, creates `admin` with the password given
/// (`EHRS_ADMIN_PASSWORD` or `EHRS_ADMIN_PASSWORD_FILE`) or a generated one, which goes
/// to the file at `initial_password` (0600), never to the log. Safe when several instances
/// start together on one empty database: exactly one creates the admin, and only that one
/// writes the file. With users already there, a file whose password the admin has since
/// changed is removed.
async fn ensure_admin(
    db: &Db,
    given: Option<String>,
    initial_password: &std::path::Path,
) -> anyhow::Result<()> {
    if auth::repo::count(db).await? > 0 {
        forget_changed_initial_password(db, initial_password).await;
        return Ok(());
    }
    let generated = given.is_none();
    let password = match given {
        Some(password) => {
            if let Some(reason) = auth::policy::problem(&password, "admin") {
                return Err(Failure::new(
                    Kind::Configuration,
                    format!("EHRS_ADMIN_PASSWORD is refused by the password policy: it {reason}"),
                )
                .hint("choose another password (docs/accounts.md lists the policy)")
                .into());
            }
            password
        }
        None => generate_password(),
    };
    let hash = auth::hash_password(password.clone()).await?;
    let mut tx = db.begin().await?;
    let created = auth::repo::insert_first_admin(&mut tx, &hash).await?;
    tx.commit().await?;
    if !created {
        return Ok(());
    }
    if generated {
        auth::initial_password::write(initial_password, &password).failed(|| {
            Failure::new(
                Kind::Configuration,
                format!("cannot write {}", initial_password.display()),
            )
            .hint("EHRS_DATA_DIR must be writable; or set EHRS_ADMIN_PASSWORD_FILE")
        })?;
        tracing::info!(
            file = %initial_password.display(),
            "created the first admin user 'admin'; its password is in the file (readable by this user only; removed once the admin changes the password)"
        );
    } else {
        tracing::info!("created the first admin user 'admin' with the password from the settings");
    }
    Ok(())
}

/// Removes the initial password file once it no longer opens the admin's account.
async fn forget_changed_initial_password(db: &Db, file: &std::path::Path) {
    let Some(password) = auth::initial_password::read(file) else {
        return;
    };
    let hash = auth::repo::credentials(db, auth::initial_password::ADMIN)
        .await
        .ok()
        .flatten()
        .map(|credentials| credentials.password_hash);
    let still_valid = match hash {
        Some(hash) => auth::verify_password(password, hash).await,
        None => false,
    };
    if !still_valid {
        auth::initial_password::forget(file);
    }
}

fn generate_password() -> String {
    use base64::Engine;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The scheduled backups `EHRS_BACKUP_DIR` asks for (SQLite only: `build` refuses it on
/// PostgreSQL).
fn backup_schedule(settings: &Settings, db: &Db) -> Option<crate::backup::schedule::Schedule> {
    Some(crate::backup::schedule::Schedule {
        dir: settings.backup_dir.clone()?,
        interval: settings.backup_interval,
        keep: settings.backup_keep as usize,
        database: crate::db::sqlite_path(&settings.database_url())?,
        data_dir: settings.data_dir.clone(),
        key: db.sqlite_key().cloned(),
    })
}

/// Why start-up stops when the keys cannot be had.
fn keys_failure() -> Failure {
    Failure::new(Kind::Configuration, "cannot load the keys")
        .hint("see docs/configuration.md for EHRS_JWT_SECRET and EHRS_SECRET_KEY")
}
