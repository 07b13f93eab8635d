//! File records (uploads and job outputs): who owns each blob, what it is and
//! when it expires. The blob key is `{tenant_id}/{file_id}`.

use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{BlobStore, StorageError};
use crate::db::{Db, DbError};
use crate::ids;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// Uploaded with `POST /v1/files` or as a task input.
    Input,
    /// Produced by a job.
    Output,
}

impl FileKind {
    fn as_str(self) -> &'static str {
        match self {
            FileKind::Input => "input",
            FileKind::Output => "output",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub id: String,
    pub tenant_id: String,
    pub kind: FileKind,
    pub job_id: Option<String>,
    pub filename: Option<String>,
    pub content_type: String,
    pub bytes: i64,
    pub sha256: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl FileRecord {
    pub fn key(&self) -> String {
        format!("{}/{}", self.tenant_id, self.id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("file {0} not found")]
    NotFound(String),
}

impl From<rusqlite::Error> for FileError {
    fn from(e: rusqlite::Error) -> Self {
        FileError::Db(e.into())
    }
}

const COLUMNS: &str = "id, tenant_id, kind, job_id, filename, content_type, bytes, sha256, width, height, created_at, expires_at";

fn row_to_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    let kind: String = r.get(2)?;
    Ok(FileRecord {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        kind: if kind == "output" {
            FileKind::Output
        } else {
            FileKind::Input
        },
        job_id: r.get(3)?,
        filename: r.get(4)?,
        content_type: r.get(5)?,
        bytes: r.get(6)?,
        sha256: r.get(7)?,
        width: r.get(8)?,
        height: r.get(9)?,
        created_at: r.get(10)?,
        expires_at: r.get(11)?,
    })
}

pub fn insert(conn: &Connection, f: &FileRecord) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO files ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            f.id,
            f.tenant_id,
            f.kind.as_str(),
            f.job_id,
            f.filename,
            f.content_type,
            f.bytes,
            f.sha256,
            f.width,
            f.height,
            f.created_at,
            f.expires_at
        ],
    )?;
    Ok(())
}

/// The file `id` if it exists and (when `tenant` is given) belongs to that tenant.
pub fn get(conn: &Connection, id: &str, tenant: Option<&str>) -> Result<FileRecord, FileError> {
    let f = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM files WHERE id = ?1"),
            [id],
            row_to_file,
        )
        .optional()?
        .filter(|f| tenant.is_none_or(|t| t == f.tenant_id));
    f.ok_or_else(|| FileError::NotFound(id.to_owned()))
}

/// Uploads and outputs, together with their blob store.
#[derive(Clone)]
pub struct Files {
    pub db: Db,
    pub blobs: Arc<dyn BlobStore>,
    pub retention_secs: u64,
}

/// What a new file is, before it is stored.
pub struct NewFile {
    pub tenant_id: String,
    pub kind: FileKind,
    pub job_id: Option<String>,
    pub filename: Option<String>,
    pub content_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl Files {
    /// Writes the blob and returns the record to insert (the caller inserts it,
    /// possibly in the same transaction as a job).
    pub async fn put_blob(&self, new: NewFile, bytes: Bytes) -> Result<FileRecord, FileError> {
        let now = ids::now_ms();
        let rec = FileRecord {
            id: ids::new_id("file"),
            tenant_id: new.tenant_id,
            kind: new.kind,
            job_id: new.job_id,
            filename: new.filename,
            content_type: new.content_type,
            bytes: bytes.len() as i64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            width: new.width,
            height: new.height,
            created_at: now,
            expires_at: now + (self.retention_secs as i64).saturating_mul(1000),
        };
        self.blobs.put(&rec.key(), bytes).await?;
        Ok(rec)
    }

    /// Stores a file and its record.
    pub async fn create(&self, new: NewFile, bytes: Bytes) -> Result<FileRecord, FileError> {
        let rec = self.put_blob(new, bytes).await?;
        let r = rec.clone();
        if let Err(e) = self
            .db
            .call(move |c| insert(c, &r).map_err(FileError::from))
            .await
        {
            let _ = self.blobs.delete(&rec.key()).await;
            return Err(e);
        }
        Ok(rec)
    }

    pub async fn get(&self, id: String, tenant: Option<String>) -> Result<FileRecord, FileError> {
        self.db.call(move |c| get(c, &id, tenant.as_deref())).await
    }

    pub async fn read(&self, rec: &FileRecord) -> Result<Bytes, FileError> {
        match self.blobs.get(&rec.key()).await {
            Err(StorageError::NotFound(_)) => Err(FileError::NotFound(rec.id.clone())),
            r => Ok(r?),
        }
    }

    /// Deletes the record, then the blob.
    pub async fn delete(&self, rec: &FileRecord) -> Result<(), FileError> {
        let id = rec.id.clone();
        self.db
            .call(move |c| {
                c.execute("DELETE FROM files WHERE id = ?1", [id])
                    .map_err(FileError::from)
            })
            .await?;
        self.blobs.delete(&rec.key()).await?;
        Ok(())
    }

    /// Deletes every file past its retention; returns how many.
    pub async fn sweep(&self, now_ms: i64) -> Result<usize, FileError> {
        let expired: Vec<FileRecord> = self
            .db
            .call(move |c| {
                let mut st = c.prepare(&format!(
                    "SELECT {COLUMNS} FROM files WHERE expires_at <= ?1 LIMIT 1000"
                ))?;
                let rows = st
                    .query_map([now_ms], row_to_file)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, FileError>(rows)
            })
            .await?;
        for f in &expired {
            self.delete(f).await?;
        }
        Ok(expired.len())
    }

    /// Runs [`Files::sweep`] every `interval` until the process ends.
    pub fn spawn_sweeper(self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                match self.sweep(ids::now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("retention: deleted {n} expired files"),
                    Err(e) => tracing::warn!("retention sweep failed: {e}"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_isolate_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            db: Db::in_memory().unwrap(),
            blobs: Arc::new(
                super::super::local::LocalDirStore::new(dir.path().to_owned()).unwrap(),
            ),
            retention_secs: 10,
        };
        let new = |t: &str| NewFile {
            tenant_id: t.into(),
            kind: FileKind::Input,
            job_id: None,
            filename: None,
            content_type: "text/plain".into(),
            width: None,
            height: None,
        };
        let a = files
            .create(new("tnt_a"), Bytes::from_static(b"a"))
            .await
            .unwrap();
        assert_eq!(&files.read(&a).await.unwrap()[..], b"a");
        assert!(files.get(a.id.clone(), Some("tnt_a".into())).await.is_ok());
        assert!(matches!(
            files.get(a.id.clone(), Some("tnt_b".into())).await,
            Err(FileError::NotFound(_))
        ));
        assert_eq!(files.sweep(a.created_at + 9_000).await.unwrap(), 0);
        assert_eq!(files.sweep(a.created_at + 10_000).await.unwrap(), 1);
        assert!(files.get(a.id.clone(), None).await.is_err());
        assert!(matches!(
            files.blobs.get(&a.key()).await,
            Err(StorageError::NotFound(_))
        ));
    }
}
