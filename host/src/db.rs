//! The embedded SQLite database: one connection in WAL mode behind a mutex,
//! used from async code through [`Db::call`] (which runs on the blocking pool
//! so a slow disk never stalls the HTTP workers).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database task panicked or was canceled")]
    Join,
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// Cloning shares the connection.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    credits INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    webhook_secret TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    job_id TEXT,
    filename TEXT,
    content_type TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_expiry ON files(expires_at);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    params TEXT NOT NULL,
    inputs TEXT NOT NULL,
    outputs TEXT NOT NULL DEFAULT '[]',
    error_code TEXT,
    error_message TEXT,
    progress TEXT,
    logs TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    credits INTEGER NOT NULL,
    credits_state TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash TEXT NOT NULL,
    webhook_url TEXT,
    webhook_events TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant_id, seq);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS webhook_messages (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_due ON webhook_messages(state, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_job ON webhook_messages(job_id);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    message_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (message_id, attempt)
);
CREATE TABLE IF NOT EXISTS plugins (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    hash TEXT NOT NULL,
    manifest TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
CREATE INDEX IF NOT EXISTS plugins_hash ON plugins(hash);
CREATE TABLE IF NOT EXISTS plugin_pins (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS pipelines (
    tenant_id TEXT NOT NULL,
    task TEXT NOT NULL,
    config TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, task)
);
CREATE TABLE IF NOT EXISTS plugin_kv (
    tenant_id TEXT NOT NULL,
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    -- key + value bytes, for the scope's quota
    size INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, plugin, key)
);
-- Every change of a tenant's balance, written in the transaction that makes it
-- (tenants::ledger).
CREATE TABLE IF NOT EXISTS credit_ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    -- signed: positive credits the tenant, negative debits it
    amount INTEGER NOT NULL,
    -- the balance right after the change
    balance INTEGER NOT NULL,
    reason TEXT NOT NULL,
    job_id TEXT,
    plugin TEXT,
    task TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS credit_ledger_tenant ON credit_ledger(tenant_id, seq);
"#;

impl Db {
    /// Opens (creating if needed) `<data_dir>/easel.db` and brings its schema up.
    pub fn open(data_dir: &Path) -> Result<Db, DbError> {
        Self::from_connection(Connection::open(data_dir.join("easel.db"))?)
    }

    /// A private in-memory database (unit tests).
    pub fn in_memory() -> Result<Db, DbError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(conn: Connection) -> Result<Db, DbError> {
        // WAL + synchronous=NORMAL: a committed transaction survives a killed
        // process (the WAL is in the OS page cache); only power loss can drop
        // the last commits. busy_timeout lets the CLI write while a server runs.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )?;
        conn.execute_batch(SCHEMA)?;
        // Columns added after the first release: databases created before them gain them here.
        let has_steps = conn
            .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'plugin_steps'")?
            .exists([])?;
        if !has_steps {
            conn.execute_batch(
                "ALTER TABLE jobs ADD COLUMN plugin_steps TEXT NOT NULL DEFAULT '[]'",
            )?;
        }
        let mut conn = conn;
        crate::tenants::ledger::backfill_opening_balances(&mut conn)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|_| E::from(DbError::Join))?
    }

    /// Runs `f` with the connection on the calling thread (startup, CLI).
    pub fn call_sync<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Whether a write transaction succeeds now (`/readyz`).
    pub async fn writable(&self) -> bool {
        self.call(|c| {
            c.execute_batch("BEGIN IMMEDIATE; CREATE TEMP TABLE IF NOT EXISTS readyz(x); ROLLBACK;")
                .map_err(DbError::from)
        })
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_plugin_steps_gains_the_column() {
        // The schema as it was: no plugin_steps, one job.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO jobs (id, tenant_id, task, status, priority, params, inputs, credits, \
             credits_state, request_hash, created_at) \
             VALUES ('j', 't', 'convert', 'queued', 5, '{}', '[]', 1, 'reserved', 'h', 0)",
            [],
        )
        .unwrap();
        let db = Db::from_connection(conn).unwrap();
        let steps: String = db.call_sync(|c| {
            c.query_row("SELECT plugin_steps FROM jobs WHERE id = 'j'", [], |r| {
                r.get(0)
            })
            .unwrap()
        });
        assert_eq!(steps, "[]");
        // Opening again (the column exists now) changes nothing.
        let conn = Arc::try_unwrap(db.conn).ok().unwrap().into_inner().unwrap();
        Db::from_connection(conn).unwrap();
    }
}
