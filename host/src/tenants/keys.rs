//! API keys and webhook secrets.
//!
//! Keys are 32 random base62 characters (~190 bits), so a fast unsalted
//! SHA-256 is the right hash: nothing to brute-force, and lookups by hash are
//! an index hit instead of a scan of slow password hashes.

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new API key: `esk_` + 32 base62 characters.
pub fn new_api_key() -> String {
    let mut rng = rand::rng();
    let body: String = (0..32)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    format!("esk_{body}")
}

/// Hex SHA-256 of a key, as stored.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes.
pub fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hash_stably() {
        let a = new_api_key();
        assert!(a.starts_with("esk_") && a.len() == 36);
        assert_ne!(a, new_api_key());
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(new_webhook_secret().starts_with("whsec_"));
    }
}
