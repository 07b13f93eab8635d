//! The tenant-scoped key-value store behind the `kv` interface.
//!
//! A trait so the server can back it with its database; [`MemoryKv`] is the in-process
//! implementation (used by default and in tests).

use super::manifest::KvQuota;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Whose keys: every tenant's plugin sees only its own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvScope {
    pub tenant: String,
    pub plugin: String,
}

/// Why a key-value operation failed (passed to the guest as a `plugin-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("quota_exceeded: {0}")]
    Quota(String),
    #[error("invalid_argument: {0}")]
    Invalid(String),
    #[error("kv_unavailable: {0}")]
    Unavailable(String),
}

impl KvError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Quota(_) => "quota_exceeded",
            Self::Invalid(_) => "invalid_argument",
            Self::Unavailable(_) => "kv_unavailable",
        }
    }
}

/// A small key-value store with per-scope quotas.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&self, scope: &KvScope, key: &str, value: &[u8], quota: &KvQuota)
    -> Result<(), KvError>;
    fn delete(&self, scope: &KvScope, key: &str) -> Result<bool, KvError>;
    fn list_keys(&self, scope: &KvScope, prefix: &str) -> Result<Vec<String>, KvError>;
}

/// The checks of one entry on its own (every store applies them the same way).
pub(crate) fn check_entry(key: &str, value: &[u8], quota: &KvQuota) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::Invalid("the key is empty".into()));
    }
    if key.len() > quota.max_key_bytes {
        return Err(KvError::Quota(format!(
            "a key of {} bytes exceeds {}",
            key.len(),
            quota.max_key_bytes
        )));
    }
    if value.len() > quota.max_value_bytes {
        return Err(KvError::Quota(format!(
            "a value of {} bytes exceeds {}",
            value.len(),
            quota.max_value_bytes
        )));
    }
    Ok(())
}

/// The scope-wide checks of a write: `keys` entries of `total` bytes (key + value) are
/// stored, `old` is the size of the entry being replaced (none for a new key) and `new` the
/// size of the one replacing it.
pub(crate) fn check_totals(
    keys: usize,
    total: usize,
    old: Option<usize>,
    new: usize,
    quota: &KvQuota,
) -> Result<(), KvError> {
    if old.is_none() && keys >= quota.max_keys {
        return Err(KvError::Quota(format!("more than {} keys", quota.max_keys)));
    }
    let after = total - old.unwrap_or(0) + new;
    if after > quota.max_total_bytes {
        return Err(KvError::Quota(format!(
            "{after} bytes stored would exceed {}",
            quota.max_total_bytes
        )));
    }
    Ok(())
}

/// An in-memory [`KvStore`].
#[derive(Default)]
pub struct MemoryKv {
    scopes: Mutex<HashMap<KvScope, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvStore for MemoryKv {
    fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        Ok(scopes.get(scope).and_then(|m| m.get(key)).cloned())
    }

    fn set(
        &self,
        scope: &KvScope,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        check_entry(key, value, quota)?;
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let map = scopes.entry(scope.clone()).or_default();
        let old = map.get(key).map(|v| key.len() + v.len());
        let total: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        check_totals(map.len(), total, old, key.len() + value.len(), quota)?;
        map.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn delete(&self, scope: &KvScope, key: &str) -> Result<bool, KvError> {
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        Ok(scopes
            .get_mut(scope)
            .is_some_and(|m| m.remove(key).is_some()))
    }

    fn list_keys(&self, scope: &KvScope, prefix: &str) -> Result<Vec<String>, KvError> {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        Ok(scopes
            .get(scope)
            .map(|m| {
                m.range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tenant `t`'s scope of plugin `p` (shared with the database store's tests).
    pub(crate) fn scope(t: &str) -> KvScope {
        KvScope {
            tenant: t.into(),
            plugin: "p".into(),
        }
    }

    #[test]
    fn scopes_are_isolated_and_quotas_hold() {
        let kv = MemoryKv::new();
        let q = KvQuota {
            max_keys: 2,
            max_key_bytes: 8,
            max_value_bytes: 4,
            max_total_bytes: 11,
        };
        kv.set(&scope("a"), "k1", b"v", &q).unwrap();
        assert_eq!(
            kv.get(&scope("b"), "k1").unwrap(),
            None,
            "tenant b sees nothing"
        );
        assert_eq!(kv.get(&scope("a"), "k1").unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            kv.set(&scope("a"), "k2", b"12345", &q).unwrap_err().code(),
            "quota_exceeded"
        );
        kv.set(&scope("a"), "k2", b"1234", &q).unwrap();
        assert!(kv.set(&scope("a"), "k3", b"", &q).is_err(), "max_keys");
        assert!(
            kv.set(&scope("a"), "k1", b"1234", &q).is_err(),
            "max_total_bytes: 12 bytes would exceed 11"
        );
        assert_eq!(kv.list_keys(&scope("a"), "k").unwrap(), vec!["k1", "k2"]);
        assert!(kv.delete(&scope("a"), "k1").unwrap());
        assert!(!kv.delete(&scope("a"), "k1").unwrap());
    }
}
