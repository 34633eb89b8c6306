//! Secrets at rest: webhook signing secrets and inbound-source secrets are stored sealed
//! with XChaCha20-Poly1305 under the server key (`EHRS_SECRET_KEY`), because the server
//! must compute HMACs with them and so cannot store a hash.
//!
//! Stored form: `v1:<base64(nonce ‖ ciphertext ‖ tag)>`. The version prefix leaves room
//! to rotate the server key later without guessing which key sealed a value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const VERSION: &str = "v1:";
const NONCE_LEN: usize = 24;

/// Seals and opens secrets with the server key. Debug output never shows the key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        SecretBox {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Encrypts `plaintext`; `context` (e.g. the row's id) is bound as associated data so
    /// a sealed value copied onto another row does not open there.
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory secrets");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        format!("{VERSION}{}", BASE64.encode(out))
    }

    /// Decrypts a value made by [`SecretBox::seal`] with the same `context`.
    pub fn open(&self, stored: &str, context: &str) -> anyhow::Result<String> {
        let encoded = stored
            .strip_prefix(VERSION)
            .ok_or_else(|| anyhow::anyhow!("sealed secret has an unknown version"))?;
        let bytes = BASE64.decode(encoded)?;
        if bytes.len() < NONCE_LEN {
            anyhow::bail!("sealed secret is truncated");
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealed secret does not open with this server key"))?;
        Ok(String::from_utf8(plain)?)
    }
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_context() {
        let secret_box = SecretBox::new(&[1u8; 32]);
        let sealed = secret_box.seal("whsec_abc", "sub_1");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(secret_box.open(&sealed, "sub_1").unwrap(), "whsec_abc");
        assert!(secret_box.open(&sealed, "sub_2").is_err());
        assert!(SecretBox::new(&[2u8; 32]).open(&sealed, "sub_1").is_err());
        assert_ne!(
            secret_box.seal("whsec_abc", "sub_1"),
            sealed,
            "nonces are random"
        );
    }
}
