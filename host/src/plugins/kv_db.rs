//! The server's [`KvStore`]: the `plugin_kv` table of its SQLite database, so a plugin's data
//! survives restarts and every server process on the same data directory sees the same keys.
//!
//! The `kv` interface is synchronous, so operations run on the calling (guest's) thread
//! under the connection's lock; each is one small indexed statement, or one short
//! transaction for a write (whose quota check and insert must not interleave with another
//! writer of the scope).

use super::kv_store::{KvError, KvScope, KvStore, check_entry, check_totals};
use super::manifest::KvQuota;
use crate::db::Db;
use rusqlite::{OptionalExtension, params};

/// A [`KvStore`] in the server's database.
#[derive(Clone)]
pub struct DbKv {
    db: Db,
}

impl DbKv {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn unavailable(e: rusqlite::Error) -> KvError {
    KvError::Unavailable(e.to_string())
}

impl KvStore for DbKv {
    fn get(&self, scope: &KvScope, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.db.call_sync(|c| {
            c.query_row(
                "SELECT value FROM plugin_kv WHERE tenant_id = ?1 AND plugin = ?2 AND key = ?3",
                params![scope.tenant, scope.plugin, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
    }

    fn set(
        &self,
        scope: &KvScope,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        check_entry(key, value, quota)?;
        self.db.call_sync(|c| {
            let tx = c.transaction().map_err(unavailable)?;
            let (keys, total): (i64, i64) = tx
                .query_row(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM plugin_kv \
                     WHERE tenant_id = ?1 AND plugin = ?2",
                    params![scope.tenant, scope.plugin],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(unavailable)?;
            let old: Option<i64> = tx
                .query_row(
                    "SELECT size FROM plugin_kv WHERE tenant_id = ?1 AND plugin = ?2 AND key = ?3",
                    params![scope.tenant, scope.plugin, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            let size = key.len() + value.len();
            check_totals(
                keys as usize,
                total as usize,
                old.map(|o| o as usize),
                size,
                quota,
            )?;
            tx.execute(
                "INSERT INTO plugin_kv (tenant_id, plugin, key, value, size) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (tenant_id, plugin, key) DO UPDATE SET value = ?4, size = ?5",
                params![scope.tenant, scope.plugin, key, value, size as i64],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)
        })
    }

    fn delete(&self, scope: &KvScope, key: &str) -> Result<bool, KvError> {
        self.db.call_sync(|c| {
            c.execute(
                "DELETE FROM plugin_kv WHERE tenant_id = ?1 AND plugin = ?2 AND key = ?3",
                params![scope.tenant, scope.plugin, key],
            )
            .map(|n| n > 0)
            .map_err(unavailable)
        })
    }

    fn list_keys(&self, scope: &KvScope, prefix: &str) -> Result<Vec<String>, KvError> {
        self.db.call_sync(|c| {
            // Keys compare bytewise (BINARY collation), as Rust's strings do: the keys with
            // the prefix are a contiguous run from the prefix on.
            let mut stmt = c
                .prepare(
                    "SELECT key FROM plugin_kv WHERE tenant_id = ?1 AND plugin = ?2 AND key >= ?3 \
                     ORDER BY key",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![scope.tenant, scope.plugin, prefix], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(unavailable)?;
            let mut keys = Vec::new();
            for k in rows {
                let k = k.map_err(unavailable)?;
                if !k.starts_with(prefix) {
                    break;
                }
                keys.push(k);
            }
            Ok(keys)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::MemoryKv;

    use crate::plugins::kv_store::tests::scope;

    /// The database store answers every operation as the in-memory one does.
    #[test]
    fn behaves_like_the_memory_store() {
        let stores: [Box<dyn KvStore>; 2] = [
            Box::new(MemoryKv::new()),
            Box::new(DbKv::new(Db::in_memory().unwrap())),
        ];
        let q = KvQuota {
            max_keys: 3,
            max_key_bytes: 8,
            max_value_bytes: 6,
            max_total_bytes: 15,
        };
        let mut answers: Vec<Vec<String>> = Vec::new();
        for kv in &stores {
            let mut got = Vec::new();
            let mut note = |s: String| got.push(s);
            note(format!("{:?}", kv.set(&scope("a"), "k1", b"v1", &q)));
            note(format!("{:?}", kv.set(&scope("a"), "", b"v", &q)));
            note(format!("{:?}", kv.set(&scope("a"), "toolongkey", b"v", &q)));
            note(format!("{:?}", kv.set(&scope("a"), "k2", b"1234567", &q)));
            note(format!("{:?}", kv.set(&scope("a"), "k2", b"123456", &q)));
            note(format!("{:?}", kv.set(&scope("a"), "k1", b"123456", &q)));
            note(format!("{:?}", kv.set(&scope("a"), "k1", b"1234", &q)));
            note(format!("{:?}", kv.set(&scope("a"), "j", b"", &q)));
            note(format!("{:?}", kv.set(&scope("a"), "k3", b"", &q)));
            note(format!("{:?}", kv.get(&scope("a"), "k1")));
            note(format!("{:?}", kv.get(&scope("b"), "k1")));
            note(format!("{:?}", kv.list_keys(&scope("a"), "k")));
            note(format!("{:?}", kv.list_keys(&scope("a"), "")));
            note(format!("{:?}", kv.delete(&scope("a"), "k1")));
            note(format!("{:?}", kv.delete(&scope("a"), "k1")));
            note(format!("{:?}", kv.set(&scope("a"), "k3", b"", &q)));
            note(format!("{:?}", kv.set(&scope("b"), "k1", b"b", &q)));
            note(format!("{:?}", kv.list_keys(&scope("a"), "")));
            answers.push(got);
        }
        assert_eq!(answers[0], answers[1]);
        // And the answers are the quota's, not all errors or all successes.
        let a = &answers[1];
        assert_eq!(a[0], "Ok(())");
        assert!(a[1].starts_with("Err(Invalid"), "{}", a[1]);
        assert!(a[2].starts_with("Err(Quota"), "{}", a[2]);
        assert!(a[3].starts_with("Err(Quota"), "value too long: {}", a[3]);
        assert_eq!(a[4], "Ok(())");
        assert!(a[5].starts_with("Err(Quota"), "15 bytes max: {}", a[5]);
        assert_eq!(a[6], "Ok(())");
        assert!(a[8].starts_with("Err(Quota"), "three keys max: {}", a[8]);
        assert_eq!(a[9], "Ok(Some([49, 50, 51, 52]))");
        assert_eq!(a[10], "Ok(None)");
        assert_eq!(a[11], r#"Ok(["k1", "k2"])"#);
        assert_eq!(a[17], r#"Ok(["j", "k2", "k3"])"#);
    }
}
