//! Blobs in an S3-compatible bucket through the `object_store` crate.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutOptions, PutPayload};

use super::{BlobStore, StorageError, check_key};
use crate::config::S3Config;

pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Credentials not given in `config` come from the usual `AWS_*`
    /// environment variables.
    pub fn new(config: &S3Config) -> Result<Self, StorageError> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_allow_http(config.allow_http);
        if let Some(r) = &config.region {
            b = b.with_region(r);
        }
        if let Some(e) = &config.endpoint {
            // S3-compatible stores are usually addressed by path, not by
            // virtual host.
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &config.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let store = b.build().map_err(|e| StorageError::Config(e.to_string()))?;
        let prefix = config
            .prefix
            .clone()
            .unwrap_or_default()
            .trim_matches('/')
            .to_owned();
        if !prefix.is_empty() {
            check_key(&prefix)?;
        }
        Ok(S3Store {
            store: Arc::new(store),
            bucket: config.bucket.clone(),
            prefix,
        })
    }

    fn path(&self, key: &str) -> Result<Path, StorageError> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        })
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        // The core trait methods (not the `ObjectStoreExt` helpers) return `Send`
        // futures, which `async_trait` needs.
        self.store
            .put_opts(
                &self.path(key)?,
                PutPayload::from_bytes(bytes),
                PutOptions::default(),
            )
            .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        match self
            .store
            .get_opts(&self.path(key)?, GetOptions::default())
            .await
        {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::NotFound(key.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let mut results = self
            .store
            .delete_stream(futures_util::stream::once(async move { Ok(path) }).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("s3 bucket {}", self.bucket)
    }
}
