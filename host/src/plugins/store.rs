//! Persistence of tenants' plugins so a restart keeps them: one SQLite row per version
//! (`plugins` table: tenant, name, version, content hash, manifest) and the component bytes
//! in `<data dir>/plugins/<sha256>.wasm`, content-addressed so identical uploads share a
//! file. Compiled artefacts live in the host's own cache (by hash and engine version), so
//! reloading at start costs a deserialisation, not a compile.

use super::errors::UploadError;
use super::manifest::Manifest;
use super::registry::{PluginHost, PluginVersionInfo};
use crate::db::{Db, DbError};
use rusqlite::params;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("plugin store: {0}")]
    Io(#[from] std::io::Error),
    #[error("plugin store task failed")]
    Join,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// What [`PluginStore::load_into`] restored.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub loaded: usize,
    /// `tenant/name@version: reason` of each version that could not be loaded.
    pub failed: Vec<String>,
}

/// Plugin metadata in the database and component bytes on disk.
#[derive(Clone)]
pub struct PluginStore {
    db: Db,
    dir: PathBuf,
}

impl PluginStore {
    /// Component bytes go under `data_dir/plugins/`.
    pub fn new(db: Db, data_dir: &Path) -> Self {
        Self {
            db,
            dir: data_dir.join("plugins"),
        }
    }

    fn blob(dir: &Path, hash: &str) -> PathBuf {
        dir.join(format!("{hash}.wasm"))
    }

    /// Records a version the host accepted: the bytes first (write + rename, so a crash
    /// never leaves a truncated component under its hash), then the row.
    pub async fn save(
        &self,
        tenant: &str,
        info: &PluginVersionInfo,
        manifest: &Manifest,
        bytes: bytes::Bytes,
    ) -> Result<(), StoreError> {
        let dir = self.dir.clone();
        let hash = info.hash.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let path = Self::blob(&dir, &hash);
            if path.exists() {
                return Ok(());
            }
            std::fs::create_dir_all(&dir)?;
            let tmp = path.with_extension(format!("tmp{}", rand::random::<u64>()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await
        .map_err(|_| StoreError::Join)??;
        let manifest = serde_json::to_string(manifest).expect("a manifest serializes");
        let (tenant, name, version, hash) = (
            tenant.to_owned(),
            info.name.clone(),
            info.version,
            info.hash.clone(),
        );
        self.db
            .call(move |c| -> Result<(), StoreError> {
                c.execute(
                    "INSERT OR REPLACE INTO plugins (tenant_id, name, version, hash, manifest, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![tenant, name, version, hash, manifest, chrono::Utc::now().timestamp()],
                )?;
                Ok(())
            })
            .await
    }

    /// Forgets every version of a plugin, its key-value data, and the component files no
    /// other row uses.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        let (tenant, name, dir) = (tenant.to_owned(), name.to_owned(), self.dir.clone());
        self.db
            .call(move |c| -> Result<(), StoreError> {
                let tx = c.transaction()?;
                let hashes: Vec<String> = {
                    let mut q = tx.prepare(
                        "SELECT DISTINCT hash FROM plugins WHERE tenant_id = ?1 AND name = ?2",
                    )?;
                    q.query_map(params![tenant, name], |r| r.get(0))?
                        .collect::<Result<_, _>>()?
                };
                tx.execute(
                    "DELETE FROM plugins WHERE tenant_id = ?1 AND name = ?2",
                    params![tenant, name],
                )?;
                tx.execute(
                    "DELETE FROM plugin_pins WHERE tenant_id = ?1 AND name = ?2",
                    params![tenant, name],
                )?;
                // The plugin's key-value data goes with it (a plugin uploaded later under the
                // same name starts empty), in the same transaction as the plugin's rows.
                tx.execute(
                    "DELETE FROM plugin_kv WHERE tenant_id = ?1 AND plugin = ?2",
                    params![tenant, name],
                )?;
                let mut orphans = Vec::new();
                for h in hashes {
                    let used: i64 = tx.query_row(
                        "SELECT COUNT(*) FROM plugins WHERE hash = ?1",
                        params![h],
                        |r| r.get(0),
                    )?;
                    if used == 0 {
                        orphans.push(h);
                    }
                }
                tx.commit()?;
                // After the commit: a crash in between leaves an unused file, never a row
                // without its bytes.
                for h in orphans {
                    let _ = std::fs::remove_file(Self::blob(&dir, &h));
                }
                Ok(())
            })
            .await
    }

    /// Records the pinned version of a plugin (`None` unpins: the latest is active).
    pub async fn set_pin(
        &self,
        tenant: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<(), StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.db
            .call(move |c| -> Result<(), StoreError> {
                match version {
                    Some(v) => c.execute(
                        "INSERT OR REPLACE INTO plugin_pins (tenant_id, name, version)
                         VALUES (?1, ?2, ?3)",
                        params![tenant, name, v],
                    )?,
                    None => c.execute(
                        "DELETE FROM plugin_pins WHERE tenant_id = ?1 AND name = ?2",
                        params![tenant, name],
                    )?,
                };
                Ok(())
            })
            .await
    }

    /// Registers every stored version with `host`, oldest first, under its original
    /// version number. A version that no longer loads is reported, not fatal.
    pub async fn load_into(&self, host: &PluginHost) -> Result<Restored, StoreError> {
        type Row = (String, String, u32, String, String);
        let rows: Vec<Row> = self
            .db
            .call(|c| -> Result<Vec<Row>, StoreError> {
                let mut q = c.prepare(
                    "SELECT tenant_id, name, version, hash, manifest FROM plugins
                     ORDER BY tenant_id, name, version",
                )?;
                let rows = q
                    .query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await?;
        let mut out = Restored::default();
        for (tenant, name, version, hash, manifest) in rows {
            let path = Self::blob(&self.dir, &hash);
            let loaded = async {
                let manifest = Manifest::from_json(manifest.as_bytes())?;
                let bytes = tokio::fs::read(&path).await?;
                host.restore(&tenant, &name, version, bytes, manifest).await
            }
            .await;
            match loaded {
                Ok(_) => out.loaded += 1,
                Err(e) => {
                    let e: UploadError = e;
                    out.failed.push(format!("{tenant}/{name}@{version}: {e}"));
                }
            }
        }
        // Pins last, once their versions are registered. A pin whose version did not load is
        // reported and left unapplied (the latest loaded version serves meanwhile), and kept
        // in the database so a later start that loads the version honours it again.
        type Pin = (String, String, u32);
        let pins: Vec<Pin> = self
            .db
            .call(|c| -> Result<Vec<Pin>, StoreError> {
                let mut q = c.prepare("SELECT tenant_id, name, version FROM plugin_pins")?;
                let rows = q
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?;
                Ok(rows)
            })
            .await?;
        for (tenant, name, version) in pins {
            if let Err(e) = host.pin(&tenant, &name, Some(version)) {
                out.failed
                    .push(format!("{tenant}/{name}: pin to version {version}: {e}"));
            }
        }
        Ok(out)
    }
}
