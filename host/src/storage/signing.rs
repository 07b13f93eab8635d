//! Signed, expiring file URLs: `/v1/files/{id}?expires=UNIX&sig=HEX` where
//! `sig = HMAC-SHA256(secret, "{id}.{expires}")`. Anyone holding the URL may
//! download until it expires; without a valid signature the owner's API key
//! is needed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
    ttl_secs: u64,
}

impl UrlSigner {
    pub fn new(secret: Vec<u8>, ttl_secs: u64) -> Self {
        UrlSigner { secret, ttl_secs }
    }

    fn mac(&self, id: &str, expires: i64) -> Hmac<Sha256> {
        let mut m =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        m.update(format!("{id}.{expires}").as_bytes());
        m
    }

    /// The path and query for `id`, valid for the configured time from `now_secs`.
    pub fn sign(&self, id: &str, now_secs: i64) -> String {
        let expires = now_secs + self.ttl_secs as i64;
        let sig = hex::encode(self.mac(id, expires).finalize().into_bytes());
        format!("/v1/files/{id}?expires={expires}&sig={sig}")
    }

    /// Whether `sig` is this server's signature of `id` until `expires`, and
    /// that time has not passed. Constant-time in the signature.
    pub fn verify(&self, id: &str, expires: i64, sig: &str, now_secs: i64) -> bool {
        if expires < now_secs {
            return false;
        }
        let Ok(raw) = hex::decode(sig) else {
            return false;
        };
        self.mac(id, expires).verify_slice(&raw).is_ok()
    }
}

/// The URL-signing secret: the configured one, else a random one persisted in
/// `<data-dir>/url-signing.key` so URLs survive restarts.
pub fn load_or_create_secret(
    configured: Option<&str>,
    data_dir: &std::path::Path,
) -> std::io::Result<Vec<u8>> {
    if let Some(s) = configured {
        return Ok(s.as_bytes().to_vec());
    }
    let path = data_dir.join("url-signing.key");
    match std::fs::read(&path) {
        Ok(b) if b.len() >= 32 => Ok(b),
        _ => {
            let secret: [u8; 32] = rand::random();
            let hex_secret = hex::encode(secret).into_bytes();
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &hex_secret)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, &path)?;
            Ok(hex_secret)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_expire_tamper() {
        let s = UrlSigner::new(b"k".to_vec(), 60);
        let url = s.sign("file_a", 1000);
        let q: std::collections::HashMap<_, _> = url
            .split_once('?')
            .unwrap()
            .1
            .split('&')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        let exp: i64 = q["expires"].parse().unwrap();
        assert_eq!(exp, 1060);
        assert!(s.verify("file_a", exp, q["sig"], 1000));
        assert!(!s.verify("file_a", exp, q["sig"], 1061), "expired");
        assert!(!s.verify("file_b", exp, q["sig"], 1000), "other file");
        assert!(
            !s.verify("file_a", exp + 1, q["sig"], 1000),
            "extended expiry"
        );
        assert!(!UrlSigner::new(b"other".to_vec(), 60).verify("file_a", exp, q["sig"], 1000));
    }

    #[test]
    fn secret_persists() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(None, dir.path()).unwrap();
        assert_eq!(a, load_or_create_secret(None, dir.path()).unwrap());
        assert_eq!(load_or_create_secret(Some("x"), dir.path()).unwrap(), b"x");
    }
}
