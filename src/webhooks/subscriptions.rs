//! Subscriptions: who receives which events, where, signed with which secret.
//! Model, validation and SQL for `webhook_subscriptions`.

use super::events::EventType;
use crate::crypto::SecretBox;
use crate::db::{Db, Tx};
use crate::error::ApiError;
use crate::ids::SubscriptionId;
use crate::time::Timestamp;
use crate::validation::FieldErrors;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

/// What a delivery's `data` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// The resource as it is after the write.
    #[default]
    Full,
    /// Identifiers only (`id`, `*_id`, `book_no`): no clinical fields leave the server.
    IdOnly,
}

impl PayloadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadMode::Full => "full",
            PayloadMode::IdOnly => "id_only",
        }
    }

    pub fn parse(raw: &str) -> PayloadMode {
        if raw == "id_only" {
            PayloadMode::IdOnly
        } else {
            PayloadMode::Full
        }
    }
}

/// A subscription as the admin API shows it. The secret is never part of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub url: String,
    pub description: String,
    /// Event types delivered; empty means all.
    pub event_types: Vec<String>,
    pub payload: PayloadMode,
    pub enabled: bool,
    /// Why the subscription was disabled automatically, if it was.
    pub paused_reason: Option<String>,
    pub paused_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The answer to create (and rotate): the subscription plus its signing secret, shown
/// this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionWithSecret {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// `whsec_…`: verify deliveries with it (Standard Webhooks / Svix libraries).
    pub secret: String,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// `https://` endpoint that receives the deliveries.
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Event types to deliver; empty or absent means all.
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub payload: PayloadMode,
}

/// Checks an event-type filter: every entry must be a known type.
pub fn validate_event_types(errors: &mut FieldErrors, types: &[String]) {
    let unknown: Vec<&String> = types
        .iter()
        .filter(|t| EventType::parse(t).is_none())
        .collect();
    if !unknown.is_empty() {
        let valid: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        errors.add(
            "event_types",
            format!(
                "unknown event types {unknown:?}; valid types are: {}",
                valid.join(", ")
            ),
        );
    }
}

impl NewSubscription {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut errors = FieldErrors::new();
        errors.text("url", &self.url, 2000);
        errors.optional_text("description", Some(&self.description), 500);
        validate_event_types(&mut errors, &self.event_types);
        errors.finish()
    }
}

const COLUMNS: &str = "id, url, description, event_types, payload_mode, enabled, paused_reason, paused_at, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Subscription, sqlx::Error> {
    let event_types: String = row.try_get("event_types")?;
    let payload: String = row.try_get("payload_mode")?;
    Ok(Subscription {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: serde_json::from_str(&event_types).unwrap_or_default(),
        payload: PayloadMode::parse(&payload),
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        paused_reason: row.try_get("paused_reason")?,
        paused_at: row.try_get("paused_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts a subscription with a sealed copy of `secret`.
pub async fn insert(
    tx: &mut Tx,
    input: &NewSubscription,
    secret: &str,
    secrets: &SecretBox,
) -> Result<Subscription, sqlx::Error> {
    let id = SubscriptionId::generate();
    let now = Timestamp::now();
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_subscriptions (id, url, description, event_types, payload_mode, secret_enc, enabled, \
         consecutive_failures, last_sequence, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, 0, 0, $7, $7) \
         RETURNING {COLUMNS}"
    )))
    .bind(&id)
    .bind(&input.url)
    .bind(&input.description)
    .bind(json!(input.event_types).to_string())
    .bind(input.payload.as_str())
    .bind(secrets.seal(secret, id.as_str()))
    .bind(now)
    .fetch_one(tx.conn())
    .await?;
    from_row(&row)
}

pub async fn get(db: &Db, id: &SubscriptionId) -> Result<Option<Subscription>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(
    db: &Db,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Subscription>, i64), sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(db.pool())
    .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_subscriptions")
        .fetch_one(db.pool())
        .await?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, total))
}
