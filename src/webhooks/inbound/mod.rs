//! (to be built) Inbound webhooks: sources, the verified receiver, and their jobs.

use crate::app::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
