//! (to be built) The `consultations` domain: routes, models and SQL.

use crate::app::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
