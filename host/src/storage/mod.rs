//! Where uploaded inputs and job outputs live: a [`BlobStore`] (the data
//! directory by default, or an S3-compatible bucket), file records in the
//! database, signed expiring download URLs and the retention sweeper.

pub mod files;
pub mod local;
pub mod s3;
pub mod signing;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::{StorageBackend, StorageConfig};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    #[error("blob store I/O on {key}: {source}")]
    Io { key: String, source: std::io::Error },
    #[error("object store: {0}")]
    Object(#[from] object_store::Error),
    #[error("storage configuration: {0}")]
    Config(String),
}

/// Byte storage by key. Keys are `/`-separated ASCII words (`[A-Za-z0-9_.-]`);
/// implementations may rely on that.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing any previous value; visible to
    /// `get` only once complete.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError>;
    async fn get(&self, key: &str) -> Result<Bytes, StorageError>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// A short description for logs and `/readyz`.
    fn describe(&self) -> String;
}

pub(crate) fn check_key(key: &str) -> Result<(), StorageError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.to_owned()))
    }
}

/// The store the configuration names.
pub fn open(
    config: &StorageConfig,
    data_dir: &std::path::Path,
) -> Result<Arc<dyn BlobStore>, StorageError> {
    Ok(match config.backend {
        StorageBackend::Local => Arc::new(local::LocalDirStore::new(data_dir.join("blobs"))?),
        StorageBackend::S3 => Arc::new(s3::S3Store::new(&config.s3)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("tnt_1/file_2").is_ok());
        for bad in ["", "/a", "a//b", "../x", "a/./b", "a b", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
