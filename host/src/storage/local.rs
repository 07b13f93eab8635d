//! Blobs as files under a directory (the default store).

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobStore, StorageError, check_key};

pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: PathBuf) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&root).map_err(|source| StorageError::Io {
            key: root.display().to_string(),
            source,
        })?;
        Ok(LocalDirStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl BlobStore for LocalDirStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let io = |source| StorageError::Io {
            key: key.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        // Write aside and rename, so a crash never leaves a torn blob under
        // the real name; sync before the rename so the job record that
        // follows never points at missing bytes.
        let tmp = path.with_extension(format!("tmp-{}", rand::random::<u64>()));
        let write = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, &bytes).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io(e));
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StorageError::NotFound(key.to_owned()))
            }
            Err(source) => Err(StorageError::Io {
                key: key.to_owned(),
                source,
            }),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StorageError::Io {
                key: key.to_owned(),
                source,
            }),
        }
    }

    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalDirStore::new(dir.path().join("blobs")).unwrap();
        s.put("t/a", Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(&s.get("t/a").await.unwrap()[..], b"hello");
        s.put("t/a", Bytes::from_static(b"again")).await.unwrap();
        assert_eq!(&s.get("t/a").await.unwrap()[..], b"again");
        s.delete("t/a").await.unwrap();
        s.delete("t/a").await.unwrap();
        assert!(matches!(s.get("t/a").await, Err(StorageError::NotFound(_))));
        assert!(matches!(
            s.get("../etc/passwd").await,
            Err(StorageError::InvalidKey(_))
        ));
    }
}
