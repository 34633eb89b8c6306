//! The application's state: what a handler may use, cloned into each request. No
//! globals: the database, the settings, the auth and webhook sub-states, the secret box
//! and the metrics handle all live here.
//!
//! Low in the module graph: the clinical rooms and `inbound` import it; it imports only
//! what it holds (`db`, `config`, `crypto`, and the sub-states of `auth`, `access` and `outbound`,
//! which never import it back: their routes take their sub-state through `FromRef`).
//! It is built in one place, the application's constructor (`Application::build`).

use crate::access::AccessLog;
use crate::auth::AuthState;
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::db::Db;
use crate::outbound::Webhooks;
use axum::extract::FromRef;
use std::sync::Arc;

/// Everything a handler may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub settings: Arc<Settings>,
    /// Tokens, password hashing and login throttling (the auth routes' sub-state).
    pub auth: AuthState,
    /// Seals secrets stored in the database (webhook and inbound-source secrets).
    pub secrets: SecretBox,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The delivery backend and what the webhook administration routes need.
    pub webhooks: Webhooks,
    /// Remembered answers to writes sent with an `Idempotency-Key`.
    pub idempotency: crate::idempotency::guard::Guard,
    /// How the scheduled backups fare (`EHRS_BACKUP_DIR`), for `/health`.
    pub backups: crate::backup::schedule::BackupStatus,
    /// The access audit's queue: who saw which patient's record.
    pub access: AccessLog,
}

impl FromRef<AppState> for AuthState {
    fn from_ref(state: &AppState) -> AuthState {
        state.auth.clone()
    }
}

impl FromRef<AppState> for AccessLog {
    fn from_ref(state: &AppState) -> AccessLog {
        state.access.clone()
    }
}

impl FromRef<AppState> for Webhooks {
    fn from_ref(state: &AppState) -> Webhooks {
        state.webhooks.clone()
    }
}
