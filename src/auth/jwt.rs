//! Bearer tokens: HS256 JWTs carrying the user id, role and token generation, with an
//! expiry. The generation is the user's `token_generation` when the token was issued; the
//! extractor refuses a token whose generation is no longer the user's (see
//! `CurrentUser`), which is how a password change, a role change, a deactivation or a
//! logout ends every earlier token at once.

use super::Role;
use crate::ids::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub role: Role,
    pub exp: u64,
    pub iat: u64,
    /// Tokens issued before generations existed carry none: they count as generation 0,
    /// every user's first.
    #[serde(default)]
    pub generation: i64,
}

#[derive(Clone)]
pub struct TokenIssuer {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], ttl: Duration) -> anyhow::Result<Self> {
        Ok(TokenIssuer {
            encoding: Arc::new(EncodingKey::from_secret(secret)?),
            decoding: Arc::new(DecodingKey::from_secret(secret)?),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user: &UserId, role: Role, generation: i64) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: user.clone(),
            role,
            generation,
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuer(..)")
    }
}
