//! `GET /health`: is the database reachable, which delivery backend runs, and how deep
//! its queue is.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// `ok` or `unreachable`.
    pub database: &'static str,
    pub database_backend: &'static str,
    /// `embedded` or `svix`.
    pub webhook_backend: String,
    /// `ok`, or `degraded` when the backend cannot take work (Svix unreachable): the API
    /// keeps working and events wait in the outbox.
    pub webhooks: &'static str,
    /// Why the webhook backend is degraded.
    pub webhooks_detail: Option<String>,
    /// Embedded: deliveries waiting for an attempt (first attempts and scheduled
    /// retries). Svix: events waiting to be handed to Svix.
    pub queue_depth: Option<i64>,
    /// Embedded: the camp's uplink, `up` or `down` (then `webhooks` is `degraded`).
    pub uplink: Option<UplinkHealth>,
    /// With `EHRS_BACKUP_DIR`: the scheduled backups (`failing` makes `status` degraded).
    pub backups: Option<BackupHealth>,
}

/// The scheduled backups in `/health`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BackupHealth {
    /// `ok` (none failed since the last success, or none due yet) or `failing`.
    pub state: &'static str,
    pub last_success: Option<crate::time::Timestamp>,
    /// Why the last backup failed.
    pub last_error: Option<String>,
}

/// The camp's uplink in `/health` (the admin status route says more).
#[derive(Serialize, utoipa::ToSchema)]
pub struct UplinkHealth {
    /// `up` or `down`.
    pub state: &'static str,
    /// Since when it is down.
    pub down_since: Option<crate::time::Timestamp>,
}

/// Liveness and readiness: 200 when the database answers (even with the webhook backend
/// degraded: the API works), 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let database_ok = state.db.ping().await;
    let backend = &state.webhooks.backend;
    let queue_depth = backend.queue_depth().await.ok();
    let webhooks = backend.health();
    let backups = state.settings.backup_dir.as_ref().map(|_| {
        let fared = state.backups.now();
        BackupHealth {
            state: if fared.last_error.is_some() {
                "failing"
            } else {
                "ok"
            },
            last_success: fared.last_success,
            last_error: fared.last_error,
        }
    });
    let backups_ok = backups.as_ref().is_none_or(|b| b.state == "ok");
    let health = Health {
        status: if database_ok && webhooks.status == "ok" && backups_ok {
            "ok"
        } else {
            "degraded"
        },
        database: if database_ok { "ok" } else { "unreachable" },
        database_backend: match state.db.backend() {
            crate::db::Backend::Sqlite => "sqlite",
            crate::db::Backend::Postgres => "postgres",
        },
        webhook_backend: backend.name().to_string(),
        webhooks: webhooks.status,
        webhooks_detail: webhooks.detail,
        queue_depth,
        uplink: backend.uplink().map(|uplink| UplinkHealth {
            state: uplink.state,
            down_since: uplink.down_since,
        }),
        backups,
    };
    let status = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}
