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
use crate::jobs::{self, JobContext, Registry};
use crate::outbound::backend::WebhookBackend;
use crate::outbound::{Webhooks, retention, ssrf};
use crate::state::AppState;
use crate::tasks::Tasks;
use anyhow::Context;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The application, built and ready to serve.
pub struct Application {
    pub state: AppState,
    /// The first admin's password, when this start created that user with a generated
    /// one: printed once by `ehrs serve`, never logged.
    pub generated_admin_password: Option<String>,
}

impl Application {
    /// Opens the database (making a SQLite data dir private), migrates it, loads the keys,
    /// creates the first admin on an empty user table (`Settings::create_admin`), and
    /// builds the state with the backend `WEBHOOK_BACKEND` names. Nothing runs yet: see
    /// [`Application::start_workers`] and [`Application::serve`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        if !settings.is_postgres() {
            crate::db::files::private_data_dir(&settings.data_dir).with_context(|| {
                format!(
                    "cannot make the data dir {} private",
                    settings.data_dir.display()
                )
            })?;
        }
        let keys = settings.load_keys()?;
        let db = Db::connect(&settings.database_url(), settings.db_pool_size).await?;
        db.migrate().await?;
        let generated_admin_password = if settings.create_admin {
            ensure_admin(&db, settings.admin_password.clone()).await?
        } else {
            None
        };
        let secrets = SecretBox::new(&keys.data);
        let lookup: Arc<dyn ssrf::Lookup> = Arc::new(ssrf::SystemLookup);
        let webhooks = Webhooks {
            backend: webhook_backend(&settings, &db, &secrets, &lookup)?,
            db: db.clone(),
            policy: ssrf::Policy::from_settings(&settings),
            lookup,
            secret_overlap: settings.webhook_secret_overlap,
        };
        let auth = AuthState::new(Auth {
            db: db.clone(),
            tokens: TokenIssuer::new(&keys.jwt, settings.token_ttl)?,
            passwords: auth::Passwords::new(
                settings.password_hash_workers,
                settings.password_hash_queue,
            ),
            logins: auth::LoginThrottle::new(settings.login_throttle()),
        });
        let state = AppState {
            db,
            settings: Arc::new(settings),
            auth,
            secrets,
            metrics: crate::metrics::handle(),
            webhooks,
        };
        Ok(Application {
            state,
            generated_admin_password,
        })
    }

    /// The whole HTTP surface.
    pub fn router(&self) -> axum::Router {
        crate::router::router(self.state.clone())
    }

    /// Starts what runs beside the HTTP server: the webhook backend's workers (delivery
    /// only with `EHRS_WEBHOOK_WORKERS`), the payload retention for either backend (also
    /// with `EHRS_WEBHOOK_WORKERS`), and the job runner (`Settings::job_workers`).
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
        crate::server::serve(listener, self.router(), shutdown).await?;
        tracing::info!("finishing in-flight work");
        workers.stop().await;
        self.state.db.close().await;
        Ok(())
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

/// On an empty user table, creates `admin` with `EHRS_ADMIN_PASSWORD` or a generated
/// password, which is returned so the caller can print it once. Safe when several
/// instances start together on one empty database: exactly one creates the admin, and
/// only that one returns (prints) a password.
async fn ensure_admin(db: &Db, password: Option<String>) -> anyhow::Result<Option<String>> {
    if auth::repo::count(db).await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(password) => {
            if let Some(reason) = auth::policy::problem(&password, "admin") {
                anyhow::bail!("EHRS_ADMIN_PASSWORD is refused by the password policy: it {reason}");
            }
            (password, false)
        }
        None => (generate_password(), true),
    };
    let hash = auth::hash_password(password.clone()).await?;
    let mut tx = db.begin().await?;
    let created = auth::repo::insert_first_admin(&mut tx, &hash).await?;
    tx.commit().await?;
    Ok((created && generated).then_some(password))
}

fn generate_password() -> String {
    use base64::Engine;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
