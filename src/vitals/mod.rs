//! (to be built) The `vitals` domain: routes, models and SQL.

use crate::app::AppState;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new()
}
