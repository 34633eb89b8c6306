//! Standard Webhooks signatures, exactly as Svix sends them: the signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}`, the signature is
//! `v1,<base64(HMAC-SHA256(key, content))>`, and the key is the base64 part of the
//! `whsec_…` secret. Also the catch-up feed's token, derived from the same key
//! ([`feed_token`]). Pure functions, no I/O.

use crate::crypto::SecretBox;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub(crate) const SECRET_PREFIX: &str = "whsec_";
/// What every feed token starts with, so the feed route tells it from a user's JWT.
pub(crate) const FEED_TOKEN_PREFIX: &str = "ehrs_feed_";

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", BASE64.encode(key))
}

/// The HMAC key inside a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    BASE64.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()
}

/// `v1,<signature>` of one message for one key.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value: one `v1,` signature per key, space-separated
/// (during a secret rotation both the new and the old key sign).
pub(crate) fn signature_header(
    keys: &[Vec<u8>],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    keys.iter()
        .map(|key| sign(key, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A subscription's sealed secrets as stored: the current one, and the previous one with
/// the end of its overlap (Unix ms) during a rotation.
pub(crate) struct SealedSecrets<'a> {
    /// The subscription id: the secrets are sealed with it as context.
    pub subscription: &'a str,
    pub current: &'a str,
    pub previous: Option<&'a str>,
    pub previous_until: Option<i64>,
}

impl SealedSecrets<'_> {
    /// The keys valid at `now`: the current secret's, and the previous one's while its
    /// overlap lasts. Deliveries are signed with all of them; a feed token derived from
    /// any of them is accepted, so a receiver switches to the new secret at its pace.
    pub fn live_keys(&self, secrets: &SecretBox, now: i64) -> Result<Vec<Vec<u8>>, String> {
        let current = secrets
            .open(self.current, self.subscription)
            .map_err(|e| format!("cannot open the signing secret: {e}"))?;
        let mut keys = vec![secret_key(&current).ok_or("the signing secret is malformed")?];
        if let (Some(previous), Some(until)) = (self.previous, self.previous_until)
            && until > now
            && let Some(key) = secrets
                .open(previous, self.subscription)
                .ok()
                .and_then(|s| secret_key(&s))
        {
            keys.push(key);
        }
        Ok(keys)
    }
}

/// The catch-up feed's token of a subscription: `ehrs_feed_` +
/// base64url(HMAC-SHA256(key, "ehrs-feed:" + subscription id)), unpadded. Derived, not
/// stored: it changes when the secret rotates, and whoever holds the secret can compute
/// it. The `ehrs-feed:` prefix keeps it apart from every signed delivery, whose signed
/// content starts with a `msg_` id.
pub fn feed_token(key: &[u8], subscription: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(b"ehrs-feed:");
    mac.update(subscription.as_bytes());
    format!(
        "{FEED_TOKEN_PREFIX}{}",
        BASE64_URL.encode(mac.finalize().into_bytes())
    )
}

/// Whether `presented` is the feed token of `subscription` under one of `keys`, compared
/// in constant time (every key is tried, so the time does not tell which one matched).
pub(crate) fn feed_token_matches(keys: &[Vec<u8>], subscription: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    keys.iter()
        .fold(subtle::Choice::from(0), |matched, key| {
            matched
                | feed_token(key, subscription)
                    .as_bytes()
                    .ct_eq(presented.as_bytes())
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the Standard Webhooks specification.
    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_round_trip_and_both_keys_sign_during_rotation() {
        let secret = generate_secret();
        assert_eq!(secret_key(&secret).unwrap().len(), 32);
        let header = signature_header(&[vec![1; 32], vec![2; 32]], "msg_1", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|s| s.starts_with("v1,")));
        assert_eq!(secret_key("nope"), None);
    }

    /// The recipe the README gives partners in Python must give the same token.
    #[test]
    fn feed_tokens_are_derived_from_the_key_and_checked_against_each_live_key() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let subscription = "sub_01jdq3v8m2x7c9k4t6w0y5z1ab";
        let token = feed_token(&key, subscription);
        // Python's hmac + base64.urlsafe_b64encode(..).rstrip(b"=") gave this.
        assert_eq!(
            token,
            "ehrs_feed_bhtgEh4qJzVKA72RghkJtaSr8r-26GXBV29ZJLrak4Q"
        );
        assert_ne!(token, feed_token(&key, "sub_01jdq3v8m2x7c9k4t6w0y5z1ac"));
        let other = vec![9u8; 32];
        assert!(feed_token_matches(
            &[other.clone(), key.clone()],
            subscription,
            &token
        ));
        assert!(!feed_token_matches(&[other], subscription, &token));
        assert!(!feed_token_matches(
            std::slice::from_ref(&key),
            "sub_01jdq3v8m2x7c9k4t6w0y5z1ac",
            &token
        ));
        assert!(!feed_token_matches(
            &[key],
            subscription,
            &token[..token.len() - 1]
        ));
    }
}
