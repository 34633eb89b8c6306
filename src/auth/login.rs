//! A login, start to end: throttle, look up, verify on the bounded hash pool, count, log.
//!
//! Every outcome is counted in `ehrs_login_attempts_total{outcome}` (`success`,
//! `failure`, `throttled`, `busy`) and every refusal is logged with the username and the
//! client address — never the password.

use super::AuthState;
use super::model::TokenResponse;
use super::password::PasswordError;
use super::repo;
use super::throttle::Attempt;
use crate::error::ApiError;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A new token for the user, or the error to answer with (401, 429, 503).
pub async fn login(
    state: &AuthState,
    username: &str,
    password: String,
    address: IpAddr,
) -> Result<TokenResponse, ApiError> {
    // Long names are cut in logs (they name no user anyway); `?` quotes them, so a
    // newline in a username cannot forge a log line.
    let shown: String = username.chars().take(64).collect();
    let attempt = match state.logins.begin(username, address, Instant::now()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            count("throttled");
            tracing::warn!(username = ?shown, %address, retry_after_s = wait.as_secs_f64().ceil(), "login throttled");
            return Err(throttled(wait));
        }
    };
    let found = repo::credentials(&state.db, username).await?;
    // An unknown user costs the same hash as a known one, so names cannot be probed by timing.
    let hash = found
        .as_ref()
        .map_or(DUMMY_HASH, |c| c.password_hash.as_str())
        .to_string();
    let verified = state.passwords.verify(password, hash).await;
    match (verified, found) {
        (Ok(true), Some(user)) => {
            attempt.succeeded();
            count("success");
            Ok(TokenResponse {
                access_token: state
                    .tokens
                    .issue(&user.id, user.role, user.token_generation)?,
                token_type: "bearer",
                expires_in: state.tokens.ttl().as_secs(),
            })
        }
        (Ok(_), _) => {
            attempt.failed(Instant::now());
            count("failure");
            tracing::warn!(username = ?shown, %address, "login failed: wrong username or password");
            Err(ApiError::unauthorized("invalid username or password"))
        }
        (Err(PasswordError::Busy), _) => Err(busy(attempt, &shown, address)),
        (Err(PasswordError::Failed(err)), _) => {
            attempt.refund();
            Err(ApiError::internal(err))
        }
    }
}

fn busy(attempt: Attempt, shown: &str, address: IpAddr) -> ApiError {
    attempt.refund();
    count("busy");
    tracing::warn!(username = ?shown, %address, "login refused: every password hashing slot is taken");
    PasswordError::Busy.into()
}

fn throttled(wait: Duration) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "too many failed logins for this user or from this address; try again later",
    )
    .with_details(serde_json::json!({ "retry_after_seconds": wait.as_secs_f64().ceil() as u64 }))
    .with_retry_after(wait)
}

fn count(outcome: &'static str) {
    metrics::counter!("ehrs_login_attempts_total", "outcome" => outcome).increment(1);
}

impl From<PasswordError> for ApiError {
    fn from(err: PasswordError) -> Self {
        match err {
            PasswordError::Busy => ApiError::service_unavailable(
                "the server is busy checking other passwords; try again in a moment",
            )
            .with_retry_after(Duration::from_secs(1)),
            PasswordError::Failed(err) => ApiError::internal(err),
        }
    }
}

/// A hash of nothing anyone knows, with the default parameters (see `login`).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1fY7mXGmq3kqCX2Rk5Ka2OvtaKIn1Fu6H8Av0JK0Yb0";
